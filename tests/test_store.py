"""store.tinystore and store.atomic: one atomic file write per transaction, nothing half-done, one daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from store import atomic
from store.tinystore import Store, open_store
from workflows.errors import AlreadyRunning
from workflows.model import Contact, Partner
from workflows.outbox import OutboxEntry, Status

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def path(tmp_path) -> Path:
    return tmp_path / "data" / "partnerdesk.json"  # the folder does not exist yet


@pytest.fixture
def store(path):
    with open_store(path) as s:
        yield s


def entry(key: str, **kw) -> OutboxEntry:
    fields = {"key": key, "kind": "ack", "thread_id": "OA-1", "message_id": f"<{key}@x>", "mail_from": "s@x",
              "rcpt_to": ("a@x.example",), "subject": "s", "raw": "raw",
              "created_at": datetime(2026, 11, 30, 15, tzinfo=timezone.utc)} | kw
    return OutboxEntry(**fields)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# -- writes only inside a transaction -----------------------------------------------------------------------------
@pytest.mark.parametrize("write", [
    lambda s: s.set_meta("x", 1),
    lambda s: s.outbox_add(entry("k1")),
    lambda s: s.save_partner(Partner(id="p", name="P", plan="solo", renews_on=None)),
    lambda s: s.quarantine("src", {"reason": "r"}),
])
def test_write_outside_a_transaction_raises(store, path, write):
    with pytest.raises(RuntimeError, match="transaction"):
        write(store)
    assert not path.exists()  # nothing reached the disk
    assert store.meta("x") is None and store.outbox() == []


def test_reads_outside_a_transaction_are_fine(store):
    assert store.meta("nothing", "default") == "default"
    assert store.partners() == [] and store.threads() == [] and store.outbox() == []


def test_transaction_commits(store, path):
    with store.transaction():
        store.set_meta("next_thread", 7)
        store.outbox_add(entry("k1"))
    data = json.loads(path.read_bytes())
    assert data["meta"]["next_thread"] == {"value": 7}
    assert "k1" in data["outbox"]
    assert store.meta("next_thread") == 7


def test_a_transaction_that_raises_writes_nothing(store, path):
    with store.transaction():
        store.set_meta("a", 1)
    before = path.read_bytes()
    with pytest.raises(ZeroDivisionError):
        with store.transaction():
            store.set_meta("a", 2)
            store.set_meta("b", 3)
            store.outbox_add(entry("k1"))
            1 / 0
    assert path.read_bytes() == before
    # the in-memory view is rolled back too
    assert store.meta("a") == 1 and store.meta("b") is None and store.outbox() == []
    assert leftovers(path.parent) == []


def test_first_transaction_that_raises_creates_no_file(store, path):
    with pytest.raises(KeyError):
        with store.transaction():
            store.set_meta("a", 1)
            raise KeyError("boom")
    assert not path.exists()


def test_one_transaction_is_one_file_write(store, path, monkeypatch):
    calls = []
    real_replace = os.replace

    def counting_replace(src, dst, *a, **kw):
        calls.append(Path(dst))
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(atomic.os, "replace", counting_replace)
    with store.transaction():
        n = store.allocate_thread_number()
        store.set_meta("history_cutoff", "2026-11-30T15:00:00+00:00")
        store.outbox_add(entry("k1"))
        store.outbox_add(entry("k2"))
        store.record_message("<m@x>", thread="OA-1")
        store.record_raw("sha", "<m@x>", "INBOX:1")
        store.set_cursor("INBOX", 1, 1)
        with store.transaction():  # nested: joins the outer one
            store.quarantine("src", {"reason": "r"})
    assert calls == [path]
    assert n == 1 and store.peek_thread_number() == 2
    assert [e.key for e in store.outbox()] == ["k1", "k2"]
    with store.transaction():
        store.meta("history_cutoff")  # reads only
    assert len(calls) == 1  # a transaction that only read leaves the file alone


def record_fsyncs_and_renames(monkeypatch) -> list[tuple]:
    """Every os.fsync (with what the synced file or folder is, and the file's bytes at that moment)
    and every os.replace, in order."""
    events: list[tuple] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}")
        events.append(("fsync", target, Path(target).read_bytes() if os.path.isfile(target) else None))
        return real_fsync(fd)

    def replace(src, dst, *a, **kw):
        events.append(("replace", os.path.realpath(src), os.path.realpath(dst)))
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    return events


def test_a_write_fsyncs_the_temp_file_then_renames_it_then_fsyncs_the_folder(store, path, monkeypatch):
    with store.transaction():
        store.set_meta("x", 0)
    events = record_fsyncs_and_renames(monkeypatch)
    with store.transaction():
        store.set_meta("x", 1)
    assert [e[0] for e in events] == ["fsync", "replace", "fsync"], events
    (_, synced, content), (_, renamed, target), (_, folder, _) = events
    assert synced == renamed != os.path.realpath(path)  # the temporary file, before it replaces the store
    assert target == os.path.realpath(path) and folder == os.path.realpath(path.parent)
    assert content == path.read_bytes() and json.loads(content)["meta"]["x"] == {"value": 1}  # all of it, flushed


def test_a_journaled_send_result_is_fsynced_before_it_counts(store, path, monkeypatch):
    with store.transaction():
        store.outbox_add(entry("k1"))
    events = record_fsyncs_and_renames(monkeypatch)
    store.journal_progress(replace(store.outbox_entry("k1"), status=Status.SENT))
    [(kind, synced, content)] = events
    assert kind == "fsync" and synced == os.path.realpath(f"{path}.journal")
    line = json.loads(content.splitlines()[-1])
    assert line["key"] == "k1" and line["fields"]["status"] == "sent"


def test_a_result_being_journaled_is_read_whole_or_waited_for_never_half(store, path):
    """A read-only view (or a test) reading while the sending thread appends must not see a torn line."""
    import threading

    record = {"key": "k1", "fields": {"status": "sent"}}
    line = json.dumps(record).encode() + b"\n"
    seen: list[list[dict]] = []
    with store.journal._locked():  # the sending thread, half-way through its write
        with open(f"{path}.journal", "ab") as f:
            f.write(line[:10])
            f.flush()
            reader = threading.Thread(target=lambda: seen.append(store.journal.pending()))
            reader.start()
            reader.join(0.3)
            assert reader.is_alive() and not seen  # waits for the writer instead of reading half a line
            f.write(line[10:])
    reader.join(10)
    assert seen == [[record]]


@pytest.mark.parametrize("piece", [1, 2, 3, 500])
def test_the_store_is_written_in_pieces_that_make_the_same_bytes_as_one_dump(piece, monkeypatch):
    import random

    monkeypatch.setattr(atomic, "JSON_PIECE", piece)
    rnd = random.Random(piece)
    words = ["", "a", "\u00e9t\u00e9", "\U0001f600", '"q"', "back\\slash", "line\nbreak", "\x00", "</script>"]

    def value(depth: int = 0):
        kind = rnd.randrange(7 if depth < 3 else 4)
        if kind == 0:
            return rnd.choice(words) + str(rnd.random())
        if kind == 1:
            return rnd.randrange(-10**12, 10**12)
        if kind == 2:
            return rnd.choice([None, True, False, 1.5, -0.0])
        if kind == 3:
            return rnd.choice(words)
        if kind == 4:
            return [value(depth + 1) for _ in range(rnd.randrange(4))]
        return {rnd.choice(words) + str(i): value(depth + 1) for i in range(rnd.randrange(4))}

    for _ in range(30):
        data = {f"t{t}": {f"k{i}{rnd.choice(words)}": value() for i in range(rnd.randrange(8))} for t in range(4)}
        data["meta"] = {"schema": {"value": 3}}
        data["odd"] = [1, 2]  # not a table of documents: written whole
        want = json.dumps(data, ensure_ascii=True, separators=(",", ":")).encode()
        assert b"".join(atomic.json_pieces(data)) == want


def test_reading_the_journal_creates_nothing_on_disk(tmp_path):
    from store.journal import SendJournal

    journal = SendJournal(tmp_path / "s.json.journal")
    (tmp_path / "s.json.journal").write_text('{"key": "k1", "fields": {"status": "sent"}}\n')
    assert journal.pending() == [{"key": "k1", "fields": {"status": "sent"}}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json.journal"]  # no lock file made for a reader


def test_a_nested_transaction_s_after_commit_waits_for_the_outer_commit_and_is_dropped_by_a_rollback(store, path):
    ran: list[str] = []
    with store.transaction(after_commit=lambda: ran.append("outer")):
        with store.transaction(after_commit=lambda: ran.append(f"inner saw {json.loads(path.read_text())['meta']}")):
            store.set_meta("x", 1)
        assert ran == [] and not path.exists()  # nothing committed yet: too early for it
    assert ran == ["inner saw {'x': {'value': 1}, 'schema': {'value': %d}}" % store.meta("schema"), "outer"]
    ran.clear()
    with pytest.raises(ZeroDivisionError):
        with store.transaction(after_commit=lambda: ran.append("outer")):
            with pytest.raises(KeyError):
                with store.transaction(after_commit=lambda: ran.append("inner that failed")):
                    raise KeyError("its body failed; the outer one goes on and commits")
            with store.transaction(after_commit=lambda: 1 / 0):
                store.set_meta("w", 1)
    # Committed; the inner body that failed asked for nothing; a failing step kept no other from running.
    assert store.meta("w") == 1 and ran == ["outer"]
    ran.clear()
    with pytest.raises(ValueError):
        with store.transaction():
            with store.transaction(after_commit=lambda: ran.append("inner")):
                store.set_meta("y", 1)
            raise ValueError
    with store.transaction():
        store.set_meta("z", 1)
    assert ran == [] and store.meta("y") is None  # rolled back: never run, then or at a later commit


def test_nested_transaction_failure_rolls_back_the_outer_one(store, path):
    with pytest.raises(ValueError):
        with store.transaction():
            store.set_meta("outer", 1)
            with store.transaction():
                store.set_meta("inner", 1)
                raise ValueError
    assert not path.exists()
    assert store.meta("outer") is None and store.meta("inner") is None


def test_no_temp_files_left_behind(store, path, monkeypatch):
    for i in range(5):
        with store.transaction():
            store.set_meta(f"k{i}", i)
    assert leftovers(path.parent) == []

    def failing_replace(src, dst, *a, **kw):
        raise OSError("disk full")

    before = path.read_bytes()
    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        with store.transaction():
            store.set_meta("lost", 1)
    assert leftovers(path.parent) == []  # the temporary file was removed
    assert path.read_bytes() == before
    assert store.meta("lost") is None  # the cache did not take the failed write


def test_file_is_ascii_json(store, path):
    with store.transaction():
        store.set_meta("name", "Grüße ✓")
    raw = path.read_bytes()
    raw.decode("ascii")
    assert json.loads(raw)["meta"]["name"]["value"] == "Grüße ✓"


# -- several processes on one file --------------------------------------------------------------------------------
def test_two_stores_on_one_file_see_each_others_writes(path):
    with open_store(path) as daemon, open_store(path) as cli:
        with daemon.transaction():
            daemon.set_meta("from_daemon", 1)
        assert cli.meta("from_daemon") == 1
        with cli.transaction():
            cli.save_partner(Partner(id="nuvole", name="Nuvole Web", plan="standard", renews_on=None))
        assert [p.id for p in daemon.partners()] == ["nuvole"]
        # a read-modify-write in one never loses the other's write
        with daemon.transaction():
            daemon.set_meta("counter", daemon.meta("counter", 0) + 1)
        with cli.transaction():
            cli.set_meta("counter", cli.meta("counter", 0) + 1)
        assert daemon.meta("counter") == 2 and daemon.meta("from_daemon") == 1
        assert cli.partner("nuvole") is not None


def test_thread_numbers_are_not_handed_out_twice_across_stores(path):
    with open_store(path) as a, open_store(path) as b:
        got = []
        for s in (a, b, a, b):
            with s.transaction():
                got.append(s.allocate_thread_number())
        assert got == [1, 2, 3, 4]


# -- outbox -------------------------------------------------------------------------------------------------------
def test_outbox_add_refuses_a_duplicate_key(store):
    with store.transaction():
        assert store.outbox_add(entry("ack:OA-1:<m@x>", subject="first")) is True
        assert store.outbox_add(entry("ack:OA-1:<m@x>", subject="second")) is False
    with store.transaction():
        store.outbox_save(replace(store.outbox_entry("ack:OA-1:<m@x>"), status=Status.SENT))
        assert store.outbox_add(entry("ack:OA-1:<m@x>", subject="third")) is False  # sent counts too
    [e] = store.outbox()
    assert e.subject == "first" and e.status == "sent" and e.attempts == 0


def test_outbox_filters_and_orders(store):
    with store.transaction():
        store.outbox_add(entry("b", created_at=datetime(2026, 11, 30, 15, 0, 2, tzinfo=timezone.utc)))
        store.outbox_add(entry("a", created_at=datetime(2026, 11, 30, 15, 0, 1, tzinfo=timezone.utc)))
        store.outbox_add(entry("c", created_at=datetime(2026, 11, 30, 15, 0, 3, tzinfo=timezone.utc),
                               status=Status.FAILED))
    assert [e.key for e in store.outbox()] == ["a", "b", "c"]
    assert [e.key for e in store.outbox("pending")] == ["a", "b"]
    assert [e.key for e in store.outbox("failed")] == ["c"]


def test_outbox_save_of_unknown_key(store):
    with store.transaction(), pytest.raises(KeyError, match="nope"):
        store.outbox_save(entry("nope"))


# -- the daemon lock ----------------------------------------------------------------------------------------------
# (The exit code 3 that run.py makes of AlreadyRunning is pinned in tests/test_exit_codes.py.)
def try_lock_in_subprocess(path: Path) -> str:
    """"acquired", or the AlreadyRunning message another process got."""
    code = textwrap.dedent(f"""
        from store.tinystore import Store
        from workflows.errors import AlreadyRunning
        s = Store({str(path)!r})
        try:
            s.acquire_daemon_lock()
        except AlreadyRunning as e:
            print("refused:", e)
        else:
            s.release_daemon_lock()
            print("acquired")
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_daemon_lock_excludes_a_second_process(path):
    with open_store(path) as s:
        s.acquire_daemon_lock()
        refused = try_lock_in_subprocess(path)
        assert refused.startswith("refused:") and f"pid {os.getpid()}" in refused and str(path) in refused
        s.release_daemon_lock()
        assert try_lock_in_subprocess(path) == "acquired"


def test_daemon_lock_excludes_a_second_store_in_this_process(path):
    with open_store(path) as a, open_store(path) as b:
        a.acquire_daemon_lock()
        with pytest.raises(AlreadyRunning, match=f"pid {os.getpid()}"):
            b.acquire_daemon_lock()
        a.release_daemon_lock()
        b.acquire_daemon_lock()  # free again
        b.release_daemon_lock()


def test_close_releases_the_daemon_lock(path):
    s = Store(path)
    s.acquire_daemon_lock()
    s.close()
    assert try_lock_in_subprocess(path) == "acquired"


def test_daemon_lock_does_not_block_transactions_from_others(path):
    with open_store(path) as daemon, open_store(path) as cli:
        daemon.acquire_daemon_lock()
        with cli.transaction():  # `partners import` while the daemon runs
            cli.set_meta("x", 1)
        assert daemon.meta("x") == 1


# -- meta, secret, quarantine, tables -----------------------------------------------------------------------------
def test_secret_is_generated_once_and_stable(path):
    with open_store(path) as s:
        first = s.secret()
        assert isinstance(first, bytes) and len(first) == 64
        assert s.secret() == first
    with open_store(path) as s:
        assert s.secret() == first  # kept across restarts
        assert s.secret("configured") == b"configured"  # config wins, and is not stored
        assert s.meta("secret") == first.decode()


def test_quarantine_increments_attempts(store):
    with store.transaction():
        store.quarantine("INBOX:7", {"reason": "bug one", "message_id": "<m@x>"})
    with store.transaction():
        store.quarantine("INBOX:7", {"reason": "bug two"})
    rec = store.quarantine_record("INBOX:7")
    assert rec["attempts"] == 2
    assert rec["reason"] == "bug two" and rec["message_id"] == "<m@x>"  # the old fields are kept
    assert [q["source"] for q in store.quarantined()] == ["INBOX:7"]


def test_partner_round_trip(store):
    p = Partner(id="nuvole", name="Nuvole Web", plan="standard", renews_on=None, contacts=(
        Contact(partner_id="nuvole", name="A", email="a@nuvole.example", roles=frozenset({"primary"})),))
    with store.transaction():
        store.save_partner(p)
    assert store.partner("nuvole") == p
    assert store.partner("other") is None


def test_records_are_keyed_by_our_own_strings(store):
    with store.transaction():
        store.record_rsvp("call-1@x", "a@x.example", {"partstat": "TENTATIVE"})
        store.record_rsvp("call-1@x", "a@x.example", {"partstat": "ACCEPTED"})  # a later answer replaces it
    assert store.rsvps() == [{"partstat": "ACCEPTED"}]


def test_a_record_put_again_keeps_what_tinydb_upsert_kept(store, tmp_path):
    """Store._put updates in one step what TinyDB's upsert did in two: the same documents after any
    sequence of puts (fields merged into a record that is there, a new one added whole)."""
    import random

    from tinydb.storages import MemoryStorage
    from tinydb.table import Document

    from store.tinystore import KeyedTinyDB

    reference = KeyedTinyDB(storage=MemoryStorage).table("t")
    rng = random.Random(3)
    with store.transaction():
        for _ in range(500):
            key, data = rng.choice("abcde"), {rng.choice("xyz"): rng.randint(0, 9) for _ in range(rng.randint(0, 3))}
            store._put("t", key, data)
            reference.upsert(Document(data, doc_id=key))
            data["x"] = "changed after the put"  # what was put is the store's own copy
    assert {d.doc_id: dict(d) for d in store._all("t")} == {d.doc_id: dict(d) for d in reference.all()}


# -- damage from outside ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("garbage", [b"{not json", b"\x00\xff\xfe garbage", b'{"meta": '])
def test_garbage_store_file_is_a_clear_error(path, garbage):
    path.parent.mkdir(parents=True)
    path.write_bytes(garbage)
    with pytest.raises(RuntimeError) as info:
        with open_store(path) as s:
            s.meta("secret")
    assert str(path) in str(info.value)
    assert "backup" in str(info.value)
    assert path.read_bytes() == garbage  # never "repaired" by overwriting


def test_empty_store_file_is_an_empty_store(path):
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    with open_store(path) as s:
        assert s.meta("x") is None
        with s.transaction():
            s.set_meta("x", 1)
        assert s.meta("x") == 1


def test_the_remembered_roster_follows_every_change_a_rollback_and_another_process(tmp_path):
    from dataclasses import replace as _replace

    from workflows.model import Contact, Partner

    path = tmp_path / "roster.json"
    a, b = Store(path), Store(path)
    try:
        p = Partner(id="p1", name="Nuvole", plan="standard", renews_on=None,
                    contacts=(Contact(partner_id="p1", name="Ann", email="ann@nuvole.example"),))
        with a.transaction():
            a.save_partner(p)
        assert [x.name for x in a.partners()] == ["Nuvole"]
        with a.transaction():
            a.save_partner(_replace(p, name="Nuvole Web"))
            assert [x.name for x in a.partners()] == ["Nuvole Web"]  # inside the transaction too
        assert [x.name for x in a.partners()] == ["Nuvole Web"]
        try:
            with a.transaction():
                a.save_partner(_replace(p, name="Rolled back"))
                raise RuntimeError("stop")
        except RuntimeError:
            pass
        assert [x.name for x in a.partners()] == ["Nuvole Web"]
        assert [x.name for x in b.partners()] == ["Nuvole Web"]
        with b.transaction():  # another process
            b.save_partner(_replace(p, id="p2", name="Second"))
        assert [x.name for x in a.partners()] == ["Nuvole Web", "Second"]
        got = a.partners()
        got.append("not a partner")  # the caller's list is its own
        assert len(a.partners()) == 2
    finally:
        a.close()
        b.close()

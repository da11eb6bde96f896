"""The hot store and its archive: the JSON file holds open work only, what is finished moves to the archive
in the same commit, look-ups find it there, and a crash at any point leaves both agreeing."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from store import archive as archive_mod
from store import atomic
from store.tinystore import Store, open_store
from workflows.lifecycle import State
from workflows.model import Thread
from workflows.outbox import OutboxEntry, Status

T0 = datetime(2026, 11, 30, 15, tzinfo=timezone.utc)


@pytest.fixture
def path(tmp_path) -> Path:
    return tmp_path / "data" / "partnerdesk.json"


@pytest.fixture
def store(path):
    with open_store(path) as s:
        s.archive_batch = 1  # every commit moves what it can: the mechanism, seen commit by commit
        yield s


def test_small_commits_leave_what_could_move_until_there_is_enough(path):
    with open_store(path) as s:
        assert s.archive_batch == 200
        for n in range(1, 40):  # 39 closed threads, 39 messages, 39 raw hashes: not yet
            take_in(s, n, State.CLOSED)
        assert len(hot(path)["threads"]) == 39 and s.meta("archive") is None
        assert s.threads(open_only=True) == [] and len(s.threads()) == 39
        for n in range(40, 80):  # at the 67th, 201 records could move: they all did, at once
            take_in(s, n, State.CLOSED)
        assert sorted(hot(path)["threads"]) == [f"OA-{n}" for n in range(68, 80)] and s.meta("archive")
        assert s.seen_raw("sha3") == "<m3@p.example>" and len(s.threads()) == 79


def thread(n: int, state: State = State.NEW, **kw) -> Thread:
    return Thread(id=f"OA-{n}", number=n, partner_id="p", requester="a@p.example", subject=f"s{n}",
                  created_at=T0, state=state, messages=(f"<m{n}@p.example>",), **kw)


def entry(key: str, **kw) -> OutboxEntry:
    fields = {"key": key, "kind": "ack", "thread_id": "OA-1", "message_id": f"<{key}@x>", "mail_from": "s@x",
              "rcpt_to": ("a@x.example",), "subject": "s", "raw": f"Subject: {key}\r\n\r\nbody of {key}\r\n",
              "created_at": T0} | kw
    return OutboxEntry(**fields)


def hot(path: Path) -> dict:
    return json.loads(path.read_text())


def take_in(store: Store, n: int, state: State = State.NEW) -> None:
    with store.transaction():
        store.save_thread(thread(n, state))
        store.record_message(f"<m{n}@p.example>", direction="in", thread_id=f"OA-{n}", text="hello")
        store.record_raw(f"sha{n}", f"<m{n}@p.example>", f"imap:INBOX:1:{n}")


def test_a_closed_thread_leaves_the_json_and_is_still_found(store, path):
    take_in(store, 1)
    take_in(store, 2, State.CLOSED)
    data = hot(path)
    assert set(data["threads"]) == {"OA-1"} and set(data["messages"]) == {"<m1@p.example>"}
    assert data.get("raw", {}) == {}  # raw hashes live in the archive only
    assert store.thread("OA-2").state == State.CLOSED
    assert store.message("<m2@p.example>")["thread_id"] == "OA-2"
    assert store.seen_raw("sha2") == "<m2@p.example>" and store.seen_raw("sha1") == "<m1@p.example>"
    assert store.seen_raw("nope") is None and store.message("<nope@x>") is None and store.thread("OA-9") is None
    assert [t.id for t in store.threads()] == ["OA-1", "OA-2"]
    assert [t.id for t in store.threads(open_only=True)] == ["OA-1"]


def test_closing_moves_the_thread_and_its_messages_and_reopening_brings_it_back(store, path):
    take_in(store, 1)
    with store.transaction():
        store.save_thread(replace(store.thread("OA-1"), state=State.CLOSED))
    assert hot(path)["threads"] == {} and hot(path)["messages"] == {}
    with store.transaction():
        store.save_thread(replace(store.thread("OA-1"), state=State.WAITING_ON_STAFF, subject="reopened"))
    assert set(hot(path)["threads"]) == {"OA-1"}
    # The hot copy wins over the archived one, for look-ups and for listings.
    assert store.thread("OA-1").subject == "reopened"
    assert [(t.id, t.subject) for t in store.threads()] == [("OA-1", "reopened")]
    with store.transaction():
        store.save_thread(replace(store.thread("OA-1"), state=State.CLOSED, subject="closed again"))
    assert store.thread("OA-1").subject == "closed again" and hot(path)["threads"] == {}


def test_finished_outbox_rows_move_out_unfinished_ones_stay_and_no_bytes_in_the_json(store, path):
    with store.transaction():
        for k in ("a", "b", "c"):
            store.outbox_add(entry(k))
    raw = path.read_text()
    assert "body of" not in raw  # the rendered mail is kept beside the JSON
    with store.transaction():
        store.outbox_save(store.outbox_entry("a").after_send("sent", "", T0))
        store.outbox_save(store.outbox_entry("b").after_send("permanent", "550 no", T0))
    assert set(hot(path)["outbox"]) == {"b", "c"}
    assert [e.key for e in store.outbox()] == ["a", "b", "c"]
    assert [e.key for e in store.outbox(Status.SENT)] == ["a"]
    assert store.outbox_entry("a").raw == entry("a").raw  # the bytes are still there, by reference
    assert store.outbox_add(entry("a")) is False  # a key sent long ago is still refused
    assert [e.raw for e in store.outbox(Status.PENDING, bodies=False)] == [""]
    assert store.outbox_body(store.outbox(Status.PENDING, bodies=False)[0]) == entry("c").raw.encode()


def test_ghosts_of_threads_not_open_and_automatic_records_leave_the_json_and_are_still_found(store, path):
    from workflows.filing import AutomaticRecord

    take_in(store, 1)
    take_in(store, 2, State.CLOSED)
    with store.transaction():
        store.record_ghosts("OA-1", ["<g1@p.example>"])
        store.record_ghosts("OA-2", ["<g2@p.example>"])
        store.record_automatic(AutomaticRecord(message_id="<ooo@x.example>", received_at=T0, sender="a@x.example",
                                               subject="Out of office", kind="auto-reply", reason="Auto-Submitted"))
    data = hot(path)
    assert set(data["ghosts"]) == {"<g1@p.example>"} and data.get("automatic", {}) == {}
    assert store.ghost_thread("<g2@p.example>") == "OA-2" and store.ghost_thread("<g1@p.example>") == "OA-1"
    assert store.record_ghosts("OA-1", ["<g2@p.example>"]) == 0  # the first thread to name it keeps it
    assert [r.message_id for r in store.automatic_mail()] == ["<ooo@x.example>"]


def test_the_dispatcher_read_sees_committed_bytes_only(store):
    """outbox_body runs on the dispatcher thread while the main thread may be staging a commit: it reads
    committed bytes only (staged ones are this thread's transaction, not yet anyone's to send)."""
    with store.transaction():
        store.outbox_add(entry("done"))
    with store.transaction():
        store.outbox_add(entry("staged"))
        row = store.outbox_entry("staged", bodies=False)
        assert row.body and store.outbox_body(row) is None  # staged, not committed
        assert store.outbox_entry("staged").raw == entry("staged").raw  # the transaction itself sees it
        assert store.outbox_body(store.outbox_entry("done", bodies=False)) == entry("done").raw.encode()
    assert store.outbox_body(store.outbox_entry("staged", bodies=False)) == entry("staged").raw.encode()


def test_a_failed_commit_leaves_archive_and_mail_files_unreferenced_and_unread(store, path, monkeypatch):
    take_in(store, 1)
    before = path.read_bytes()

    def failing_replace(src, dst, *a, **kw):
        raise OSError("disk full")

    real = atomic.os.replace
    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.raises(OSError):
        with store.transaction():
            store.save_thread(replace(store.thread("OA-1"), state=State.CLOSED))
            store.record_raw("sha-lost", "<lost@x>", "imap:INBOX:1:9")
            store.outbox_add(entry("lost"))
    monkeypatch.setattr(atomic.os, "replace", real)
    assert path.read_bytes() == before
    for s in (store, Store(path, readonly=True)):  # this process, and a fresh look at the files
        assert s.seen_raw("sha-lost") is None and s.outbox_entry("lost") is None
        assert s.thread("OA-1").state == State.NEW
    # The next commit cuts off the bytes of the commit that never happened.
    take_in(store, 2, State.CLOSED)
    fresh = Store(path, readonly=True)
    assert fresh.seen_raw("sha-lost") is None and fresh.seen_raw("sha2") == "<m2@p.example>"


def test_the_log_is_folded_into_shards_and_everything_is_found_across_processes(path, monkeypatch):
    monkeypatch.setattr(archive_mod, "LOG_LIMIT", 2000)
    with open_store(path) as s:
        s.archive_batch = 1
        for n in range(1, 60):
            take_in(s, n, State.CLOSED)
        gen = s.meta("archive")["gen"]
    assert gen > 3  # folded several times
    logs = sorted(p.name for p in path.with_name(path.name + ".archive").glob("log-*"))
    assert logs == [f"log-{gen:06d}.jsonl"]  # folded logs are removed
    other = Store(path, readonly=True)
    assert all(other.seen_raw(f"sha{n}") == f"<m{n}@p.example>" for n in range(1, 60))
    assert [t.number for t in other.threads()] == list(range(1, 60))
    assert json.loads(path.read_text())["threads"] == {}


def test_a_miss_remembered_in_one_generation_is_looked_up_again_once_another_process_folds(path, monkeypatch):
    """A look-up does not stat the shards again within one archive generation; a fold committed by another
    process starts a new one, and what it moved to the shards is found."""
    monkeypatch.setattr(archive_mod, "LOG_LIMIT", 2000)
    reader, writer = Store(path), Store(path)
    try:
        writer.archive_batch = reader.archive_batch = 1
        take_in(writer, 1, State.CLOSED)
        assert all(reader.seen_raw(f"sha{n}") is None for n in range(2, 60))  # misses, every shard looked at
        for n in range(2, 60):
            take_in(writer, n, State.CLOSED)
        assert writer.meta("archive")["gen"] > 1  # folded: those records left the log for the shards
        assert all(reader.seen_raw(f"sha{n}") == f"<m{n}@p.example>" for n in range(1, 60))
        assert [t.number for t in reader.threads()] == list(range(1, 60))
    finally:
        reader.close()
        writer.close()


def test_the_log_s_index_holds_where_records_are_not_the_records_and_the_latest_version_wins(path, monkeypatch):
    import gc
    import weakref

    class Record(dict):  # a dict that can be watched for who still holds it
        pass

    monkeypatch.setattr(archive_mod, "LOG_LIMIT", 10**9)  # no fold until asked for
    with open_store(path) as s:
        watched = []
        for version in (1, 2):
            with s.transaction():
                for n in range(300):
                    rec = Record(n=n, version=version, text="x" * 200)
                    watched.append(weakref.ref(rec))
                    s.archive.put("outbox", f"k{n}", rec)
                s.set_meta("touch", version)  # a write: the commit flushes the archive
        del rec
        gc.collect()
        assert not any(w() for w in watched)  # a large mailing's sent rows are not held in memory
        assert all(s.archive.get("outbox", f"k{n}") == {"n": n, "version": 2, "text": "x" * 200} for n in range(300))
        other = Store(path, readonly=True)
        other._sync_archive()  # as its look-ups do: the archive as the hot store names it
        assert other.archive.get("outbox", "k7")["version"] == 2
        assert dict(other.archive.items("outbox"))["k299"]["version"] == 2
        monkeypatch.setattr(archive_mod, "LOG_LIMIT", 1)  # the next commit folds the log into the shards first
        gen = s.meta("archive")["gen"]
        with s.transaction():
            s.archive.put("outbox", "k0", {"n": 0, "version": 3})
            s.set_meta("touch", 3)
        assert s.meta("archive")["gen"] == gen + 1
        assert s.archive.get("outbox", "k5")["version"] == 2 and s.archive.get("outbox", "k0")["version"] == 3
        other = Store(path, readonly=True)
        other._sync_archive()
        assert other.archive.get("outbox", "k5")["version"] == 2 and other.archive.get("outbox", "k0")["version"] == 3


def test_a_crash_in_the_middle_of_a_fold_is_redone_without_duplicates(path, monkeypatch):
    monkeypatch.setattr(archive_mod, "LOG_LIMIT", 1500)
    with open_store(path) as s:
        s.archive_batch = 1
        for n in range(1, 12):
            take_in(s, n, State.CLOSED)
        real_fold = s.archive._fold

        def fold_then_die():
            real_fold()
            raise OSError("killed after the shards were written, before the hot store named the new log")

        monkeypatch.setattr(s.archive, "_fold", fold_then_die)
        with pytest.raises(OSError):
            for n in range(12, 40):
                take_in(s, n, State.CLOSED)
        monkeypatch.setattr(s.archive, "_fold", real_fold)
    with open_store(path) as s:
        s.archive_batch = 1
        for n in range(40, 60):
            take_in(s, n, State.CLOSED)
        numbers = [t.number for t in s.threads()]
        assert numbers == sorted(set(numbers)) and set(range(1, 12)) | set(range(40, 60)) <= set(numbers)
        assert all(s.thread(f"OA-{n}") is not None for n in numbers)


def test_the_json_does_not_grow_with_closed_history(store, path):
    take_in(store, 1)
    small = path.stat().st_size
    for n in range(2, 150):
        take_in(store, n, State.CLOSED)
        with store.transaction():
            store.outbox_add(entry(f"ack{n}"))
            store.outbox_save(store.outbox_entry(f"ack{n}").after_send("sent", "", T0))
    assert path.stat().st_size < small + 300  # thread counter and archive state, not history
    # (with the default archive_batch, at most that many records more: test_small_commits_...)


def test_pruning_deletes_old_mail_bytes_but_keeps_rows_and_unfinished_mail(store, path):
    old, new = T0 - timedelta(days=200), T0
    with store.transaction():
        store.outbox_add(entry("old-sent", created_at=old))
        store.outbox_add(entry("old-failed", created_at=old))
        store.outbox_add(entry("new-sent", created_at=new))
    with store.transaction():
        for k in ("old-sent", "new-sent"):
            store.outbox_save(store.outbox_entry(k).after_send("sent", "", T0))
        store.outbox_save(store.outbox_entry("old-failed").after_send("permanent", "550", T0))
    # old-sent and old-failed were queued in one commit, so they share a file: it stays for old-failed
    assert store.prune_sent_mail(T0 - timedelta(days=90)) == 0
    with store.transaction():
        store.outbox_save(store.outbox_entry("old-failed").cancel("given up", T0))
    assert store.prune_sent_mail(T0 - timedelta(days=90)) == 1
    rows = {e.key: e for e in store.outbox()}
    assert set(rows) == {"old-sent", "old-failed", "new-sent"}  # `outbox list` keeps showing them
    assert rows["old-sent"].raw == "" and store.outbox_body(rows["old-sent"]) is None
    assert rows["new-sent"].raw == entry("new-sent").raw


def test_a_mail_file_pruned_by_another_process_is_not_read_from_a_kept_descriptor(tmp_path):
    """The day file last read stays open; another process's prune (and a later commit making a file of
    the same name) must not let it serve the old bytes: pruned reads as pruned, the new file as itself."""
    from store.mailfiles import MailFiles

    root = tmp_path / "s.json.mail"
    daemon, cli = MailFiles(root), MailFiles(root)  # two processes' views of one store
    old = daemon.stage("2026-01-01", b"OLD MAIL FOR ANA\r\n")
    daemon.flush()
    assert daemon.read_committed(old) == b"OLD MAIL FOR ANA\r\n"
    assert cli.prune("2026-02-01", set()) == 1
    assert daemon.read_committed(old) is None
    new = cli.stage("2026-01-01", b"NEW MAIL FOR BOB\r\n")
    cli.flush()
    assert new == old  # the same reference, in the file made again
    assert daemon.read_committed(new) == b"NEW MAIL FOR BOB\r\n"
    daemon.close()
    cli.close()

"""Sending near the wire: pipelining where offered, results recorded in groups, at most one unrecorded
mail per connection, partner-facing mail before mailings, pacing on mailings only, a mailing's first
mail out while the rest is still being decided. Real sockets on 127.0.0.1; no timing assertions."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta, timezone

import pytest

from scripted_server import ScriptedServer

from config.servers import SmtpSettings
from mailbox.smtp import SmtpSender
from service.dispatch import Dispatcher
from service.ports import SendResult
from store.tinystore import Store
from workflows.outbox import OutboxEntry, Status

NOW = datetime(2026, 11, 30, 15, tzinfo=timezone.utc)
SUPPORT = "support@openatrium.example"


class Smtp(ScriptedServer):
    """A small SMTP server: ``pipelining`` offers PIPELINING; ``on_mail(conn, n, key)`` runs when a
    mail's end of data arrives (before the 250 goes back); records what each read carried."""

    def __init__(self, *, pipelining: bool = True, on_mail=None) -> None:
        self.pipelining = pipelining
        self.on_mail = on_mail
        self.reads: list[tuple[int, bytes]] = []  # (connection, bytes of one read)
        self.mails: list[tuple[int, str]] = []  # (connection, Subject) in the order accepted
        super().__init__()
        self.conns = 0
        self.lock = threading.Lock()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self.lock:
            self.conns += 1
            me = self.conns
        writer.write(b"220 test ESMTP\r\n")
        buf = b""
        in_data, body = False, b""
        try:
            while chunk := await reader.read(65536):
                self.reads.append((me, chunk))
                buf += chunk
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    if in_data:
                        if line == b".":
                            in_data = False
                            subject = next((l[9:].decode() for l in body.split(b"\r\n") if l.startswith(b"Subject: ")), "")
                            if self.on_mail is not None:
                                self.on_mail(me, len(self.mails), subject)
                            self.mails.append((me, subject))
                            writer.write(b"250 2.0.0 queued\r\n")
                            body = b""
                        else:
                            body += line + b"\r\n"
                        continue
                    verb = line.split(b" ", 1)[0].upper()
                    if verb == b"EHLO":
                        writer.write(b"250-test\r\n" + (b"250-PIPELINING\r\n" if self.pipelining else b"") + b"250 SIZE 10000000\r\n")
                    elif verb == b"DATA":
                        in_data = True
                        writer.write(b"354 go\r\n")
                    elif verb == b"QUIT":
                        writer.write(b"221 bye\r\n")
                        await writer.drain()
                        return
                    else:
                        writer.write(b"250 OK\r\n")
                await writer.drain()
        finally:
            writer.close()


def sender(port: int, connections: int = 1, rate: int = 0) -> SmtpSender:
    return SmtpSender(SmtpSettings(host="127.0.0.1", port=port, security="none", timeout=10.0,
                                   connections=connections, rate_per_minute=rate), None)


def entry(key: str, kind: str = "call-invite") -> OutboxEntry:
    return OutboxEntry(key=key, kind=kind, message_id=f"<{key}@x>", mail_from=SUPPORT, rcpt_to=(f"{key}@p.example",),
                       subject=key, raw=f"From: {SUPPORT}\r\nSubject: {key}\r\n\r\n.dot line\r\nhello\r\n",
                       created_at=NOW)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "store.json")
    yield s
    s.close()


def queue(store: Store, entries: list[OutboxEntry]) -> list[OutboxEntry]:
    with store.transaction():
        for e in entries:
            store.outbox_add(e)
    return [store.outbox_entry(e.key, bodies=False) for e in entries]


def test_pipelined_where_offered_one_write_per_envelope_and_the_bytes_arrive_whole():
    for pipelining in (True, False):
        with Smtp(pipelining=pipelining) as srv:
            results = sender(srv.port).send([entry(f"m{i}") for i in range(3)])
        assert [r.status for r in results] == ["sent"] * 3
        envelopes = [c for _, c in srv.reads if c.startswith(b"MAIL FROM:")]
        together = [c for c in envelopes if b"RCPT TO:" in c and b"DATA\r\n" in c]
        assert len(together) == (3 if pipelining else 0), pipelining
        assert [s for _, s in srv.mails] == ["m0", "m1", "m2"]
        sent = b"".join(c for _, c in srv.reads)
        assert b"\r\n..dot line\r\n" in sent  # dot-stuffed on the wire


def test_a_result_waits_for_the_next_ones_or_for_its_connection_to_need_it():
    """The committer writes a result once its connection needs it durable or it has lingered, so that
    the results of the other connections, which rarely come in the same instant, share its fsync."""
    from mailbox.smtp import _Committer

    async def scenario() -> tuple[list[list[str]], list[list[str]]]:
        written: list[list[str]] = []
        c = _Committer(lambda rs: written.append([r.key for r in rs]))
        c.LINGER = 60.0  # nothing is written for lingering in this test: only by need
        first = c.add(SendResult(key="a", status="sent"))
        for _ in range(3):  # a few turns of the loop: the other connections' answers come in meanwhile
            await asyncio.sleep(0)
        second = c.add(SendResult(key="b", status="sent"))
        await asyncio.sleep(0)
        together = list(written)
        c.flush()  # a connection is about to end its next mail: it needs its last result durable
        await asyncio.wait_for(asyncio.gather(first, second), 30)
        c.LINGER = 0.01
        third = c.add(SendResult(key="c", status="sent"))
        await asyncio.wait_for(third, 30)  # nobody asked: written once it has lingered
        return together, written

    before_need, written = asyncio.run(scenario())
    assert before_need == []  # written one by one, "a" went alone before "b" came
    assert written == [["a", "b"], ["c"]]


class Silent(Smtp):
    """Says hello, then never answers a mail's commands (a server hung mid-session)."""

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 test ESMTP\r\n")
        try:
            while chunk := await reader.read(65536):
                if chunk.upper().startswith(b"EHLO"):
                    writer.write(b"250-test\r\n250-PIPELINING\r\n250 SIZE 10000000\r\n")
                    await writer.drain()
        finally:
            writer.close()


def test_a_server_that_stops_answering_times_out_and_the_mail_stays_queued():
    with Silent() as srv:
        s = SmtpSender(SmtpSettings(host="127.0.0.1", port=srv.port, security="none", timeout=0.5), None)
        results: list[SendResult] = []
        t = threading.Thread(target=lambda: results.extend(s.send([entry("m0"), entry("m1")])), daemon=True)
        t.start()
        t.join(60)  # without the timeout it would wait for the server for ever
        assert not t.is_alive()
    assert [r.status for r in results] == ["transient", "transient"]
    assert "Timed out waiting for server response" in results[0].detail, results[0].detail


def test_a_connection_ends_its_next_mail_only_once_the_previous_result_is_durable(store, tmp_path):
    """At most one unrecorded mail per connection: what a SIGKILL can make us send again."""
    journal = tmp_path / "store.json.journal"
    seen_unrecorded: list[int] = []
    last_on: dict[int, str] = {}

    def on_mail(conn: int, n: int, subject: str) -> None:
        # The end of this connection's new mail has arrived: its previous mail must be on disk by now.
        prev = last_on.get(conn)
        if prev is not None:
            # Read as the store reads it (under the journal's lock): another connection may be appending.
            recorded = {l["key"] for l in store.journal.pending() if l["fields"]["status"] == "sent"}
            seen_unrecorded.append(0 if prev in recorded else 1)
        last_on[conn] = subject

    entries = queue(store, [entry(f"m{i:03d}") for i in range(60)])
    with Smtp(on_mail=on_mail) as srv:
        d = Dispatcher(store=store, sender=sender(srv.port, connections=3), now=lambda: NOW)
        d.submit(entries)
        d.wait()
        d.close()
    assert len(srv.mails) == 60 and len(seen_unrecorded) >= 57 and not any(seen_unrecorded)
    assert srv.conns <= 3
    groups = len([l for l in journal.read_text().splitlines() if l.strip()])
    assert groups == 60  # every result journaled (the fold has not run yet)
    store.apply_journal()
    assert len(store.outbox(Status.SENT)) == 60 and store.outbox(Status.PENDING) == []


def test_the_next_message_travels_while_the_previous_result_is_recorded_and_only_its_end_waits(store, monkeypatch):
    """The wait for durability overlaps the transfer: what makes the server take a mail (the final ".")
    is all that waits for the connection's previous result."""
    import time

    events: list[tuple[str, object]] = []

    class Reads(list):
        def append(self, item):
            events.append(("read", item[1]))
            super().append(item)

    record = store.journal.append

    def slow_record(records):
        keys = [r["key"] for r in records]
        time.sleep(0.3)  # a slow disk: the fsync of the previous result is still under way
        record(records)
        events.append(("recorded", keys))

    monkeypatch.setattr(store.journal, "append", slow_record)
    entries = queue(store, [entry(f"m{i:03d}") for i in range(3)])
    with Smtp() as srv:
        srv.reads = Reads()
        d = Dispatcher(store=store, sender=sender(srv.port, connections=1), now=lambda: NOW)
        d.submit(entries)
        d.wait()
        d.close()
    assert [subject for _, subject in srv.mails] == ["m000", "m001", "m002"]

    def at(what, test):
        return next(i for i, (kind, x) in enumerate(events) if kind == what and test(x))

    body = at("read", lambda b: b"Subject: m001" in b)
    recorded = at("recorded", lambda keys: "m000" in keys)
    end = next(i for i, (kind, x) in enumerate(events) if i > body and kind == "read" and b"\r\n.\r\n" in b"\r\n" + x)
    assert body < recorded < end  # m001's message came before m000 was recorded, its end after


def test_a_fold_takes_what_is_journaled_now_and_leaves_later_results_for_the_next(store, monkeypatch):
    """While a mailing is sent, results arrive faster than a store write takes: a fold that chased them
    until the journal was empty kept the daemon from taking in mail for as long as the mailing lasted."""
    entries = queue(store, [entry(f"m{i:03d}") for i in range(12)])
    sent = lambda e: {"key": e.key, "fields": {"status": "sent", "sent_at": NOW.isoformat(), "attempts": 1}}
    store.journal_results([sent(e) for e in entries[:4]])
    takes = []
    real_take = store.journal.take
    arriving = iter(entries[4:])

    def take_while_sending():  # the sending thread journals more results during every fold
        takes.append(1)
        got = real_take()
        more = [sent(e) for e in [next(arriving, None), next(arriving, None)] if e is not None]
        if more:
            store.journal_results(more)
        return got

    monkeypatch.setattr(store.journal, "take", take_while_sending)
    assert store.apply_journal() == 4
    assert len(takes) == 1  # what was journaled when the fold began, not what came after
    assert len(store.outbox(Status.SENT)) == 4 and len(store.journal.pending()) == 2
    assert store.apply_journal() == 2  # the next settle folds what came meanwhile
    assert len(store.outbox(Status.SENT)) == 6


def test_a_fold_a_crash_left_is_finished_before_the_journal(store):
    entries = queue(store, [entry(f"m{i:03d}") for i in range(3)])
    sent = lambda e: {"key": e.key, "fields": {"status": "sent", "sent_at": NOW.isoformat(), "attempts": 1}}
    store.journal_results([sent(entries[0])])
    assert store.journal.take()  # a process renamed the journal aside and died before its commit
    store.journal_results([sent(entries[1])])
    assert store.apply_journal() == 2  # the leftover fold, then the journal
    assert not store.journal.folding.exists() and store.journal.pending() == []
    store.journal.folding.write_text('{"key": "m002", "fie\n')  # a leftover torn by a crash
    store.journal_results([sent(entries[2])])
    assert store.apply_journal() == 1
    assert len(store.outbox(Status.SENT)) == 3 and not store.journal.folding.exists()


def test_a_fold_inside_a_transaction_covers_a_leftover_and_the_journal_and_a_rolled_back_one_is_redone(store):
    entries = queue(store, [entry(f"m{i:03d}") for i in range(4)])
    sent = lambda e: {"key": e.key, "fields": {"status": "sent", "sent_at": NOW.isoformat(), "attempts": 1}}
    store.journal_results([sent(entries[0])])
    assert store.journal.take()  # a fold that did not finish
    store.journal_results([sent(entries[1])])
    with pytest.raises(RuntimeError):
        with store.transaction():  # a mailing's chunk, whose write fails after the fold
            store.apply_journal()
            raise RuntimeError("the chunk's write failed")
    assert store.outbox(Status.SENT) == [] and len(store.journal.pending()) == 2  # nothing lost
    store.journal_results([sent(entries[2])])
    with store.transaction():
        assert store.apply_journal() == 3  # the leftover, what the failed one took, and what came since
    assert len(store.outbox(Status.SENT)) == 3 and store.journal.pending() == []
    assert not store.journal.folding.exists()


class Sink:
    """A sender whose server takes everything at once (the dispatcher's bookkeeping, without a socket)."""

    def send(self, entries, on_result=None):
        out = []
        for e in entries:
            r = SendResult(key=e.key, status="sent", detail="")
            if on_result:
                on_result(r)
            out.append(r)
        return out


def test_results_settled_in_a_transaction_that_rolls_back_stay_with_the_dispatcher_for_the_next_settle(store):
    from service.outbox import Outbox
    from service.report import CycleReport

    entries = queue(store, [entry(f"m{i:03d}") for i in range(3)])
    d = Dispatcher(store=store, sender=Sink(), now=lambda: NOW)
    outbox = Outbox(store=store, composer=None, secret=b"k", support_address=SUPPORT)  # type: ignore[arg-type]
    outbox.dispatcher = d
    try:
        d.submit(entries)
        d.wait()
        report = CycleReport()
        with pytest.raises(RuntimeError):
            with store.transaction():
                outbox.settle(report)
                raise RuntimeError("the chunk's write failed")
        # The store does not know they were sent: the dispatcher must not forget them (it would hand
        # them out again), and they are not counted yet.
        assert d.unsettled() == 3 and all(d.known(e.key) for e in entries) and report.counts["sent"] == 0
        assert len(store.outbox(Status.PENDING)) == 3
        assert outbox.settle(report) == 3
        assert d.unsettled() == 0 and not any(d.known(e.key) for e in entries) and report.counts["sent"] == 3
        assert len(store.outbox(Status.SENT)) == 3
    finally:
        d.close()


class Keeper(Sink):
    """A Sink that keeps what it was given to send."""

    def __init__(self):
        self.sent = {}

    def send(self, entries, on_result=None):
        self.sent.update({e.key: e.raw for e in entries})
        return super().send(entries, on_result)


def test_mail_queued_here_goes_with_its_committed_bytes_and_the_rest_is_read_from_the_store(store, monkeypatch):
    import service.dispatch
    from service.outbox import Outbox
    from workflows.model import OutgoingMail

    def mail(key):
        return OutgoingMail(key=key, kind="call-invite", template="x", to=(f"{key}@p.example",), context={},
                            subject=key)

    def raw(key, words):
        return f"From: {SUPPORT}\r\nSubject: {key}\r\n\r\n{words}\r\n".encode()

    reads = []
    read = store.outbox_body
    monkeypatch.setattr(store, "outbox_body", lambda e: reads.append(e.key) or read(e))
    sender = Keeper()
    d = Dispatcher(store=store, sender=sender, now=lambda: NOW)
    outbox = Outbox(store=store, composer=None, secret=b"k", support_address=SUPPORT)  # type: ignore[arg-type]
    outbox.dispatcher = d
    try:
        with outbox.sending():
            # A chunk whose write failed: its bytes must never be sent, even once the key is in the store
            # (queued by another process, say).
            with pytest.raises(RuntimeError):
                with store.transaction():
                    outbox.add(mail("other"), "<other@x>", raw("other", "rolled back"), NOW)
                    raise RuntimeError("the chunk's write failed")
            queue(store, [entry("other")])
            with store.transaction():
                outbox.add(mail("a"), "<a@x>", raw("a", "committed"), NOW)
                outbox.add(mail("b"), "<b@x>", raw("b", "committed"), NOW)
            assert outbox.release(NOW) == 3
            d.wait()
            assert sender.sent == {"a": raw("a", "committed").decode(), "b": raw("b", "committed").decode(),
                                   "other": entry("other").raw}
            assert reads == ["other"]  # the others were handed over with their bytes, not read back
            # Beyond the budget, the bytes are read from the store: the same bytes.
            monkeypatch.setattr(service.dispatch, "BODY_BUDGET", len(raw("c", "committed")))
            with store.transaction():
                outbox.add(mail("c"), "<c@x>", raw("c", "committed"), NOW)
                outbox.add(mail("e"), "<e@x>", raw("e", "committed"), NOW)
            assert outbox.release(NOW) == 2
            d.wait()
            assert reads == ["other", "e"] and sender.sent["e"] == raw("e", "committed").decode()
    finally:
        d.close()


class Gate:
    """A serving sender that takes nothing until ``open`` is set, then sends everything at once."""

    def __init__(self):
        self.open = threading.Event()
        self.sent = {}

    def serve(self, feed):
        self.open.wait()
        while True:
            e, _ = feed.next()
            if e is None:
                if feed.closed:
                    return
                self.open.wait(0.01)
                continue
            self.sent[e.key] = e.raw
            feed.record([SendResult(key=e.key, status="sent", detail="")])


def test_mail_failed_while_queued_gives_its_bytes_up_for_the_next_mail(store, monkeypatch):
    import service.dispatch

    a, b = queue(store, [entry("a"), entry("b")])
    monkeypatch.setattr(service.dispatch, "BODY_BUDGET", len(entry("a").raw))
    reads = []
    read = store.outbox_body
    monkeypatch.setattr(store, "outbox_body", lambda e: reads.append(e.key) or read(e))
    sender = Gate()
    d = Dispatcher(store=store, sender=sender, now=lambda: NOW)
    try:
        d.submit([a], {"a": entry("a").raw.encode()})
        d.fail_queued("the server cannot take mail now")  # "a" never left: its bytes are let go
        d.submit([b], {"b": entry("b").raw.encode()})
        sender.open.set()
        d.wait()
        assert sender.sent == {"b": entry("b").raw} and reads == []
    finally:
        sender.open.set()
        d.close()


def test_two_settles_in_one_transaction_forget_only_what_their_folds_covered(store):
    from service.outbox import Outbox
    from service.report import CycleReport

    entries = queue(store, [entry(f"m{i:03d}") for i in range(6)])
    d = Dispatcher(store=store, sender=Sink(), now=lambda: NOW)
    outbox = Outbox(store=store, composer=None, secret=b"k", support_address=SUPPORT)  # type: ignore[arg-type]
    outbox.dispatcher = d
    report = CycleReport()
    try:
        with store.transaction():
            for batch in (entries[:3], entries[3:5]):
                d.submit(batch)
                d.wait()
                outbox.settle(report)
            d.submit(entries[5:])  # sent and journaled after both folds took the journal
            d.wait()
        assert report.counts["sent"] == 5 and d.known("m005") and d.unsettled() == 1
        assert [e.key for e in store.outbox(Status.PENDING)] == ["m005"]  # the store does not know yet...
        outbox.settle(report)  # ...so the dispatcher kept it until a fold covered it
        assert report.counts["sent"] == 6 and not d.known("m005") and len(store.outbox(Status.SENT)) == 6
    finally:
        d.close()


def test_a_fold_by_another_process_waits_for_the_daemon_s_and_loses_nothing(store, tmp_path, monkeypatch):
    from store.journal import SendJournal

    """A CLI command opening the store folds the journal too: it must not add lines to a .folding file
    the daemon's fold is about to remove."""
    entries = queue(store, [entry(f"m{i:03d}") for i in range(2)])
    sent = lambda e: {"key": e.key, "fields": {"status": "sent", "sent_at": NOW.isoformat(), "attempts": 1}}
    store.journal_results([sent(entries[0])])
    opened: list[Store] = []
    cli = threading.Thread(target=lambda: opened.append(Store(tmp_path / "store.json")))
    committed = threading.Event()
    real_read = SendJournal._read

    def read(path):  # the CLI reads what it took only after the daemon's commit: the worst moment
        if threading.current_thread() is cli and path.name.endswith(".folding"):
            committed.wait(10)
        return real_read(path)

    monkeypatch.setattr(SendJournal, "_read", staticmethod(read))
    with store.transaction():
        store.apply_journal()  # the daemon's fold has taken m000
        store.journal_results([sent(entries[1])])  # the sending thread goes on
        cli.start()  # a CLI command opens the store meanwhile
        cli.join(0.3)
        assert cli.is_alive()  # it waits for the daemon's fold to commit
    committed.set()  # the daemon's fold is committed and its .folding removed
    cli.join(10)
    [other] = opened
    try:
        assert len(store.outbox(Status.SENT)) == 2 and store.journal.pending() == []
    finally:
        other.close()


def test_results_are_written_in_groups_one_fsync_each(store, monkeypatch):
    appends: list[int] = []
    real = store.journal.append

    def slow_append(records):  # a slow disk: the results arriving meanwhile join the next group
        appends.append(len(records))
        threading.Event().wait(0.02)
        real(records)

    monkeypatch.setattr(store.journal, "append", slow_append)
    entries = queue(store, [entry(f"m{i:03d}") for i in range(80)])
    with Smtp() as srv:
        d = Dispatcher(store=store, sender=sender(srv.port, connections=4), now=lambda: NOW)
        d.submit(entries)
        d.wait()
        d.close()
    # One fsync for the results that arrived while the last one ran (about half the connections: the
    # others wait for theirs before they end their next mail), not one per result.
    assert sum(appends) == 80 and len(appends) <= 45 and max(appends) >= 2


def test_partner_facing_mail_overtakes_a_paced_mailing_and_is_not_paced_itself(store):
    bulk = queue(store, [entry(f"bulk{i}") for i in range(20)])
    urgent = queue(store, [entry(f"ack{i}", kind="ack") for i in range(3)])
    staff = queue(store, [entry("note", kind="notify")])
    with Smtp() as srv:
        # 6 a minute: a mailing mail every 10 s; the test never waits that long.
        d = Dispatcher(store=store, sender=sender(srv.port, connections=1), now=lambda: NOW, bulk_per_minute=6)
        d.submit(bulk)
        d.submit(staff + urgent)
        deadline = datetime.now() + timedelta(seconds=60)
        while len(srv.mails) < 5 and datetime.now() < deadline:
            threading.Event().wait(0.01)
        d.close(finish=False)
    order = [s for _, s in srv.mails]
    # The first mailing mail may have gone before the rest was submitted; after it: urgent mail, then
    # staff mail, none of it paced, while the mailing waits its turn.
    assert [s for s in order if s != "bulk0"][:4] == ["ack0", "ack1", "ack2", "note"], order


def test_a_mailing_starts_going_out_while_it_is_still_being_decided(tmp_path):
    """The runner decides in chunks; the first chunk is sent while the next is rendered."""
    from contextlib import ExitStack

    import run
    from service.cycle import cycle
    from tests.test_mailings_runner import PARTNERS, make_settings

    many = []
    for p in PARTNERS:
        many.append(p)
    sent_at_first_gap: list[int] = []

    class Slow:  # a plain sender that records; checks below run between chunks
        def __init__(self) -> None:
            self.sent: list[OutboxEntry] = []
            self.event = threading.Event()

        def send(self, entries, on_result=None):
            out = []
            for e in entries:
                self.sent.append(e)
                self.event.set()
                out.append(SendResult(key=e.key, status="sent"))
                if on_result:
                    on_result(out[-1])
            return out

    s = make_settings(tmp_path, calls={"rrule": "FREQ=MONTHLY;INTERVAL=3;BYDAY=2TU",
                                       "first": datetime(2027, 1, 12, 14), "dial_in": "+1"},
                      mailings={"enabled": ["calls"]})
    with ExitStack() as stack:
        desk = run.Wiring(s, run.Clock(datetime.fromisoformat("2026-12-29T19:05:00+00:00")), stack).desk(
            spool_root=tmp_path / "spool")
        desk.sender = Slow()
        from workflows.model import Contact, Partner
        contacts = tuple(Contact(partner_id="big", name=f"P {i}", email=f"p{i}@big.example", roles=frozenset({"technical"}))
                         for i in range(120))
        with desk.store.transaction():
            desk.store.save_partner(Partner(id="big", name="Big", plan="standard", renews_on=None, contacts=contacts))

        def gap() -> None:
            if not sent_at_first_gap:
                desk.sender.event.wait(30)  # the sending thread got the first chunk while we wait here
                sent_at_first_gap.append(len(desk.sender.sent))

        desk.mailings.between_chunks = gap
        report = cycle(desk)
    assert sent_at_first_gap and 1 <= sent_at_first_gap[0] <= 25  # the first chunk only: the rest was not decided yet
    assert len(desk.sender.sent) == 120 and report.counts["sent"] == 120


def test_the_wire_form_ends_every_line_with_crlf_and_doubles_leading_dots():
    import random
    import re

    from mailbox.smtp import wire_form

    def by_regex(raw: bytes) -> bytes:  # RFC 5321 4.5.2, written the obvious way
        raw = re.sub(rb"\r\n|\n|\r(?!\n)", b"\r\n", raw)
        if not raw.endswith(b"\r\n"):
            raw += b"\r\n"
        return re.sub(rb"(?m)^\.", b"..", raw) + b".\r\n"

    assert wire_form(b".a\r\n.\r\nb") == b"..a\r\n..\r\nb\r\n.\r\n"
    assert wire_form(b"a\nb\rc\r\n") == b"a\r\nb\r\nc\r\n.\r\n"
    rng = random.Random(3)
    for _ in range(50000):
        raw = bytes(rng.choice(b"ab.\r\n ") for _ in range(rng.randint(0, 24)))
        assert wire_form(raw) == by_regex(raw), raw


def test_envelope_addresses_are_quoted_as_aiosmtplib_quotes_them():
    import random

    from aiosmtplib.email import quote_address

    from mailbox.smtp import smtp_address

    for plain in ("c1@partners.example", "first.last+tag@mail.example.co", "a=b_c-d@x-y.example"):
        assert smtp_address(plain) == f"<{plain}>".encode()
    # Anything but a plain dot-atom address goes through aiosmtplib's own parser: the same bytes, or
    # the same refusal of an address that cannot go on a command line.
    for odd in ("", "Name <a@b.example>", '"a b"@c.example', "a@b.example\r\nRCPT TO:<x@y>"):
        try:
            want: bytes | type = quote_address(odd).encode()
        except ValueError:
            want = ValueError
        try:
            got: bytes | type = smtp_address(odd)
        except ValueError:
            got = ValueError
        assert got == want, odd
    rng = random.Random(5)
    for _ in range(50000):
        s = "".join(rng.choice("ab.Z9_+=-@.\"<> ,()\\") for _ in range(rng.randint(1, 12)))
        try:
            want = quote_address(s).encode()
        except ValueError:
            want = ValueError
        try:
            got = smtp_address(s)
        except ValueError:
            got = ValueError
        assert got == want, s


class Ticks:
    """A dispatcher's clock moved on by hand: its deadlines pass when the test says, not when a loaded
    machine gets round to it."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_queueing_a_mailing_waits_for_the_sending_to_catch_up_but_never_for_a_paced_one(store):
    gate = threading.Event()

    def slow(conn, n, subject):  # the server takes each mail only once the gate is open
        gate.wait(30)

    bulk = queue(store, [entry(f"bulk{i}") for i in range(40)])
    with Smtp(on_mail=slow) as srv:
        clock = Ticks()
        d = Dispatcher(store=store, sender=sender(srv.port, connections=1), now=lambda: NOW, clock=clock)
        d.submit(bulk)
        meanwhile = []

        def take_in() -> None:  # new mail is taken in each quarter second of waiting
            meanwhile.append(clock.t)
            clock.t += 0.25

        assert d.wait_for_room(10, timeout=1.0, meanwhile=take_in)  # nothing leaves: it gives up at its deadline
        assert meanwhile == [0.0, 0.25, 0.5, 0.75] and len(srv.mails) == 0
        gate.set()
        d.wait_for_room(10, timeout=30)  # returns once fewer than 10 wait, before everything is sent
        assert len(srv.mails) >= 30 - 2
        d.close(finish=True)
        assert len(srv.mails) == 40
        # 6 a minute: one mailing mail every 10 s. A paced mailing takes as long as its pace says: the
        # wait returns at once, with the rest still queued, and takes no mail in.
        paced = Dispatcher(store=store, sender=sender(srv.port, connections=1), now=lambda: NOW, bulk_per_minute=6)
        paced.submit(queue(store, [entry(f"paced{i}") for i in range(20)]))
        assert not paced.wait_for_room(1, timeout=60, meanwhile=lambda: meanwhile.append("paced"))
        assert "paced" not in meanwhile
        assert len([m for _, m in srv.mails if m.startswith("paced")]) <= 1
        paced.close(finish=False)


def test_the_cycle_can_wait_for_its_acknowledgements_to_leave_but_not_for_anything_else(store):
    gate = threading.Event()

    def held(conn, n, subject):  # the server holds every mail until the gate opens
        gate.wait(30)

    with Smtp(on_mail=held) as srv:
        d = Dispatcher(store=store, sender=sender(srv.port, connections=1), now=lambda: NOW)
        assert d.wait_urgent(1.0)  # nothing handed out: at once
        d.submit(queue(store, [entry("bulk0"), entry("note", kind="notify")]))
        # Only staff mail and a mailing, both still held by the server: not waited for.
        assert d.wait_urgent(30.0) and srv.mails == []
        d.submit(queue(store, [entry("ack0", kind="ack")]))
        assert not d.wait_urgent(0.5)  # the server holds the ack: given up after the timeout
        gate.set()
        assert d.wait_urgent(30.0)  # and once it is taken, the wait ends
        assert "ack0" in [s for _, s in srv.mails]
        d.close(finish=True)

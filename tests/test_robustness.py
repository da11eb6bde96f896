"""Outages must not lose mail or stop the daemon.

* IMAP: a dropped connection (server restart, `doveadm kick`, BYE) is Transient, never
  ConfigError; moving without MOVE/UIDPLUS never expunges someone else's deletions; bodies
  are fetched in size-capped batches.
* SMTP: a failing connection or login is transient and stops the batch; only RCPT/DATA 5xx is
  permanent; recipients refused for now (452) get a copy of their own.
* Outbox: transient failures are retried for days, not 8 attempts; `outbox retry` revives failures.
* cycle(): an IMAP outage still runs the ticks and the drain.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path

import pytest

from scripted_server import ScriptedServer
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

import mailbox.imap as imap_mod
from mailbox.imap import ImapSource
from mailbox.smtp import SmtpSender
from store.tinystore import Store, open_store
from workflows.errors import ConfigError, Transient
from service.ports import RawMail, SendResult
from service.cycle import Desk, cycle
from service.intake import IntakeService
from service.outbox import Outbox
from service.report import CycleReport
from workflows.outbox import OutboxEntry
from config.servers import ImapSettings, SmtpSettings

NOW = datetime(2026, 11, 30, 15, 0, tzinfo=timezone.utc)
SUPPORT = "support@openatrium.example"


# ======================================================================================
# a scriptable SMTP server on 127.0.0.1, port 0
class FakeSmtp(ScriptedServer):
    """Answers each command from a script: ``auth`` (None: AUTH not offered), ``mail``,
    ``rcpt`` per address, ``data(rcpts)``. Records the commands it saw and what it accepted."""

    def __init__(self, *, auth: str | None = None, mail: str = "250 2.1.0 OK",
                 rcpt: dict[str, str] | None = None, data=None) -> None:
        self.auth, self.mail, self.rcpt = auth, mail, rcpt or {}
        self.data = data or (lambda rcpts: "250 2.0.0 queued")
        self.commands: list[str] = []
        self.accepted: list[tuple[str, ...]] = []
        self.connections = 0
        super().__init__()
        self.port = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1

        def say(*lines: str) -> None:
            writer.write(b"".join(l.encode() + b"\r\n" for l in lines))

        say("220 fake.test ESMTP")
        rcpts: list[str] = []
        try:
            while line := await reader.readline():
                cmd = line.decode().strip()
                self.commands.append(cmd)
                verb = cmd.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    say("250-fake.test", *(["250-AUTH PLAIN LOGIN"] if self.auth else []), "250 8BITMIME")
                elif verb == "AUTH":
                    if len(cmd.split()) == 2:  # no initial response: ask for it
                        say("334 ")
                        await reader.readline()
                    say(self.auth or "502 no AUTH here")
                elif verb == "MAIL":
                    rcpts = []
                    say(self.mail)
                elif verb == "RCPT":
                    addr = cmd[cmd.index("<") + 1:cmd.index(">")]
                    reply = self.rcpt.get(addr, "250 2.1.5 OK")
                    if reply.startswith("2"):
                        rcpts.append(addr)
                    say(reply)
                elif verb == "DATA":
                    say("354 go ahead")
                    await writer.drain()
                    while (await reader.readline()) not in (b".\r\n", b""):
                        pass
                    reply = self.data(tuple(rcpts))
                    if reply.startswith("2"):
                        self.accepted.append(tuple(rcpts))
                    say(reply)
                elif verb in ("RSET", "NOOP"):
                    say("250 OK")
                elif verb == "QUIT":
                    say("221 bye")
                    await writer.drain()
                    break
                else:
                    say("502 what?")
                await writer.drain()
        finally:
            writer.close()

    def verb_count(self, verb: str) -> int:
        return sum(1 for c in self.commands if c.upper().startswith(verb))


def sender(port: int, *, username: str = "", connections: int = 1) -> SmtpSender:
    s = SmtpSettings(host="127.0.0.1", port=port, security="none", username=username, timeout=5.0,
                     connections=connections, rate_per_minute=0)
    return SmtpSender(s, "secret")


def entry(key: str, *rcpts: str, at: datetime = NOW, kind: str = "ack") -> OutboxEntry:
    return OutboxEntry(key=key, kind=kind, thread_id="OA-1", message_id=f"<{key}@x>", mail_from=SUPPORT,
                       rcpt_to=rcpts, subject=key, raw=f"From: {SUPPORT}\r\nSubject: {key}\r\n\r\nhello\r\n",
                       created_at=at)


def by_key(results: list[SendResult]) -> dict[str, SendResult]:
    return {r.key: r for r in results}


# -- SMTP classification --------------------------------------------------------------------
@pytest.mark.parametrize("connections", [1, 2])
def test_wrong_password_is_transient_and_stops_the_batch(connections):
    with FakeSmtp(auth="535 5.7.8 Authentication credentials invalid") as srv:
        results = sender(srv.port, username="desk", connections=connections).send(
            [entry(f"m{i}", f"p{i}@x.example") for i in range(5)])
    assert [r.status for r in results] == ["transient"] * 5
    assert all("535" in r.detail and "password" in r.detail for r in results)
    assert srv.connections <= connections  # one login attempt per connection, not one per queued mail
    assert srv.accepted == []


def test_authentication_required_at_mail_from_is_transient_and_stops_the_batch():
    with FakeSmtp(mail="530 5.7.0 Authentication required") as srv:
        results = sender(srv.port).send([entry(f"m{i}", f"p{i}@x.example") for i in range(4)])
    assert [r.status for r in results] == ["transient"] * 4
    assert all("530" in r.detail for r in results)
    assert srv.verb_count("MAIL") == 1


def test_unreachable_server_is_transient_for_every_entry():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = sender(port, connections=2).send([entry(f"m{i}", "p@x.example") for i in range(3)])
    assert [r.status for r in results] == ["transient"] * 3


def test_only_rcpt_and_data_5xx_are_permanent_and_452_recipients_come_back():
    def data(rcpts):
        return "554 5.6.0 message rejected as spam" if "spam@x.example" in rcpts else "250 2.0.0 queued"

    with FakeSmtp(rcpt={"gone@x.example": "550 5.1.1 no such user",
                        "full@x.example": "452 4.2.2 mailbox over quota",
                        "full2@x.example": "452 4.2.2 mailbox over quota"}, data=data) as srv:
        results = by_key(sender(srv.port).send([
            entry("gone", "gone@x.example"),
            entry("partly", "ok@x.example", "full@x.example", "gone@x.example"),
            entry("all-full", "full@x.example", "full2@x.example"),
            entry("mixed", "gone@x.example", "full@x.example"),
            entry("spam", "spam@x.example"),
            entry("fine", "ok@x.example"),  # the connection is still good after all of that
        ]))
    assert results["gone"].status == "permanent" and "550" in results["gone"].detail
    assert results["partly"].status == "sent" and results["partly"].retry_rcpts == ("full@x.example",)
    assert "452" in results["partly"].detail and "550" in results["partly"].detail
    assert results["all-full"].status == "transient" and results["all-full"].retry_rcpts == ()
    assert results["mixed"].status == "permanent" and results["mixed"].retry_rcpts == ("full@x.example",)
    assert results["spam"].status == "permanent" and "554" in results["spam"].detail
    assert results["fine"].status == "sent" and results["fine"].retry_rcpts == ()
    assert ("ok@x.example",) in srv.accepted


def test_sender_refused_is_transient_not_permanent():
    with FakeSmtp(mail="553 5.7.1 sender address rejected") as srv:
        results = sender(srv.port).send([entry("a", "p@x.example"), entry("b", "q@x.example")])
    assert [r.status for r in results] == ["transient", "transient"]
    assert srv.verb_count("MAIL") == 2  # one mail's refusal does not stop the batch


# ======================================================================================
# the outbox: retry for days, requeue partial refusals, `outbox retry`
@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "store.json")
    yield s
    s.close()


class NoComposer:
    def render(self, out, *, message_id, date):  # pragma: no cover - nothing is rendered here
        raise AssertionError("not used")


def make_service(store) -> IntakeService:
    from mailbox.parse import parse
    from workflows.intake import IntakeSettings

    settings = IntakeSettings(support_address=SUPPORT, staff=frozenset({"s@x.example"}))
    outbox = Outbox(store=store, composer=NoComposer(), secret=b"k", support_address=SUPPORT)
    return IntakeService(store=store, settings=settings, parse=parse, outbox=outbox, secret=b"k")


def queue(store, key: str, *rcpts: str, at: datetime = NOW) -> None:
    with store.transaction():
        store.outbox_add(entry(key, *rcpts, at=at))


class ScriptedSender:
    """Answers each send with ``answer(entry) -> SendResult`` and records what it was given."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.sent: list = []

    def send(self, entries, on_result=None):
        out = []
        for e in entries:
            self.sent.append(e)
            r = self.answer(e)
            out.append(r)
            if on_result:
                on_result(r)
        return out


def test_transient_failures_are_retried_for_days_with_hourly_backoff(store):
    svc = make_service(store)
    queue(store, "ack-1", "p@x.example")
    down = ScriptedSender(lambda e: SendResult(key=e.key, status="transient",
                                               detail="SMTP connection failed: 535 bad password"))
    now, waits, reports = NOW, [], []
    for _ in range(1000):  # about 80 tries fit in 3 days; a build that never gives up fails, not hangs
        report = CycleReport()
        svc.outbox.drain(down, now, report)
        reports.append((now, report))
        e = store.outbox()[0]
        if e.status != "pending":
            break
        nxt = e.next_attempt
        waits.append(nxt - now)
        now = nxt
    assert e.status == "failed" and e.attempts > 8
    assert timedelta(days=3) <= now - NOW <= timedelta(days=3, hours=1)
    # 1 minute first, growing, never more than an hour (README: "1 min, growing to hourly").
    assert waits[0] == timedelta(minutes=1) and waits == sorted(waits) and max(waits) == timedelta(hours=1)
    # One "still not sent" line per cycle once it has failed for an hour, none before.
    for at, report in reports[:-1]:
        stuck = [p for p in report.problems if "still not sent" in p]
        assert len(stuck) == (1 if at - NOW >= timedelta(hours=1) else 0), (at, report.problems)
        if stuck:
            assert "ack-1" in stuck[0] and "535" in stuck[0]
    assert any("could not send ack-1" in p for p in reports[-1][1].problems)


def test_mail_failing_for_now_is_retried_until_three_days_after_its_first_failure(store):
    svc = make_service(store)
    queue(store, "ack-1", "p@x.example")
    down = ScriptedSender(lambda e: SendResult(key=e.key, status="transient", detail="421 4.3.2 try later"))
    svc.outbox.drain(down, NOW, CycleReport())  # the first failure
    svc.outbox.drain(down, NOW + timedelta(days=3) - timedelta(minutes=1), CycleReport())
    e = store.outbox()[0]
    assert (e.status, e.attempts) == ("pending", 2)  # just under 3 days: still trying
    # Its next try falls due just after the 3 days: then it is failed, and staff are told.
    nxt = e.next_attempt
    assert NOW + timedelta(days=3) < nxt <= NOW + timedelta(days=3, minutes=10)
    report = CycleReport()
    svc.outbox.drain(down, nxt, report)
    e = store.outbox()[0]
    assert (e.status, e.attempts) == ("failed", 3) and len(down.sent) == 3
    assert any("could not send ack-1" in p and "421" in p for p in report.problems)


def test_an_overnight_outage_loses_nothing(store):
    svc = make_service(store)
    queue(store, "ack-1", "p@x.example")
    down = ScriptedSender(lambda e: SendResult(key=e.key, status="transient", detail="connection refused"))
    now = NOW
    while now < NOW + timedelta(hours=14):  # the old limit (8 attempts) was about 4 hours
        svc.outbox.drain(down, now, CycleReport())
        now += timedelta(minutes=5)
    assert store.outbox()[0].status == "pending"
    up = ScriptedSender(lambda e: SendResult(key=e.key, status="sent"))
    svc.outbox.drain(up, now + timedelta(hours=1), CycleReport())
    assert store.outbox()[0].status == "sent" and len(up.sent) == 1


def test_recipients_refused_for_now_get_a_copy_of_their_own(store):
    svc = make_service(store)
    queue(store, "notify-1", "a@x.example", "full@x.example")
    partial = ScriptedSender(lambda e: SendResult(key=e.key, status="sent",
                                                  detail="refused: full@x.example: 452 over quota",
                                                  retry_rcpts=("full@x.example",)))
    report = CycleReport()
    svc.outbox.drain(partial, NOW, report)
    rows = {e.key: e for e in store.outbox()}
    assert rows["notify-1"].status == "sent"
    copy = rows["notify-1#retry1"]
    assert copy.status == "pending" and copy.rcpt_to == ("full@x.example",)
    assert copy.raw == rows["notify-1"].raw and copy.message_id == rows["notify-1"].message_id
    assert copy.next_attempt > NOW
    # Later the copy goes out, to that recipient only.
    ok = ScriptedSender(lambda e: SendResult(key=e.key, status="sent"))
    svc.outbox.drain(ok, NOW + timedelta(minutes=5), CycleReport())
    assert [(e.key, e.rcpt_to) for e in ok.sent] == [("notify-1#retry1", ("full@x.example",))]
    assert {e.status for e in store.outbox()} == {"sent"}


def write_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "pd.toml"
    cfg.write_text(f'[support]\naddress = "{SUPPORT}"\nstaff = ["s@x.example"]\n[store]\npath = "store.json"\n')
    return cfg


def test_outbox_cli_lists_and_puts_failed_mail_back(tmp_path, capsys):
    import run

    cfg = write_config(tmp_path)
    with open_store(tmp_path / "store.json") as s:
        queue(s, "ack-1", "p@x.example")
        queue(s, "ack-2", "q@x.example")
        queue(s, "ack-3", "r@x.example")
        with s.transaction():
            s.outbox_save(replace(s.outbox_entry("ack-1"), status="failed", attempts=40, detail="535 bad password",
                                  first_failed_at=NOW, failure_reported=NOW))
            s.outbox_save(replace(s.outbox_entry("ack-2"), status="failed", attempts=3, detail="timeout"))
            s.outbox_save(replace(s.outbox_entry("ack-3"), status="sent"))
    assert run.main(["--config", str(cfg), "outbox", "list", "--status", "failed"]) == 0
    out = capsys.readouterr().out
    assert "ack-1" in out and "ack-2" in out and "ack-3" not in out and "535 bad password" in out
    assert run.main(["--config", str(cfg), "outbox", "retry", "ack-3"]) == 2  # a bad argument
    assert "sent, not failed" in capsys.readouterr().err
    assert run.main(["--config", str(cfg), "outbox", "retry", "ack-1"]) == 0
    with open_store(tmp_path / "store.json") as s:
        e = {r.key: r for r in s.outbox()}
        assert e["ack-1"].status == "pending" and e["ack-1"].attempts == 0
        assert not e["ack-1"].first_failed_at and not e["ack-1"].failure_reported
        assert e["ack-2"].status == "failed"
    assert run.main(["--config", str(cfg), "outbox", "retry", "--all-failed"]) == 0
    assert "1 failed mail put back" in capsys.readouterr().out
    with open_store(tmp_path / "store.json") as s:
        assert {r.status for r in s.outbox("pending")} == {"pending"} and len(s.outbox("pending")) == 2
        # Due at once: the next drain sends both.
        sent = ScriptedSender(lambda e: SendResult(key=e.key, status="sent"))
        make_service(s).outbox.drain(sent, NOW, CycleReport())
        assert sorted(e.key for e in sent.sent) == ["ack-1", "ack-2"]


# ======================================================================================
# cycle(): an IMAP outage still fires what is due and drains the outbox
class DownSource:
    def __init__(self, before: list[RawMail] = ()) -> None:
        self.before = list(before)

    def fetch_new(self, store):
        yield from self.before
        raise Transient("cannot reach IMAP server 127.0.0.1:993: connection refused")

    def mark_done(self, raw):
        pass

    def quarantine(self, raw, reason):
        pass


def test_cycle_runs_ticks_and_drain_when_imap_is_down(store):
    import run

    svc = make_service(store)
    queue(store, "old-1", "p@x.example")  # queued before the outage
    fired: list[datetime] = []

    def tick(now, report):  # an escalation, say: queued by a tick while IMAP is down
        fired.append(now)
        with store.transaction():
            store.outbox_add(entry("esc-1", "boss@x.example", at=now, kind="escalation"))

    out = ScriptedSender(lambda e: SendResult(key=e.key, status="sent"))
    desk = Desk(store=store, outbox=svc.outbox, intake=svc, source=DownSource(), sender=out, now=run.Clock(NOW).now,
                extra_ticks=[tick])
    with pytest.raises(Transient) as caught:
        cycle(desk)
    assert fired, "the tick did not run"
    assert [e.key for e in out.sent] == ["old-1", "esc-1"]  # the final drain ran after the tick
    assert caught.value.report.counts["sent"] == 2


# ======================================================================================
# IMAP with a fake client
def imap_settings(**kw) -> ImapSettings:
    return ImapSettings(**{"host": "127.0.0.1", "port": 1, "security": "none", "username": "desk", **kw})


class FakeClient:
    def __init__(self, *, select=None, login=None, caps=("IDLE",), sizes=None) -> None:
        self.select_error, self.login_error = select, login
        self.caps = set(caps)
        self.calls: list[tuple] = []
        self.sizes = sizes or {}
        self.normalise_times = True

    def login(self, user, password):
        if self.login_error:
            raise self.login_error

    def select_folder(self, folder, readonly=False):
        self.calls.append(("select", folder))
        if self.select_error:
            raise self.select_error
        return {b"UIDVALIDITY": 7}

    def logout(self):
        self.calls.append(("logout",))

    def shutdown(self):
        pass

    def has_capability(self, cap):
        return cap in self.caps

    def folder_exists(self, folder):
        return True

    def __getattr__(self, name):  # copy, delete_messages, expunge, uid_expunge, move, add_flags
        return lambda *a, **k: self.calls.append((name, *a))

    def fetch(self, uids, what):
        self.calls.append(("fetch", tuple(uids), tuple(what)))
        if what == ["RFC822.SIZE"]:
            return {u: {b"RFC822.SIZE": self.sizes[u]} for u in uids if u in self.sizes}
        return {u: {b"BODY[]": b"x", b"INTERNALDATE": NOW} for u in uids}


@pytest.mark.parametrize("error", [IMAPClientAbortError("socket error: EOF"),
                                   IMAPClientAbortError("command: SELECT => BYE Server shutting down."),
                                   ConnectionResetError(104, "reset"), socket.timeout("timed out")])
def test_a_dropped_connection_on_select_is_transient_not_config_error(error):
    src = ImapSource(imap_settings(), "pw")
    src.client = FakeClient(select=error)
    with pytest.raises(Transient):
        src._select()
    assert src.client is None  # closed: the next call reconnects


def test_select_refused_is_config_error_only_at_first_connect():
    src = ImapSource(imap_settings(), "pw")
    src.client = FakeClient(select=IMAPClientError("select failed: NO Mailbox doesn't exist: Inbx"))
    with pytest.raises(ConfigError, match=r"\[imap\] folder"):
        src._select()
    src.client = FakeClient()
    src._select()
    src.client = FakeClient(select=IMAPClientError("select failed: NO [SERVERBUG] Internal error"))
    with pytest.raises(Transient):
        src._select()


def test_login_refused_after_a_successful_login_is_transient(monkeypatch):
    clients = iter([FakeClient(), FakeClient(login=LoginError("login failed: NO [AUTHENTICATIONFAILED]"))])
    monkeypatch.setattr(imap_mod, "IMAPClient", lambda *a, **k: next(clients))
    src = ImapSource(imap_settings(), "pw")
    src.connect()
    src.close()
    with pytest.raises(Transient, match="restarting"):
        src.connect()


def test_login_refused_at_first_connect_is_config_error_unless_unavailable(monkeypatch):
    src = ImapSource(imap_settings(), "pw")
    refused = LoginError("NO [AUTHENTICATIONFAILED]")
    monkeypatch.setattr(imap_mod, "IMAPClient", lambda *a, **k: FakeClient(login=refused))
    with pytest.raises(ConfigError, match="password"):
        src.connect()
    monkeypatch.setattr(imap_mod, "IMAPClient",
                        lambda *a, **k: FakeClient(login=LoginError("NO [UNAVAILABLE] Temporary auth failure")))
    with pytest.raises(Transient):
        src.connect()


def test_fetch_after_a_dropped_connection_reconnects_at_once(monkeypatch):
    fresh = FakeClient(sizes={1: 10})
    monkeypatch.setattr(imap_mod, "IMAPClient", lambda *a, **k: fresh)

    class Cursorless:
        def cursor(self, folder):
            return None

    src = ImapSource(imap_settings(), "pw")
    src.client = FakeClient(select=IMAPClientAbortError("socket error: EOF"))  # kept from the last cycle
    fresh.search = lambda criteria: [1]
    assert [r.uid for r in src.fetch_new(Cursorless())] == [1]
    assert src.client is fresh


def test_an_intake_stopped_half_way_leaves_the_next_wait_unsure():
    """An error in the intake (a store write, a bug) abandons fetch_new after its SEARCH: the mail not
    taken yet must not look handed out, or the next wait would idle past it until the next poll."""
    class Client(FakeClient):
        def search(self, criteria):
            return [6, 7]

    class AtFive:
        def cursor(self, folder):
            return {"uidvalidity": 7, "last_uid": 5}

    src = ImapSource(imap_settings(), "pw")
    src.client = Client(sizes={6: 10, 7: 10})
    mails = src.fetch_new(AtFive())
    assert next(mails).uid == 6
    mails.close()  # the caller failed while taking in UID 6
    assert src.handed_out is None and src.poll_new() is True
    assert [r.uid for r in src.fetch_new(AtFive())] == [6, 7]
    assert src.handed_out == 7 and src.poll_new() is False


@pytest.mark.parametrize("permanent, done_folder, again", [
    ((b"\\Seen", b"\\*"), None, ["UID", "1:5", "UNDELETED", "UNKEYWORD", "$PartnerdeskDone"]),
    ((b"\\Seen", b"$PartnerdeskDone"), None, ["UID", "1:5", "UNDELETED", "UNKEYWORD", "$PartnerdeskDone"]),
    ((b"\\Seen",), None, None),  # the keyword would never stick: everything would be read again, every time
    ((b"\\Seen",), "Done", ["UID", "1:5", "UNDELETED"]),  # taken-in mail leaves the folder
])
def test_mail_below_the_cursor_is_read_again_only_if_it_was_never_marked_done(permanent, done_folder, again):
    class Client(FakeClient):
        def select_folder(self, folder, readonly=False):
            return {b"UIDVALIDITY": 7, b"PERMANENTFLAGS": permanent}

        def search(self, criteria):
            self.calls.append(("search", criteria))
            return [3] if "UNDELETED" in criteria else [6]

    class AtFive:
        def cursor(self, folder):
            return {"uidvalidity": 7, "last_uid": 5}

    src = ImapSource(imap_settings(done_folder=done_folder), "pw")
    src.client = Client(sizes={3: 10, 6: 10})
    uids = [r.uid for r in src.fetch_new(AtFive())]
    searches = [c[1] for c in src.client.calls if c[0] == "search"]
    assert searches == ([again] if again else []) + [["UID", "6:*"]]
    assert uids == ([3, 6] if again else [6])


@pytest.mark.parametrize("key", ["done_folder", "quarantine_folder"])
def test_done_or_quarantine_folder_equal_to_the_read_folder_is_a_config_error(key):
    with pytest.raises(ConfigError, match=rf"\[imap\] {key}"):
        ImapSource(imap_settings(folder="INBOX", **{key: "inbox"}), "pw")
    ImapSource(imap_settings(folder="INBOX", **{key: "Elsewhere"}), "pw")


def test_move_without_uidplus_never_expunges(caplog):
    src = ImapSource(imap_settings(), "pw")
    src.client = FakeClient(caps=())
    src._move(5, "Done")
    names = [c[0] for c in src.client.calls]
    assert "copy" in names and "delete_messages" in names
    assert "expunge" not in names and "uid_expunge" not in names
    assert "UIDPLUS" in caplog.text
    src.client = FakeClient(caps=("UIDPLUS",))
    src._move(6, "Done")
    assert ("uid_expunge", [6]) in src.client.calls and "expunge" not in [c[0] for c in src.client.calls]


def test_bodies_are_fetched_in_batches_capped_by_size_and_count():
    mb = 1024 * 1024
    sizes = {1: 10 * mb, 2: 10 * mb, 3: 10 * mb, 4: 30 * mb, **{u: 1000 for u in range(10, 460)}}
    c = FakeClient(sizes=sizes)
    uids = sorted(sizes) + [999]  # 999: expunged meanwhile, no size
    batches = list(ImapSource._batches(c, uids))
    assert batches[0] == [1, 2] and batches[1] == [3] and batches[2] == [4]  # 25 MB cap; a big one alone
    assert [len(b) for b in batches[3:]] == [200, 200, 50]  # count cap
    assert sum(batches, []) == sorted(sizes)


def test_bye_during_idle_wakes_and_the_next_call_reconnects():
    src = ImapSource(imap_settings(), "pw")
    c = FakeClient()
    c.idle_check = lambda timeout: [(b"BYE", b"Server shutting down.")]
    c.search = lambda criteria: [3]  # nothing above what was handed out
    src.client, src.handed_out = c, 3
    assert src.wait_for_mail(5) is True
    assert src.client is None and "idle_done" not in [x[0] for x in c.calls]

    c = FakeClient()

    def eof(timeout):
        raise IMAPClientAbortError("socket error: EOF")

    c.idle_check = eof
    c.search = lambda criteria: [3]
    src.client, src.handed_out = c, 3
    assert src.wait_for_mail(5) is True and src.client is None


# ======================================================================================
# real Dovecot: `doveadm kick` drops our connection
def _kick(servers, user: str) -> None:
    subprocess.run(["doveadm", "-c", str(servers._conf), "kick", user], check=True, capture_output=True, timeout=20)


def _wait_logged_in(servers, user: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        who = subprocess.run(["doveadm", "-c", str(servers._conf), "who", "-1", user], capture_output=True,
                             text=True, timeout=20)
        if user in who.stdout:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{user} did not log in again within {timeout} s")


def _message(n: int, to: str) -> bytes:
    m = EmailMessage()
    m["From"] = "someone@example.test"
    m["To"] = to
    m["Subject"] = f"kick test {n}"
    m["Message-ID"] = f"<kick{n}.{time.monotonic_ns()}@example.test>"
    m.set_content(f"body {n}")
    return m.as_bytes()


class _Cursor:
    def __init__(self) -> None:
        self.last = 0

    def cursor(self, folder):
        return {"uidvalidity": self.uidvalidity, "last_uid": self.last} if self.last else None


def _fetch(src: ImapSource, cur: _Cursor) -> list[RawMail]:
    """What the intake does with the source: fetch, record (here: the cursor), mark done."""
    raws = list(src.fetch_new(cur))
    if raws:
        cur.uidvalidity, cur.last = raws[-1].uidvalidity, raws[-1].uid
    for raw in raws:
        src.mark_done(raw)
    return raws


def _source(desk) -> ImapSource:
    return ImapSource(ImapSettings(host="127.0.0.1", port=desk.servers.imap_port, security="none",
                                   username=desk.support, timeout=10.0), "pw")


@pytest.mark.integration
def test_dovecot_kick_between_fetches_reconnects(desk):
    s = desk.servers
    src, cur = _source(desk), _Cursor()
    try:
        s.deliver(desk.support, _message(1, desk.support))
        assert [r.uid for r in _fetch(src, cur)] == [1]
        _kick(s, desk.support)
        s.deliver(desk.support, _message(2, desk.support))
        assert [r.uid for r in _fetch(src, cur)] == [2]  # reconnected on its own, no Transient
        # Marking works on the new connection too.
        src.mark_done(RawMail(source_key="x", data=b"", received_at=NOW, folder="INBOX",
                              uidvalidity=cur.uidvalidity, uid=2))

        # Kicked while waiting in IDLE (for up to an hour): the kick ends the wait, and the next fetch
        # reconnects. `given_up` is only a way out for a broken build: set if the kick did not end the IDLE.
        given_up = threading.Event()

        def kick_when_idle() -> None:
            deadline = time.monotonic() + 30
            while s.imap_commands(desk.support) != ["IDLE"] and time.monotonic() < deadline:
                time.sleep(0.02)
            _kick(s, desk.support)

        kicker = threading.Thread(target=kick_when_idle)
        way_out = threading.Timer(60, given_up.set)
        kicker.start()
        way_out.start()
        try:
            assert src.wait_for_mail(3600, should_stop=given_up.is_set) is True
        finally:
            way_out.cancel()
            kicker.join()
        assert not given_up.is_set(), "the IDLE went on after the server dropped the connection"
        assert src.client is None  # the dropped connection was closed: the next call reconnects
        s.deliver(desk.support, _message(3, desk.support))
        assert [r.uid for r in _fetch(src, cur)] == [3]
    finally:
        src.close()


@pytest.mark.integration
def test_mail_delivered_between_two_waits_wakes_the_next_wait_at_once(desk):
    """Delivered while the daemon was busy (not in IDLE): the next wait returns at once. (Here Dovecot
    would also announce it within the wait; tests/test_imap_idle.py holds the ask before IDLE to it, and
    the next test is the case where only that ask finds the mail.)"""
    s = desk.servers
    src, cur = _source(desk), _Cursor()
    try:
        s.deliver(desk.support, _message(1, desk.support))
        assert [r.uid for r in _fetch(src, cur)] == [1]
        assert src.wait_for_mail(0.2) is False  # nothing new: a real wait, ended by its timeout
        s.deliver(desk.support, _message(2, desk.support))
        assert src.wait_for_mail(0.2) is True
        assert [r.uid for r in _fetch(src, cur)] == [2]
    finally:
        src.close()


@pytest.mark.integration
def test_mail_delivered_during_the_intake_wakes_the_next_wait(desk):
    """A burst: more mail lands while the intake is fetching and marking. Dovecot announces it in the
    answer to that FETCH or STORE, which keeps no EXISTS, and never again; the next wait must still see
    it, not leave it for the next poll minutes later."""
    s = desk.servers
    src, cur = _source(desk), _Cursor()
    try:
        s.deliver(desk.support, _message(1, desk.support))
        taken = []
        for raw in src.fetch_new(cur):  # the SEARCH has run: the rest arrive while it is worked on
            for n in (2, 3):
                s.deliver(desk.support, _message(n, desk.support))
            src.mark_done(raw)
            cur.uidvalidity, cur.last = raw.uidvalidity, raw.uid
            taken.append(raw.uid)
        src.mark_done(RawMail(source_key="x", data=b"", received_at=NOW, folder="INBOX",
                              uidvalidity=cur.uidvalidity, uid=1))  # one more command after the arrivals
        assert taken == [1]
        assert src.wait_for_mail(0.2) is True
        assert [r.uid for r in _fetch(src, cur)] == [2, 3]
        assert src.wait_for_mail(0.2) is False
    finally:
        src.close()


@pytest.mark.integration
def test_daemon_survives_a_kick_and_keeps_taking_in_mail(desk):
    import signal
    import sys

    from tests.conftest import ROOT

    s = desk.servers
    env = dict(__import__("os").environ, PD_TEST_PASSWORD="pw")
    daemon = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--config", str(desk.config), "run"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=desk.dir, env=env)
    try:
        for _ in range(2):  # kicked twice, each time once it is back
            _wait_logged_in(s, desk.support)
            assert daemon.poll() is None, daemon.communicate()[1]
            _kick(s, desk.support)
        s.deliver(desk.support, _message(1, desk.support).replace(b"someone@example.test", desk.stranger.encode()))
        s.wait_for(desk.stranger, 1, timeout=20)  # the ack: the daemon took the mail in after the kicks
        assert daemon.poll() is None, daemon.communicate()[1]
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=20)
    assert daemon.returncode == 0, err
    assert "config error" not in err and "Traceback" not in err

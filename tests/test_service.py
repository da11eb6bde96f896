"""The intake cycle's guarantees with fake mail ports and the real TinyDB store on disk:
nothing lost, nothing twice, one bad message never blocks the rest."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.message import EmailMessage

import pytest

from mailbox.compose import Composer
from mailbox.parse import parse
from store.tinystore import Store
from workflows.intake import IntakeSettings
from service.ports import RawMail, SendResult
from service.intake import IntakeService
from service.outbox import Outbox
from service.report import CycleReport

SUPPORT = "support@openatrium.example"
NOW = datetime(2026, 11, 30, 15, 0, tzinfo=timezone.utc)


def raw_mail(n: int, *, uid: int | None = None, uidvalidity: int = 1, frm: str = "someone@elsewhere.example",
             subject: str | None = None) -> RawMail:
    m = EmailMessage()
    m["From"] = frm
    m["To"] = SUPPORT
    m["Subject"] = subject or f"Question {n}"
    m["Message-ID"] = f"<q{n}@elsewhere.example>"
    m.set_content(f"body {n}")
    uid = uid if uid is not None else n
    return RawMail(source_key=f"imap:INBOX:{uidvalidity}:{uid}", data=m.as_bytes(), received_at=NOW,
                   folder="INBOX", uidvalidity=uidvalidity, uid=uid)


def automatic_mail(frm: str, subject: str, message_id: str, body: str, in_reply_to: str | None = None) -> RawMail:
    """An auto-reply or bounce (Auto-Submitted: auto-replied) arriving in the spool."""
    m = EmailMessage()
    m["From"] = frm
    m["To"] = SUPPORT
    m["Subject"] = subject
    m["Auto-Submitted"] = "auto-replied"
    if in_reply_to:
        m["In-Reply-To"] = in_reply_to
    m["Message-ID"] = message_id
    m.set_content(body)
    return RawMail(source_key=f"spool:{message_id}", data=m.as_bytes(), received_at=NOW)


class FakeSource:
    def __init__(self) -> None:
        self.done: list[str] = []
        self.quarantined: list[tuple[str, str]] = []

    def mark_done(self, raw: RawMail) -> None:
        self.done.append(raw.source_key)

    def quarantine(self, raw: RawMail, reason: str) -> None:
        self.quarantined.append((raw.source_key, reason))


class RecordingSender:
    def __init__(self, status: str = "sent") -> None:
        self.sent: list = []
        self.status = status

    def send(self, entries, on_result=None):
        self.sent += entries
        return [SendResult(key=e.key, status=self.status, detail="550 no such user" if self.status == "permanent"
                           else "") for e in entries]


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "store.json")
    yield s
    s.close()


def service(store, **kw) -> IntakeService:
    composer = kw.pop("composer", Composer(support_address=SUPPORT, support_name="Open Atrium Support"))
    outbox = Outbox(store=store, composer=composer, secret=b"k", support_address=SUPPORT)
    return IntakeService(store=store, settings=IntakeSettings(support_address=SUPPORT, staff=frozenset({"s@x.example"})),
                         parse=parse, outbox=outbox, secret=b"k", **kw)


def test_decision_and_mail_are_stored_before_sending_and_sent_once(store):
    svc, src, report = service(store), FakeSource(), CycleReport()
    svc.take_in(raw_mail(1), NOW, report, src)
    assert src.done == ["imap:INBOX:1:1"]
    pending = store.outbox("pending")
    assert {e.kind for e in pending} == {"ack", "notify"}  # queued, nothing sent yet
    assert store.cursor("INBOX") == {"uidvalidity": 1, "last_uid": 1}

    sender = RecordingSender()
    svc.outbox.drain(sender, NOW, report)
    svc.outbox.drain(sender, NOW, report)  # a second pass sends nothing
    assert len(sender.sent) == 2 and not store.outbox("pending")
    # The same message again (a crash before mark_done, a second copy): nothing new.
    svc.take_in(raw_mail(1, uid=2), NOW, report, src)
    svc.outbox.drain(sender, NOW, report)
    assert len(sender.sent) == 2 and report.counts["duplicates"] == 1


def test_crash_during_send_leaves_mail_queued(store):
    svc, report = service(store), CycleReport()
    svc.take_in(raw_mail(1), NOW, report)

    class Dies:
        def send(self, entries, on_result=None):
            raise KeyboardInterrupt  # the process is killed mid-send

    with pytest.raises(KeyboardInterrupt):
        svc.outbox.drain(Dies(), NOW, report)
    sender = RecordingSender()
    svc.outbox.drain(sender, NOW, report)
    assert len(sender.sent) == 2


def test_uidvalidity_change_rescans_without_duplicates(store):
    svc, report = service(store), CycleReport()
    for n in (1, 2, 3):
        svc.take_in(raw_mail(n), NOW, report)
    # The server renumbered everything: same mail, new UIDVALIDITY and UIDs.
    for n in (1, 2, 3):
        svc.take_in(raw_mail(n, uid=n + 10, uidvalidity=2), NOW, report)
    assert len(store.threads()) == 3 and report.counts["duplicates"] == 3
    assert store.cursor("INBOX") == {"uidvalidity": 2, "last_uid": 13}


def test_mail_received_before_the_history_cutoff_is_recorded_and_never_answered(store):
    cutoff = NOW - timedelta(hours=2)  # the first start
    svc, src, report = service(store, history_cutoff=cutoff), FakeSource(), CycleReport()
    old = raw_mail(1, frm="old@elsewhere.example")
    old = RawMail(source_key=old.source_key, data=old.data, received_at=cutoff - timedelta(seconds=1),
                  folder="INBOX", uidvalidity=1, uid=1)
    new = raw_mail(2, frm="new@elsewhere.example")
    new = RawMail(source_key=new.source_key, data=new.data, received_at=cutoff,  # the very second: new mail
                  folder="INBOX", uidvalidity=1, uid=2)
    svc.take_in_many([old, new], NOW, report, src)
    by_requester = {t.requester: t for t in store.threads()}
    assert by_requester["old@elsewhere.example"].state == "closed"  # kept, as history
    assert by_requester["old@elsewhere.example"].due_at is None
    assert by_requester["new@elsewhere.example"].state == "new"
    assert sorted((e.kind, tuple(e.rcpt_to)) for e in store.outbox()) == [
        ("ack", ("new@elsewhere.example",)), ("notify", ("s@x.example",))]  # nothing about the old mail
    assert (report.counts["history"], report.counts["new_threads"], report.counts["acks"]) == (1, 1, 1)
    assert src.done == ["imap:INBOX:1:1", "imap:INBOX:1:2"]  # history is taken in, not left behind


def test_the_history_cutoff_is_the_first_start_in_whole_seconds_and_is_kept(tmp_path):
    from contextlib import ExitStack

    import run
    from config.settings import load_file

    cfg = tmp_path / "pd.toml"
    cfg.write_text(f'[support]\naddress = "{SUPPORT}"\nstaff = ["s@x.example"]\n'
                   f'[imap]\nhost = "127.0.0.1"\nport = 9\nsecurity = "none"\nusername = "u"\npassword = "pw"\n'
                   f'[smtp]\nhost = "127.0.0.1"\nport = 9\nsecurity = "none"\n[store]\npath = "store.json"\n')
    settings = load_file(str(cfg))
    for started in (NOW, NOW + timedelta(days=3)):  # the first start, then a restart days later
        with ExitStack() as stack:  # building connects nowhere
            desk = run.Wiring(settings, run.Clock(started), stack).desk()
            assert desk.intake.history_cutoff == NOW  # the clock had run on by a few microseconds
    # A configured cut-off wins and is not stored.
    cfg.write_text(cfg.read_text() + '[intake]\nhistory_before = "2026-11-01T00:00:00-05:00"\n')
    with ExitStack() as stack:
        desk = run.Wiring(load_file(str(cfg)), run.Clock(NOW), stack).desk()
        assert desk.intake.history_cutoff == datetime(2026, 11, 1, 5, tzinfo=timezone.utc)


def test_bad_input_and_bugs_are_quarantined_and_the_rest_goes_on(store):
    class Fragile(Composer):
        def render(self, out, *, message_id, date):
            if "boom" in out.subject:
                raise ZeroDivisionError("template bug")
            return super().render(out, message_id=message_id, date=date)

    svc = service(store, composer=Fragile(support_address=SUPPORT, support_name="S"))
    src, report = FakeSource(), CycleReport()
    empty = RawMail(source_key="imap:INBOX:1:1", data=b"  \r\n", received_at=NOW, folder="INBOX", uidvalidity=1, uid=1)
    assert svc.take_in(empty, NOW, report, src) == "quarantined"
    assert svc.take_in(raw_mail(2, subject="boom"), NOW, report, src) == "quarantined"
    assert svc.take_in(raw_mail(3), NOW, report, src) == "thread-new"

    q = {r["source"]: r for r in store.quarantined()}
    assert q["imap:INBOX:1:1"]["kind"] == "bad-input" and "empty" in q["imap:INBOX:1:1"]["reason"]
    assert q["imap:INBOX:1:2"]["kind"] == "bug" and "ZeroDivisionError" in q["imap:INBOX:1:2"]["reason"]
    assert "Traceback" in q["imap:INBOX:1:2"]["reason"]
    assert [k for k, _ in src.quarantined] == ["imap:INBOX:1:1", "imap:INBOX:1:2"]
    assert src.done == ["imap:INBOX:1:3"]
    # The failed decision left nothing half-written: one thread, only its mail queued.
    assert [t.subject for t in store.threads()] == ["Question 3"]
    assert store.cursor("INBOX")["last_uid"] == 3
    assert report.counts["quarantined"] == 2
    # The summary counts what was recorded: the rolled-back decision made no thread and queued no ack.
    assert (report.counts["new_threads"], report.counts["acks"], report.counts["notifications"]) == (1, 1, 1)
    assert len(report.actions) == 1 and report.actions[0].startswith("imap:INBOX:1:3: ")


def test_transient_failures_back_off_and_permanent_ones_are_reported(store):
    svc, report = service(store), CycleReport()
    svc.take_in(raw_mail(1), NOW, report)
    svc.outbox.drain(RecordingSender("transient"), NOW, report)
    entry = store.outbox("pending")[0]
    assert entry.attempts == 1 and entry.next_attempt > NOW
    # Not due again before the backoff has passed.
    sender = RecordingSender("permanent")
    svc.outbox.drain(sender, NOW + timedelta(seconds=10), report)
    assert sender.sent == []
    svc.outbox.drain(sender, NOW + timedelta(minutes=2), report)
    assert {e.status for e in store.outbox()} == {"failed"}
    assert any("550 no such user" in p for p in report.problems)


def test_ack_rate_limit_holds_across_messages(store):
    svc, report = service(store), CycleReport()
    for n in range(6):
        svc.take_in(raw_mail(n, frm="loop@elsewhere.example"), NOW + timedelta(minutes=n), report)
    acks = [e for e in store.outbox() if e.kind == "ack"]
    assert len(acks) == 3 and report.counts["new_threads"] == 6
    # An hour later the address may be answered again.
    svc.take_in(raw_mail(99, frm="loop@elsewhere.example"), NOW + timedelta(hours=2), report)
    assert len([e for e in store.outbox() if e.kind == "ack"]) == 4


def test_bounce_of_our_notification_does_not_loop(store):
    svc, report = service(store), CycleReport()
    bounce = automatic_mail("MAILER-DAEMON@mx.example", "Undelivered Mail Returned to Sender", "<bounce1@mx.example>",
                            "could not deliver to s@x.example")
    svc.take_in(bounce, NOW, report)
    assert store.outbox() == [] and len(store.threads()) == 1


def test_a_reused_message_id_on_a_different_mail_is_kept(store):
    svc, report = service(store), CycleReport()
    svc.take_in(raw_mail(1), NOW, report)
    other = raw_mail(2)
    other = RawMail(source_key="imap:INBOX:1:2", data=other.data.replace(b"<q2@", b"<q1@"), received_at=NOW,
                    folder="INBOX", uidvalidity=1, uid=2)
    assert svc.take_in(other, NOW, report) == "thread-new"
    assert [t.subject for t in store.threads()] == ["Question 1", "Question 2"]
    assert report.counts["duplicates"] == 0


def dsn(about_message_id: str, n: int) -> RawMail:
    raw = (f"From: MAILER-DAEMON@mx.example\r\nTo: {SUPPORT}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
           f"Message-ID: <dsn{n}@mx.example>\r\nAuto-Submitted: auto-replied\r\n"
           "Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n"
           "--b\r\nContent-Type: text/plain\r\n\r\n<gone@elsewhere.example>: user unknown\r\n"
           "--b\r\nContent-Type: message/delivery-status\r\n\r\nStatus: 5.1.1\r\n"
           f"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: {SUPPORT}\r\nMessage-ID: {about_message_id}\r\n"
           "--b--\r\n").encode()
    return RawMail(source_key=f"spool:dsn{n}", data=raw, received_at=NOW)


def test_bounce_of_an_ack_tells_staff_once_and_a_bounced_notification_only_records(store):
    svc, report = service(store), CycleReport()
    svc.take_in(raw_mail(1), NOW, report)
    by_kind = {e.kind: e for e in store.outbox()}
    svc.take_in(dsn(by_kind["ack"].message_id, 1), NOW, report)
    notices = [e for e in store.outbox() if e.kind == "bounce-notice"]
    assert len(notices) == 1 and notices[0].rcpt_to == ("s@x.example",)
    assert "NOT delivered" in notices[0].raw or "NOT=20delivered" in notices[0].raw
    # A bounce of the staff notification (or of the notice itself) is recorded, never mailed: no loop.
    svc.take_in(dsn(by_kind["notify"].message_id, 2), NOW, report)
    svc.take_in(dsn(notices[0].message_id, 3), NOW, report)
    assert len([e for e in store.outbox() if e.kind == "bounce-notice"]) == 1
    [thread] = store.threads()
    assert [e.kind for e in thread.events].count("bounce") == 3 and report.counts["bounces"] == 3


def test_out_of_office_answering_a_mailing_does_not_notify_staff(store):
    svc, report = service(store), CycleReport()
    with store.transaction():  # a mailing we sent (no thread)
        store.record_message("<oa-0.call-invite.aaa.bbb@openatrium.example>", direction="out", thread_id=None,
                             kind="call-invite", to=["p@partner.example"])
    ooo = automatic_mail("p@partner.example", "Automatic reply: State of Open Atrium", "<ooo@partner.example>",
                         "Away until Monday", in_reply_to="<oa-0.call-invite.aaa.bbb@openatrium.example>")
    svc.take_in(ooo, NOW, report)
    assert store.outbox() == [] and len(store.threads()) == 1


def test_send_results_survive_a_crash_through_the_journal(store, tmp_path):
    svc, report = service(store), CycleReport()
    for n in range(3):
        svc.take_in(raw_mail(n, frm=f"u{n}@elsewhere.example"), NOW, report)
    assert len(store.outbox("pending")) == 6

    class DiesAfterTwo:
        def send(self, entries, on_result=None):
            for e in entries[:2]:
                on_result(SendResult(key=e.key, status="sent"))
            raise KeyboardInterrupt  # killed mid-mailing, before the drain folds the journal in

    with pytest.raises(KeyboardInterrupt):
        svc.outbox.drain(DiesAfterTwo(), NOW, report)
    # A torn last line (the crash hit mid-append) is ignored, not fatal.
    with open(tmp_path / "store.json.journal", "ab") as f:
        f.write(b'{"key": "notify:OA-3')
    # The next process to open the store folds in what was recorded: those two are not sent again.
    fresh = Store(tmp_path / "store.json")
    try:
        assert len(fresh.outbox("sent")) == 2 and len(fresh.outbox("pending")) == 4
        assert (tmp_path / "store.json.journal").stat().st_size == 0
        sender = RecordingSender()
        service(fresh).outbox.drain(sender, NOW, CycleReport())
        assert len(sender.sent) == 4 and not fresh.outbox("pending")
    finally:
        fresh.close()


def test_a_large_drain_writes_the_store_once(store, tmp_path, monkeypatch):
    import store.atomic as atomic

    svc, report = service(store), CycleReport()
    svc.take_in_many([raw_mail(n, frm=f"u{n}@elsewhere.example") for n in range(30)], NOW, report)
    writes = []
    real = atomic.os.replace
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (writes.append(b), real(a, b)))
    svc.outbox.drain(RecordingSender(), NOW, report)
    assert len(store.outbox("sent")) == 60 and len(writes) == 1

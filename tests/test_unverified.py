"""Unproven staff-looking mail through the real intake service, store and composer (fake mail ports):
held, never acted on, one notice an hour to that address, and a reply to the notice sends it on.

tests/test_staffproof_intake_integration.py runs the whole forgery corpus through real servers."""

from __future__ import annotations

import email
import email.policy
import email.utils
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage

import pytest

from mailbox.compose import Composer
from mailbox.parse import parse
from service.intake import IntakeService
from service.outbox import Outbox
from service.ports import RawMail
from service.report import CycleReport
from store.tinystore import Store
from workflows import unverified
from workflows.calendar import BusinessCalendar
from workflows.intake import IntakeSettings
from workflows.model import Contact, Partner

SUPPORT = "support@openatrium.example"
YOUNG, ERIC = "young@devseed.example", "eric@devseed.example"
PARTNER = "antonio@nuvole.example"
SECRET = b"unverified tests secret"
T0 = datetime(2026, 11, 30, 15, 0, tzinfo=timezone.utc)  # Monday 10:00 ET


class Desk:
    def __init__(self, path, staff=(YOUNG, ERIC)) -> None:
        self.store = Store(path)
        self.settings = IntakeSettings(support_address=SUPPORT, staff=frozenset(staff), calendar=BusinessCalendar())
        self.outbox = Outbox(store=self.store, secret=SECRET, support_address=SUPPORT, staff=frozenset(staff),
                             composer=Composer(support_address=SUPPORT, support_name="Open Atrium Support"))
        self.intake = IntakeService(store=self.store, settings=self.settings, parse=parse, outbox=self.outbox,
                                    secret=SECRET)
        with self.store.transaction():
            self.store.save_partner(Partner(id="nuvole", name="Nuvole", plan="standard", renews_on=None, contacts=(
                Contact(partner_id="nuvole", name="Antonio", email=PARTNER, trained_on=datetime(2026, 6, 1).date()),)))
        self.n = 0
        self.report = CycleReport()

    def take(self, raw: bytes, at: datetime) -> str:
        self.n += 1
        return self.intake.take_in(RawMail(source_key=f"spool:{self.n}.eml", data=raw, received_at=at), at,
                                   self.report)

    def mails(self, kind: str, to: str | None = None) -> list[email.message.EmailMessage]:
        return [email.message_from_string(e.raw, policy=email.policy.default) for e in self.store.outbox()
                if e.kind == kind and (to is None or to in e.rcpt_to)]

    def thread(self):
        return self.store.thread("OA-1")


def mail(frm: str, text: str, *, to: str = SUPPORT, subject: str = "Re: [OA-1] Login broken",
         reply_to: EmailMessage | str | None = None, cc: str = "", headers: tuple = (),
         attachment: bytes | None = None) -> bytes:
    m = EmailMessage()
    for k, v in headers:
        m[k] = v
    m["From"] = frm
    m["To"] = to
    if cc:
        m["Cc"] = cc
    m["Subject"] = subject
    if "Message-ID" not in m:
        m["Message-ID"] = email.utils.make_msgid(domain=frm.partition("@")[2])
    if reply_to is not None:
        mid = reply_to if isinstance(reply_to, str) else reply_to["Message-ID"]
        m["In-Reply-To"] = mid
        m["References"] = mid
    m.set_content(text)
    if attachment is not None:
        m.add_attachment(attachment, maintype="application", subtype="octet-stream", filename="fix.patch")
    return m.as_bytes()


def reply(desk_mail: EmailMessage, frm: str, text: str, **kw) -> bytes:
    """What a mail client sends on Reply: To the Reply-To, In-Reply-To our Message-ID."""
    to = email.utils.parseaddr(str(desk_mail["Reply-To"]))[1]
    return mail(frm, text, to=to, subject="Re: " + str(desk_mail["Subject"]), reply_to=desk_mail, **kw)


@pytest.fixture
def desk(tmp_path):
    d = Desk(tmp_path / "store.json")
    d.take(mail(f"Antonio <{PARTNER}>", "I cannot log in.", subject="Login broken",
                headers=(("Message-ID", "<req@nuvole.example>"),)), T0)
    yield d
    d.store.close()


def nothing_moved(desk: Desk, before) -> None:
    t = desk.thread()
    assert (t.state, t.due_at, t.clock_started_at, t.first_response_at, t.assignee, t.ladder) == (
        before.state, before.due_at, before.clock_started_at, before.first_response_at, before.assignee, before.ladder)
    assert desk.mails("relay") == [] and desk.mails("close") == []


def test_each_staff_member_gets_a_copy_with_a_key_of_their_own(desk):
    [young] = desk.mails("notify", YOUNG)
    [eric] = desk.mails("notify", ERIC)
    assert young["To"] == YOUNG and eric["To"] == ERIC
    ry, re_ = (email.utils.parseaddr(str(m["Reply-To"]))[1] for m in (young, eric))
    assert ry.startswith("support+1k") and re_.startswith("support+1k") and ry != re_
    assert ry.partition("+")[2].partition("@")[0] in young["Message-ID"]
    assert desk.mails("ack", PARTNER)[0]["Reply-To"].addresses[0].addr_spec == SUPPORT  # partners get no key
    assert desk.report.counts["notifications"] == 1  # one mail, two copies


def test_a_genuine_reply_is_relayed_and_says_how_it_was_proven(desk):
    [note] = desk.mails("notify", YOUNG)
    assert desk.take(reply(note, f"Young <{YOUNG}>", "Fixed, try again."), T0 + timedelta(minutes=5)) == "answer"
    [relay] = desk.mails("relay")
    assert relay["To"] == PARTNER and "Fixed, try again." in relay.get_body(("plain",)).get_content()
    assert "support+" not in relay.as_string()


def test_a_key_quoted_in_the_answer_never_reaches_the_partner(desk):
    [note] = desk.mails("notify", YOUNG)
    key_address = email.utils.parseaddr(str(note["Reply-To"]))[1]
    desk.take(reply(note, YOUNG, f"Fixed. (Write to {key_address} if not.)"), T0 + timedelta(minutes=5))
    [relay] = desk.mails("relay")
    assert key_address not in relay.as_string() and f"Write to {SUPPORT} if not" in relay.as_string()
    [answer] = [e for e in desk.thread().events if e.kind == "answer"]
    assert answer.proof == "reply key (To)"
    assert desk.thread().state == "waiting_on_partner"


@pytest.mark.parametrize("text", ["Fixed, try again.", "#close", "#note internal", "#assign me", "#wait"])
def test_forged_staff_mail_moves_nothing_and_the_staff_member_is_told(desk, text):
    before = desk.thread()
    ack = desk.mails("ack")[0]
    forged = mail(f"Young <{YOUNG}>", text, reply_to=ack)  # the tag and the ack's Message-ID: all the partner has
    assert desk.take(forged, T0 + timedelta(minutes=5)) == "unverified"
    nothing_moved(desk, before)
    assert desk.mails("command") == [] and desk.mails("command-error") == []
    t = desk.thread()
    assert [e.kind for e in t.events if e.kind in ("answer", "note", "close", "assign", "wait")] == []
    [event] = [e for e in t.events if e.kind == "unverified"]
    assert event.by == YOUNG and "not proven" in event.detail and "no reply key" in event.detail
    [notice] = desk.mails(unverified.NOTICE_KIND)
    assert notice["To"] == YOUNG and notice["Auto-Submitted"] == "auto-replied"
    assert email.utils.parseaddr(str(notice["Reply-To"]))[1].startswith("support+1k")
    body = notice.get_body(("plain",)).get_content()
    assert text in body and "NOT sent" in body and "reply to this mail" in body
    assert desk.report.counts["unverified"] == 1


def test_at_most_one_notice_per_thread_and_address_an_hour(desk):
    ack = desk.mails("ack")[0]
    for minutes in (5, 10, 50):
        desk.take(mail(YOUNG, f"forged {minutes}", reply_to=ack), T0 + timedelta(minutes=minutes))
    desk.take(mail(ERIC, "forged as eric", reply_to=ack), T0 + timedelta(minutes=20))
    assert sorted(m["To"] for m in desk.mails(unverified.NOTICE_KIND)) == [ERIC, YOUNG]
    desk.take(mail(YOUNG, "forged later", reply_to=ack), T0 + timedelta(minutes=66))
    assert len(desk.mails(unverified.NOTICE_KIND, YOUNG)) == 2
    assert len([e for e in desk.thread().events if e.kind == "unverified"]) == 5  # every one is kept


def test_a_forger_cannot_flood_a_staff_member_across_threads(tmp_path):
    d = Desk(tmp_path / "s.json")
    for i in range(unverified.NOTICES_PER_HOUR + 5):  # each opens a staff thread of its own
        d.take(mail(YOUNG, "hello", subject=f"new topic {i}"), T0 + timedelta(minutes=i))
    assert len(d.mails(unverified.NOTICE_KIND)) == unverified.NOTICES_PER_HOUR
    d.store.close()


def test_replying_to_the_notice_sends_the_held_text_on(desk):
    before = desk.thread()
    ack = desk.mails("ack")[0]
    held = mail(f"Young <{YOUNG}>", "Run drush updb, then log in again.", reply_to=ack, attachment=b"patch")
    desk.take(held, T0 + timedelta(minutes=5))
    [notice] = desk.mails(unverified.NOTICE_KIND)
    assert "fix.patch" in notice.get_body(("plain",)).get_content()
    assert desk.take(reply(notice, YOUNG, "Yes, that was me."), T0 + timedelta(minutes=30)) == "answer"
    [relay] = desk.mails("relay")
    text = relay.get_body(("plain",)).get_content()
    assert "Run drush updb" in text and "that was me" not in text
    assert [a.get_filename() for a in relay.iter_attachments()] == ["fix.patch"]
    t = desk.thread()
    assert t.state == "waiting_on_partner" and t.due_at is None and before.due_at is not None
    assert t.first_response_at == T0 + timedelta(minutes=30)  # when it could reach the partner
    [answer] = [e for e in t.events if e.kind == "answer"]
    assert answer.proof == "reply key (To), confirming it by replying to the unverified-mail notice"
    assert [e.kind for e in t.events if e.kind == "confirmed"] == ["confirmed"]
    # A second reply to the same notice sends nothing twice.
    assert desk.take(reply(notice, YOUNG, "again"), T0 + timedelta(minutes=31)) == "notice-reply"
    assert len(desk.mails("relay")) == 1


def test_a_held_command_runs_once_confirmed(desk):
    desk.take(mail(YOUNG, "#close quiet", reply_to=desk.mails("ack")[0]), T0 + timedelta(minutes=5))
    assert desk.thread().state == "new"
    [notice] = desk.mails(unverified.NOTICE_KIND)
    desk.take(reply(notice, YOUNG, ""), T0 + timedelta(minutes=6))
    assert desk.thread().state == "closed"
    assert [m["To"] for m in desk.mails("command")] == [YOUNG]


def test_only_the_writer_can_confirm(desk):
    desk.take(mail(YOUNG, "Forged answer", reply_to=desk.mails("ack")[0]), T0 + timedelta(minutes=5))
    [notice] = desk.mails(unverified.NOTICE_KIND)
    # Eric got hold of Young's notice (forwarded): Young's key does not prove Eric; nothing goes.
    assert desk.take(reply(notice, ERIC, "ok"), T0 + timedelta(minutes=6)) == "unverified"
    assert desk.mails("relay") == []
    # And Eric proven by a key of his own still cannot release Young's mail.
    [eric_note] = desk.mails("notify", ERIC)
    refs = mail(ERIC, "ok", to=email.utils.parseaddr(str(eric_note["Reply-To"]))[1], reply_to=notice)
    assert desk.take(refs, T0 + timedelta(minutes=7)) == "notice-reply"
    assert desk.mails("relay") == []


def test_an_out_of_office_answering_the_notice_changes_nothing(desk):
    before = desk.thread()
    desk.take(mail(YOUNG, "Forged answer", reply_to=desk.mails("ack")[0]), T0 + timedelta(minutes=5))
    [notice] = desk.mails(unverified.NOTICE_KIND)
    # A well-marked one, sent to the notice's keyed Reply-To: recorded as an auto-reply, nothing released.
    ooo = reply(notice, YOUNG, "I am away until Monday.", headers=(("Auto-Submitted", "auto-replied"),))
    assert desk.take(ooo, T0 + timedelta(minutes=6)) == "auto-reply"
    # A badly made one (no header, to the plain address, the notice's Message-ID and so its key in
    # In-Reply-To): its subject gives it away.
    bad = mail(YOUNG, "I am away until Monday.", subject="Automatic reply: " + str(notice["Subject"]),
               reply_to=notice)
    assert desk.take(bad, T0 + timedelta(minutes=70)) == "auto-reply"
    # One that keeps neither header nor key (it answers the held mail itself): unverified, and within
    # the hour no second notice, so no ping-pong.
    worse = mail(YOUNG, "I am away until Monday.", subject="Re: " + str(notice["Subject"]),
                 reply_to=str(notice["References"]).split()[0])
    assert desk.take(worse, T0 + timedelta(minutes=40)) == "unverified"
    nothing_moved(desk, before)
    assert len(desk.mails(unverified.NOTICE_KIND)) == 1
    assert desk.store.unverified_mail(parse(ooo, received_at=T0).message_id) is None


def test_a_key_shown_to_the_partner_is_refused_from_then_on(desk):
    [note] = desk.mails("notify", YOUNG)
    # Young replies to all, copying the partner: the partner's copy carries Young's key.
    leak = reply(note, YOUNG, "Copying you in.", cc=PARTNER)
    assert desk.take(leak, T0 + timedelta(minutes=5)) == "answer"
    assert desk.thread().refused_keys
    before = desk.thread()
    # The partner replays it in Young's name: the key is refused.
    key_to = email.utils.parseaddr(str(note["Reply-To"]))[1]
    forged = mail(YOUNG, "#close", to=key_to, reply_to=note)
    assert desk.take(forged, T0 + timedelta(minutes=6)) == "unverified"
    nothing_moved(desk, before)
    assert "shown to someone outside staff" in [e for e in desk.thread().events if e.kind == "unverified"][-1].detail


def test_staff_mail_outside_any_thread_unproven_opens_a_marked_thread(tmp_path):
    d = Desk(tmp_path / "s.json")
    assert d.take(mail(YOUNG, "Reminder to self", subject="Todo"), T0) == "thread-new"
    t = d.store.thread("OA-1")
    assert t.sender_kind == "staff" and [e.kind for e in t.events] == ["request", "unverified", "unverified-notice"]
    [notice] = d.mails(unverified.NOTICE_KIND)
    assert "opened OA-1" in notice.get_body(("plain",)).get_content()
    assert d.take(reply(notice, YOUNG, "yes"), T0 + timedelta(minutes=1)) == "confirmed"
    assert d.store.thread("OA-1").events[-1].proof == "reply key (To)"
    d.store.close()


def test_forged_staff_mail_naming_two_threads_merges_nothing(desk):
    desk.take(mail(f"Antonio <{PARTNER}>", "And the search is slow.", subject="Search slow"), T0 + timedelta(minutes=1))
    ack1, ack2 = (str(m["Message-ID"]) for m in desk.mails("ack"))
    forged = mail(YOUNG, "Same problem, merging.", headers=(("References", f"{ack2} {ack1}"),))
    forged = forged.replace(b"Subject:", f"In-Reply-To: {ack1}\r\nSubject:".encode(), 1)
    assert desk.take(forged, T0 + timedelta(minutes=5)) == "unverified"
    assert desk.store.thread("OA-2").merged_into == "" and desk.store.thread("OA-2").state == "new"
    # The same from Young's own reply to a notification (its key) is hers to merge.
    [note] = desk.mails("notify", YOUNG)[:1]
    genuine = reply(note, YOUNG, "Same problem.", headers=(("References", f"{ack2} {ack1}"),))
    desk.take(genuine, T0 + timedelta(minutes=6))
    assert desk.store.thread("OA-2").merged_into == "OA-1"

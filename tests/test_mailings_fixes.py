"""Review fixes of the scheduled mailings (issue 4 review): unsubscribe tokens in quoted text, calendar
replies for any call id, delivery reports of mailings, cancelled-then-restored and A->B->A moves, the
same instant in another zone, broken RSVPs, a standard VTIMEZONE for New York."""

from __future__ import annotations

import email
import email.policy
from contextlib import ExitStack
from datetime import date, datetime, timedelta, timezone
from email.message import EmailMessage
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from zoneinfo import ZoneInfo

import icalendar
import pytest

import run
from mailbox.ical import build, parse_replies, reply
from config.mailings import read_mailings
from config.reader import Reader
from workflows.mailings.due import CalendarEvent
from workflows.mailings.plan import due_mailings
from workflows.model import Contact, Partner
from service.ports import RawMail
from service.report import CycleReport

from tests.test_mailings_runner import PARTNERS, make_settings

NY = ZoneInfo("America/New_York")
UTC = timezone.utc
T0 = "2026-12-30T15:00:00+00:00"  # invitations for the January 12 call are due


@pytest.fixture
def wired(tmp_path):
    stacks = []

    def make(now: str = T0, **tables):
        s = make_settings(tmp_path, **tables)
        stack = ExitStack()
        stacks.append(stack)
        app = run.Wiring(s, run.Clock(datetime.fromisoformat(now)), stack).desk(spool_root=tmp_path / "spool")
        runner = app.mailings
        with app.store.transaction():
            for p in PARTNERS:
                app.store.save_partner(p)
        runner.tick(datetime.fromisoformat(now), CycleReport())
        return app, runner

    yield make
    for s in stacks:
        s.close()


def invitation(app, to="antonio@nuvole.example"):
    e = next(e for e in app.store.outbox() if e.kind == "call-invite" and e.rcpt_to == (to,))
    return e, email.message_from_string(e.raw, policy=email.policy.default)


def take(app, msg, key="x:1", when="2026-12-30T16:00:00+00:00"):
    now = datetime.fromisoformat(when)
    return app.intake.take_in(RawMail(source_key=key, data=msg.as_bytes(), received_at=now), now, CycleReport())


def mail_from(addr, subject, body, **headers):
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = addr, "support@openatrium.example", subject
    m["Date"] = "Wed, 30 Dec 2026 16:00:00 +0000"
    for k, v in headers.items():
        m[k.replace("_", "-")] = v
    m.set_content(body)
    return m


def token_of(inv):
    return inv["List-Unsubscribe"].split("subject=")[1].rstrip(">").replace("%20", " ")


# -- 1. unsubscribe only where the person wrote it --------------------------------------------
def test_reply_quoting_the_invitation_footer_is_a_thread_not_an_unsubscribe(wired):
    app, runner = wired()
    _, inv = invitation(app)
    quoted = "\n".join("> " + line for line in inv.get_body(("plain",)).get_content().splitlines())
    r = mail_from("Antonio De Marco <antonio@nuvole.example>", "Re: " + inv["Subject"],
                  "Will the call be recorded? Our site is down since the upgrade, please help.\n\n"
                  "On Wed, Open Atrium Support wrote:\n" + quoted,
                  Message_ID="<q1@nuvole.example>", In_Reply_To=inv["Message-ID"])
    assert take(app, r) == "thread-new"
    assert app.store.unsubscribed() == frozenset()
    assert [t.requester for t in app.store.threads()] == ["antonio@nuvole.example"]


def test_out_of_office_quoting_the_footer_or_the_token_never_unsubscribes(wired):
    app, runner = wired()
    _, inv = invitation(app)
    body = inv.get_body(("plain",)).get_content()
    ooo = mail_from("antonio@nuvole.example", "Automatic reply: " + inv["Subject"],
                    "I am out of the office until January 5.\n\n-----Original Message-----\n" + body,
                    Message_ID="<ooo@nuvole.example>", Auto_Submitted="auto-replied")
    assert take(app, ooo, "x:1") != "unsubscribed"
    # Even with the token in the subject (an autoresponder echoing the unsubscribe mail's subject).
    echo = mail_from("mark@gmail.com", "Auto: " + token_of(invitation(app, "mark@gmail.com")[1]), "Away.",
                     Message_ID="<ooo2@gmail.com>", Auto_Submitted="auto-replied")
    assert take(app, echo, "x:2") != "unsubscribed"
    assert app.store.unsubscribed() == frozenset()


@pytest.mark.parametrize("prefix", ["> ", ""])
def test_a_reply_with_nothing_new_but_the_quoted_or_pasted_footer_is_no_unsubscribe(wired, prefix):
    app, runner = wired()
    _, inv = invitation(app)
    body = "\n".join(prefix + line for line in inv.get_body(("plain",)).get_content().splitlines())
    r = mail_from("antonio@nuvole.example", "Fwd: " + inv["Subject"], body, Message_ID="<q3@nuvole.example>")
    assert take(app, r) != "unsubscribed"
    assert app.store.unsubscribed() == frozenset()


def test_unsubscribe_with_a_real_question_is_recorded_and_still_becomes_a_thread(wired):
    app, runner = wired()
    _, inv = invitation(app)
    m = mail_from("antonio@nuvole.example", token_of(inv),
                  "Please stop the call invitations. Also: our site is down since the upgrade, can you help?",
                  Message_ID="<u1@nuvole.example>")
    assert take(app, m) == "thread-new"
    assert "calls:antonio@nuvole.example" in app.store.unsubscribed()
    assert len(app.store.threads()) == 1


def test_unsubscribe_token_in_the_unquoted_body_alone_is_honoured_without_a_thread(wired):
    app, runner = wired()
    _, inv = invitation(app)
    m = mail_from("antonio@nuvole.example", "please", token_of(inv) + "\n\n-- \nAntonio\n",
                  Message_ID="<u2@nuvole.example>")
    assert take(app, m) == "unsubscribed"
    assert "calls:antonio@nuvole.example" in app.store.unsubscribed() and app.store.threads() == []


# -- 2. calendar replies for any configured call id -------------------------------------------
def test_accepted_reply_to_a_call_whose_id_does_not_start_with_call_is_an_rsvp(wired):
    app, runner = wired(calls={"dates": [{"id": "q1-kickoff", "start": "2027-01-12T14:00:00"}], "dial_in": "x"})
    _, inv = invitation(app)
    ics = next(p for p in inv.walk() if p.get_content_type() == "text/calendar").get_content()
    r = mail_from("Antonio De Marco <antonio@nuvole.example>", "Accepted: " + inv["Subject"], "Accepted.",
                  Message_ID="<q2@nuvole.example>")
    r.add_alternative(reply(ics, "antonio@nuvole.example", "ACCEPTED"), subtype="calendar",
                      params={"method": "REPLY"})
    assert take(app, r) == "rsvp"
    assert app.store.threads() == []
    [rsvp] = runner.rsvps("q1-kickoff")
    assert rsvp["attendee"] == "antonio@nuvole.example" and rsvp["partstat"] == "ACCEPTED"


# -- 3. delivery reports of mailings ----------------------------------------------------------
def dsn(original: str, mid: str, rcpt="mark@gmail.com"):
    d = MIMEMultipart("report", report_type="delivery-status")
    d["From"], d["To"] = "MAILER-DAEMON@mx.gmail.com", "support@openatrium.example"
    d["Subject"], d["Message-ID"] = "Delivery Status Notification (Failure)", mid
    d["Date"] = "Wed, 30 Dec 2026 16:00:00 +0000"
    d.attach(MIMEText(f"Your message to {rcpt} could not be delivered: mailbox full.\n"))
    d.attach(MIMEText(f"Reporting-MTA: dns; mx\n\nFinal-Recipient: rfc822; {rcpt}\nAction: failed\n"
                      "Status: 5.2.2\n", "delivery-status"))
    d.attach(MIMEMessage(email.message_from_string(original)))
    return d


def test_late_delivery_report_of_a_mailing_is_recorded_against_the_contact_and_reported_once(wired):
    app, runner = wired()
    e, _ = invitation(app, "mark@gmail.com")
    assert take(app, dsn(e.raw, "<dsn1@mx>"), "x:1") != "thread-new"
    assert app.store.threads() == []
    failures = runner.contact_failures()
    assert failures["mark@gmail.com"]["count"] == 1 and e.key in failures["mark@gmail.com"]["keys"]
    reports = [x for x in app.store.outbox() if x.kind == "mailing-failure"]
    assert len(reports) == 1 and reports[0].rcpt_to == ("young@openatrium.example",)
    assert reports[0].mail_from == ""  # a report of a bounce must not bounce back to us
    # A second report about the same mail (the MTA retried, or a copy): recorded, not reported again.
    assert take(app, dsn(e.raw, "<dsn2@mx>"), "x:2") != "thread-new"
    assert app.store.threads() == []
    assert len([x for x in app.store.outbox() if x.kind == "mailing-failure"]) == 1
    assert runner.contact_failures()["mark@gmail.com"]["count"] == 1
    # And the tick's SMTP-failure path does not report it a second time either.
    r = CycleReport()
    runner.tick(datetime(2026, 12, 30, 17, tzinfo=UTC), r)
    assert len([x for x in app.store.outbox() if x.kind == "mailing-failure"]) == 1


# -- 4-6. calls: restore after cancel, A->B->A->B, same instant in another zone ----------------
ONE = Partner(id="solo", name="Solo Shop", plan="solo", renews_on=date(2027, 5, 1), contacts=(
    Contact(partner_id="solo", name="Me", email="me@solo.example", roles=frozenset({"primary"})),))


def calls_cfg(start=None):
    dates = [{"id": "c1", "start": start}] if start is not None else []
    return read_mailings(Reader({"calls": {"dates": dates}, "mailings": {"enabled": ["calls"]}}, "test.toml"))


def step(ledger, cfg, now):
    send, skip = due_mailings([ONE], ledger, cfg, now, only="calls")
    for d in send:
        ledger[d.key] = d.ledger_record("queued", now)
    for d in skip:
        ledger[d.key] = d.ledger_record("skipped", now)
    return send


A = datetime(2027, 1, 12, 14, 0)
B = datetime(2027, 1, 13, 14, 0)


def test_a_cancelled_call_restored_in_config_is_invited_again_with_a_higher_sequence():
    ledger: dict = {}
    now = datetime(2026, 12, 30, 15, tzinfo=UTC)
    [inv] = step(ledger, calls_cfg(A), now)
    [cancel] = step(ledger, calls_cfg(None), now + timedelta(days=1))
    assert cancel.event.method == "CANCEL" and cancel.event.sequence == 1
    [back] = step(ledger, calls_cfg(A), now + timedelta(days=2))
    assert back.event.method == "REQUEST" and back.event.sequence == 2 and back.event.uid == "c1"
    assert step(ledger, calls_cfg(A), now + timedelta(days=2, hours=1)) == []
    # Removed once more: a second CANCEL, with the next sequence.
    [again] = step(ledger, calls_cfg(None), now + timedelta(days=3))
    assert again.event.method == "CANCEL" and again.event.sequence == 3
    # The reminder of a restored call goes out.
    [back2] = step(ledger, calls_cfg(A), now + timedelta(days=4))
    assert back2.event.sequence == 4
    assert [d.mailing for d in step(ledger, calls_cfg(A), datetime(2027, 1, 11, 20, tzinfo=UTC))] == ["call-reminder"]


def test_a_call_moved_there_and_back_twice_sends_every_update():
    ledger: dict = {}
    now = datetime(2026, 12, 30, 15, tzinfo=UTC)
    step(ledger, calls_cfg(A), now)
    seqs = []
    for i, start in enumerate((B, A, B), 1):
        [upd] = step(ledger, calls_cfg(start), now + timedelta(days=i))
        assert upd.mailing == "call-update" and upd.event.start == start.replace(tzinfo=NY)
        seqs.append(upd.event.sequence)
    assert seqs == [1, 2, 3]


def test_the_same_instant_written_in_another_zone_is_not_a_move():
    ledger: dict = {}
    now = datetime(2026, 12, 30, 15, tzinfo=UTC)
    step(ledger, calls_cfg(A), now)
    assert step(ledger, calls_cfg(datetime(2027, 1, 12, 19, 0, tzinfo=UTC)), now + timedelta(days=1)) == []


# -- 7. broken calendar replies -----------------------------------------------------------------
REPLY = ("BEGIN:VCALENDAR\r\nMETHOD:REPLY\r\nBEGIN:VEVENT\r\nUID:call-x@openatrium.example\r\n{extra}"
         "ATTENDEE;PARTSTAT=ACCEPTED:mailto:a@b.c\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


def test_a_reply_with_a_broken_sequence_is_read_with_sequence_zero():
    [r] = parse_replies(REPLY.format(extra="SEQUENCE:abc\r\n"))
    assert r.sequence == 0 and r.partstat == "ACCEPTED" and r.attendee == "a@b.c"


@pytest.mark.parametrize("text", ["", "hello", "BEGIN:VCALENDAR\x00\r\n", None, b"\xff\xfe",
                                  REPLY.replace("METHOD:REPLY", "METHOD:REQUEST").format(extra="")])
def test_unreadable_calendar_text_is_not_an_rsvp_and_never_raises(text):
    assert parse_replies(text) == []


def test_a_reply_with_a_broken_start_time_is_still_an_rsvp():
    # An RSVP needs the UID and the attendee's answer; a DTSTART nobody can read changes nothing.
    [r] = parse_replies(REPLY.format(extra="DTSTART;TZID=Nowhere/Zone:2027XX\r\n"))
    assert (r.uid, r.attendee, r.partstat, r.sequence) == ("call-x@openatrium.example", "a@b.c", "ACCEPTED", 0)


def test_an_rsvp_with_a_broken_sequence_reaches_the_rsvps_not_the_quarantine(wired):
    app, runner = wired()
    bad = mail_from("mark@gmail.com", "Accepted: State of Open Atrium", "Accepted.", Message_ID="<b@gmail.com>")
    bad.add_alternative(REPLY.format(extra="SEQUENCE:abc\r\n").replace("call-x", "call-2027-01-12")
                        .replace("a@b.c", "mark@gmail.com"), subtype="calendar", params={"method": "REPLY"})
    assert take(app, bad) == "rsvp"
    assert runner.rsvps("call-2027-01-12")[0]["sequence"] == 0


# -- 8. VTIMEZONE for New York ------------------------------------------------------------------
def event(tzid="America/New_York"):
    start = datetime(2027, 1, 12, 14, tzinfo=ZoneInfo(tzid))
    return CalendarEvent(method="REQUEST", uid="c1", sequence=0, start=start, end=start + timedelta(hours=1),
                         summary="State of Open Atrium", attendee="a@b.example", tzid=tzid)


def test_new_york_vtimezone_is_the_standard_definition_with_yearly_rules():
    text = build(event(), organizer="support@openatrium.example", organizer_name="Support",
                 domain="openatrium.example", stamp=datetime(2026, 12, 30, tzinfo=UTC))
    cal = icalendar.Calendar.from_ical(text)
    [tz] = cal.walk("VTIMEZONE")
    assert str(tz["TZID"]) == "America/New_York"
    [dst] = tz.walk("DAYLIGHT")
    [std] = tz.walk("STANDARD")
    assert "DTSTART:19700308T020000" in dst.to_ical().decode() and "RDATE" not in text
    assert dst["RRULE"] == icalendar.vRecur.from_ical("FREQ=YEARLY;BYMONTH=3;BYDAY=2SU")
    assert std["RRULE"] == icalendar.vRecur.from_ical("FREQ=YEARLY;BYMONTH=11;BYDAY=1SU")
    assert "DTSTART:19701101T020000" in std.to_ical().decode()
    assert (dst.to_ical().decode().count("TZOFFSETFROM:-0500"), dst.to_ical().decode().count("TZOFFSETTO:-0400"),
            str(dst["TZNAME"])) == (1, 1, "EDT")
    assert (std.to_ical().decode().count("TZOFFSETFROM:-0400"), std.to_ical().decode().count("TZOFFSETTO:-0500"),
            str(std["TZNAME"])) == (1, 1, "EST")
    [ev] = cal.walk("VEVENT")
    assert "DTSTART;TZID=America/New_York:20270112T140000" in text
    assert ev["DTSTART"].params["TZID"] == "America/New_York"
    assert ev.decoded("DTSTART").astimezone(UTC) == datetime(2027, 1, 12, 19, tzinfo=UTC)
    # In summer the same definition gives EDT (-0400).
    assert tz.to_tz().utcoffset(datetime(2027, 7, 13, 14)) == timedelta(hours=-4)


def test_other_zones_still_get_a_vtimezone():
    text = build(event("Europe/Rome"), organizer="support@openatrium.example", organizer_name="Support",
                 domain="openatrium.example", stamp=datetime(2026, 12, 30, tzinfo=UTC))
    cal = icalendar.Calendar.from_ical(text)
    assert [str(t["TZID"]) for t in cal.walk("VTIMEZONE")] == ["Europe/Rome"]
    assert cal.walk("VEVENT")[0]["DTSTART"].params["TZID"] == "Europe/Rome"


def test_a_late_renewal_notice_states_the_real_number_of_days():
    from datetime import date, datetime
    from zoneinfo import ZoneInfo

    from workflows.mailings import renewals

    mc = read_mailings(Reader({"support": {"address": "s@x.example"}}, "t.toml"))
    ny = ZoneInfo("America/New_York")
    t = renewals.timing(date(2027, 1, 15), "$4,000", datetime(2026, 11, 29, 10, tzinfo=ny), mc)
    assert (t["phase"], t["days"]) == ("before", 47)  # the 60-day notice, sent 47 days before
    t = renewals.timing(date(2027, 1, 1), "$4,000", datetime(2027, 1, 10, 10, tzinfo=ny), mc)
    assert (t["phase"], t["days"]) == ("lapsed", 9) and "lapsed" in t["subject"]

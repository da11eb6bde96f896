"""Trainings run by mail, end to end on real Dovecot + SMTP (tests/conftest.py `desk`).

partnerdesk runs as a user runs it (``python run.py --config ... --now T once``); partners and staff answer
from their own mailboxes (their replies are APPENDed to the support INBOX with a chosen INTERNALDATE), and
what they got is read back over IMAP. The story is in the past (early 2026), because Dovecot replaces a
future INTERNALDATE with the current time.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import json
from datetime import datetime
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import icalendar
import pytest

from mailbox.ical import reply as ical_reply

pytestmark = pytest.mark.integration
ET = ZoneInfo("America/New_York")
TID = "training-2026-03-09"  # Monday 9 and Tuesday 10 March 2026, the rule's first occurrence


def config(capacity: int = 10, standard: int = 2) -> str:
    return f"""
[mailings]
enabled = ["trainings"]
[digest]
enabled = false
[trainings]
rrule = "FREQ=MONTHLY;INTERVAL=4;BYDAY=2MO"
first = 2026-03-09T09:00:00
place = "Washington, DC"
remote = "https://meet.example.test/oa-training"
capacity = {capacity}
[trainings.seats]
standard = {standard}
"""


def at(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=ET)


def iso(month: int, day: int, hour: int, minute: int = 0) -> str:
    return at(month, day, hour, minute).isoformat()


def parsed(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def inbox(desk, address: str) -> list[EmailMessage]:
    return [parsed(r) for r in desk.servers.fetch_all(address)]


def kinds(desk, address: str) -> list[str]:
    return [str(m["X-Partnerdesk-Kind"]) for m in inbox(desk, address)]


def one(desk, address: str, kind: str, n: int = -1) -> EmailMessage:
    found = [m for m in inbox(desk, address) if m["X-Partnerdesk-Kind"] == kind]
    assert found, f"{address} got no {kind}; got {kinds(desk, address)}"
    return found[n]


def text(m: EmailMessage) -> str:
    return m.get_body(("plain",)).get_content()


def calendar(m: EmailMessage) -> tuple[str, icalendar.Event, str]:
    """(METHOD, the VEVENT, the raw iCalendar text) of a mail's text/calendar part."""
    [part] = [p for p in m.walk() if p.get_content_type() == "text/calendar"]
    ics = part.get_content()
    cal = icalendar.Calendar.from_ical(ics)
    return str(cal["method"]), cal.walk("VEVENT")[0], ics


def answer(desk, frm: str, to_mail: EmailMessage | None, body: str, when: datetime, *, name: str = "",
           ics: str | None = None, subject: str = "") -> None:
    """``frm`` writes to the support address (replying to ``to_mail`` if given), received at ``when``."""
    m = EmailMessage()
    m["From"] = f"{name} <{frm}>" if name else frm
    m["To"] = desk.support
    m["Subject"] = subject or ("Re: " + str(to_mail["Subject"]) if to_mail is not None else "Hello")
    m["Date"] = email.utils.format_datetime(when)
    m["Message-ID"] = email.utils.make_msgid(domain=frm.rpartition("@")[2])
    if to_mail is not None:
        m["In-Reply-To"] = to_mail["Message-ID"]
        m["References"] = to_mail["Message-ID"]
    quoted = "\n".join("> " + line for line in text(to_mail).splitlines()) if to_mail is not None else ""
    m.set_content(f"{body}\n\nOn Monday, someone wrote:\n{quoted}\n")
    if ics is not None:
        m.add_alternative(ics, subtype="calendar", params={"method": "REPLY"})
    desk.append(m.as_bytes(), when=when)


def show(desk, now: str) -> str:
    return desk.run("trainings", "show", TID, now=now).stdout


def section(out: str, title: str) -> str:
    """The lines of one section of `trainings show` (up to the next section)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(title))
    rest = [line for line in lines[start + 1:]]
    end = next((i for i, line in enumerate(rest) if not line.startswith("    ")), len(rest))
    return "\n".join([lines[start]] + rest[:end])


def start(desk, rows: list[str], **cfg) -> None:
    desk.write_config(config(**cfg))
    desk.run("partners", "import", str(desk.roster(rows)), now=iso(1, 5, 9))
    assert desk.run("once", now=iso(1, 5, 9, 30)).stdout.startswith("fetched 0")  # the history cut-off


def shop(desk, *people: tuple[str, str, str]) -> list[str]:
    n = desk.n
    return [f"shop{n},Nuvole {n},standard,2026-09-30,{name},{addr},{roles}," for name, addr, roles in people]


def announce(desk) -> None:
    out = desk.run("once", now=iso(2, 7, 9, 30)).stdout  # 30 days before Monday, March 9, 9:00 AM
    assert "mailings queued" in out, out


def test_announcement_answered_by_reply_by_calendar_accept_and_by_a_decline_later(desk):
    marco = f"marco{desk.n}@shop{desk.n}.example.test"
    desk.servers.add_user(marco)
    start(desk, shop(desk, ("Antonio", desk.partner, "primary"), ("Giulia Rossi", desk.colleague, "technical")),
          standard=3)
    announce(desk)
    ann = one(desk, desk.partner, "training-announcement")
    method, ev, _ = calendar(ann)
    assert method == "REQUEST" and str(ev["uid"]).startswith(f"{TID}@") and "meet.example.test" not in text(ann)
    assert ev.decoded("dtstart") == at(3, 9, 9) and "COUNT=2" in ev["rrule"].to_ical().decode()  # two days

    # 1. By reply: register me and a colleague who is not on the roster yet.
    answer(desk, desk.partner, ann, f"Please register me and Marco Neri <{marco}>.\n\nThanks,\nAntonio",
           at(2, 8, 10), name="Antonio")
    desk.run("once", now=iso(2, 8, 10, 5))
    mine = one(desk, desk.partner, "training-confirmed")
    method, ev, _ = calendar(mine)
    assert method == "REQUEST" and int(ev["sequence"]) == 1 and "PARTSTAT=ACCEPTED" in ev.to_ical().decode()
    assert "https://meet.example.test/oa-training" in text(mine) and mine["In-Reply-To"]
    assert "confirmed" in text(one(desk, desk.partner, "training-receipt"))
    assert kinds(desk, marco) == ["training-confirmed"]
    roster = json.loads(desk.run("partners", "list", "--json").stdout)
    assert marco in [c["email"] for c in roster[0]["contacts"]]  # added as a contact of the shop
    out = show(desk, iso(2, 8, 11))
    assert desk.partner in section(out, "confirmed (2)") and marco in section(out, "confirmed (2)")

    # 2. By calendar: Giulia accepts the invitation the announcement carried.
    _, _, ics = calendar(one(desk, desk.colleague, "training-announcement"))
    answer(desk, desk.colleague, None, "Giulia has accepted.", at(2, 9, 9), subject="Accepted: training",
           ics=ical_reply(ics, desk.colleague, "ACCEPTED"))
    desk.run("once", now=iso(2, 9, 9, 5))
    confirmation = one(desk, desk.colleague, "training-confirmed")
    assert desk.colleague in section(show(desk, iso(2, 9, 10)), "confirmed (3)")
    assert "ACCEPTED" in desk.run("mailings", "rsvps", TID).stdout

    # 3. Later, she declines the entry in her calendar: the place is freed and she is told.
    _, ev, ics = calendar(confirmation)
    answer(desk, desk.colleague, None, "Giulia has declined.", at(2, 20, 9), subject="Declined: training",
           ics=ical_reply(ics, desk.colleague, "DECLINED"))
    desk.run("once", now=iso(2, 20, 9, 5))
    gone = one(desk, desk.colleague, "training-cancelled")
    method, cev, _ = calendar(gone)
    assert method == "CANCEL" and int(cev["sequence"]) > int(ev["sequence"]) and str(cev["uid"]) == str(ev["uid"])
    out = show(desk, iso(2, 20, 10))
    assert desk.colleague in section(out, "cancelled or declined (1)") and "confirmed (2)" in out

    # Nothing of this was a support thread, nothing went twice, staff were not bothered.
    assert json.loads(desk.run("threads", "list", "--json").stdout) == []
    assert kinds(desk, desk.colleague) == ["training-announcement", "training-confirmed", "training-cancelled"]
    assert inbox(desk, desk.staff[0]) == []

    # Anything unclear goes to staff as a normal support thread.
    answer(desk, desk.partner, ann, "Is there parking near the venue?", at(2, 21, 10), name="Antonio")
    desk.run("once", now=iso(2, 21, 10, 5))
    [t] = json.loads(desk.run("threads", "list", "--json").stdout)
    assert t["requester"] == desk.partner
    assert "parking" in text(one(desk, desk.staff[0], "notify"))


def test_a_registration_past_the_included_places_is_approved_by_a_staff_command(desk):
    marco = f"marco{desk.n}@shop{desk.n}.example.test"
    desk.servers.add_user(marco)
    start(desk, shop(desk, ("Antonio", desk.partner, "primary"), ("Giulia", desk.colleague, "technical"),
                     ("Marco", marco, "technical")))
    announce(desk)
    ann = one(desk, desk.partner, "training-announcement")
    answer(desk, desk.partner, ann, f"Please register me, {desk.colleague} and {marco}", at(2, 8, 10))
    desk.run("once", now=iso(2, 8, 10, 5))
    assert kinds(desk, marco)[-1] == "training-held"
    receipt = text(one(desk, desk.partner, "training-receipt"))
    assert "held" in receipt and receipt.count("confirmed") == 2
    out = show(desk, iso(2, 8, 11))
    assert marco in section(out, "pending staff approval") and "2 of 2 taken" in out
    notices = [one(desk, s, "training-approval") for s in desk.staff]
    assert marco in text(notices[0]) and "#approve" in text(notices[0])

    answer(desk, desk.staff[0], notices[0], "#approve", at(2, 9, 9))
    desk.run("once", now=iso(2, 9, 9, 5))
    placed = one(desk, marco, "training-confirmed")
    assert "approved an extra place" in text(placed) and calendar(placed)[0] == "REQUEST"
    told = one(desk, desk.partner, "training-confirmed")  # the colleague who asked is told which way it went
    assert marco in text(told) and "approved" in text(told)
    assert "approved" in text(one(desk, desk.staff[0], "training-command"))
    out = show(desk, iso(2, 9, 10))
    assert marco in section(out, "confirmed (3)") and "extra" in section(out, "confirmed (3)")
    assert section(out, "pending staff approval").endswith("(0):")

    # The second staff member, a little late, changes nothing and is told so.
    answer(desk, desk.staff[1], notices[1], "#decline", at(2, 9, 11))
    desk.run("once", now=iso(2, 9, 11, 5))
    assert "not waiting for a decision" in text(one(desk, desk.staff[1], "training-command"))
    assert kinds(desk, marco) == ["training-announcement", "training-held", "training-confirmed"]


def test_a_full_training_promotes_the_waitlist_when_someone_cancels(desk):
    start(desk, shop(desk, ("Antonio", desk.partner, "primary"), ("Giulia", desk.colleague, "technical")),
          capacity=1)
    announce(desk)
    answer(desk, desk.partner, one(desk, desk.partner, "training-announcement"), "Yes, count me in!", at(2, 8, 10))
    answer(desk, desk.colleague, one(desk, desk.colleague, "training-announcement"),
           "Ja, bitte melden Sie mich an.", at(2, 8, 11))
    desk.run("once", now=iso(2, 8, 11, 5))
    assert kinds(desk, desk.partner)[-1] == "training-confirmed"
    waiting = one(desk, desk.colleague, "training-waitlisted")
    assert "number 1" in text(waiting) and not [p for p in waiting.walk() if p.get_content_type() == "text/calendar"]
    out = show(desk, iso(2, 8, 12))
    assert desk.colleague in section(out, "waitlist, in order (1)") and "#1" in out

    answer(desk, desk.partner, one(desk, desk.partner, "training-confirmed"), "Sorry, I have to cancel.",
           at(2, 15, 9))
    desk.run("once", now=iso(2, 15, 9, 5))
    assert calendar(one(desk, desk.partner, "training-cancelled"))[0] == "CANCEL"
    promoted = one(desk, desk.colleague, "training-promoted")
    assert calendar(promoted)[0] == "REQUEST" and "the place is yours" in text(promoted)
    out = show(desk, iso(2, 15, 10))
    assert desk.colleague in section(out, "confirmed (1)") and "waitlist, in order (0)" in out
    desk.run("once", now=iso(2, 15, 10))  # and nothing twice
    assert kinds(desk, desk.colleague) == ["training-announcement", "training-waitlisted", "training-promoted"]


def test_a_training_run_by_mail_from_announcement_to_the_first_promised_reply(desk):
    """Done when: announcement, registration, reminder, attendance by mail, the seat, and the attendee's
    first request acknowledged with the promise and answered; `trainings show` right at every step."""
    start(desk, shop(desk, ("Antonio", desk.partner, "primary")))
    announce(desk)
    assert "confirmed (0)" in show(desk, iso(2, 7, 10))
    answer(desk, desk.partner, one(desk, desk.partner, "training-announcement"), "Please register me.", at(2, 8, 10))
    desk.run("once", now=iso(2, 8, 10, 5))
    assert desk.partner in section(show(desk, iso(2, 8, 11)), "confirmed (1)")
    assert "training-reminder" in desk.run("mailings", "plan", "--from", "2026-02-09", "--to", "2026-03-12").stdout

    desk.run("once", now=iso(3, 7, 9, 30))  # two days before: the reminder
    assert "https://meet.example.test/oa-training" in text(one(desk, desk.partner, "training-reminder"))
    desk.run("once", now=iso(3, 10, 17, 30))  # the course has ended: staff get the attendance sheet
    sheet = one(desk, desk.staff[0], "training-attendance")
    assert desk.partner in text(sheet) and "#attended all" in text(sheet)
    out = show(desk, iso(3, 10, 17, 35))
    assert "not marked yet" in out and desk.partner in section(out, "not marked yet")

    # Someone writing in a staff member's name (no reply key, plain SMTP) marks nobody: the staff member is
    # told it was not applied.
    answer(desk, desk.staff[0], None, f"#attended {TID} {desk.partner}", at(3, 11, 8), subject="attendance")
    assert "training-unverified" in desk.run("-v", "once", now=iso(3, 11, 8, 5)).stdout
    assert "not marked yet" in show(desk, iso(3, 11, 8, 6))
    assert "NOT applied" in text(one(desk, desk.staff[0], "training-command"))

    answer(desk, desk.staff[0], sheet, "#attended all", at(3, 11, 9))
    desk.run("once", now=iso(3, 11, 9, 5))
    assert desk.partner in section(show(desk, iso(3, 11, 9, 10)), "attended (1)")
    seat = one(desk, desk.partner, "training-seat")
    assert desk.support in text(seat) and "24 hours on business days" in text(seat)
    [contact] = json.loads(desk.run("partners", "list", "--json").stdout)[0]["contacts"]
    assert contact["seat"] and contact["trained_on"] == "2026-03-10"

    # The attendee's first request: acknowledged with the promise, and answered.
    answer(desk, desk.partner, None, "Since the upgrade drush make fails.", at(3, 11, 10),
           subject="Drush make fails", name="Antonio")
    desk.run("once", now=iso(3, 11, 10, 5))
    ack = one(desk, desk.partner, "ack")
    assert "You will hear from us by Thursday, March 12, 10:00 AM ET" in " ".join(text(ack).split())
    note = one(desk, desk.staff[0], "notify")
    assert "holds a seat" in text(note)
    answer(desk, desk.staff[0], note, "Run drush updb first, then make again.", at(3, 11, 14), name="Young")
    desk.run("once", now=iso(3, 11, 14, 5))
    assert "drush updb" in text(one(desk, desk.partner, "relay"))
    assert kinds(desk, desk.partner).count("training-seat") == 1

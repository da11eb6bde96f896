"""iTIP calendar messages (RFC 5546) with the icalendar library.

``build(event, organizer, organizer_name, domain)`` -> the text/calendar body of a
METHOD:REQUEST (invitation or update) or METHOD:CANCEL for one call and one
attendee: stable UID per call, ORGANIZER the support address, ATTENDEE the
recipient, SEQUENCE raised on every change, times in America/New_York with its
VTIMEZONE so clients show the call at the right local time on both sides of a
DST change.

``parse_replies(text)`` reads an attendee's METHOD:REPLY (Accepted/Declined...)
into RSVP records.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import icalendar
from icalendar.parser import Contentline

from workflows.mailings.due import CalendarEvent, uid_for

PRODID = "-//Open Atrium//partnerdesk//EN"


# The standard definition of New York's zone (US rules since 2007), as Outlook and most clients write
# it: one DAYLIGHT and one STANDARD block with yearly rules. Outlook reads this more reliably than the
# per-year RDATE lists Timezone.from_tzinfo produces (whose DST start is written as 03:00).
_NEW_YORK = """BEGIN:VTIMEZONE\r
TZID:America/New_York\r
BEGIN:DAYLIGHT\r
DTSTART:19700308T020000\r
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU\r
TZOFFSETFROM:-0500\r
TZOFFSETTO:-0400\r
TZNAME:EDT\r
END:DAYLIGHT\r
BEGIN:STANDARD\r
DTSTART:19701101T020000\r
RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU\r
TZOFFSETFROM:-0400\r
TZOFFSETTO:-0500\r
TZNAME:EST\r
END:STANDARD\r
END:VTIMEZONE\r
"""
_STANDARD_VTIMEZONES = {"America/New_York": _NEW_YORK}


@functools.lru_cache(maxsize=8)
def _vtimezone(tzid: str, year: int) -> icalendar.Timezone:
    if tzid in _STANDARD_VTIMEZONES:
        return icalendar.Timezone.from_ical(_STANDARD_VTIMEZONES[tzid])
    # Other zones: generated from the tz database, covering a few years either side of the call.
    return icalendar.Timezone.from_tzinfo(ZoneInfo(tzid), tzid=tzid,
                                          first_date=datetime(year - 1, 1, 1), last_date=datetime(year + 2, 1, 1))


def build(event: CalendarEvent, *, organizer: str, organizer_name: str, domain: str, stamp: datetime) -> str:
    """The iTIP body for one attendee. Everything but the ATTENDEE line is the same for every recipient
    of one call at one time, so it is built once (building it costs milliseconds) and reused."""
    # DTSTAMP is written to the second; the finer instant would make every recipient's stamp a new key.
    shared = _shared(replace(event, attendee="", attendee_name="", partstat=""), organizer, organizer_name, domain,
                     stamp.replace(microsecond=0))
    line = _attendee_line(event.attendee, event.attendee_name, event.partstat)
    # Properties come before the VALARM sub-component (RFC 5545 eventc).
    at = shared.find("BEGIN:VALARM\r\n")
    if at < 0:
        at = shared.rindex("END:VEVENT\r\n")
    return shared[:at] + line + shared[at:]


@functools.lru_cache(maxsize=16)
def _shared(event: CalendarEvent, organizer: str, organizer_name: str, domain: str, stamp: datetime) -> str:
    tz = ZoneInfo(event.tzid)
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", event.method)
    cal.add_component(_vtimezone(event.tzid, event.start.astimezone(tz).year))
    ev = icalendar.Event()
    ev.add("uid", uid_for(event.uid, domain))
    ev.add("sequence", event.sequence)
    ev.add("dtstamp", stamp.astimezone(timezone.utc))
    ev.add("dtstart", event.start.astimezone(tz))
    ev.add("dtend", event.end.astimezone(tz))
    if event.days > 1:
        ev.add("rrule", {"freq": "daily", "count": event.days})
    ev.add("summary", event.summary)
    if event.description:
        ev.add("description", event.description)
    if event.location:
        ev.add("location", event.location)
    org = icalendar.vCalAddress(f"mailto:{organizer}")
    org.params["cn"] = icalendar.vText(organizer_name)
    ev.add("organizer", org)
    if event.method == "CANCEL":
        ev.add("status", "CANCELLED")
    else:
        ev.add("status", "CONFIRMED")
    ev.add("transp", "OPAQUE")
    if event.method != "CANCEL":
        alarm = icalendar.Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", event.summary)
        alarm.add("trigger", timedelta(minutes=-15))
        ev.add_component(alarm)
    cal.add_component(ev)
    return cal.to_ical().decode("utf-8")


# Names, addresses and answers that icalendar writes as they are (a name with a space, quoted) and whose
# line it folds every 74 characters: the line of such a recipient is made here, a quarter of rendering an
# invitation otherwise. tests/test_calendar.py compares both ways on random values of these forms.
_PLAIN_NAME = re.compile(r"[A-Za-z]+(?: [A-Za-z]+)*\Z")
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9_+=.-]+@[A-Za-z0-9.-]+\Z")
_PLAIN_PARTSTAT = re.compile(r"[A-Z]+(?:-[A-Z]+)*\Z")


def _attendee_line(attendee: str, name: str, partstat: str) -> str:
    """The one per-recipient line, made as icalendar makes a property line of an event (its escaping and
    folding), without building an event around it: through a whole event it cost more than the rest of
    the mail. Not cached: every recipient's line is new."""
    if _PLAIN_ADDRESS.match(attendee) and _PLAIN_PARTSTAT.match(partstat) and (not name or _PLAIN_NAME.match(name)):
        cn = "" if not name else f'CN="{name}";' if " " in name else f"CN={name};"
        line = f"ATTENDEE;{cn}PARTSTAT={partstat};ROLE=REQ-PARTICIPANT;RSVP=TRUE:mailto:{attendee}"
        return "\r\n ".join(line[i:i + 74] for i in range(0, len(line), 74)) + "\r\n"
    return _attendee_line_by_icalendar(attendee, name, partstat)


def _attendee_line_by_icalendar(attendee: str, name: str, partstat: str) -> str:
    att = icalendar.vCalAddress(f"mailto:{attendee}")
    if name:
        att.params["cn"] = icalendar.vText(name)
    att.params["role"] = icalendar.vText("REQ-PARTICIPANT")
    att.params["partstat"] = icalendar.vText(partstat)
    att.params["rsvp"] = icalendar.vText("TRUE")
    return Contentline.from_parts("ATTENDEE", att.params, att, sorted=True).to_ical().decode("utf-8") + "\r\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rsvp:
    uid: str
    attendee: str  # lower-cased address
    partstat: str  # ACCEPTED | DECLINED | TENTATIVE | ...
    sequence: int
    comment: str = ""


def parse_replies(text: str) -> list[Rsvp]:
    """The attendee answers in one METHOD:REPLY body; [] for anything else or unreadable input."""
    # Whatever a calendar client (or a forger) sends must not make the mail a "bug" for the quarantine:
    # anything the library cannot read is simply not an RSVP.
    try:
        cal = icalendar.Calendar.from_ical(text)
        if str(cal.get("method", "")).upper() != "REPLY":
            return []
        out = []
        for ev in cal.walk("VEVENT"):
            uid = str(ev.get("uid", "")).strip()
            attendees = ev.get("attendee")
            if not uid or attendees is None:
                continue
            sequence = _sequence(ev)
            for a in attendees if isinstance(attendees, list) else [attendees]:
                addr = str(a).strip()
                if addr.lower().startswith("mailto:"):
                    addr = addr[7:]
                out.append(Rsvp(uid=uid, attendee=addr.lower(),
                                partstat=str(a.params.get("PARTSTAT", "")).upper(),
                                sequence=sequence, comment=str(ev.get("comment", ""))))
        return out
    except Exception:
        return []


def _sequence(ev: icalendar.Event) -> int:
    """SEQUENCE as a number; 0 when absent or unreadable (SEQUENCE:abc is an RSVP all the same)."""
    try:
        return int(ev.get("sequence", 0) or 0)
    except (TypeError, ValueError):
        return 0


def reply(request_text: str, attendee: str, partstat: str) -> str:
    """What a calendar client sends back (for tests and the demo): a REPLY to a REQUEST."""
    req = icalendar.Calendar.from_ical(request_text)
    src = next(iter(req.walk("VEVENT")))
    cal = icalendar.Calendar()
    cal.add("prodid", "-//partnerdesk test client//EN")
    cal.add("version", "2.0")
    cal.add("method", "REPLY")
    ev = icalendar.Event()
    for name in ("uid", "sequence", "dtstart", "dtend", "summary", "organizer"):
        if name in src:
            ev[name] = src[name]
    ev.add("dtstamp", datetime.now(timezone.utc))
    att = icalendar.vCalAddress(f"mailto:{attendee}")
    att.params["partstat"] = icalendar.vText(partstat)
    ev.add("attendee", att)
    cal.add_component(ev)
    return cal.to_ical().decode("utf-8")

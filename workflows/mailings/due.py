"""What one scheduled mail is, before it is rendered: ``Due``, and its ledger key.

Every mailing to a recipient has a ledger key (mailing, occurrence, recipient),
e.g. ("renewal", "acme/2027-03-31/60d", "billing@acme.example"). A key found in
the ledger is never sent again, whatever restarts happen in the middle of a
mailing; the planner only ever proposes keys the ledger does not hold.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any, Iterable, Mapping
from zoneinfo import ZoneInfo

from ..calendar import format_date, format_local
from ..model import FROZEN, Contact, Partner
from ..roster import lapsed_since

MAILINGS = {
    "call-invite": "quarterly call: invitation with a calendar entry (METHOD:REQUEST)",
    "call-update": "quarterly call moved: updated calendar entry, higher SEQUENCE",
    "call-cancel": "quarterly call removed: calendar cancellation (METHOD:CANCEL)",
    "call-reminder": "quarterly call: reminder the day before",
    "renewal": "renewal notice to billing contacts (60, 30, 7 days before, on the day, 14 days after)",
    "training-announcement": "training announcement to partners with unused seats this term",
    "training-refresher": "refresher invitation to contacts who trained a while ago",
    "training-confirmed": "training: a place confirmed, with the calendar entry and joining details",
    "training-waitlisted": "training: the course is full; on the waitlist, in order",
    "training-held": "training: past the included places; held until staff decide",
    "training-approval": "training: to staff, an extra place to #approve or #decline",
    "training-declined": "training: staff declined the extra place",
    "training-promoted": "training: a place became free; promoted from the waitlist",
    "training-cancelled": "training: a registration cancelled (calendar entry removed)",
    "training-receipt": "training: to whoever registered colleagues, what became of each",
    "training-reminder": "training: reminder to registered people before the start",
    "training-update": "training: the course moved (or is back): updated calendar entry",
    "training-cancel": "training: the course was removed from the calendar (METHOD:CANCEL)",
    "training-attendance": "training: to staff when a course ends, the attendance sheet to answer",
    "training-seat": "training: attended; the person now holds a seat in the support channel",
    "welcome": "welcome mail when a partner is added",
}
UNSUBSCRIBE_LISTS = {"calls": "the quarterly call invitations", "trainings": "training announcements"}
SEP = "|"


def ledger_key(mailing: str, occurrence: str, recipient: str) -> str:
    return SEP.join((mailing, occurrence, recipient.lower()))


def split_key(key: str) -> tuple[str, str, str]:
    mailing, occurrence, recipient = key.split(SEP, 2)
    return mailing, occurrence, recipient


def outbox_key(ledger_key_: str) -> str:
    return "mailing:" + ledger_key_


@dataclass(**FROZEN)
class CalendarEvent:
    """What mailbox/ical.py needs to build one iTIP message; plain data."""

    method: str  # "REQUEST" | "CANCEL"
    uid: str  # stable per call: the call id; ical adds "@<support domain>"
    sequence: int
    start: datetime  # aware
    end: datetime
    summary: str
    description: str = ""
    location: str = ""
    attendee: str = ""
    attendee_name: str = ""
    tzid: str = "America/New_York"
    days: int = 1  # > 1: the entry repeats daily this many times (a two-day course, 9 to 5 each day)
    partstat: str = "NEEDS-ACTION"  # the attendee's answer as we know it (ACCEPTED for a confirmed place)


def uid_for(call_id: str, domain: str) -> str:
    """The calendar UID of a call: its id, with our domain unless the id has one (mailbox.ical writes it)."""
    return call_id if "@" in call_id else f"{call_id}@{domain}"


@dataclass(**FROZEN)
class Due:
    """One mail to one recipient that the schedule asks for (or a skip, when ``reason`` is set)."""

    mailing: str  # a key of MAILINGS
    occurrence: str
    recipient: str
    partner_id: str
    due_at: datetime
    why: str  # for people: "invitation 14 days before the call on ..."
    template: str
    subject: str
    context: dict[str, Any] = field(default_factory=dict)
    list_name: str = ""  # unsubscribable list ("calls", "trainings"); "" for contract mail
    event: CalendarEvent | None = None
    record: dict[str, Any] = field(default_factory=dict)  # extra ledger fields (call start, sequence...)
    reason: str = ""  # set on skips: why it is not sent
    # A skip that is not recorded in the ledger, decided again at every tick: its reason may go away
    # while the mail is still timely (a lapsed partner renews before the call).
    held: bool = False
    in_reply_to: str = ""  # an answer to the recipient's own mail (a registration confirmed) is threaded to it

    @property
    def key(self) -> str:
        return ledger_key(self.mailing, self.occurrence, self.recipient)

    def skipped(self, reason: str, *, held: bool = False) -> Due:
        return replace(self, reason=reason, held=held)

    def ledger_record(self, status: str, now: datetime) -> dict[str, Any]:
        return {
            "mailing": self.mailing,
            "occurrence": self.occurrence,
            "recipient": self.recipient,
            "partner_id": self.partner_id,
            "status": status,  # "queued" (in the outbox) | "skipped"
            "reason": self.reason,
            "why": self.why,
            "due_at": _iso(self.due_at),
            "at": _iso(now),
            "outbox_key": outbox_key(self.key) if status == "queued" else None,
            **self.record,
        }


def _iso(moment: datetime) -> str:
    # One string for the many entries of a mailing decided at one time for one due time: thousands of
    # ledger entries would otherwise each hold their own copy. Keyed by the offset too: 14:00-05:00 and
    # 19:00+00:00 are equal datetimes, with different words.
    return _iso_of(moment, moment.utcoffset())


@functools.lru_cache(maxsize=64)
def _iso_of(moment: datetime, _offset: timedelta | None) -> str:
    return moment.isoformat()


def lapse_reason(partner: Partner, today: date, mc: Any) -> str:
    """Why a lapsed partner gets no invitations or training mail now ("" when it is in good standing)."""
    since = lapsed_since(partner, today, mc.renewals.grace_days)
    if since is None:
        return ""
    return (f"{partner.name} lapsed on {since.isoformat()} (renewal due {partner.renews_on}, no payment recorded "
            f"within {mc.renewals.grace_days} days); held until `partners renew {partner.id}`")


def billing_contacts(partner: Partner) -> tuple[Contact, ...]:
    """Billing contacts; the primary contact if none; the first contact if neither is marked."""
    for role in ("billing", "primary"):
        found = tuple(c for c in partner.contacts if role in c.roles)
        if found:
            return found
    return partner.contacts[:1]


def billing_role(partner: Partner) -> str:
    """Why ``billing_contacts`` chose whom it chose: "billing", "primary" (no billing contact on record) or
    "contact" (neither role named: the first contact), so a notice can say to whom it was sent and why."""
    for role in ("billing", "primary"):
        if any(role in c.roles for c in partner.contacts):
            return role
    return "contact"


def primary_contacts(partner: Partner) -> tuple[Contact, ...]:
    return tuple(c for c in partner.contacts if "primary" in c.roles) or partner.contacts[:1]


def format_day(d: date) -> str:
    """"Wednesday, March 31, 2027": spelled out by hand, independent of the locale."""
    return format_date(d, with_year=True)


def format_when(dt: datetime, tz: ZoneInfo) -> str:
    """"Tuesday, January 12, 2027, 2:00 PM ET"."""
    return format_local(dt, str(tz), with_year=True)


def money(dollars: int) -> str:
    return f"${dollars:,}"


def stamp(dt: datetime) -> str:
    """Compact UTC form for occurrence names: 20270112T190000Z."""
    return dt.astimezone(ZoneInfo("UTC")).strftime("%Y%m%dT%H%M%SZ")


# What planning lists of the ledger is only the calendar state of calls and trainings that are not yet
# history (calls.py and trainings/schedule.py: calendar_state; trainings/notices.py: calendar_changes;
# a call or course longer ago than its LOOKBACK gets no mail); everything else it asks for by key. An
# entry no planning will list again may leave the store's hot part.
_LISTED = ("call-invite", "call-update", "call-cancel")
SETTLE_AFTER = timedelta(days=60)  # past a call's or a course's start (more than either LOOKBACK)


def settled(record: Mapping[str, Any], now: datetime) -> bool:
    """Whether planning at ``now`` or later can do without listing this ledger record."""
    listed = record.get("mailing") in _LISTED or "training_id" in record
    if listed and record.get("status") == "queued":
        start = record.get("start")
        return bool(start) and datetime.fromisoformat(start) < now - SETTLE_AFTER
    return True


def queued(ledger: Mapping[str, Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    return (r for r in ledger.values() if r.get("status") == "queued")

"""The trainings' calendar: which courses there are, when, and what each person's calendar holds of them.

Courses come from config like the calls: an RRULE ("every four months") expanded from ``first`` and/or
dated entries. A course keeps its id when it moves (a dated entry with the id of a rule occurrence moves
that occurrence), and the id is the calendar UID, so a moved course reaches people as an update of the
same entry with a higher SEQUENCE; a course that leaves the config after entries went out is cancelled.

What each person's calendar holds is read back from the ledger: every training mail that carried an
iTIP message records the course's start, the SEQUENCE and the METHOD (``calendar_state``). SEQUENCE is
counted per person, so each person's copy only ever sees it rise.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr

from ..calendar import format_local
from ..mailings.due import CalendarEvent
from ..mailings.types import MailingsConfig, TrainingDate, TrainingsConfig

_RULE_SLACK = timedelta(days=400)  # an explicit entry may move a rule occurrence by up to this much
_RULE_ID = re.compile(r"^training-(\d{4}-\d{2}-\d{2})$")
REMOVED = "training-removed"  # the reason recorded with a CANCEL sent because the course left the config


def course_end(cfg: TrainingsConfig, start: datetime) -> datetime:
    """The end of a course that has no explicit end: ``duration_minutes`` if the config uses that (the old
    key), else ``days`` days ending at ``day_ends`` on the last (a two-day course, 9:00 Monday to 17:00
    Tuesday)."""
    if cfg.duration is not None:
        return start + cfg.duration
    last = start.date() + timedelta(days=cfg.days - 1)
    end = datetime.combine(last, cfg.day_ends, tzinfo=start.tzinfo)
    return end if end > start else start + timedelta(hours=8)


def _occurrence(cfg: TrainingsConfig, occ: datetime) -> TrainingDate:
    return TrainingDate(id=f"training-{occ.date().isoformat()}", start=occ, end=course_end(cfg, occ), title=cfg.title,
                        place=cfg.place, remote=cfg.remote, capacity=cfg.capacity)


def training_dates(cfg: TrainingsConfig, start: datetime, end: datetime) -> list[TrainingDate]:
    """Courses starting in [start, end), moves and cancellations applied, in time order."""
    by_id: dict[str, TrainingDate] = {}
    if cfg.rrule and cfg.first is not None:
        rule = rrulestr(cfg.rrule, dtstart=cfg.first)
        for occ in rule.between(start - _RULE_SLACK, end + _RULE_SLACK, inc=True):
            t = _occurrence(cfg, occ)
            by_id[t.id] = t
    for d in cfg.dates:
        by_id[d.id] = d
    for tid in cfg.cancelled:
        by_id.pop(tid, None)
    return sorted((t for t in by_id.values() if start <= t.start < end), key=lambda t: (t.start, t.id))


def find(cfg: TrainingsConfig, training_id: str) -> TrainingDate | None:
    """The course with this id, wherever it is in time; None if there is none (or it was cancelled)."""
    tid = training_id.strip().lower()
    if tid in cfg.cancelled:
        return None
    for d in cfg.dates:
        if d.id == tid:
            return d
    m = _RULE_ID.match(tid)
    if m and cfg.rrule and cfg.first is not None:
        day = date.fromisoformat(m.group(1))
        around = datetime.combine(day, cfg.first.timetz())
        for t in training_dates(cfg, around - timedelta(days=2), around + timedelta(days=2)):
            if t.id == tid:
                return t
    return None


def known(cfg: TrainingsConfig, now: datetime, *, back: timedelta = _RULE_SLACK,
          ahead: timedelta = _RULE_SLACK) -> dict[str, TrainingDate]:
    """id -> course for the courses around ``now`` (the ones mail may be about)."""
    return {t.id: t for t in training_dates(cfg, now - back, now + ahead)}


# -- what each person's calendar holds -------------------------------------------------------------------
def calendar_state(ledger: Mapping[str, Mapping[str, Any]]) -> dict[tuple[str, str], Mapping[str, Any]]:
    """(training id, recipient) -> the ledger record of the last iTIP message queued to them about it."""
    state: dict[tuple[str, str], Mapping[str, Any]] = {}
    for rec in ledger.values():
        if rec.get("status") != "queued" or "training_id" not in rec or "method" not in rec:
            continue
        k = (rec["training_id"], rec["recipient"])
        if k not in state or (rec.get("sequence", 0), rec.get("at", "")) > (state[k].get("sequence", 0),
                                                                             state[k].get("at", "")):
            state[k] = rec
    return state


def holds_entry(last: Mapping[str, Any] | None) -> bool:
    """Whether a person's calendar shows the course (the last iTIP message they got was a REQUEST)."""
    return last is not None and last.get("method") == "REQUEST"


def next_sequence(last: Mapping[str, Any] | None) -> int:
    return 0 if last is None else int(last.get("sequence", 0)) + 1


# -- words and calendar entries ----------------------------------------------------------------------------
def span_words(t: TrainingDate, tz_name: str) -> str:
    """"Monday, March 8, 2027, 9:00 AM ET to Tuesday, March 9, 2027, 5:00 PM ET"; one day: "... to 5:00 PM ET"."""
    start = format_local(t.start, tz_name, with_year=True)
    end = format_local(t.ends, tz_name, with_year=True)
    first_day, _, _ = start.rpartition(", ")
    end_day, _, end_time = end.rpartition(", ")
    return f"{start} to {end_time}" if first_day == end_day else f"{start} to {end}"


def days_of(t: TrainingDate, tz_name: str) -> int:
    """How many days a course runs on the same hours (9:00-17:00 Monday and Tuesday: 2); 1 for one block."""
    tz = ZoneInfo(tz_name)
    s, e = t.start.astimezone(tz), t.ends.astimezone(tz)
    n = (e.date() - s.date()).days + 1
    return n if n > 1 and e.time() > s.time() else 1


def event(t: TrainingDate, mc: MailingsConfig, *, method: str, sequence: int, email: str, name: str,
          registered: bool) -> CalendarEvent:
    """The iTIP message of course ``t`` for one person. Registered people get the remote joining details
    and an entry already accepted; everyone else an invitation (accepting it registers them)."""
    tz = mc.timezone
    days = days_of(t, tz)
    first_end = t.ends  # a multi-day course is one entry repeated daily: its first day ends at the last's time
    if days > 1:
        local = ZoneInfo(tz)
        first_end = datetime.combine(t.start.astimezone(local).date(), t.ends.astimezone(local).time(), tzinfo=local)
    lines = [f"{t.title}: {span_words(t, tz)}" + (f", {days} days" if days > 1 else "")]
    if t.place:
        lines.append(f"Where: {t.place}")
    if registered and t.remote:
        lines.append(f"Joining remotely: {t.remote}")
    elif t.remote:
        lines.append("Remote joining details are sent to registered participants.")
    if not registered and method == "REQUEST":
        lines.append("Accept this invitation to register; decline it, or reply \"cancel\", to give up a place.")
    return CalendarEvent(method=method, uid=t.id, sequence=sequence, start=t.start, end=first_end, summary=t.title,
                         description="\n\n".join(lines), location=t.place or (t.remote if registered else ""),
                         attendee=email, attendee_name=name, tzid=tz, days=days,
                         partstat="ACCEPTED" if registered and method == "REQUEST" else "NEEDS-ACTION")


def training_of_uid(uid: str, domain: str) -> str:
    """The training id a calendar UID names ("training-2027-03-08@openatrium.example" -> the id)."""
    uid = uid.strip().lower()
    local, _, dom = uid.rpartition("@")
    return local if dom == domain.lower() else uid

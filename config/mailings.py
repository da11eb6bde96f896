"""The scheduled mailings' tables: [mailings], [calls], [trainings], [renewals] and [program].

Local date-times in the file (``start = 2027-01-12T14:00:00``) are read in the mailings' time zone
(America/New_York unless [mailings] timezone says otherwise), the way the program announces them.
"""

from __future__ import annotations

import re
import math
from datetime import datetime, time, timedelta, tzinfo
from dataclasses import replace
from typing import Any, Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrulestr

from workflows.calendar import PROGRAM_TZ
from workflows.model import PLANS
from workflows.mailings.types import (CallDate, CallsConfig, MailingsConfig, ProgramConfig, RenewalsConfig,
                                      TrainingDate, TrainingsConfig)

from workflows.trainings.schedule import course_end

from .reader import Reader

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
KEYS = {
    "mailings": ("timezone", "enabled"),
    "calls": ("title", "rrule", "first", "dates", "cancelled", "duration_minutes", "dial_in", "agenda",
              "invite_days_before", "reminder_days_before"),
    "calls.dates": ("id", "start", "dial_in"),
    "trainings": ("title", "rrule", "first", "dates", "cancelled", "announce_days_before", "reminder_days_before",
                  "seats", "seats_per_term", "refresher_after_days", "capacity", "place", "remote", "days",
                  "day_ends", "duration_minutes"),
    "trainings.dates": ("id", "start", "end", "title", "place", "remote", "capacity"),
    "trainings.seats": tuple(PLANS),
    "renewals": ("offsets", "send_at", "pay_url", "grace_days"),
    "program": ("name", "profile_url", "badge_image", "training_url"),
}


def _moment(r: Reader, v: Any, where: str, tz: tzinfo) -> datetime:
    """A TOML date-time; local ones are in the mailings' time zone."""
    if isinstance(v, str):
        try:
            v = datetime.fromisoformat(v)
        except ValueError:
            raise r.fail(where, f"{v!r} is not a date-time like 2027-01-12T14:00:00") from None
    if not isinstance(v, datetime):
        raise r.fail(where, f"must be a date-time like 2027-01-12T14:00:00 (New York time), got {v!r}")
    return v.replace(tzinfo=tz) if v.tzinfo is None else v


def _id(r: Reader, v: Any, where: str) -> str:
    if not isinstance(v, str) or not _ID_RE.match(v):
        raise r.fail(where, f"{v!r}: use lower-case letters, digits, '-', '_' or '.' (e.g. \"call-2027-q1\")")
    return v


def _dated_entries(r: Reader, t: dict[str, Any], name: str, what: str, example: str, tz: tzinfo
                   ) -> Iterator[tuple[str, dict[str, Any], str, datetime]]:
    """(where, entry, id, start) for each [[<name>.dates]] entry; the id defaults to
    "<what>-<local date>" and must not repeat."""
    entries = t.get("dates", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise r.fail(f"[{name}] dates", f"must be a list of tables ([[{name}.dates]] with start = ...)")
    seen: set[str] = set()
    for i, e in enumerate(entries):
        r.check_keys(e, f"[{name}.dates]", KEYS[f"{name}.dates"])
        where = f"[[{name}.dates]] #{i + 1}"
        if "start" not in e:
            raise r.fail(f"{where} start", f"missing; the {what}'s date and time, e.g. {example}")
        start = _moment(r, e["start"], f"{where} start", tz)
        eid = _id(r, e.get("id", f"{what}-{start.astimezone(tz).date().isoformat()}"), f"{where} id")
        if eid in seen:
            raise r.fail(f"{where} id", f"{eid!r} is listed twice; one id, one {what}")
        seen.add(eid)
        yield where, e, eid, start


def read_mailings(r: Reader) -> MailingsConfig:
    m = r.section("mailings", KEYS["mailings"])
    tz_name = m.get("timezone", PROGRAM_TZ)
    try:
        if not isinstance(tz_name, str):
            raise TypeError
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise r.fail("[mailings] timezone", f"{tz_name!r} is not an IANA zone like \"America/New_York\"") from None
    allowed = MailingsConfig().enabled
    enabled = m.get("enabled", sorted(allowed))
    if not isinstance(enabled, list) or not set(enabled) <= allowed:
        raise r.fail("[mailings] enabled", f"must be a list drawn from {sorted(allowed)}, got {enabled!r}")
    return MailingsConfig(timezone=tz_name, enabled=frozenset(enabled), calls=_calls(r, tz),
                          trainings=_trainings(r, tz), renewals=_renewals(r), program=_program(r))


def _calls(r: Reader, tz: tzinfo) -> CallsConfig:
    c = r.section("calls", KEYS["calls"])
    first = _moment(r, c["first"], "[calls] first", tz) if "first" in c else None
    rule = r.text(c, "[calls]", "rrule", "").strip().removeprefix("RRULE:")
    if rule:
        if first is None:
            raise r.fail("[calls] first", "needed with rrule: the first call's date and time, e.g. "
                                          "2027-01-12T14:00:00 (New York time)")
        try:
            rrulestr(rule, dtstart=first)
        except (ValueError, TypeError) as e:
            raise r.fail("[calls] rrule", f"{rule!r} is not an RFC 5545 RRULE like "
                                          f"\"FREQ=MONTHLY;INTERVAL=3;BYDAY=2TU\": {e}") from None
    dates = [CallDate(id=cid, start=start, dial_in=r.text(e, where, "dial_in", ""))
             for where, e, cid, start in _dated_entries(r, c, "calls", "call", "2027-04-13T14:00:00", tz)]
    cancelled = c.get("cancelled", [])
    if not isinstance(cancelled, list):
        raise r.fail("[calls] cancelled", "must be a list of call ids like [\"call-2027-10-12\"]")
    calls = CallsConfig(
        title=r.text(c, "[calls]", "title", CallsConfig().title),
        rrule=rule,
        first=first,
        dates=tuple(dates),
        cancelled=frozenset(_id(r, x, "[calls] cancelled") for x in cancelled),
        duration=timedelta(minutes=r.whole(c, "[calls]", "duration_minutes", 60, 5, 24 * 60)),
        dial_in=r.text(c, "[calls]", "dial_in", ""),
        agenda=r.text(c, "[calls]", "agenda", ""),
        invite_days_before=r.whole(c, "[calls]", "invite_days_before", 14, 1, 120),
        reminder_days_before=r.whole(c, "[calls]", "reminder_days_before", 1, 0, 30),
    )
    if calls.reminder_days_before >= calls.invite_days_before:
        raise r.fail("[calls] reminder_days_before", "must be fewer days than invite_days_before")
    return calls


def _rule(r: Reader, t: dict[str, Any], name: str, tz: tzinfo, example: str, rule_example: str
          ) -> tuple[str, datetime | None]:
    """[<name>] rrule and first, checked together (the rule is expanded from ``first``)."""
    first = _moment(r, t["first"], f"[{name}] first", tz) if "first" in t else None
    rule = r.text(t, f"[{name}]", "rrule", "").strip().removeprefix("RRULE:")
    if rule:
        if first is None:
            raise r.fail(f"[{name}] first", f"needed with rrule: the first {name[:-1]}'s date and time, e.g. "
                                            f"{example} (New York time)")
        try:
            rrulestr(rule, dtstart=first)
        except (ValueError, TypeError) as e:
            raise r.fail(f"[{name}] rrule", f"{rule!r} is not an RFC 5545 RRULE like "
                                            f"\"{rule_example}\": {e}") from None
    return rule, first


def _clock_time(r: Reader, v: Any, where: str) -> time:
    if isinstance(v, time):
        return v
    if isinstance(v, str):
        try:
            hh, mm = v.split(":")
            return time(int(hh), int(mm))
        except ValueError:
            pass
    raise r.fail(where, f"{v!r} is not a time like \"17:00\"")


def _seats(r: Reader, t: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    """Included places per plan. Today's ``seats_per_term = N`` is read as the standard plan's N, and the solo
    plan (half the price, one person) gets half of it, rounded up, unless [trainings.seats] says otherwise."""
    table = t.get("seats", {})
    if not isinstance(table, dict):
        raise r.fail("[trainings] seats", "must be a table like { standard = 2, solo = 1 }")
    r.check_keys(table, "[trainings.seats]", KEYS["trainings.seats"])
    if "seats_per_term" in t and "standard" in table:
        raise r.fail("[trainings] seats_per_term", "give [trainings.seats] standard or seats_per_term (its old "
                                                   "name), not both")
    standard = r.whole(t, "[trainings]", "seats_per_term", 2, 0, 100) if "seats_per_term" in t else \
        r.whole(table, "[trainings.seats]", "standard", 2, 0, 100)
    solo = r.whole(table, "[trainings.seats]", "solo", math.ceil(standard / 2), 0, 100)
    return (("standard", standard), ("solo", solo))


def _trainings(r: Reader, tz: tzinfo) -> TrainingsConfig:
    t = r.section("trainings", KEYS["trainings"])
    rule, first = _rule(r, t, "trainings", tz, "2027-03-08T09:00:00", "FREQ=MONTHLY;INTERVAL=4;BYDAY=2MO")
    if "duration_minutes" in t and ("days" in t or "day_ends" in t):
        raise r.fail("[trainings] duration_minutes", "give days/day_ends (a course of several days) or "
                                                     "duration_minutes, not both")
    duration = timedelta(minutes=r.whole(t, "[trainings]", "duration_minutes", 180, 5, 14 * 24 * 60)) \
        if "duration_minutes" in t else None
    days = r.whole(t, "[trainings]", "days", 2, 1, 14)
    day_ends = _clock_time(r, t.get("day_ends", "17:00"), "[trainings] day_ends")
    capacity = r.whole(t, "[trainings]", "capacity", 16, 1, 10000)
    title = r.text(t, "[trainings]", "title", "Open Atrium partner training")
    place, remote = r.text(t, "[trainings]", "place", ""), r.text(t, "[trainings]", "remote", "")
    base = TrainingsConfig(title=title, rrule=rule, first=first, capacity=capacity, place=place, remote=remote,
                           days=days, day_ends=day_ends, duration=duration)
    dates = []
    for where, e, tid, start in _dated_entries(r, t, "trainings", "training", "2027-03-08T09:00:00", tz):
        end = _moment(r, e["end"], f"{where} end", tz) if "end" in e else course_end(base, start)
        if end <= start:
            raise r.fail(f"{where} end", f"must be after the start ({start.isoformat()})")
        dates.append(TrainingDate(id=tid, start=start, end=end, title=r.text(e, where, "title", title),
                                  place=r.text(e, where, "place", place), remote=r.text(e, where, "remote", remote),
                                  capacity=r.whole(e, where, "capacity", capacity, 1, 10000)))
    cancelled = t.get("cancelled", [])
    if not isinstance(cancelled, list):
        raise r.fail("[trainings] cancelled", "must be a list of training ids like [\"training-2027-07-12\"]")
    announce = r.whole(t, "[trainings]", "announce_days_before", 30, 1, 365)
    reminder = r.whole(t, "[trainings]", "reminder_days_before", 2, 0, 60)
    if reminder >= announce:
        raise r.fail("[trainings] reminder_days_before", "must be fewer days than announce_days_before")
    return replace(
        base,
        dates=tuple(sorted(dates, key=lambda d: d.start)),
        cancelled=frozenset(_id(r, x, "[trainings] cancelled") for x in cancelled),
        announce_days_before=announce,
        reminder_days_before=reminder,
        seats=_seats(r, t),
        refresher_after_days=r.whole(t, "[trainings]", "refresher_after_days", 365, 0, 3650),
    )


def _renewals(r: Reader) -> RenewalsConfig:
    rn = r.section("renewals", KEYS["renewals"])
    offsets = rn.get("offsets", list(RenewalsConfig().offsets))
    if (not isinstance(offsets, list) or not offsets
            or not all(isinstance(o, int) and not isinstance(o, bool) and -365 <= o <= 365 for o in offsets)
            or len(set(offsets)) != len(offsets)):
        raise r.fail("[renewals] offsets", "must be a list of distinct whole days before the renewal date, "
                                           "negative for after, e.g. [60, 30, 7, 0, -14]")
    send_at = rn.get("send_at", "10:00")
    if isinstance(send_at, str):
        try:
            hh, mm = send_at.split(":")
            send_at = time(int(hh), int(mm))
        except ValueError:
            raise r.fail("[renewals] send_at", f"{send_at!r} is not a time like \"10:00\"") from None
    if not isinstance(send_at, time):
        raise r.fail("[renewals] send_at", f"{send_at!r} is not a time like \"10:00\"")
    return RenewalsConfig(offsets=tuple(sorted(offsets, reverse=True)), send_at=send_at,
                          pay_url=r.text(rn, "[renewals]", "pay_url", ""),
                          grace_days=r.whole(rn, "[renewals]", "grace_days", 30, 0, 3650))


def _program(r: Reader) -> ProgramConfig:
    p = r.section("program", KEYS["program"])
    profile_url = r.text(p, "[program]", "profile_url", ProgramConfig().profile_url)
    if "{id}" not in profile_url or not profile_url.startswith(("https://", "http://")):
        raise r.fail("[program] profile_url", f"{profile_url!r} must be an http(s) URL with {{id}} where the "
                                              f"partner id goes, e.g. \"https://openatrium.com/partners/{{id}}\"")
    return ProgramConfig(
        name=r.text(p, "[program]", "name", ProgramConfig().name),
        profile_url=profile_url,
        badge_image=r.text(p, "[program]", "badge_image", ProgramConfig().badge_image),
        training_url=r.text(p, "[program]", "training_url", ""),
    )

"""The scheduled mailings' tables: [mailings], [calls], [trainings], [renewals] and [program].

Local date-times in the file (``start = 2027-01-12T14:00:00``) are read in the mailings' time zone
(America/New_York unless [mailings] timezone says otherwise), the way the program announces them.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta, tzinfo
from typing import Any, Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrulestr

from workflows.calendar import PROGRAM_TZ
from workflows.mailings.types import (CallDate, CallsConfig, MailingsConfig, ProgramConfig, RenewalsConfig,
                                      TrainingDate, TrainingsConfig)

from .reader import Reader

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
KEYS = {
    "mailings": ("timezone", "enabled"),
    "calls": ("title", "rrule", "first", "dates", "cancelled", "duration_minutes", "dial_in", "agenda",
              "invite_days_before", "reminder_days_before"),
    "calls.dates": ("id", "start", "dial_in"),
    "trainings": ("dates", "announce_days_before", "seats_per_term", "refresher_after_days", "duration_minutes"),
    "trainings.dates": ("id", "start", "title", "place"),
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


def _trainings(r: Reader, tz: tzinfo) -> TrainingsConfig:
    t = r.section("trainings", KEYS["trainings"])
    dates = [TrainingDate(id=tid, start=start, title=r.text(e, where, "title", "Open Atrium partner training"),
                          place=r.text(e, where, "place", ""))
             for where, e, tid, start in _dated_entries(r, t, "trainings", "training", "2027-02-10T10:00:00", tz)]
    return TrainingsConfig(
        dates=tuple(sorted(dates, key=lambda d: d.start)),
        announce_days_before=r.whole(t, "[trainings]", "announce_days_before", 30, 1, 365),
        seats_per_term=r.whole(t, "[trainings]", "seats_per_term", 2, 0, 100),
        refresher_after_days=r.whole(t, "[trainings]", "refresher_after_days", 365, 0, 3650),
        duration=timedelta(minutes=r.whole(t, "[trainings]", "duration_minutes", 180, 5, 24 * 60)),
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

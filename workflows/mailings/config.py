"""The scheduled mailings' settings: the [mailings], [calls], [trainings], [renewals] and [program] tables.

``parse_mailings(raw, source)`` takes the whole parsed TOML (Settings.raw) and
returns a MailingsConfig, or raises ConfigError naming the file and the key.
Local date-times in the file (``start = 2027-01-12T14:00:00``) are read in the
program's time zone, America/New_York, the way the program announces them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrulestr

from ..errors import ConfigError
from ..model import FROZEN

NEW_YORK = "America/New_York"
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


@dataclass(**FROZEN)
class CallDate:
    id: str  # stable across moves: the calendar UID is made from it
    start: datetime  # aware
    dial_in: str = ""


@dataclass(**FROZEN)
class CallsConfig:
    title: str = "State of Open Atrium"
    rrule: str = ""  # RFC 5545 RRULE, expanded from `first`
    first: datetime | None = None  # DTSTART of the rule, aware
    dates: tuple[CallDate, ...] = ()  # explicit calls; an id equal to a rule occurrence's moves it
    cancelled: frozenset[str] = frozenset()  # ids of rule occurrences that will not happen
    duration: timedelta = timedelta(minutes=60)
    dial_in: str = ""
    agenda: str = ""
    invite_days_before: int = 14
    reminder_days_before: int = 1


@dataclass(**FROZEN)
class TrainingDate:
    id: str
    start: datetime
    title: str = "Open Atrium partner training"
    place: str = ""


@dataclass(**FROZEN)
class TrainingsConfig:
    dates: tuple[TrainingDate, ...] = ()
    announce_days_before: int = 30
    seats_per_term: int = 2  # "each partnership includes training for two people"
    refresher_after_days: int = 365  # trained longer ago than this: offered a refresher
    duration: timedelta = timedelta(hours=3)


@dataclass(**FROZEN)
class RenewalsConfig:
    offsets: tuple[int, ...] = (60, 30, 7, 0, -14)  # days before the term ends; negative: after (lapse)
    send_at: time = time(10, 0)  # local time of day the notice is due
    pay_url: str = ""


@dataclass(**FROZEN)
class ProgramConfig:
    name: str = "Open Atrium Partners Program"
    profile_url: str = "https://openatrium.com/partners/{id}"  # {id}: the partner id
    badge_image: str = "https://openatrium.com/partners/badge.png"
    training_url: str = ""


@dataclass(**FROZEN)
class MailingsConfig:
    timezone: str = NEW_YORK
    enabled: frozenset[str] = frozenset({"calls", "renewals", "trainings", "welcome"})
    calls: CallsConfig = CallsConfig()
    trainings: TrainingsConfig = TrainingsConfig()
    renewals: RenewalsConfig = RenewalsConfig()
    program: ProgramConfig = ProgramConfig()

    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


_KNOWN = {
    "mailings": {"timezone", "enabled"},
    "calls": {"title", "rrule", "first", "dates", "cancelled", "duration_minutes", "dial_in", "agenda",
              "invite_days_before", "reminder_days_before"},
    "calls.dates": {"id", "start", "dial_in"},
    "trainings": {"dates", "announce_days_before", "seats_per_term", "refresher_after_days", "duration_minutes"},
    "trainings.dates": {"id", "start", "title", "place"},
    "renewals": {"offsets", "send_at"  , "pay_url"},
    "program": {"name", "profile_url", "badge_image", "training_url"},
}


class _R:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tz = ZoneInfo(NEW_YORK)  # set from [mailings] timezone before any date-time is read

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {problem}")

    def table(self, raw: dict[str, Any], name: str) -> dict[str, Any]:
        t = raw.get(name, {})
        if not isinstance(t, dict):
            raise self.fail(f"[{name}]", "must be a table")
        self.check_keys(t, name)
        return t

    def check_keys(self, t: dict[str, Any], name: str) -> None:
        unknown = sorted(set(t) - _KNOWN[name])
        if unknown:
            raise self.fail(f"[{name}] {unknown[0]}", f"unknown key; allowed: {', '.join(sorted(_KNOWN[name]))}")

    def str_(self, t: dict[str, Any], where: str, key: str, default: str) -> str:
        v = t.get(key, default)
        if not isinstance(v, str):
            raise self.fail(f"[{where}] {key}", f"must be a string, got {v!r}")
        return v

    def int_(self, t: dict[str, Any], where: str, key: str, default: int, lo: int = 0, hi: int = 3650) -> int:
        v = t.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise self.fail(f"[{where}] {key}", f"must be a whole number from {lo} to {hi}, got {v!r}")
        return v

    def moment(self, v: Any, where: str) -> datetime:
        """A TOML date-time; local ones are in the program's time zone."""
        if isinstance(v, str):
            try:
                v = datetime.fromisoformat(v)
            except ValueError:
                raise self.fail(where, f"{v!r} is not a date-time like 2027-01-12T14:00:00") from None
        if not isinstance(v, datetime):
            raise self.fail(where, f"must be a date-time like 2027-01-12T14:00:00 (New York time), got {v!r}")
        return v.replace(tzinfo=self.tz) if v.tzinfo is None else v

    def id_(self, v: Any, where: str) -> str:
        if not isinstance(v, str) or not _ID_RE.match(v):
            raise self.fail(where, f"{v!r}: use lower-case letters, digits, '-', '_' or '.' (e.g. \"call-2027-q1\")")
        return v

    def entries(self, t: dict[str, Any], name: str) -> list[dict[str, Any]]:
        v = t.get("dates", [])
        if not isinstance(v, list) or not all(isinstance(e, dict) for e in v):
            raise self.fail(f"[{name}] dates", f"must be a list of tables ([[{name}.dates]] with start = ...)")
        for e in v:
            self.check_keys(e, f"{name}.dates")
        return v

    def dated_entries(self, t: dict[str, Any], name: str, what: str, example: str
                      ) -> Iterator[tuple[str, dict[str, Any], str, datetime]]:
        """(where, entry, id, start) for each [[<name>.dates]] entry; the id defaults to
        "<what>-<local date>" and must not repeat."""
        seen: set[str] = set()
        for i, e in enumerate(self.entries(t, name)):
            where = f"[[{name}.dates]] #{i + 1}"
            if "start" not in e:
                raise self.fail(f"{where} start", f"missing; the {what}'s date and time, e.g. {example}")
            start = self.moment(e["start"], f"{where} start")
            eid = self.id_(e.get("id", f"{what}-{start.astimezone(self.tz).date().isoformat()}"), f"{where} id")
            if eid in seen:
                raise self.fail(f"{where} id", f"{eid!r} is listed twice; one id, one {what}")
            seen.add(eid)
            yield where, e, eid, start


def parse_mailings(raw: dict[str, Any], source: str) -> MailingsConfig:
    r = _R(source)
    m = r.table(raw, "mailings")
    tz_name = m.get("timezone", NEW_YORK)
    try:
        if not isinstance(tz_name, str):
            raise TypeError
        r.tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise r.fail("[mailings] timezone", f"{tz_name!r} is not an IANA zone like \"America/New_York\"") from None
    enabled = m.get("enabled", sorted(MailingsConfig().enabled))
    allowed = MailingsConfig().enabled
    if not isinstance(enabled, list) or not set(enabled) <= allowed:
        raise r.fail("[mailings] enabled", f"must be a list drawn from {sorted(allowed)}, got {enabled!r}")

    c = r.table(raw, "calls")
    first = r.moment(c["first"], "[calls] first") if "first" in c else None
    rule = r.str_(c, "calls", "rrule", "").strip().removeprefix("RRULE:")
    if rule:
        if first is None:
            raise r.fail("[calls] first", "needed with rrule: the first call's date and time, e.g. "
                                          "2027-01-12T14:00:00 (New York time)")
        try:
            rrulestr(rule, dtstart=first)
        except (ValueError, TypeError) as e:
            raise r.fail("[calls] rrule", f"{rule!r} is not an RFC 5545 RRULE like "
                                          f"\"FREQ=MONTHLY;INTERVAL=3;BYDAY=2TU\": {e}") from None
    dates = [CallDate(id=cid, start=start, dial_in=r.str_(e, where, "dial_in", ""))
             for where, e, cid, start in r.dated_entries(c, "calls", "call", "2027-04-13T14:00:00")]
    cancelled = c.get("cancelled", [])
    if not isinstance(cancelled, list):
        raise r.fail("[calls] cancelled", "must be a list of call ids like [\"call-2027-10-12\"]")
    calls = CallsConfig(
        title=r.str_(c, "calls", "title", CallsConfig().title),
        rrule=rule,
        first=first,
        dates=tuple(dates),
        cancelled=frozenset(r.id_(x, "[calls] cancelled") for x in cancelled),
        duration=timedelta(minutes=r.int_(c, "calls", "duration_minutes", 60, 5, 24 * 60)),
        dial_in=r.str_(c, "calls", "dial_in", ""),
        agenda=r.str_(c, "calls", "agenda", ""),
        invite_days_before=r.int_(c, "calls", "invite_days_before", 14, 1, 120),
        reminder_days_before=r.int_(c, "calls", "reminder_days_before", 1, 0, 30),
    )
    if calls.reminder_days_before >= calls.invite_days_before:
        raise r.fail("[calls] reminder_days_before", "must be fewer days than invite_days_before")

    t = r.table(raw, "trainings")
    tdates = [TrainingDate(id=tid, start=start, title=r.str_(e, where, "title", "Open Atrium partner training"),
                           place=r.str_(e, where, "place", ""))
              for where, e, tid, start in r.dated_entries(t, "trainings", "training", "2027-02-10T10:00:00")]
    trainings = TrainingsConfig(
        dates=tuple(sorted(tdates, key=lambda d: d.start)),
        announce_days_before=r.int_(t, "trainings", "announce_days_before", 30, 1, 365),
        seats_per_term=r.int_(t, "trainings", "seats_per_term", 2, 0, 100),
        refresher_after_days=r.int_(t, "trainings", "refresher_after_days", 365, 0, 3650),
        duration=timedelta(minutes=r.int_(t, "trainings", "duration_minutes", 180, 5, 24 * 60)),
    )

    rn = r.table(raw, "renewals")
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
    renewals = RenewalsConfig(offsets=tuple(sorted(offsets, reverse=True)), send_at=send_at,
                              pay_url=r.str_(rn, "renewals", "pay_url", ""))

    p = r.table(raw, "program")
    profile_url = r.str_(p, "program", "profile_url", ProgramConfig().profile_url)
    if "{id}" not in profile_url or not profile_url.startswith(("https://", "http://")):
        raise r.fail("[program] profile_url", f"{profile_url!r} must be an http(s) URL with {{id}} where the "
                                             f"partner id goes, e.g. \"https://openatrium.com/partners/{{id}}\"")
    program = ProgramConfig(
        name=r.str_(p, "program", "name", ProgramConfig().name),
        profile_url=profile_url,
        badge_image=r.str_(p, "program", "badge_image", ProgramConfig().badge_image),
        training_url=r.str_(p, "program", "training_url", ""),
    )
    return MailingsConfig(timezone=tz_name, enabled=frozenset(enabled), calls=calls, trainings=trainings,
                          renewals=renewals, program=program)


def local_day(d: date, at: time, tz: ZoneInfo) -> datetime:
    """``d`` at local time ``at`` in ``tz`` (aware)."""
    return datetime.combine(d, at, tzinfo=tz)

"""The [sla] table: the promise's calendar (opening hours, workdays, holidays, response time)."""

from __future__ import annotations

import math
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from workflows.calendar import DAY_NAMES, BusinessCalendar, holiday_source_error

from .reader import Reader

KEYS = ("timezone", "opens", "closes", "workdays", "holidays", "holiday_subdiv", "closures", "response_hours")
_DAY_LOOKUP = {name: i for i, name in enumerate(DAY_NAMES)} | {name[:3]: i for i, name in enumerate(DAY_NAMES)}


def _time(r: Reader, key: str, value: Any) -> time:
    # tomllib yields datetime.time for a bare `opens = 09:00:00` literal.
    if isinstance(value, time):
        if value.tzinfo is not None:
            raise r.fail(f"[sla] {key}", "must be a local time without offset")
        return value
    if isinstance(value, str):
        try:
            hh, mm = value.strip().split(":")
            if len(hh) <= 2 and len(mm) == 2:
                return time(int(hh), int(mm))
        except ValueError:
            pass
    raise r.fail(f"[sla] {key}", f'expected a time like "09:00" (HH:MM, 24-hour), got {value!r}')


def _date(r: Reader, key: str, value: Any) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise r.fail(f"[sla] {key}", f'expected dates like "2026-12-24" (YYYY-MM-DD), got {value!r}')


def read_sla(r: Reader) -> BusinessCalendar:
    """The calendar from [sla]; missing keys keep the program's defaults (09:00-17:00 ET, Mon-Fri, US holidays)."""
    t = r.section("sla", KEYS)
    kwargs: dict[str, Any] = {}

    if "timezone" in t:
        tz = t["timezone"]
        try:
            if not isinstance(tz, str):
                raise TypeError
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise r.fail("[sla] timezone", f'expected an IANA zone name like "America/New_York", got {tz!r}') from None
        kwargs["timezone"] = tz

    for key in ("opens", "closes"):
        if key in t:
            kwargs[key] = _time(r, key, t[key])
    opens = kwargs.get("opens", BusinessCalendar.__dataclass_fields__["opens"].default)
    closes = kwargs.get("closes", BusinessCalendar.__dataclass_fields__["closes"].default)
    if not opens < closes:
        raise r.fail("[sla] closes", f"must be later than opens ({opens:%H:%M}); overnight hours are not supported")

    if "workdays" in t:
        raw = t["workdays"]
        allowed = "list of day names like [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]"
        if not isinstance(raw, list) or not raw:
            raise r.fail("[sla] workdays", f"expected a non-empty {allowed}, got {raw!r}")
        days = set()
        for name in raw:
            if not isinstance(name, str) or name.strip().lower() not in _DAY_LOOKUP:
                raise r.fail("[sla] workdays", f"unknown day {name!r}; expected a {allowed}")
            days.add(_DAY_LOOKUP[name.strip().lower()])
        kwargs["workdays"] = frozenset(days)

    country: str | None = "US"
    if "holidays" in t:
        raw = t["holidays"]
        if not isinstance(raw, str) or not raw.strip():
            raise r.fail("[sla] holidays", f'expected a country code like "US" or "none", got {raw!r}')
        country = None if raw.strip().lower() == "none" else raw.strip().upper()
        kwargs["holiday_country"] = country
    if "holiday_subdiv" in t:
        raw = t["holiday_subdiv"]
        if not isinstance(raw, str) or not raw.strip():
            raise r.fail("[sla] holiday_subdiv", f'expected a subdivision code like "NY", got {raw!r}')
        if country is None:
            raise r.fail("[sla] holiday_subdiv", 'cannot be used with holidays = "none"')
        kwargs["holiday_subdiv"] = raw.strip().upper()
    if country is not None:
        if holiday_source_error(country, None):
            raise r.fail("[sla] holidays", f"unknown country code {country!r}; expected an ISO code like \"US\" or "
                                           f"\"none\"")
        subdiv = kwargs.get("holiday_subdiv")
        if subdiv and holiday_source_error(country, subdiv):
            known = ", ".join(holidays.country_holidays(country).subdivisions) or "none"
            raise r.fail("[sla] holiday_subdiv", f"unknown subdivision {subdiv!r} for {country}; expected one of: "
                                                 f"{known}")

    if "closures" in t:
        raw = t["closures"]
        if not isinstance(raw, list):
            raise r.fail("[sla] closures", f'expected a list of dates like ["2026-12-24"], got {raw!r}')
        kwargs["closures"] = frozenset(_date(r, "closures", v) for v in raw)

    if "response_hours" in t:
        raw = t["response_hours"]
        # bool is an int subclass; `response_hours = true` is a config mistake.
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not (0 < raw and math.isfinite(raw)):
            raise r.fail("[sla] response_hours", f"expected a positive number of business hours, got {raw!r}")
        kwargs["response_hours"] = float(raw)

    try:
        return BusinessCalendar(**kwargs)
    except ValueError as e:  # the calendar's own consistency checks, worded with the key
        raise r.fail("[sla]", str(e)) from None

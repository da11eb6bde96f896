"""Business-hours calendar for the partner reply promise.

Partners are promised a staff reply "within 24 hours on business days, during
regular business hours (EST)". We read that as *business time*: the clock only
runs while the desk is open (default 09:00-17:00 America/New_York, Mon-Fri,
US federal holidays and their observed days excluded, plus extra closures).

Pure computation: every function takes explicit timezone-aware datetimes and
never reads the wall clock.

Arithmetic is done in UTC on purpose: subtracting or adding to two datetimes
that share a ZoneInfo tzinfo is *wall-clock* arithmetic in Python, which is
off by an hour whenever a DST change sits in between.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

__all__ = [
    "BusinessCalendar",
    "format_date",
    "format_due",
    "format_duration",
    "format_local",
    "holiday_source_error",
    "PROGRAM_TZ",
]

PROGRAM_TZ = "America/New_York"
"""The program's time zone: "regular business hours (EST)". Every default that names a zone uses this."""

# Searching further than this for an open day means the calendar is
# effectively always closed (e.g. every workday listed as a closure); fail
# loudly instead of spinning.
_MAX_SEARCH_DAYS = 3700

DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June", "July",
    "August", "September", "October", "November", "December",
)


@functools.lru_cache(maxsize=256)
def _holiday_dates(country: str, subdiv: str | None, year: int) -> frozenset[date]:
    """Closed dates for one year; cached because building the object is slow.

    The "public" category is requested explicitly: for the US without a
    subdivision it is exactly the 11 federal holidays. The "government"
    category would add one-off executive-order closures (Christmas Eve in
    some years, days of mourning), which partners cannot anticipate.
    observed=True adds e.g. Friday 2026-07-03 for Independence Day on a
    Saturday; an observed day is filed under the year it falls in (Friday
    2027-12-31 for New Year 2028), so looking up by date.year is correct.
    """
    return frozenset(
        holidays.country_holidays(
            country, subdiv=subdiv, years=year, categories=("public",), observed=True
        )
    )


@functools.lru_cache(maxsize=64)
def holiday_source_error(country: str, subdiv: str | None) -> str | None:
    """Error text if `holidays` does not know the country/subdivision."""
    try:
        holidays.country_holidays(country, subdiv=subdiv)
    except NotImplementedError as exc:
        return str(exc)
    return None


def _require_aware(t: datetime, name: str) -> None:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {t!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class BusinessCalendar:
    timezone: str = PROGRAM_TZ
    opens: time = time(9, 0)
    closes: time = time(17, 0)
    workdays: frozenset[int] = frozenset({0, 1, 2, 3, 4})  # Monday=0
    holiday_country: str | None = "US"
    holiday_subdiv: str | None = None
    closures: frozenset[date] = frozenset()  # extra closed dates
    response_hours: float | None = None  # business hours; None = one business day

    def __post_init__(self) -> None:
        # Accept any iterable for the set fields but store frozensets so the
        # calendar stays hashable (it is a frozen dataclass).
        object.__setattr__(self, "workdays", frozenset(self.workdays))
        object.__setattr__(self, "closures", frozenset(self.closures))
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
            raise ValueError(f"timezone: unknown time zone {self.timezone!r}") from exc
        if self.opens.tzinfo is not None or self.closes.tzinfo is not None:
            raise ValueError("opens/closes: must be local wall-clock times without tzinfo")
        # Windows spanning midnight are not supported: every window must sit
        # inside one local date, which keeps the day-by-day walk simple.
        if not self.opens < self.closes:
            raise ValueError(f"closes: must be later than opens ({self.opens:%H:%M})")
        if not self.workdays:
            raise ValueError("workdays: at least one workday is required")
        if not self.workdays <= frozenset(range(7)):
            raise ValueError("workdays: weekday numbers must be 0 (Monday) to 6 (Sunday)")
        if self.holiday_subdiv is not None and self.holiday_country is None:
            raise ValueError("holiday_subdiv: needs a holiday country")
        if self.holiday_country is not None:
            error = holiday_source_error(self.holiday_country, self.holiday_subdiv)
            if error:
                raise ValueError(f"holiday_country/holiday_subdiv: {error}")
        if self.response_hours is not None and not (
            0 < self.response_hours and math.isfinite(self.response_hours)
        ):
            raise ValueError("response_hours: must be a positive number of business hours")

    # -- basic queries -----------------------------------------------------

    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)  # ZoneInfo caches instances itself

    def response_time(self) -> timedelta:
        if self.response_hours is not None:
            return timedelta(hours=self.response_hours)
        return self._day_length()

    def is_business_day(self, d: date) -> bool:
        if isinstance(d, datetime):  # a datetime is a date; its date is ambiguous
            raise TypeError("is_business_day takes a date; use is_open for instants")
        if d.weekday() not in self.workdays or d in self.closures:
            return False
        if self.holiday_country is None:
            return True
        return d not in _holiday_dates(self.holiday_country, self.holiday_subdiv, d.year)

    def is_open(self, t: datetime) -> bool:
        """Open on [opens, closes): 09:00 is open, 17:00 is closed."""
        _require_aware(t, "t")
        day = t.astimezone(self.tz()).date()
        if not self.is_business_day(day):
            return False
        start, end = self._window(day)
        return start <= t < end

    def next_opening(self, t: datetime) -> datetime:
        """`t` itself if open, else the next opening instant (calendar tz)."""
        _require_aware(t, "t")
        tz = self.tz()
        day = t.astimezone(tz).date()
        if self.is_business_day(day):
            start, end = self._window(day)
            if t < end:
                return max(start, t).astimezone(tz)
        start, _ = self._window(self._next_business_day(day + timedelta(days=1)))
        return start.astimezone(tz)

    def clock_start(self, t: datetime) -> datetime:
        return self.next_opening(t)

    # -- business-time arithmetic -----------------------------------------

    def add_business_time(self, start: datetime, delta: timedelta) -> datetime:
        """Instant after `delta` of open time counted from `start`.

        A deadline landing exactly on closing time is reported as the next
        opening, so "one business day after Mon 10:00" reads Tue 10:00 and
        a request from Saturday is due Tuesday 09:00, not Monday 17:00.
        """
        _require_aware(start, "start")
        if delta < timedelta(0):
            raise ValueError(f"delta must not be negative, got {delta}")
        tz = self.tz()
        cur = self.next_opening(start).astimezone(UTC)
        remaining = delta
        # One iteration per business day: cheap even for spans of years.
        while True:
            _, end = self._window(cur.astimezone(tz).date())
            available = end - cur
            if remaining < available:
                return (cur + remaining).astimezone(tz)
            remaining -= available
            cur = self.next_opening(end).astimezone(UTC)

    def due_at(self, received: datetime) -> datetime:
        return self.add_business_time(received, self.response_time())

    def business_elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Open time inside [start, end); zero if end <= start."""
        _require_aware(start, "start")
        _require_aware(end, "end")
        if end <= start:
            return timedelta(0)
        tz = self.tz()
        total = timedelta(0)
        for day in _days(start.astimezone(tz).date(), end.astimezone(tz).date()):
            if not self.is_business_day(day):
                continue
            w_start, w_end = self._window(day)
            overlap = min(end, w_end) - max(start, w_start)
            if overlap > timedelta(0):
                total += overlap
        return total

    # -- helpers -------------------------------------------------------------

    def _window(self, day: date) -> tuple[datetime, datetime]:
        """Opening window of `day` as UTC instants (see module note on UTC)."""
        tz = self.tz()
        start = datetime.combine(day, self.opens, tzinfo=tz).astimezone(UTC)
        end = datetime.combine(day, self.closes, tzinfo=tz).astimezone(UTC)
        return start, end

    def _day_length(self) -> timedelta:
        # Nominal length from the wall-clock times, independent of DST.
        base = date(2000, 1, 3)
        return datetime.combine(base, self.closes) - datetime.combine(base, self.opens)

    def _next_business_day(self, day: date) -> date:
        for _ in range(_MAX_SEARCH_DAYS):
            if self.is_business_day(day):
                return day
            day += timedelta(days=1)
        raise ValueError(
            f"no business day within {_MAX_SEARCH_DAYS} days of {day}: calendar is always closed"
        )


def _days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


# -- formatting ----------------------------------------------------------------


def format_due(dt: datetime, cal: BusinessCalendar, *, with_year: bool = False) -> str:
    """E.g. "Tuesday, December 1, 10:00 AM ET" in the calendar's time zone."""
    return format_local(dt, cal.timezone, with_year=with_year)


def format_local(dt: datetime, tz_name: str, *, with_year: bool) -> str:
    """E.g. "Tuesday, December 1, 10:00 AM ET" in time zone ``tz_name`` (an IANA name).

    Names are spelled out by hand rather than via strftime("%A") so the text
    does not depend on the process locale or on platform-specific "%-d".
    """
    _require_aware(dt, "dt")
    local = dt.astimezone(ZoneInfo(tz_name))
    hour12 = local.hour % 12 or 12
    meridiem = "AM" if local.hour < 12 else "PM"
    zone = "ET" if tz_name == PROGRAM_TZ else (local.tzname() or tz_name)
    return f"{format_date(local.date(), with_year=with_year)}, {hour12}:{local.minute:02d} {meridiem} {zone}"


def format_date(day: date, *, with_year: bool) -> str:
    """E.g. "Tuesday, December 1" or, with the year, "Tuesday, December 1, 2026"."""
    text = f"{DAY_NAMES[day.weekday()].capitalize()}, {_MONTH_NAMES[day.month - 1]} {day.day}"
    return f"{text}, {day.year}" if with_year else text


def format_duration(td: timedelta) -> str:
    """Compact business duration: "6h 30m", "8h", "45m", "-1h 5m" style.

    Deliberately no days: a "day" of business time is ambiguous (8h or 24h?).
    Seconds are truncated toward zero.
    """
    minutes = int(td.total_seconds() // 60) if td >= timedelta(0) else -int(-td.total_seconds() // 60)
    sign = "-" if minutes < 0 else ""
    hours, mins = divmod(abs(minutes), 60)
    if hours and mins:
        return f"{sign}{hours}h {mins}m"
    if hours:
        return f"{sign}{hours}h"
    return f"{sign}{mins}m"

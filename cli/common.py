"""Small things every verb prints the same way."""

from __future__ import annotations

import sys
from datetime import date, datetime, timedelta, timezone, tzinfo

from service.report import CycleReport
from workflows.errors import ConfigError


def warn(report: CycleReport) -> None:
    for p in report.problems:
        print(f"warning: {p}", file=sys.stderr)


def error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def local_moment(value: str, tz: tzinfo, end_of_day: bool = False) -> datetime:
    """A CLI date or date-time; without an offset it is in ``tz`` (New York time, the program's)."""
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            dt = datetime(d.year, d.month, d.day, tzinfo=tz) + (timedelta(days=1) if end_of_day else timedelta())
        else:
            dt = datetime.fromisoformat(value)
            dt = dt.replace(tzinfo=tz) if dt.tzinfo is None else dt
    except ValueError:
        raise ConfigError(f"{value!r} is not a date like 2027-03-31 or a date-time like 2027-03-31T10:00") from None
    return dt.astimezone(timezone.utc)

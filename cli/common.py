"""Small things every verb prints the same way."""

from __future__ import annotations

import sys
from datetime import date, datetime, timedelta, timezone, tzinfo
from pathlib import Path

from service.report import CycleReport
from workflows.errors import BadInput


def warn(report: CycleReport) -> None:
    for p in report.problems:
        print(f"warning: {p}", file=sys.stderr)


def error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def local_moment(value: str, tz: tzinfo, end_of_day: bool = False, flag: str = "") -> datetime:
    """A CLI date or date-time; without an offset it is in ``tz`` (New York time, the program's)."""
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            dt = datetime(d.year, d.month, d.day, tzinfo=tz) + (timedelta(days=1) if end_of_day else timedelta())
        else:
            dt = datetime.fromisoformat(value)
            dt = dt.replace(tzinfo=tz) if dt.tzinfo is None else dt
    except ValueError:
        raise BadInput(f"{flag + ' ' if flag else ''}{value!r} is not a date like 2027-03-31 or a date-time like 2027-03-31T10:00") from None
    return dt.astimezone(timezone.utc)


def day(value: str, flag: str) -> date:
    """A CLI date (``flag`` names the option in the message); BadInput (exit 2) if it is none."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadInput(f"{flag} {value!r} is not a date like 2028-03-31") from None


def read_sheet(path: str) -> str:
    """The text of a CSV sheet a person exported (a BOM from Excel dropped); BadInput (exit 2) saying
    what to do when it cannot be read or is not UTF-8."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise BadInput(f"{path} is not UTF-8 text; save the spreadsheet as CSV UTF-8") from None


def plural(n: int, word: str, many: str | None = None) -> str:
    """"1 contact", "2 contacts", "0 entries" (``many`` for irregular plurals)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"

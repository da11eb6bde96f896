from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from workflows.calendar import (
    BusinessCalendar,
    _holiday_dates,
    format_due,
    format_duration,
)
from config.reader import Reader
from config.sla import read_sla
from workflows.errors import ConfigError

NY = ZoneInfo("America/New_York")
CAL = BusinessCalendar()


def ny(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=NY)


# 2026-11-30 is a Monday.
@pytest.mark.parametrize(
    ("received", "due"),
    [
        (ny(2026, 11, 30, 10), ny(2026, 12, 1, 10)),  # Mon 10:00 -> Tue 10:00
        (ny(2026, 12, 4, 16), ny(2026, 12, 7, 16)),  # Fri 16:00 -> Mon 16:00
        (ny(2026, 12, 5, 11), ny(2026, 12, 8, 9)),  # Sat 11:00 -> Tue 09:00
        (ny(2026, 12, 2, 20), ny(2026, 12, 4, 9)),  # Wed 20:00 -> Fri 09:00
        (ny(2026, 11, 25, 10), ny(2026, 11, 27, 10)),  # Thanksgiving skipped
        (ny(2027, 1, 15, 16), ny(2027, 1, 19, 16)),  # MLK day skipped
        (ny(2026, 12, 1, 9), ny(2026, 12, 2, 9)),  # exactly at opening
        (ny(2026, 12, 1, 17), ny(2026, 12, 3, 9)),  # exactly at closing = closed
        (ny(2026, 7, 2, 12), ny(2026, 7, 6, 12)),  # Jul 4 on Sat, observed Fri
    ],
)
def test_due_at_worked_examples(received: datetime, due: datetime) -> None:
    got = CAL.due_at(received)
    assert got == due
    assert got.tzinfo == NY
    assert (got.hour, got.minute) == (due.hour, due.minute)


@pytest.mark.parametrize(
    ("received", "due", "offset_before", "offset_after"),
    [
        # DST starts Sun 2027-03-14: EST (-5) -> EDT (-4).
        (ny(2027, 3, 12, 15), ny(2027, 3, 15, 15), -5, -4),
        # DST ends Sun 2026-11-01: EDT (-4) -> EST (-5).
        (ny(2026, 10, 30, 15), ny(2026, 11, 2, 15), -4, -5),
    ],
)
def test_due_at_across_dst_keeps_wall_clock(
    received: datetime, due: datetime, offset_before: int, offset_after: int
) -> None:
    got = CAL.due_at(received)
    assert got == due
    assert (got.hour, got.minute) == (15, 0)
    assert received.utcoffset() == timedelta(hours=offset_before)
    assert got.utcoffset() == timedelta(hours=offset_after)
    # Real elapsed time is 72h +/- the DST hour; business time is exactly 8h.
    real = got.astimezone(UTC) - received.astimezone(UTC)
    assert real == timedelta(hours=72 + offset_before - offset_after)
    assert CAL.business_elapsed(received, got) == timedelta(hours=8)


def test_utc_input_works_and_returns_calendar_tz() -> None:
    # Mon 2026-11-30 15:00 UTC = 10:00 EST.
    received = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
    got = CAL.due_at(received)
    assert got == ny(2026, 12, 1, 10)
    assert got.tzinfo == NY
    assert CAL.is_open(received)
    assert not CAL.is_open(datetime(2026, 11, 30, 13, 59, tzinfo=UTC))  # 08:59 EST
    # Sat 2026-12-05 02:00 UTC is still Friday 21:00 in New York.
    assert CAL.next_opening(datetime(2026, 12, 5, 2, tzinfo=UTC)) == ny(2026, 12, 7, 9)


@pytest.mark.parametrize(
    ("start", "hours", "expected"),
    [
        (ny(2026, 11, 30, 10), 6, ny(2026, 11, 30, 16)),  # 75 % of 8h
        (ny(2026, 12, 1, 10), 4, ny(2026, 12, 1, 14)),  # after a Tue 10:00 breach
        (ny(2026, 11, 30, 16), 4, ny(2026, 12, 1, 12)),  # spills into Tuesday
        (ny(2026, 11, 30, 10), 6.5, ny(2026, 11, 30, 16, 30)),
        (ny(2026, 11, 30, 10), 0.25, ny(2026, 11, 30, 10, 15)),
        (ny(2026, 11, 30, 10), 0, ny(2026, 11, 30, 10)),
        (ny(2026, 11, 28, 10), 0, ny(2026, 11, 30, 9)),  # zero from Saturday
        (ny(2026, 11, 30, 9), 40, ny(2026, 12, 7, 9)),  # a full week
    ],
)
def test_add_business_time_fractional(start: datetime, hours: float, expected: datetime) -> None:
    assert CAL.add_business_time(start, timedelta(hours=hours)) == expected


def test_add_business_time_rejects_negative_and_naive() -> None:
    with pytest.raises(ValueError, match="negative"):
        CAL.add_business_time(ny(2026, 11, 30, 10), timedelta(hours=-1))
    with pytest.raises(ValueError, match="timezone-aware"):
        CAL.add_business_time(datetime(2026, 11, 30, 10), timedelta(hours=1))


def test_add_business_time_long_span_counts_holidays() -> None:
    # 2026 has 261 weekdays, 11 of them federal holidays (incl. Jul 3 observed).
    start = ny(2026, 1, 1, 0)
    end = ny(2027, 1, 1, 0)
    assert CAL.business_elapsed(start, end) == timedelta(hours=8 * (261 - 11))
    # Round trip: adding that much from New Year's lands on the first opening
    # of 2027 that is not itself a holiday (Jan 1 2027 is a Friday holiday).
    assert CAL.add_business_time(start, timedelta(hours=8 * 250)) == ny(2027, 1, 4, 9)


@pytest.mark.parametrize(
    ("start", "end", "hours"),
    [
        (ny(2026, 11, 30, 10), ny(2026, 11, 30, 12), 2),
        (ny(2026, 11, 30, 10), ny(2026, 11, 30, 10), 0),
        (ny(2026, 11, 30, 12), ny(2026, 11, 30, 10), 0),  # end before start
        (ny(2026, 11, 30, 7), ny(2026, 11, 30, 20), 8),  # clipped to hours
        (ny(2026, 12, 4, 16), ny(2026, 12, 7, 10), 2),  # across weekend
        (ny(2026, 11, 25, 16), ny(2026, 11, 27, 10), 2),  # across Thanksgiving
        (ny(2026, 12, 5, 10), ny(2026, 12, 6, 16), 0),  # weekend only
        (ny(2027, 3, 12, 9), ny(2027, 3, 16, 9), 16),  # across DST start
        (ny(2026, 10, 30, 9), ny(2026, 11, 3, 9), 16),  # across DST end
    ],
)
def test_business_elapsed(start: datetime, end: datetime, hours: float) -> None:
    assert CAL.business_elapsed(start, end) == timedelta(hours=hours)


def test_business_elapsed_inverts_add_business_time() -> None:
    start = ny(2026, 11, 24, 13, 17)
    for hours in (0.5, 3, 8, 11.25, 30):
        due = CAL.add_business_time(start, timedelta(hours=hours))
        assert CAL.business_elapsed(start, due) == timedelta(hours=hours)


@pytest.mark.parametrize(
    ("t", "is_open"),
    [
        (ny(2026, 12, 1, 9), True),
        (ny(2026, 12, 1, 8, 59), False),
        (datetime(2026, 12, 1, 16, 59, 59, 999999, tzinfo=NY), True),
        (ny(2026, 12, 1, 17), False),
        (ny(2026, 12, 5, 12), False),  # Saturday
        (ny(2026, 11, 26, 12), False),  # Thanksgiving
        (ny(2026, 7, 3, 12), False),  # Independence Day observed (Fri)
    ],
)
def test_is_open_edges(t: datetime, is_open: bool) -> None:
    assert CAL.is_open(t) is is_open


def test_next_opening_and_clock_start() -> None:
    assert CAL.next_opening(ny(2026, 12, 1, 10, 30)) == ny(2026, 12, 1, 10, 30)
    assert CAL.next_opening(ny(2026, 12, 1, 7)) == ny(2026, 12, 1, 9)
    assert CAL.next_opening(ny(2026, 12, 1, 17)) == ny(2026, 12, 2, 9)
    assert CAL.clock_start(ny(2026, 12, 4, 18)) == ny(2026, 12, 7, 9)
    assert CAL.next_opening(datetime(2026, 12, 1, 15, 30, tzinfo=UTC)).tzinfo == NY


def test_is_business_day_and_observed_holidays() -> None:
    assert CAL.is_business_day(date(2026, 12, 1))
    assert not CAL.is_business_day(date(2026, 12, 5))  # Saturday
    assert not CAL.is_business_day(date(2026, 7, 3))  # Jul 4 (Sat) observed Friday
    assert not CAL.is_business_day(date(2027, 12, 31))  # New Year 2028 (Sat) observed
    assert not CAL.is_business_day(date(2027, 6, 18))  # Juneteenth (Sat) observed
    # Federal only: Christmas Eve and NY state holidays are business days.
    assert CAL.is_business_day(date(2025, 12, 24))
    assert CAL.is_business_day(date(2026, 2, 12))  # Lincoln's Birthday (NY state)
    assert CAL.is_business_day(date(2026, 11, 3))  # Election Day (NY state)


def test_holiday_lookup_is_cached() -> None:
    _holiday_dates.cache_clear()
    CAL.is_business_day(date(2026, 3, 2))
    CAL.is_business_day(date(2026, 3, 3))
    info = _holiday_dates.cache_info()
    assert (info.misses, info.hits) == (1, 1)


def test_closures_and_no_holidays() -> None:
    cal = BusinessCalendar(closures=frozenset({date(2026, 12, 1)}))
    assert not cal.is_business_day(date(2026, 12, 1))
    assert cal.due_at(ny(2026, 11, 30, 10)) == ny(2026, 12, 2, 10)
    plain = BusinessCalendar(holiday_country=None)
    assert plain.is_business_day(date(2026, 11, 26))
    assert plain.due_at(ny(2026, 11, 25, 10)) == ny(2026, 11, 26, 10)


def test_response_time() -> None:
    assert CAL.response_time() == timedelta(hours=8)
    assert BusinessCalendar(response_hours=4).response_time() == timedelta(hours=4)
    short = BusinessCalendar(opens=time(10), closes=time(14, 30))
    assert short.response_time() == timedelta(hours=4, minutes=30)
    assert short.due_at(ny(2026, 11, 30, 11)) == ny(2026, 12, 1, 11)


def test_constructor_validation_and_loop_guard() -> None:
    with pytest.raises(ValueError, match="workdays"):
        BusinessCalendar(workdays=frozenset())
    with pytest.raises(ValueError, match="workdays"):
        BusinessCalendar(workdays=frozenset({7}))
    with pytest.raises(ValueError, match="closes"):
        BusinessCalendar(opens=time(17), closes=time(9))
    with pytest.raises(ValueError, match="timezone"):
        BusinessCalendar(timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="response_hours"):
        BusinessCalendar(response_hours=0)
    # Every Monday for decades closed, Monday the only workday: must not hang.
    mondays = frozenset(date(2026, 11, 30) + timedelta(weeks=w) for w in range(600))
    cal = BusinessCalendar(workdays=frozenset({0}), closures=mondays, holiday_country=None)
    with pytest.raises(ValueError, match="always closed"):
        cal.next_opening(ny(2026, 11, 30, 10))


def test_calendar_is_hashable() -> None:
    assert hash(BusinessCalendar()) == hash(BusinessCalendar())
    assert BusinessCalendar(workdays={0, 1}) == BusinessCalendar(workdays=frozenset({0, 1}))  # type: ignore[arg-type]


def parse_calendar(table: dict) -> BusinessCalendar:
    return read_sla(Reader({"sla": table}, "t.toml"))


def test_parse_calendar_custom() -> None:
    cal = parse_calendar(
        {
            "timezone": "Europe/Berlin",
            "opens": "08:30",
            "closes": "16:00",
            "workdays": ["mon", "tue", "wed", "thu"],
            "holidays": "de",
            "closures": ["2026-12-24", date(2026, 12, 31)],
            "response_hours": 4,
        }
    )
    assert cal == BusinessCalendar(
        timezone="Europe/Berlin",
        opens=time(8, 30),
        closes=time(16),
        workdays=frozenset({0, 1, 2, 3}),
        holiday_country="DE",
        closures=frozenset({date(2026, 12, 24), date(2026, 12, 31)}),
        response_hours=4.0,
    )
    berlin = ZoneInfo("Europe/Berlin")
    # Thu 14:00 + 4h: 2h Thursday, Friday is not a workday, 2h Monday.
    got = cal.due_at(datetime(2026, 12, 3, 14, tzinfo=berlin))
    assert got == datetime(2026, 12, 7, 10, 30, tzinfo=berlin)
    assert not cal.is_business_day(date(2026, 12, 24))  # closure
    assert cal.is_business_day(date(2026, 12, 8))  # plain Tuesday
    assert format_due(got, cal) == "Monday, December 7, 10:30 AM CET"


def test_parse_calendar_defaults_and_none() -> None:
    assert parse_calendar({}) == BusinessCalendar()
    cal = parse_calendar({"holidays": "none", "opens": time(9), "workdays": ["Monday", "FRI"]})
    assert cal.holiday_country is None
    assert cal.workdays == frozenset({0, 4})
    subdiv = parse_calendar({"holidays": "US", "holiday_subdiv": "ny"})
    assert not subdiv.is_business_day(date(2026, 2, 12))  # NY Lincoln's Birthday


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"color": "blue"}, "color"),
        ({"timezone": "EST5"}, "timezone"),
        ({"timezone": 5}, "timezone"),
        ({"opens": "9am"}, "opens"),
        ({"closes": "25:00"}, "closes"),
        ({"opens": "18:00"}, "closes"),
        ({"workdays": ["mon", "funday"]}, "workdays"),
        ({"workdays": []}, "workdays"),
        ({"workdays": "mon"}, "workdays"),
        ({"holidays": "XX"}, "holidays"),
        ({"holidays": 1}, "holidays"),
        ({"holiday_subdiv": "ZZ"}, "holiday_subdiv"),
        ({"holidays": "none", "holiday_subdiv": "NY"}, "holiday_subdiv"),
        ({"closures": ["2026-02-30"]}, "closures"),
        ({"closures": "2026-12-24"}, "closures"),
        ({"response_hours": -1}, "response_hours"),
        ({"response_hours": "8"}, "response_hours"),
        ({"response_hours": True}, "response_hours"),
        ({"response_hours": float("inf")}, "response_hours"),
    ],
)
def test_parse_calendar_errors_name_the_key(table: dict, key: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_calendar(table)
    message = str(excinfo.value)
    assert key in message
    assert "expected" in message or "allowed" in message or "must" in message or "cannot" in message


@pytest.mark.parametrize(
    ("dt", "kwargs", "text"),
    [
        (ny(2026, 12, 1, 10), {}, "Tuesday, December 1, 10:00 AM ET"),
        (ny(2026, 12, 1, 16), {}, "Tuesday, December 1, 4:00 PM ET"),
        (ny(2026, 12, 1, 12, 5), {}, "Tuesday, December 1, 12:05 PM ET"),
        (ny(2026, 12, 1, 0, 30), {}, "Tuesday, December 1, 12:30 AM ET"),
        (ny(2026, 12, 1, 10), {"with_year": True}, "Tuesday, December 1, 2026, 10:00 AM ET"),
        (datetime(2026, 12, 1, 15, tzinfo=UTC), {}, "Tuesday, December 1, 10:00 AM ET"),
    ],
)
def test_format_due(dt: datetime, kwargs: dict, text: str) -> None:
    assert format_due(dt, CAL, **kwargs) == text


def test_format_due_other_zone_uses_abbreviation() -> None:
    cal = BusinessCalendar(timezone="America/Los_Angeles", holiday_country=None)
    assert format_due(ny(2026, 7, 1, 12), cal) == "Wednesday, July 1, 9:00 AM PDT"


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (timedelta(hours=6, minutes=30), "6h 30m"),
        (timedelta(hours=8), "8h"),
        (timedelta(minutes=45), "45m"),
        (timedelta(0), "0m"),
        (timedelta(hours=30, minutes=5, seconds=59), "30h 5m"),
        (timedelta(hours=-1, minutes=-5), "-1h 5m"),
    ],
)
def test_format_duration(td: timedelta, text: str) -> None:
    assert format_duration(td) == text

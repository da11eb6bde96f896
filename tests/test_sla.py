"""The response clocks over timelines: arrival, answers, follow-ups, holidays, DST, after hours."""

from datetime import timedelta

import pytest

from tests.promise_helpers import CAL, et, mail, request, step
from workflows import sla

# (arrival ET, due ET): one business day = 8 business hours, 9:00-17:00 Mon-Fri, US federal holidays.
DUE_TABLE = [
    ("Monday morning", et(2026, 11, 30, 10), et(2026, 12, 1, 10)),
    ("Friday afternoon -> Monday", et(2026, 12, 4, 15), et(2026, 12, 7, 15)),
    ("Saturday -> Monday close = Tuesday opening", et(2026, 12, 5, 11), et(2026, 12, 8, 9)),
    ("after hours Monday -> Wednesday opening", et(2026, 11, 30, 18), et(2026, 12, 2, 9)),
    ("before opening Monday -> Tuesday opening", et(2026, 11, 30, 7), et(2026, 12, 1, 9)),
    ("Wednesday before Thanksgiving -> Friday", et(2026, 11, 25, 14), et(2026, 11, 27, 14)),
    ("Christmas Eve -> Dec 28 (Christmas Friday)", et(2026, 12, 24, 16), et(2026, 12, 28, 16)),
    ("Friday before DST starts (March 8)", et(2026, 3, 6, 14), et(2026, 3, 9, 14)),
    ("Friday before DST ends (November 1)", et(2026, 10, 30, 14), et(2026, 11, 2, 14)),
]


@pytest.mark.parametrize("name,arrival,due", DUE_TABLE, ids=[r[0] for r in DUE_TABLE])
def test_first_response_due(name, arrival, due):
    t = request(arrival)
    clock = sla.running_clock(t, arrival, CAL)
    assert clock is not None and clock.kind == "first"
    assert clock.due_at == due
    assert clock.due_at.astimezone(due.tzinfo).hour == due.hour  # DST does not shift the wall-clock hour


def test_business_time_waited_skips_nights_and_weekends():
    t = request(et(2026, 12, 4, 15))  # Friday 15:00
    assert sla.running_clock(t, et(2026, 12, 4, 17), CAL).waited == timedelta(hours=2)
    assert sla.running_clock(t, et(2026, 12, 6, 12), CAL).waited == timedelta(hours=2)  # Sunday
    c = sla.running_clock(t, et(2026, 12, 7, 12), CAL)
    assert c.waited == timedelta(hours=5) and not c.overdue and c.fraction == pytest.approx(5 / 8)
    assert sla.running_clock(t, et(2026, 12, 7, 15), CAL).overdue


def test_note_keeps_clock_answer_stops_it_follow_up_starts_next_clock():
    t = request(et(2026, 11, 30, 10))
    first_due = t.due_at
    d = step(t, mail("sam@oa.example", et(2026, 11, 30, 11), "#note checking with the devs"))
    assert d.action == "note" and d.thread.due_at == first_due
    assert sla.running_clock(d.thread, et(2026, 11, 30, 12), CAL).kind == "first"

    d = step(d.thread, mail("sam@oa.example", et(2026, 11, 30, 12), "Try clearing the cache."))
    assert d.thread.state == "waiting_on_partner"
    assert sla.running_clock(d.thread, et(2026, 11, 30, 13), CAL) is None  # waiting on the partner: no clock

    d = step(d.thread, mail("ann@acme.example", et(2026, 12, 2, 16), "Did not help"))
    c = sla.running_clock(d.thread, et(2026, 12, 2, 16), CAL)
    assert d.thread.state == "waiting_on_staff" and c.kind == "next"
    assert c.due_at == et(2026, 12, 3, 16)


def test_closed_and_no_seat_threads_have_no_clock():
    t = request(et(2026, 11, 30, 10), frm="bob@acme.example")  # on the roster, no training: no seat
    assert sla.running_clock(t, et(2026, 12, 1, 10), CAL) is None
    t = request(et(2026, 11, 30, 10))
    d = step(t, mail("sam@oa.example", et(2026, 11, 30, 11), "#close quiet"))
    assert d.thread.state == "closed" and sla.running_clock(d.thread, et(2026, 12, 1, 11), CAL) is None


def test_summary_strings():
    t = request(et(2026, 11, 30, 10))
    s = sla.summary(t, et(2026, 11, 30, 16, 30), CAL)
    assert s == {"clock": "first response", "due": "Tuesday, December 1, 10:00 AM ET", "waited": "6h 30m",
                 "overdue": ""}

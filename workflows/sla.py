"""The response clocks, as pure functions over a Thread, the calendar and ``now``.

A thread has at most one running clock:

- **first response**: from the request until the first staff answer;
- **next response**: from a partner follow-up after a staff answer until the next answer.

``lifecycle.apply`` starts and stops clocks (``Thread.clock_started_at`` / ``Thread.due_at``);
this module only reads them. Internal ``#note``s leave the clock alone; a thread
waiting on the partner, or closed, has no clock. Only partners holding a seat get
a promise, so a thread without a seat has no clock either.

All durations here are *business* time: the open hours of the ``[sla]`` calendar.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from . import lifecycle
from .calendar import BusinessCalendar, format_due, format_duration
from .model import FROZEN, Thread


@dataclass(**FROZEN)
class Clock:
    """A running clock as seen at ``now``."""

    kind: str  # "first" | "next"
    started_at: datetime  # business start: the request's arrival, or the next opening after it
    due_at: datetime
    waited: timedelta  # business time since started_at
    allowed: timedelta  # the response time (business)
    overdue: bool

    @property
    def fraction(self) -> float:
        """Share of the response time used up: 0.75 = warning territory, 1.0 = due."""
        return self.waited / self.allowed if self.allowed else 1.0

    @property
    def label(self) -> str:
        return "first response" if self.kind == "first" else "next response"


def clock_kind(thread: Thread) -> str:
    """Which promise the running clock keeps: nobody has answered yet, or someone has."""
    return "first" if thread.first_response_at is None else "next"


def has_clock(thread: Thread) -> bool:
    return (thread.state in lifecycle.CLOCK_RUNNING and thread.due_at is not None
            and thread.clock_started_at is not None)


def running_clock(thread: Thread, now: datetime, cal: BusinessCalendar) -> Clock | None:
    """The thread's running clock at ``now``, or None (answered, waiting on the partner, closed, no seat)."""
    if not has_clock(thread):
        return None
    assert thread.clock_started_at is not None and thread.due_at is not None
    waited = cal.business_elapsed(thread.clock_started_at, now)
    return Clock(
        kind=clock_kind(thread),
        started_at=thread.clock_started_at,
        due_at=thread.due_at,
        waited=waited,
        allowed=cal.response_time(),
        overdue=now >= thread.due_at,
    )


def clock_id(thread: Thread) -> str:
    """Names the running clock in idempotency keys: a new clock gets a new ladder."""
    return thread.clock_started_at.isoformat() if thread.clock_started_at else ""


def summary(thread: Thread, now: datetime, cal: BusinessCalendar) -> dict[str, str]:
    """Human strings for lists and mail: due, waited, which clock."""
    clock = running_clock(thread, now, cal)
    if clock is None:
        return {"clock": "-", "due": "-", "waited": "-", "overdue": ""}
    return {
        "clock": clock.label,
        "due": format_due(clock.due_at, cal),
        "waited": format_duration(clock.waited),
        "overdue": "OVERDUE" if clock.overdue else "",
    }


def business_days(cal: BusinessCalendar, days: float) -> timedelta:
    """``days`` business days as business time (a day is the opening window, e.g. 8 h)."""
    base = datetime(2000, 1, 3)
    length = datetime.combine(base.date(), cal.closes) - datetime.combine(base.date(), cal.opens)
    return length * days

"""A thread's lifecycle, as one table: states, events, the next state, and the response clock.

Each row is (state, event) -> (next state, what happens to the response clock). ``apply`` is the one
function that moves a thread: intake, commands, auto-close and reopening all call it, so the state,
the clock and the closing time can never disagree. Anything not in the table leaves the state and the
clock as they are. The README prints this table (``python run.py states``), so keep the descriptions
short and true. No other module spells a state name: they use ``State``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from enum import StrEnum
from typing import Protocol, TypeVar

from .calendar import BusinessCalendar


class State(StrEnum):
    NEW = "new"
    WAITING_ON_STAFF = "waiting_on_staff"
    WAITING_ON_PARTNER = "waiting_on_partner"
    CLOSED = "closed"

    @property
    def words(self) -> str:
        """For people: "waiting on partner"."""
        return self.value.replace("_", " ")


class Event(StrEnum):
    REQUEST = "request"
    HISTORY = "history"
    FOLLOW_UP = "follow-up"
    ANSWER = "answer"
    NOTE = "note"
    CLOSE = "close"
    REOPEN = "reopen"
    WAIT = "wait"
    MERGE = "merge"


class Clock(StrEnum):
    """What a transition does to the response clock."""

    START = "start"  # a new clock, if the requester is promised replies (a partner contact with a seat)
    STOP = "stop"  # no clock runs afterwards
    KEEP = "keep"  # whatever ran keeps running


STATES = {
    State.NEW: "opened by a partner; nobody on staff has answered yet (clock running)",
    State.WAITING_ON_STAFF: "the partner wrote again after an answer (clock running)",
    State.WAITING_ON_PARTNER: "staff answered; the ball is in the partner's court (no clock)",
    State.CLOSED: "done; a partner message reopens it (no clock)",
}

EVENTS = {
    Event.REQUEST: "first message of a new thread",
    Event.HISTORY: "mail received before partnerdesk's first start, imported without acting",
    Event.FOLLOW_UP: "a partner (or anyone not staff) writes in the thread",
    Event.ANSWER: "a staff member replies (relayed to the partner unless it was a reply-all)",
    Event.NOTE: "a staff reply starting with #note: internal, never sent",
    Event.CLOSE: "staff close the thread (#close), or it waited on the partner too long",
    Event.REOPEN: "staff reopen it (#reopen)",
    Event.WAIT: "staff mark it waiting on the partner without answering (#wait)",
    Event.MERGE: "it is one conversation with an older thread, which takes over its timeline and clock",
}

S, E, C = State, Event, Clock
TRANSITIONS: dict[tuple[State, Event], tuple[State, Clock]] = {
    (S.NEW, E.REQUEST): (S.NEW, C.START),
    (S.NEW, E.HISTORY): (S.CLOSED, C.STOP),
    (S.NEW, E.FOLLOW_UP): (S.NEW, C.KEEP),
    (S.NEW, E.ANSWER): (S.WAITING_ON_PARTNER, C.STOP),
    (S.NEW, E.CLOSE): (S.CLOSED, C.STOP),
    (S.NEW, E.WAIT): (S.WAITING_ON_PARTNER, C.STOP),
    (S.WAITING_ON_STAFF, E.FOLLOW_UP): (S.WAITING_ON_STAFF, C.KEEP),
    (S.WAITING_ON_STAFF, E.ANSWER): (S.WAITING_ON_PARTNER, C.STOP),
    (S.WAITING_ON_STAFF, E.CLOSE): (S.CLOSED, C.STOP),
    (S.WAITING_ON_STAFF, E.WAIT): (S.WAITING_ON_PARTNER, C.STOP),
    (S.WAITING_ON_PARTNER, E.FOLLOW_UP): (S.WAITING_ON_STAFF, C.START),
    (S.WAITING_ON_PARTNER, E.ANSWER): (S.WAITING_ON_PARTNER, C.STOP),
    (S.WAITING_ON_PARTNER, E.CLOSE): (S.CLOSED, C.STOP),
    (S.CLOSED, E.FOLLOW_UP): (S.WAITING_ON_STAFF, C.START),
    (S.CLOSED, E.ANSWER): (S.WAITING_ON_PARTNER, C.STOP),
    (S.CLOSED, E.REOPEN): (S.WAITING_ON_STAFF, C.START),
    (S.NEW, E.MERGE): (S.CLOSED, C.STOP),
    (S.WAITING_ON_STAFF, E.MERGE): (S.CLOSED, C.STOP),
    (S.WAITING_ON_PARTNER, E.MERGE): (S.CLOSED, C.STOP),
}
del S, E, C

CLOCK_RUNNING = frozenset({State.NEW, State.WAITING_ON_STAFF})
OPEN = frozenset(State) - {State.CLOSED}
# When two threads become one, the merged thread is in the more pressing of their states.
URGENCY = (State.NEW, State.WAITING_ON_STAFF, State.WAITING_ON_PARTNER, State.CLOSED)


def merged_state(a: str, b: str) -> State:
    """The state of two threads merged into one: the more pressing (an unanswered request wins)."""
    return min(State(a), State(b), key=URGENCY.index)


def transition(state: str, event: str) -> tuple[State, Clock]:
    """The row for (state, event); not in the table: the state stays and the clock is kept."""
    try:
        st, ev = State(state), Event(event)
    except ValueError:
        if state not in State.__members__.values():
            raise ValueError(f"unknown thread state {state!r}") from None
        raise ValueError(f"unknown thread event {event!r}") from None
    return TRANSITIONS.get((st, ev), (st, Clock.KEEP))


def next_state(state: str, event: str) -> State:
    return transition(state, event)[0]


class HasLifecycle(Protocol):
    """What a transition reads and writes (model.Thread); a Protocol, so this table needs no model import."""

    @property
    def state(self) -> State: ...
    @property
    def promised(self) -> bool: ...


T = TypeVar("T", bound=HasLifecycle)


def apply(thread: T, event: str, at: datetime, calendar: BusinessCalendar) -> T:
    """``thread`` after ``event`` at ``at``: its state, its response clock and when it was closed.

    A started clock is due one business day (``calendar``'s response time) after ``at``; only a
    partner contact holding a seat is promised replies, so for anyone else START means no clock.
    """
    state, clock = transition(thread.state, event)
    changes: dict[str, object] = {"state": state}
    if clock is Clock.START:
        promised = thread.promised
        changes["due_at"] = calendar.due_at(at) if promised else None
        changes["clock_started_at"] = calendar.clock_start(at) if promised else None
    elif clock is Clock.STOP:
        changes["due_at"] = changes["clock_started_at"] = None
    if state is State.CLOSED and thread.state != State.CLOSED:
        changes["closed_at"] = at
    elif state is not State.CLOSED:
        changes["closed_at"] = None
    return replace(thread, **changes)  # type: ignore[type-var]


def table_text() -> str:
    """The table as text, for the README and ``run.py states``."""
    lines = ["| state | event | next state | response clock |", "|---|---|---|---|"]
    for (state, event), (nxt, clock) in TRANSITIONS.items():
        lines.append(f"| {state} | {event} | {nxt} | {clock} |")
    lines.append("")
    lines += [f"- **{k}**: {v}" for k, v in STATES.items()]
    lines.append("")
    lines.append("Response clock: **start** a new one-business-day clock (only for a partner contact holding a "
                 "seat), **stop** it, or **keep** whatever runs.")
    return "\n".join(lines)

"""The slow end of a thread's life: auto-close, and the reopen window.

- A thread waiting on the partner for ``autoclose_business_days`` (default 10)
  business days is closed, and the partner gets a short closing mail.
- A partner writing to a closed thread reopens it within ``reopen_days``
  (default 30, calendar days) of its closing; after that the mail starts a new
  thread that names the old one (intake asks ``reopen_expired``).

Config::

    [lifecycle]
    autoclose_business_days = 10   # 0 = never auto-close
    reopen_days = 30
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from . import lifecycle
from .calendar import BusinessCalendar
from .commands import closing_mail
from .lifecycle import Event, State
from .model import FROZEN, OutgoingMail, Thread, ThreadEvent
from .sla import business_days


@dataclass(**FROZEN)
class LifecycleConfig:
    autoclose_business_days: int = 10
    reopen_days: int = 30


def _last(thread: Thread, kinds: set[str]) -> datetime | None:
    times = [e.at for e in thread.events if e.kind in kinds]
    return max(times) if times else None


def waiting_since(thread: Thread) -> datetime:
    """When the ball went to the partner: the last answer or #wait."""
    return _last(thread, {"answer", "wait"}) or thread.created_at


def closed_at(thread: Thread) -> datetime:
    # Threads closed by 0.1.0 before it recorded closing times: the last closing event says when.
    return thread.closed_at or _last(thread, {"close", "auto-close", "history"}) or thread.created_at


def reopen_expired(thread: Thread, at: datetime, reopen_days: int) -> bool:
    """True when a partner mail at ``at`` to this closed thread should start a new thread instead."""
    return thread.state == State.CLOSED and at - closed_at(thread) > timedelta(days=reopen_days)


def autoclose_due(thread: Thread, now: datetime, cal: BusinessCalendar, config: LifecycleConfig) -> bool:
    if thread.state != State.WAITING_ON_PARTNER or config.autoclose_business_days <= 0:
        return False
    since = waiting_since(thread)
    return cal.business_elapsed(since, now) >= business_days(cal, config.autoclose_business_days)


def autoclose(thread: Thread, now: datetime, cal: BusinessCalendar, config: LifecycleConfig, s: Any
              ) -> tuple[Thread, tuple[OutgoingMail, ...]]:
    """Close a thread that waited on the partner too long; the closing mail to the partner.

    ``s``: anything with support_address, support_name, staff, reopen_days (IntakeSettings).
    Returns the thread unchanged and no mail when it is not due.
    """
    if not autoclose_due(thread, now, cal, config):
        return thread, ()
    since = waiting_since(thread)
    closed = lifecycle.apply(thread, Event.CLOSE, now, cal)
    closed = closed.with_event(ThreadEvent(at=now, kind="auto-close", detail=(
        f"waited on the partner {config.autoclose_business_days} business days (since {since.isoformat()})")))
    mails: tuple[OutgoingMail, ...] = ()
    if thread.requester and thread.requester not in s.staff and thread.requester != s.support_address:
        mails = (closing_mail(closed, s, key=f"autoclose:{thread.id}:{since.isoformat()}", automatic_close=True,
                              waited_days=config.autoclose_business_days),)
    return closed, mails

"""The escalation ladder: who is told, and when, that a partner is still waiting.

Pure: ``due_escalations(thread, now, config, calendar)`` returns the escalation
mail due at ``now``; the caller queues it (the outbox refuses a key it already
holds, so each stage fires at most once per clock) and records the stages fired
in ``thread.ladder`` with ``record_fired``.

The default ladder (the program's promise is one business day):

| stage        | when                                   | to                                   |
|--------------|----------------------------------------|--------------------------------------|
| warning      | 75 % of the response time has passed   | the assignee, or all staff           |
| breach       | the reply is due                       | the ``[support] escalation`` list    |
| second-level | 4 business hours after the breach      | the ``[support] program_lead``       |

Rules every stage keeps:

- times are business time counted from the clock's start; a new clock (a partner
  follow-up after an answer) starts a new ladder, and a staff answer ends it;
- escalation mail never goes to the partner (the requester and the partner's
  contacts are taken out of every list);
- it goes out only within opening hours; a stage due at night waits for the
  next opening, unless the stage is ``urgent`` (then its ``plus_hours`` also
  count in wall-clock hours, so "4 hours after the breach" can be at night);
- the thread's assignee (``#assign``) is always the first recipient;
- each mail says who was already told, so nobody wonders whether to forward it.

Config (replaces the default ladder when ``stages`` is given)::

    [[escalation.stages]]
    name = "warning"      # letters, digits, "-"; used in keys and in `threads list`
    percent = 75          # of the response time (business time); default 100
    plus_hours = 0        # business hours added (wall-clock hours if urgent)
    to = ["assignee"]     # roles: assignee, staff, escalation, program_lead; or addresses
    urgent = false
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from . import msgids
from .calendar import BusinessCalendar, format_due, format_duration
from .model import FROZEN, FiredStage, LadderMemory, OutgoingMail, Thread
from .sla import clock_id, running_clock

ROLES = ("assignee", "staff", "escalation", "program_lead")

TITLES = {
    "warning": "Reply due soon",
    "breach": "Reply overdue",
    "second-level": "Still unanswered, second level",
}


@dataclass(**FROZEN)
class Stage:
    name: str
    percent: float = 100.0  # of the response time
    plus_hours: float = 0.0
    to: tuple[str, ...] = ("staff",)
    urgent: bool = False
    title: str = ""

    @property
    def heading(self) -> str:
        return self.title or TITLES.get(self.name, f"Escalation ({self.name})")

    def fires_at(self, started_at: datetime, cal: BusinessCalendar) -> datetime:
        """The instant this stage is due for a clock started at ``started_at``."""
        base = cal.add_business_time(started_at, cal.response_time() * (self.percent / 100.0))
        if not self.plus_hours:
            return base
        if self.urgent:
            # Real elapsed hours: wall-clock arithmetic in New York time would be an hour off across DST.
            return (base.astimezone(timezone.utc) + timedelta(hours=self.plus_hours)).astimezone(base.tzinfo)
        return cal.add_business_time(base, timedelta(hours=self.plus_hours))

    def describe(self) -> str:
        when = "when due" if self.percent == 100 else f"at {self.percent:g}% of the response time"
        if self.plus_hours:
            when += f" + {self.plus_hours:g} {'hours' if self.urgent else 'business hours'}"
        return f"{self.name}: {when}, to {', '.join(self.to)}{' (urgent)' if self.urgent else ''}"


DEFAULT_STAGES = (
    Stage(name="warning", percent=75, to=("assignee",)),
    Stage(name="breach", percent=100, to=("escalation",)),
    Stage(name="second-level", percent=100, plus_hours=4, to=("program_lead",)),
)


@dataclass(**FROZEN)
class LadderConfig:
    """The ladder plus the people its roles name (from ``[support]``)."""

    support_address: str
    support_name: str = "Open Atrium Support"
    staff: frozenset[str] = frozenset()
    escalation: tuple[str, ...] = ()
    program_lead: str | None = None
    stages: tuple[Stage, ...] = DEFAULT_STAGES

    def resolve(self, role_or_address: str, assignee: str | None) -> list[str]:
        """Addresses for one entry of a stage's ``to``. Missing people fall back upwards to staff,
        so the default ladder works with a minimal config (validated configs never rely on it)."""
        staff = sorted(self.staff)
        if role_or_address == "assignee":
            return [assignee] if assignee else staff
        if role_or_address == "staff":
            return staff
        if role_or_address == "escalation":
            return list(self.escalation) or staff
        if role_or_address == "program_lead":
            return [self.program_lead] if self.program_lead else (list(self.escalation) or staff)
        return [role_or_address]


# -- the ladder's memory ----------------------------------------------------------------
def ladder_state(thread: Thread) -> LadderMemory:
    """What the ladder remembers of the running clock; empty for a clock that fired nothing yet."""
    cid = clock_id(thread)
    if not cid or thread.ladder.clock != cid:
        return LadderMemory(clock=cid)
    return thread.ladder


def fired_stages(thread: Thread) -> list[str]:
    return [f.stage for f in ladder_state(thread).fired]


def record_fired(thread: Thread, stage: str, at: datetime, to: tuple[str, ...]) -> Thread:
    """The thread, remembering that ``stage`` went to ``to`` at ``at`` on the running clock."""
    lad = ladder_state(thread)
    if stage in [f.stage for f in lad.fired]:
        return thread
    return replace(thread, ladder=replace(lad, fired=lad.fired + (FiredStage(stage=stage, at=at, to=tuple(to)),)))


def current_stage(thread: Thread) -> str:
    """The last stage fired on the running clock, for `threads list` ("-" if none)."""
    fired = fired_stages(thread)
    return fired[-1] if fired else "-"


def next_stage(thread: Thread, config: LadderConfig, cal: BusinessCalendar) -> tuple[Stage, datetime] | None:
    """The next stage still to fire on the running clock, and when it is due."""
    if not clock_id(thread) or thread.due_at is None:
        return None
    done = set(fired_stages(thread))
    assert thread.clock_started_at is not None
    pending = [(st.fires_at(thread.clock_started_at, cal), st) for st in config.stages if st.name not in done]
    if not pending:
        return None
    at, st = min(pending, key=lambda p: p[0])
    return st, at


def recipients(stage: Stage, thread: Thread, config: LadderConfig, blocked: frozenset[str] = frozenset()
               ) -> tuple[str, ...]:
    """Who gets ``stage`` for ``thread``: assignee first, never the partner, never ourselves."""
    assignee = thread.assignee or None
    out: list[str] = [assignee] if assignee else []
    for entry in stage.to:
        out += config.resolve(entry, assignee)
    never = {thread.requester.lower(), config.support_address} | {b.lower() for b in blocked}
    return tuple(dict.fromkeys(a for a in out if a and a.lower() not in never))


# -- the rule --------------------------------------------------------------------------
def due_escalations(
    thread: Thread,
    now: datetime,
    config: LadderConfig,
    calendar: BusinessCalendar,
    *,
    partner_name: str = "",
    request_text: str = "",
    blocked: frozenset[str] = frozenset(),
) -> list[OutgoingMail]:
    """The escalation mail due for ``thread`` at ``now``, oldest stage first.

    ``blocked``: addresses that must never get escalations (the partner's contacts).
    Stages already fired on this clock (``thread.ladder``) are skipped; the
    outbox key ``esc:<thread>:<clock start>:<stage>`` makes a repeat a no-op anyway.
    """
    clock = running_clock(thread, now, calendar)
    if clock is None:
        return []
    state = ladder_state(thread)
    told = list(state.fired)
    done = {f.stage for f in told}
    stages = list(config.stages)
    due: list[tuple[int, Stage, tuple[str, ...]]] = []
    for i, stage in enumerate(stages):
        if stage.name in done:
            continue
        at = stage.fires_at(clock.started_at, calendar)
        if now < at:
            continue
        if not stage.urgent and not calendar.is_open(now):
            continue  # goes out at the next opening
        to = recipients(stage, thread, config, blocked)
        if to:
            due.append((i, stage, to))
    if not due:
        return []
    # Several stages due at once (downtime, a night, a tick missed): one mail for the latest,
    # to everyone the overtaken stages name too, rather than "due soon" next to "overdue".
    i, stage, to = due[-1]
    covers = [s.name for _, s, _ in due[:-1]]
    to = tuple(dict.fromkeys(a for _, _, t in due for a in t))
    later = [(s.fires_at(clock.started_at, calendar), s) for s in stages[i + 1:] if s.name not in done]
    nxt = min(later, key=lambda p: p[0]) if later else None
    mail = _mail(thread, stage, to, clock, now, config, calendar, told, nxt, partner_name, request_text)
    return [replace(mail, context={**mail.context, "covers": covers})]


def _mail(thread: Thread, stage: Stage, to: tuple[str, ...], clock: Any, now: datetime, config: LadderConfig,
          cal: BusinessCalendar, told: list[FiredStage], nxt: tuple[datetime, Stage] | None,
          partner_name: str, request_text: str) -> OutgoingMail:
    already = [
        f"{f.stage} ({format_due(f.at, cal)}): {', '.join(f.to)}" for f in told
    ]
    context = {
        "stage": stage.name,
        "heading": stage.heading,
        "thread_id": thread.id,
        "subject": thread.subject,
        "partner_name": partner_name or "(no partner)",
        "partner_id": thread.partner_id or "",
        "requester": thread.requester,
        "requester_name": thread.requester_name,
        "clock": clock.label,
        "waited": format_duration(clock.waited),
        "due": format_due(clock.due_at, cal),
        "overdue": now >= clock.due_at,
        "already_told": already,
        "recipients": list(to),
        "assignee": thread.assignee,
        "next_stage": (f"{nxt[1].name} to {', '.join(nxt[1].to)} at {format_due(nxt[0], cal)}" if nxt else ""),
        "request_text": request_text.strip() or "(the request text is not stored)",
        "support_address": config.support_address,
    }
    return OutgoingMail(
        key=f"esc:{thread.id}:{clock_id(thread)}:{stage.name}",
        kind="escalation",
        template="escalation",
        to=to,
        thread_id=thread.id,
        subject=msgids.with_tag(f"{stage.heading}: {thread.subject}", thread.id),
        from_name=config.support_name,
        in_reply_to=thread.partner_messages[-1] if thread.partner_messages else None,
        references=thread.partner_messages[-10:],
        auto_kind="auto-generated",
        extra_headers=(("X-Partnerdesk-Stage", stage.name),),
        context=context,
    )

"""Two threads that are one conversation become one. Pure.

The older thread survives: it takes the other's messages and timeline (in time order), and the
earliest due time of the two stands, with the escalation ladder of that clock, so merging never buys
time. Acknowledgements are not sent again: the partner already has one. The other thread is closed
with ``merged_into`` naming the survivor; mail that later reaches it by reference or by its tag is
filed in the survivor (service/intake.py follows the link), and ``threads show`` of its id shows the
survivor. Staff are told which thread the other became.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from . import lifecycle, msgids
from .lifecycle import CLOCK_RUNNING, OPEN, Event
from .model import OutgoingMail, Thread, ThreadEvent


def survivor_of(a: Thread, b: Thread) -> tuple[Thread, Thread]:
    """(the thread that stays, the one merged into it): the older stays."""
    return (a, b) if (a.created_at, a.number) <= (b.created_at, b.number) else (b, a)


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return min((v for v in (a, b) if v is not None), default=None)


def merge(survivor: Thread, absorbed: Thread, *, at: datetime, by: str, why: str, calendar: Any) -> tuple[Thread, Thread]:
    """``survivor`` with ``absorbed``'s mail, timeline and clock; ``absorbed`` closed, pointing at it."""
    state = lifecycle.merged_state(survivor.state, absorbed.state)
    clocks = [t for t in (survivor, absorbed) if t.state in CLOCK_RUNNING and t.due_at is not None]
    clock = min(clocks, key=lambda t: t.due_at) if clocks and state in CLOCK_RUNNING else None  # type: ignore[arg-type,return-value]
    first = survivor if absorbed.first_response_at is None or (
        survivor.first_response_at is not None and survivor.first_response_at <= absorbed.first_response_at) else absorbed
    same_partner = survivor.partner_id is not None and survivor.partner_id == absorbed.partner_id
    events = sorted(survivor.events + absorbed.events, key=lambda e: e.at)
    kept = replace(
        survivor,
        state=state,
        due_at=clock.due_at if clock else None,
        clock_started_at=clock.clock_started_at if clock else None,
        ladder=clock.ladder if clock else survivor.ladder,
        closed_at=survivor.closed_at if state not in OPEN else None,
        first_response_at=first.first_response_at,
        first_responder=first.first_responder,
        seat=survivor.seat or (same_partner and absorbed.seat),
        assignee=survivor.assignee or absorbed.assignee,
        messages=survivor.messages + tuple(m for m in absorbed.messages if m not in survivor.messages),
        partner_messages=survivor.partner_messages + tuple(
            m for m in absorbed.partner_messages if m not in survivor.partner_messages),
        events=tuple(events),
    ).with_event(ThreadEvent(at=at, kind="merge", by=by, detail=f"{absorbed.id} merged into this thread: {why}"))
    gone = lifecycle.apply(absorbed, Event.MERGE, at, calendar) if absorbed.state in OPEN else absorbed
    gone = replace(gone, merged_into=kept.id).with_event(
        ThreadEvent(at=at, kind="merge", by=by, detail=f"merged into {kept.id}: {why}"))
    return kept, gone


def merge_notice(survivor: Thread, absorbed: Thread, s: Any, *, why: str, key: str, due: str = "",
                 to: tuple[str, ...] | None = None) -> OutgoingMail:
    """The mail telling staff that ``absorbed`` is now part of ``survivor`` (``s``: IntakeSettings)."""
    return OutgoingMail(
        key=key, kind="merge-notice", template="merge_notice", to=to if to is not None else tuple(sorted(s.staff)),
        thread_id=survivor.id, subject=msgids.with_tag(f"Merged {absorbed.id}: {survivor.subject}", survivor.id),
        from_name=s.support_name, auto_kind="auto-generated",
        references=absorbed.messages[:1] + absorbed.messages[-5:],
        context={"thread_id": survivor.id, "subject": survivor.subject, "other_id": absorbed.id,
                 "other_subject": absorbed.subject, "why": why, "state": survivor.state.words, "due": due,
                 "support_address": s.support_address, "support_name": s.support_name},
    )

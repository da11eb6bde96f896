"""The daily digest: every business day at opening time, what is open, to staff.

Pure: ``due_digest(threads, now, ...)`` returns the digest mail due at ``now`` or
None. It is due from the day's opening until its closing, once per business day
(key ``digest:<local date>``: the outbox refuses a second one). Nothing is sent
when no thread is open.

Config::

    [digest]
    enabled = true
    to = ["staff"]        # "staff", "escalation", "program_lead", or addresses
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .calendar import BusinessCalendar, format_due, format_duration
from .escalation import LadderConfig, current_stage
from .lifecycle import OPEN, State
from .model import FROZEN, OutgoingMail, Thread
from .sla import running_clock

DIGEST_ROLES = ("staff", "escalation", "program_lead")


@dataclass(**FROZEN)
class DigestConfig:
    enabled: bool = True
    to: tuple[str, ...] = ("staff",)


def digest_key(now: datetime, cal: BusinessCalendar) -> str:
    return f"digest:{now.astimezone(cal.tz()).date().isoformat()}"


def is_due(now: datetime, cal: BusinessCalendar) -> bool:
    """From opening to closing on a business day (a digest missed at 9:00 still goes at 11:00)."""
    return cal.is_open(now)


def due_digest(threads: list[Thread], now: datetime, cal: BusinessCalendar, config: DigestConfig,
               ladder: LadderConfig, *, partner_names: dict[str, str] | None = None,
               flags: dict[str, str] | None = None) -> OutgoingMail | None:
    """``flags``: partner id -> a word for staff next to its threads ("lapsed since 2027-05-01")."""
    if not config.enabled or not is_due(now, cal):
        return None
    open_threads = [t for t in threads if t.state in OPEN]
    if not open_threads:
        return None
    names = partner_names or {}
    far = datetime.max.replace(tzinfo=now.tzinfo)

    def row(t: Thread) -> dict[str, Any]:
        clock = running_clock(t, now, cal)
        return {
            "id": t.id,
            "subject": t.subject[:70],
            "state": t.state.words,
            "on_partner": t.state == State.WAITING_ON_PARTNER,
            "partner": names.get(t.partner_id or "", t.partner_id or "(no partner)")
                       + (f" [{(flags or {})[t.partner_id]}]" if t.partner_id in (flags or {}) else ""),
            "requester": t.requester,
            "due": format_due(clock.due_at, cal) if clock else "-",
            "waited": format_duration(clock.waited) if clock else "-",
            "overdue": bool(clock and clock.overdue),
            "stage": current_stage(t),
            "assignee": t.assignee,
            "no_seat": not t.seat,
            "unknown": t.sender_kind == "unknown",
        }

    ordered = sorted(open_threads, key=lambda t: (t.due_at if running_clock(t, now, cal) else far, t.number))
    rows = [row(t) for t in ordered]
    to: list[str] = []
    for x in config.to:
        to += ladder.resolve(x, None) if x in DIGEST_ROLES else [x]
    to = [a for a in dict.fromkeys(to) if a != ladder.support_address]
    if not to:
        return None
    day = format_due(now, cal, with_year=True).rsplit(",", 1)[0]
    return OutgoingMail(
        key=digest_key(now, cal),
        kind="digest",
        template="digest",
        to=tuple(to),
        subject=f"Support digest for {day}: {len(rows)} open, {sum(r['overdue'] for r in rows)} overdue",
        from_name=ladder.support_name,
        auto_kind="auto-generated",
        context={
            "day": day,
            "rows": rows,
            "clocked": [r for r in rows if r["due"] != "-"],
            "breaches": [r for r in rows if r["overdue"]],
            "waiting": [r for r in rows if r["due"] == "-" and r["on_partner"]],
            "no_seat": [r for r in rows if r["no_seat"] or r["unknown"]],
            "support_address": ladder.support_address,
            "support_name": ladder.support_name,
        },
    )

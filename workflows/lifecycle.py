"""A thread's lifecycle, as one table.

Rows are (state, event) -> next state. Anything not in the table leaves the state
as it is. The README prints this table (``python run.py states``), so keep the
descriptions short and true.
"""

from __future__ import annotations

STATES = {
    "new": "opened by a partner; nobody on staff has answered yet (clock running)",
    "waiting_on_staff": "the partner wrote again after an answer (clock running)",
    "waiting_on_partner": "staff answered; the ball is in the partner's court (no clock)",
    "closed": "done; a partner message reopens it (no clock)",
}

EVENTS = {
    "request": "first message of a new thread",
    "history": "mail received before partnerdesk's first start, imported without acting",
    "follow-up": "a partner (or anyone not staff) writes in the thread",
    "answer": "a staff member replies (relayed to the partner unless it was a reply-all)",
    "note": "a staff reply starting with #note: internal, never sent",
    "close": "staff close the thread (#close), or it waited on the partner too long",
    "reopen": "staff reopen it (#reopen)",
    "wait": "staff mark it waiting on the partner without answering (#wait)",
}

TRANSITIONS: dict[tuple[str, str], str] = {
    ("new", "request"): "new",
    ("new", "history"): "closed",
    ("new", "follow-up"): "new",
    ("new", "answer"): "waiting_on_partner",
    ("new", "close"): "closed",
    ("new", "wait"): "waiting_on_partner",
    ("waiting_on_staff", "follow-up"): "waiting_on_staff",
    ("waiting_on_staff", "answer"): "waiting_on_partner",
    ("waiting_on_staff", "close"): "closed",
    ("waiting_on_staff", "wait"): "waiting_on_partner",
    ("waiting_on_partner", "follow-up"): "waiting_on_staff",
    ("waiting_on_partner", "answer"): "waiting_on_partner",
    ("waiting_on_partner", "close"): "closed",
    ("closed", "follow-up"): "waiting_on_staff",
    ("closed", "answer"): "waiting_on_partner",
    ("closed", "reopen"): "waiting_on_staff",
}

CLOCK_RUNNING = frozenset({"new", "waiting_on_staff"})


def next_state(state: str, event: str) -> str:
    if state not in STATES:
        raise ValueError(f"unknown thread state {state!r}")
    if event not in EVENTS:
        raise ValueError(f"unknown thread event {event!r}")
    return TRANSITIONS.get((state, event), state)


def table_text() -> str:
    """The table as text, for the README and ``run.py states``."""
    lines = ["| state | event | next state |", "|---|---|---|"]
    for (state, event), nxt in TRANSITIONS.items():
        lines.append(f"| {state} | {event} | {nxt} |")
    lines.append("")
    lines += [f"- **{k}**: {v}" for k, v in STATES.items()]
    return "\n".join(lines)

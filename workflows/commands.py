"""Commands by mail: staff run a thread from their mail client.

A staff reply in a thread whose first non-empty line starts with ``#word`` is a
command, not an answer; nothing of it reaches the partner (except the short
closing mail of ``#close``). Only staff mail gets here: intake routes mail from
anyone else as a follow-up, whatever its first line says.

| command            | does                                                                 |
|--------------------|----------------------------------------------------------------------|
| ``#note``          | internal note in the timeline; the clock keeps running               |
| ``#close``         | closes; the partner gets a short closing mail                        |
| ``#close quiet``   | closes without telling the partner                                   |
| ``#reopen``        | reopens a closed thread; a new response clock starts                 |
| ``#assign ADDRESS``| the staff member gets the escalations first (``#assign me``: you)    |
| ``#wait``          | waiting on the partner without answering; the clock stops            |
| ``#merge OA-n``    | this thread and OA-n are one conversation: the older takes the other |

Every command, ``#note`` included, gets a short confirmation to the staff member
(for a note it says plainly that the partner did not get it); an unknown command
(or a bad argument) gets an error reply naming the valid ones and changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from . import lifecycle, merging, msgids
from .lifecycle import Event, State
from .calendar import format_due
from .model import FROZEN, Decision, InboundMail, OutgoingMail, Sender, Thread, ThreadEvent

COMMANDS = {
    "note": "#note: an internal note; never sent to the partner",
    "close": "#close: close the thread and send the partner a short closing mail (#close quiet: no mail)",
    "reopen": "#reopen: reopen a closed thread",
    "assign": "#assign ADDRESS: make a staff member the thread's assignee (#assign me: yourself)",
    "wait": "#wait: waiting on the partner without answering (stops the clock)",
    "merge": "#merge OA-n: this thread and OA-n are one conversation (the older keeps both timelines)",
}
_CMD_RE = re.compile(r"^#([A-Za-z][A-Za-z0-9_-]*)(?![A-Za-z0-9_-])[:\s]*(.*)$")


@dataclass(**FROZEN)
class Command:
    name: str  # a key of COMMANDS, or "unknown"
    arg: str = ""
    line: str = ""  # the first line as written
    rest: str = ""  # the text after the first line (kept in the timeline)


def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def parse_command(text: str) -> Command | None:
    """The command on the first non-empty line of ``text``, or None when it is an ordinary answer."""
    lines = text.strip().splitlines()
    line = first_line(text)
    m = _CMD_RE.match(line)
    if not m:
        return None
    name = m.group(1).lower()
    rest = "\n".join(lines[1:]).strip() if lines else ""
    return Command(name=name if name in COMMANDS else "unknown", arg=m.group(2).strip(), line=line, rest=rest)


def merge_target(text: str) -> str | None:
    """The thread id a ``#merge OA-n`` on the first line of ``text`` names (for the service to look up)."""
    cmd = parse_command(text)
    if cmd is None or cmd.name != "merge":
        return None
    m = re.fullmatch(r"\[?OA-(\d{1,9})\]?", cmd.arg.strip(), re.IGNORECASE)
    return msgids.thread_id(int(m.group(1))) if m else None


def valid_commands_text() -> str:
    return "\n".join(f"  {v}" for v in COMMANDS.values())


def apply_command(cmd: Command, mail: InboundMail, sender: Sender, thread: Thread, s: Any, *,
                  history: bool = False, other: Thread | None = None) -> Decision:
    """The decision for a staff command. ``s``: IntakeSettings (support address/name, staff, calendar).

    ``other``: the thread a ``#merge OA-n`` names, as the store has it (None if there is none).
    """
    at = mail.received_at
    by = mail.from_addr
    detail = cmd.line if not cmd.rest else f"{cmd.line}\n{cmd.rest}"
    if cmd.name == "note":
        # The note keeps its full text: it is the timeline's record of what staff know.
        body = (mail.reply_text or mail.text).strip()
        thread = thread.with_event(ThreadEvent(at=at, kind="note", message_id=mail.message_id, by=by,
                                               detail=body[:2000]))
        if history:
            return Decision(action="history", thread=thread, sender=sender, reason="note before the first start")
        # Confirmed like every command: the writer's worry is "did that reach the partner?", and the
        # answer costs one short mail to them alone.
        running = f" The reply clock keeps running (due {format_due(thread.due_at, s.calendar)})." if thread.due_at else ""
        result = f"Your note is in {thread.id}'s timeline. It was NOT sent to the partner.{running}"
        return Decision(action="note", thread=thread, outgoing=(_confirm(mail, thread, s, "note", result),),
                        sender=sender, reason="internal note; not sent to the partner")
    if history:
        thread = thread.with_event(ThreadEvent(at=at, kind="command", message_id=mail.message_id, by=by,
                                               detail=f"{cmd.line} (before the first start: not acted on)"))
        return Decision(action="history", thread=thread, sender=sender, reason="command before the first start")

    problem = _check(cmd, sender, s, thread, other)
    if problem:
        thread = thread.with_event(ThreadEvent(at=at, kind="command-error", message_id=mail.message_id, by=by,
                                               detail=f"{cmd.line}: {problem}"))
        return Decision(action="command-error", thread=thread, outgoing=(_error(mail, thread, s, cmd, problem),),
                        sender=sender, reason=f"bad command {cmd.line!r}: {problem}")

    if cmd.name == "merge":
        assert other is not None  # _check
        return _merge(cmd, mail, sender, thread, other, s)
    before = thread.state
    out: list[OutgoingMail] = []
    if cmd.name == "close":
        quiet = cmd.arg.lower() == "quiet"
        if before == State.CLOSED:
            result = f"{thread.id} was already closed; nothing changed."
        else:
            thread = lifecycle.apply(thread, Event.CLOSE, at, s.calendar)
            told = not quiet and _partner_reachable(thread, s)
            if told:
                out.append(closing_mail(thread, s, key=f"close:{thread.id}:{mail.message_id}", automatic_close=False))
            result = (f"{thread.id} is closed." + (f" {thread.requester} gets a short closing mail." if told else
                                                  " The partner is not told (quiet)." if quiet else "")
                      + f" A partner reply within {s.reopen_days} days reopens it.")
        kind = "close"
    elif cmd.name == "reopen":
        if before != State.CLOSED:
            result = f"{thread.id} is not closed (it is {before.words}); nothing changed."
        else:
            thread = lifecycle.apply(thread, Event.REOPEN, at, s.calendar)
            if thread.due_at is not None:
                result = f"{thread.id} is open again; a reply is due {format_due(thread.due_at, s.calendar)}."
            else:
                result = f"{thread.id} is open again (no reply-time promise: the requester holds no seat)."
        kind = "reopen"
    elif cmd.name == "assign":
        who = by if cmd.arg.lower() in ("", "me") else cmd.arg.lower().strip("<>")
        thread = replace(thread, assignee=who)
        result = f"{thread.id} is assigned to {who}, who now gets its escalations first."
        kind = "assign"
    elif cmd.name == "wait":
        if before == State.CLOSED:
            result = f"{thread.id} is closed; #reopen it first. Nothing changed."
        elif before == State.WAITING_ON_PARTNER:
            result = f"{thread.id} was already waiting on the partner; nothing changed."
        else:
            thread = lifecycle.apply(thread, Event.WAIT, at, s.calendar)
            result = (f"{thread.id} is waiting on the partner; the reply clock is stopped. A partner message "
                      f"starts a new one.")
        kind = "wait"
    else:  # pragma: no cover - _check rejects unknown names
        raise AssertionError(cmd.name)
    thread = thread.with_event(ThreadEvent(at=at, kind=kind, message_id=mail.message_id, by=by,
                                           detail=f"{detail[:500]} -> {thread.state}"))
    out.insert(0, _confirm(mail, thread, s, kind, result, extra_to=(thread.assignee,) if kind == "assign" else ()))
    return Decision(action=f"command-{kind}", thread=thread, outgoing=tuple(out), sender=sender,
                    reason=f"{cmd.line}: {before} -> {thread.state}")


def _merge(cmd: Command, mail: InboundMail, sender: Sender, thread: Thread, other: Thread, s: Any) -> Decision:
    survivor, absorbed = merging.survivor_of(thread, other)
    why = f"{mail.from_addr} wrote {cmd.line!r}"
    kept, gone = merging.merge(survivor, absorbed, at=mail.received_at, by=mail.from_addr, why=why,
                               calendar=s.calendar)
    due = format_due(kept.due_at, s.calendar) if kept.due_at else ""
    result = (f"{absorbed.id} is now part of {kept.id}, which keeps both timelines"
              + (f"; a reply is due {due}." if due else f" ({kept.state.words})."))
    out = [_confirm(mail, kept, s, "merge", result)]
    others = tuple(sorted(a for a in s.staff if a != mail.from_addr))
    if others:
        out.append(merging.merge_notice(kept, gone, s, why=why, due=due, to=others,
                                        key=f"merge:{kept.id}:{gone.id}"))
    return Decision(action="command-merge", thread=kept, also=(gone,), outgoing=tuple(out), sender=sender,
                    reason=f"{cmd.line}: {absorbed.id} merged into {kept.id}")


def _check(cmd: Command, sender: Sender, s: Any, thread: Thread | None = None, other: Thread | None = None) -> str:
    if cmd.name == "unknown":
        return "unknown command"
    if cmd.name == "merge":
        named = merge_target(cmd.line)
        if named is None:
            return f"#merge takes a thread id such as OA-12, not {cmd.arg!r}"
        if other is None:
            return f"there is no thread {named}"
        if thread is not None and other.id == thread.id:
            return f"{named} is this thread already" + (f" ({named} was merged into {other.id})"
                                                        if named != other.id else "")
    if cmd.name == "close" and cmd.arg and cmd.arg.lower() != "quiet":
        return f"#close takes nothing or 'quiet', not {cmd.arg!r}"
    if cmd.name in ("reopen", "wait") and cmd.arg:
        return f"#{cmd.name} takes no argument, not {cmd.arg!r}"
    if cmd.name == "assign":
        who = cmd.arg.lower().strip("<>")
        if who not in ("", "me") and who not in s.staff:
            return f"{cmd.arg!r} is not a staff address; staff are: {', '.join(sorted(s.staff))}"
    return ""


def _partner_reachable(thread: Thread, s: Any) -> bool:
    return bool(thread.requester) and thread.requester not in s.staff and thread.requester != s.support_address


def _to_staff(mail: InboundMail, thread: Thread, s: Any, *, kind: str, template: str, to: tuple[str, ...],
              context: dict[str, Any]) -> OutgoingMail:
    """A short automatic answer to the staff member who sent a command, threaded to their mail."""
    return OutgoingMail(
        key=f"cmd:{thread.id}:{mail.message_id}",
        kind=kind,
        template=template,
        to=to,
        thread_id=thread.id,
        subject=msgids.reply_subject(thread.subject, thread.id),
        from_name=s.support_name,
        in_reply_to=mail.message_id,
        references=(mail.message_id,),
        auto_kind="auto-replied",
        context={"thread_id": thread.id, "state": thread.state.words, "support_name": s.support_name,
                 **context},
    )


def _confirm(mail: InboundMail, thread: Thread, s: Any, kind: str, result: str,
             extra_to: tuple[str | None, ...] = ()) -> OutgoingMail:
    to = tuple(dict.fromkeys(a for a in (mail.from_addr, *extra_to) if a))
    return _to_staff(mail, thread, s, kind="command", template="command_ok", to=to,
                     context={"command": kind, "result": result, "subject": thread.subject})


def _error(mail: InboundMail, thread: Thread, s: Any, cmd: Command, problem: str) -> OutgoingMail:
    return _to_staff(mail, thread, s, kind="command-error", template="command_error", to=(mail.from_addr,),
                     context={"line": cmd.line, "problem": problem, "valid": list(COMMANDS.values())})


def closing_mail(thread: Thread, s: Any, *, key: str, automatic_close: bool, waited_days: int = 0) -> OutgoingMail:
    """The short mail telling the partner a thread is closed (by staff, or after waiting too long)."""
    return OutgoingMail(
        key=key,
        kind="close",
        template="close",
        to=(thread.requester,),
        thread_id=thread.id,
        subject=msgids.reply_subject(thread.subject, thread.id),
        from_name=s.support_name,
        in_reply_to=thread.partner_messages[-1] if thread.partner_messages else None,
        references=thread.partner_messages[-20:],
        auto_kind="auto-generated",
        extra_headers=(("X-Auto-Response-Suppress", "All"),),
        context={"name": thread.requester_name, "thread_id": thread.id, "subject": thread.subject,
                 "automatic_close": automatic_close, "waited_days": waited_days, "reopen_days": s.reopen_days,
                 "support_name": s.support_name},
    )

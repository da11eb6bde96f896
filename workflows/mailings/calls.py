"""The quarterly "State of Open Atrium" call: invitations, reminders, updates and cancellations.

Call dates come from config: an RRULE expanded from ``first`` and/or an explicit
list. A call keeps its id when it moves (an explicit entry with the id of a rule
occurrence moves that occurrence), and the id is the calendar UID, so a moved
call reaches attendees as an update of the same entry with a higher SEQUENCE.
A call that disappears from config after invitations went out is cancelled.

What was sent is read back from the ledger: each queued invitation/update
records the call's start and SEQUENCE.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

from dateutil.rrule import rrulestr

from ..model import Partner
from .types import CallDate, CallsConfig, MailingsConfig
from .due import CalendarEvent, Due, format_when, lapse_reason, ledger_key, queued, stamp

CALENDAR_MAILINGS = ("call-invite", "call-update", "call-cancel")
LOOKBACK = timedelta(days=45)  # a call longer ago than this is history: no skips recorded for it
_RULE_SLACK = timedelta(days=400)  # an explicit entry may move a rule occurrence by up to this much


def call_dates(cfg: CallsConfig, start: datetime, end: datetime) -> list[CallDate]:
    """Calls starting in [start, end), moves and cancellations applied, in time order."""
    by_id: dict[str, CallDate] = {}
    if cfg.rrule and cfg.first is not None:
        rule = rrulestr(cfg.rrule, dtstart=cfg.first)
        for occ in rule.between(start - _RULE_SLACK, end + _RULE_SLACK, inc=True):
            cid = f"call-{occ.date().isoformat()}"  # the occurrence's local date, as the rule produced it
            by_id[cid] = CallDate(id=cid, start=occ, dial_in=cfg.dial_in)
    for d in cfg.dates:
        by_id[d.id] = CallDate(id=d.id, start=d.start, dial_in=d.dial_in or cfg.dial_in)
    for cid in cfg.cancelled:
        by_id.pop(cid, None)
    return sorted((c for c in by_id.values() if start <= c.start < end), key=lambda c: (c.start, c.id))


def calendar_state(ledger: Mapping[str, Mapping[str, Any]]) -> dict[tuple[str, str], Mapping[str, Any]]:
    """(call id, recipient) -> the ledger record of the last calendar message queued for it."""
    state: dict[tuple[str, str], Mapping[str, Any]] = {}
    for rec in queued(ledger):
        if rec.get("mailing") in CALENDAR_MAILINGS:
            k = (rec["call_id"], rec["recipient"])
            if k not in state or rec.get("sequence", 0) > state[k].get("sequence", 0):
                state[k] = rec
    return state


def _event(cfg: CallsConfig, call: CallDate, mc: MailingsConfig, method: str, sequence: int, email: str,
           name: str) -> CalendarEvent:
    return CalendarEvent(method=method, uid=call.id, sequence=sequence, start=call.start,
                         end=call.start + cfg.duration, summary=cfg.title,
                         description=_description(cfg.title, call.dial_in, cfg.agenda),
                         location=call.dial_in, attendee=email, attendee_name=name, tzid=mc.timezone)


# One description per call, not one per recipient: a mailing's plan holds an event for every recipient
# until it is stored.
@functools.lru_cache(maxsize=64)
def _description(title: str, dial_in: str, agenda: str) -> str:
    desc = f"{title}: the program's quarterly call for partners."
    if dial_in:
        desc += f"\n\nHow to join: {dial_in}"
    if agenda:
        desc += f"\n\nAgenda: {agenda}"
    return desc


def _context(cfg: CallsConfig, call: CallDate, when: str, name: str, partner_name: str,
             solo: bool = False, **extra: Any) -> dict[str, Any]:
    # solo: a one-person shop, where "everyone at <partner>" would read oddly
    return {"name": name, "partner_name": partner_name, "solo": solo, "title": cfg.title, "when": when,
            "duration_minutes": int(cfg.duration.total_seconds() // 60), "dial_in": call.dial_in,
            "agenda": cfg.agenda, "call_id": call.id, **extra}


def due(partners: Sequence[Partner], ledger: Mapping[str, Mapping[str, Any]], mc: MailingsConfig, now: datetime,
        unsubscribed: frozenset[str] = frozenset()) -> tuple[list[Due], list[Due]]:
    cfg = mc.calls
    tz = mc.tz()
    send: list[Due] = []
    skip: list[Due] = []
    known = {c.id: c for c in call_dates(cfg, now - _RULE_SLACK, now + _RULE_SLACK)}
    state = calendar_state(ledger)
    today = now.astimezone(tz).date()
    people = [(p, c) for p in partners if p.active_on(today) for c in p.contacts]
    lapsed = {p.id: note for p in partners if (note := lapse_reason(p, today, mc))}

    def offer(d: Due, *, passed: bool, unsub: bool = False, correction: bool = False) -> bool:
        """Decide ``d`` unless the ledger holds it; True if it goes out now (appended to ``send``)."""
        if d.key in ledger:
            return False
        if passed:
            skip.append(d.skipped(f"the call on {format_when(datetime.fromisoformat(d.record['start']), tz)} has already started"))
        elif unsub:
            skip.append(d.skipped("the recipient unsubscribed from the call invitations"))
        elif d.partner_id in lapsed and not correction:
            skip.append(d.skipped(lapsed[d.partner_id], held=True))
        else:
            send.append(d)
            return True
        return False

    for call in known.values():
        invite_at = call.start - timedelta(days=cfg.invite_days_before)
        remind_at = call.start - timedelta(days=cfg.reminder_days_before)
        invited = {email for (cid, email) in state if cid == call.id}
        if call.start < now - LOOKBACK or (invite_at > now and not invited):
            continue
        passed = call.start <= now
        when = format_when(call.start, tz)
        at_start = f"{call.id}@{stamp(call.start)}"  # occurrence of this call at this time
        record = {"call_id": call.id, "start": call.start.isoformat()}
        # The same words for every recipient: made once, so a mailing of thousands holds one copy of each
        # (its ledger entries and outbox rows keep them until the call is past).
        invite_why = f"invitation {cfg.invite_days_before} days before the call on {when}"
        invite_subject = f"Invitation: {cfg.title}, {when}"
        remind_why = f"reminder the day before the call on {when}"
        remind_subject = f"Reminder: {cfg.title}, {when}"
        invite_record = {**record, "sequence": 0, "method": "REQUEST"}  # one for all: nobody changes it
        for p, c in people:
            unsub = f"calls:{c.email}" in unsubscribed
            last = state.get((call.id, c.email))
            calendar_going_now = False
            if last is None:
                if invite_at > now:
                    continue
                d = Due(mailing="call-invite", occurrence=call.id, recipient=c.email, partner_id=p.id,
                        due_at=invite_at, template="call_invite", list_name="calls",
                        why=invite_why, subject=invite_subject,
                        context=_context(cfg, call, when, c.name, p.name, p.plan == "solo"),
                        event=_event(cfg, call, mc, "REQUEST", 0, c.email, c.name),
                        record=invite_record)
                calendar_going_now = offer(d, passed=passed, unsub=unsub)
            elif last.get("method") == "REQUEST" and datetime.fromisoformat(last["start"]) != call.start:
                # Compared as instants: the same time written in another zone is not a move.
                seq = int(last.get("sequence", 0)) + 1
                was = format_when(datetime.fromisoformat(last["start"]), tz)
                # Keyed by SEQUENCE too: a call moved A->B->A->B sends every one of those updates.
                d = Due(mailing="call-update", occurrence=f"{at_start}#seq{seq}",
                        recipient=c.email,
                        partner_id=p.id, due_at=max(invite_at, now), template="call_update", list_name="calls",
                        why=f"the call moved from {was} to {when}",
                        subject=f"Moved: {cfg.title}, now {when}",
                        context=_context(cfg, call, when, c.name, p.name, p.plan == "solo", was=was),
                        event=_event(cfg, call, mc, "REQUEST", seq, c.email, c.name),
                        record={**record, "sequence": seq, "method": "REQUEST"})
                # An attendee who has the entry in their calendar gets the correction even if unsubscribed
                # (or lapsed: the entry they have is wrong).
                calendar_going_now = offer(d, passed=passed, correction=True)
            elif last.get("method") == "CANCEL":
                # Cancelled, then put back in the config: invite again (the entry in their calendar says
                # cancelled), with the next SEQUENCE; keyed by it so a second restore is invited too.
                # Like an update, it corrects an entry they have, so it goes even to the unsubscribed.
                if passed:
                    continue
                seq = int(last.get("sequence", 0)) + 1
                d = Due(mailing="call-invite", occurrence=f"{call.id}#seq{seq}", recipient=c.email,
                        partner_id=p.id, due_at=now, template="call_invite", list_name="calls",
                        why=f"the call on {when} was cancelled and is back in the calendar",
                        subject=invite_subject,
                        context=_context(cfg, call, when, c.name, p.name, p.plan == "solo"),
                        event=_event(cfg, call, mc, "REQUEST", seq, c.email, c.name),
                        record={**record, "sequence": seq, "method": "REQUEST"})
                calendar_going_now = offer(d, passed=passed)
            # Checked before building the reminder: after it went out, every tick until the call is
            # history would otherwise build one per contact only to find it in the ledger.
            if remind_at > now or ledger_key("call-reminder", at_start, c.email) in ledger:
                continue
            r = Due(mailing="call-reminder", occurrence=at_start, recipient=c.email,
                    partner_id=p.id, due_at=remind_at, template="call_reminder", list_name="calls",
                    why=remind_why, subject=remind_subject,
                    context=_context(cfg, call, when, c.name, p.name, p.plan == "solo"), record=dict(record))
            if calendar_going_now:
                skip.append(r.skipped("the invitation goes out less than a day before the call; "
                                      "a separate reminder would be a second mail about the same thing"))
            else:
                offer(r, passed=passed, unsub=unsub)

    # Calls that were announced and are gone from the config: cancel the calendar entry.
    names = {c.email: (p, c) for p, c in people}
    for (cid, email), last in state.items():
        if cid in known or last.get("method") == "CANCEL":
            continue
        start = datetime.fromisoformat(last["start"])
        if start <= now:
            continue  # it took place (or was meant to) before it left the config: nothing to correct
        p, c = names.get(email, (None, None))
        gone = CallDate(id=cid, start=start)
        when = format_when(start, tz)
        seq = int(last.get("sequence", 0)) + 1
        # Keyed by SEQUENCE: a call restored and removed again is cancelled again.
        d = Due(mailing="call-cancel", occurrence=f"{cid}#seq{seq}", recipient=email, partner_id=last.get("partner_id", ""),
                due_at=now, template="call_cancel", list_name="calls",
                why=f"the call on {when} was removed from the calendar",
                subject=f"Cancelled: {cfg.title}, {when}",
                context=_context(cfg, gone, when, c.name if c else "", p.name if p else "",
                                 bool(p and p.plan == "solo")),
                event=_event(cfg, gone, mc, "CANCEL", seq, email, c.name if c else ""),
                record={"call_id": cid, "start": start.isoformat(), "sequence": seq,
                        "method": "CANCEL"})
        if d.key not in ledger:
            send.append(d)
    return send, skip


def times(mc: MailingsConfig, start: datetime, end: datetime) -> set[datetime]:
    """Moments in [start, end) when something about a call may become due (for `mailings plan`)."""
    cfg = mc.calls
    out = set()
    for call in call_dates(cfg, start, end + timedelta(days=cfg.invite_days_before + 1)):
        for t in (call.start - timedelta(days=cfg.invite_days_before),
                  call.start - timedelta(days=cfg.reminder_days_before)):
            if start <= t < end:
                out.add(t)
    return out

"""Trainings: announcements to partners with unused places, refreshers to people who trained a while ago,
and (workflows/trainings/notices.py) every mail of the registrations that follow.

Each partnership includes training for ``[trainings.seats]`` people per plan and term (standard 2, solo
1); the term is the year ending on the partner's ``renews_on`` (workflows/trainings/seats.py counts the
places used and reserved). For each course (the [trainings] rule and/or its dated entries),
``announce_days_before`` (default 30) before it:
* an announcement to the primary contact and every contact who never trained, at partners with an
  unused place in the course's term;
* a refresher invitation to contacts whose training is older than ``refresher_after_days`` (365).
Both carry the course's calendar invitation (iTIP REQUEST, the course id as UID): accepting it, or
replying "register me" (or naming colleagues), registers. People registered already get neither. A
course that has started is never announced late: the mail is skipped.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, Mapping, Sequence

from ..model import Partner
from ..trainings import notices, schedule, seats
from ..trainings.model import Status, TrainingInputs
from .types import MailingsConfig, TrainingDate
from .due import Due, format_when, lapse_reason, primary_contacts

LOOKBACK = timedelta(days=45)


def term(partner: Partner, at: date) -> tuple[date, date]:
    """(first day, last day) of the partner's term that contains ``at``."""
    return seats.term_of(partner, at)


def seats_used(partner: Partner, at: date) -> int:
    """Contacts who completed a training in the term containing ``at`` (what `partners trained` reports)."""
    first, last = term(partner, at)
    return sum(1 for c in partner.contacts if c.trained_on is not None and first <= c.trained_on <= last)


def seats_unused(partner: Partner, at: date, seats_per_term: int = 2) -> int:
    return max(0, seats_per_term - seats_used(partner, at))


def due(partners: Sequence[Partner], ledger: Mapping[str, Mapping[str, Any]], mc: MailingsConfig, now: datetime,
        unsubscribed: frozenset[str] = frozenset(), inputs: TrainingInputs = TrainingInputs()
        ) -> tuple[list[Due], list[Due]]:
    send, skip = announcements(partners, ledger, mc, now, unsubscribed, inputs)
    more, less = notices.due(partners, ledger, mc, now, inputs)
    return send + more, skip + less


def announcements(partners: Sequence[Partner], ledger: Mapping[str, Mapping[str, Any]], mc: MailingsConfig,
                  now: datetime, unsubscribed: frozenset[str], inputs: TrainingInputs) -> tuple[list[Due], list[Due]]:
    cfg = mc.trainings
    tz = mc.tz()
    today = now.astimezone(tz).date()
    send: list[Due] = []
    skip: list[Due] = []
    regs = inputs.registrations
    courses = schedule.known(cfg, now)
    state = schedule.calendar_state(ledger)
    registered = {(r.training_id, r.address) for r in regs if r.live or r.status is Status.ATTENDED}
    for tr in courses.values():
        announce_at = tr.start - timedelta(days=cfg.announce_days_before)
        if announce_at > now or tr.start < now - LOOKBACK:
            continue
        day = tr.start.astimezone(tz).date()
        refresh_cutoff = day - timedelta(days=cfg.refresher_after_days)
        when = format_when(tr.start, tz)
        for p in partners:
            if not p.active_on(today):
                continue
            lapsed = lapse_reason(p, today, mc)
            included = cfg.included(p.plan)
            used = seats.included_users(p, regs, courses, day, now, tz)
            unused = max(0, included - len(used))
            # A refresher goes to whoever trained long enough ago (it mentions unused places too), so
            # a one-person shop gets one mail, the refresher, not an announcement of its own place.
            refresh_to = [c for c in p.contacts if c.trained_on is not None and c.trained_on <= refresh_cutoff]
            announce_to = []
            if unused:
                announce_to = [c for c in p.contacts if c.trained_on is None and c.email not in used]
                # The primary contact decides who goes: told even when trained (and not due a refresher).
                announce_to += [c for c in primary_contacts(p) if c not in announce_to and c not in refresh_to]
            for c, mailing in [(c, "training-announcement") for c in announce_to] + \
                    [(c, "training-refresher") for c in refresh_to]:
                if (tr.id, c.email) in registered:
                    continue  # registered already (a colleague named them): no invitation to what they have
                seq = schedule.next_sequence(state.get((tr.id, c.email)))
                if mailing == "training-announcement":
                    why = f"{p.name} has {unused} of {included} training seats unused this term; training on {when}"
                    subject = f"{tr.title}: {when}"
                    extra: dict[str, Any] = {"trained": c.trained_on is not None}
                else:
                    why = f"trained on {c.trained_on.isoformat()}; refresher on {when}"  # type: ignore[union-attr]
                    subject = f"Refresher: {tr.title}, {when}"
                    extra = {"trained_on": c.trained_on.isoformat()}  # type: ignore[union-attr]
                _offer(send, skip, ledger, tr, now, unsubscribed, lapsed, Due(
                    mailing=mailing, occurrence=tr.id, recipient=c.email, partner_id=p.id, due_at=announce_at,
                    template=mailing.replace("-", "_"), list_name="trainings", why=why, subject=subject,
                    context=_context(mc, tr, p, c.name, day, unused=unused, included=included, **extra),
                    event=schedule.event(tr, mc, method="REQUEST", sequence=seq, email=c.email, name=c.name,
                                         registered=False),
                    record={"training_id": tr.id, "start": tr.start.isoformat(), "end": tr.ends.isoformat(),
                            "place": tr.place, "sequence": seq, "method": "REQUEST"}))
    return send, skip


def _context(mc: MailingsConfig, tr: TrainingDate, p: Partner, name: str, day: date, **extra: Any) -> dict[str, Any]:
    _, last = term(p, day)
    return {"name": name, "partner_name": p.name, "title": tr.title, "when": schedule.span_words(tr, mc.timezone),
            "days": schedule.days_of(tr, mc.timezone), "place": tr.place, "has_remote": bool(tr.remote),
            "training_id": tr.id, "seats_per_term": mc.trainings.included(p.plan), "capacity": tr.capacity,
            "term_end": last.isoformat(), "training_url": mc.program.training_url, **extra}


def _offer(send: list[Due], skip: list[Due], ledger: Mapping[str, Any], tr: TrainingDate, now: datetime,
           unsubscribed: frozenset[str], lapsed: str, d: Due) -> None:
    if d.key in ledger:
        return
    if tr.start <= now:
        skip.append(d.skipped("the training has already started"))
    elif f"trainings:{d.recipient}" in unsubscribed:
        skip.append(d.skipped("the recipient unsubscribed from training announcements"))
    elif lapsed:
        skip.append(d.skipped(lapsed, held=True))
    else:
        send.append(d)


def times(mc: MailingsConfig, start: datetime, end: datetime, inputs: TrainingInputs = TrainingInputs()
          ) -> set[datetime]:
    return notices.times(mc, inputs.registrations, start, end)


__all__ = ["due", "seats_used", "seats_unused", "term", "times"]

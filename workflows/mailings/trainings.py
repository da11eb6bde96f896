"""Trainings: announcements to partners with unused seats, refreshers to people who trained a while ago.

Each partnership includes training for ``seats_per_term`` people (two) per term;
the term is the year ending on the partner's ``renews_on``. A seat is used by
a contact whose ``trained_on`` falls in the current term (``partners trained``
records that, which also grants the support-channel seat).

For each configured training, ``announce_days_before`` (default 30) before it:
* an announcement to the primary contact and every contact who never trained,
  at partners with an unused seat in their current term;
* a refresher invitation to contacts whose training is older than
  ``refresher_after_days`` (default 365).
A training that has started is never announced late: the mail is skipped.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, Mapping, Sequence

from ..model import Partner
from .types import MailingsConfig, TrainingDate
from .due import Due, format_when, lapse_reason, primary_contacts

LOOKBACK = timedelta(days=45)


def term(partner: Partner, at: date) -> tuple[date, date]:
    """(first day, last day) of the partner's current term as of ``at``."""
    end = partner.renews_on
    if end is None:
        return at - timedelta(days=364), at
    try:
        before = end.replace(year=end.year - 1)  # where the term before ended
    except ValueError:  # February 29: a common year has none; the term before ended on February 28
        before = end.replace(year=end.year - 1, day=28)
    return before + timedelta(days=1), end


def seats_used(partner: Partner, at: date) -> int:
    first, last = term(partner, at)
    return sum(1 for c in partner.contacts if c.trained_on is not None and first <= c.trained_on <= last)


def seats_unused(partner: Partner, at: date, seats_per_term: int = 2) -> int:
    return max(0, seats_per_term - seats_used(partner, at))


def due(partners: Sequence[Partner], ledger: Mapping[str, Mapping[str, Any]], mc: MailingsConfig, now: datetime,
        unsubscribed: frozenset[str] = frozenset()) -> tuple[list[Due], list[Due]]:
    cfg = mc.trainings
    tz = mc.tz()
    send: list[Due] = []
    skip: list[Due] = []
    today = now.astimezone(tz).date()
    for tr in cfg.dates:
        announce_at = tr.start - timedelta(days=cfg.announce_days_before)
        if announce_at > now or tr.start < now - LOOKBACK:
            continue
        refresh_cutoff = tr.start.astimezone(tz).date() - timedelta(days=cfg.refresher_after_days)
        when = format_when(tr.start, tz)
        for p in partners:
            if not p.active_on(today):
                continue
            lapsed = lapse_reason(p, today, mc)
            unused = seats_unused(p, today, cfg.seats_per_term)
            # A refresher goes to whoever trained long enough ago (it mentions unused seats too), so
            # a one-person shop gets one mail, the refresher, not an announcement of its own place.
            refresh_to = [c for c in p.contacts if c.trained_on is not None and c.trained_on <= refresh_cutoff]
            announce_to = []
            if unused:
                announce_to = [c for c in p.contacts if c.trained_on is None]
                announce_to += [c for c in primary_contacts(p) if c not in announce_to and c not in refresh_to]
            for c in announce_to:
                _offer(send, skip, ledger, tr, now, unsubscribed, lapsed, Due(
                    mailing="training-announcement", occurrence=tr.id, recipient=c.email, partner_id=p.id,
                    due_at=announce_at, template="training_announcement", list_name="trainings",
                    why=f"{p.name} has {unused} of {cfg.seats_per_term} training seats unused this term; "
                        f"training on {when}",
                    subject=f"{tr.title}: {when}",
                    context=_context(mc, tr, when, p, c.name, today, unused=unused, trained=c.trained_on is not None)))
            for c in refresh_to:
                _offer(send, skip, ledger, tr, now, unsubscribed, lapsed, Due(
                    mailing="training-refresher", occurrence=tr.id, recipient=c.email, partner_id=p.id,
                    due_at=announce_at, template="training_refresher", list_name="trainings",
                    why=f"trained on {c.trained_on.isoformat()}; refresher on {when}",
                    subject=f"Refresher: {tr.title}, {when}",
                    context=_context(mc, tr, when, p, c.name, today, unused=unused, trained_on=c.trained_on.isoformat())))
    return send, skip


def _context(mc: MailingsConfig, tr: TrainingDate, when: str, p: Partner, name: str, today: date,
             **extra: Any) -> dict[str, Any]:
    _, last = term(p, today)
    return {"name": name, "partner_name": p.name, "title": tr.title, "when": when,
            "place": tr.place, "training_id": tr.id, "seats_per_term": mc.trainings.seats_per_term,
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


def times(mc: MailingsConfig, start: datetime, end: datetime) -> set[datetime]:
    out = set()
    for tr in mc.trainings.dates:
        t = tr.start - timedelta(days=mc.trainings.announce_days_before)
        if start <= t < end:
            out.add(t)
    return out


__all__ = ["due", "seats_used", "seats_unused", "term", "times"]

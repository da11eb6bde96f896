"""Renewal notices: a series per term, to billing contacts, the amount from the plan.

When a billing contact bounces (workflows.delivery), its partner's primary contacts get the series
too, and each of their notices says why.

A partner's ``renews_on`` is the end of its current term. The series for that
term has one notice per offset (default 60, 30 and 7 days before, on the day,
and 14 days after as a lapse notice), each due at ``send_at`` local time.

After downtime only the latest due notice of a series goes out; the older ones
are recorded as skipped ("superseded"), never sent as a burst. Recording a
payment (``partners renew``) moves ``renews_on``: the old series is no longer
computed, and the runner records its remaining notices as skipped.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any, Mapping, Sequence

from ..delivery import DeliveryState, renewal_recipients
from ..model import Partner
from .types import MailingsConfig, local_day
from .due import Due, billing_contacts, billing_role, format_day, money


def occurrence(partner_id: str, term_end: date, offset: int) -> str:
    return f"{partner_id}/{term_end.isoformat()}/{offset}d"


def term_of_occurrence(occ: str) -> tuple[str, date, int]:
    pid, end, off = occ.rsplit("/", 2)
    return pid, date.fromisoformat(end), int(off.removesuffix("d"))


def describe(offset: int) -> str:
    if offset > 0:
        return f"{offset} days before the renewal date"
    if offset == 0:
        return "on the renewal date"
    return f"{-offset} days after the renewal date (lapse notice)"


def next_term_end(term_end: date) -> date:
    try:
        return term_end.replace(year=term_end.year + 1)
    except ValueError:  # February 29: a common year has none; the term ends on the last day of February
        return term_end.replace(year=term_end.year + 1, day=28)


def notice(partner: Partner, contact_email: str, contact_name: str, term_end: date, offset: int,
           mc: MailingsConfig, note: str = "") -> Due:
    """The notice as written at its due time; ``as_of`` restates it for when it is actually sent."""
    at = local_day(term_end - timedelta(days=offset), mc.renewals.send_at, mc.tz())
    amount = money(partner.yearly_fee)
    when = format_day(term_end)
    t = timing(term_end, amount, at, mc)
    return Due(
        mailing="renewal", occurrence=occurrence(partner.id, term_end, offset), recipient=contact_email,
        partner_id=partner.id, due_at=at, template="renewal_notice", subject=t.pop("subject"),
        why=f"renewal notice {describe(offset)} ({when}), {partner.plan} plan {amount}",
        context={
            "name": contact_name, "partner_name": partner.name, "partner_id": partner.id, "plan": partner.plan,
            "amount": amount, "renews_on": when, **t,
            "next_term_end": format_day(next_term_end(term_end)), "pay_url": mc.renewals.pay_url,
            "note": note,  # why a primary contact gets it too (the billing address bounces); "" usually
            "training_places": mc.trainings.included(partner.plan),
            # To whom the notice goes and why (no billing contact: the primary contact), and the plan's shape.
            "recipient_role": billing_role(partner), "recipients": len(billing_contacts(partner)),
            "solo": partner.plan == "solo",
        },
        record={"term_end": term_end.isoformat(), "offset": offset},
    )


def timing(term_end: date, amount: str, now: datetime, mc: MailingsConfig) -> dict[str, Any]:
    """What the notice says about time, as of when it is actually written: a notice sent late
    (the partner added mid-series, the daemon down) must not say "in 60 days" 33 days before."""
    left = (term_end - now.astimezone(mc.tz()).date()).days
    when = format_day(term_end)
    if left > 0:
        return {"days": left, "phase": "before", "subject": f"Your Open Atrium partnership renews on {when}: {amount}"}
    if left == 0:
        return {"days": 0, "phase": "today", "subject": f"Your Open Atrium partnership renews today: {amount}"}
    return {"days": -left, "phase": "lapsed", "subject": f"Your Open Atrium partnership lapsed on {when}"}


def as_of(d: Due, now: datetime, mc: MailingsConfig) -> Due:
    """Notice ``d`` with its subject, days and phase as of ``now`` (when it is sent or previewed)."""
    t = timing(date.fromisoformat(d.record["term_end"]), d.context["amount"], now, mc)
    return replace(d, subject=t.pop("subject"), context={**d.context, **t})


def series(partner: Partner, term_end: date, mc: MailingsConfig,
           delivery: Mapping[str, DeliveryState] | None = None) -> list[Due]:
    """Every notice of one term's series, to every billing contact (and, while one bounces, to the
    primary contacts too), oldest first."""
    if delivery:
        to = [(r.contact, r.note) for r in renewal_recipients(partner, delivery)]
    else:
        to = [(c, "") for c in billing_contacts(partner)]
    return sorted((notice(partner, c.email, c.name, term_end, off, mc, note)
                   for off in mc.renewals.offsets for c, note in to),
                  key=lambda d: (d.due_at, d.recipient))


def due(partners: Sequence[Partner], ledger: Mapping[str, Mapping[str, Any]], mc: MailingsConfig,
        now: datetime, delivery: Mapping[str, DeliveryState] | None = None) -> tuple[list[Due], list[Due]]:
    send: list[Due] = []
    skip: list[Due] = []
    today = now.astimezone(mc.tz()).date()
    for p in partners:
        if not p.active_on(today) or p.renews_on is None:
            continue
        by_recipient: dict[str, list[Due]] = {}
        for d in series(p, p.renews_on, mc, delivery):
            by_recipient.setdefault(d.recipient, []).append(d)
        for notices in by_recipient.values():
            due_now = [d for d in notices if d.due_at <= now]
            if not due_now:
                continue
            latest = due_now[-1]
            # A later notice already in the ledger (sent or skipped) supersedes anything older.
            newest_done = max((d.due_at for d in notices if d.key in ledger), default=None)
            for d in due_now:
                if d.key in ledger:
                    continue
                if d is latest and (newest_done is None or newest_done < d.due_at):
                    send.append(as_of(d, now, mc))  # a late notice states the real number of days
                else:
                    newer = describe(latest.record["offset"]) if d is not latest else "a later one"
                    skip.append(d.skipped(f"superseded by the notice {newer}: after downtime only the "
                                          f"latest due notice of a series goes out"))
    return send, skip


def stop_series(partner: Partner, old_end: date, ledger: Mapping[str, Mapping[str, Any]], mc: MailingsConfig,
                paid_on: date, new_end: date) -> list[Due]:
    """The old term's notices not yet decided, as skips: a payment was recorded."""
    return [d.skipped(f"renewal recorded on {paid_on.isoformat()} (paid until {new_end.isoformat()}); "
                      f"the series for the term ending {old_end.isoformat()} stopped")
            for d in series(partner, old_end, mc) if d.key not in ledger]


def times(partners: Sequence[Partner], mc: MailingsConfig, start: datetime, end: datetime) -> set[datetime]:
    out = set()
    for p in partners:
        if p.active_on(start.astimezone(mc.tz()).date()) and p.renews_on is not None:
            for off in mc.renewals.offsets:
                t = local_day(p.renews_on - timedelta(days=off), mc.renewals.send_at, mc.tz())
                if start <= t < end:
                    out.add(t)
    return out

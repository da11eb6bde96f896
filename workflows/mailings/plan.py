"""What scheduled mail is due now, and what a period of the program would send.

``due_mailings(partners, ledger, config, now)`` is the whole decision: pure, from
the roster's partners, the ledger (what was already queued or skipped) and
``now``. The `schedule` library only triggers ticks; a tick after downtime
computes the same answer a tick on time would have, minus what has gone stale
(recorded as skips).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

from ..delivery import DeliveryState, mailing_skip_reason
from ..model import FROZEN, Partner
from ..trainings.model import TrainingInputs
from . import calls, renewals, trainings, welcome
from .types import MailingsConfig
from .due import Due, format_when
from ..trainings.preview import preview as training_preview
from ..trainings.schedule import training_dates

KIND_GROUPS = {
    "calls": ("call-invite", "call-update", "call-cancel", "call-reminder"),
    "renewals": ("renewal",),
    "trainings": ("training-announcement", "training-refresher", "training-confirmed", "training-waitlisted",
                  "training-held", "training-approval", "training-declined", "training-promoted",
                  "training-cancelled", "training-receipt", "training-reminder", "training-update",
                  "training-cancel", "training-attendance", "training-seat"),
    "welcome": ("welcome",),
}


def due_mailings(partners: Sequence[Partner], ledger: Mapping[str, Mapping[str, Any]], config: MailingsConfig, now: datetime, *,
                 welcome_requests: Mapping[str, datetime] | None = None,
                 unsubscribed: frozenset[str] = frozenset(),
                 only: str | None = None,
                 delivery: Mapping[str, DeliveryState] | None = None,
                 trainings_in: TrainingInputs = TrainingInputs()) -> tuple[list[Due], list[Due]]:
    """(to_send, to_skip): mails due at ``now`` whose ledger keys are not in ``ledger``.

    ``unsubscribed`` holds "list:address" strings; ``only`` limits to one mailing name or group;
    ``trainings_in``: the registrations, staff and promise the training mail needs.
    ``delivery``: contacts' delivery states; a bouncing contact gets renewal notices (and its partner's
    primary contact too), and every other mailing skips it, the skip recorded with the reason.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    send: list[Due] = []
    skip: list[Due] = []
    parts = []
    if "calls" in config.enabled:
        parts.append(calls.due(partners, ledger, config, now, unsubscribed))
    if "renewals" in config.enabled:
        parts.append(renewals.due(partners, ledger, config, now, delivery))
    if "trainings" in config.enabled:
        parts.append(trainings.due(partners, ledger, config, now, unsubscribed, trainings_in))
    if "welcome" in config.enabled:
        parts.append(welcome.due(partners, ledger, config, now, welcome_requests or {}))
    for s, k in parts:
        send += s
        skip += k
    if delivery:
        bouncing = [(d, mailing_skip_reason(delivery.get(d.recipient))) for d in send if d.mailing != "renewal"]
        skip += [d.skipped(why) for d, why in bouncing if why]
        dropped = {d.key for d, why in bouncing if why}
        send = [d for d in send if d.key not in dropped]
    if only:
        wanted = set(KIND_GROUPS.get(only, (only,)))
        send = [d for d in send if d.mailing in wanted]
        skip = [d for d in skip if d.mailing in wanted]
    # One decision per key, even if two rules produced it.
    seen: set[str] = set()
    send = [d for d in sorted(send, key=lambda d: (d.due_at, d.mailing, d.recipient))
            if not (d.key in seen or seen.add(d.key))]  # type: ignore[func-returns-value]
    skip = [d for d in sorted(skip, key=lambda d: (d.due_at, d.mailing, d.recipient))
            if not (d.key in seen or seen.add(d.key))]  # type: ignore[func-returns-value]
    return send, skip


@dataclass(**FROZEN)
class PlannedStep:
    at: datetime  # when the tick would decide it
    due: Due
    sent: bool


def simulate(partners: Sequence[Partner], ledger: Mapping[str, Mapping[str, Any]], config: MailingsConfig, start: datetime,
             end: datetime, *, welcome_requests: Mapping[str, datetime] | None = None,
             unsubscribed: frozenset[str] = frozenset(),
             delivery: Mapping[str, DeliveryState] | None = None,
             trainings_in: TrainingInputs = TrainingInputs()) -> list[PlannedStep]:
    """Every mail that would go out (and every skip) between start and end, if the daemon ran throughout.

    Ticks at ``start`` (catch-up) and at every moment something becomes due; the
    simulated ledger assumes each queued mail is sent.
    """
    moments = {start}
    if "calls" in config.enabled:
        moments |= calls.times(config, start, end)
    if "renewals" in config.enabled:
        moments |= renewals.times(partners, config, start, end)
    if "trainings" in config.enabled:
        moments |= trainings.times(config, start, end, trainings_in)
    for at in (welcome_requests or {}).values():
        if start <= at < end:
            moments.add(at)
    if end <= start:
        raise ValueError(f"the window ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    sim: dict[str, Mapping[str, Any]] = dict(ledger)
    steps: list[PlannedStep] = []
    held: set[str] = set()  # held skips are decided again at every tick: shown once, at the first
    for now in sorted(moments):
        send, skip = due_mailings(partners, sim, config, now, welcome_requests=welcome_requests,
                                  unsubscribed=unsubscribed, delivery=delivery, trainings_in=trainings_in)
        for d in send:
            sim[d.key] = d.ledger_record("queued", now)
            steps.append(PlannedStep(at=now, due=d, sent=True))
        for d in skip:
            if d.held:
                if d.key in held:
                    continue
                held.add(d.key)
            else:
                sim[d.key] = d.ledger_record("skipped", now)
            steps.append(PlannedStep(at=now, due=d, sent=False))
    return steps


def preview(name: str, partner: Partner, config: MailingsConfig, now: datetime) -> Due:
    """One mail of mailing ``name`` for ``partner``'s first fitting contact, as it would be at ``now``.

    Ignores the ledger: for looking at a mail, not for sending it.
    """
    contact = partner.contacts[0] if partner.contacts else None
    if contact is None:
        raise ValueError(f"partner {partner.id} has no contacts to address a preview to")
    if name == "welcome":
        return welcome.mail(partner, contact.email, contact.name, config, now)
    if name == "renewal":
        if partner.renews_on is None:
            raise ValueError(f"partner {partner.id} has no renewal date")
        notices = renewals.series(partner, partner.renews_on, config)
        past = [d for d in notices if d.due_at <= now]
        return renewals.as_of(past[-1] if past else notices[0], now, config)
    if name in KIND_GROUPS["calls"]:
        upcoming = calls.call_dates(config.calls, now, now + timedelta(days=400))
        if not upcoming:
            raise ValueError("no call is configured after that date; add [calls] dates or an rrule")
        call = upcoming[0]
        fake_now = call.start - timedelta(days=config.calls.reminder_days_before, minutes=-1) \
            if name == "call-reminder" else call.start - timedelta(days=config.calls.invite_days_before)
        ledger: dict[str, Mapping[str, Any]] = {}
        if name in ("call-update", "call-cancel", "call-reminder"):
            # Pretend the invitation went out, for the same call an hour earlier (update) or as it is.
            was = call.start - timedelta(hours=1) if name == "call-update" else call.start
            ledger["x"] = {"status": "queued", "mailing": "call-invite", "call_id": call.id,
                           "recipient": contact.email, "start": was.isoformat(), "sequence": 0,
                           "method": "REQUEST", "partner_id": partner.id}
        if name == "call-cancel":
            config = _without_call(config, call.id)
        send, _ = calls.due([_only(partner, contact.email)], ledger, config, fake_now)
        found = [d for d in send if d.mailing == name]
        if not found:
            raise ValueError(f"could not build a {name} preview for {partner.id}")
        return found[0]
    if name in KIND_GROUPS["trainings"][2:]:
        return training_preview(name, partner, config, now)
    if name in KIND_GROUPS["trainings"]:
        courses = training_dates(config.trainings, now, now + timedelta(days=800))
        if not courses:
            raise ValueError("no training is configured after that date; add [trainings] rrule/first or "
                             "[[trainings.dates]]")
        tr = courses[0]
        fake_now = tr.start - timedelta(days=config.trainings.announce_days_before)
        send, _ = trainings.due([partner], {}, config, fake_now)
        found = [d for d in send if d.mailing == name]
        if not found:
            raise ValueError(f"{partner.id} would get no {name} for {tr.id} (seats used, or nobody due a refresher)")
        return found[0]
    raise ValueError(f"unknown mailing {name!r}; known: {', '.join(sorted(set(sum(KIND_GROUPS.values(), ()))))}")


def _only(partner: Partner, email: str) -> Partner:
    return replace(partner, contacts=tuple(c for c in partner.contacts if c.email == email))


def _without_call(config: MailingsConfig, call_id: str) -> MailingsConfig:
    return replace(config, calls=replace(config.calls, cancelled=config.calls.cancelled | {call_id},
                                         dates=tuple(d for d in config.calls.dates if d.id != call_id)))


def describe_step(step: PlannedStep, tz: Any) -> str:
    d = step.due
    head = f"{format_when(step.at, tz):<40} {d.mailing:<22} {d.recipient:<34}"
    # A skip names what it skips: several notices of one series skipped at once are distinct rows.
    return f"{head} {d.why}" if step.sent else f"{head} SKIP {d.why}: {d.reason}"

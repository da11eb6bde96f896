"""`mailings preview training-...`: one registrant mail for a partner's first contact, from made-up state.

Ignores the real registrations and ledger: for looking at a mail, not for sending it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from ..mailings.due import Due, ledger_key
from ..mailings.types import MailingsConfig
from ..model import Partner
from . import notices, schedule
from .model import Registration, Seat, Status, TrainingInputs

STAFF = "staff@example.org"
_PATHS = {  # mailing -> the statuses its registration went through
    "training-confirmed": (Status.CONFIRMED,), "training-waitlisted": (Status.WAITLISTED,),
    "training-held": (Status.HELD,), "training-approval": (Status.HELD,),
    "training-declined": (Status.HELD, Status.DECLINED), "training-promoted": (Status.WAITLISTED, Status.CONFIRMED),
    "training-cancelled": (Status.CONFIRMED, Status.CANCELLED), "training-receipt": (Status.CONFIRMED,),
    "training-reminder": (Status.CONFIRMED,), "training-update": (Status.CONFIRMED,),
    "training-cancel": (Status.CONFIRMED,), "training-attendance": (Status.CONFIRMED,),
    "training-seat": (Status.CONFIRMED, Status.ATTENDED),
}


def preview(name: str, partner: Partner, config: MailingsConfig, now: datetime) -> Due:
    if name not in _PATHS:
        raise ValueError(f"no preview for {name!r}")
    upcoming = schedule.training_dates(config.trainings, now, now + timedelta(days=800))
    if not upcoming:
        raise ValueError("no training is configured after that date; add [trainings] rrule/first or "
                         "[[trainings.dates]]")
    if not partner.contacts:
        raise ValueError(f"partner {partner.id} has no contacts to address a preview to")
    t = upcoming[0]
    c = partner.contacts[0]
    asked = t.start - timedelta(days=20)
    reg = Registration(training_id=t.id, address=c.email, partner_id=partner.id, name=c.name, requested_at=asked,
                       registered_by=c.email)
    via = "staff-mail" if name in ("training-declined",) else "reply"
    for i, status in enumerate(_PATHS[name]):
        reg = reg.moved(status, Seat.EXTRA if Status.HELD in _PATHS[name] else Seat.INCLUDED, asked + timedelta(hours=i),
                        by=STAFF if i and via == "staff-mail" else c.email, via=via if i else "reply",
                        message_id="<preview@example.org>", note="(the reason staff give)" if status is Status.DECLINED
                        else "")
    if name == "training-receipt":
        reg = replace(reg, address="colleague@" + c.email.rpartition("@")[2], name="A Colleague")
    at = asked + timedelta(hours=3)
    ledger: dict[str, Any] = {}
    cfg = config
    if name == "training-reminder":
        at = t.start - timedelta(days=max(1, config.trainings.reminder_days_before))
    if name in ("training-update", "training-cancel", "training-cancelled"):
        was = t.start - timedelta(hours=1) if name == "training-update" else t.start
        # As if the confirmation went out (for the course as it was).
        ledger[ledger_key("training-confirmed", f"{t.id}/{c.email}/0", c.email)] = {
            "status": "queued", "mailing": "training-confirmed", "training_id": t.id, "recipient": c.email,
            "start": was.isoformat(), "end": t.ends.isoformat(), "place": t.place, "sequence": 0, "method": "REQUEST",
            "at": asked.isoformat()}
        if name == "training-cancel":
            cfg = replace(config, trainings=replace(config.trainings, cancelled=config.trainings.cancelled | {t.id},
                                                    dates=tuple(d for d in config.trainings.dates if d.id != t.id)))
    elif name in ("training-attendance", "training-seat"):
        at = t.ends + timedelta(hours=1)
        if name == "training-seat":
            reg = replace(reg, attended_on=t.ends.date())
    send, _ = notices.due([partner], ledger, cfg, at, TrainingInputs(registrations=(reg,), staff=(STAFF,),
                                                                     promise="a reply within 24 hours on business days",
                                                                     support_address="support@example.org"))
    found = [d for d in send if d.mailing == name]
    if not found:
        raise ValueError(f"could not build a {name} preview for {partner.id}")
    return found[0]

"""Roster use cases shared by the command line and the tests: import a sheet, record a payment, a training.

Each is one store transaction; the rules they apply (how a sheet merges, which renewal notices a
payment stops) are pure functions in workflows/.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Callable

from workflows.mailings import renewals
from workflows.mailings.due import Due, ledger_key, outbox_key
from workflows.mailings.types import MailingsConfig
from workflows.model import FROZEN, Contact, Partner
from workflows.outbox import Status
from workflows.errors import BadInput
from workflows.roster import ImportPlan, RosterImport, plan_import

from .automatic import roster_changed
from .ports import Store


@dataclass(**FROZEN)
class Imported:
    plan: ImportPlan  # what changed (or, not applied, would change)
    applied: bool
    notes: tuple[str, ...]  # what the merge kept against the sheet, for people

    @property
    def added(self) -> tuple[str, ...]:
        return self.plan.added


def import_roster(store: Store, sheet: RosterImport, now: datetime, *, today: date | None = None,
                  sync: bool = False, apply: bool = True, step: Callable[[int], None] | None = None) -> Imported:
    """Upsert the sheet's partners (``sync``: also remove contacts and deactivate partners it lacks), in
    one transaction; ``apply`` False only works out the plan. A partner new to the roster gets a welcome
    mail at the next cycle. Removed contacts are logged; their threads and ledger entries stay."""
    today = today or now.date()
    with store.transaction():
        stored = store.partners()
        plan = plan_import(stored, sheet, sync=sync, today=today)
        result = {p.id: p for p in stored} | {p.id: p for p in plan.save}
        notes = [f"{s.id}: kept renewal date {p.renews_on} (recorded payment); the sheet says "
                 f"{s.renews_on or 'nothing'}" for s in sheet.partners
                 if (p := result.get(s.id)) is not None and p.renews_on != s.renews_on]
        before = {p.id: p for p in stored}
        if apply:
            for p in plan.save:
                store.save_partner(p)
                for address in roster_changed(store, before.get(p.id), p, now):  # a fixed contact starts afresh
                    notes.append(f"{address}: delivery state cleared (the roster row changed)")
                if step is not None:  # a progress bar's tick, for people watching a large import
                    step(len(p.contacts) or 1)
            for pid in plan.added:
                store.request_welcome(pid, now)
            for pid, c in plan.removed:
                store.record_roster_change(now, {"change": "contact removed", "partner_id": pid, "by": "import --sync",
                                                 "contact": _contact_record(c)})
            for pid in plan.deactivated:
                store.record_roster_change(now, {"change": "partner deactivated", "partner_id": pid,
                                                 "by": "import --sync", "on": today.isoformat()})
    return Imported(plan=plan, applied=apply, notes=tuple(notes))


def _contact_record(c: Contact) -> dict[str, object]:
    return {"name": c.name, "email": c.email, "roles": sorted(c.roles),
            "trained_on": c.trained_on.isoformat() if c.trained_on else None}


def deactivate(store: Store, partner_id: str, on: date, now: datetime) -> Partner:
    """Out of the program from ``on`` (today or later: planned ahead). KeyError if there is no such partner."""
    with store.transaction():
        p = store.partner(partner_id)
        if p is None:
            raise KeyError(partner_id)
        p = replace(p, deactivated_on=on)
        store.save_partner(p)
        store.record_roster_change(now, {"change": "partner deactivated", "partner_id": p.id, "by": "deactivate",
                                         "on": on.isoformat()})
    return p


def reactivate(store: Store, partner_id: str, now: datetime) -> Partner:
    with store.transaction():
        p = store.partner(partner_id)
        if p is None:
            raise KeyError(partner_id)
        p = replace(p, deactivated_on=None, active=True)
        store.save_partner(p)
        store.record_roster_change(now, {"change": "partner reactivated", "partner_id": p.id, "by": "reactivate"})
    return p


def remove_contact(store: Store, address: str, now: datetime, partner_id: str | None = None) -> Partner:
    """Take ``address`` off the roster (of ``partner_id`` if given). Its threads and ledger entries stay.

    KeyError if no partner lists it; BadInput if several do and ``partner_id`` does not say which.
    """
    address = address.strip().lower()
    with store.transaction():
        owners = [p for p in store.partners() if any(c.email == address for c in p.contacts)
                  and (partner_id is None or p.id == partner_id)]
        if not owners:
            raise KeyError(address)
        if len(owners) > 1:
            raise BadInput(f"{address} is a contact of {' and '.join(p.id for p in owners)}; say which with "
                           f"--partner ID")
        p = owners[0]
        gone = next(c for c in p.contacts if c.email == address)
        p = replace(p, contacts=tuple(c for c in p.contacts if c.email != address))
        store.save_partner(p)
        store.record_roster_change(now, {"change": "contact removed", "partner_id": p.id, "by": "remove-contact",
                                         "contact": _contact_record(gone)})
    return p


def record_renewal(store: Store, config: MailingsConfig, partner_id: str, until: date,
                   now: datetime) -> tuple[Partner, list[Due], int]:
    """Record a payment: the old term's series stops (remaining notices skipped, queued ones cancelled).

    Returns the partner, the notices stopped and how many queued ones were cancelled; KeyError if
    there is no such partner.
    """
    with store.transaction():
        p = store.partner(partner_id)
        if p is None:
            raise KeyError(partner_id)
        old_end = p.renews_on
        stopped: list[Due] = []
        cancelled = 0
        if old_end is not None and old_end != until:
            ledger = {e["key"]: e for e in store.ledger_all()}
            stopped = renewals.stop_series(p, old_end, ledger, config, now.date(), until)
            for d in stopped:
                store.record_ledger(d.key, d.ledger_record("skipped", now))
            prefix = outbox_key(ledger_key("renewal", f"{p.id}/{old_end.isoformat()}/", ""))[:-1]
            for e in store.outbox(Status.PENDING):
                if e.key.startswith(prefix):
                    store.outbox_save(e.cancel(f"renewal recorded; paid until {until.isoformat()}", now))
                    cancelled += 1
        p = replace(p, renews_on=until, active=True, deactivated_on=None)
        store.save_partner(p)
        store.record_payment(p.id, at=now, old_term_end=old_end, paid_until=until, plan=p.plan, amount=p.yearly_fee)
    return p, stopped, cancelled


def record_training(store: Store, address: str, on: date) -> Partner:
    """``address`` completed a training on ``on``: that uses a seat of the term and grants a channel seat.

    KeyError if the address is no partner's contact.
    """
    address = address.strip().lower()
    with store.transaction():
        owners = [p for p in store.partners() if any(c.email == address for c in p.contacts)]
        if len(owners) > 1:  # a store from before duplicates were refused: do not pick one at random
            raise BadInput(f"{address} is a contact of both {' and '.join(p.id for p in owners)}; remove it from "
                           f"one first (`partners remove-contact {address} --partner ID`)")
        for p in owners:
            p = replace(p, contacts=tuple(replace(c, trained_on=on) if c.email == address else c
                                          for c in p.contacts))
            store.save_partner(p)
            return p
    raise KeyError(address)

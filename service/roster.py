"""Roster use cases shared by the command line and the tests: import a sheet, record a payment, a training.

Each is one store transaction; the rules they apply (how a sheet merges, which renewal notices a
payment stops) are pure functions in workflows/.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime

from workflows.mailings import renewals
from workflows.mailings.due import Due, ledger_key, outbox_key
from workflows.mailings.types import MailingsConfig
from workflows.model import FROZEN, Partner
from workflows.outbox import Status
from workflows.roster import RosterImport, merge

from .ports import Store


@dataclass(**FROZEN)
class Imported:
    partners: tuple[Partner, ...]  # as stored after the merge
    added: tuple[str, ...]  # ids of partners new to the roster (a welcome mail is due for each)
    notes: tuple[str, ...]  # what the merge kept against the sheet, for people


def import_roster(store: Store, sheet: RosterImport, now: datetime) -> Imported:
    """Upsert the sheet's partners; a partner new to the roster gets a welcome mail at the next cycle."""
    stored, added, notes = [], [], []
    with store.transaction():
        for p in sheet.partners:
            old = store.partner(p.id)
            merged = merge(old, p)
            store.save_partner(merged)
            stored.append(merged)
            if merged.renews_on != p.renews_on:
                notes.append(f"{p.id}: kept renewal date {merged.renews_on} (recorded payment); the sheet says "
                             f"{p.renews_on or 'nothing'}")
            if old is None:
                store.request_welcome(p.id, now)
                added.append(p.id)
    return Imported(partners=tuple(stored), added=tuple(added), notes=tuple(notes))


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
        p = replace(p, renews_on=until, active=True)
        store.save_partner(p)
        store.record_payment(p.id, at=now, old_term_end=old_end, paid_until=until, plan=p.plan, amount=p.yearly_fee)
    return p, stopped, cancelled


def record_training(store: Store, address: str, on: date) -> Partner:
    """``address`` completed a training on ``on``: that uses a seat of the term and grants a channel seat.

    KeyError if the address is no partner's contact.
    """
    address = address.strip().lower()
    with store.transaction():
        for p in store.partners():
            if any(c.email == address for c in p.contacts):
                p = replace(p, contacts=tuple(replace(c, trained_on=on) if c.email == address else c
                                              for c in p.contacts))
                store.save_partner(p)
                return p
    raise KeyError(address)

"""Trainings against the store: register, cancel, approve or decline, record attendance, settle the waitlist.

The rules (which seat, confirmed / held / waitlisted, who is promoted) are pure, in workflows/trainings/;
this module applies them in store transactions and records each change as an event of the registration.
It sends nothing itself: the mail each change calls for is planned from the registrations by the
mailings tick (workflows/trainings/notices.py), through the ledger, exactly once. The CLI, the
interceptor for mail (service/training_mail.py) and the tests share these use cases.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any, Iterable, Sequence

from workflows.errors import BadInput
from workflows.mailings.types import MailingsConfig, TrainingDate
from workflows.model import Contact, Partner
from workflows.outbox import OutboxEntry
from workflows.trainings import schedule, seats
from workflows.trainings.model import Registration, Seat, Status

from .ports import Store
from .report import CycleReport

log = logging.getLogger("partnerdesk.trainings")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one request did for one person, for the CLI and the confirmations to staff."""

    address: str
    ok: bool  # False: nothing changed for this person (see ``text``)
    text: str
    status: str = ""


class Trainings:
    """The training use cases on one store. ``config``: the mailings config (its [trainings] table)."""

    def __init__(self, *, store: Store, config: MailingsConfig) -> None:
        self.store = store
        self.config = config
        self.tz = config.tz()

    # -- looking things up --------------------------------------------------------------------------------------
    def course(self, training_id: str) -> TrainingDate:
        t = schedule.find(self.config.trainings, training_id)
        if t is None:
            raise BadInput(f"no training {training_id!r} in the calendar; see `trainings list`")
        return t

    def courses(self, now: datetime, *also: TrainingDate) -> dict[str, TrainingDate]:
        known = schedule.known(self.config.trainings, now)
        for t in also:
            known[t.id] = t
        for r in self.store.registrations():  # courses further away that registrations still name
            if r.training_id not in known and (found := schedule.find(self.config.trainings, r.training_id)):
                known[found.id] = found
        return known

    def _roster(self) -> tuple[dict[str, Partner], dict[str, tuple[Partner, Contact]]]:
        partners = {p.id: p for p in self.store.partners()}
        contacts = {c.email: (p, c) for p in partners.values() if p.active for c in p.contacts}
        return partners, contacts

    # -- registering ----------------------------------------------------------------------------------------------
    def register(self, training_id: str, people: Sequence[tuple[str, str]], *, by: str, via: str, now: datetime,
                 partner_id: str = "", message_id: str = "", approve: bool = False) -> list[Outcome]:
        """Register ``people`` ((address, name) pairs) for a course that has not started.

        An address that is on no partner's roster is added as a contact of ``partner_id`` (the writer's
        partner); without one it is refused. ``approve``: staff place it past the included places.
        """
        t = self.course(training_id)
        if t.start <= now:
            raise BadInput(f"{t.id} started on {t.start.astimezone(self.tz):%Y-%m-%d %H:%M}: registration is closed")
        out = []
        with self.store.transaction():
            partners, contacts = self._roster()
            courses = self.courses(now, t)
            regs = self.store.registrations()
            for address, name in people:
                address = address.strip().lower()
                found = contacts.get(address)
                if found is None:
                    p = partners.get(partner_id)
                    if p is None:
                        out.append(Outcome(address, False, "not a contact of any partner; add it with `partners "
                                                           "import`, or register it from a partner's mail"))
                        continue
                    c = Contact(partner_id=p.id, name=name, email=address)
                    p = replace(p, contacts=p.contacts + (c,))
                    self.store.save_partner(p)
                    partners[p.id] = p
                    contacts[address] = (p, c)
                    log.info("%s added to the roster of %s (registered for %s by %s)", address, p.id, t.id, by)
                    added = f" (added to {p.name}'s contacts)"
                else:
                    p, c = found
                    added = ""
                    if partner_id and p.id != partner_id:
                        out.append(Outcome(address, False, f"a contact of another partner ({p.id})"))
                        continue
                old = self.store.registration(t.id, address)
                if old is not None and (old.live or old.status is Status.ATTENDED):
                    out.append(Outcome(address, False, f"already registered ({old.status})", str(old.status)))
                    continue
                placed = seats.place(partner=p, address=address, trained=c.trained_on is not None, training=t,
                                     regs=regs, trainings=courses, cfg=self.config.trainings, now=now, tz=self.tz,
                                     approved=approve)
                base = old or Registration(training_id=t.id, address=address, partner_id=p.id, requested_at=now)
                reg = base.moved(placed.status, placed.seat, now, by=by, via=via, note=placed.note,
                                 message_id=message_id, requested_at=now, registered_by=by, partner_id=p.id,
                                 name=name or c.name or base.name)
                self.store.save_registration(reg)
                regs = [r for r in regs if r.key != reg.key] + [reg]
                out.append(Outcome(address, True, f"{placed.status}: {placed.note}{added}", str(placed.status)))
            self.settle(now)
        return out

    def cancel(self, training_id: str, addresses: Iterable[str], *, by: str, via: str, now: datetime,
               message_id: str = "") -> list[Outcome]:
        """Cancel live registrations: the place goes to the waitlist, an included place back to the partner."""
        out = []
        with self.store.transaction():
            for address in addresses:
                address = address.strip().lower()
                reg = self.store.registration(training_id, address)
                if reg is None or not reg.live:
                    out.append(Outcome(address, False, f"not registered for {training_id}"
                                       + (f" ({reg.status})" if reg else ""), str(reg.status) if reg else ""))
                    continue
                self.store.save_registration(reg.moved(Status.CANCELLED, reg.seat, now, by=by, via=via,
                                                       note=f"cancelled (was {reg.status})", message_id=message_id))
                out.append(Outcome(address, True, f"cancelled (was {reg.status})", str(Status.CANCELLED)))
            self.settle(now)
        return out

    def decide(self, training_id: str, address: str, *, approve: bool, by: str, via: str, now: datetime,
               note: str = "", message_id: str = "") -> Outcome:
        """Staff decide a held registration: an extra place (then confirmed or waitlisted), or declined."""
        address = address.strip().lower()
        with self.store.transaction():
            reg = self.store.registration(training_id, address)
            if reg is None:
                return Outcome(address, False, f"no registration of {address} for {training_id}")
            if reg.status is not Status.HELD:
                return Outcome(address, False, f"not waiting for a decision: it is {reg.status}", str(reg.status))
            if not approve:
                self.store.save_registration(reg.moved(Status.DECLINED, reg.seat, now, by=by, via=via,
                                                       note=note, message_id=message_id))
                self.settle(now)
                return Outcome(address, True, "declined" + (f" ({note})" if note else ""), str(Status.DECLINED))
            t = self.course(training_id)
            if t.start <= now:
                return Outcome(address, False, f"{t.id} has started; too late for a place", str(reg.status))
            partners, contacts = self._roster()
            p = partners.get(reg.partner_id)
            c = contacts.get(address, (None, None))[1]
            if p is None:
                return Outcome(address, False, f"partner {reg.partner_id} is no longer on the roster")
            placed = seats.place(partner=p, address=address, trained=c is not None and c.trained_on is not None,
                                 training=t, regs=self.store.registrations(), trainings=self.courses(now, t),
                                 cfg=self.config.trainings, now=now, tz=self.tz, approved=True)
            self.store.save_registration(reg.moved(placed.status, placed.seat, now, by=by, via=via,
                                                   note=f"approved by {by}: {placed.note}", message_id=message_id))
            self.settle(now)
        return Outcome(address, True, f"approved: {placed.status} ({placed.note})", str(placed.status))

    # -- attendance -------------------------------------------------------------------------------------------------
    def last_day(self, t: TrainingDate) -> date:
        return t.ends.astimezone(self.tz).date()

    def attended(self, training_id: str, addresses: Iterable[str] | None, *, by: str, via: str,
                 now: datetime) -> list[Outcome]:
        """They completed the course (``addresses`` None: everyone confirmed). Sets the contact's training
        date, which grants the seat in the support channel; the seat mail follows from the next tick."""
        t = self.course(training_id)
        day = self.last_day(t)
        if now.astimezone(self.tz).date() < day:
            raise BadInput(f"{t.id} ends on {day.isoformat()}; record attendance from its last day on")
        out = []
        with self.store.transaction():
            partners, contacts = self._roster()
            if addresses is None:
                addresses = [r.address for r in self.store.registrations(t.id) if r.status is Status.CONFIRMED]
            for address in addresses:
                address = address.strip().lower()
                found = contacts.get(address)
                if found is None:
                    out.append(Outcome(address, False, "not a contact of any partner; add it with `partners import`"))
                    continue
                p, c = found
                reg = self.store.registration(t.id, address)
                if reg is not None and reg.status is Status.ATTENDED:
                    out.append(Outcome(address, False, "already recorded as attended", str(reg.status)))
                    continue
                if reg is None:  # a walk-in: placed as staff would (past the included places: an extra one)
                    placed = seats.place(partner=p, address=address, trained=c.trained_on is not None, training=t,
                                         regs=self.store.registrations(), trainings=self.courses(now, t),
                                         cfg=self.config.trainings, now=now, tz=self.tz, approved=True)
                    reg = Registration(training_id=t.id, address=address, partner_id=p.id, name=c.name,
                                       seat=placed.seat, requested_at=now, registered_by=by)
                seat = Seat.EXTRA if reg.status is Status.HELD else reg.seat
                reg = reg.moved(Status.ATTENDED, seat, now, by=by, via=via, note=f"attended (was {reg.status})",
                                attended_on=day, trained_before=c.trained_on)
                self.store.save_registration(reg)
                if c.trained_on is None or c.trained_on < day:
                    self._set_trained(p.id, address, day)
                seat_words = "now holds a seat in the support channel" if c.trained_on is None else \
                    f"held a seat already (trained {c.trained_on.isoformat()}); training date now {day.isoformat()}"
                out.append(Outcome(address, True, f"attended: {seat_words}", str(Status.ATTENDED)))
            self.settle(now)
        return out

    def absent(self, training_id: str, addresses: Iterable[str], *, by: str, via: str, now: datetime) -> list[Outcome]:
        """A no-show: the included place is free again for a later course this term. Undoes an attendance
        recorded by mistake (the contact's training date goes back to what it was)."""
        t = self.course(training_id)
        out = []
        with self.store.transaction():
            partners, contacts = self._roster()
            for address in addresses:
                address = address.strip().lower()
                reg = self.store.registration(t.id, address)
                if reg is None or reg.status not in (Status.CONFIRMED, Status.ATTENDED):
                    out.append(Outcome(address, False, "no confirmed place to mark absent"
                                       + (f" ({reg.status})" if reg else ""), str(reg.status) if reg else ""))
                    continue
                if reg.status is Status.ATTENDED and address in contacts:
                    p, c = contacts[address]
                    if c.trained_on == reg.attended_on:
                        self._set_trained(p.id, address, reg.trained_before)
                self.store.save_registration(reg.moved(Status.ABSENT, reg.seat, now, by=by, via=via,
                                                       note=f"did not attend (was {reg.status})",
                                                       attended_on=None))
                out.append(Outcome(address, True, "absent: the included place is free for a later course this term",
                                   str(Status.ABSENT)))
            self.settle(now)
        return out

    def _set_trained(self, partner_id: str, address: str, day: date | None) -> None:
        """The contact's training date (it grants the seat), on the partner as stored now (not a copy read
        before another contact of the same partner was changed)."""
        p = self.store.partner(partner_id)
        if p is not None:
            self.store.save_partner(replace(p, contacts=tuple(replace(x, trained_on=day) if x.email == address
                                                              else x for x in p.contacts)))

    # -- places freed: held registrations placed, the waitlist promoted -----------------------------------------------
    def settle(self, now: datetime, report: CycleReport | None = None) -> int:
        """Apply the promotions the rules find (a cancellation, a raised capacity...). Call inside a
        transaction, or alone (the mailings tick calls it first, so its mail goes out in the same cycle)."""
        with self.store.transaction():
            regs = self.store.registrations()
            if not any(r.live for r in regs):
                return 0
            partners = {p.id: p for p in self.store.partners()}
            changed = seats.settle(regs, partners, self.courses(now), self.config.trainings, now, self.tz)
            for r in changed:
                self.store.save_registration(r)
                log.info("%s for %s: %s (%s)", r.address, r.training_id, r.status, r.last.note if r.last else "")
        if report is not None and changed:
            report.counts["training_promotions"] += len(changed)
        return len(changed)

    def tick(self, now: datetime, report: CycleReport) -> None:
        self.settle(now, report)

    # -- send-time check ----------------------------------------------------------------------------------------------
    def cancel_reason(self, entry: OutboxEntry) -> str | None:
        """A reminder for a place given up, or an approval request decided, while it sat in the outbox."""
        if entry.kind not in ("training-reminder", "training-approval") or not entry.key.startswith("mailing:"):
            return None
        _, occ, rcpt = entry.key.removeprefix("mailing:").split("|", 2)
        if entry.kind == "training-reminder":
            tid, address = occ.split("@", 1)[0], rcpt
        else:
            tid, address = occ.split("/")[0], occ.split("/")[1]
        reg = self.store.registration(tid, address)
        wanted = Status.CONFIRMED if entry.kind == "training-reminder" else Status.HELD
        if reg is None or reg.status is not wanted:
            return f"the registration of {address} for {tid} is {reg.status if reg else 'gone'} now"
        return None

    # -- what staff see ------------------------------------------------------------------------------------------------
    def overview(self, t: TrainingDate, now: datetime) -> Overview:
        """Everything `trainings show` prints, as data."""
        regs = self.store.registrations(t.id)
        partners = {p.id: p for p in self.store.partners()}
        courses = self.courses(now, t)
        everyone = self.store.registrations()
        day = t.start.astimezone(self.tz).date()
        places = {}
        for pid in sorted({r.partner_id for r in regs}):
            p = partners.get(pid)
            if p is None:
                continue
            first, last = seats.term_of(p, day)
            users = seats.included_users(p, everyone, courses, day, now, self.tz)
            places[pid] = {"partner": p.name, "plan": p.plan, "included": self.config.trainings.included(p.plan),
                           "taken": sorted(users), "term": f"{first.isoformat()} to {last.isoformat()}"}
        return Overview(registrations=regs, waitlist=seats.waitlist(regs, t.id), confirmed=seats.confirmed(regs, t.id),
                        places=places, ended=t.ends <= now)


@dataclass(frozen=True, slots=True)
class Overview:
    registrations: list[Registration]
    waitlist: list[Registration]  # in order
    confirmed: int
    places: dict[str, dict[str, Any]]  # partner id -> its included places in the course's term
    ended: bool

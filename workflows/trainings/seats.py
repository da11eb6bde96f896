"""Included places, capacity, the waitlist and promotion: pure rules over registrations and the roster.

* Each partnership includes training for ``[trainings.seats]`` people per plan and term (standard 2,
  solo 1: one-person shops pay half). The term is the year ending on the partner's renewal date; a
  course counts in the term its first day falls in.
* An included place is *used* by a contact who completed a training in the term (their training date
  is in it) and *reserved* by a confirmed or waitlisted registration on an included place for a course
  that has not ended. A no-show (absent, or confirmed but never marked attended once the course is over)
  uses nothing: the place is free for a later course in the same term.
* Someone who trained before registers as a refresher: no included place. Attending a refresher moves
  their training date, which is then not counted as a place used.
* A registration within the included places and the capacity is confirmed; past the included places
  it is held for staff (#approve / #decline); past the capacity it is waitlisted, in request order.
* ``settle``: when a place frees up (a cancellation, a decline, a raised capacity), held registrations
  that now fit in the included places are placed, and the waitlist is promoted in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo

from ..model import FROZEN, Partner
from ..mailings.types import TrainingDate, TrainingsConfig
from .model import Registration, Seat, Status

AUTOMATIC = "partnerdesk"  # who promotions are "by"


def _year(d: date, n: int) -> date:
    try:
        return d.replace(year=d.year + n)
    except ValueError:  # February 29
        return d.replace(year=d.year + n, day=28)


def term_of(partner: Partner, day: date) -> tuple[date, date]:
    """(first day, last day) of the partner's yearly term that contains ``day``, anchored on its renewal
    date; without a renewal date, the 365 days ending on ``day``."""
    end = partner.renews_on
    if end is None:
        return day - timedelta(days=364), day
    years = 0
    while day > _year(end, years):
        years += 1
    while day <= _year(end, years - 1):
        years -= 1
    last = _year(end, years)
    return _year(end, years - 1) + timedelta(days=1), last


def local_day(t: datetime, tz: ZoneInfo) -> date:
    return t.astimezone(tz).date()


def _order(r: Registration) -> tuple[datetime, str]:
    return r.requested_at, r.address


def included_users(partner: Partner, regs: Iterable[Registration], trainings: Mapping[str, TrainingDate],
                   day: date, now: datetime, tz: ZoneInfo) -> set[str]:
    """Addresses using or reserving one of ``partner``'s included places in the term containing ``day``."""
    first, last = term_of(partner, day)
    users: set[str] = set()
    not_a_place: set[tuple[str, date]] = set()  # (address, date) of attendance that used no included place
    for r in regs:
        if r.partner_id != partner.id:
            continue
        if r.status is Status.ATTENDED and r.attended_on is not None:
            if r.seat is Seat.INCLUDED:
                if first <= r.attended_on <= last:
                    users.add(r.address)
            else:
                not_a_place.add((r.address, r.attended_on))
            continue
        if r.seat is not Seat.INCLUDED or r.status not in (Status.CONFIRMED, Status.WAITLISTED):
            continue
        t = trainings.get(r.training_id)
        if t is None or t.ends <= now:  # gone from the calendar, or over and never marked attended
            continue
        if first <= local_day(t.start, tz) <= last:
            users.add(r.address)
    for c in partner.contacts:
        if c.trained_on is not None and first <= c.trained_on <= last and (c.email, c.trained_on) not in not_a_place:
            users.add(c.email)
    return users


def free_places(partner: Partner, regs: Iterable[Registration], trainings: Mapping[str, TrainingDate],
                cfg: TrainingsConfig, day: date, now: datetime, tz: ZoneInfo, *, besides: str = "") -> int:
    """Included places still free in the term containing ``day`` (``besides``: leave this address out,
    when placing it again)."""
    users = included_users(partner, regs, trainings, day, now, tz) - {besides}
    return max(0, cfg.included(partner.plan) - len(users))


def confirmed(regs: Iterable[Registration], training_id: str) -> int:
    return sum(1 for r in regs if r.training_id == training_id and r.status is Status.CONFIRMED)


def waitlist(regs: Iterable[Registration], training_id: str) -> list[Registration]:
    """The waitlist of a course, first in line first."""
    return sorted((r for r in regs if r.training_id == training_id and r.status is Status.WAITLISTED), key=_order)


def position(reg: Registration, regs: Iterable[Registration]) -> int:
    """1-based place of ``reg`` on its course's waitlist (0 if it is not on it)."""
    line = waitlist(regs, reg.training_id)
    return next((i for i, r in enumerate(line, 1) if r.key == reg.key), 0)


@dataclass(**FROZEN)
class Placement:
    seat: Seat
    status: Status
    note: str


def place(*, partner: Partner, address: str, trained: bool, training: TrainingDate, regs: Sequence[Registration],
          trainings: Mapping[str, TrainingDate], cfg: TrainingsConfig, now: datetime, tz: ZoneInfo,
          approved: bool = False) -> Placement:
    """Where a (new or renewed) registration of ``address`` for ``training`` goes.

    ``regs``: every registration (the one being placed may be among them: it is left out); ``trained``:
    the contact completed a training before (a refresher); ``approved``: staff place it past the included
    places (an extra place).
    """
    others = [r for r in regs if not (r.training_id == training.id and r.address == address)]
    n = cfg.included(partner.plan)
    if trained:
        seat, why = Seat.REFRESHER, "a refresher: no included place used"
    elif free_places(partner, others, trainings, cfg, local_day(training.start, tz), now, tz, besides=address) > 0:
        seat, why = Seat.INCLUDED, f"one of {partner.name}'s {n} included place(s) this term"
    elif approved:
        seat, why = Seat.EXTRA, "an extra place, approved by staff"
    else:
        return Placement(seat=Seat.EXTRA, status=Status.HELD,
                         note=f"{partner.name}'s {n} included place(s) this term are taken: held for staff approval")
    if confirmed(others, training.id) < training.capacity:
        return Placement(seat=seat, status=Status.CONFIRMED, note=why)
    return Placement(seat=seat, status=Status.WAITLISTED,
                     note=f"{why}; the course is full ({training.capacity} places): waitlisted")


def settle(regs: Sequence[Registration], partners: Mapping[str, Partner], trainings: Mapping[str, TrainingDate],
           cfg: TrainingsConfig, now: datetime, tz: ZoneInfo) -> list[Registration]:
    """Registrations that change because places became free, in the order the changes happen.

    For each course that has not started, first held registrations that now fit in their partner's
    included places are placed, then the waitlist is promoted in order while there are places.
    Nobody is ever moved down: a lowered capacity only stops promotions.
    """
    work = {r.key: r for r in regs}
    changed: dict[str, Registration] = {}

    def put(r: Registration) -> None:
        work[r.key] = r
        changed[r.key] = r

    for t in sorted(trainings.values(), key=lambda t: (t.start, t.id)):
        if t.start <= now:
            continue
        for r in sorted((r for r in work.values() if r.training_id == t.id and r.status is Status.HELD), key=_order):
            p = partners.get(r.partner_id)
            if p is None:
                continue
            others = [x for x in work.values() if x.key != r.key]
            if free_places(p, others, trainings, cfg, local_day(t.start, tz), now, tz, besides=r.address) > 0:
                status = Status.CONFIRMED if confirmed(work.values(), t.id) < t.capacity else Status.WAITLISTED
                put(r.moved(status, Seat.INCLUDED, now, by=AUTOMATIC, via="automatic",
                            note=f"an included place of {p.name} became free" + (
                                "; the course is full: waitlisted" if status is Status.WAITLISTED else "")))
        while confirmed(work.values(), t.id) < t.capacity:
            line = waitlist(work.values(), t.id)
            if not line:
                break
            put(line[0].moved(Status.CONFIRMED, line[0].seat, now, by=AUTOMATIC, via="automatic",
                              note="a place became free: promoted from the waitlist"))
    return list(changed.values())

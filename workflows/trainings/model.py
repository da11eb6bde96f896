"""A registration for a training, as values: who, for which course, what seat, where it stands, and its history.

A registration is keyed by (training id, address). Its ``status`` says where it stands now and its
``events`` say how it got there (each change appends one); the mail a change calls for is derived from
the latest event (workflows/trainings/notices.py), so a change recorded once is mailed once.

| status     | meaning                                                                            |
|------------|------------------------------------------------------------------------------------|
| confirmed  | has a place                                                                        |
| held       | past the partner's included places: waits for staff (#approve / #decline)         |
| waitlisted | the course is full: waits, in order, for a place                                  |
| declined   | staff declined the extra place                                                     |
| cancelled  | the person (or a colleague, or staff) cancelled                                    |
| attended   | completed the course: the contact's training date is set, which grants the seat   |
| absent     | did not attend (a no-show): the included place is free for a later course        |

A seat is one of: ``included`` (one of the partner's places this term), ``extra`` (beyond them, approved
by staff), ``refresher`` (someone who trained before: uses no included place).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from ..model import FROZEN


class Status(StrEnum):
    CONFIRMED = "confirmed"
    HELD = "held"
    WAITLISTED = "waitlisted"
    DECLINED = "declined"
    CANCELLED = "cancelled"
    ATTENDED = "attended"
    ABSENT = "absent"


class Seat(StrEnum):
    INCLUDED = "included"
    EXTRA = "extra"
    REFRESHER = "refresher"


LIVE = frozenset({Status.CONFIRMED, Status.HELD, Status.WAITLISTED})  # wants a place in the course
ENDED = frozenset({Status.DECLINED, Status.CANCELLED})  # may register again


@dataclass(**FROZEN)
class RegEvent:
    """One change of a registration: what it became, when, by whom, and why (for people)."""

    at: datetime
    status: Status
    seat: Seat
    by: str = ""  # who caused it: the writer, a staff member, "partnerdesk" for automatic promotions
    via: str = ""  # reply | calendar | staff-mail | cli | automatic
    note: str = ""
    message_id: str = ""  # the mail that caused it, if any

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "status": str(self.status), "seat": str(self.seat), "by": self.by,
                "via": self.via, "note": self.note, "message_id": self.message_id}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RegEvent:
        return cls(at=datetime.fromisoformat(d["at"]), status=Status(d["status"]), seat=Seat(d["seat"]),
                   by=d.get("by", ""), via=d.get("via", ""), note=d.get("note", ""),
                   message_id=d.get("message_id", ""))


@dataclass(**FROZEN)
class Registration:
    training_id: str
    address: str  # lower-cased
    partner_id: str
    requested_at: datetime  # the waitlist's order: when this (latest) request was made
    name: str = ""
    status: Status = Status.CONFIRMED
    seat: Seat = Seat.INCLUDED
    registered_by: str = ""  # who asked for it: the person, a colleague, staff
    attended_on: date | None = None  # the course's last day, once attendance is recorded
    trained_before: date | None = None  # the contact's training date before attendance set it (undo)
    events: tuple[RegEvent, ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        return f"{self.training_id}|{self.address}"

    @property
    def live(self) -> bool:
        return self.status in LIVE

    @property
    def last(self) -> RegEvent | None:
        return self.events[-1] if self.events else None

    def moved(self, status: Status, seat: Seat, at: datetime, *, by: str, via: str, note: str = "",
              message_id: str = "", **changes: Any) -> Registration:
        """This registration after a change (one event appended)."""
        event = RegEvent(at=at, status=status, seat=seat, by=by, via=via, note=note, message_id=message_id)
        return replace(self, status=status, seat=seat, events=self.events + (event,), **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "training_id": self.training_id, "address": self.address, "partner_id": self.partner_id,
            "name": self.name, "status": str(self.status), "seat": str(self.seat),
            "requested_at": self.requested_at.isoformat(), "registered_by": self.registered_by,
            "attended_on": self.attended_on.isoformat() if self.attended_on else None,
            "trained_before": self.trained_before.isoformat() if self.trained_before else None,
            "events": [e.to_dict() for e in self.events],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Registration:
        def day(v: str | None) -> date | None:
            return date.fromisoformat(v) if v else None

        return cls(training_id=d["training_id"], address=d["address"], partner_id=d["partner_id"],
                   name=d.get("name", ""), status=Status(d["status"]), seat=Seat(d["seat"]),
                   requested_at=datetime.fromisoformat(d["requested_at"]), registered_by=d.get("registered_by", ""),
                   attended_on=day(d.get("attended_on")), trained_before=day(d.get("trained_before")),
                   events=tuple(RegEvent.from_dict(e) for e in d.get("events", ())))


@dataclass(**FROZEN)
class TrainingInputs:
    """What the training mail needs besides the roster, the ledger and the config (for the planner)."""

    registrations: tuple[Registration, ...] = ()
    staff: tuple[str, ...] = ()  # who gets approval requests and attendance sheets
    promise: str = ""  # the reply-time promise in words, for the "you now hold a seat" mail
    support_address: str = ""

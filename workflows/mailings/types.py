"""The scheduled mailings' settings as values: calls, trainings, renewals, the program's details.

config/mailings.py reads them from the [mailings], [calls], [trainings], [renewals] and [program]
tables; the rules in this package only read these frozen values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from ..calendar import PROGRAM_TZ
from ..model import FROZEN



@dataclass(**FROZEN)
class CallDate:
    id: str  # stable across moves: the calendar UID is made from it
    start: datetime  # aware
    dial_in: str = ""


@dataclass(**FROZEN)
class CallsConfig:
    title: str = "State of Open Atrium"
    rrule: str = ""  # RFC 5545 RRULE, expanded from `first`
    first: datetime | None = None  # DTSTART of the rule, aware
    dates: tuple[CallDate, ...] = ()  # explicit calls; an id equal to a rule occurrence's moves it
    cancelled: frozenset[str] = frozenset()  # ids of rule occurrences that will not happen
    duration: timedelta = timedelta(minutes=60)
    dial_in: str = ""
    agenda: str = ""
    invite_days_before: int = 14
    reminder_days_before: int = 1


@dataclass(**FROZEN)
class TrainingDate:
    """One training course: an occurrence of the [trainings] rule or a [[trainings.dates]] entry.

    The id is stable when the course moves (the calendar UID is made from it); ``end`` is the end of
    the last day (a two-day course from 9:00 on Monday to 17:00 on Tuesday); ``remote`` the joining
    details, sent to registered people only; ``capacity`` the places, in person and remote together.
    """

    id: str
    start: datetime  # aware
    end: datetime | None = None  # None: config/mailings.py always fills it; start + 3 hours if not
    title: str = "Open Atrium partner training"
    place: str = ""
    remote: str = ""
    capacity: int = 16

    @property
    def ends(self) -> datetime:
        return self.end or self.start + timedelta(hours=3)


@dataclass(**FROZEN)
class TrainingsConfig:
    title: str = "Open Atrium partner training"
    rrule: str = ""  # RFC 5545 RRULE expanded from `first`: "every four months"
    first: datetime | None = None
    dates: tuple[TrainingDate, ...] = ()  # explicit courses; an id equal to a rule occurrence's moves it
    cancelled: frozenset[str] = frozenset()  # ids of rule occurrences that will not happen
    announce_days_before: int = 30
    reminder_days_before: int = 2  # a reminder to registered people this many days before the start
    # Included training places per plan and term: "training for two people", half for one-person shops.
    seats: tuple[tuple[str, int], ...] = (("standard", 2), ("solo", 1))
    refresher_after_days: int = 365  # trained longer ago than this: offered a refresher
    capacity: int = 16  # places per course unless a date says otherwise
    place: str = ""
    remote: str = ""
    days: int = 2  # a course without an explicit end lasts this many days...
    day_ends: time = time(17, 0)  # ...until this time on the last day
    duration: timedelta | None = None  # the old `duration_minutes`: when set, a course without an end lasts this

    def included(self, plan: str) -> int:
        """Training places a partner on ``plan`` has per term (0 for a plan not listed)."""
        return dict(self.seats).get(plan, 0)

    @property
    def seats_per_term(self) -> int:
        """The standard plan's places ("each partnership includes training for two people")."""
        return self.included("standard")


@dataclass(**FROZEN)
class RenewalsConfig:
    offsets: tuple[int, ...] = (60, 30, 7, 0, -14)  # days before the term ends; negative: after (lapse)
    send_at: time = time(10, 0)  # local time of day the notice is due
    pay_url: str = ""
    # Past the renewal date by this many days without a recorded payment: lapsed (no invitations or
    # training mail; renewal notices and support go on, flagged to staff) until `partners renew`.
    grace_days: int = 30


@dataclass(**FROZEN)
class ProgramConfig:
    name: str = "Open Atrium Partners Program"
    profile_url: str = "https://openatrium.com/partners/{id}"  # {id}: the partner id
    badge_image: str = "https://openatrium.com/partners/badge.png"
    training_url: str = ""


@dataclass(**FROZEN)
class MailingsConfig:
    timezone: str = PROGRAM_TZ
    enabled: frozenset[str] = frozenset({"calls", "renewals", "trainings", "welcome"})
    calls: CallsConfig = CallsConfig()
    trainings: TrainingsConfig = TrainingsConfig()
    renewals: RenewalsConfig = RenewalsConfig()
    program: ProgramConfig = ProgramConfig()

    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def local_day(d: date, at: time, tz: ZoneInfo) -> datetime:
    """``d`` at local time ``at`` in ``tz`` (aware)."""
    return datetime.combine(d, at, tzinfo=tz)

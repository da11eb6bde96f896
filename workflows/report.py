"""The status report's figures, as pure functions: the store's data and ``now`` in, numbers out.

``figures(...)`` is what ``report --out DIR`` (cli/report.py) renders into one HTML page and what the
daemon refreshes every cycle when ``[report] dir`` is set. Every figure is computed here, so a test can
check the page's numbers against these and these against the store.

Definitions (the README's "Status report" section says the same):

- **First response** of a thread: from the request (the clock's start: the request, or the next opening
  after it) to the first staff answer, in *business* time on the ``[sla]`` calendar. Only threads with a
  promise count (a partner contact holding a seat). **Within the promise**: answered by the due time the
  acknowledgement named. A thread still unanswered counts as missed once its due time has passed, and
  as pending before; one closed or set waiting without an answer counts in neither.
- A thread belongs to the **month** (program time zone) and the **partner** of its request.
- **Escalations fired**: the ladder's stage events in the threads' timelines (one per escalation mail).
- **Mailings**: the ledger (queued or skipped) joined with the outbox (sent, pending, failed,
  cancelled); **bounced**: a queued mailing whose outbox entry failed for good or that a bounce report
  names (``bounced``: the Message-IDs of ours that automatic mail of kind bounce is about).
- **Bouncing contacts**: the delivery states (workflows/delivery.py) that say so today.
- **Lapsed**: ``lapsed(partner, today, grace_days)``: the roster's one lapse rule
  (``workflows.roster.lapsed_since``: the renewal date plus ``[renewals] grace_days`` has passed and no
  payment moved it), for a partner in the program that day. **In the program**: ``Partner.active_on(today)``
  (a partner deactivated from a later day still counts until then).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from statistics import median
from typing import Any, Callable, Iterable, Mapping

from . import lifecycle
from .calendar import BusinessCalendar, format_due, format_duration
from .delivery import DeliveryState
from .escalation import current_stage
from .mailings.trainings import seats_unused
from .model import FROZEN, Partner, Thread
from .outbox import OutboxEntry, Status
from .roster import lapsed_since
from .sla import running_clock


def lapsed(partner: Partner, today: date, grace_days: int = 0) -> bool:
    """A partner in the program whose renewal date plus the grace period has passed without a recorded
    payment (a payment moves ``renews_on``): the same rule that holds its invitations and training mail."""
    return partner.active_on(today) and lapsed_since(partner, today, grace_days) is not None


@dataclass(**FROZEN)
class ThreadRow:
    id: str
    subject: str
    partner: str
    requester: str
    state: str
    due: str  # "Tuesday, December 1, 10:00 AM ET" or "-"
    due_at: datetime | None
    overdue: bool
    waited: str
    stage: str
    assignee: str
    promised: bool


@dataclass(**FROZEN)
class Response:
    """First-response figures of a group of threads (a month, a partner, all)."""

    label: str
    requests: int = 0  # promised threads whose first response is due or given
    answered: int = 0
    within: int = 0  # answered by the due time
    missed: int = 0  # answered late, or still unanswered after the due time
    pending: int = 0  # unanswered, not yet due
    median_hours: float | None = None  # of the answered, business hours

    @property
    def share(self) -> float | None:
        """Share within the promise, of those decided (answered, or past due)."""
        decided = self.within + self.missed
        return self.within / decided if decided else None

    @property
    def share_text(self) -> str:
        return "-" if self.share is None else f"{round(self.share * 100)} %"

    @property
    def median_text(self) -> str:
        return "-" if self.median_hours is None else format_duration(timedelta(hours=self.median_hours))


@dataclass(**FROZEN)
class MailingRow:
    mailing: str
    sent: int = 0
    pending: int = 0
    failed: int = 0
    cancelled: int = 0
    skipped: int = 0
    bounced: int = 0


@dataclass(**FROZEN)
class PartnerRow:
    id: str
    name: str
    plan: str
    renews_on: str
    contacts: int
    seats: int
    unused_training: int
    lapsed: bool
    bouncing: int
    active: bool


@dataclass(**FROZEN)
class Bouncing:
    address: str
    partner_id: str
    failures: int
    last_at: str
    detail: str


@dataclass(**FROZEN)
class Report:
    generated: str
    open_threads: tuple[ThreadRow, ...]
    counts: dict[str, int]
    by_month: tuple[Response, ...]
    by_partner: tuple[Response, ...]
    overall: Response
    escalations: dict[str, int]  # stage -> fired
    escalations_by_month: dict[str, dict[str, int]]
    mailings: tuple[MailingRow, ...]
    partners: tuple[PartnerRow, ...]
    bouncing: tuple[Bouncing, ...]
    roster: dict[str, int] = field(default_factory=dict)

    def as_numbers(self) -> dict[str, Any]:
        """The key numbers, as the page shows them (``data-figure`` attributes), for tests and tools."""
        return {
            "open": self.counts["open"], "overdue": self.counts["overdue"],
            "first-response-share": self.overall.share_text, "first-response-median": self.overall.median_text,
            "answered": self.overall.answered, "within": self.overall.within, "missed": self.overall.missed,
            "escalations": sum(self.escalations.values()),
            "mailings-sent": sum(m.sent for m in self.mailings),
            "mailings-skipped": sum(m.skipped for m in self.mailings),
            "mailings-bounced": sum(m.bounced for m in self.mailings),
            **{f"roster-{k}": v for k, v in self.roster.items()},
        }


def _month(at: datetime, cal: BusinessCalendar) -> str:
    return at.astimezone(cal.tz()).strftime("%Y-%m")


def _request_at(t: Thread) -> datetime:
    return next((e.at for e in t.events if e.kind == "request"), t.created_at)


def _first_response(t: Thread, now: datetime, cal: BusinessCalendar) -> tuple[str, float | None]:
    """("within" | "missed" | "pending" | "none", business hours to the first answer or None)."""
    if not t.promised or any(e.kind == "history" for e in t.events):
        return "none", None
    asked = _request_at(t)
    start, due = cal.clock_start(asked), cal.due_at(asked)
    if t.first_response_at is not None:
        hours = cal.business_elapsed(start, t.first_response_at).total_seconds() / 3600
        return ("within" if t.first_response_at <= due else "missed"), hours
    if t.state not in lifecycle.CLOCK_RUNNING:
        return "none", None  # closed or set waiting without an answer: no response to time
    return ("missed" if now >= due else "pending"), None


def _response(label: str, outcomes: list[tuple[str, float | None]]) -> Response:
    c = Counter(o for o, _ in outcomes)
    hours = [h for _, h in outcomes if h is not None]
    return Response(label=label, requests=c["within"] + c["missed"] + c["pending"],
                    answered=len(hours), within=c["within"], missed=c["missed"], pending=c["pending"],
                    median_hours=median(hours) if hours else None)


def thread_rows(threads: Iterable[Thread], now: datetime, cal: BusinessCalendar,
                names: Mapping[str, str]) -> list[ThreadRow]:
    """Open threads, overdue first, then by due time; those without a promise last (oldest first)."""
    rows = []
    for t in threads:
        if t.state not in lifecycle.OPEN:
            continue
        clock = running_clock(t, now, cal)
        rows.append(ThreadRow(
            id=t.id, subject=t.subject, partner=names.get(t.partner_id or "", t.partner_id or "-"),
            requester=t.requester, state=t.state.words, due=format_due(clock.due_at, cal) if clock else "-",
            due_at=clock.due_at if clock else None, overdue=bool(clock and clock.overdue),
            waited=format_duration(clock.waited) if clock else "-", stage=current_stage(t) if clock else "-",
            assignee=t.assignee, promised=t.promised))
    far = datetime.max.replace(tzinfo=now.tzinfo)
    return sorted(rows, key=lambda r: (not r.overdue, r.due_at is None, r.due_at or far, r.id))


def mailing_rows(ledger: Iterable[Mapping[str, Any]], entries: Iterable[OutboxEntry],
                 bounced: frozenset[str] = frozenset()) -> list[MailingRow]:
    by_key = {e.key: e for e in entries}
    counts: dict[str, Counter[str]] = {}
    for rec in ledger:
        c = counts.setdefault(rec.get("mailing", "?"), Counter())
        if rec.get("status") == "skipped":
            c["skipped"] += 1
            continue
        key = rec.get("outbox_key") or ""
        e = by_key.get(key)
        status = e.status if e is not None else Status.SENT  # pruned from the outbox: it went out
        c[str(status)] += 1
        if status is Status.FAILED or (e is not None and e.message_id in bounced):
            c["bounced"] += 1
    return [MailingRow(mailing=m, sent=c["sent"], pending=c["pending"], failed=c["failed"],
                       cancelled=c["cancelled"], skipped=c["skipped"], bounced=c["bounced"])
            for m, c in sorted(counts.items())]


def _bouncing(d: DeliveryState, partner_of: Mapping[str, str]) -> Bouncing:
    last = d.last_failure_at or d.bouncing_since
    return Bouncing(address=d.address, partner_id=partner_of.get(d.address.lower(), "-"), failures=d.failures,
                    last_at=last.isoformat()[:10] if last else "", detail=d.last_reason)


def figures(*, threads: list[Thread], partners: list[Partner], ledger: Iterable[Mapping[str, Any]],
            entries: Iterable[OutboxEntry], delivery: Mapping[str, DeliveryState], now: datetime,
            bounced: frozenset[str] = frozenset(),
            cal: BusinessCalendar, seats_per_term: int = 2, grace_days: int = 0,
            is_lapsed: Callable[[Partner, date], bool] | None = None) -> Report:
    today = now.astimezone(cal.tz()).date()
    if is_lapsed is None:
        def is_lapsed(p: Partner, day: date) -> bool:
            return lapsed(p, day, grace_days)
    names = {p.id: p.name for p in partners}
    open_rows = thread_rows(threads, now, cal, names)

    outcomes = [(t, _first_response(t, now, cal)) for t in threads]
    counted = [(t, o) for t, o in outcomes if o[0] != "none"]
    months: dict[str, list[tuple[str, float | None]]] = {}
    by_partner: dict[str, list[tuple[str, float | None]]] = {}
    for t, o in counted:
        months.setdefault(_month(_request_at(t), cal), []).append(o)
        by_partner.setdefault(t.partner_id or "-", []).append(o)

    fired: Counter[str] = Counter()
    fired_months: dict[str, Counter[str]] = {}
    for t in threads:
        for e in t.events:
            if e.kind == "stage":
                stage = e.detail.split(" ", 1)[0]
                fired[stage] += 1
                fired_months.setdefault(_month(e.at, cal), Counter())[stage] += 1

    partner_of = {c.email.lower(): p.id for p in partners for c in p.contacts}
    bouncing = tuple(sorted((_bouncing(d, partner_of) for d in delivery.values() if d.bouncing),
                            key=lambda b: (-b.failures, b.address)))
    bounce_by_partner = Counter(b.partner_id for b in bouncing)
    prows = []
    for p in sorted(partners, key=lambda p: p.name.lower()):
        gone = is_lapsed(p, today)
        prows.append(PartnerRow(
            id=p.id, name=p.name, plan=p.plan, renews_on=p.renews_on.isoformat() if p.renews_on else "-",
            contacts=len(p.contacts), seats=sum(c.has_seat for c in p.contacts),
            unused_training=seats_unused(p, today, seats_per_term) if p.active_on(today) and not gone else 0,
            lapsed=gone, bouncing=bounce_by_partner.get(p.id, 0), active=p.active_on(today)))
    active = [r for r in prows if r.active]
    roster = {"partners": len(active), "contacts": sum(r.contacts for r in active),
              "seats": sum(r.seats for r in active), "lapsed": sum(r.lapsed for r in active),
              "bouncing": len(bouncing), "unused-training": sum(r.unused_training for r in active)}
    counts = {"open": len(open_rows), "overdue": sum(r.overdue for r in open_rows),
              "waiting-on-partner": sum(r.state == lifecycle.State.WAITING_ON_PARTNER.words for r in open_rows),
              "no-promise": sum(not r.promised for r in open_rows)}
    return Report(
        generated=format_due(now, cal, with_year=True),
        open_threads=tuple(open_rows),
        counts=counts,
        by_month=tuple(_response(m, o) for m, o in sorted(months.items())),
        by_partner=tuple(sorted((_response(names.get(pid, pid), o) for pid, o in by_partner.items()),
                                key=lambda r: r.label.lower())),
        overall=_response("all", [o for _, o in counted]),
        escalations=dict(sorted(fired.items())),
        escalations_by_month={m: dict(c) for m, c in sorted(fired_months.items())},
        mailings=tuple(mailing_rows(ledger, entries, bounced)),
        partners=tuple(prows),
        bouncing=bouncing,
        roster=roster,
    )

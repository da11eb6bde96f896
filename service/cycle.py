"""One full pass of the program: send what is queued, take in new mail, fire what is due, send again.

``Desk`` holds the built services and the adapters they talk through; run.py builds it once, the
daemon loop (cli/daemon.py), `once` and the tests call ``cycle`` on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from workflows.errors import LoginRequired, Transient

from .health import HealthMonitor
from .intake import BATCH, HISTORY_BATCH, IntakeService
from .logins import LoginWatch
from .mailings import MailingRunner
from .outbox import Outbox
from .ports import MailSender, MailSource, Progress, RawMail, Store
from .promise import PromiseTicks
from .report import CycleReport

URGENT_WAIT = 0.5  # seconds the ticks wait for the acknowledgements just queued to leave (a slow server: no longer)

Tick = Callable[[datetime, CycleReport], object]


@dataclass
class Desk:
    store: Store
    outbox: Outbox
    intake: IntakeService
    source: MailSource
    sender: MailSender
    now: Callable[[], datetime]  # the rules' clock (the wall clock, or --now advancing with it)
    promise: PromiseTicks | None = None
    mailings: MailingRunner | None = None
    extra_ticks: list[Tick] = field(default_factory=list)
    login: LoginWatch | None = None  # an OAuth2 login to watch (service/logins.py)
    health: HealthMonitor | None = None  # the heartbeat and the intake alarm (None: a dry run, tests)
    progress: Progress | None = None  # a progress bar for a long intake (first start), when someone watches

    @property
    def ticks(self) -> list[Tick]:
        """Scheduled work after intake, each deciding from the store and ``now`` what is due."""
        return [t for t in (self.promise and self.promise.tick, self.mailings and self.mailings.tick) if t] \
            + self.extra_ticks


def take_in_new(desk: Desk, report: CycleReport) -> Transient | LoginRequired | None:
    """The intake part of a cycle: new mail in batches, each recorded, marked done and its mail sent off.
    Returns the source's Transient (an IMAP outage) or LoginRequired (a lapsed OAuth2 login) instead of
    raising it."""
    batch: list[RawMail] = []
    limit = HISTORY_BATCH
    failed: Transient | LoginRequired | None = None
    try:
        for raw in desk.source.fetch_new(desk.store):
            if not batch and desk.progress is not None:  # the source knows by now how much is coming
                desk.progress.set_total(getattr(desk.source, "expected", None))
            batch.append(raw)
            if not desk.intake.is_history(raw):
                limit = BATCH  # history goes 500 to a write; anything else 50
            if len(batch) >= limit:
                desk.intake.take_in_many(batch, desk.now(), report, desk.source)
                if desk.progress is not None:
                    desk.progress.update(len(batch))
                batch, limit = [], HISTORY_BATCH
    except (Transient, LoginRequired) as e:  # reported by whoever catches it
        failed = e
    desk.intake.take_in_many(batch, desk.now(), report, desk.source)  # what arrived before a failure
    if desk.progress is not None and batch:
        desk.progress.update(len(batch))
    return failed


def cycle(desk: Desk, *, wait: bool = True) -> CycleReport:
    """One full pass: retry what is queued, take in new mail, fire what is due, send what it caused.

    Mail leaves as soon as the write that queued it has committed (an acknowledgement does not wait
    for the ticks, a mailing's first chunk not for its last); ``wait``: return only once everything
    is sent and folded into the store (`once`); the daemon goes on while its dispatcher sends.

    An IMAP outage (Transient from the source) skips only the intake: escalations, digests,
    auto-close and mailings still fire and the outbox is still drained; then the Transient is
    re-raised, with the report attached as ``.report``, so the daemon backs off and `once` exits 75.
    A lapsed OAuth2 login (LoginRequired from the source, or the login watch seeing it refused) is
    handled the same way: the rest of the cycle runs, the outbox holds what cannot be sent, and the
    LoginRequired comes last, so the daemon says it and goes on, and `once` exits 77.
    """
    outbox = desk.outbox
    if outbox.dispatcher is not None:
        outbox.dispatcher.use(desk.sender)
    with outbox.sending():
        return _cycle(desk, wait)


def _cycle(desk: Desk, wait: bool) -> CycleReport:
    report = CycleReport()
    outbox = desk.outbox
    if outbox.dispatcher is None:
        outbox.drain(desk.sender, desk.now(), report)
    elif wait:  # `once`: retries first, as before; the daemon takes new mail in first (retries come after)
        outbox.submit_due(desk.now(), report)
    intake_failed = take_in_new(desk, report)
    if outbox.dispatcher is not None:
        # Acknowledgements leave before the ticks take the processor (Dispatcher.wait_urgent).
        outbox.dispatcher.wait_urgent(URGENT_WAIT)
    ticks_ok = False
    try:
        if desk.health is not None:  # may queue the alarm, which the sending below sends
            desk.health.intake_result(desk.now(), intake_failed, report)
        for tick in desk.ticks:
            tick(desk.now(), report)
        ticks_ok = True
        if outbox.dispatcher is None:
            outbox.drain(desk.sender, desk.now(), report)
        else:
            outbox.submit_due(desk.now(), report)
            if wait:
                outbox.dispatcher.wait()
                outbox.settle(report)
    finally:  # the heartbeat says what this cycle did, also when something in it failed
        if desk.health is not None:
            desk.health.cycle_done(desk.now(), report, ticks_ok=ticks_ok)
    failed = intake_failed
    lapsed = desk.login.check(report) if desk.login is not None else None
    if lapsed is not None and not isinstance(failed, LoginRequired):
        if failed is not None:  # an outage as well: said, but a person must act on the login
            report.problems.append(str(failed))
        failed = lapsed
    if failed is not None:
        failed.report = report  # type: ignore[attr-defined]
        raise failed
    return report

"""`run`: the daemon. It cycles when mail arrives (IMAP IDLE) or a poll falls due, backs off when a
server is away, and stops cleanly on SIGTERM or Ctrl-C after the step it is in. A lapsed OAuth2
login does not stop it: every poll it runs the cycle (ticks, mailings; the outbox holds what it cannot
send), says what a person must run, and picks the login up again as soon as they have.

Sending never holds it up: mail leaves from the outbox's dispatcher thread while the loop goes back
to waiting for mail, and between two chunks of a large mailing the loop takes in what has arrived.
Send results are folded into the store when a few hundred have gathered or the sending pauses."""

from __future__ import annotations

import argparse
import logging
import signal
import time
from typing import Any, Callable

import schedule

from service.cycle import cycle, take_in_new
from service.report import CycleReport
from workflows.errors import AlreadyRunning, ConfigError, LoginRequired, Transient

from .context import Context
from .report import refresh as refresh_report

log = logging.getLogger("partnerdesk")
MAX_BACKOFF = 300.0  # seconds between tries while a server is away or a cycle keeps failing
SETTLE_AFTER = 200  # send results gathered before they are folded into the store while sending goes on


def add_parser(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("run", help="the daemon: watch the inbox, act, repeat (SIGTERM/Ctrl-C stop it cleanly)"
                   ).set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    stop = {"flag": False}

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %s: finishing the current step, then stopping", signum)
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    settings = ctx.settings
    desk = ctx.desk()
    dispatcher = desk.outbox.dispatcher

    def settle_due() -> bool:
        if dispatcher is None:
            return False
        n = dispatcher.unsettled()
        return n >= SETTLE_AFTER or (n > 0 and not dispatcher.busy())

    def wake_early() -> bool:
        return stop["flag"] or settle_due()

    def between_chunks() -> None:
        # A large mailing is being decided: take in what arrived meanwhile (its acks leave at once).
        poll = getattr(desk.source, "poll_new", None)
        if poll is not None and not poll():
            return
        report = CycleReport()
        failed = take_in_new(desk, report)
        if report.counts["fetched"]:
            log.info("%s", report.summary())
        if failed is not None:
            log.warning("%s", failed)

    if desk.mailings is not None:
        desk.mailings.between_chunks = between_chunks
    # `schedule` only says when to tick; what is due is decided from the store and `now`,
    # because schedule forgets everything across a restart. A private Scheduler, and every
    # job wrapped: schedule does not catch exceptions, and one failure would stop the rest.
    scheduler = schedule.Scheduler()
    wake = {"mail": True}

    def safe(job: Callable[[], Any]) -> Callable[[], None]:
        def run_job() -> None:
            try:
                job()
            except (ConfigError, KeyboardInterrupt):
                raise
            except Exception:
                log.exception("scheduled job %s failed; it will run again at its next time", job.__name__)
        return run_job

    def poll() -> None:
        wake["mail"] = True

    poll_seconds = settings.imap.poll_seconds if settings.imap else 5.0
    scheduler.every(max(1, int(poll_seconds))).seconds.do(safe(poll))
    backoff = 1.0
    log.info("partnerdesk running on %s (store %s)", settings.support_address, settings.store_path)
    while not stop["flag"]:
        try:
            scheduler.run_pending()  # first: a poll that fell due while we waited wakes this pass
            report = None
            if wake["mail"]:
                wake["mail"] = False
                report = cycle(desk, wait=False)
                refresh_report(desk.store, ctx)
            elif settle_due():
                report = CycleReport()
                desk.outbox.settle(report)
            if report is not None:
                if report.counts["fetched"] or report.counts["sent"]:
                    log.info("%s", report.summary())
                for p in report.problems:
                    log.warning("%s", p)
            backoff = 1.0
            wait = max(0.5, min(poll_seconds, scheduler.idle_seconds or poll_seconds))
            waiter = getattr(desk.source, "wait_for_mail", None)
            idles = getattr(desk.source, "idle_supported", lambda: False)
            if waiter is not None and idles():
                if waiter(wait, should_stop=wake_early):
                    wake["mail"] = True
            else:
                _sleep(wait, wake_early)
        except LoginRequired as e:
            # Not an outage: backing off would not help and waiting longer would hide it. A steady
            # pace, so the ticks keep their time and the warning is in the log of every poll.
            for p in getattr(getattr(e, "report", None), "problems", ()):
                log.warning("%s", p)
            log.error("%s", e)
            backoff = 1.0
            wake["mail"] = True
            _sleep(poll_seconds, lambda: stop["flag"])
        except Transient as e:
            refresh_report(desk.store, ctx)  # what was done without the server still shows
            for p in getattr(getattr(e, "report", None), "problems", ()):
                log.warning("%s", p)
            log.warning("%s; retrying in %.0f s", e, backoff)
            _sleep(backoff, lambda: stop["flag"])
            backoff = min(backoff * 2, MAX_BACKOFF)
        except (ConfigError, AlreadyRunning):
            raise
        except Exception:
            # A bug or a full disk must not end the daemon: say it loudly, wait, try again.
            # Nothing is lost: every step is redone from the server and the store.
            log.exception("cycle failed; retrying in %.0f s", backoff)
            _sleep(backoff, lambda: stop["flag"])
            backoff = min(backoff * 2, MAX_BACKOFF)
    if dispatcher is not None:  # what is in flight finishes; what is queued stays queued in the store
        dispatcher.close(finish=False)
        desk.outbox.settle(CycleReport())
    log.info("stopped")
    return 0


def _sleep(seconds: float, done: Callable[[], bool]) -> None:
    end = time.monotonic() + seconds
    while not done() and time.monotonic() < end:
        time.sleep(min(0.2, end - time.monotonic()))

"""`run`: the daemon. It cycles when mail arrives (IMAP IDLE) or a poll falls due, backs off when a
server is away, and stops cleanly on SIGTERM or Ctrl-C after the step it is in. A lapsed OAuth2
login does not stop it: every poll it runs the cycle (ticks, mailings; the outbox holds what it cannot
send), says what a person must run, and picks the login up again as soon as they have."""

from __future__ import annotations

import argparse
import logging
import signal
import time
from typing import Any, Callable

import schedule

from service.cycle import cycle
from workflows.errors import AlreadyRunning, ConfigError, LoginRequired, Transient

from .context import Context
from .report import refresh as refresh_report

log = logging.getLogger("partnerdesk")
MAX_BACKOFF = 300.0  # seconds between tries while a server is away or a cycle keeps failing


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
            if wake["mail"]:
                wake["mail"] = False
                report = cycle(desk)
                refresh_report(desk.store, ctx)
                if report.counts["fetched"] or report.counts["sent"]:
                    log.info("%s", report.summary())
                for p in report.problems:
                    log.warning("%s", p)
            backoff = 1.0
            wait = max(0.5, min(poll_seconds, scheduler.idle_seconds or poll_seconds))
            waiter = getattr(desk.source, "wait_for_mail", None)
            if waiter is not None and waiter(wait, should_stop=lambda: stop["flag"]):
                wake["mail"] = True
            else:
                _sleep(wait, stop)
        except LoginRequired as e:
            # Not an outage: backing off would not help and waiting longer would hide it. A steady
            # pace, so the ticks keep their time and the warning is in the log of every poll.
            for p in getattr(getattr(e, "report", None), "problems", ()):
                log.warning("%s", p)
            log.error("%s", e)
            backoff = 1.0
            wake["mail"] = True
            _sleep(poll_seconds, stop)
        except Transient as e:
            refresh_report(desk.store, ctx)  # what was done without the server still shows
            for p in getattr(getattr(e, "report", None), "problems", ()):
                log.warning("%s", p)
            log.warning("%s; retrying in %.0f s", e, backoff)
            _sleep(backoff, stop)
            backoff = min(backoff * 2, MAX_BACKOFF)
        except (ConfigError, AlreadyRunning):
            raise
        except Exception:
            # A bug or a full disk must not end the daemon: say it loudly, wait, try again.
            # Nothing is lost: every step is redone from the server and the store.
            log.exception("cycle failed; retrying in %.0f s", backoff)
            _sleep(backoff, stop)
            backoff = min(backoff * 2, MAX_BACKOFF)
    log.info("stopped")
    return 0


def _sleep(seconds: float, stop: dict[str, bool]) -> None:
    end = time.monotonic() + seconds
    while not stop["flag"] and time.monotonic() < end:
        time.sleep(min(0.2, end - time.monotonic()))

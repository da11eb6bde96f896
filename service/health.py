"""The desk's health: after each cycle, the heartbeat file (and the optional Prometheus textfile) say
what works; when intake has not succeeded for a while, staff are told once.

The rules are in workflows/health.py; this module keeps the state between cycles (in memory, and in
the heartbeat file, so `once` run by cron continues where the last one left off), queues the alarm
through the outbox (its own store transaction) and writes through the HealthFile port.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from workflows import health as rules
from workflows.calendar import PROGRAM_TZ
from workflows.health import Health, HealthConfig
from workflows.model import OutgoingMail
from workflows.outbox import Status

from .outbox import Outbox
from .ports import HealthFile, Store
from .report import CycleReport

log = logging.getLogger("partnerdesk.health")


class HealthMonitor:
    def __init__(self, *, store: Store, outbox: Outbox, file: HealthFile, config: HealthConfig,
                 staff: frozenset[str], support_name: str, support_address: str,
                 timezone: str = PROGRAM_TZ) -> None:
        self.store = store
        self.outbox = outbox
        self.file = file
        self.config = config
        self.staff = staff
        self.support_name = support_name
        self.support_address = support_address
        self.timezone = timezone  # the alarm mail's times, for people
        try:
            self.state = Health.from_dict(file.read())
        except Exception as e:  # a damaged heartbeat must never stop the desk: start a new record
            log.warning("could not read the heartbeat file (%s); starting a new one", e)
            self.state = Health()

    def intake_result(self, now: datetime, error: Exception | None, report: CycleReport) -> None:
        """After the fetch: record it, queue the alarm (or the all-clear) when due, say so in the problems."""
        was_failing = self.state.intake.state == "failing"
        self.state = rules.after_intake(self.state, now, None if error is None else str(error))
        if error is None and was_failing:
            log.info("intake works again (failing since %s)", self.state.intake.since)
        self.state, mail = rules.alarm(self.state, now, self.config, staff=self.staff, support_name=self.support_name,
                                       support_address=self.support_address, timezone=self.timezone)
        if mail is not None:
            with self.store.transaction():
                if mail.key.startswith("health:intake-ok:"):
                    mail = self._unless_alarm_unsent(mail, now)
                if mail is not None:
                    self.outbox.queue(None, (mail,), now, report)
                    log.warning("told staff: %s", mail.subject)
        problem = rules.intake_problem(self.state, now, self.config)
        if problem is not None:
            if self.state.sending.state == "failing":
                problem += "; SMTP fails too, so that mail waits in the outbox: watch the log or `status`"
            report.problems.append(problem)

    def _unless_alarm_unsent(self, mail: OutgoingMail, now: datetime) -> OutgoingMail | None:
        """The all-clear only follows an alarm that went out; an alarm still queued is called off."""
        key = f"health:intake-down:{mail.key.removeprefix('health:intake-ok:')}"
        entry = self.store.outbox_entry(key)
        if entry is not None and entry.status is Status.SENT:
            return mail
        if entry is not None and entry.status is Status.PENDING:
            self.store.outbox_save(entry.cancel("intake works again before this alarm could be sent", now))
        return None

    def cycle_done(self, now: datetime, report: CycleReport, *, ticks_ok: bool) -> None:
        """At the end of a cycle (also a failed one): the sending state, then the heartbeat file."""
        pending = self.store.outbox(Status.PENDING)
        last_error = next((e.detail for e in sorted(pending, key=lambda e: e.created_at) if e.attempts), "")
        self.state = rules.after_sending(self.state, now, sent=report.counts["sent"],
                                         retried=report.counts["send_retry"], last_error=last_error)
        if ticks_ok:
            self.state = rules.after_ticks(self.state, now)
        self.state = replace(self.state, last_cycle=now)
        try:
            self.file.write(self.state.to_dict())
            if self.file.metrics_wanted:
                self.file.write_metrics(rules.metrics(rules.report(self.state, pending, now, self.config)))
        except OSError as e:  # full disk, wrong path: say it, never stop the desk for it
            report.problems.append(f"could not write the heartbeat or metrics file: {e}")

"""The promise tick: run each cycle after intake, it asks the rules what is due at ``now``
(escalations, auto-closes, the daily digest) and queues it through the outbox, in one store
transaction.

It also provides the send-time check that cancels an escalation queued for a thread answered
since, and a closing mail for a thread the partner reopened since.

It reads no clock and opens nothing: the store and the outbox are passed in.
"""

from __future__ import annotations

import logging
from datetime import datetime

from workflows.autoclose import LifecycleConfig, autoclose
from workflows.digest import DigestConfig, due_digest
from workflows.escalation import LadderConfig, due_escalations, record_fired
from workflows.intake import IntakeSettings
from workflows.lifecycle import State
from workflows.model import Partner, Thread, ThreadEvent
from workflows.outbox import OutboxEntry
from workflows.roster import lapsed_since
from workflows.sla import clock_id, has_clock

from .outbox import Outbox
from .ports import Store
from .report import CycleReport

log = logging.getLogger("partnerdesk.promise")


class PromiseTicks:
    """Keeps the reply-time promise: ``tick(now, report)`` each cycle, ``cancel_reason`` at send time."""

    def __init__(self, *, store: Store, outbox: Outbox, settings: IntakeSettings, ladder: LadderConfig,
                 lifecycle: LifecycleConfig, digest: DigestConfig) -> None:
        self.store = store
        self.outbox = outbox
        self.settings = settings
        self.ladder = ladder
        self.lifecycle = lifecycle
        self.digest = digest

    # -- the tick ---------------------------------------------------------------------
    def tick(self, now: datetime, report: CycleReport) -> None:
        with self.store.transaction():
            partners = {p.id: p for p in self.store.partners()}
            threads = []
            for thread in self.store.threads(open_only=True):  # closed threads have nothing due
                updated = self._thread(thread, now, partners, report)
                if updated is not thread:
                    self.store.save_thread(updated)
                threads.append(updated)
            self._digest(threads, now, partners, report)
        self.outbox.release(now)

    def _thread(self, thread: Thread, now: datetime, partners: dict[str, Partner], report: CycleReport) -> Thread:
        s = self.settings
        cal = s.calendar
        closed, mails = autoclose(thread, now, cal, self.lifecycle, s)
        if closed is not thread:
            report.counts["auto_closed"] += 1
            log.info("auto-closed %s", thread.id)
            return self.outbox.queue(closed, mails, now, report)
        if not has_clock(thread):
            return thread
        partner = partners.get(thread.partner_id or "")
        blocked = frozenset(c.email for c in partner.contacts) if partner else frozenset()
        due = due_escalations(thread, now, self.ladder, cal, partner_name=partner.name if partner else "",
                              request_text=self._latest_partner_text(thread), blocked=blocked)
        if not due:
            return thread
        for mail in due:
            stage = mail.context["stage"]
            for overtaken in mail.context.get("covers", ()):  # fired together with this one
                thread = record_fired(thread, overtaken, now, mail.to)
            thread = record_fired(thread, stage, now, mail.to)
            thread = thread.with_event(ThreadEvent(at=now, kind="stage", by=s.support_address,
                                                   detail=f"{stage} ({mail.context['clock']}, waited "
                                                          f"{mail.context['waited']}) to {', '.join(mail.to)}"))
            report.counts["escalations"] += 1
        return self.outbox.queue(thread, tuple(due), now, report)

    def _latest_partner_text(self, thread: Thread) -> str:
        for mid in reversed(thread.partner_messages):
            rec = self.store.message(mid)
            if rec and rec.get("direction") == "in" and rec.get("text"):
                return rec["text"]
        return ""

    def _digest(self, threads: list[Thread], now: datetime, partners: dict[str, Partner],
                report: CycleReport) -> None:
        cal = self.settings.calendar
        if not self.digest.enabled or not cal.is_open(now):
            return
        day = now.astimezone(cal.tz()).date().isoformat()
        if self.store.digest_day() == day:
            return  # decided today already: at the day's first tick after opening, sent or not
        self.store.set_digest_day(day)
        today = now.astimezone(cal.tz()).date()
        flags = {pid: f"LAPSED since {since.isoformat()}" for pid, p in partners.items()
                 if (since := lapsed_since(p, today, self.settings.lapse_grace_days))}
        mail = due_digest(threads, now, cal, self.digest, self.ladder,
                          partner_names={pid: p.name for pid, p in partners.items()}, flags=flags)
        if mail is not None:
            self.outbox.queue(None, (mail,), now, report)
            report.counts["digests"] += 1

    # -- the send-time check -------------------------------------------------------------
    def cancel_reason(self, entry: OutboxEntry) -> str | None:
        if entry.kind == "escalation" and entry.key.startswith("esc:"):
            # "esc:OA-1:<clock>:<stage>#<recipient>": one copy per staff member (service/outbox.py)
            _, tid, rest = entry.key.partition("#")[0].split(":", 2)
            clock, _, stage = rest.rpartition(":")
            thread = self.store.thread(tid)
            if thread is None:
                return f"thread {tid} no longer exists"
            if not has_clock(thread):
                return f"{tid} was answered (now {thread.state.words}) before the {stage} mail went out"
            if clock_id(thread) != clock:
                return f"{tid} has a newer clock than this {stage} mail"
        if entry.kind == "close" and entry.key.startswith("autoclose:"):
            thread = self.store.thread(entry.thread_id or "")
            if thread is not None and thread.state != State.CLOSED:
                return f"{thread.id} was reopened before its closing mail went out"
        return None

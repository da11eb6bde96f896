"""The outbox: the one way mail goes out, for intake, the promise ticks and the mailings alike.

``queue`` renders each mail a decision asked for and records it, inside the caller's store
transaction, *before* anything is sent; ``drain`` sends what is due and records each result as soon
as the server has answered (in the store's fsynced journal, folded in once per drain), so a crash
mid-mailing resends at most the mail whose answer was not yet recorded, with the same Message-ID.
The retry policy itself is pure: workflows/outbox.py.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Callable, overload

from workflows import outbox as rules
from workflows.model import OutgoingMail, Thread, ThreadEvent
from workflows.outbox import OutboxEntry, Status

from .ports import Composer, MailSender, SendResult, Store
from .report import CycleReport

log = logging.getLogger("partnerdesk.outbox")

PARTNER_FACING = frozenset({"ack", "relay", "close", "command-partner"})
_COUNTS = {"ack": "acks", "notify": "notifications", "relay": "relayed"}

# A check run on each queued mail just before it is sent: a reason cancels it (an escalation for a
# thread answered in the meantime, say).
CancelCheck = Callable[[OutboxEntry], "str | None"]


class Outbox:
    def __init__(self, *, store: Store, composer: Composer, secret: bytes, support_address: str) -> None:
        self.store = store
        self.composer = composer
        self.secret = secret
        self.support_address = support_address
        self.domain = support_address.rpartition("@")[2]
        self.cancel_checks: list[CancelCheck] = []

    # -- into the outbox -------------------------------------------------------------------------------
    def render(self, out: OutgoingMail, *, thread_number: int, now: datetime) -> tuple[str, bytes]:
        """Our Message-ID for ``out`` (deterministic in its key) and the rendered bytes."""
        mid = rules.message_id(self.secret, self.domain, out, thread_number)
        return mid, self.composer.render(out, message_id=mid, date=now)

    def add(self, out: OutgoingMail, message_id: str, raw: bytes, now: datetime, *, thread_id: str | None = None,
            partner_id: str | None = None, mail_from: str | None = None, record: bool = True,
            **message_fields: Any) -> bool:
        """Queue a rendered mail (inside a transaction); False if its key is queued already.

        ``record``: also note the Message-ID as ours, so replies and bounces find their way back.
        """
        sender = rules.envelope_sender(out, self.support_address) if mail_from is None else mail_from
        added = self.store.outbox_add(rules.entry(out, message_id=message_id, raw=raw, now=now, mail_from=sender,
                                                  thread_id=thread_id, partner_id=partner_id))
        if added and record:
            self.store.record_message(message_id, direction="out", thread_id=thread_id, at=now.isoformat(),
                                      kind=out.kind, **message_fields)
        return added

    @overload
    def queue(self, thread: Thread, outgoing: tuple[OutgoingMail, ...], now: datetime,
              report: CycleReport) -> Thread: ...
    @overload
    def queue(self, thread: None, outgoing: tuple[OutgoingMail, ...], now: datetime,
              report: CycleReport) -> None: ...

    def queue(self, thread: Thread | None, outgoing: tuple[OutgoingMail, ...], now: datetime,
              report: CycleReport) -> Thread | None:
        """Render and queue the mail of one decision; returns the thread knowing them.

        ``thread`` None: mail about no single thread (a digest); its Message-ID then names thread 0,
        which no reply can be filed into.
        """
        for out in outgoing:
            mid, raw = self.render(out, thread_number=thread.number if thread else 0, now=now)
            if not self.add(out, mid, raw, now, thread_id=thread.id if thread else out.thread_id, to=list(out.to)):
                continue
            if out.kind == "ack":
                for address in out.to:
                    self.store.remember_sent(address, "ack", now)
            if thread is not None:
                thread = thread.with_message(mid, partner_side=out.kind in PARTNER_FACING)
                thread = thread.with_event(ThreadEvent(at=now, kind=out.kind, message_id=mid, by=self.support_address,
                                                       detail="to " + ", ".join(out.to)))
            report.counts[_COUNTS.get(out.kind, out.kind)] += 1
        return thread

    # -- out of the outbox -------------------------------------------------------------------------------
    def drain(self, sender: MailSender, now: datetime, report: CycleReport) -> None:
        """Send what is queued and due; a cancel check may call a mail off instead."""
        self.store.apply_journal()  # results a crashed run recorded but never folded in
        pending = self.store.outbox(Status.PENDING)
        self._report_stuck(pending, now, report)
        to_send = []
        for e in (e for e in pending if e.due(now)):
            why_not = self.still_wanted(e)
            if why_not:
                with self.store.transaction():
                    self.store.outbox_save(e.cancel(why_not, now))
                report.counts["cancelled"] += 1
            else:
                to_send.append(e)
        if not to_send:
            return
        by_key = {e.key: e for e in to_send}
        done: set[str] = set()

        def record(r: SendResult) -> None:
            # One durable record per result, as soon as it is known: if the process dies in the
            # middle of a large mailing, what was sent is already recorded and is not sent again.
            # Plain results go to the store's journal (an fsynced append, O(1)); a result that
            # queues a new mail needs a real transaction.
            if r.key in done:
                return
            done.add(r.key)
            if r.retry_rcpts and r.status != "transient":
                with self.store.transaction():
                    self._record_result(r, by_key[r.key], now, report, journal=False)
            else:
                self._record_result(r, by_key[r.key], now, report, journal=True)

        for r in sender.send(to_send, on_result=record):  # record() ignores what on_result already recorded
            record(r)
        self.store.apply_journal()

    def still_wanted(self, entry: OutboxEntry) -> str | None:
        for check in self.cancel_checks:
            reason = check(entry)
            if reason:
                return reason
        return None

    def _record_result(self, r: SendResult, entry: OutboxEntry, now: datetime, report: CycleReport, *,
                       journal: bool) -> None:
        after = entry.after_send(r.status, r.detail, now)
        if r.retry_rcpts and r.status != "transient":
            # Refused for now (452 over quota) while the others got it: a copy for just them.
            self.store.outbox_add(entry.copy_for(r.retry_rcpts, now))
            report.counts["send_retry"] += 1
        if journal:
            self.store.journal_progress(after)
        else:
            self.store.outbox_save(after)
        if after.status is Status.SENT:
            report.counts["sent"] += 1
            if r.detail.endswith(".eml"):
                report.written.append(r.detail)
        elif after.held_since is not None:
            if entry.held_since is None:  # newly held; the held line says how many wait in all
                report.counts["held"] += 1
        elif after.status is Status.PENDING:
            report.counts["send_retry"] += 1
        else:
            report.counts["send_failed"] += 1
            report.problems.append(f"could not send {r.key} to {', '.join(entry.rcpt_to)}: {r.detail}")

    @staticmethod
    def _report_stuck(pending: list[OutboxEntry], now: datetime, report: CycleReport) -> None:
        for mark, problem in ((rules.STUCK_MARK, rules.stuck_problem(pending, now)),
                              (rules.HELD_MARK, rules.held_problem(pending))):
            if problem and not any(mark in p for p in report.problems):  # drain runs twice a cycle; say it once
                report.problems.append(problem)


def put_back(store: Store, keys: list[str] | None, now: datetime) -> list[str]:
    """`outbox retry`: failed mail back in the queue (``keys`` None: every failed mail); the next
    cycle sends it. Raises KeyError saying why a key cannot be retried."""
    with store.transaction():
        failed = {e.key: e for e in store.outbox(Status.FAILED)}
        for key in keys or ():
            if key not in failed:
                known = store.outbox_entry(key)
                raise KeyError(f"it is {known.status}, not failed" if known else "no such entry")
        chosen = list(failed) if keys is None else keys
        for key in chosen:
            store.outbox_save(failed[key].put_back(now))
    return chosen

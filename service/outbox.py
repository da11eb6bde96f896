"""The outbox: the one way mail goes out, for intake, the promise ticks and the mailings alike.

``queue`` renders each mail a decision asked for and records it, inside the caller's store
transaction, *before* anything is sent. Once that transaction has committed, ``release`` hands the
new mail to the dispatcher (service/dispatch.py), which sends it at once from a thread of its own,
most urgent first, while the caller goes on; ``submit_due`` hands it whatever else is due (retries).
Each result is recorded as the server answers (in the store's fsynced journal) and ``settle`` folds
the results into the store and the cycle's report, so a crash mid-mailing resends at most the mail
whose answer was not yet recorded, with the same Message-ID. ``drain`` is all of it, waiting for the
end. The retry policy itself is pure: workflows/outbox.py.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import replace
from datetime import datetime
from typing import Any, Callable, Iterator, overload

from workflows import outbox as rules
from workflows.loopbreaker import ANSWER_KINDS
from workflows import replykeys
from workflows.model import OutgoingMail, Thread, ThreadEvent
from workflows.outbox import OutboxEntry, Status
from workflows.proofs import TrustSettings

from .dispatch import Dispatcher
from .ports import Composer, MailSender, SendResult, Store
from .report import CycleReport

log = logging.getLogger("partnerdesk.outbox")

PARTNER_FACING = frozenset({"ack", "relay", "close", "command-partner"})
# Mail to staff goes out one copy per recipient, each with a reply key of its own (workflows/replykeys.py):
# pressing Reply on any of them proves the writer.
STAFF_FACING = frozenset({"notify", "bounce-notice", "delivery-notice", "escalation", "digest", "command", "command-error",
                          "unverified-notice", "mailing-failure", "training-approval", "training-attendance",
                          "training-command"})
_COUNTS = {"ack": "acks", "notify": "notifications", "relay": "relayed"}

# A check run on each queued mail just before it is sent: a reason cancels it (an escalation for a
# thread answered in the meantime, say).
CancelCheck = Callable[[OutboxEntry], "str | None"]


class Outbox:
    def __init__(self, *, store: Store, composer: Composer, secret: bytes, support_address: str,
                 staff: frozenset[str] = frozenset(), trust: TrustSettings = TrustSettings()) -> None:
        self.store = store
        self.composer = composer
        self.secret = secret
        self.support_address = support_address
        self.staff = staff  # everyone recognised as staff: only they get reply keys
        self.trust = trust  # plus-addresses or not, and their delimiter
        self.domain = support_address.rpartition("@")[2]
        self.cancel_checks: list[CancelCheck] = []
        self.dispatcher: Dispatcher | None = None  # set by run.py: mail then leaves while the caller goes on
        self._fresh: list[str] = []  # queued by the transaction in progress, for release()
        self._committed_bytes: dict[str, bytes] = {}  # the rendered bytes of those whose transaction
        # committed (a rolled-back one's never arrive here), handed to the dispatcher with them
        self._live = False  # inside sending(): release() hands mail out at once

    # -- into the outbox -------------------------------------------------------------------------------
    def render(self, out: OutgoingMail, *, thread_number: int, now: datetime) -> tuple[str, bytes]:
        """Our Message-ID for ``out`` (deterministic in its key) and the rendered bytes. Mail to one staff
        member that has no reply key yet (a scheduled mail to staff, one per recipient) gets one here."""
        if out.kind in STAFF_FACING and not out.reply_key and len(out.to) == 1 and out.to[0].strip():
            [keyed] = self.copies(out, thread_number)
            out = replace(keyed, key=out.key)  # its own outbox key already names its one recipient
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
        if added:
            self._fresh.append(out.key)
            with self.store.transaction(after_commit=functools.partial(self._committed_bytes.__setitem__, out.key, raw)):
                pass  # the bytes are the stored ones once the outermost transaction has committed
        if added and record:
            self.store.record_message(message_id, direction="out", thread_id=thread_id, at=now.isoformat(),
                                      kind=out.kind, **message_fields)
        return added

    def copies(self, out: OutgoingMail, thread_number: int) -> tuple[OutgoingMail, ...]:
        """``out`` as it goes out: mail to staff as one copy per recipient, each with its own key
        (outbox key ``<key>#<recipient>``); any other mail as it is."""
        if out.kind not in STAFF_FACING:
            return (out,)
        return tuple(replace(out, key=c.outbox_key, to=(c.recipient,), reply_to=c.reply_to, reply_key=c.token)
                     for c in replykeys.copies(key=out.key, recipients=out.to, staff=self.staff, secret=self.secret,
                                               thread_number=thread_number, support_address=self.support_address,
                                               plus_addresses=self.trust.plus_addresses,
                                               delimiter=self.trust.recipient_delimiter))

    def add_copies(self, out: OutgoingMail, now: datetime, *, thread_number: int = 0, thread_id: str | None = None,
                   record: bool = True, mail_from: str | None = None) -> list[str]:
        """Render and queue ``out`` (one copy per staff recipient); the Message-IDs of the copies newly queued."""
        mids = []
        for copy in self.copies(out, thread_number):
            mid, raw = self.render(copy, thread_number=thread_number, now=now)
            fields: dict[str, Any] = {"to": list(copy.to)} | ({"about": copy.about} if copy.about else {})
            if self.add(copy, mid, raw, now, thread_id=thread_id, mail_from=mail_from, record=record, **fields):
                mids.append(mid)
        return mids

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
            mids = self.add_copies(out, now, thread_number=thread.number if thread else 0,
                                   thread_id=thread.id if thread else out.thread_id)
            if not mids:
                continue
            if out.kind in ANSWER_KINDS:  # the loop breaker counts them (service/automatic.py)
                for address in out.to:
                    self.store.remember_answer(address, now)
            if thread is not None:
                for mid in mids:
                    thread = thread.with_message(mid, partner_side=out.kind in PARTNER_FACING)
                thread = thread.with_event(ThreadEvent(at=now, kind=out.kind, message_id=mids[0],
                                                       by=self.support_address, detail="to " + ", ".join(out.to)))
            report.counts[_COUNTS.get(out.kind, out.kind)] += 1  # once per mail, however many copies
        return thread

    # -- out of the outbox -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def sending(self) -> Iterator[None]:
        """While inside, mail leaves as soon as the write that queued it commits (a cycle, `mailings
        send`); outside, queued mail waits for the next drain, as a tick run on its own expects."""
        self._live, was = self.dispatcher is not None, self._live
        try:
            yield
        finally:
            self._live = was

    def release(self, now: datetime) -> int:
        """Call after the transaction that queued mail has committed: that mail leaves now (a rolled-back
        transaction's mail is not in the store, and is not sent). Returns how many were handed out."""
        keys, self._fresh = self._fresh, []
        rendered, self._committed_bytes = self._committed_bytes, {}
        if self.dispatcher is None or not self._live or not keys:
            return 0
        entries = [e for k in dict.fromkeys(keys) if (e := self.store.outbox_entry(k, bodies=False)) is not None]
        # The bytes just stored go along: the sending thread need not read back what this thread wrote.
        n = self._hand_out([e for e in entries if e.due(now)], now, None, bodies=rendered)
        log.debug("released %d mail(s) to the dispatcher", n)
        return n

    def wait_for_room(self, backlog: int, timeout: float, meanwhile: Callable[[], object] | None = None) -> bool:
        """Let the sending catch up with a large mailing being queued (Dispatcher.wait_for_room). What it
        has sent is folded in by the next chunk's transaction (settle, in the same write). Returns whether
        ``meanwhile`` ran."""
        if self.dispatcher is None or not self._live:
            return False
        return self.dispatcher.wait_for_room(backlog, timeout, meanwhile)

    def submit_due(self, now: datetime, report: CycleReport, dispatcher: Dispatcher | None = None) -> int:
        """Hand the dispatcher whatever is due and not already in its hands (results it has and the store
        does not know yet included: those are settled later, see settle)."""
        d = dispatcher or self.dispatcher
        assert d is not None
        pending = self.store.outbox(Status.PENDING, bodies=False, skip=d.known)
        self._report_stuck(pending, now, report)
        return self._hand_out([e for e in pending if e.due(now)], now, report, d)

    def _hand_out(self, entries: list[OutboxEntry], now: datetime, report: CycleReport | None,
                  dispatcher: Dispatcher | None = None, bodies: dict[str, bytes] | None = None) -> int:
        d = dispatcher or self.dispatcher
        assert d is not None
        to_send = []
        for e in entries:
            why_not = self.still_wanted(e)
            if why_not:
                with self.store.transaction():
                    self.store.outbox_save(e.cancel(why_not, now))
                if report is not None:
                    report.counts["cancelled"] += 1
            else:
                to_send.append(e)
        return d.submit(to_send, bodies)

    def settle(self, report: CycleReport, dispatcher: Dispatcher | None = None) -> int:
        """Fold the results recorded so far into the store (one write) and count them in ``report``.

        Called inside a transaction (a mailing's chunk), the fold is part of that transaction's write: one
        store write for both. The dispatcher forgets the results only once the fold has committed: until
        then the store does not know that mail was sent, and the dispatcher must not hand it out again.
        Returns how many results were settled (none yet inside another transaction: they are when it
        commits)."""
        d = dispatcher or self.dispatcher
        # The results there are now were journaled before this fold takes the journal, so the fold covers
        # them. They are taken only once it has committed: if it rolls back, they stay for the next one.
        mark = d.results_mark() if d is not None else 0
        settled: list[Any] = []

        def folded() -> None:
            if d is None:
                return
            settled.extend(d.take_results(mark))
            d.forget([e.key for e, _, _ in settled])
            for entry, r, after in settled:
                self._count(r, entry, after, report)

        with self.store.transaction(after_commit=folded):
            self.store.apply_journal()  # also what a crashed run recorded but never folded in
        return len(settled)

    def drain(self, sender: MailSender, now: datetime, report: CycleReport) -> None:
        """Send what is queued and due, and wait until it is sent; a cancel check may call a mail off."""
        d = self.dispatcher
        temporary = d is None or d.sender is not sender
        if temporary:
            d = Dispatcher(store=self.store, sender=sender, now=lambda: now)
        assert d is not None
        try:
            self.submit_due(now, report, d)
            d.wait()
        finally:
            if temporary:
                d.close()
        self.settle(report, d)

    def still_wanted(self, entry: OutboxEntry) -> str | None:
        for check in self.cancel_checks:
            reason = check(entry)
            if reason:
                return reason
        return None

    @staticmethod
    def _count(r: SendResult, entry: OutboxEntry, after: OutboxEntry, report: CycleReport) -> None:
        if r.retry_rcpts and r.status != "transient":
            report.counts["send_retry"] += 1  # a copy for the recipients refused for now was queued
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

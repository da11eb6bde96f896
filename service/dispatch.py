"""The sending side of the outbox: a thread that hands queued mail to the sender while the rest of the
program goes on (taking in mail, deciding the next chunk of a mailing).

Mail is only ever given to the dispatcher *after* the store holds it (queued in a committed
transaction). The bytes of mail queued by this process come along with it, up to ``BODY_BUDGET``
bytes in all (reading back what the main thread has just written was a sixth of the sending thread's
work); beyond that, and for mail queued earlier, each mail's bytes are read from the store just before
it is sent. Either way a mailing of 4,000 costs no more memory than one of 400, whatever the server's pace.

Order. Three lanes (workflows/outbox.py ``lane``): partner-facing mail and escalations first, then
mail to staff, then scheduled mailings; within a lane, first queued first sent. Pacing
(``rate_per_minute``) holds back only the last lane, so an acknowledgement never waits behind a
mailing, whatever its size.

Results. The sender reports results in groups (``record``): one journal append and one fsync per
group, durable before ``record`` returns. The main thread folds the journal into the store
(``Outbox.settle``) when it suits it; until then the dispatcher remembers which mail it has handled,
so nothing is handed out twice.

Senders. A sender with ``serve(feed)`` (mailbox/smtp.py) pulls mail from the dispatcher itself,
on as many connections as configured. A plain ``send(entries, on_result)`` sender (the local spool,
test doubles) gets whatever is queued in one call.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from dataclasses import replace
from datetime import datetime
from typing import Any, Callable

from workflows.outbox import BULK, URGENT, OutboxEntry, lane

from .ports import MailSender, SendResult, Store

log = logging.getLogger("partnerdesk.dispatch")

BODY_BUDGET = 8 << 20  # bytes of queued mail held in memory at most (some 800 invitations)


class Dispatcher:
    def __init__(self, *, store: Store, sender: MailSender, now: Callable[[], datetime], bulk_per_minute: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``now``: the rules' clock (results are stamped with it); ``clock``: for pacing."""
        self.store = store
        self.sender = sender
        self.now = now
        self.interval = 60.0 / bulk_per_minute if bulk_per_minute > 0 else 0.0
        self.clock = clock
        self._lock = threading.Condition()
        self._lanes: list[collections.deque[OutboxEntry]] = [collections.deque() for _ in range(3)]
        self._known: set[str] = set()  # queued, in flight, or sent and not yet folded into the store
        self._inflight = 0
        self._urgent_in_flight: set[str] = set()  # partner-facing mail taken by the sender, not yet recorded
        self._done: list[tuple[OutboxEntry, SendResult, OutboxEntry]] = []  # (before, result, after): recorded,
        # not yet counted by the main thread
        self._done_base = 0  # how many results were ever recorded before _done[0]
        self._entries: dict[str, OutboxEntry] = {}
        self._bodies: dict[str, bytes] = {}  # rendered bytes handed over with queued mail (BODY_BUDGET)
        self._body_bytes = 0
        self._next_bulk = 0.0
        self._closing = False
        self._failed: BaseException | None = None
        self._wakers: list[Callable[[], None]] = []
        self._thread: threading.Thread | None = None

    # -- the main thread's side ---------------------------------------------------------------------
    def use(self, sender: MailSender) -> None:
        """Send through ``sender`` from now on (what is under way finishes with the old one first)."""
        if sender is not self.sender:
            self.close(finish=True)
            self.sender = sender

    def submit(self, entries: list[OutboxEntry], bodies: dict[str, bytes] | None = None) -> int:
        """Queue mail the store already holds; mail handed out before (and not folded yet) is skipped.
        ``bodies``: the stored bytes of some of them, by key (kept while within BODY_BUDGET)."""
        added = 0
        with self._lock:
            for e in entries:
                if e.key in self._known:
                    continue
                self._known.add(e.key)
                body = bodies.get(e.key) if bodies else None
                if body is not None and self._body_bytes + len(body) <= BODY_BUDGET:
                    self._bodies[e.key] = body
                    self._body_bytes += len(body)
                self._entries[e.key] = replace(e, raw="")
                self._lanes[lane(e.kind)].append(self._entries[e.key])
                added += 1
            if added:
                self._lock.notify_all()
            wakers = list(self._wakers)
        for wake in wakers:
            wake()
        if added:
            self._start()
        return added

    def known(self, key: str) -> bool:
        with self._lock:
            return key in self._known

    def busy(self) -> bool:
        with self._lock:
            return self._inflight > 0 or any(self._lanes)

    def wait_urgent(self, timeout: float) -> bool:
        """Until the partner-facing mail handed out so far is sent (True), or ``timeout`` passes.

        The caller (the cycle, after taking mail in) would otherwise go on to its ticks at once, and the
        sending thread, which shares the interpreter lock, sent the acknowledgement only when they were
        done: 13 to 130 ms after it was queued. Waiting here holds no lock."""
        deadline = self.clock() + timeout
        with self._lock:
            while (self._lanes[URGENT] or self._urgent_in_flight) and self._failed is None and self._thread is not None:
                left = deadline - self.clock()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.5))
            return not (self._lanes[URGENT] or self._urgent_in_flight)

    def wait_for_room(self, backlog: int, timeout: float, meanwhile: Callable[[], object] | None = None) -> bool:
        """Until fewer than ``backlog`` mailing mails wait to be sent, or ``timeout`` passes (a caller that
        renders a large mailing keeps just ahead of the sending so, instead of taking the processor the
        server and the sending need). ``meanwhile`` runs every quarter second of waiting (the daemon takes
        in new mail there). Paced mailings are not waited for: they take as long as the pace says. Returns
        whether ``meanwhile`` ran."""
        ran = False
        if self.interval:
            return ran
        deadline = self.clock() + timeout
        while True:
            with self._lock:
                if len(self._lanes[BULK]) < backlog or self._failed is not None or self._thread is None:
                    return ran
                left = deadline - self.clock()
                if left <= 0:
                    return ran
                self._lock.wait(min(left, 0.25))
                if len(self._lanes[BULK]) < backlog:
                    return ran
            if meanwhile is not None:
                meanwhile()
                ran = True

    def unsettled(self) -> int:
        with self._lock:
            return len(self._done)

    def wait(self, timeout: float | None = None) -> bool:
        """Until nothing is queued or in flight (True), or ``timeout`` passes; a failure of the sending
        thread is raised here, in the caller's thread."""
        deadline = None if timeout is None else self.clock() + timeout
        with self._lock:
            while (self._inflight or any(self._lanes)) and self._failed is None:
                left = None if deadline is None else deadline - self.clock()
                if left is not None and left <= 0:
                    break
                self._lock.wait(0.5 if left is None else min(left, 0.5))
            self._raise()
            return not (self._inflight or any(self._lanes))

    def results_mark(self) -> int:
        """A mark of the results recorded so far (each durable in the journal already): a fold that takes
        the journal after this call covers every one of them. A failure of the sending thread is raised
        here, in the caller's thread."""
        with self._lock:
            self._raise()
            return self._done_base + len(self._done)

    def take_results(self, upto: int) -> list[tuple[OutboxEntry, SendResult, OutboxEntry]]:
        """The results recorded before ``upto`` (a results_mark) not taken yet, oldest first."""
        with self._lock:
            n = max(0, min(len(self._done), upto - self._done_base))
            done, self._done = self._done[:n], self._done[n:]
            self._done_base += n
            return done

    def forget(self, keys: list[str]) -> None:
        """These results are folded into the store now: the store answers for them again."""
        with self._lock:
            for k in keys:
                self._known.discard(k)
                self._entries.pop(k, None)

    def close(self, *, finish: bool = True) -> None:
        """Stop the thread: after what is queued (``finish``) or after what is in flight."""
        with self._lock:
            if not finish:
                for q in self._lanes:
                    for e in q:
                        self._known.discard(e.key)
                    q.clear()
                self._drop_bodies()
            self._closing = True
            self._lock.notify_all()
            wakers = list(self._wakers)
        for wake in wakers:
            wake()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            self._closing = False
            self._raise()

    def _raise(self) -> None:
        if self._failed is not None:
            # The thread is gone; what it had in hand without a result is simply still pending in the
            # store and goes out at the next submit.
            failed, self._failed = self._failed, None
            done = {e.key for e, _, _ in self._done}
            for q in self._lanes:
                q.clear()
            self._drop_bodies()
            self._inflight = 0
            self._urgent_in_flight.clear()
            self._known = {k for k in self._known if k in done}
            raise failed

    # -- the feed the sender pulls from (any thread) -----------------------------------------------------
    def subscribe(self, wake: Callable[[], None]) -> None:
        with self._lock:
            self._wakers.append(wake)

    def unsubscribe(self, wake: Callable[[], None]) -> None:
        with self._lock:
            if wake in self._wakers:
                self._wakers.remove(wake)

    @property
    def closed(self) -> bool:
        """No more mail will come: the sender may finish once it has nothing in hand."""
        with self._lock:
            return self._closing and not any(self._lanes)

    def next(self) -> tuple[OutboxEntry | None, float]:
        """The next mail to send, its bytes loaded; or None and the seconds until one may be due
        (math.inf: nothing queued)."""
        with self._lock:
            e = self._pop()
            if e is None:
                wait = math.inf
                if self._lanes[BULK]:
                    wait = max(0.0, self._next_bulk - self.clock())
                return None, wait
            self._inflight += 1
            body = self._take_body(e.key)
        if body is None:
            body = self.store.outbox_body(e)
        if body is None:  # pruned or gone: nothing to send; a permanent result says so
            self.record([SendResult(key=e.key, status="permanent", detail="the stored message is gone")])
            return self.next()
        return replace(e, raw=body.decode("ascii")), 0.0

    def _take_body(self, key: str) -> bytes | None:
        """The bytes handed over with mail ``key`` (None if none were), no longer held (under the lock)."""
        body = self._bodies.pop(key, None)
        if body is not None:
            self._body_bytes -= len(body)
        return body

    def _drop_bodies(self) -> None:
        self._bodies.clear()
        self._body_bytes = 0

    def _pop(self) -> OutboxEntry | None:
        for n, q in enumerate(self._lanes):
            if not q:
                continue
            if n == BULK and self.interval:
                now = self.clock()
                if now < self._next_bulk:
                    return None
                self._next_bulk = max(self._next_bulk, now - self.interval) + self.interval
            e = q.popleft()
            if n == URGENT:
                self._urgent_in_flight.add(e.key)
            return e
        return None

    def record(self, results: list[SendResult]) -> None:
        """Durably record results (one journal write and fsync for all of them)."""
        if not results:
            return
        with self._lock:
            entries = [self._entries.get(r.key) for r in results]
        lines, afters = [], []
        for r, e in zip(results, entries):
            if e is None:
                afters.append(None)
                continue
            now = self.now()
            after = e.after_send(r.status, r.detail, now)
            afters.append(after)
            line: dict[str, Any] = {"key": r.key, "fields": after.progress()}
            if r.retry_rcpts and r.status != "transient":
                # Refused for now (452 over quota) while the others got it: a copy for just them,
                # queued when this line is folded in (the same Message-ID, the same stored bytes).
                copy = e.copy_for(tuple(r.retry_rcpts), now).to_dict()
                copy.pop("raw", None)
                line["copy"] = copy
            lines.append(line)
        self.store.journal_results(lines)
        with self._lock:
            for r, e, after in zip(results, entries, afters):
                if e is not None and after is not None:
                    self._done.append((e, r, after))
                    self._inflight -= 1
                    self._urgent_in_flight.discard(r.key)
            self._lock.notify_all()

    def fail_queued(self, detail: str, status: str = "transient") -> None:
        """The server cannot take mail now (or our login lapsed: ``held``): everything still queued gets
        the same result."""
        with self._lock:
            queued = [e for q in self._lanes for e in q]
            for q in self._lanes:
                q.clear()
            for e in queued:  # never sent now: their bytes would only hold the budget for nothing
                self._take_body(e.key)
            self._inflight += len(queued)
        self.record([SendResult(key=e.key, status=status, detail=detail) for e in queued])

    # -- the thread ---------------------------------------------------------------------------------------
    def _start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._run, name="partnerdesk-send", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            serve = getattr(self.sender, "serve", None)
            if serve is not None:
                serve(self)
            else:
                self._run_plain()
        except BaseException as e:  # handed to the main thread (wait, results_mark)
            log.exception("the sending thread failed")
            with self._lock:
                self._failed = e
                self._lock.notify_all()

    def _run_plain(self) -> None:
        while True:
            with self._lock:
                while not any(self._lanes) and not self._closing:
                    self._lock.wait()
                if not any(self._lanes):
                    return
            batch = []
            while (item := self.next())[0] is not None:
                batch.append(item[0])
            if not batch:
                with self._lock:
                    self._lock.wait(0.05)
                continue
            seen: set[str] = set()

            def on_result(r: SendResult) -> None:
                if r.key not in seen:
                    seen.add(r.key)
                    self.record([r])

            for r in self.sender.send(batch, on_result=on_result):
                on_result(r)
            missing = [e for e in batch if e.key not in seen]
            if missing:  # a sender that said nothing about a mail: it stays queued for the next try
                self.record([SendResult(key=e.key, status="transient", detail="no result from the sender")
                             for e in missing])

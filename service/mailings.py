"""Scheduled mailings against the store: the tick, the inbox interceptor, failure reports.

The rules of what is due live in workflows/mailings/; this module records their decisions: the
store and the outbox are passed in, ``now`` is a parameter, nothing here opens a connection or
reads the clock.

Exactly once: each mail's ledger entry and its outbox entry are written in ONE
store transaction, after re-checking the ledger inside it. A crash before the
write leaves nothing (the next tick decides again); after it, the ledger holds
the key and the outbox sends the mail once (drain_outbox records each send as
it happens). Skips are recorded in the ledger with their reason.

What it keeps besides the ledger (through the Store port): welcome requests (asked for by
`partners import`), unsubscribes, RSVPs, and the delivery state of contacts when our SMTP server refuses
a recipient for good (bounces that come back later are filed by service/automatic.py).
"""

from __future__ import annotations

import base64
import hmac
import logging
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator, Mapping

from workflows import msgids
from workflows.automatic import Failure, address_is_bad
from workflows.autoreply import automatic_reason
from workflows.delivery import DeliveryPolicy, DeliveryState, record_failure, staff_told
from workflows.mailings import renewals
from workflows.mailings.calls import calendar_state, call_dates
from workflows.mailings.due import UNSUBSCRIBE_LISTS, Due, outbox_key, settled, split_key, uid_for
from workflows.mailings.plan import due_mailings
from workflows.mailings.types import MailingsConfig
from workflows.model import FROZEN, InboundMail, OutgoingMail
from workflows.trainings.model import TrainingInputs
from workflows.outbox import OutboxEntry, Status

from .outbox import Outbox
from .ports import Store
from .render_ahead import RenderFailed, in_process
from .report import CycleReport

log = logging.getLogger("partnerdesk.mailings")

_STATUS_RE = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")  # an RFC 3463 code in an SMTP reply
_TOKEN_RE = re.compile(r"\bunsubscribe\s+([a-z]+)\.([A-Za-z0-9_-]+)\.([0-9a-f]{16})\b", re.IGNORECASE)
_FOOTER_RE = re.compile(r'with\s+the\s+subject\s+"unsubscribe\s+[^"\s]+"', re.IGNORECASE)  # our footer's words
# What is left of a request once the token is taken out, that still asks for a person: any word of
# three letters or more besides the usual "unsubscribe / please / thanks / stop" courtesy.
_COURTESY = r"(?:unsubscribe|please|pls|thanks|thank|you|stop|remove|from|the|list|this|me|us|and|regards|best)"
_REST_RE = re.compile(rf"\b(?!{_COURTESY}\b)[^\W\d_]{{3,}}", re.IGNORECASE)


SEND_BACKLOG = 300  # mailing mails queued and not yet sent before the next chunk is rendered (unpaced)
SEND_BACKLOG_WAIT = 2.0  # seconds at most per chunk: a slow server delays the tick's other work only so long
QUEUE_CHUNKS = (25, 50, 100, 200)  # mails decided per store write: a small first chunk, so that the
# first mail leaves at once (it is sent while the next chunk is decided), then bigger ones (the last repeats)


@dataclass(**FROZEN)
class RunnerSettings:
    support_address: str
    support_name: str
    staff: frozenset[str]
    config: MailingsConfig
    delivery: DeliveryPolicy = DeliveryPolicy()
    promise: str = ""  # the reply-time promise in words (for the "you now hold a seat" mail)


class MailingRunner:
    def __init__(self, *, store: Store, outbox: Outbox, settings: RunnerSettings, secret: bytes,
                 parse_replies: Callable[[str], list[Any]] | None = None) -> None:
        self.store = store
        self.outbox = outbox
        self.s = settings
        self.secret = secret
        self.domain = settings.support_address.rpartition("@")[2]
        # mailbox.ical.parse_replies, passed in by run.py: reading iCalendar is the adapters' job.
        self.parse_replies = parse_replies
        # Called between two chunks of a large mailing (the daemon takes in new mail there, so a
        # request never waits for a mailing to be decided).
        self.between_chunks: Callable[[], object] | None = None
        self._settled_on: Any = None
        # How a mailing is rendered ahead of storing it (service/render_ahead.py): here by default; run.py
        # gives the daemon a forked renderer, so that sending is not starved while a large mailing renders.
        self.render_ahead: Callable[..., Iterator[tuple[Due, Any]]] = in_process
        # Run before each tick decides (trainings settle their waitlists), so what they change is mailed now.
        self.before_tick: list[Callable[[datetime, CycleReport], object]] = []

    # -- inputs of the plan ------------------------------------------------------------------
    def ledger(self) -> Mapping[str, dict[str, Any]]:
        """What planning reads: the entries it may list, and any other by key (store: ledger_view)."""
        return self.store.ledger_view()

    def training_inputs(self) -> TrainingInputs:
        return TrainingInputs(registrations=tuple(self.store.registrations()), staff=tuple(sorted(self.s.staff)),
                              promise=self.s.promise, support_address=self.s.support_address)

    def plan(self, now: datetime, only: str | None = None) -> tuple[list[Due], list[Due]]:
        return due_mailings(self.store.partners(), self.ledger(), self.s.config, now,
                            welcome_requests=self.store.welcome_requests(), unsubscribed=self.store.unsubscribed(),
                            only=only, delivery=self.store.delivery_states(), trainings_in=self.training_inputs())

    # -- the tick ------------------------------------------------------------------------------
    def tick(self, now: datetime, report: CycleReport, only: str | None = None) -> tuple[int, int]:
        """Queue what is due, record what is skipped; report permanent failures. Returns (queued, skipped)."""
        self.report_failures(now, report)
        self.settle_ledger(now)
        for hook in self.before_tick:
            hook(now, report)
        send, skip = self.plan(now, only)
        skip = [d for d in skip if not d.held]  # decided again next tick (a lapsed partner may renew)
        if skip:
            with self.store.transaction():
                for d in skip:
                    if self.store.ledger(d.key) is None:
                        self.store.record_ledger(d.key, d.ledger_record("skipped", now))
            report.counts["mailings_skipped"] += len(skip)
            for d in skip:
                log.info("skipped %s: %s", d.key, d.reason)
        queued = 0
        i = 0
        ahead = self.render_ahead(self._render_to_store, send, now)
        try:
            n = 0
            while i < len(send):
                size = min(QUEUE_CHUNKS[min(n, len(QUEUE_CHUNKS) - 1)], len(send) - i)
                n += 1
                queued += self._queue_chunk([next(ahead) for _ in range(size)], now, report)
                # What is decided needs no plan any more (each entry holds its mail's words and calendar
                # entry): let it go, so the plan shrinks as the store grows and the peak is not both.
                send[i:i + size] = [None] * size  # type: ignore[list-item]
                i += size
                if i < len(send):
                    # Keep just ahead of the sending: rendering further ahead only takes the processor the
                    # server and the sending need, and holds more mail in memory. New mail is taken in
                    # while waiting too.
                    took_in = self.outbox.wait_for_room(SEND_BACKLOG, SEND_BACKLOG_WAIT,
                                                        meanwhile=self.between_chunks)
                    if self.between_chunks is not None and not took_in:
                        self.between_chunks()
        finally:
            ahead.close()  # a forked renderer is ended and waited for, also on an error
        if queued:
            report.counts["mailings_queued"] += queued
        return queued, len(skip)

    def _queue_chunk(self, chunk: list[tuple[Due, Any]], now: datetime, report: CycleReport) -> int:
        """Store one chunk of rendered mail (one transaction) and hand it to the sender. A mail whose
        rendering failed is reported and left for the next tick without holding up the others."""
        rendered = []
        for d, got in chunk:
            if not isinstance(got, Exception):
                rendered.append((d, got))
                continue
            # Our bug (a template, say): say so, queue the rest.
            if isinstance(got, RenderFailed):  # in the rendering process: its words and where, as text
                kind = got.kind
                log.error("mailing %s could not be rendered: %s: %s\n%s", d.key, kind, got, got.trace)
            else:
                kind = type(got).__name__
                log.error("mailing %s could not be rendered: %s: %s", d.key, kind, got, exc_info=got)
            report.problems.append(f"mailing {d.key} could not be rendered ({kind}: {got}); it is retried at the "
                                   f"next tick")
        queued = 0
        # One transaction per chunk: each mail's ledger and outbox entries exist together or not at
        # all, and nothing is sent before that commit, so a crash here only means deciding again.
        # (One transaction per mail rewrote the store file once per recipient.) Then the chunk
        # leaves while the next one is decided. The same write folds in what the previous chunks have
        # had sent meanwhile (their rows leave the hot store): one rewrite of the store, not two.
        with self.store.transaction():
            self.outbox.settle(report)
            for d, (out, mid, raw) in rendered:
                if self.store.ledger(d.key) is not None:
                    continue  # another process decided it meanwhile
                self.outbox.add(out, mid, raw, now, partner_id=d.partner_id,
                                # bounces come back to us, not to nobody
                                mail_from=self.s.support_address, mailing=d.key, to=[d.recipient])
                self.store.record_ledger(d.key, d.ledger_record("queued", now))
                queued += 1
                report.counts[d.mailing] += 1
        self.outbox.release(now)
        return queued

    def settle_ledger(self, now: datetime) -> int:
        """Once a day: ledger entries no planning will list again leave the hot store (still found by key)."""
        if self._settled_on == now.date():
            return 0
        self._settled_on = now.date()
        keys = [k for k, r in self.store.ledger_view().items() if settled(r, now)]
        if keys:
            with self.store.transaction():
                self.store.archive_ledger(keys)
        return len(keys)

    def outgoing(self, d: Due) -> OutgoingMail:
        context = {"support_name": self.s.support_name, "support_address": self.s.support_address,
                   "unsubscribe": "", **d.context}
        headers: tuple[tuple[str, str], ...] = ()
        if d.list_name:
            token = self.unsubscribe_token(d.list_name, d.recipient)
            subject = f"unsubscribe%20{token}"  # the token is URL-safe already: only the space needs escaping
            headers = (("List-Unsubscribe", f"<mailto:{self.s.support_address}?subject={subject}>"),
                       ("List-Id", f"{UNSUBSCRIBE_LISTS[d.list_name]} <{d.list_name}.{self.domain}>"))
            context["unsubscribe"] = (f"To stop receiving {UNSUBSCRIBE_LISTS[d.list_name]}, send a mail to "
                                      f"{self.s.support_address} with the subject \"unsubscribe {token}\".")
        return OutgoingMail(
            key=outbox_key(d.key), kind=d.mailing, template=d.template, to=(d.recipient,), context=context,
            subject=d.subject, automatic=True, auto_kind="auto-generated", extra_headers=headers,
            calendar=d.event, in_reply_to=d.in_reply_to or None, references=(d.in_reply_to,) if d.in_reply_to else (),
        )

    def render(self, d: Due, now: datetime) -> tuple[OutgoingMail, str, bytes]:
        out = self.outgoing(d)
        mid, raw = self.outbox.render(out, thread_number=0, now=now)
        return out, mid, raw

    def _render_to_store(self, d: Due, now: datetime) -> tuple[OutgoingMail, str, bytes]:
        """``render`` as the tick stores it: what the outbox row keeps of the mail besides its bytes (the
        words it was made from and its calendar entry stay behind: less to pass back from a rendering
        process, less held per chunk)."""
        out, mid, raw = self.render(d, now)
        return replace(out, context={}, calendar=None, extra_headers=()), mid, raw

    # -- send-time check ----------------------------------------------------------------------
    def cancel_reason(self, entry: OutboxEntry) -> str | None:
        """A renewal notice of a term that was paid while it sat in the outbox is not sent."""
        if entry.kind != "renewal" or not entry.key.startswith("mailing:"):
            return None
        _, occ, _ = split_key(entry.key.removeprefix("mailing:"))
        pid, term_end, _ = renewals.term_of_occurrence(occ)
        p = self.store.partner(pid)
        if p is None or not p.active:
            return f"partner {pid} is no longer on the roster"
        if p.renews_on != term_end:
            return f"renewal recorded: {pid} now renews on {p.renews_on}; this notice was for {term_end}"
        return None

    # -- inbound: RSVPs and unsubscribe requests ------------------------------------------------
    def unsubscribe_token(self, list_name: str, address: str) -> str:
        who = base64.urlsafe_b64encode(address.lower().encode()).decode().rstrip("=")
        return f"{list_name}.{who}.{self._mac(list_name, address.lower())}"

    def _mac(self, list_name: str, address: str) -> str:
        return msgids.mac(self.secret, f"unsubscribe:{list_name}:{address}")

    def intercept(self, mail: InboundMail, now: datetime) -> str | None:
        """IntakeService interceptor: calendar replies and unsubscribe requests never become threads (an
        unsubscribe that also asks something does, once recorded). Delivery reports of mailings are
        automatic mail, filed with the contact by service/automatic.py."""
        if mail.calendar_parts and self.parse_replies is not None:
            calls = self._call_uids(now)
            answers = [(calls[a.uid.lower()], a) for text in mail.calendar_parts for a in self.parse_replies(text)
                       if a.uid.lower() in calls]
            if answers:
                for call_id, a in answers:
                    self.store.record_rsvp(a.uid.lower(), a.attendee, {
                        "call_id": call_id, "attendee": a.attendee,
                        "partstat": a.partstat, "sequence": a.sequence, "comment": a.comment,
                        "at": now.isoformat(), "message_id": mail.message_id, "from": mail.from_addr})
                return "rsvp"
        return self._unsubscribe(mail, now)

    def _call_uids(self, now: datetime) -> dict[str, str]:
        """Calendar UID (lower-cased) -> call id, for every call we may have sent an entry of: those in the
        ledger and those in the config (whatever their ids look like: "q1-kickoff" as well as "call-...")."""
        ids = {cid for (cid, _) in calendar_state(self.ledger())}
        ids |= {c.id for c in call_dates(self.s.config.calls, now - timedelta(days=400), now + timedelta(days=400))}
        return {uid_for(cid, self.domain).lower(): cid.lower() for cid in ids}

    def _unsubscribe(self, mail: InboundMail, now: datetime) -> str | None:
        """Honour a token where the person wrote it: the subject (the List-Unsubscribe mailto puts it
        there) or the unquoted text. A reply or out-of-office quoting an invitation's footer carries the
        token too, in quoted text: that is no request. Automatic mail never unsubscribes anyone."""
        if automatic_reason(mail):
            return None
        # reply_text falls back to the whole text when a reply has nothing new; drop ">" quotes anyway,
        # and our own footer sentence (pasted or forwarded without quote marks) is no request either.
        own_text = "\n".join(line for line in mail.reply_text.splitlines() if not line.lstrip().startswith(">"))
        own_text = _FOOTER_RE.sub(" ", own_text)
        m = _TOKEN_RE.search(mail.subject) or _TOKEN_RE.search(own_text)
        if not m:
            return None
        list_name, who, mac = m.group(1).lower(), m.group(2), m.group(3)
        try:
            address = base64.urlsafe_b64decode(who + "=" * (-len(who) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        if list_name not in UNSUBSCRIBE_LISTS or not hmac.compare_digest(self._mac(list_name, address), mac):
            return None
        self.store.record_unsubscribe(list_name, address,
                                      {"at": now.isoformat(), "message_id": mail.message_id, "from": mail.from_addr})
        if _REST_RE.search(_TOKEN_RE.sub(" ", own_text)):
            # More than the request ("... also, our site is down"): recorded, and people read the rest.
            return None
        return "unsubscribed"

    def known_calls(self, now: datetime) -> set[str]:
        """Ids of every call the config or the ledger knows (lower-cased), for naming one on the CLI."""
        return set(self._call_uids(now).values()) | {r["call_id"] for r in self.store.rsvps()}

    def rsvps(self, call_id: str | None = None) -> list[dict[str, Any]]:
        rows = self.store.rsvps()
        return sorted((r for r in rows if call_id is None or r["call_id"] == call_id.lower()),
                      key=lambda r: (r["call_id"], r["attendee"]))

    # -- permanent failures ---------------------------------------------------------------------
    def report_failures(self, now: datetime, report: CycleReport) -> int:
        """Each outbox entry that failed for good: recorded against the contact, reported to staff once."""
        n = 0
        for e in self.store.outbox(Status.FAILED, bodies=False):
            if e.kind == "mailing-failure" or e.failure_reported:
                continue
            with self.store.transaction():
                self._record_failure(e, e.detail, now)
            n += 1
            report.problems.append(f"permanent failure for {', '.join(e.rcpt_to)} ({e.key}): {e.detail}; recorded "
                                   f"against the contact" + (", staff told" if self.s.staff else ""))
        self.outbox.release(now)
        return n

    def _record_failure(self, e: OutboxEntry, detail: str, now: datetime) -> None:
        """Record outbox entry ``e``'s permanent SMTP failure in its recipients' delivery state and tell
        staff once per entry (call inside a transaction; the entry's ``failure_reported`` mark keeps
        staff from hearing twice). The server's words say whether the address or only this mail failed."""
        status = (_STATUS_RE.search(detail) or [None, ""])[1]
        told = bool(self.s.staff) and not e.failure_reported
        counts = []
        for rcpt in e.rcpt_to:
            failure = Failure(address=rcpt.lower(), permanent=address_is_bad(status, detail), gave_up=True,
                              status=status, reason=detail[:200])
            state = record_failure(self.store.delivery_state(rcpt) or DeliveryState(address=rcpt.lower()), failure,
                                   now, self.s.delivery)
            if told and state.staff_told_at is None:
                state = staff_told(state, now)  # the failure report below is this spell's notice
            self.store.save_delivery_state(state)
            counts.append(state.failures)
        if e.failure_reported:
            return
        if told:
            mailing = split_key(e.key.removeprefix("mailing:"))[0] if e.key.startswith("mailing:") else e.kind
            out = OutgoingMail(
                key=f"failure-report:{e.key}", kind="mailing-failure", template="mailing_failure",
                to=tuple(sorted(self.s.staff)), subject=f"Undeliverable: {e.subject}"[:200],
                automatic=True, auto_kind="auto-generated", reply_to_support=False,
                context={"mailing": mailing, "recipient": ", ".join(e.rcpt_to),
                         "partner_id": e.partner_id or "", "subject": e.subject,
                         "detail": detail, "support_name": self.s.support_name,
                         "failures": max(counts, default=1)})
            self.outbox.add_copies(out, now, mail_from="", record=False)  # one per staff member, each keyed
        if self.store.outbox_entry(e.key) is not None:
            self.store.outbox_save(e.reported(now))

    def delivery_states(self) -> dict[str, DeliveryState]:
        return self.store.delivery_states()

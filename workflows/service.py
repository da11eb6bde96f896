"""The intake cycle: move mail between the ports and the rules.

This module owns the *order* of things, which is what makes the daemon safe:

1. a message is parsed and the rules decide;
2. the decision, the updated thread and every mail it causes are written to the
   store in one transaction (one atomic file write), keyed so that a repeat is a no-op;
3. only then is the message marked done on the server;
4. the outbox is drained, each mail marked sent after the server accepted it.

A crash between any two steps loses nothing: step 1-2 is redone from the server,
step 3 is redone on the next pass, step 4 is redone from the outbox (at worst a
mail goes out twice with the same Message-ID, which clients fold into one).

It reads no clock and opens no connection: ``now`` and the adapters are passed in.
"""

from __future__ import annotations

import logging
import traceback
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Callable

from . import msgids, outbox
from .autoreply import automatic_reason
from .calendar import format_due
from .errors import BadInput
from .intake import Candidates, IntakeSettings, bounce, decide
from .model import Decision, InboundMail, OutgoingMail, Thread, ThreadEvent
from .ports import MailSender, MailSource, RawMail, SendResult
from .senders import Roster, classify

log = logging.getLogger("partnerdesk.service")

PARTNER_FACING = frozenset({"ack", "relay", "close", "command-partner"})
# Transient send failures are retried with backoff (capped at one hour) for this long after the
# first one, so an outage overnight or over a weekend loses nothing; only then is a mail failed.
# `run.py outbox retry` puts failed mail back in the queue.
SEND_RETRY_FOR = timedelta(days=3)
SEND_REPORT_AFTER = timedelta(hours=1)  # from then on every cycle says that mail is stuck
BACKOFF = (60, 300, 900, 1800, 3600)  # seconds; the last one repeats
STUCK_MARK = "still not sent"  # marks the one stuck-mail line per cycle


@dataclass
class CycleReport:
    counts: Counter[str] = field(default_factory=Counter)
    written: list[str] = field(default_factory=list)  # where a spool sender put mail, for demo output
    problems: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)  # one line per message taken in: what and why

    def summary(self) -> str:
        c = self.counts
        parts = [
            f"fetched {c['fetched']}",
            f"new threads {c['new_threads']}",
            f"acks {c['acks']}",
            f"notifications {c['notifications']}",
            f"relayed {c['relayed']}",
            f"quarantined {c['quarantined']}",
        ]
        extra = [f"{k.replace('_', ' ')} {c[k]}" for k in ("sent", "send_failed", "duplicates", "history", "skipped",
                                                            "escalations", "auto_closed", "digests", "bounces", "mailings_queued",
                                                            "mailings_skipped", "rsvp", "unsubscribed", "send_retry",
                                                            "cancelled")
                 if c[k]]
        return ", ".join(parts + extra)


def _action_line(raw: RawMail, mail: InboundMail, decision: Decision, thread: Thread, s: IntakeSettings) -> str:
    """One line for people: which mail, from whom, what became of it, what it caused."""
    sender = decision.sender
    who = mail.from_addr or "(no usable sender)"
    if sender is not None:
        facts = [sender.kind] + ([sender.partner_id] if sender.partner_id else [])
        if sender.kind == "partner":
            facts.append("seat" if sender.seat else "no seat")
        who += f" [{', '.join(facts)}]"
    due = f", due {format_due(thread.due_at, s.calendar)}" if thread.due_at else ""
    sends = "; ".join(f"{o.kind} to {', '.join(o.to)}" for o in decision.outgoing) or "nothing sent"
    return f"{raw.source_key}: {who} -> {decision.action} {thread.id}{due} ({decision.reason}); {sends}"


class IntakeService:
    def __init__(
        self,
        *,
        store: Any,
        settings: IntakeSettings,
        parse: Callable[..., InboundMail],
        composer: Any,
        secret: bytes,
        history_cutoff: datetime | None = None,
        interceptors: list[Callable[[InboundMail, datetime], str | None]] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.parse = parse
        self.composer = composer
        self.secret = secret
        self.history_cutoff = history_cutoff
        # Mail that is not a support request (calendar RSVPs, unsubscribe requests) is
        # claimed by these before threading. Each runs inside the intake transaction and
        # returns an action name when it took the mail, None otherwise.
        self.interceptors = list(interceptors or ())
        self.domain = settings.support_address.rpartition("@")[2]

    # -- one inbound message -------------------------------------------------------
    def take_in(self, raw: RawMail, now: datetime, report: CycleReport, source: MailSource | None = None) -> str:
        """Record one message and its consequences durably. Returns the action taken."""
        report.counts["fetched"] += 1
        try:
            mail = self.parse(raw.data, received_at=raw.received_at)
        except BadInput as e:
            return self._quarantine(raw, "bad-input", str(e), now, report, source)
        except Exception as e:  # the parser should never raise anything else: our bug, this mail aside
            log.exception("bug while parsing %s", raw.source_key)
            return self._quarantine(raw, "bug", f"{type(e).__name__} while parsing: {e}\n{traceback.format_exc()}",
                                    now, report, source)
        done = CycleReport()  # counted only if the decision is recorded: a rolled-back one took nothing in
        try:
            with self.store.transaction():
                action = self._decide_and_record(mail, raw, now, done)
        except BadInput as e:
            return self._quarantine(raw, "bad-input", str(e), now, report, source, mail=mail)
        except Exception as e:  # our bug: keep the message, say where, go on with the rest
            log.exception("bug while taking in %s (%s)", raw.source_key, mail.message_id)
            return self._quarantine(raw, "bug", f"{type(e).__name__}: {e}\n{traceback.format_exc()}", now, report,
                                    source, mail=mail)
        report.counts.update(done.counts)
        report.problems += done.problems
        report.actions += done.actions
        if source is not None:
            try:
                source.mark_done(raw)
            except Exception as e:  # recorded already; the next pass dedupes it
                report.problems.append(f"could not mark {raw.source_key} done: {e}")
        return action

    def take_in_many(self, raws: list[RawMail], now: datetime, report: CycleReport,
                     source: MailSource | None = None) -> None:
        """Several messages in one durable write: the store is rewritten once, not once per message.

        Still nothing is marked done or sent before the write. If anything in the
        batch fails, the batch is rolled back and the messages are taken one by one,
        so a single bad message is quarantined alone and never blocks the others.
        """
        if len(raws) <= 1:
            for raw in raws:
                self.take_in(raw, now, report, source)
            return
        batch = CycleReport()
        bad: list[tuple[RawMail, str]] = []
        try:
            with self.store.transaction():
                roster = Roster.build(self.store.partners())  # once per batch, not once per message
                for raw in raws:
                    batch.counts["fetched"] += 1
                    try:
                        mail = self.parse(raw.data, received_at=raw.received_at)
                    except BadInput as e:
                        self._record_quarantine(raw, "bad-input", str(e), now, batch)
                        bad.append((raw, str(e)))
                        continue
                    self._decide_and_record(mail, raw, now, batch, roster)
        except Exception:
            log.warning("a batch of %d messages failed; taking them one at a time", len(raws), exc_info=True)
            for raw in raws:
                self.take_in(raw, now, report, source)
            return
        report.counts.update(batch.counts)
        report.problems += batch.problems
        report.actions += batch.actions
        if source is None:
            return
        bad_keys = {r.source_key for r, _ in bad}
        for raw, reason in bad:
            self._quarantine_on_server(raw, reason, report, source)
        for raw in raws:
            if raw.source_key not in bad_keys:
                try:
                    source.mark_done(raw)
                except Exception as e:  # recorded already; the next pass dedupes it
                    report.problems.append(f"could not mark {raw.source_key} done: {e}")

    def _advance_cursor(self, raw: RawMail) -> None:
        if raw.folder is not None and raw.uidvalidity is not None and raw.uid is not None:
            cur = self.store.cursor(raw.folder)
            if cur is None or cur["uidvalidity"] != raw.uidvalidity or cur["last_uid"] < raw.uid:
                self.store.set_cursor(raw.folder, raw.uidvalidity, raw.uid)

    def _decide_and_record(self, mail: InboundMail, raw: RawMail, now: datetime, report: CycleReport,
                           roster: Roster | None = None) -> str:
        store = self.store
        self._advance_cursor(raw)
        known = store.message(mail.message_id)
        if (known and known.get("direction") == "in" and not store.seen_raw(mail.raw_sha256)
                and (known.get("sender"), known.get("subject")) != (mail.from_addr, mail.subject)):
            # Same Message-ID, different author or subject: a mailer reusing ids, not a second
            # copy. Keep it under an id of its own rather than drop it.
            mail = replace(mail, message_id=f"<{mail.raw_sha256[:32]}.reused-id@partnerdesk.invalid>",
                           defects=mail.defects + (f"Message-ID {mail.message_id} reused by a different mail",))
            known = None
        if (known and known.get("direction") == "in") or store.seen_raw(mail.raw_sha256):
            # The same mail delivered twice (To and Cc), or seen again after a UIDVALIDITY change.
            report.counts["duplicates"] += 1
            report.actions.append(f"{raw.source_key}: duplicate of {mail.message_id}, already taken in")
            return "duplicate"

        for intercept in self.interceptors:
            action = intercept(mail, now)
            if action:
                store.record_raw(mail.raw_sha256, mail.message_id, raw.source_key)
                store.record_message(mail.message_id, direction="in", thread_id=None,
                                     at=mail.received_at.isoformat(), source=raw.source_key, note=action,
                                     sender=mail.from_addr, subject=mail.subject)
                report.counts[action] += 1
                report.actions.append(f"{raw.source_key}: {action} (not a support request)")
                return action

        bounced = self._bounced(mail)
        if bounced is not None:
            thread, rec = bounced
            decision = bounce(mail, thread, rec.get("kind", "mail"), tuple(rec.get("to", ())), self.settings,
                              partner_facing=rec.get("kind") in PARTNER_FACING)
            store.record_raw(mail.raw_sha256, mail.message_id, raw.source_key)
            store.record_message(mail.message_id, direction="in", thread_id=thread.id,
                                 at=mail.received_at.isoformat(), source=raw.source_key, sender=mail.from_addr,
                                 subject=mail.subject, note="delivery report")
            report.counts["bounces"] += 1
            report.actions.append(f"{raw.source_key}: delivery report -> {thread.id}: {decision.reason}")
            store.save_thread(self.queue(decision.thread, decision.outgoing, now, report))
            return "bounce"

        roster = roster or Roster.build(store.partners())
        sender = classify(mail.from_addr, roster, self.settings.recognised_staff)
        by_ref = None
        answers_ours = False
        for ref in mail.thread_refs:
            rec = store.message(ref)
            named = msgids.thread_of_message_id(self.secret, ref)  # one of ours, even if not recorded
            answers_ours = answers_ours or named is not None or (rec is not None and rec.get("direction") == "out")
            tid = rec.get("thread_id") if rec else named
            if by_ref is None and tid and (t := store.thread(tid)) is not None:
                by_ref = t
        tagged_id = msgids.tagged_thread(mail.subject)
        by_tag = store.thread(tagged_id) if tagged_id else None
        own = (known is not None and known.get("direction") == "out") or (
            msgids.thread_of_message_id(self.secret, mail.message_id) is not None
        )
        hour_ago = now - timedelta(hours=1)
        candidates = Candidates(
            by_reference=by_ref,
            by_tag=by_tag,
            next_number=store.peek_thread_number(),
            recent_acks=store.count_outbox_to(mail.from_addr, "ack", hour_ago) if mail.from_addr else 0,
            own_message=own,
            answers_ours=answers_ours,
            now=now,
        )
        history = self.history_cutoff is not None and mail.received_at < self.history_cutoff
        decision = decide(mail, sender, candidates, roster, self.settings, history=history)

        store.record_raw(mail.raw_sha256, mail.message_id, raw.source_key)
        if decision.thread is None:
            report.counts["skipped"] += 1
            log.info("skipped %s: %s", mail.message_id, decision.reason)
            report.actions.append(f"{raw.source_key}: skipped: {decision.reason}")
            store.record_message(mail.message_id, direction="in", thread_id=None, at=mail.received_at.isoformat(),
                                 source=raw.source_key, note=decision.reason)
            return decision.action

        thread = decision.thread
        if decision.action in ("thread-new", "history") and store.thread(thread.id) is None:
            store.allocate_thread_number()
            report.counts["new_threads" if decision.action == "thread-new" else "history"] += 1
        elif decision.action == "history":
            report.counts["history"] += 1
        store.record_message(
            mail.message_id, direction="in", thread_id=thread.id, at=mail.received_at.isoformat(),
            source=raw.source_key, sender=mail.from_addr, subject=mail.subject, text=mail.text[:20000],
            defects=list(mail.defects),
        )
        thread = self.queue(thread, decision.outgoing, now, report)
        store.save_thread(thread)
        log.info("%s %s -> %s (%s)", decision.action, mail.message_id, thread.id, decision.reason)
        report.actions.append(_action_line(raw, mail, decision, thread, self.settings))
        return decision.action

    def _bounced(self, mail: InboundMail) -> tuple[Thread, dict[str, Any]] | None:
        """The thread and our outgoing record a delivery report is about, if it names mail of ours."""
        if not mail.reported_ids or not automatic_reason(mail):
            return None
        for mid in mail.reported_ids:
            rec = self.store.message(mid)
            if rec and rec.get("direction") == "out" and rec.get("thread_id"):
                thread = self.store.thread(rec["thread_id"])
                if thread is not None:
                    return thread, rec
        return None

    def queue(self, thread: Thread | None, outgoing: tuple[OutgoingMail, ...], now: datetime,
              report: CycleReport) -> Thread | None:
        """The one path into the outbox, for intake and ticks alike (escalations, digests).

        Renders and queues each mail inside the caller's ``store.transaction()``; returns the
        thread knowing them. ``thread`` None: mail about no single thread (a digest); its
        Message-ID then names thread 0, which no reply can be filed into.
        """
        for out in outgoing:
            mid, raw = outbox.render(self.composer, self.secret, self.domain, out,
                                     thread_number=thread.number if thread else 0, now=now)
            # RFC 3834: automatic replies go out with a null envelope sender, so nothing bounces back.
            envelope_from = "" if out.auto_kind == "auto-replied" and out.automatic else self.settings.support_address
            added = self.store.outbox_add(outbox.entry(out, message_id=mid, raw=raw, now=now, mail_from=envelope_from,
                                                       thread_id=thread.id if thread else out.thread_id))
            if not added:
                continue
            if out.kind == "ack":
                for address in out.to:
                    self.store.remember_sent(address, "ack", now)
            self.store.record_message(mid, direction="out", thread_id=thread.id if thread else None,
                                      at=now.isoformat(), kind=out.kind, to=list(out.to))
            if thread is not None:
                thread = thread.with_message(mid, partner_side=out.kind in PARTNER_FACING)
                thread = thread.with_event(ThreadEvent(at=now, kind=out.kind, message_id=mid,
                                                       by=self.settings.support_address,
                                                       detail="to " + ", ".join(out.to)))
            report.counts[{"ack": "acks", "notify": "notifications", "relay": "relayed"}.get(out.kind, out.kind)] += 1
        return thread

    def _quarantine(self, raw: RawMail, kind: str, reason: str, now: datetime, report: CycleReport,
                    source: MailSource | None, mail: InboundMail | None = None) -> str:
        with self.store.transaction():
            self._record_quarantine(raw, kind, reason, now, report, mail)
        if source is not None:
            self._quarantine_on_server(raw, reason, report, source)
        return "quarantined"

    def _record_quarantine(self, raw: RawMail, kind: str, reason: str, now: datetime, report: CycleReport,
                           mail: InboundMail | None = None) -> None:
        report.counts["quarantined"] += 1
        first = reason.splitlines()[0] if reason else kind
        report.problems.append(f"quarantined {raw.source_key}: {first}")
        self._advance_cursor(raw)
        self.store.quarantine(raw.source_key, {
            "kind": kind,  # "bad-input": their mail; "bug": ours, with a traceback
            "reason": reason[:20000],
            "at": now.isoformat(),
            "received_at": raw.received_at.isoformat(),
            "message_id": mail.message_id if mail else None,
            "from": mail.from_addr if mail else None,
            "subject": mail.subject if mail else None,
            "size": len(raw.data),
        })

    def _quarantine_on_server(self, raw: RawMail, reason: str, report: CycleReport, source: MailSource) -> None:
        first = reason.splitlines()[0] if reason else "quarantined"
        try:
            source.quarantine(raw, first)
        except Exception as e:
            report.problems.append(f"could not move {raw.source_key} to quarantine on the server: {e}")

    # -- the outbox ------------------------------------------------------------------
    def drain_outbox(self, sender: MailSender, now: datetime, report: CycleReport,
                     wanted: Callable[[dict[str, Any]], str | None] | None = None) -> None:
        """Send what is queued and due. ``wanted(entry)`` may return a reason to cancel an entry instead."""
        self.store.apply_journal()  # results a crashed run recorded but never folded in
        pending = self.store.outbox("pending")
        self._report_stuck(pending, now, report)
        due = [e for e in pending if e.get("next_attempt", "") <= now.isoformat()]
        if not due:
            return
        to_send = []
        for e in due:
            why_not = wanted(e) if wanted else None
            if why_not:
                with self.store.transaction():
                    self.store.outbox_update(e["key"], status="cancelled", detail=why_not, finished_at=now.isoformat())
                report.counts["cancelled"] += 1
            else:
                to_send.append(e)
        done: set[str] = set()
        by_key = {e["key"]: e for e in to_send}

        def record(r: SendResult) -> None:
            # One durable record per result, as soon as it is known: if the process dies in the
            # middle of a large mailing, what was sent is already recorded and is not sent again.
            # Plain results go to the store's journal (an fsynced append, O(1)); a result that
            # queues a new mail needs a real transaction.
            if r.key in done:
                return
            done.add(r.key)
            retry_rcpts = tuple(getattr(r, "retry_rcpts", ()) or ())
            if retry_rcpts and r.status != "transient":
                with self.store.transaction():
                    self._record_result(r, by_key[r.key], retry_rcpts, now, report)
            else:
                self._record_result(r, by_key[r.key], (), now, report, journal=True)

        if to_send:
            results: list[SendResult] = sender.send(to_send, on_result=record)
            for r in results:  # record() ignores what on_result already recorded
                record(r)
        self.store.apply_journal()

    def _record_result(self, r: SendResult, entry: dict[str, Any], retry_rcpts: tuple[str, ...], now: datetime,
                       report: CycleReport, journal: bool = False) -> None:
        update = self.store.journal_outbox_update if journal else self.store.outbox_update
        attempts = int(entry.get("attempts", 0)) + 1
        first_failed = entry.get("first_failed_at") or now.isoformat()
        if retry_rcpts:
            # Refused for now (452 over quota) while the others got it: a copy for just them.
            self._requeue_for(entry, retry_rcpts, f"{r.key}#retry{attempts}", now, first_failed)
            report.counts["send_retry"] += 1
        if r.status == "sent":
            update(r.key, status="sent", sent_at=now.isoformat(), attempts=attempts, detail=r.detail)
            report.counts["sent"] += 1
            if r.detail and r.detail.endswith(".eml"):
                report.written.append(r.detail)
        elif r.status == "transient" and now - datetime.fromisoformat(first_failed) < SEND_RETRY_FOR:
            wait = BACKOFF[min(attempts - 1, len(BACKOFF) - 1)]
            update(r.key, attempts=attempts, detail=r.detail, first_failed_at=first_failed,
                   next_attempt=(now + timedelta(seconds=wait)).isoformat())
            report.counts["send_retry"] += 1
        else:
            update(r.key, status="failed", attempts=attempts, detail=r.detail, finished_at=now.isoformat())
            report.counts["send_failed"] += 1
            report.problems.append(f"could not send {r.key} to {', '.join(entry['rcpt_to'])}: {r.detail}")

    def _requeue_for(self, entry: dict[str, Any], rcpts: tuple[str, ...], key: str, now: datetime,
                     first_failed: str) -> None:
        """Queue a copy of ``entry`` (same message, same Message-ID) for some of its recipients."""
        keep = {k: v for k, v in entry.items() if k not in ("status", "attempts", "detail", "next_attempt",
                                                            "sent_at", "finished_at", "first_failed_at")}
        self.store.outbox_add(keep | {
            "key": key, "rcpt_to": list(rcpts), "created_at": now.isoformat(), "retry_of": entry["key"],
            "first_failed_at": first_failed, "next_attempt": (now + timedelta(seconds=BACKOFF[0])).isoformat(),
        })

    @staticmethod
    def _report_stuck(pending: list[dict[str, Any]], now: datetime, report: CycleReport) -> None:
        """One problem line per cycle while mail has been failing to go out for over SEND_REPORT_AFTER."""
        stuck = [e for e in pending if e.get("first_failed_at")
                 and now - datetime.fromisoformat(e["first_failed_at"]) >= SEND_REPORT_AFTER]
        if not stuck:
            return
        if any(STUCK_MARK in p for p in report.problems):
            return  # drain runs twice a cycle; say it once
        oldest = min(stuck, key=lambda e: e["first_failed_at"])
        give_up = datetime.fromisoformat(oldest["first_failed_at"]) + SEND_RETRY_FOR
        minutes = int(SEND_REPORT_AFTER.total_seconds() // 60)
        report.problems.append(
            f"{len(stuck)} mail(s) {STUCK_MARK} for over {minutes} minutes (oldest {oldest['key']} failing since "
            f"{oldest['first_failed_at']}, last error: {oldest.get('detail', '')}); retrying until "
            f"{give_up.isoformat()}; see `run.py outbox list --status pending`")

"""The intake: move mail between the ports and the rules, in the order that makes the daemon safe.

1. a message is parsed and the rules decide (workflows/intake.py);
2. the decision, the updated thread and every mail it causes are written to the store in one
   transaction (one atomic file write), keyed so that a repeat is a no-op;
3. only then is the message marked done on the server;
4. the outbox is drained (service/outbox.py), each mail marked sent after the server accepted it.

A crash between any two steps loses nothing: step 1-2 is redone from the server, step 3 is redone
on the next pass, step 4 is redone from the outbox (at worst a mail goes out twice with the same
Message-ID, which clients fold into one). It reads no clock and opens no connection: ``now`` and the
adapters are passed in.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any, Callable

from workflows import msgids, refgraph
from workflows.commands import merge_target
from workflows.calendar import format_due
from workflows.errors import BadInput
from workflows.filing import Filing, unattributable
from workflows.intake import Candidates, IntakeSettings, choose, decide
from workflows.model import Decision, InboundMail, Sender, Thread
from workflows.proofs import StaffProof
from workflows.senders import Roster, classify

from .automatic import AutomaticMail
from .outbox import Outbox
from .ports import MailSource, ProofReader, RawMail, Store
from .proof import StaffProofs
from .report import CycleReport

log = logging.getLogger("partnerdesk.intake")

BATCH = 50  # messages per durable store write; nothing is sent or marked done before it
HISTORY_BATCH = 500  # ... when every message of the batch is history (nothing is sent for history)
MERGE_HOPS = 20  # a merged thread points at the one it became; chains longer than this are our bug

# Mail that is not a support request (calendar RSVPs, unsubscribe requests) is claimed by an
# interceptor before threading. Each runs inside the intake transaction and returns an action name
# when it took the mail, None otherwise.
Interceptor = Callable[[InboundMail, datetime], "str | None"]
# What becomes of a message on the server once its record is durable: automatic mail is filed aside,
# mail nobody can be attributed is quarantined (with the reason); the rest is marked done.
Moves = dict[str, tuple[str, str]]


def history_cutoff(store: Store, now: datetime) -> datetime:
    """The first start's moment, recorded once: mail received before it is history (no ack, no clock).

    Whole seconds: INTERNALDATE has no fractions, and mail arriving in the very second of the first
    start counts as new rather than being ignored.
    """
    with store.transaction():
        cutoff = store.history_cutoff()
        if cutoff is None:
            cutoff = now.replace(microsecond=0)
            store.set_history_cutoff(cutoff)
    return cutoff


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


def _filing_line(raw: RawMail, mail: InboundMail, filing: Filing) -> str:
    sends = "; ".join(f"{o.kind} to {', '.join(o.to)}" for o in filing.outgoing) or "nothing sent"
    where = f" {filing.thread.id}" if filing.thread else ""
    return (f"{raw.source_key}: {mail.from_addr or '(no usable sender)'} -> {filing.action}{where} "
            f"({filing.reason}); {sends}")


class IntakeService:
    def __init__(self, *, store: Store, settings: IntakeSettings, parse: Callable[..., InboundMail], outbox: Outbox,
                 secret: bytes, history_cutoff: datetime | None = None,
                 automatic: AutomaticMail | None = None, proofs: ProofReader | None = None,
                 parse_head: Callable[..., InboundMail] | None = None) -> None:
        self.store = store
        self.automatic = automatic or AutomaticMail(store=store, outbox=outbox, settings=settings)
        self.settings = settings
        self.parse = parse
        # Reads the header block only: enough for history that no rule reads the body of (the history
        # import is bounded by parsing, and most of a message is its body).
        self.parse_head = parse_head
        self.outbox = outbox
        self.secret = secret
        self.history_cutoff = history_cutoff
        self.interceptors: list[Interceptor] = []
        # Staff proof: reply keys always; ``proofs`` reads Authentication-Results and DKIM when configured.
        self.staff_proofs = StaffProofs(store=store, secret=secret, settings=settings, reader=proofs,
                                        live_thread=self.live_thread)

    def prove(self, mail: InboundMail) -> StaffProof:
        """Staff proof for mail an interceptor takes (a training command): no thread, so keys of our mail
        about no single thread count (scheduled mail to staff), and what the ProofReader finds."""
        mid, raw = getattr(self, "_raw_now", ("", b""))
        return self.staff_proofs.judge(mail, raw if mid == mail.message_id else b"", None)

    def is_history(self, raw: RawMail) -> bool:
        return self.history_cutoff is not None and raw.received_at < self.history_cutoff

    def _read(self, raw: RawMail) -> InboundMail:
        """Headers first: history whose body no rule reads (not staff, who may write #commands; no
        delivery report, calendar reply or unsubscribe token in it) is read no further."""
        if self.parse_head is not None and self.is_history(raw):
            head = self.parse_head(raw.data, received_at=raw.received_at)
            if not head.body_hint and head.from_addr not in self.settings.recognised_staff:
                return head
        return self.parse(raw.data, received_at=raw.received_at)

    # -- one message -----------------------------------------------------------------------------------
    def take_in(self, raw: RawMail, now: datetime, report: CycleReport, source: MailSource | None = None) -> str:
        """Record one message and its consequences durably. Returns the action taken."""
        report.counts["fetched"] += 1
        try:
            mail = self._read(raw)
        except BadInput as e:
            return self._quarantine(raw, "bad-input", str(e), now, report, source)
        except Exception as e:  # the parser should never raise anything else: our bug, this mail aside
            log.exception("bug while parsing %s", raw.source_key)
            return self._quarantine(raw, "bug", f"{type(e).__name__} while parsing: {e}\n{traceback.format_exc()}",
                                    now, report, source)
        done = CycleReport()  # counted only if the decision is recorded: a rolled-back one took nothing in
        moves: Moves = {}
        try:
            with self.store.transaction():
                action = self._decide_and_record(mail, raw, now, done, moves=moves)
        except BadInput as e:
            return self._quarantine(raw, "bad-input", str(e), now, report, source, mail=mail)
        except Exception as e:  # our bug: keep the message, say where, go on with the rest
            log.exception("bug while taking in %s (%s)", raw.source_key, mail.message_id)
            return self._quarantine(raw, "bug", f"{type(e).__name__}: {e}\n{traceback.format_exc()}", now, report,
                                    source, mail=mail)
        report.merge(done)
        if source is not None:
            self._mark_done(raw, report, source, moves)
        self.outbox.release(now)
        return action

    # -- a batch -----------------------------------------------------------------------------------------
    def take_in_many(self, raws: list[RawMail], now: datetime, report: CycleReport,
                     source: MailSource | None = None) -> None:
        """Several messages in one durable write: the store is rewritten once, not once per message.

        Still nothing is marked done or sent before the write. If anything in the batch fails, the
        batch is rolled back and the messages are taken one by one, so a single bad message is
        quarantined alone and never blocks the others.
        """
        if len(raws) <= 1:
            for raw in raws:
                self.take_in(raw, now, report, source)
            return
        batch = CycleReport()
        bad: list[tuple[RawMail, str]] = []
        moves: Moves = {}
        try:
            with self.store.transaction():
                roster = Roster.build(self.store.partners(), self._today(now))  # once per batch, not per message
                for raw in raws:
                    batch.counts["fetched"] += 1
                    try:
                        mail = self._read(raw)
                    except BadInput as e:
                        self._record_quarantine(raw, "bad-input", str(e), now, batch)
                        bad.append((raw, str(e)))
                        continue
                    self._decide_and_record(mail, raw, now, batch, roster, moves=moves)
        except Exception:
            log.warning("a batch of %d messages failed; taking them one at a time", len(raws), exc_info=True)
            for raw in raws:
                self.take_in(raw, now, report, source)
            return
        report.merge(batch)
        if source is None:
            self.outbox.release(now)
            return
        bad_keys = {r.source_key for r, _ in bad}
        for raw, reason in bad:
            self._quarantine_on_server(raw, reason, report, source)
        done = [raw for raw in raws if raw.source_key not in bad_keys]
        many = getattr(source, "mark_done_many", None)
        if many is not None:  # plain "done" for the batch in one command, not one round trip per message
            plain = [raw for raw in done if moves.get(raw.source_key, ("done", ""))[0] == "done"]
            try:
                if plain:
                    many(plain)
            except Exception as e:  # recorded already; the next pass dedupes them
                report.problems.append(f"could not mark {len(plain)} messages done: {e}")
            done = [raw for raw in done if moves.get(raw.source_key, ("done", ""))[0] != "done"]
        for raw in done:  # automatic mail filed, quarantines: one by one
            self._mark_done(raw, report, source, moves)
        self.outbox.release(now)  # decided, recorded, marked done: now its mail leaves

    def _today(self, now: datetime) -> date:
        return now.astimezone(self.settings.calendar.tz()).date()

    def _mark_done(self, raw: RawMail, report: CycleReport, source: MailSource, moves: Moves) -> None:
        move, reason = moves.get(raw.source_key, ("done", ""))
        if move == "quarantine":
            self._quarantine_on_server(raw, reason, report, source)
            return
        try:
            if move == "automatic":
                source.file_automatic(raw)
            else:
                source.mark_done(raw)
        except Exception as e:  # recorded already; the next pass dedupes it
            report.problems.append(f"could not mark {raw.source_key} done: {e}")

    # -- deciding ----------------------------------------------------------------------------------------
    def _advance_cursor(self, raw: RawMail) -> None:
        if raw.folder is not None and raw.uidvalidity is not None and raw.uid is not None:
            cur = self.store.cursor(raw.folder)
            if cur is None or cur["uidvalidity"] != raw.uidvalidity or cur["last_uid"] < raw.uid:
                self.store.set_cursor(raw.folder, raw.uidvalidity, raw.uid)

    def _record_in(self, mail: InboundMail, raw: RawMail, thread_id: str | None, **fields: Any) -> None:
        self.store.record_raw(mail.raw_sha256, mail.message_id, raw.source_key)
        self.store.record_message(mail.message_id, direction="in", thread_id=thread_id,
                                  at=mail.received_at.isoformat(), source=raw.source_key, **fields)

    def _decide_and_record(self, mail: InboundMail, raw: RawMail, now: datetime, report: CycleReport,
                           roster: Roster | None = None, *, moves: Moves) -> str:
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
            if str((store.message(mail.message_id) or {}).get("note", "")).startswith("automatic:"):
                moves[raw.source_key] = ("automatic", "")  # recorded, but the process died before filing it
            return "duplicate"

        self._raw_now = (mail.message_id, raw.data)  # for ``prove``, asked by interceptors
        for intercept in self.interceptors:
            action = intercept(mail, now)
            if action:
                self._record_in(mail, raw, None, note=action, sender=mail.from_addr, subject=mail.subject)
                report.counts[action] += 1
                report.actions.append(f"{raw.source_key}: {action} (not a support request)")
                return action

        roster = roster or Roster.build(store.partners(), self._today(now))
        sender = classify(mail.from_addr, roster, self.settings.recognised_staff)
        links, answers_ours, unknown = self._ancestors(mail)
        candidates = self._candidates(mail, known, now, links, answers_ours, raw.data, sender)
        history = self.history_cutoff is not None and mail.received_at < self.history_cutoff
        if not (candidates.own_message or mail.from_addr == self.settings.support_address):
            verdict = self.automatic.verdict(mail, sender)
            if verdict.automatic:  # never work: filed with what it is about, or recorded as not-work
                filing = self.automatic.take(mail, verdict, sender, candidates, roster, now, report, history=history)
                self._record_in(mail, raw, filing.thread.id if filing.thread else None, sender=mail.from_addr,
                                subject=mail.subject, note=f"automatic: {verdict.kind}")
                moves[raw.source_key] = ("automatic", "")
                report.actions.append(_filing_line(raw, mail, filing))
                log.info("%s %s (%s)", filing.action, mail.message_id, filing.reason)
                return filing.action
            why = unattributable(mail, verdict)
            if why:
                self._record_quarantine(raw, "bad-input", why, now, report, mail)
                report.actions.append(f"{raw.source_key}: quarantined: {why}")
                moves[raw.source_key] = ("quarantine", why)
                return "quarantined"
            candidates = replace(candidates, judged_work=True)
            if not history:
                candidates = replace(candidates, answer_block=self.automatic.answer_block(mail, sender, verdict, now,
                                                                                         report))
        decision = decide(mail, sender, candidates, roster, self.settings, history=history)

        if decision.thread is None:
            report.counts["skipped"] += 1
            log.info("skipped %s: %s", mail.message_id, decision.reason)
            report.actions.append(f"{raw.source_key}: skipped: {decision.reason}")
            self._record_in(mail, raw, None, note=decision.reason)
            return decision.action

        thread = decision.thread
        if decision.action in ("thread-new", "history") and store.thread(thread.id) is None:
            store.allocate_thread_number()
            report.counts["new_threads" if decision.action == "thread-new" else "history"] += 1
        elif decision.action == "history":
            report.counts["history"] += 1
        self._record_in(mail, raw, thread.id, sender=mail.from_addr, subject=mail.subject, text=mail.text[:20000],
                        defects=list(mail.defects))
        thread = self.outbox.queue(thread, decision.outgoing, now, report)
        if self.staff_proofs.record(mail, decision, now):
            report.counts["unverified"] += 1
        store.save_thread(thread)
        for other in decision.also:  # threads merged into this one
            store.save_thread(other)
            report.counts["merged"] += 1
        store.record_ghosts(thread.id, unknown)
        log.info("%s %s -> %s (%s)", decision.action, mail.message_id, thread.id, decision.reason)
        report.actions.append(_action_line(raw, mail, decision, thread, self.settings))
        return decision.action

    def live_thread(self, thread_id: str | None) -> Thread | None:
        """The thread ``thread_id`` is now: itself, or the thread it was merged into."""
        thread = self.store.thread(thread_id) if thread_id else None
        for _ in range(MERGE_HOPS):
            if thread is None or not thread.merged_into:
                return thread
            thread = self.store.thread(thread.merged_into)
        raise RuntimeError(f"threads merged into each other in a loop around {thread_id}")

    def _ancestors(self, mail: InboundMail) -> tuple[tuple[refgraph.Link, ...], bool, tuple[str, ...]]:
        """Where the mail's ancestors lead (nearest first), whether one is mail of ours, and the ids
        nobody has received (ghosts to remember for the thread the mail joins)."""
        store = self.store
        links: list[refgraph.Link] = []
        unknown: list[str] = []
        answers_ours = False
        live: dict[str, Thread | None] = {}  # a long chain names one thread many times: decode it once
        for ref in refgraph.ancestors(mail):
            rec = store.message(ref)
            named = msgids.thread_of_message_id(self.secret, ref)  # one of ours, even if not recorded
            answers_ours = answers_ours or named is not None or (rec is not None and rec.get("direction") == "out")
            if rec is not None and rec.get("thread_id"):
                tid, via = rec["thread_id"], refgraph.Via.MESSAGE
            elif named is not None:
                tid, via = named, refgraph.Via.OURS
            else:
                tid, via = store.ghost_thread(ref), refgraph.Via.GHOST
                if rec is None:
                    unknown.append(ref)
            if tid and tid not in live:
                live[tid] = self.live_thread(tid)
            if tid and (t := live[tid]) is not None:
                links.append(refgraph.Link(ref=ref, thread=t, via=via))
        # Mail that named this very message before it arrived (the first mail reached us last).
        if (t := self.live_thread(store.ghost_thread(mail.message_id))) is not None:
            links.append(refgraph.Link(ref=mail.message_id, thread=t, via=refgraph.Via.DESCENDANT))
        return tuple(links), answers_ours, tuple(unknown)

    def _candidates(self, mail: InboundMail, known: dict[str, Any] | None, now: datetime,
                    links: tuple[refgraph.Link, ...], answers_ours: bool, raw: bytes, sender: Sender) -> Candidates:
        """The threads the store knows for ``mail`` (by reference, by tag), the counters the rules need, and
        for a staff address, its proof: checked against the thread the mail would join if it were theirs."""
        store = self.store
        tagged_id = msgids.tagged_thread(mail.subject)
        by_tag = store.thread(tagged_id) if tagged_id else None
        own = (known is not None and known.get("direction") == "out") or (
            msgids.thread_of_message_id(self.secret, mail.message_id) is not None)
        target = merge_target(mail.reply_text or mail.text)  # staff "#merge OA-n": the rules check who wrote it
        base = Candidates(
            links=links,
            by_tag=self.live_thread(tagged_id),
            merge_target=self.live_thread(target) if target else None,
            next_number=store.peek_thread_number(),
            recent_acks=store.count_answers(now - timedelta(hours=1), mail.from_addr) if mail.from_addr else 0,
            own_message=own,
            answers_ours=answers_ours,
            now=now,
        )
        if sender.kind != "staff":
            return base
        thread = choose(mail, sender, base).thread or base.by_tag
        return replace(base, **self.staff_proofs.facts(mail, raw, sender, thread, now))

    # -- quarantine ----------------------------------------------------------------------------------------
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

    @staticmethod
    def _quarantine_on_server(raw: RawMail, reason: str, report: CycleReport, source: MailSource) -> None:
        first = reason.splitlines()[0] if reason else "quarantined"
        try:
            source.quarantine(raw, first)
        except Exception as e:
            report.problems.append(f"could not move {raw.source_key} to quarantine on the server: {e}")

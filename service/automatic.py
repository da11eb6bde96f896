"""Automatic mail in the intake, and what keeps our own answers in check.

The intake (service/intake.py) asks ``verdict`` about every message; automatic mail goes to ``take``,
which looks up what the store knows (our mail the message is about, the thread, the delivery states),
asks workflows/filing.py where it belongs, and records that: the not-work record, the thread event,
the delivery states, the staff notices. It never opens a thread and never answers.

``answer_block`` is the loop breaker (workflows/loopbreaker.py) before each automatic answer: per
address, and the global circuit breaker that stops answering unknown senders during a storm and tells
staff once. ``tick`` lets delivery states settle (mail accepted that drew no bounce clears a contact).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from workflows.automatic import Verdict, classify
from workflows.delivery import DeliveryPolicy, roster_updated, settle
from workflows.filing import Filing, FilingSettings, SentMail, file_automatic
from workflows.intake import Candidates, IntakeSettings, choose_thread
from workflows.mailings.due import split_key
from workflows.loopbreaker import LoopPolicy, may_answer, staff_notice, update
from workflows.model import InboundMail, Partner, Sender
from workflows.senders import Roster

from .outbox import Outbox
from .ports import Store
from .report import CycleReport

log = logging.getLogger("partnerdesk.automatic")

HOUR = timedelta(hours=1)
SETTLE_EVERY = timedelta(hours=1)  # delivery states are checked against the outbox at most this often


class AutomaticMail:
    def __init__(self, *, store: Store, outbox: Outbox, settings: IntakeSettings, loop: LoopPolicy = LoopPolicy(),
                 delivery: DeliveryPolicy = DeliveryPolicy()) -> None:
        self.store = store
        self.outbox = outbox
        self.settings = settings
        self.loop = loop
        self.filing = FilingSettings(support_address=settings.support_address, support_name=settings.support_name,
                                     staff=tuple(sorted(settings.staff)), policy=delivery)

    # -- what it is ------------------------------------------------------------------------------------
    @staticmethod
    def verdict(mail: InboundMail, sender: Sender) -> Verdict:
        return classify(mail, person_known=sender.kind == "staff" or sender.on_roster)

    # -- where it goes -----------------------------------------------------------------------------------
    def take(self, mail: InboundMail, verdict: Verdict, sender: Sender, candidates: Candidates, roster: Roster,
             now: datetime, report: CycleReport, *, history: bool = False) -> Filing:
        """File automatic ``mail`` (inside the intake's transaction). Returns what was decided."""
        store = self.store
        ours = self._ours(verdict.about_ids + mail.thread_refs)
        thread = next((t for t in (store.thread(m.thread_id) for m in ours if m.thread_id) if t is not None), None)
        if thread is None:
            thread, _ = choose_thread(mail, sender, candidates)  # by reference, or by a tag it may use
        involved = {f.address for f in verdict.failures} | {a for m in ours for a in m.to} \
            | set(verdict.delivered) | set(verdict.reporters) | ({mail.from_addr} if mail.from_addr else set())
        states = {a: s for a in sorted(involved) if (s := store.delivery_state(a)) is not None}
        filing = file_automatic(mail, verdict, thread=thread, ours=ours, states=states, roster=roster,
                                s=self.filing, history=history)
        for state in filing.delivery:
            store.save_delivery_state(state)
        store.record_automatic(filing.record)
        kept = self.outbox.queue(filing.thread, filing.outgoing, now, report)
        if kept is not None:
            store.save_thread(kept)
        report.counts["automatic"] += 1
        if verdict.kind == "bounce":
            report.counts["bounces"] += 1
        return filing

    def _ours(self, ids: tuple[str, ...]) -> tuple[SentMail, ...]:
        found = []
        for mid in dict.fromkeys(ids):
            rec = self.store.message(mid)
            if rec and rec.get("direction") == "out":
                mailing = rec.get("mailing") or ""
                # Mailings recorded before 0.3 kept no recipients: the ledger key names the one.
                to = tuple(rec.get("to") or ((split_key(mailing)[2],) if mailing else ()))
                found.append(SentMail(message_id=mid, kind=rec.get("kind", "mail"), to=to,
                                      thread_id=rec.get("thread_id"), mailing=mailing))
        return tuple(found)

    # -- the loop breaker ------------------------------------------------------------------------------------
    def answer_block(self, mail: InboundMail, sender: Sender, verdict: Verdict, now: datetime,
                     report: CycleReport) -> str:
        """Why no automatic answer may go to ``mail``'s sender now; "" when one may. Moves the global
        breaker (inside the intake's transaction) and tells staff once when it trips."""
        if verdict.no_auto_answer:
            return f"the sender asks for no automatic answers ({verdict.no_auto_answer})"
        store = self.store
        breaker = store.loop_breaker()
        change = update(breaker, store.count_answers(now - HOUR), now, self.loop)
        if change.breaker != breaker:
            store.set_loop_breaker(change.breaker)
            log.warning("loop breaker: %s", change.note)
            report.problems.append(f"loop breaker: {change.note}")
        if change.tell_staff and self.filing.staff:
            self.outbox.queue(None, (staff_notice(change, self.loop, staff=self.filing.staff,
                                                  support_name=self.settings.support_name,
                                                  support_address=self.settings.support_address),), now, report)
        if not mail.from_addr:
            return ""
        check = may_answer(to_address_last_hour=store.count_answers(now - HOUR, mail.from_addr),
                           sender_known=sender.kind != "unknown", breaker=change.breaker, policy=self.loop)
        return check.reason

    # -- delivery states settle ---------------------------------------------------------------------------
    def tick(self, now: datetime, report: CycleReport) -> None:
        """Clear contacts whose mail, accepted after their last failure, drew no bounce for [delivery]
        settle_days. At most hourly: it reads the whole outbox."""
        store = self.store
        last = store.delivery_settled_at()
        if last is not None and now - last < SETTLE_EVERY:
            return
        pending = {a: s for a, s in store.delivery_states().items() if s.failures and s.last_failure_at}
        if not pending:
            return
        with store.transaction():
            # The first mail accepted after the last failure: if it drew no bounce for settle_days, the
            # address works (the latest one may be too recent to tell, and would hold the contact back).
            accepted = store.first_accepted_after({a: s.last_failure_at for a, s in pending.items()})
            for address, state in pending.items():
                if address in accepted:
                    new = settle(state, accepted[address], now, self.filing.policy)
                    if new != state:
                        store.save_delivery_state(new)
                        report.actions.append(f"delivery: {address} clear again ({new.cleared_why})")
            store.set_delivery_settled_at(now)


def roster_changed(store: Store, old: Partner | None, new: Partner, now: datetime) -> list[str]:
    """A roster import changed ``new``'s contacts: those whose row changed start from nothing known
    (call inside the import's transaction). Returns the addresses cleared."""
    before = {c.email: c for c in (old.contacts if old else ())}
    cleared = []
    for c in new.contacts:
        if before.get(c.email) == c:
            continue  # the same row again proves nothing about the mailbox
        state = store.delivery_state(c.email)
        if state is not None and (state.failures or state.bouncing):
            store.save_delivery_state(roster_updated(state, now))
            cleared.append(c.email)
    return cleared


"""Staff proof in the intake: is a staff-looking mail really its writer's, and what it confirms.

IntakeService calls ``facts`` while it gathers the candidates for the rules (workflows/intake.py), and
``record`` once the rules have decided. The rules judge (workflows/staffproof.py); this only fetches
what they judge: the reply key checked against the thread the mail would join, and, when that is not
enough, what the ProofReader port finds in the raw bytes (our own server's Authentication-Results,
partnerdesk's own DKIM check). The reader is asked only then: a DKIM check costs a DNS lookup.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Callable

from workflows import msgids, replykeys, unverified
from workflows.intake import IntakeSettings
from workflows.model import Decision, InboundMail, Sender, Thread
from workflows.staffproof import StaffProof, judge

from .ports import ProofReader, Store

log = logging.getLogger("partnerdesk.proof")


class StaffProofs:
    def __init__(self, *, store: Store, secret: bytes, settings: IntakeSettings,
                 reader: ProofReader | None = None,
                 live_thread: Callable[[str], Thread | None] | None = None) -> None:
        self.store = store
        # The thread an id stands for now (itself, or the thread it was merged into): keys minted for a
        # thread merged into another still prove their holder there.
        self.live_thread = live_thread or store.thread
        self.secret = secret
        self.settings = settings
        self.reader = reader

    def facts(self, mail: InboundMail, raw: bytes, sender: Sender, thread: Thread | None,
              now: datetime) -> dict[str, Any]:
        """The Candidates fields about proof for ``mail``, which would join ``thread`` (None: a new one)."""
        if sender.kind != "staff":
            return {}
        proof = self.judge(mail, raw, thread)
        answers, held = self._notice_answered(mail)
        per_thread, overall = unverified.rate_kinds(thread.id if thread else "")
        since = now - unverified.NOTICE_EVERY
        return {
            "staff_proof": proof,
            "answers_notice": answers,
            "held": held,
            "notices_in_thread": self.store.count_sent_to(mail.from_addr, per_thread, since) if thread else 0,
            "notices_to_sender": self.store.count_sent_to(mail.from_addr, overall, since),
        }

    def judge(self, mail: InboundMail, raw: bytes, thread: Thread | None) -> StaffProof:
        s = self.settings
        merged: dict[int, Thread] = {}
        for found in replykeys.found_keys(mail, s.support_address, delimiter=s.recipient_delimiter):
            k = replykeys.parse(found.token)
            if thread is None or k is None or k.thread_number in (0, thread.number) or k.thread_number in merged:
                continue
            old = self.store.thread(msgids.thread_id(k.thread_number))
            if old is not None and old.merged_into and (live := self.live_thread(old.id)) and live.id == thread.id:
                merged[k.thread_number] = old
        refused = frozenset(thread.refused_keys if thread else ()).union(*(t.refused_keys for t in merged.values()))
        key = replykeys.check(mail, secret=self.secret, thread_number=thread.number if thread else None,
                              staff=s.recognised_staff, support_address=s.support_address, refused=refused,
                              delimiter=s.recipient_delimiter, merged=frozenset(merged))
        authresults = dkim = None
        if not key.proven and self.reader is not None:
            authresults, dkim = self.reader.read(raw)
        proof = judge(from_addr=mail.from_addr, staff=s.recognised_staff, key=key, authresults=authresults,
                      dkim=dkim)
        log.debug("%s from %s: %s", mail.message_id, mail.from_addr,
                  proof.how if proof.proven else "not proven: " + "; ".join(proof.reasons))
        return proof

    def _notice_answered(self, mail: InboundMail) -> tuple[bool, InboundMail | None]:
        """Does ``mail`` answer one of our unverified-mail notices, and which held mail, not yet sent on, is that?"""
        for ref in mail.thread_refs:
            rec = self.store.message(ref)
            if rec is None or rec.get("direction") != "out" or rec.get("kind") != unverified.NOTICE_KIND:
                continue
            held_id = rec.get("about") or ""
            held = self.store.unverified_mail(held_id) if held_id else None
            if held is None or held.get("released_at"):
                return True, None
            return True, unverified.held_mail(held_id, held)
        return False, None

    def record(self, mail: InboundMail, decision: Decision, now: datetime) -> bool:
        """After the decision, in the same transaction: hold unverified mail, release confirmed mail,
        count the notices (the hourly limits). True when ``mail`` was held as unverified."""
        thread = decision.thread
        if thread is None:
            return False
        held = decision.action != "history" and any(e.kind == "unverified" and e.message_id == mail.message_id
                                                    for e in thread.events)
        if held:
            self.store.hold_unverified(mail.message_id, unverified.held_record(mail, thread.id, now))
        if decision.released:
            self.store.release_unverified(decision.released, at=now, by=mail.message_id)
        for out in decision.outgoing:
            if out.kind == unverified.NOTICE_KIND:
                for kind in unverified.rate_kinds(thread.id):
                    for address in out.to:
                        self.store.remember_sent(address, kind, now)
        return held


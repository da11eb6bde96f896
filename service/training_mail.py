"""Training mail coming in: replies to announcements and confirmations, calendar answers, staff commands.

An IntakeService interceptor (it runs inside the intake's transaction, before threading):

* a calendar REPLY for a course (UID = the course id): ACCEPTED registers the attendee, DECLINED
  cancels their registration; every answer is recorded as an RSVP (`mailings rsvps ID`);
* a partner's reply to training mail of ours: understood by workflows/trainings/replies.py (register
  or cancel, for whom) and applied; a reply that also asks something goes on to staff as a thread too;
* a staff mail whose first line is #approve / #decline (on an approval request), #attended / #absent
  (on the attendance sheet, or naming the course): applied, and the staff member gets a short answer.

Anything unclear is left alone: it becomes a normal support thread for staff, as any mail does.
"""

from __future__ import annotations

import email
import email.policy
import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Callable

from workflows import unverified
from workflows.autoreply import automatic_reason
from workflows.errors import BadInput
from workflows.mailings.due import outbox_key, split_key
from workflows.model import FROZEN, InboundMail, OutgoingMail
from workflows.senders import Roster, classify
from workflows.trainings import schedule
from workflows.intake import IntakeSettings
from workflows.trainings.model import Status
from workflows.trainings.notices import promise_words
from workflows.trainings.replies import STAFF_COMMANDS, StaffCommand, our_lines, parse_staff_command, understand

from workflows.proofs import StaffProof

from .intake import IntakeService, Interceptor
from .mailings import MailingRunner
from .outbox import Outbox
from .ports import Store
from .trainings import Outcome, Trainings

log = logging.getLogger("partnerdesk.trainings")


@dataclass(**FROZEN)
class TrainingMailSettings:
    support_address: str
    support_name: str
    staff: frozenset[str]  # recognised staff: their #commands count


class TrainingMail:
    def __init__(self, *, store: Store, outbox: Outbox, trainings: Trainings, settings: TrainingMailSettings,
                 parse_replies: Callable[[str], list[Any]] | None = None,
                 prove: Callable[[InboundMail], StaffProof] | None = None) -> None:
        self.store = store
        # Whether a staff address's mail is really theirs; None: nothing is proven, no command runs.
        self.prove = prove
        self.outbox = outbox
        self.trainings = trainings
        self.s = settings
        self.domain = settings.support_address.rpartition("@")[2]
        self.parse_replies = parse_replies  # mailbox.ical.parse_replies, handed in by run.py

    def intercept(self, mail: InboundMail, now: datetime) -> str | None:
        if automatic_reason(mail):
            return None  # out-of-office answers to an announcement register nobody
        if mail.calendar_parts and self.parse_replies is not None:
            action = self._calendar(mail, now)
            if action:
                return action
        ref = self._reference(mail)
        if mail.from_addr in self.s.staff:
            cmd = parse_staff_command(mail.reply_text or mail.text)
            if cmd is None or (ref is None and not cmd.training_id and cmd.name in ("approve", "decline")
                               and not self._about_trainings(mail)):
                return None  # an ordinary staff mail (thread commands are the intake's)
            proof = self.prove(mail) if self.prove is not None else None
            if proof is None or not proof.proven:
                return self._unproven(mail, cmd, proof, now)
            self._answer_staff(mail, cmd, ref, now, how=proof.how)
            return "training-command"
        if ref is None:
            return None
        return self._partner_reply(mail, ref, now)

    # -- which training mail of ours a reply answers -------------------------------------------------------------
    def _reference(self, mail: InboundMail) -> dict[str, Any] | None:
        """The ledger record of our training mail that ``mail`` replies to, if any."""
        for ref in mail.thread_refs:
            rec = self.store.message(ref)
            key = rec.get("mailing") if rec and rec.get("direction") == "out" else None
            if not key or not split_key(key)[0].startswith("training-"):
                continue
            entry = self.store.ledger(key)
            if entry and entry.get("training_id"):
                return {**entry, "key": key}
        return None

    def _our_lines(self, ref: dict[str, Any]) -> frozenset[str]:
        """The text of the mail of ours a reply answers, line by line (its outbox copy)."""
        entry = self.store.outbox_entry(outbox_key(ref["key"]))
        if entry is None or not entry.raw:
            return frozenset()
        try:
            msg = email.message_from_string(entry.raw, policy=email.policy.default)
            body = msg.get_body(("plain",))
            return our_lines(body.get_content() if body is not None else "")
        except Exception:  # our own mail; if it cannot be read back, compare nothing
            return frozenset()

    @staticmethod
    def _about_trainings(mail: InboundMail) -> bool:
        return "training" in mail.subject.lower()

    # -- calendar answers -------------------------------------------------------------------------------------------
    def _calendar(self, mail: InboundMail, now: datetime) -> str | None:
        answers = []
        for text in mail.calendar_parts:
            for a in self.parse_replies(text):  # type: ignore[misc]
                tid = schedule.training_of_uid(a.uid, self.domain)
                if tid.startswith("training") or schedule.find(self.trainings.config.trainings, tid):
                    answers.append((tid, a))
        if not answers:
            return None
        roster = Roster.build(self.store.partners())
        for tid, a in answers:
            self.store.record_rsvp(a.uid.lower(), a.attendee, {
                "call_id": tid, "attendee": a.attendee, "partstat": a.partstat, "sequence": a.sequence,
                "comment": a.comment, "at": now.isoformat(), "message_id": mail.message_id, "from": mail.from_addr})
            who = classify(a.attendee, roster, self.s.staff)
            if who.kind != "partner":
                log.info("calendar answer for %s from %s, who is no partner's: left for staff", tid, a.attendee)
                return None
            reg = self.store.registration(tid, a.attendee)
            try:
                if a.partstat == "ACCEPTED" and not (reg and (reg.live or reg.status is Status.ATTENDED)):
                    done = self.trainings.register(tid, [(a.attendee, mail.from_name if a.attendee == mail.from_addr
                                                          else "")], by=a.attendee, via="calendar", now=now,
                                                   partner_id=who.partner_id or "", message_id=mail.message_id)
                    if not any(o.ok for o in done):
                        return None  # could not be placed (not on the roster and no partner): for staff
                elif a.partstat == "DECLINED" and reg is not None and reg.live:
                    self.trainings.cancel(tid, [a.attendee], by=a.attendee, via="calendar", now=now,
                                          message_id=mail.message_id)
            except BadInput as e:  # the course started, or is gone: recorded; staff read it
                log.info("calendar answer for %s from %s not applied: %s", tid, a.attendee, e)
                return None
        return "training-rsvp"

    # -- a partner's reply ------------------------------------------------------------------------------------------
    def _partner_reply(self, mail: InboundMail, ref: dict[str, Any], now: datetime) -> str | None:
        tid = ref["training_id"]
        roster = Roster.build(self.store.partners())
        sender = classify(mail.from_addr, roster, self.s.staff)
        if sender.kind != "partner" or not sender.partner_id:
            return None
        partner = roster.partners[sender.partner_id]
        intent = understand(mail.reply_text or mail.text, sender=mail.from_addr, contacts=partner.contacts,
                            ignore=frozenset({self.s.support_address}) | self.s.staff,
                            ours=self._our_lines(ref))
        if intent.action == "unclear":
            log.info("reply about %s from %s left for staff: %s", tid, mail.from_addr, intent.reason)
            return None
        names = dict(intent.names)
        for a in intent.addresses:  # who may ask for whom: themselves; colleagues only from the roster
            owner = roster.by_email.get(a)
            if owner is not None and owner.partner_id != partner.id:
                return None
            if a != mail.from_addr and not sender.on_roster:
                return None
        try:
            if intent.action == "register":
                if mail.from_addr not in names and sender.contact_name:
                    names[mail.from_addr] = sender.contact_name
                names.setdefault(mail.from_addr, mail.from_name)
                done = self.trainings.register(tid, [(a, names.get(a, "")) for a in intent.addresses],
                                               by=mail.from_addr, via="reply", now=now, partner_id=partner.id,
                                               message_id=mail.message_id)
            else:
                done = self.trainings.cancel(tid, intent.addresses, by=mail.from_addr, via="reply", now=now,
                                             message_id=mail.message_id)
        except BadInput as e:
            log.info("reply about %s from %s left for staff: %s", tid, mail.from_addr, e)
            return None
        if not any(o.ok for o in done):
            return None  # nothing changed ("register me" from someone registered): staff answer the mail
        log.info("reply about %s from %s: %s", tid, mail.from_addr, "; ".join(f"{o.address} {o.text}" for o in done))
        return None if intent.question else "training-reply"

    # -- staff commands ---------------------------------------------------------------------------------------------
    def _unproven(self, mail: InboundMail, cmd: StaffCommand, proof: StaffProof | None, now: datetime) -> str:
        """A training command from a staff address without proof: not applied; that address is told (at most
        NOTICES_PER_HOUR an hour) to answer the training mail itself, whose reply key proves them."""
        why = "; ".join(proof.reasons) if proof is not None else "staff proof is not available here"
        log.warning("training command %r from %s not applied: not proven (%s)", mail.subject, mail.from_addr, why)
        since = now - unverified.NOTICE_EVERY
        if self.store.count_sent_to(mail.from_addr, unverified.NOTICE_KIND, since) < unverified.NOTICES_PER_HOUR:
            self.store.remember_sent(mail.from_addr, unverified.NOTICE_KIND, now)
            self._reply(mail, cmd, "", now, problem=(
                f"NOT applied: we could not verify that you sent it ({why}). Press Reply on our training mail "
                f"(the approval request or the attendance sheet) and write the command there: its reply address "
                f"proves it is you."))
        return "training-unverified"

    def _answer_staff(self, mail: InboundMail, cmd: StaffCommand, ref: dict[str, Any] | None, now: datetime,
                      how: str = "") -> None:
        by = mail.from_addr
        tid = cmd.training_id or (ref or {}).get("training_id", "")
        results: list[Outcome] = []
        problem = ""
        try:
            if cmd.name in ("approve", "decline"):
                if ref is None or ref.get("mailing") != "training-approval":
                    problem = f"#{cmd.name} answers an approval request: reply to that mail"
                else:
                    address = split_key(ref["key"])[1].split("/")[1]
                    results = [self.trainings.decide(tid, address, approve=cmd.name == "approve", by=by,
                                                     via="staff-mail", now=now, message_id=mail.message_id,
                                                     note=cmd.text if cmd.name == "decline" else "")]
            elif not tid:
                problem = (f"#{cmd.name} needs the course: reply to the attendance sheet, or write "
                           f"#{cmd.name} TRAINING-ID ADDRESS...")
            elif cmd.name == "attended":
                if not cmd.addresses and not cmd.everyone:
                    problem = "#attended needs addresses, or 'all' for everyone confirmed"
                else:
                    results = self.trainings.attended(tid, None if cmd.everyone else cmd.addresses, by=by,
                                                      via="staff-mail", now=now)
            elif not cmd.addresses:
                problem = "#absent needs the addresses of who did not attend"
            else:
                results = self.trainings.absent(tid, cmd.addresses, by=by, via="staff-mail", now=now)
        except BadInput as e:
            problem = str(e)
        self._reply(mail, cmd, tid, now, problem=problem, results=results)
        log.info("staff command %r from %s (proven by %s): %s", cmd.line, by, how or "-",
                 problem or "; ".join(o.text for o in results))

    def _reply(self, mail: InboundMail, cmd: StaffCommand, tid: str, now: datetime, *, problem: str,
               results: list[Outcome] | None = None) -> None:
        by = mail.from_addr
        results = results or []
        out = OutgoingMail(
            key=f"training-cmd:{mail.message_id}", kind="training-command", template="training_command",
            to=(by,), subject=("Re: " + mail.subject if not mail.subject.lower().startswith("re:") else mail.subject)
            or f"#{cmd.name}", in_reply_to=mail.message_id, references=(mail.message_id,),
            from_name=self.s.support_name, auto_kind="auto-replied",
            context={"line": cmd.line, "training_id": tid, "problem": problem, "support_name": self.s.support_name,
                     "results": [{"address": o.address, "ok": o.ok, "text": o.text} for o in results],
                     "valid": list(STAFF_COMMANDS.values())})
        mid, raw = self.outbox.render(out, thread_number=0, now=now)
        self.outbox.add(out, mid, raw, now, record=True, to=[by])


def training_desk(mailings: MailingRunner, outbox: Outbox, intake: IntakeService | IntakeSettings
                  ) -> list[Interceptor]:
    """Trainings into a desk (run.py): waitlists settled before each mailings tick, so what they change is
    mailed in the same cycle; the seat mail states the promise of the [sla] calendar; queued training mail
    no longer wanted is called off at send time. Returns the interceptor for the intake (after the
    mailings' own: calendar answers for calls and unsubscribe requests are theirs)."""
    # Given the intake service, staff commands by mail count only with staff proof (service/proof.py).
    prove = intake.prove if isinstance(intake, IntakeService) else None
    intake = intake.settings if isinstance(intake, IntakeService) else intake
    trainings = Trainings(store=mailings.store, config=mailings.s.config)
    mailings.s = replace(mailings.s, promise=promise_words(intake.calendar))
    mailings.before_tick.append(trainings.tick)
    outbox.cancel_checks.append(trainings.cancel_reason)
    mail = TrainingMail(store=mailings.store, outbox=outbox, trainings=trainings, parse_replies=mailings.parse_replies,
                        prove=prove,
                        settings=TrainingMailSettings(support_address=intake.support_address,
                                                      support_name=intake.support_name,
                                                      staff=intake.recognised_staff))
    return [mail.intercept]

"""Automatic mail filed where it belongs. Pure: one message, its verdict and what the store knows in;
a Filing out.

Automatic mail (workflows.automatic: bounces, feedback reports, read receipts, calendar replies,
auto-replies, bulk mail) is never work: it opens no thread, is never answered, never notified to staff
as a request and never escalated. What it is about decides where it is filed:

- about mail of ours in a thread (a bounce of an acknowledgement or a relayed answer, an out-of-office
  answering one), or naming a thread by reference: an event in that thread; state and clock unchanged;
- about other mail of ours (a mailing, a digest): filed with the contact that mail went to;
- about nothing of ours: recorded as not-work (``automatic list``), nothing else.

Bounces move the delivery state of the addresses they name (workflows.delivery), for our recipients
and roster contacts only (a bounce about mail we never sent to anyone we know is backscatter). When
mail that matters did not arrive, staff hear it once per contact and bouncing spell, with the
partner's other contacts. Evidence that our mail arrived (a success report, a read receipt, an
auto-reply from the very address) clears a contact's state.

``set_aside`` is the upgrade's rule for threads that 0.1.0 opened for automatic mail.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import lifecycle, msgids
from .automatic import Failure, Verdict, classify
from .delivery import DeliveryPolicy, DeliveryState, bounce_notice, failed_recipients, record_delivered, \
    record_failure, should_tell_staff, staff_told
from .lifecycle import Event
from .model import FROZEN, InboundMail, OutgoingMail, Thread, ThreadEvent
from .senders import Roster

# Kinds of our mail whose bounce is about a staff mailbox: recorded, never reported (reporting a bounce
# of mail to staff to staff could bounce again, forever).
TO_STAFF = frozenset({"notify", "escalation", "digest", "command", "command-error", "delivery-notice",
                      "loop-breaker", "mailing-failure", "bounce-notice", "unverified-notice", "training-approval",
                      "training-attendance", "training-command", "health"})
_WORDS = {"mail": "mail (the report does not say which)", "ack": "acknowledgement", "relay": "relayed answer", "close": "closing mail", "renewal": "renewal notice",
          "call-invite": "call invitation", "call-update": "call update", "invitation": "invitation",
          "channel-info": "channel information"}


@dataclass(**FROZEN)
class SentMail:
    """One mail of ours that an automatic message is about, as the store recorded it."""

    message_id: str
    kind: str  # the outbox kind: ack, relay, renewal, call-invite...
    to: tuple[str, ...]
    thread_id: str | None = None
    mailing: str = ""  # the ledger key, for scheduled mailings


@dataclass(**FROZEN)
class AutomaticRecord:
    """What the store keeps of one automatic message (``automatic list`` shows it)."""

    message_id: str
    received_at: datetime
    sender: str
    subject: str
    kind: str  # workflows.automatic.KINDS, or "0.1.0-thread" for threads the upgrade set aside
    reason: str
    declared: bool = False
    failures: tuple[Failure, ...] = ()
    about: tuple[str, ...] = ()  # Message-IDs of ours it is about
    filed_with: str = ""  # "OA-12", "contact billing@nuvole.example", or "" (not-work)
    note: str = ""  # what became of it besides: "staff told", "set aside from OA-5 by the upgrade"
    history: bool = False  # received before the first start

    def to_dict(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "received_at": self.received_at.isoformat(), "sender": self.sender,
                "subject": self.subject, "kind": self.kind, "reason": self.reason, "declared": self.declared,
                "failures": [{"address": f.address, "permanent": f.permanent, "gave_up": f.gave_up,
                              "status": f.status, "reason": f.reason} for f in self.failures],
                "about": list(self.about), "filed_with": self.filed_with, "note": self.note,
                "history": self.history}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AutomaticRecord:
        return cls(message_id=d["message_id"], received_at=datetime.fromisoformat(d["received_at"]),
                   sender=d.get("sender", ""), subject=d.get("subject", ""), kind=d.get("kind", ""),
                   reason=d.get("reason", ""), declared=d.get("declared", False),
                   failures=tuple(Failure(**f) for f in d.get("failures", ())), about=tuple(d.get("about", ())),
                   filed_with=d.get("filed_with", ""), note=d.get("note", ""), history=d.get("history", False))


@dataclass(**FROZEN)
class Filing:
    action: str  # "bounce", "auto-reply", "read-receipt", "feedback", "automatic" (filed nowhere: not-work)
    record: AutomaticRecord
    reason: str
    thread: Thread | None = None  # the thread it is filed in, with its new event
    delivery: tuple[DeliveryState, ...] = ()  # delivery states that changed
    outgoing: tuple[OutgoingMail, ...] = ()  # notices to staff


@dataclass(**FROZEN)
class FilingSettings:
    support_address: str
    support_name: str
    staff: tuple[str, ...]
    policy: DeliveryPolicy = DeliveryPolicy()


def unattributable(mail: InboundMail, verdict: Verdict) -> str:
    """Why a message can be neither answered nor attributed ("" when it can): no usable sender, and
    nothing says it is automatic. It goes to quarantine, where a person reads it; recording it as
    automatic would claim what nobody knows."""
    if mail.from_addr or verdict.automatic:
        return ""
    why = next((d for d in mail.defects if "From" in d), "no From header")
    return f"no usable sender ({why}): nobody can be answered or told apart; read it in the quarantine folder"


def file_automatic(mail: InboundMail, verdict: Verdict, *, thread: Thread | None, ours: tuple[SentMail, ...],
                   states: Mapping[str, DeliveryState], roster: Roster, s: FilingSettings,
                   history: bool = False) -> Filing:
    """Where ``mail`` (automatic by ``verdict``) goes, and what it changes.

    ``thread``: the thread it is about (by our mail it names, or by reference), or None. ``ours``: our
    mails it names. ``states``: the delivery states of every address involved (missing: nothing known).
    """
    at = mail.received_at
    sent_to = tuple(dict.fromkeys(a for m in ours for a in m.to))
    kind_to = {a: m.kind for m in ours for a in m.to}
    changed: dict[str, DeliveryState] = {}
    outgoing: list[OutgoingMail] = []
    notes: list[str] = []

    def state(address: str) -> DeliveryState:
        return changed.get(address) or states.get(address) or DeliveryState(address=address)

    failures: tuple[Failure, ...] = ()
    if verdict.kind == "bounce":
        failures = tuple(f for f in failed_recipients(verdict, sent_to=sent_to)
                         if f.address in sent_to or f.address in roster.by_email)
        for f in () if history else failures:
            mail_kind = kind_to.get(f.address, "mail")
            new = record_failure(state(f.address), f, at, s.policy)
            # A report naming none of our mail: we cannot say which mail was lost, but a contact whose
            # address fails for good is worth one notice all the same (the roster needs fixing).
            unknown_mail = mail_kind == "mail" and f.permanent and f.gave_up and new.staff_told_at is None
            if mail_kind not in TO_STAFF and (should_tell_staff(new, f, mail_kind) or unknown_mail) and s.staff \
                    and _partner_side(f.address, mail_kind, thread, roster):
                outgoing.append(_notice(mail, new, mail_kind, thread, roster, {**states, **changed}, s))
                new = staff_told(new, at)
                notes.append(f"staff told: {f.address} did not get our {_words(mail_kind)}")
            changed[f.address] = new
    if not history:
        for address in _arrived(mail, verdict, sent_to, roster):
            old = state(address)
            new = record_delivered(old, at, f"{verdict.kind} {mail.message_id} shows our mail arrived")
            if new != old:
                changed[address] = new
                notes.append(f"{address}: mail arrives again")

    filed_with = ""
    if thread is not None:
        thread = thread.with_message(mail.message_id).with_event(ThreadEvent(
            at=at, kind=_event_kind(verdict), message_id=mail.message_id, by=mail.from_addr,
            detail=_event_detail(verdict, failures, ours)))
        filed_with = thread.id
    elif ours:
        filed_with = "contact " + ", ".join(sent_to) if sent_to else f"our {ours[0].kind}"
    action = {"bounce": "bounce", "read-receipt": "read-receipt", "feedback": "feedback"}.get(
        verdict.kind, "auto-reply" if thread is not None else "automatic")
    if thread is None and not ours:
        action = "automatic"
    where = f"filed in {thread.id}" if thread is not None else f"filed with {filed_with}" if filed_with \
        else "not work, recorded only"
    record = AutomaticRecord(
        message_id=mail.message_id, received_at=at, sender=mail.from_addr, subject=mail.subject[:300],
        kind=verdict.kind, reason=verdict.reason, declared=verdict.declared, failures=failures,
        about=tuple(m.message_id for m in ours) or verdict.about_ids[:5], filed_with=filed_with,
        note="; ".join(notes), history=history)
    return Filing(action=action, record=record, thread=thread, delivery=tuple(changed.values()),
                  outgoing=tuple(outgoing), reason=f"{verdict.kind}: {verdict.reason}; {where}")


def _words(kind: str) -> str:
    return _WORDS.get(kind, kind)


def _partner_side(address: str, mail_kind: str, thread: Thread | None, roster: Roster) -> bool:
    """Staff hear of mail that did not reach a partner: a roster contact, anyone at a partner's shop
    (the thread says so), or anyone a staff member answered. An acknowledgement to a stranger that
    bounces is most often a forged sender: not worth a notice."""
    return address in roster.by_email or mail_kind == "relay" or bool(thread and thread.partner_id)


def _arrived(mail: InboundMail, verdict: Verdict, sent_to: tuple[str, ...], roster: Roster) -> tuple[str, ...]:
    """Addresses the message shows our mail reached: a success report's recipients, a read receipt's
    reader, an auto-reply's own address (its mailbox got our mail)."""
    known = set(sent_to) | set(roster.by_email)
    if verdict.kind == "bounce":
        found: tuple[str, ...] = verdict.delivered
    elif verdict.kind in ("read-receipt", "auto-reply", "calendar-reply"):
        found = verdict.reporters + (mail.from_addr,)
        if not sent_to:  # about no mail of ours we know: proves nothing about our mail
            return ()
    else:
        return ()
    return tuple(a for a in dict.fromkeys(x.lower() for x in found if x) if a in known)


def _event_kind(verdict: Verdict) -> str:
    return {"bounce": "bounce", "read-receipt": "read-receipt", "feedback": "feedback"}.get(verdict.kind,
                                                                                          "auto-reply")


def _event_detail(verdict: Verdict, failures: tuple[Failure, ...], ours: tuple[SentMail, ...]) -> str:
    if verdict.kind != "bounce":
        return verdict.reason
    what = f"our {_words(ours[0].kind)}" if ours else "our mail"
    gone = [f for f in failures if f.gave_up]
    if gone:
        return f"{what} to {', '.join(f.address for f in gone)} was not delivered: {gone[0].reason or gone[0].status}"
    if failures:
        return f"{what} to {', '.join(f.address for f in failures)} is delayed; the server still tries"
    return f"delivery report: {verdict.reason}"


def _notice(mail: InboundMail, state: DeliveryState, mail_kind: str, thread: Thread | None, roster: Roster,
            states: Mapping[str, DeliveryState], s: FilingSettings) -> OutgoingMail:
    contact = roster.by_email.get(state.address)
    pid = contact.partner_id if contact else (thread.partner_id if thread else None)
    partner = roster.partners.get(pid) if pid else None
    info = bounce_notice(partner, state, mail_kind, states)
    heading = f"Not delivered: our {_words(mail_kind)} to {state.address}"
    others = [f"{c.name} <{c.email}>" + (f" ({', '.join(sorted(c.roles))})" if c.roles else "") for c in info.others]
    return OutgoingMail(
        key=f"delivery-notice:{state.address}:{mail.message_id}", kind="delivery-notice",
        template="contact_bounce_notice", to=s.staff, thread_id=thread.id if thread else None,
        subject=msgids.with_tag(heading, thread.id) if thread else heading,
        from_name=s.support_name, auto_kind="auto-generated", reply_to_support=thread is not None,
        context={"address": state.address, "name": contact.name if contact else "",
                 "partner_name": partner.name if partner else "", "partner_id": pid or "",
                 "mail_kind": _words(mail_kind), "thread_id": thread.id if thread else "",
                 "subject": thread.subject if thread else "", "reason": info.reason,
                 "bouncing_since": info.bouncing_since.date().isoformat() if info.bouncing_since else "",
                 "failures": state.failures, "others": others, "report_from": mail.from_addr or "the mail system",
                 "support_name": s.support_name, "support_address": s.support_address})


# -- the upgrade: threads that 0.1.0 opened for automatic mail ------------------------------------------------
# 0.1.0 notified staff of every new thread except those it judged automatic; these event kinds are all
# such a thread can hold before anyone on staff touched it.
_UNTOUCHED = frozenset({"request", "ack", "notify", "auto-reply", "bounce"})


def set_aside(thread: Thread, first: Mapping[str, Any] | None, *, sender_known: bool) -> tuple[Thread, AutomaticRecord] | None:
    """A thread 0.1.0 opened for automatic mail, closed and recorded as automatic; None to keep it.

    Set aside: open threads nobody on staff touched, with one inbound message, that 0.1.0 itself judged
    automatic (it sent no staff notification) or whose stored sender and subject are automatic by
    today's rules (workflows.automatic, inferred evidence: the headers are not kept). ``first``: the
    stored record of the thread's first message; ``sender_known``: its sender is a roster contact.
    """
    if thread.state not in lifecycle.OPEN or thread.sender_kind == "staff" or thread.first_response_at:
        return None
    kinds = [e.kind for e in thread.events]
    if not kinds or kinds[0] != "request" or not set(kinds) <= _UNTOUCHED or kinds.count("request") != 1:
        return None
    first = first or {}
    mail = InboundMail(message_id=thread.messages[0] if thread.messages else "", raw_sha256="",
                       from_addr=thread.requester,
                       from_name=thread.requester_name, subject=first.get("subject", thread.subject),
                       text=first.get("text", ""), received_at=thread.created_at,
                       defects=tuple(first.get("defects", ())))
    verdict = classify(mail, person_known=sender_known)
    judged = "notify" not in kinds
    if not judged and not verdict.automatic:
        return None
    if verdict.automatic:
        kind, reason = verdict.kind, verdict.reason
    else:
        kind = "0.1.0-thread"
        defects = [d for d in mail.defects if "From" in d]
        reason = "0.1.0 judged it automatic (it told no one)" + (f"; {defects[0]}" if defects else "")
    at = thread.created_at
    closed = lifecycle.apply(thread, Event.CLOSE, at, _NO_CALENDAR)
    closed = closed.with_event(ThreadEvent(
        at=at, kind="set-aside", by="partnerdesk",
        detail=f"automatic mail, not work ({reason}); set aside when the store was upgraded; see `automatic list`"))
    record = AutomaticRecord(message_id=mail.message_id, received_at=at, sender=mail.from_addr,
                             subject=mail.subject[:300], kind=kind, reason=reason, declared=verdict.declared,
                             filed_with=thread.id, note=f"set aside from {thread.id} by the upgrade")
    return closed, record


class _NoCalendar:
    """CLOSE stops the clock; it never asks the calendar."""

    def due_at(self, at: datetime) -> datetime:  # pragma: no cover - CLOSE never starts a clock
        raise AssertionError("closing a thread starts no clock")

    clock_start = due_at


_NO_CALENDAR: Any = _NoCalendar()


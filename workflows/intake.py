"""Support intake: what to do with one inbound message. Pure: data and ``now`` in, a Decision out.

The caller (service/intake.py) looks up the thread candidates and counters in the
store, calls ``decide`` and records the returned Decision, outgoing mail included,
in one durable write before anything is sent. Automatic mail does not come here: the
service files it (workflows/filing.py); the automatic-mail rules below are the guard for
mail that is work but must not be answered (a list, a null sender).

Mail from a staff address counts as staff (an answer, a relay, a command, a note) only with proof
(``Candidates.staff_proof``, workflows/staffproof.py); without it the mail is held and its writer
asked to confirm (workflows/unverified.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from . import lifecycle, merging, msgids, replykeys, unverified
from .lifecycle import Event
from .autoclose import reopen_expired
from .autoreply import automatic_reason, out_of_office_subject
from .calendar import BusinessCalendar, format_due
from .commands import apply_command, parse_command
from .mailings.due import primary_contacts
from .model import FROZEN, Decision, InboundMail, OutgoingMail, Sender, Thread, ThreadEvent
from .proofs import StaffProof
from .refgraph import Link, Route, Via, belongs, route
from .roster import lapse_note
from .senders import Roster


@dataclass(**FROZEN)
class IntakeSettings:
    support_address: str
    support_name: str = "Open Atrium Support"
    staff: frozenset[str] = frozenset()  # told of every request; their replies are answers
    # Also recognised as staff (their replies are answers, their commands count) but not sent every
    # notification: the escalation list and the program lead, who answer escalation mail.
    team: frozenset[str] = frozenset()
    calendar: BusinessCalendar = BusinessCalendar()
    acks_per_hour: int = 3  # per address, whatever happens: a loop can never get past this
    reopen_days: int = 30  # a partner mail to a thread closed longer ago starts a new thread (issue 3)
    recipient_delimiter: str = "+"  # of the support mailbox's plus-addresses (reply keys)
    lapse_grace_days: int = 30  # [renewals] grace_days: a lapsed partner's requests are flagged to staff

    @property
    def recognised_staff(self) -> frozenset[str]:
        return self.staff | self.team


@dataclass(**FROZEN)
class Candidates:
    """Threads the store found for a message; ``decide`` picks among them."""

    by_reference: Thread | None = None  # a Message-ID in In-Reply-To/References is in this thread
    by_tag: Thread | None = None  # the subject names this thread: "[OA-12]"
    # Every thread the message's ancestors lead to, nearest first (workflows/refgraph.py); when given,
    # ``by_reference`` is not used.
    links: tuple[Link, ...] = ()
    merge_target: Thread | None = None  # the thread a staff "#merge OA-n" names
    next_number: int = 1  # number for a new thread
    recent_acks: int = 0  # automatic answers sent to this sender in the last hour
    answer_block: str = ""  # why no automatic answer may go out now (loop breaker, the sender asks none)
    # workflows.automatic found it written by a person: work, told to staff even where the RFC 3834 gate
    # below keeps it from being answered (X-Auto-Response-Suppress on a prospect's first mail, say).
    judged_work: bool = False
    own_message: bool = False  # the Message-ID is one of ours: our own mail came back
    answers_ours: bool = False  # it replies to mail we sent (In-Reply-To/References name one of ours)
    now: datetime | None = None  # when the decision is taken (mail may reach us after its deadline)
    # Staff proof (service/proof.py): None when the sender is not staff, or nothing was checked.
    staff_proof: StaffProof | None = None
    answers_notice: bool = False  # it replies to one of our unverified-mail notices
    held: InboundMail | None = None  # the held mail that notice is about, not yet sent on
    notices_in_thread: int = 0  # unverified-mail notices to this sender about this thread, last hour
    notices_to_sender: int = 0  # the same over all threads

    @property
    def proven(self) -> bool:
        return self.staff_proof is not None and self.staff_proof.proven


def choose(mail: InboundMail, sender: Sender, c: Candidates) -> Route:
    """The thread for ``mail``: by its ancestors (the reference graph), else by the subject tag."""
    links = c.links or ((Link(ref="", thread=c.by_reference, via=Via.MESSAGE),) if c.by_reference else ())
    r = route(mail, sender, links, automatic=bool(automatic_reason(mail)))
    if r.thread is not None:
        return r
    t = c.by_tag
    if t is not None:
        # The tag alone is easy to type or copy; trust it only from people who belong there.
        if belongs(sender, t):
            who = ("sender is staff" if sender.kind == "staff" else "sender opened the thread"
                   if sender.address == t.requester else "sender belongs to the thread's partner")
            return Route(thread=t, why=f"subject tag, {who}", refused=r.refused)
        return Route(thread=None, refused=r.refused,
                     why=f"subject names {t.id} but the sender does not belong to it: new thread")
    return r


def choose_thread(mail: InboundMail, sender: Sender, c: Candidates) -> tuple[Thread | None, str]:
    r = choose(mail, sender, c)
    return r.thread, r.why


def _merge_all(mail: InboundMail, r: Route, settings: IntakeSettings, *, history: bool
               ) -> tuple[Thread | None, tuple[Thread, ...], tuple[OutgoingMail, ...]]:
    """The route's thread with the threads it merges folded in, those threads, and the notices to staff."""
    thread = r.thread
    gone: list[Thread] = []
    notices: list[OutgoingMail] = []
    for other in r.merge:
        assert thread is not None
        why = f"{mail.from_addr or 'a message'} wrote in reply to both ({mail.message_id})"
        thread, closed = merging.merge(thread, other, at=mail.received_at, by=mail.from_addr, why=why,
                                       calendar=settings.calendar)
        gone.append(closed)
        if not history:
            due = format_due(thread.due_at, settings.calendar) if thread.due_at else ""
            notices.append(merging.merge_notice(thread, closed, settings, why=why, due=due,
                                                key=f"merge:{thread.id}:{closed.id}"))
    return thread, tuple(gone), tuple(notices)


def decide(
    mail: InboundMail,
    sender: Sender,
    candidates: Candidates,
    roster: Roster,
    settings: IntakeSettings,
    *,
    history: bool = False,
) -> Decision:
    """Decide what ``mail`` means. ``history``: received before the first start; record only."""
    if candidates.own_message or mail.from_addr == settings.support_address:
        return Decision(action="skip", thread=None, sender=sender, reason="our own mail came back; not answered")

    # An unproven staff address routes as nobody's: it never joins a thread by a shared ancestor alone
    # nor merges threads; the thread its proven links or its tag name keeps it as unverified.
    unproven = sender.kind == "staff" and not candidates.proven
    r = choose(mail, replace(sender, kind="unknown") if unproven else sender, candidates)
    if unproven and r.thread is None and candidates.by_tag is not None:
        r = Route(thread=candidates.by_tag, why="subject tag, sender claims a staff address", refused=r.refused)
    thread, merged, notices = _merge_all(mail, r, settings, history=history)
    decision = _route(mail, sender, thread, r.why, candidates, roster, settings, history=history)
    if not candidates.judged_work:  # judged a person's mail by workflows.automatic: staff are told
        decision = _quiet_if_automatic(mail, decision, thread, candidates.answers_ours)
    if merged:
        decision = replace(decision, also=decision.also + merged, outgoing=decision.outgoing + notices)
    return _refuse_exposed_keys(mail, decision, settings)


def _refuse_exposed_keys(mail: InboundMail, decision: Decision, s: IntakeSettings) -> Decision:
    """Reply keys this mail showed to someone outside staff (a Cc'd partner) are refused in its thread."""
    exposed = replykeys.exposed_keys(mail, staff=s.recognised_staff, support_address=s.support_address,
                                     delimiter=s.recipient_delimiter)
    t = decision.thread
    if not exposed or t is None:
        return decision
    refused = tuple(dict.fromkeys(t.refused_keys + exposed))
    return decision if refused == t.refused_keys else replace(decision, thread=replace(t, refused_keys=refused))


def _with_proof(decision: Decision, message_id: str, how: str) -> Decision:
    """Say on each timeline line of ``message_id`` how its writer was proven (`threads show`, -v)."""
    t = decision.thread
    if t is None or not how:
        return decision
    events = tuple(replace(e, proof=how) if e.message_id == message_id and not e.proof and e.kind != "unverified"
                   else e for e in t.events)
    return replace(decision, thread=replace(t, events=events), reason=f"{decision.reason}; proven by {how}")


def _route(mail: InboundMail, sender: Sender, thread: Thread | None, why: str, candidates: Candidates,
           roster: Roster, settings: IntakeSettings, *, history: bool) -> Decision:
    if thread is None:
        return _new_thread(mail, sender, candidates, roster, settings, history=history, why=why)
    if sender.kind == "staff":
        # An answer to an unverified-mail notice must be a person's: it sends the held mail on.
        auto = automatic_reason(mail, person_known=True) or (
            out_of_office_subject(mail) if candidates.answers_notice else None)
        if auto:
            # A staff member's out-of-office answering our notification is not their answer:
            # relaying it would tell the partner nonsense and stop the clock.
            thread = thread.with_message(mail.message_id).with_event(
                ThreadEvent(at=mail.received_at, kind="auto-reply", message_id=mail.message_id, by=mail.from_addr,
                            detail=auto))
            return Decision(action="auto-reply", thread=thread, sender=sender,
                            reason=f"automatic mail from staff ({auto}): recorded, not relayed")
        c = candidates
        if not c.proven:
            return unverified.unverified(
                mail, sender, thread, c.staff_proof, support_name=settings.support_name, history=history,
                notice=unverified.notice_allowed(answers_notice=c.answers_notice,
                                                 to_address_in_thread=c.notices_in_thread,
                                                 to_address=c.notices_to_sender))
        assert c.staff_proof is not None
        if c.answers_notice:
            return _confirm(mail, sender, thread, c.held, c.staff_proof, roster, settings)
        decision = _staff_mail(mail, sender, thread, roster, settings, history=history,
                               other=c.merge_target)
        return _with_proof(decision, mail.message_id, c.staff_proof.how)
    if not history and reopen_expired(thread, mail.received_at, settings.reopen_days):
        # Closed too long ago to reopen: a new request that names the old thread.
        return _new_thread(mail, sender, candidates, roster, settings, history=False,
                           why=f"{thread.id} was closed more than {settings.reopen_days} days ago: new thread",
                           previous=thread)
    return _follow_up(mail, sender, thread, roster, settings, history=history)


def _quiet_if_automatic(mail: InboundMail, decision: Decision, original: Thread | None,
                        answers_ours: bool) -> Decision:
    """Automatic mail (bounces, out-of-office) from outside never moves a thread or mails staff.

    A bounce of a staff notification would otherwise open a thread whose notification
    bounces again, forever. It is still recorded in its thread. (Staff auto-replies
    are handled in ``_route``.)
    """
    reason = automatic_reason(mail)
    if not reason or decision.thread is None or decision.sender is None or decision.sender.kind == "staff":
        return decision
    if decision.action == "thread-join" and original is not None:
        kept = replace(original, messages=decision.thread.messages,
                       partner_messages=decision.thread.partner_messages)
        kept = kept.with_event(ThreadEvent(at=mail.received_at, kind="auto-reply", message_id=mail.message_id,
                                           by=mail.from_addr, detail=reason))
        return replace(decision, action="auto-reply", thread=kept, outgoing=(),
                       reason=f"automatic mail ({reason}): recorded, state unchanged")
    if decision.action == "thread-new" and decision.sender.kind == "unknown":
        return replace(decision, outgoing=tuple(o for o in decision.outgoing if o.kind != "notify"),
                       reason=f"automatic mail from an unknown sender ({reason}): recorded only")
    if decision.action == "thread-new" and answers_ours:
        # An out-of-office answering a mailing (fifty contacts, fifty auto-replies to the call
        # invitation) is recorded, not put in front of staff one notification at a time.
        return replace(decision, outgoing=tuple(o for o in decision.outgoing if o.kind != "notify"),
                       reason=f"automatic answer to our own mail ({reason}): recorded only")
    return decision


def _partner_name(roster: Roster, partner_id: str | None) -> str:
    p = roster.partners.get(partner_id) if partner_id else None
    return p.name if p else ""


def _is_primary(roster: Roster, sender: Sender) -> bool:
    """Whether the sender is their partner's primary contact (or its only contact): told about trainings
    themselves, so "ask your primary contact" would send them to themselves."""
    p = roster.partners.get(sender.partner_id) if sender.partner_id and sender.on_roster else None
    return p is not None and any(c.email == sender.address for c in primary_contacts(p))


def _seat_text(sender: Sender) -> str:
    if sender.kind == "staff":
        return "staff"
    if sender.kind == "unknown":
        return "unknown sender (not on the roster)"
    if sender.seat:
        return "holds a seat"
    if sender.on_roster:
        return "partner contact without a seat (no training completed)"
    return "address on the partner's domain, not on the roster (no seat)"


def _to_staff(thread: Thread, s: IntakeSettings, *, kind: str, template: str, key: str, heading: str,
              context: dict[str, Any], **headers: Any) -> OutgoingMail:
    """Automatic mail to all staff about ``thread``; replying to it writes in the thread."""
    return OutgoingMail(key=key, kind=kind, template=template, to=tuple(sorted(s.staff)), thread_id=thread.id,
                        subject=msgids.with_tag(f"{heading}: {thread.subject}", thread.id),
                        from_name=s.support_name, auto_kind="auto-generated", context=context, **headers)


def _lapse(roster: Roster, partner_id: str | None, mail: InboundMail, s: IntakeSettings) -> str:
    p = roster.partners.get(partner_id or "")
    return lapse_note(p, mail.received_at.astimezone(s.calendar.tz()).date(), s.lapse_grace_days) if p else ""


def _notify(mail: InboundMail, sender: Sender, thread: Thread, roster: Roster, s: IntakeSettings, *,
            first: bool) -> OutgoingMail:
    due = format_due(thread.due_at, s.calendar) if thread.due_at else "no promise (no seat)"
    return _to_staff(
        thread, s, kind="notify", template="staff_notification", key=f"notify:{thread.id}:{mail.message_id}",
        heading="New" if first else "Follow-up",
        in_reply_to=mail.message_id,
        references=(mail.message_id,),
        attachments=mail.attachments,  # the partner's screenshots and logs, for staff to see
        context={
            "event": "request" if first else "follow-up",
            "thread_id": thread.id,
            "partner_name": _partner_name(roster, thread.partner_id) or "(no partner)",
            "partner_id": thread.partner_id,
            "sender_name": mail.from_name,
            "sender": mail.from_addr,
            "seat": _seat_text(sender),
            "subject": mail.subject,
            "text": mail.text,
            "due": due,
            "received": format_due(mail.received_at, s.calendar, with_year=True),
            "support_address": s.support_address,
            "automatic": automatic_reason(mail) or "",
            "previous": thread.previous,  # a closed thread this one continues
            "lapsed": _lapse(roster, thread.partner_id, mail, s),  # still supported, but staff should know
        },
    )


def _new_thread(mail, sender, c: Candidates, roster, s: IntakeSettings, *, history: bool, why: str,
                previous: Thread | None = None) -> Decision:
    number = c.next_number
    tid = msgids.thread_id(number)
    auto = automatic_reason(mail)
    thread = Thread(
        id=tid,
        number=number,
        partner_id=sender.partner_id,
        requester=mail.from_addr,
        requester_name=mail.from_name or sender.contact_name,
        sender_kind=sender.kind,
        seat=sender.seat,
        subject=mail.subject.strip() or "(no subject)",
        created_at=mail.received_at,
        previous=previous.id if previous is not None else "",
    ).with_message(mail.message_id, partner_side=True)
    thread = lifecycle.apply(thread, Event.HISTORY if history else Event.REQUEST, mail.received_at, s.calendar)
    due = thread.due_at
    promised = due is not None
    thread = thread.with_event(
        ThreadEvent(at=mail.received_at, kind="history" if history else "request", message_id=mail.message_id,
                    by=mail.from_addr, detail=why)
    )
    if sender.kind == "staff" and not c.proven:
        # Opens a staff thread as before (nothing goes to anyone from it), marked unverified.
        return unverified.unverified(
            mail, sender, thread, c.staff_proof, support_name=s.support_name, history=history, opened=True,
            notice=unverified.notice_allowed(answers_notice=c.answers_notice, to_address_in_thread=0,
                                             to_address=c.notices_to_sender))
    if history:
        return Decision(action="history", thread=thread, sender=sender, reason="received before the first start")
    if sender.kind == "staff":
        assert c.staff_proof is not None
        return _with_proof(Decision(action="thread-new", thread=thread, sender=sender,
                                    reason="staff mail outside any thread"), mail.message_id, c.staff_proof.how)

    out: list[OutgoingMail] = []
    reason = why
    if auto:
        reason = f"{why}; no acknowledgement: {auto}"
    elif c.answer_block:
        reason = f"{why}; no acknowledgement: {c.answer_block}"
    elif c.recent_acks >= s.acks_per_hour:
        reason = f"{why}; no acknowledgement: {c.recent_acks} already sent to {mail.from_addr} this hour"
    else:
        template = "ack" if promised else "channel_info"
        out.append(
            OutgoingMail(
                key=f"ack:{tid}:{mail.message_id}",
                kind="ack",
                template=template,
                to=(mail.from_addr,),
                thread_id=tid,
                subject=msgids.reply_subject(thread.subject, tid),
                from_name=s.support_name,
                in_reply_to=mail.message_id,
                references=mail.references + (mail.message_id,),
                extra_headers=(("X-Auto-Response-Suppress", "All"),),
                context={
                    "thread_id": tid,
                    "name": mail.from_name or sender.contact_name,
                    "subject": thread.subject,
                    "due": format_due(due, s.calendar) if due else "",
                    # Mail that reached us late (downtime, rescued from Junk): say so, do not promise the past.
                    "late": bool(due and c.now and due <= c.now),
                    "partner_name": _partner_name(roster, sender.partner_id),
                    "known_partner": sender.partner_id is not None,
                    "primary": _is_primary(roster, sender),
                    "support_address": s.support_address,
                    "support_name": s.support_name,
                },
            )
        )
    out.append(_notify(mail, sender, thread, roster, s, first=True))
    return Decision(action="thread-new", thread=thread, outgoing=tuple(out), sender=sender, reason=reason)


def _follow_up(mail, sender, thread: Thread, roster, s: IntakeSettings, *, history: bool) -> Decision:
    thread = thread.with_message(mail.message_id, partner_side=True)
    thread = thread.with_event(ThreadEvent(at=mail.received_at, kind="follow-up", message_id=mail.message_id,
                                           by=mail.from_addr))
    if history:
        return Decision(action="history", thread=thread, sender=sender, reason="received before the first start")
    # Back to waiting on us: from waiting on the partner (or closed) a new clock starts, no second ack.
    thread = lifecycle.apply(thread, Event.FOLLOW_UP, mail.received_at, s.calendar)
    return Decision(
        action="thread-join",
        thread=thread,
        outgoing=(_notify(mail, sender, thread, roster, s, first=False),),
        sender=sender,
        reason="partner follow-up",
    )


def _staff_mail(mail, sender, thread: Thread, roster, s: IntakeSettings, *, history: bool,
                other: Thread | None = None) -> Decision:
    thread = thread.with_message(mail.message_id)
    body = mail.reply_text or mail.text
    command = parse_command(body)  # #note, #close, #reopen, #assign, #wait (workflows.commands)
    if command is not None:
        return apply_command(command, mail, sender, thread, s, history=history, other=other)

    reply_all = thread.requester in mail.recipients
    thread = thread.with_event(ThreadEvent(at=mail.received_at, kind="answer", message_id=mail.message_id,
                                           by=mail.from_addr, detail="reply-all: partner already had it" if reply_all else ""))
    if thread.first_response_at is None:
        thread = replace(thread, first_response_at=mail.received_at, first_responder=mail.from_addr)
    thread = lifecycle.apply(thread, Event.ANSWER, mail.received_at, s.calendar)
    if history:
        return Decision(action="history", thread=thread, sender=sender, reason="received before the first start")
    if reply_all or thread.requester in s.staff or not thread.requester:
        thread = thread.with_message(mail.message_id, partner_side=True)
        return Decision(action="answer", thread=thread, sender=sender,
                        reason="staff answer recorded; the partner was a direct recipient")
    staff_name = mail.from_name or mail.from_addr.partition("@")[0]
    relay = OutgoingMail(
        key=f"relay:{thread.id}:{mail.message_id}",
        kind="relay",
        template="relay",
        to=(thread.requester,),
        thread_id=thread.id,
        subject=msgids.reply_subject(thread.subject, thread.id),
        from_name=f"{staff_name} via {s.support_name}",
        in_reply_to=thread.partner_messages[-1] if thread.partner_messages else None,
        references=thread.partner_messages[-20:],
        automatic=False,  # a person wrote it; the partner may answer it
        body_text=replykeys.redact(body.strip(), s.support_address, delimiter=s.recipient_delimiter) + "\n",
        attachments=mail.attachments,
        context={"staff_name": staff_name, "thread_id": thread.id, "support_name": s.support_name},
    )
    return Decision(action="answer", thread=thread, outgoing=(relay,), sender=sender, reason="staff answer relayed")


def _confirm(mail: InboundMail, sender: Sender, thread: Thread, held: InboundMail | None, proof: StaffProof,
             roster: Roster, s: IntakeSettings) -> Decision:
    """A proven reply to an unverified-mail notice: the held mail goes on as if it came in proven now.

    Only its writer can confirm it (the notice and its key went to them alone). What the reply itself
    says is kept in the timeline, never sent: "yes, that was me" must not reach the partner.
    """
    words = " ".join((mail.reply_text or mail.text).split())[:300]
    thread = thread.with_message(mail.message_id)
    if held is None or held.from_addr != mail.from_addr:
        why = "nothing held to send on" if held is None else f"only {held.from_addr} can confirm their own mail"
        thread = thread.with_event(ThreadEvent(at=mail.received_at, kind="notice-reply", message_id=mail.message_id,
                                               by=mail.from_addr, detail=f"{why}. {words}".strip(), proof=proof.how))
        return Decision(action="notice-reply", thread=thread, sender=sender,
                        reason=f"reply to an unverified-mail notice: {why}; recorded")
    how = f"{proof.how}, confirming it by replying to the unverified-mail notice"
    thread = thread.with_event(ThreadEvent(at=mail.received_at, kind="confirmed", message_id=mail.message_id,
                                           by=mail.from_addr, detail=f"sends {held.message_id} on. {words}".strip(),
                                           proof=proof.how))
    if thread.messages and thread.messages[0] == held.message_id:  # it opened the thread: nothing to send
        return Decision(action="confirmed", thread=thread, sender=sender, released=held.message_id,
                        reason=f"{held.from_addr} confirmed the mail that opened {thread.id}; proven by {how}")
    # It counts from now: the partner gets the answer now, so the clock stops now.
    decision = _staff_mail(replace(held, received_at=mail.received_at), sender, thread, roster, s, history=False)
    decision = _with_proof(decision, held.message_id, how)
    return replace(decision, released=held.message_id)


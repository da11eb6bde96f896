"""Staff-looking mail without proof: recorded, held, never acted on, and its writer asked to confirm.

A mail from a staff address that no proof backs (workflows/staffproof.py) may be the staff member's
own (a client that dropped the reply key, a reply to mail sent before keys existed) or a forgery.
Either way it is never relayed, runs no command, is not the answer, and moves neither the thread's
state nor its response clock nor its escalation ladder. Instead:

- the thread's timeline keeps it as ``unverified``, with what each proof said;
- the service holds its text and attachments (the store's ``unverified`` table);
- that staff address, the one in From (never a Reply-To the writer chose), gets a notice with the
  text, why it was not taken, and a reply key: at most once per thread per hour, and at most
  NOTICES_PER_HOUR per address over all threads (a forger cannot make us flood anyone);
- a proven reply to the notice sends the held mail on as if it had just come in proven (it counts
  from then: the clock stops when the partner can get the answer); what that reply itself says is
  kept in the timeline and never sent.

No loop: the notice is an automatic reply (``Auto-Submitted: auto-replied``, null envelope sender),
so well-behaved responders stay quiet; an automatic answer that comes back anyway is recorded as an
auto-reply before proof is even looked at (workflows/intake.py); and unproven mail answering a
notice never causes another one. Pure.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Any

from . import msgids
from .model import Attachment, Decision, InboundMail, OutgoingMail, Sender, Thread, ThreadEvent
from .proofs import StaffProof

NOTICE_KIND = "unverified-notice"
NOTICE_EVERY = timedelta(hours=1)  # per thread and address
NOTICES_PER_HOUR = 10  # per address, over all threads
HOLD_ATTACHMENTS_MAX = 5 * 1024 * 1024  # bytes kept of a held mail's attachments; larger ones are not kept


def rate_kinds(thread_id: str) -> tuple[str, str]:
    """The names under which the store counts notices to an address: per thread, and over all threads."""
    return f"{NOTICE_KIND}@{thread_id}", NOTICE_KIND


def notice_allowed(*, answers_notice: bool, to_address_in_thread: int, to_address: int) -> bool:
    """May a notice go out? Not to answer a notice, not twice an hour per thread, not past the hourly cap."""
    return not answers_notice and to_address_in_thread == 0 and to_address < NOTICES_PER_HOUR


def _reasons(proof: StaffProof | None) -> tuple[str, ...]:
    return proof.reasons if proof is not None and proof.reasons else ("no proof was checked",)


def unverified(mail: InboundMail, sender: Sender, thread: Thread, proof: StaffProof | None, *, support_name: str,
               history: bool, notice: bool, opened: bool = False) -> Decision:
    """The decision for staff-looking mail without proof: recorded in ``thread``, nothing else moves.

    ``notice``: send the notice (``notice_allowed``). ``opened``: the mail opened ``thread`` (staff mail
    outside any thread), so there is nothing to send on; confirming only marks it verified.
    """
    reasons = _reasons(proof)
    thread = thread.with_message(mail.message_id).with_event(ThreadEvent(
        at=mail.received_at, kind="unverified", message_id=mail.message_id, by=mail.from_addr,
        detail="from a staff address, not proven: " + "; ".join(reasons)))
    if history:
        return Decision(action="history", thread=thread, sender=sender,
                        reason="unproven staff-looking mail before the first start: recorded only")
    out = (notice_mail(mail, thread, reasons, support_name=support_name, opened=opened),) if notice else ()
    told = f"notice sent to {mail.from_addr}" if out else "no notice (one went out within the hour, or it answers one)"
    return Decision(action="thread-new" if opened else "unverified", thread=thread, outgoing=out, sender=sender,
                    reason=f"from a staff address, not proven ({reasons[0]}): held, not acted on; {told}")


def notice_mail(mail: InboundMail, thread: Thread, reasons: tuple[str, ...], *, support_name: str,
                opened: bool = False) -> OutgoingMail:
    kept, dropped = _split_attachments(mail.attachments)
    return OutgoingMail(
        key=f"unverified:{thread.id}:{mail.message_id}",
        kind=NOTICE_KIND,
        template="unverified_notice",
        to=(mail.from_addr,),
        thread_id=thread.id,
        subject=msgids.with_tag(f"Not sent, please confirm: {thread.subject}", thread.id),
        from_name=support_name,
        in_reply_to=mail.message_id,  # threads under the staff member's own mail, if it is theirs
        references=(mail.message_id,),
        auto_kind="auto-replied",
        about=mail.message_id,
        context={
            "thread_id": thread.id,
            "subject": thread.subject,
            "requester": thread.requester,
            "sender": mail.from_addr,
            "mail_subject": mail.subject,
            "received": mail.received_at.isoformat(timespec="minutes"),
            "reasons": list(reasons),
            "text": (mail.reply_text or mail.text).strip()[:20000],
            "attachments": [a.filename for a in kept],
            "dropped": [a.filename for a in dropped],
            "opened": opened,
            "support_name": support_name,
        },
    )


def _split_attachments(attachments: tuple[Attachment, ...]) -> tuple[list[Attachment], list[Attachment]]:
    kept, dropped, size = [], [], 0
    for a in attachments:
        size += len(a.data)
        (kept if size <= HOLD_ATTACHMENTS_MAX else dropped).append(a)
    return kept, dropped


# -- what the store keeps of a held mail -----------------------------------------------------------------

def held_record(mail: InboundMail, thread_id: str, at: datetime) -> dict[str, Any]:
    """What is kept of an unverified mail, enough to decide it again once its writer confirms it."""
    kept, _ = _split_attachments(mail.attachments)
    return {
        "thread_id": thread_id, "held_at": at.isoformat(), "raw_sha256": mail.raw_sha256,
        "received_at": mail.received_at.isoformat(), "from": mail.from_addr, "from_name": mail.from_name,
        "to": list(mail.to), "cc": list(mail.cc), "subject": mail.subject,
        "text": mail.text[:200000], "reply_text": mail.reply_text[:200000],
        "attachments": [{"filename": a.filename, "content_type": a.content_type,
                         "data": base64.b64encode(a.data).decode("ascii")} for a in kept],
        "released_at": None, "released_by": None,
    }


def held_mail(message_id: str, record: dict[str, Any]) -> InboundMail:
    """The held mail back from its record (``held_record``)."""
    return InboundMail(
        message_id=message_id, raw_sha256=record.get("raw_sha256", ""),
        received_at=datetime.fromisoformat(record["received_at"]), from_addr=record.get("from", ""),
        from_name=record.get("from_name", ""), to=tuple(record.get("to", ())), cc=tuple(record.get("cc", ())),
        subject=record.get("subject", ""), text=record.get("text", ""), reply_text=record.get("reply_text", ""),
        attachments=tuple(Attachment(filename=a["filename"], content_type=a["content_type"],
                                     data=base64.b64decode(a["data"])) for a in record.get("attachments", ())),
    )

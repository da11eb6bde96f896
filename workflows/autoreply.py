"""Mail loops: recognising automatic mail (RFC 3834) so we never answer it."""

from __future__ import annotations

import re

from .model import InboundMail

_AUTO_LOCALPARTS = ("mailer-daemon", "postmaster", "noreply", "no-reply", "do-not-reply", "donotreply",
                    "bounce", "bounces", "listserv", "majordomo")


def automatic_reason(mail: InboundMail, *, person_known: bool = False) -> str | None:
    """Why ``mail`` must not be answered automatically, or None when it may be.

    RFC 3834 section 2: do not auto-respond to automatic mail, to bounces (empty
    Return-Path), to list traffic, or to senders that cannot receive replies.

    ``person_known``: the sender is a known person (staff). Then only what the mail
    says about itself counts: X-Auto-Response-Suppress is also set by some clients
    on mail a person wrote, and the sender-name heuristics do not apply.
    """
    # What the mail says about itself: counts for everyone.
    if mail.auto_submitted and mail.auto_submitted.split(";")[0].strip() != "no":
        return f"Auto-Submitted: {mail.auto_submitted}"
    if mail.precedence in ("bulk", "junk", "list"):
        return f"Precedence: {mail.precedence}"
    if mail.return_path == "":
        return "empty Return-Path (a bounce)"
    if person_known:
        auto = [h for h in mail.other_auto_headers if h != "X-Auto-Response-Suppress"]
        return f"automatic-mail header {auto[0]}" if auto else None
    # Signs that suggest automation, for senders we know nothing about.
    if mail.list_id:
        return "mailing-list traffic (List-Id)"
    if mail.other_auto_headers:
        return f"automatic-mail header {mail.other_auto_headers[0]}"
    if not mail.from_addr:
        return "no usable From address"
    local = mail.from_addr.partition("@")[0]
    if local in _AUTO_LOCALPARTS or local.startswith(("owner-", "bounce-", "bounces+")) or local.endswith("-request"):
        return f"automated sender {mail.from_addr}"
    if mail.content_type.startswith("multipart/report"):
        return "delivery or read report"
    return None


# Subjects that out-of-office responders put on their answers (Outlook, Exchange, Gmail, Apple Mail, and
# the common translations), for the few that mark nothing else.
_OOO_SUBJECT = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto(matic)?[- ]?(reply|response|antwort)|autoreply|"
    r"away from (the )?office|vacation|on vacation|abwesenheit|absence|r[ée]ponse automatique|"
    r"risposta automatica|fuera de la oficina|respuesta autom[áa]tica|autosvar)\b", re.IGNORECASE)


def out_of_office_subject(mail: InboundMail) -> str | None:
    """Why the subject says "out-of-office", or None. Only for mail that answers our own automatic
    mail, where a person has little reason to write such a subject."""
    subject = re.sub(r"^\s*((re|aw|sv|fw|fwd)\s*:\s*)+", "", mail.subject or "", flags=re.IGNORECASE)
    return f"out-of-office subject {mail.subject[:60]!r}" if _OOO_SUBJECT.match(subject) else None

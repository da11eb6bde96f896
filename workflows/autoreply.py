"""Mail loops: recognising automatic mail (RFC 3834) so we never answer it."""

from __future__ import annotations

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

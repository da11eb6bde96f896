"""What automatic mail is, and why we think so. Pure: an InboundMail in, a Verdict out.

Kinds: ``bounce`` (a delivery failed or is delayed), ``feedback`` (an RFC 5965
complaint), ``read-receipt`` (RFC 8098 or a client's own), ``calendar-reply``
(an iTIP REPLY, sent by hand or by an auto-accepting calendar), ``auto-reply``
(out-of-office, ticket-received, vacation), ``bulk`` (newsletters, list traffic,
notifications from no-reply senders) and ``none``: a person wrote it.

Evidence comes in two strengths. What the mail *declares*: a standard report
format, RFC 3834's Auto-Submitted, a null Return-Path, Precedence, and the
vendor headers of known auto-responders. Those count for every sender. What is
only *inferred* (subject shapes in seven languages, mailer-daemon and no-reply
sender names, list headers, non-standard bounce texts) counts only for senders
we know nothing about: a partner contact or staff member writing "Undeliverable:
our invoices bounce" is a person with a problem. A sender is "known"
(``person_known``) when it is a roster contact or staff.

workflows.autoreply stays the gate that decides what we never *answer*; every
mail it flags is automatic here too (tests/test_automatic.py holds that), so the
intake can move to this module without answering anything it did not answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .automatic_subjects import auto_reply_prefix, auto_reply_subject, bounce_subject, complaint_subject, delay_subject, \
    read_receipt_subject, responder_subject, scanner_subject
from .model import FROZEN, FailedRecipient, InboundMail, MailReport

KINDS = ("bounce", "feedback", "read-receipt", "calendar-reply", "auto-reply", "bulk", "none")


@dataclass(**FROZEN)
class Failure:
    """One recipient our mail did not reach, as the rules read the report."""

    address: str
    permanent: bool  # the address itself is bad (no such user, domain gone): the contact bounces at once
    gave_up: bool  # this message will not arrive; False: the remote server still retries
    status: str = ""  # RFC 3463, "5.1.1"
    reason: str = ""  # the remote server's words, or why we read the failure this way


@dataclass(**FROZEN)
class Verdict:
    kind: str  # one of KINDS
    reason: str  # for the record and the log: what gave it away
    declared: bool = False  # the mail says it is automatic; False: inferred from names and subjects
    failures: tuple[Failure, ...] = ()  # bounces: who did not get our mail
    about_ids: tuple[str, ...] = ()  # Message-IDs of the mail this answers or reports on (ours, we hope)
    feedback_type: str = ""  # feedback reports: abuse, fraud, virus, not-spam...
    reporters: tuple[str, ...] = ()  # feedback and read receipts: whose mailbox sent the report
    delivered: tuple[str, ...] = ()  # delivery reports: recipients our mail did reach
    # The sender asks for no automatic answers (Microsoft's X-Auto-Response-Suppress), even when a
    # person wrote the mail: an acknowledgement must then not go out, but the mail is still work.
    no_auto_answer: str = ""

    @property
    def automatic(self) -> bool:
        return self.kind != "none"

    @property
    def permanent(self) -> bool | None:
        """Bounces: did any address fail for good? None when the verdict names no failure."""
        return any(f.permanent for f in self.failures) if self.failures else None


# "post_master": Verizon's SMS gateway (vtext.com) signs its bounces so, with no other sign of a machine.
_DAEMON_LOCALPARTS = ("mailer-daemon", "mailer_daemon", "mailerdaemon", "postmaster", "post_master", "mail-daemon",
                      "mdaemon")
_BULK_LOCALPARTS = ("noreply", "no-reply", "no_reply", "do-not-reply", "donotreply", "do_not_reply", "bounce",
                    "bounces", "listserv", "majordomo", "mailman", "newsletter", "notifications", "notification")
_RESPONDER_SOFTWARE = re.compile(r"\b(vacation|auto-?respon(?:der|se)|auto-?reply|kana response|out of office)\b",
                                 re.IGNORECASE)
_CALENDAR_REPLY = re.compile(r"^METHOD:REPLY\s*$", re.IGNORECASE | re.MULTILINE)
_SCANNER_TEXT = re.compile(r"\b(virus|malware|infected|banned (?:contents|attachment))\b", re.IGNORECASE)
# Remote servers that refuse an address often say so in words even under a policy code (5.7.1).
_NO_SUCH_ADDRESS = re.compile(
    r"user unknown|unknown user|no such (?:user|mailbox|recipient|address)|does not exist|doesn't exist|"
    r"not found|unknown recipient|invalid recipient|recipient (?:address )?rejected|mailbox unavailable|"
    r"mailbox (?:is )?disabled|account (?:is )?disabled|address rejected|no mailbox|user not found|"
    r"couldn't be found|could not be found|unrouteable|unroutable",
    re.IGNORECASE)


def classify(mail: InboundMail, *, person_known: bool = False) -> Verdict:
    """What ``mail`` is. ``person_known``: the sender is a roster contact or staff (see the module text)."""
    verdict = _classify(mail, person_known)
    suppress = _answer_suppressed(mail)
    return replace(verdict, no_auto_answer=suppress) if suppress else verdict


def _classify(mail: InboundMail, person_known: bool) -> Verdict:
    report = mail.report
    if report is not None and report.format == "arf":
        by = ", ".join(report.reporters) or "an unnamed recipient"
        return Verdict(kind="feedback", declared=True, feedback_type=report.feedback_type,
                       reporters=report.reporters, about_ids=_about(mail, report),
                       reason=f"feedback report (RFC 5965, {report.feedback_type or 'no type'}) about mail to {by}")
    if report is not None and report.format == "mdn":
        return Verdict(kind="read-receipt", declared=True, reporters=report.reporters, about_ids=_about(mail, report),
                       reason=f"read receipt (RFC 8098: {report.disposition or 'no disposition'})")
    if report is not None and report.format == "dsn":
        return _bounce(mail, report, declared=True, origin="delivery status notification (RFC 3464)")
    if any(_CALENDAR_REPLY.search(part) for part in mail.calendar_parts):
        signs = _declared(mail)
        how = f"; automatic ({signs[0][1]})" if signs else ""
        return Verdict(kind="calendar-reply", declared=bool(signs), about_ids=mail.thread_refs,
                       reason=f"calendar reply (iTIP METHOD:REPLY){how}")

    machine = _machine_sent(mail, person_known)
    if report is not None and report.format == "heuristic" and machine:
        return _bounce(mail, report, declared=machine[1],
                       origin=f"non-standard bounce read by flufl.bounce ({machine[0]})")

    signs = _declared(mail)
    if signs:
        # The headers say "automatic"; the subject and sender say which kind, where they can (for anyone:
        # that it is automatic is settled, only the kind is asked).
        looks = _looks_like(mail, person_known=False)
        hints = {k for k, _ in signs}
        kind = looks if looks != "none" else next((k for k in ("bounce", "auto-reply", "bulk") if k in hints),
                                                  "auto-reply")
        if kind == "bounce":
            heuristic = report if report is not None and report.format == "heuristic" else None
            return _bounce(mail, heuristic, declared=True, origin=signs[0][1])
        return Verdict(kind=kind, declared=True, reason=signs[0][1], about_ids=mail.thread_refs)

    local = mail.from_addr.partition("@")[0]
    if local in _DAEMON_LOCALPARTS or "daemon" in local:
        # A mail server's own address is nobody's, whatever list it is on.
        return _bounce(mail, None, declared=False, origin=f"sent by {mail.from_addr}")
    if person_known:
        # A contact's or colleague's mail: only the shape a mail client gives its own auto-replies, and
        # only together with a sign that it answers something, makes it automatic.
        answers = bool(_answer_suppressed(mail) or mail.in_reply_to)
        if answers and responder_subject(mail.subject):
            return Verdict(kind="auto-reply", reason=f"auto-reply subject {mail.subject[:80]!r}",
                           about_ids=mail.thread_refs)
        if answers and read_receipt_subject(mail.subject):
            return Verdict(kind="read-receipt", reason=f"read-receipt subject {mail.subject[:80]!r}",
                           about_ids=mail.thread_refs)
        return Verdict(kind="none", reason="written by a person")

    looks = _looks_like(mail, person_known)
    if looks == "bounce":
        return _bounce(mail, report if report is not None and report.format == "heuristic" else None,
                       declared=False, origin=_inferred_reason(mail))
    if looks != "none":
        return Verdict(kind=looks, reason=_inferred_reason(mail), about_ids=mail.thread_refs)
    return Verdict(kind="none", reason="no sign of automatic mail")


def _bounce(mail: InboundMail, report: MailReport | None, *, declared: bool, origin: str) -> Verdict:
    scanner = scanner_subject(mail.subject) or bool(_SCANNER_TEXT.search(mail.subject))
    delayed = report is not None and report.format == "heuristic" and delay_subject(mail.subject)
    failures = tuple(_failure(f, scanner, delayed) for f in (report.failed if report else ()))
    if scanner:
        origin = f"virus or content scanner notice; {origin}"
    if failures:
        worst = next((f for f in failures if f.permanent), None) or next((f for f in failures if f.gave_up), failures[0])
        what = "failed for good" if worst.permanent else "not delivered" if worst.gave_up else "delayed, still retried"
        detail = f"{worst.address} {what}" + (f" ({worst.status})" if worst.status else "")
        more = f" and {len(failures) - 1} more" if len(failures) > 1 else ""
        reason = f"{origin}: {detail}{more}"
    elif report is not None and report.actions:
        reason = f"{origin}: no failure reported ({', '.join(report.actions)})"
    else:
        reason = f"{origin}; names no failed address"
    return Verdict(kind="bounce", declared=declared, failures=failures, reason=reason,
                   delivered=report.delivered if report else (),
                   about_ids=_about(mail, report) if report else mail.reported_ids or mail.thread_refs)


def _failure(f: FailedRecipient, scanner: bool, delayed: bool) -> Failure:
    if delayed:
        # Some formats (Exim's warnings) say "still trying" only in the subject; their detectors then
        # report a failure the server never declared.
        f = FailedRecipient(address=f.address, gave_up=False, status=f.status, diagnostic=f.diagnostic)
    permanent = f.gave_up and not scanner and address_is_bad(f.status, f.diagnostic)
    if scanner:
        why = "a scanner stopped the message; the address itself works"
    elif f.gave_up and not permanent:
        why = "this message failed, not the address"
    else:
        why = ""
    text = "; ".join(x for x in (f.diagnostic, why) if x)
    return Failure(address=f.address, permanent=permanent, gave_up=f.gave_up, status=f.status, reason=text)


def address_is_bad(status: str, diagnostic: str = "") -> bool:
    """Does a final failure with this RFC 3463 status say the address is bad, or only that this message
    failed? 5.1.x (address), 5.2.x but 5.2.3 (mailbox: disabled, full for good), 5.4.1 and 5.4.4 (no
    such recipient, no route to the domain) and generic 5.0.0 are the address; class 4, policy (5.7.x),
    content (5.6.x) and size (5.2.3, 5.3.4) are the message, unless the server's words say the address
    does not exist. No status at all (heuristic formats): Mailman's view, a give-up is permanent."""
    parts = status.split(".")
    if len(parts) != 3:
        return not status
    klass, subject, detail = parts
    if klass != "5":
        return False
    if subject == "1" or (subject, detail) in {("0", "0"), ("4", "1"), ("4", "4")}:
        return True
    if subject == "2" and detail != "3":
        return True
    return bool(_NO_SUCH_ADDRESS.search(diagnostic))


def _about(mail: InboundMail, report: MailReport | None) -> tuple[str, ...]:
    ids = (report.about_ids if report else ()) + mail.reported_ids
    return tuple(i for i in dict.fromkeys(ids) if i != mail.message_id)[:5]


def _header(mail: InboundMail, name: str) -> list[str]:
    return [v for n, v in mail.auto_headers if n.lower() == name.lower()]


def _declared(mail: InboundMail) -> list[tuple[str, str]]:
    """(kind hint, reason) for every way the mail says it is automatic, strongest first."""
    out: list[tuple[str, str]] = []
    auto = mail.auto_submitted.split(";")[0].split("(")[0].strip()
    if auto and auto != "no":
        out.append(("auto-reply", f"Auto-Submitted: {mail.auto_submitted[:60]} (RFC 3834)"))
    if mail.return_path == "":
        out.append(("", "empty Return-Path (a null sender, as bounces and auto-replies use)"))
    elif (mail.return_path or "").split("@")[0] in _DAEMON_LOCALPARTS:
        out.append(("bounce", f"Return-Path {mail.return_path}"))
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-AutoReply-From", "X-Mail-Autoreply"):
        if _header(mail, name):
            out.append(("auto-reply", f"{name} header (set by auto-responders)"))
    # CommuniGate marks forwards and redirects the same way; those carry a person's mail.
    if any(v.strip().lower().startswith("reply") for v in _header(mail, "X-Autogenerated")):
        out.append(("auto-reply", "X-Autogenerated: Reply (CommuniGate auto-responder)"))
    # Exchange sets this on everything its inbox rules send, forwards of a person's mail included: only
    # together with the "no auto-answers" flag its out-of-office replies carry is it a responder.
    if _header(mail, "X-MS-Exchange-Inbox-Rules-Loop") and _answer_suppressed(mail):
        out.append(("auto-reply", "X-MS-Exchange-Inbox-Rules-Loop with X-Auto-Response-Suppress (Exchange rule reply)"))
    if _header(mail, "X-Cron-Env"):
        out.append(("bulk", "X-Cron-Env header (cron job output)"))
    # List servers that set no List-Id: ezmlm and Yahoo Groups (Mailing-List), fml (X-MLServer, X-ML-Name).
    for name in ("Mailing-List", "X-MLServer", "X-ML-Name"):
        if _header(mail, name):
            out.append(("bulk", f"{name} header (a mailing-list server)"))
            break
    if any(v.lower().strip() in ("true", "yes") for v in _header(mail, "X-FC-MachineGenerated")):
        out.append(("auto-reply", "X-FC-MachineGenerated: true (FirstClass)"))
    if any("autoresponder" in v.lower() for v in _header(mail, "X-POST-MessageClass") + _header(mail, "Delivered-To")):
        out.append(("auto-reply", "autoresponder marker (Mailtraq, qmail)"))
    precedences = [mail.precedence] + [v.lower().strip() for v in _header(mail, "X-Precedence")]
    for p in precedences:
        if p in ("auto_reply", "auto-reply"):
            out.append(("auto-reply", f"Precedence: {p}"))
        elif p in ("bulk", "junk", "list"):
            out.append(("bulk", f"Precedence: {p}"))
    for name in ("X-Mailer", "User-Agent"):
        software = next((v for v in _header(mail, name) if _RESPONDER_SOFTWARE.search(v)), None)
        if software:
            out.append(("auto-reply", f"{name}: {software[:60]} (an auto-responder)"))
    if _header(mail, "Feedback-ID"):
        out.append(("bulk", "Feedback-ID header (bulk sender)"))
    if _header(mail, "List-Unsubscribe"):
        out.append(("bulk", "List-Unsubscribe header (newsletter or list)"))
    if _header(mail, "X-Failed-Recipients"):
        out.append(("bounce", "X-Failed-Recipients header (Exim bounce)"))
    if mail.content_type == "multipart/report":
        out.append(("bounce", "a report (multipart/report) of a type not read here"))
    return out


def _machine_sent(mail: InboundMail, person_known: bool) -> tuple[str, bool] | None:
    """Why a non-standard bounce text is believed: (reason, declared), or None. A person pasting a
    bounce into a question carries none of these."""
    local = mail.from_addr.partition("@")[0]
    if mail.return_path == "":
        return "null sender", True
    if (mail.return_path or "").split("@")[0] in _DAEMON_LOCALPARTS:
        return f"Return-Path {mail.return_path}", True
    if _header(mail, "X-Failed-Recipients"):
        return "X-Failed-Recipients", True
    auto = mail.auto_submitted.split(";")[0].strip()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}", True
    if mail.content_type == "multipart/report":
        return "multipart/report", True
    if local in _DAEMON_LOCALPARTS or "daemon" in local:
        return f"sender {mail.from_addr}", False
    if not person_known and (bounce_subject(mail.subject) or scanner_subject(mail.subject)):
        return f"subject {mail.subject[:80]!r}", False
    return None


def _looks_like(mail: InboundMail, person_known: bool) -> str:
    """The kind the names and subject suggest; "none" when nothing does."""
    local = mail.from_addr.partition("@")[0]
    subject = mail.subject
    if bounce_subject(subject) or scanner_subject(subject):
        return "bounce" if not person_known or local in _DAEMON_LOCALPARTS else "none"
    if local in _DAEMON_LOCALPARTS or "daemon" in local or mail.content_type == "multipart/report":
        return "bounce"
    if person_known:
        return "auto-reply" if auto_reply_prefix(subject) else "none"
    if auto_reply_subject(subject):
        return "auto-reply"
    if read_receipt_subject(subject):
        return "read-receipt"
    if complaint_subject(subject):
        return "feedback"
    if _header(mail, "X-Loop"):
        return "auto-reply"
    if (local in _BULK_LOCALPARTS or local.startswith(("owner-", "bounce-", "bounces+", "noreply", "no-reply"))
            or local.endswith("-request") or mail.list_id):
        return "bulk"
    return "none"


def _inferred_reason(mail: InboundMail) -> str:
    local = mail.from_addr.partition("@")[0]
    subject = mail.subject
    if scanner_subject(subject):
        return f"virus or content scanner subject {subject[:80]!r}"
    if bounce_subject(subject):
        return f"non-delivery subject {subject[:80]!r}"
    if local in _DAEMON_LOCALPARTS or "daemon" in local:
        return f"sent by {mail.from_addr}"
    if mail.content_type == "multipart/report":
        return "a report (multipart/report) of an unknown type"
    if auto_reply_subject(subject):
        return f"auto-reply subject {subject[:80]!r}"
    if read_receipt_subject(subject):
        return f"read-receipt subject {subject[:80]!r}"
    if complaint_subject(subject):
        return f"complaint notice subject {subject[:80]!r} (not an RFC 5965 report)"
    if _header(mail, "X-Loop"):
        return "X-Loop header (a mail robot's loop guard)"
    if mail.list_id:
        return f"mailing-list traffic (List-Id {mail.list_id[:60]})"
    return f"automated sender {mail.from_addr}"


def _answer_suppressed(mail: InboundMail) -> str:
    for value in _header(mail, "X-Auto-Response-Suppress"):
        words = {w.strip().lower() for w in value.split(",")}
        if words & {"all", "autoreply", "oof"}:
            return f"X-Auto-Response-Suppress: {value[:40]}"
    return ""



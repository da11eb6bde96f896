"""Building blocks for the automatic-mail corpus (see tests/automatic_corpus/generate.py).

Every message is made up for partnerdesk's tests, in the *shape* each mail system
produces (Postfix, Exim, Sendmail, qmail, Exchange / Microsoft 365, Gmail, Yahoo,
Amazon SES, virus scanners, Outlook, Lotus Notes, Zimbra, Dovecot's Sieve...),
with invented names, domains under .example and our own Message-IDs. None is
copied from real mail. tests/test_automatic_corpus.py checks that the files on
disk are exactly what this script writes, and classifies each of them.

``expected.json`` holds, per file: the kind, the failed addresses with their
permanence, the Message-IDs the mail is about, whether the sender is a known
person (roster or staff), and for bounces the recipients of the mail of ours it
reports on (what our outbox knows).
"""

from __future__ import annotations

from dataclasses import dataclass, field

SUPPORT = "support@openatrium.example"
DATE = "Mon, 30 Nov 2026 10:15:00 -0500"

# The roster the corpus is about (addresses of partner contacts); tests measure against it.
ROSTER = (
    "antonio@nuvole.example", "andrea@nuvole.example", "billing@nuvole.example", "mark@cookshop.example",
    "giulia@atrium-it.example", "hans@kraut.example", "lena@kraut.example", "claire@lyon-web.example",
    "lucia@madrid-dev.example", "joao@lisboa.example", "pieter@amsterdam.example", "ana@rio.example",
)


@dataclass
class Sample:
    name: str
    raw: bytes
    kind: str
    failed: dict[str, bool] = field(default_factory=dict)  # address -> permanent
    about: tuple[str, ...] = ()
    person_known: bool = False
    sent_to: tuple[str, ...] = ()  # the recipients of our mail this bounce is about
    system: str = ""  # the mail system whose format it imitates
    gave_up: bool | None = None  # bounces: did the remote server stop trying?


def our_id(n: int, kind: str = "ack") -> str:
    return f"<oa-{n}.{kind}.{n * 7919 % 65536:04x}e1c2.{n * 104729 % 65536:04x}9a0b@openatrium.example>"


def our_headers(n: int, to: str, kind: str = "ack", subject: str = "Features revert fails on OA 2.6") -> str:
    subj = {"ack": f"Re: [OA-{n}] {subject}", "relay": f"Re: [OA-{n}] {subject}",
            "renewal": "Your Open Atrium partnership renews on January 31, 2027",
            "invitation": "Invitation: State of Open Atrium, Tuesday, January 12, 2027"}[kind]
    return (f"From: Open Atrium Support <{SUPPORT}>\n"
            f"To: {to}\n"
            f"Subject: {subj}\n"
            f"Date: Mon, 30 Nov 2026 10:02:11 -0500\n"
            f"Message-ID: {our_id(n, kind)}\n"
            f"Auto-Submitted: auto-replied\n"
            f"X-Auto-Response-Suppress: All\n"
            f"MIME-Version: 1.0\n"
            f"Content-Type: text/plain; charset=utf-8\n")


def our_mail(n: int, to: str, kind: str = "ack") -> str:
    return our_headers(n, to, kind) + "\nThank you for writing. We will answer by Tuesday, December 1, 10:00 AM ET.\n"


def message(head: str, body: str) -> bytes:
    """Headers and body with CRLF line ends, as they travel."""
    text = head.strip("\n") + "\n\n" + body
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def parts(boundary: str, *items: str) -> str:
    return "".join(f"--{boundary}\n{item.rstrip(chr(10))}\n\n" for item in items) + f"--{boundary}--\n"


def dsn_status(reporting_mta: str, recipients: list[dict[str, str]], arrival: str = DATE) -> str:
    blocks = [f"Reporting-MTA: dns; {reporting_mta}\nArrival-Date: {arrival}\n"]
    for r in recipients:
        lines = []
        if r.get("original"):
            lines.append(f"Original-Recipient: {r['original']}")
        lines.append(f"Final-Recipient: {r['final']}")
        lines.append(f"Action: {r['action']}")
        lines.append(f"Status: {r['status']}")
        if r.get("remote"):
            lines.append(f"Remote-MTA: dns; {r['remote']}")
        if r.get("diag"):
            lines.append(f"Diagnostic-Code: {r['diag']}")
        if r.get("last"):
            lines.append(f"Last-Attempt-Date: {r['last']}")
        blocks.append("\n".join(lines) + "\n")
    return "Content-Type: message/delivery-status\n\n" + "\n".join(blocks)


def dsn(*, boundary: str, head: str, notice: str, status: str, original: str, original_type: str = "headers",
        notice_head: str = "Content-Type: text/plain; charset=us-ascii\n") -> bytes:
    if original_type == "headers":
        orig = "Content-Type: text/rfc822-headers\n\n" + original
    else:
        orig = "Content-Type: message/rfc822\n\n" + original
    body = "This is a MIME-encapsulated message.\n\n" + parts(boundary, notice_head + "\n" + notice, status, orig)
    return message(head + f'MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status;\n'
                          f' boundary="{boundary}"\n', body)


def plain(head: str, body: str, ctype: str = "text/plain; charset=utf-8") -> bytes:
    return message(head + f"MIME-Version: 1.0\nContent-Type: {ctype}\nContent-Transfer-Encoding: 8bit\n", body)



"""OutgoingMail -> RFC 5322 bytes, from Jinja2 templates.

Each kind of mail has one template, ``templates/<name>.txt.j2``. The text part is
rendered from it; the HTML part is a designed page made from that same text
(mailbox/html_mail.py, templates/mail.html.j2), so the two say the same. Templates
run in Jinja2's sandbox with undefined variables as errors: partner-written text
is only ever *data* in the context, and the HTML escapes it through autoescaping.

The output is 7-bit clean (quoted-printable or base64 where needed) so it can be
stored as text in the outbox and sent by any server.

The message is assembled here by hand rather than with ``email.message.EmailMessage``: we know
its whole shape (text and HTML alternatives, maybe a calendar part, maybe files), and the
standard library's header registry parsed every header we set again, which made one
acknowledgement cost several milliseconds (a burst of requests, or a mailing of thousands, is
bounded by it). Headers that are plain ASCII and short go out as they are; anything else
(non-ASCII words, long lines) is encoded and folded by the standard library's own encoders
(RFC 2047 words, RFC 2231 file names). A calendar invitation's shared part is built once per
call and only the attendee differs per recipient (mailbox/ical.py).
"""

from __future__ import annotations

import base64
import binascii
import email.header
import email.utils
import functools
import hashlib
import re
from datetime import datetime
from email import quoprimime
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment

from workflows.model import OutgoingMail

from .html_mail import HtmlMail

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
MAX_LINE = 998  # RFC 5322's hard limit; headers longer than that are folded (as the standard library did)
_CRLF = "\r\n"


def _header_safe(value: str) -> str:
    return re.sub(r"[\r\n]+", " ", value).strip()


def text_to_html(text: str, *, program_name: str = "Open Atrium Partners Program", kind: str = "",
                 subject: str = "") -> str:
    """The HTML alternative of ``text`` alone (no call to action): for tests and previews."""
    return HtmlMail(TEMPLATES_DIR, program_name=program_name).render(
        text, kind=kind, subject=subject, context={}, calendar=None, support_address="", support_name="")


# -- headers ------------------------------------------------------------------------------------------------------------
def _fold_ascii(name: str, value: str) -> str:
    """``Name: value``, folded at spaces if it would pass MAX_LINE characters."""
    line = f"{name}: {value}"
    if len(line) <= MAX_LINE:
        return line
    out: list[str] = []
    current = f"{name}:"
    for word in value.split(" "):
        if not word:
            continue
        if len(current) + 1 + len(word) > MAX_LINE and current != f"{name}:":
            out.append(current)
            current = " " + word
        else:
            current += " " + word
    out.append(current)
    return _CRLF.join(out)


def _unstructured(name: str, value: str) -> str:
    """An unstructured header (Subject, X-...): RFC 2047 words for non-ASCII text."""
    value = _header_safe(value)
    if value.isascii():
        return _fold_ascii(name, value)
    encoded = email.header.Header(value, "utf-8", header_name=name, maxlinelen=MAX_LINE).encode(linesep=_CRLF)
    return f"{name}: {encoded}"


def _mailbox(name: str, display: str, address: str) -> str:
    """An address header with one mailbox: the display name quoted or encoded as needed."""
    display = _header_safe(display)
    if display and not display.isascii():
        words = email.header.Header(display, "utf-8", header_name=name, maxlinelen=MAX_LINE).encode(linesep=_CRLF)
        return f"{name}: {words} <{address}>"
    return _fold_ascii(name, email.utils.formataddr((display, address)))


def _check_address(address: str) -> str:
    if any(c in address for c in "\r\n") or not address.isascii():
        raise ValueError(f"not a usable recipient address: {address!r}")
    return address


def _params(**params: str) -> str:
    out = []
    for key, value in params.items():
        if value.isascii():
            out.append(f'{key}="{value.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"')
        else:
            out.append(f"{key}*={email.utils.encode_rfc2231(value, 'utf-8')}")
    return "; ".join(out)


# -- bodies -------------------------------------------------------------------------------------------------------------
def _encode_text(text: str) -> tuple[str, bytes]:
    """(Content-Transfer-Encoding, CRLF body) for a text part, chosen as the standard library does:
    7bit when the text is ASCII with short lines, else the shorter of quoted-printable and base64."""
    lines = text.encode("utf-8").splitlines()
    if max(map(len, lines), default=0) <= MAX_LINE:
        joined = b"\r\n".join(lines) + b"\r\n"
        if joined.isascii():
            return "7bit", joined
    # Quoted-printable line by line (it knows no state across a hard line break: the same bytes), each
    # line remembered: the recipients of a mailing share all but a few lines of their HTML part.
    encoded = [_qp_line(x) for x in lines]
    sniffed = sum(len(x) + 1 for x in lines[:10])  # the first ten lines, as the standard library judges
    if sum(qp_len for _, _, qp_len in encoded[:10]) > 4 * ((sniffed + 2) // 3) + 1:  # its base64's length
        return "base64", base64.encodebytes(b"\n".join(lines) + b"\n").replace(b"\n", b"\r\n")
    # binascii's quoted-printable is the standard library's encoder in C (quoprimime's is Python, and
    # on a designed HTML part it was a third of the cost of building a mail). It can end a line with an
    # encoded space at column 77 or 78, past RFC 2045's 76: then quoprimime, which breaks first.
    if not all(ok for _, ok, _ in encoded):
        data = b"\n".join(lines) + b"\n"
        qp = quoprimime.body_encode(data.decode("latin-1"), 76).encode("ascii").replace(b"\r\n", b"\n")
        return "quoted-printable", qp.replace(b"\n", b"\r\n")
    return "quoted-printable", b"".join(line for line, _, _ in encoded)


def _qp_line(line: bytes) -> tuple[bytes, bool, int]:
    """One line quoted-printable, CRLF-ended; whether every encoded line is within RFC 2045's 76; and its
    length as binascii writes it (LF-ended), for the choice of encoding."""
    return _qp_remembered(line) if len(line) <= _REMEMBER_LINE else _qp_encode(line)


def _qp_encode(line: bytes) -> tuple[bytes, bool, int]:
    qp = binascii.b2a_qp(line + b"\n", istext=True)
    return qp.replace(b"\n", b"\r\n"), max(map(len, qp.split(b"\n"))) <= 76, len(qp)


_REMEMBER_LINE = 4000  # bytes: longer lines (someone's pasted log in a relay) are not kept
_qp_remembered = functools.lru_cache(maxsize=512)(_qp_encode)


class _Part:
    __slots__ = ("headers", "body")

    def __init__(self, headers: list[str], body: bytes) -> None:
        self.headers = headers
        self.body = body


def _text_part(subtype: str, text: str, **params: str) -> _Part:
    cte, body = _encode_text(text)
    ctype = f"text/{subtype}; " + _params(charset="utf-8", **params)
    return _Part([f"Content-Type: {ctype}", f"Content-Transfer-Encoding: {cte}"], body)


def _file_part(data: bytes, content_type: str, filename: str) -> _Part:
    maintype, _, subtype = content_type.partition("/")
    ctype = f"{maintype or 'application'}/{subtype or 'octet-stream'}"
    return _Part([f"Content-Type: {ctype}", "Content-Transfer-Encoding: base64",
                  f"Content-Disposition: attachment; {_params(filename=_header_safe(filename))}"],
                 base64.encodebytes(data).replace(b"\n", b"\r\n"))


def _multipart(subtype: str, parts: list[_Part], seed: str) -> _Part:
    """A multipart/<subtype> part whose boundary occurs in none of its parts."""
    n = 0
    while True:
        boundary = "===============" + hashlib.sha256(f"{seed}/{subtype}/{n}".encode()).hexdigest()[:20] + "=="
        marker = b"--" + boundary.encode()
        if not any(marker in p.body or any(marker.decode() in h for h in p.headers) for p in parts):
            break
        n += 1
    chunks = []
    for p in parts:
        chunks.append(marker + b"\r\n" + _CRLF.join(p.headers).encode("ascii") + b"\r\n\r\n" + p.body)
    # Each part's body ends with CRLF, which stays the part's; the CRLF before a delimiter is the delimiter's.
    body = b"\r\n".join(chunks) + b"\r\n" + marker + b"--\r\n"
    return _Part([f'Content-Type: multipart/{subtype}; boundary="{boundary}"'], body)


class Composer:
    def __init__(self, *, support_address: str, support_name: str, templates_dir: Path = TEMPLATES_DIR,
                 globals_: dict[str, Any] | None = None, program_name: str = "Open Atrium Partners Program") -> None:
        self.support_address = support_address
        self.support_name = support_name
        self.html = HtmlMail(templates_dir, program_name=program_name)
        self.env = SandboxedEnvironment(
            loader=FileSystemLoader(str(templates_dir)),
            undefined=StrictUndefined,
            autoescape=False,  # text templates; the HTML part is escaped as a whole in text_to_html
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            # The templates ship with the program and are read once: checking each one's modification
            # time at every render was a stat per mail (restart the daemon after editing one).
            auto_reload=False,
        )
        self.env.globals.update(globals_ or {})

    def render_text(self, template: str, context: dict[str, Any]) -> str:
        try:
            tpl = self.env.get_template(f"{template}.txt.j2")
        except TemplateNotFound as e:
            raise RuntimeError(f"template {template}.txt.j2 is missing from {TEMPLATES_DIR}") from e
        return tpl.render(**context)

    def render(self, out: OutgoingMail, *, message_id: str, date: datetime) -> bytes:
        context = dict(out.context)
        if out.body_text is not None:
            context["body"] = out.body_text
        text = self.render_text(out.template, context)
        local, _, domain = self.support_address.partition("@")

        head = [
            _mailbox("From", out.from_name or self.support_name, self.support_address),
            _fold_ascii("To", ", ".join(_check_address(a) for a in out.to)),
            _unstructured("Subject", out.subject),
            f"Date: {email.utils.format_datetime(date)}",
            f"Message-ID: {_check_address(message_id)}",
        ]
        if out.reply_to_support:
            # A copy for one staff member replies to support+KEY@ (its reply key), anything else to support@.
            head.append(_mailbox("Reply-To", self.support_name, _check_address(out.reply_to or self.support_address)))
        if out.in_reply_to:
            head.append(f"In-Reply-To: {_check_address(_header_safe(out.in_reply_to))}")
        refs = [_header_safe(r) for r in dict.fromkeys(out.references)][-20:]
        if refs:
            head.append(_fold_ascii("References", " ".join(_check_address(r) for r in refs)))
        if out.automatic:
            # RFC 3834: say it is automatic, so that well-behaved autoresponders stay quiet.
            head.append(f"Auto-Submitted: {out.auto_kind}")
        for name, value in out.extra_headers:
            head.append(_unstructured(name, value))
        if out.thread_id:
            head.append(f"X-Partnerdesk-Thread: {out.thread_id}")
        head.append(f"X-Partnerdesk-Kind: {out.kind}")

        markup = self.html.render(text, kind=out.kind, subject=out.subject, context=context, calendar=out.calendar,
                                  support_address=self.support_address, support_name=self.support_name,
                                  personal=out.body_text is not None)
        alternatives = [_text_part("plain", text), _text_part("html", markup)]
        files: list[_Part] = []
        if out.calendar is not None:
            from .ical import build

            ics = build(out.calendar, organizer=self.support_address, organizer_name=self.support_name,
                        domain=domain, stamp=date)
            # An invitation as mail clients expect it (what Google Calendar sends): the iTIP body as a
            # third alternative, text/calendar; method=REQUEST|CANCEL, which clients turn into
            # Accept/Decline buttons, plus the same data as an invite.ics attachment for clients that
            # only import files.
            alternatives.append(_text_part("calendar", ics, method=out.calendar.method))
            files.append(_file_part(ics.encode("utf-8"), "application/ics", "invite.ics"))
        for a in out.attachments:
            files.append(_file_part(a.data, a.content_type, a.filename))
        root = _multipart("alternative", alternatives, message_id)
        if files:
            root = _multipart("mixed", [root, *files], message_id)
        head.append("MIME-Version: 1.0")
        head += root.headers
        return _CRLF.join(head).encode("ascii") + b"\r\n\r\n" + root.body

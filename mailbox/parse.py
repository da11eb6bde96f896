"""Raw bytes -> InboundMail, once, at the boundary.

Mail from the outside world is often broken: missing headers, undeclared or
bogus charsets, bad MIME. Parsing never raises for that; it records what was
odd in ``defects`` and returns the best reading it can. Only input that has no
reading at all (not bytes, empty) raises BadInput.

compat32 is used on purpose: it is about 20 times faster than policy.default
(see shared/notes/mail-servers.md) and never raises on odd headers; we decode
the few headers we need ourselves.

``parse(raw, received_at=..., bodies=False)`` reads the header block alone (what threading and the
history import decide on) and says in ``InboundMail.body_read`` that it did; ``body_hint`` says
whether the bytes hold something only a full reading finds (a delivery report, mail a machine sent
that the bounce detectors would read, a calendar reply, an unsubscribe token), so the caller knows
when a full parse is needed after all. Plain values take a fast path; anything unusual (encoded
words, 8-bit bytes, quoting) goes through the strict parsers, so both readings agree.
"""

from __future__ import annotations

import email
import email.errors
import email.header
import email.parser
import email.policy
import email.utils
import hashlib
import html
import re
from datetime import datetime, timezone
from email.message import Message
from html.parser import HTMLParser


from mailbox.reports import machine_sent, marker_headers, read_report
from workflows.errors import BadInput

from .quotes import reply_text
from workflows.model import Attachment, InboundMail

from .references import message_ids

MAX_TEXT = 200_000  # characters of body text kept for threads and notifications
_MSGID_RE = re.compile(r"<[^<>\s]{1,900}>")
_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To")
_AUTO_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Auto-Reply-From", "X-Mail-Autoreply", "X-Loop")


def decode_header(value: object) -> str:
    """An RFC 2047 header as text, never raising (bad charsets become replacement characters)."""
    if value is None:
        return ""
    if isinstance(value, str) and "=?" not in value and value.isascii():
        return _clean(value)  # nothing to decode: what make_header(decode_header(...)) returns
    if isinstance(value, email.header.Header):
        # Raw 8-bit bytes in a header (RFC 6532, or a sloppy mailer): compat32 hands them over as
        # "unknown-8bit", which str() would turn into replacement characters. Most such mail is UTF-8.
        return _clean("".join(_decode_bytes(c, None if cs in (None, "unknown-8bit") else cs)
                              if isinstance(c, bytes) else c for c, cs in email.header.decode_header(value)))
    raw = str(value)
    try:
        return _clean(str(email.header.make_header(email.header.decode_header(raw))))
    except Exception:  # unknown charset or broken encoded word: decode part by part, leniently
        pass
    try:
        parts = email.header.decode_header(raw)
    except Exception:
        return _clean(raw)
    text = "".join(_decode_bytes(c, cs) if isinstance(c, bytes) else c for c, cs in parts)
    return _clean(text)


def _clean(text: str) -> str:
    # Headers cannot hold line breaks; hostile text must not forge new ones downstream.
    return re.sub(r"[\r\n\t]+", " ", text).strip()


def _decode_bytes(data: bytes, charset: str | None) -> str:
    for cs in (charset, "utf-8"):
        if not cs:
            continue
        try:
            return data.decode(cs)
        except (LookupError, ValueError):  # ValueError: a NUL in the charset name; UnicodeDecodeError is one
            continue
    return data.decode("latin-1")  # never fails: every byte is a character


def _addresses(msg: Message, name: str) -> list[tuple[str, str]]:
    # Split the raw header into addresses first and decode only the display names: decoding first
    # would let an encoded word in the name ("=?utf-8?Q?staff=40us?= <evil@x>") become the address.
    values = [_clean(str(v)) for v in msg.get_all(name, [])]
    out = []
    for display, addr in email.utils.getaddresses(values):
        addr = addr.strip().lower()
        if "@" in addr and " " not in addr:
            out.append((decode_header(display), addr))
    return out


# "Name <local@domain>" or "local@domain" with nothing a strict parser could read otherwise: no quotes,
# comments, encoded words, groups, second addresses or specials in the name. Anything else takes the
# strict path below.
_SIMPLE_FROM = re.compile(r"\s*(?:([A-Za-z0-9 .'_-]*[A-Za-z0-9'_-])\s*<([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+"
                          r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)>|([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+"
                          r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+))\s*")


_ODD_DOTS = re.compile(r"(^|[<\s])\.|\.@|\.>|\.$")


def _sender(msg: Message, defects: list[str]) -> tuple[str, str]:
    """(display name, address) of the one author, or ("", "") when From is missing or ambiguous.

    Who wrote a mail decides whether it is staff, so any doubt means "nobody":
    ``young@us.example <evil@x.example>`` parses as young@us.example with lenient
    parsers while servers and DMARC look at evil@x.example. Such a header, or
    several authors, is recorded as a defect and the sender left unknown.
    """
    values = msg.get_all("From", [])
    if not values:
        defects.append("no From header")
        return "", ""
    value = values[0]
    if isinstance(value, email.header.Header):  # raw 8-bit bytes (RFC 6532 or a sloppy mailer)
        value = "".join(_decode_bytes(b, None if cs in (None, "unknown-8bit") else cs) if isinstance(b, bytes) else b
                        for b, cs in email.header.decode_header(value))
    raw = _clean(str(value))
    if len(values) > 1:
        defects.append(f"{len(values)} From headers; the sender is treated as unknown")
        return "", ""
    simple = _SIMPLE_FROM.fullmatch(raw) if isinstance(value, str) else None
    if simple and ".." not in raw and not _ODD_DOTS.search(raw):
        name, addr, bare = simple.groups()
        if bare:
            return "", bare.lower()
        if "@" not in (name or "") and not (name or "").startswith("."):
            return " ".join((name or "").split()), addr.lower()
    try:
        header = email.policy.default.header_factory("From", raw)
        addresses = list(header.addresses)
        invalid = [d for d in header.defects if isinstance(d, email.errors.InvalidHeaderDefect)]
    except Exception as e:  # the strict parser gave up: no sender we can trust
        defects.append(f"unparseable From header {raw[:200]!r} ({type(e).__name__})")
        return "", ""
    if len(addresses) != 1 or invalid:
        defects.append(f"ambiguous From header {raw[:200]!r}: the sender is treated as unknown")
        return "", ""
    address = addresses[0].addr_spec.strip().lower()
    if "@" not in address or " " in address or address.startswith("@") or address.endswith("@"):
        defects.append(f"no usable address in From {raw[:200]!r}")
        return "", ""
    return _clean(addresses[0].display_name or ""), address


def _msgids(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(m for m in _MSGID_RE.findall(value or "")))


class _HTMLText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in ("br", "p", "div", "tr", "li", "h1", "h2", "h3"):
            self.parts.append("\n")

    def handle_endtag(self, tag):  # noqa: ANN001
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):  # noqa: ANN001
        if not self._skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    p = _HTMLText()
    try:
        p.feed(markup)
        p.close()
    except Exception:
        return html.unescape(re.sub(r"<[^>]+>", " ", markup))
    return re.sub(r"\n\s*\n+", "\n\n", "".join(p.parts)).strip()


def _part_text(part: Message, defects: list[str]) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception as e:  # a broken base64 body, for instance
        defects.append(f"undecodable body part: {e}")
        payload = None
    if payload is None:
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    charset = part.get_content_charset()
    text = _decode_bytes(payload, charset)
    if charset and text and charset.lower() not in ("utf-8", "us-ascii", "ascii"):
        try:
            payload.decode(charset)
        except (LookupError, ValueError):
            defects.append(f"body charset {charset!r} unknown or wrong; decoded leniently")
    return text


def body_parts(msg: Message, defects: list[str]) -> tuple[str, str | None, bool]:
    """(the best plain text, the HTML part's markup or None, whether the text was made from the HTML)."""
    plain = html_part = None
    for part in msg.walk():
        if part.is_multipart():
            continue
        disposition = str(part.get("Content-Disposition") or "").lower()  # a Header object if 8-bit
        if disposition.startswith("attachment"):
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain" and plain is None:
            plain = part
        elif ctype == "text/html" and html_part is None:
            html_part = part
    markup = _part_text(html_part, defects)[:MAX_TEXT * 5] if html_part is not None else None
    if plain is not None:
        text = _part_text(plain, defects)
    elif markup is not None:
        text = html_to_text(markup)
    else:
        text = ""
    if len(text) > MAX_TEXT:
        defects.append(f"body text cut at {MAX_TEXT} characters (was {len(text)})")
        text = text[:MAX_TEXT]
    return text.replace("\r\n", "\n"), markup, plain is None and markup is not None


def body_text(msg: Message, defects: list[str]) -> str:
    return body_parts(msg, defects)[0]


def strip_quoted(text: str, html: str | None = None, *, text_from_html: bool = False) -> str:
    """The new part of a reply: quoted history, its attribution line and the signature removed, in the
    common languages and by the HTML part's quote markers (mailbox/quotes.py)."""
    try:
        return reply_text(text, html, text_from_html=text_from_html)
    except Exception:  # never lose a mail over the quote finder; the whole text is the safe reading
        return text.strip()


def _suppresses_autoreply(msg: Message) -> bool:
    value = decode_header(msg.get("X-Auto-Response-Suppress")).lower()
    return any(word in value for word in ("all", "autoreply", "oof"))


def reported_ids(msg: Message) -> tuple[str, ...]:
    """The Message-IDs of the mail a delivery report (bounce) is about, from its embedded headers."""
    if msg.get_content_type() != "multipart/report":
        return ()
    ids: list[str] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        try:
            if ctype == "message/rfc822" and part.is_multipart():
                headers = part.get_payload(0)
            elif ctype == "text/rfc822-headers":
                headers = email.message_from_string(_part_text(part, []))
            else:
                continue
            ids += _msgids(decode_header(headers.get("Message-ID")))
        except Exception:  # a broken report is still a report; it just names nothing
            continue
    return tuple(dict.fromkeys(ids))[:5]


MAX_ATTACHMENTS = 25 * 1024 * 1024  # bytes kept per message; more is noted as a defect


def attachments(msg: Message, defects: list[str]) -> tuple[Attachment, ...]:
    """Files in the mail (parts with a file name, or marked as attachments), up to MAX_ATTACHMENTS."""
    out: list[Attachment] = []
    total = 0
    for part in msg.walk():
        if part.is_multipart() or part is msg:
            continue
        disposition = str(part.get("Content-Disposition") or "").lower()
        filename = part.get_filename()
        if not (disposition.startswith("attachment") or (filename and not part.get_content_type().startswith("text/"))):
            continue
        try:
            data = part.get_payload(decode=True) or b""
        except Exception:
            defects.append(f"attachment {filename!r} could not be decoded")
            continue
        total += len(data)
        if total > MAX_ATTACHMENTS:
            defects.append(f"attachments beyond {MAX_ATTACHMENTS // (1024 * 1024)} MB not kept ({filename!r})")
            break
        name = decode_header(filename) if filename else "attachment"
        out.append(Attachment(filename=re.sub(r"[\\/\x00-\x1f]", "_", name)[:200], data=data,
                              content_type=part.get_content_type()))
    return tuple(out)


def calendar_parts(msg: Message, defects: list[str]) -> tuple[str, ...]:
    parts = [p for p in msg.walk() if not p.is_multipart() and p.get_content_type() == "text/calendar"]
    return tuple(_part_text(p, defects) for p in parts[:5])  # decode only what is kept


_HEAD_END = re.compile(rb"\r?\n\r?\n")
# Things only a reading of the body finds: a delivery report, a calendar part, an unsubscribe token.
_BODY_HINTS = (b"multipart/report", b"text/calendar", b"unsubscribe")


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")
_FIELD = re.compile(r"[\041-\071\073-\176]+:")


def _plain_head(head: bytes) -> Message | None:
    """The header block as compat32's parser would store it, read without the feed parser, or None when
    the block has anything that parser treats specially (an mbox "From " line, a line that is no header)."""
    text = head.decode("ascii", "surrogateescape")
    fields: list[list[str]] = []
    for line in _LINE.findall(text):
        if line in ("\r\n", "\n", "\r"):
            break
        if line[0] in " \t":
            if not fields:
                return None
            fields[-1].append(line)
        elif _FIELD.match(line) and not line.startswith("From "):
            fields.append([line])
        else:
            return None
    msg = Message()
    for lines in fields:
        msg._headers.append(email.policy.compat32.header_source_parse(lines))  # type: ignore[attr-defined]
    return msg


def _hinted(raw: bytes) -> bool:
    low = raw.lower()
    return any(h in low for h in _BODY_HINTS)


def parse(raw: bytes, *, received_at: datetime, bodies: bool = True) -> InboundMail:
    """Parse one message. ``received_at`` is our server's receipt time (IMAP INTERNALDATE).

    ``bodies=False``: the header block only (``body_read`` is False, the text and parts empty).
    """
    if not isinstance(raw, (bytes, bytearray)) or not raw.strip():
        raise BadInput("empty message: nothing to parse")
    raw = bytes(raw)
    sha = hashlib.sha256(raw).hexdigest()
    if not bodies:
        end = _HEAD_END.search(raw)
        head = raw[:end.end()] if end else raw
        msg = _plain_head(head)
        if msg is None:  # anything unusual: the standard library's parser, as for a full reading
            try:
                msg = email.parser.BytesParser().parsebytes(head, headersonly=True)
            except Exception as e:
                raise BadInput(f"not a parseable mail message: {e}") from e
        return _mail(msg, raw, sha, received_at, bodies=False)
    try:
        msg = email.message_from_bytes(raw)
    except Exception as e:  # compat32 practically never raises; be safe anyway
        raise BadInput(f"not a parseable mail message: {e}") from e
    return _mail(msg, raw, sha, received_at, bodies=True)


def _mail(msg: Message, raw: bytes, sha: str, received_at: datetime, *, bodies: bool) -> InboundMail:
    defects = [type(d).__name__ for d in msg.defects]
    top_defects = len(msg.defects)

    message_id = (_msgids(decode_header(msg.get("Message-ID"))) or (None,))[0]
    if message_id is None:
        defects.append("no Message-ID; one was derived from the content")
        message_id = f"<{sha[:32]}@missing-id.partnerdesk>"

    from_name, from_addr = _sender(msg, defects)

    date_header = None
    if msg.get("Date"):
        try:
            date_header = email.utils.parsedate_to_datetime(decode_header(msg["Date"]))
            if date_header.tzinfo is None:
                date_header = date_header.replace(tzinfo=timezone.utc)
        except (TypeError, ValueError, IndexError, OverflowError):
            defects.append("unreadable Date header")

    return_path: str | None = None
    if msg.get("Return-Path") is not None:
        rp = decode_header(msg["Return-Path"]).strip()
        return_path = "" if rp in ("<>", "") else rp.strip("<>").lower()

    text, markup, from_html, calendars, files, reported, report = "", None, False, (), (), (), None
    if bodies:
        text, markup, from_html = body_parts(msg, defects)
        calendars = calendar_parts(msg, defects)
        report = read_report(msg, raw, defects)
        reported = reported_ids(msg)
        files = attachments(msg, defects)
        # Decoding a body (bad base64, say) records its defects on the part only now, after the copy above.
        late = [type(d).__name__ for part in msg.walk()
                for d in (part.defects[top_defects:] if part is msg else part.defects)]
        defects.extend(dict.fromkeys(d for d in late if d not in defects))
    return InboundMail(
        message_id=message_id,
        raw_sha256=sha,
        received_at=received_at,
        from_addr=from_addr,
        from_name=from_name,
        to=tuple(a for _, a in _addresses(msg, "To")),
        cc=tuple(a for _, a in _addresses(msg, "Cc")),
        envelope_to=tuple(dict.fromkeys(a for name in _ENVELOPE_HEADERS for _, a in _addresses(msg, name))),
        subject=decode_header(msg.get("Subject"))[:998],
        date_header=date_header,
        # Read as clients write them: comments, bare ids, "(message from ... of ...)", cut References.
        in_reply_to=message_ids(" ".join(decode_header(v) for v in msg.get_all("In-Reply-To", []))),
        references=message_ids(" ".join(decode_header(v) for v in msg.get_all("References", []))),
        text=text,
        reply_text=strip_quoted(text, markup, text_from_html=from_html) if bodies else "",
        auto_submitted=decode_header(msg.get("Auto-Submitted")).lower(),
        precedence=decode_header(msg.get("Precedence")).lower(),
        return_path=return_path,
        list_id=decode_header(msg.get("List-Id")),
        other_auto_headers=tuple(h for h in _AUTO_HEADERS if msg.get(h) is not None)
        + (("X-Auto-Response-Suppress",) if _suppresses_autoreply(msg) else ()),
        content_type=msg.get_content_type(),
        calendar_parts=calendars,
        reported_ids=reported,
        report=report,
        auto_headers=marker_headers(msg),
        attachments=files,
        size=len(raw),
        defects=tuple(defects),
        body_read=bodies,
        # A report the heuristic bounce detectors might find needs the body too (mailbox/reports.py).
        body_hint=bodies or msg.get_content_type() == "multipart/report" or _hinted(raw) or machine_sent(msg),
    )

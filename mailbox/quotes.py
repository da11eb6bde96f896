"""The new part of a reply: the quoted history, its attribution line and the signature taken off.

A staff answer is relayed to the partner; what the staff member's mail client quoted below it (our
notification, with the partner's request and the attribution line "On … wrote:") must not go along,
whatever language the client is set to. Three sources of knowledge, in this order:

1. the HTML part's quote markers, which name the quote whatever the language: Gmail's ``gmail_quote``,
   Apple Mail's and Thunderbird's ``<blockquote type="cite">`` (and ``moz-cite-prefix``), Outlook's
   ``divRplyFwdMsg`` / ``appendonsend`` and its ``border-top`` separator, Yahoo's ``yahoo_quoted``. The
   first line inside the marker (the attribution, or Outlook's "From:" line) is looked up in the plain
   part, which is cut there; an HTML-only mail is cut at the marker itself;
2. mail-parser-reply (pinned), which knows the attribution lines and Outlook header blocks of English,
   German, French, Spanish, Italian, Dutch, Japanese and Chinese clients;
3. what it does not know, found with the corpus in tests/data/replies/: Portuguese ("Em … escreveu:"),
   Russian (Android's "… пользователь "…" написал:", Apple's "написал(а):", Gmail's "… г. в 10:00, X <x>:",
   Thunderbird's "пишет:"), Spanish and Dutch Gmail lines its patterns miss, Outlook header blocks in
   Russian and Japanese, "Original Message" separators in every language, and a line ending in ":" that
   introduces a trailing ">" quote (any language).

Pure text in, text out; the partner's words are never interpreted, only cut.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from mailparser_reply import EmailReplyParser
from mailparser_reply.parser import EmailMessage

LIBRARY_LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "ja", "zh")
_PARSER = EmailReplyParser(languages=list(LIBRARY_LANGUAGES))
# The same patterns, to try on an attribution line the plain part wrapped in two.
_LIBRARY_HEADER = EmailMessage(text="", languages=list(LIBRARY_LANGUAGES)).HEADER_REGEX

_EXTRA_ATTRIBUTION = [re.compile(p, re.IGNORECASE) for p in (
    r"^Em\s.+\sescreveu:$",  # Portuguese: Gmail, Apple Mail
    r"^.+\s(?:написал|написала|написал\(а\)|пишет)\s?:$",  # Russian: Android, Apple Mail, Thunderbird
    r"^.*\d{4}\s?г\.,?\s.*<[^<>\s]+@[^<>\s]+>\s?:$",  # Russian Gmail: "чт, 26 нояб. 2026 г. в 10:00, X <x>:"
    r"^El\s.+\s(?:escribió|escribio):$",  # Spanish (the library's pattern wants two spaces before the verb)
    r"^Op\s.+\sschreef\s.+:$",  # Dutch Gmail: "Op do 26 nov. 2026 om 10:00 schreef X <x>:"
    r"^Op\s.+\shet volgende geschreven:$",  # Dutch Apple Mail
    r"^\d{4}/\d{1,2}/\d{1,2}.*のメール[:：]$",  # Japanese Apple Mail
    r"^.*\d{4}年\d{1,2}月\d{1,2}日.*(?:写道|寫道)[:：]$",  # Chinese with an ASCII colon, traditional characters
)]
# "-----Original Message-----" and its translations (Outlook, Lotus, older clients), and Outlook's rule.
_SEPARATOR = re.compile(
    r"^(?:-{2,}\s*(?:Original Message|Ursprüngliche Nachricht|Message d'origine|Mensaje original|"
    r"Messaggio originale|Oorspronkelijk bericht|Mensagem original|Исходное сообщение|Пересылаемое сообщение|"
    r"元のメッセージ|原始邮件|原始郵件|Forwarded message|Weitergeleitete Nachricht)\s*-{2,}|_{20,})$", re.IGNORECASE)
# Outlook's header block, "From: … / Sent: …", where the library lacks the language (or a client wrote it
# with a space before the colon): a From line with a Sent/Date line within the next four lines.
_FROM = re.compile(r"^\*?(?:From|Von|De|Da|Van|От|От кого|差出人|送信者|发件人|寄件者)\s?\*?\s?[:：]", re.IGNORECASE)
_SENT = re.compile(r"^\*?(?:Sent|Date|Gesendet|Datum|Envoyé|Enviado|Enviada|Inviato|Data|Fecha|Verzonden|"
                   r"Отправлено|Дата|送信日時|日時|发送时间|發送時間|日期)\s?\*?\s?[:：]", re.IGNORECASE)
_SIGNATURE = re.compile(r"^(?:--\s?|Sent from my .+|Get Outlook for .+|Von meinem .+ gesendet|Envoyé de mon .+|"
                        r"Enviado desde mi .+|Inviato da .+|Verzonden met .+|Отправлено с .+)$", re.IGNORECASE)


def _norm(line: str) -> str:
    return re.sub(r"[\s\u00a0\u200b\u202f]+", " ", line).strip()


def _unquoted(line: str) -> str:
    return re.sub(r"^(?:>\s?)+", "", _norm(line)).strip()


def _library_cut(lines: list[str]) -> int | None:
    """Where mail-parser-reply sees the first reply header, as a line index of ``lines``."""
    try:
        message = _PARSER.read("\n".join(_norm(x) for x in lines))
    except Exception:  # a pattern blowing up on odd text must not lose the mail
        return None
    headers = [r.headers for r in message.replies if r.headers]
    if not headers:
        return None
    first = _norm(headers[0].strip().splitlines()[0])
    for i, line in enumerate(lines):
        if _norm(line) == first:
            return i
    return None


def _own_cut(lines: list[str]) -> int | None:
    for i, line in enumerate(lines):
        text = _unquoted(line)
        if not text:
            continue
        joined = _unquoted(text + " " + lines[i + 1]) if i + 1 < len(lines) else text  # wrapped in two
        if _SEPARATOR.match(text) or any(p.match(text) or p.match(joined) for p in _EXTRA_ATTRIBUTION):
            return i
        if joined != text and _LIBRARY_HEADER.fullmatch(joined):
            return i
        if _FROM.match(text) and any(_SENT.match(_unquoted(x)) for x in lines[i + 1:i + 5]):
            return i
    return None


def find_line(lines: list[str], wanted: str) -> int | None:
    """The first line where ``wanted`` (a line from the HTML part) starts, also when the plain part wrapped it."""
    wanted = _unquoted(wanted)
    if len(wanted) < 6:
        return None
    for i, line in enumerate(lines):
        have = _unquoted(line)
        if len(have) >= min(12, len(wanted)) and (wanted.startswith(have) or have.startswith(wanted)):
            return i
    return None


def _trim_end(lines: list[str]) -> list[str]:
    """Trailing quoted lines, the line introducing them, a signature and blank lines off the end."""
    def drop_blank() -> None:
        while lines and not lines[-1].strip():
            lines.pop()

    drop_blank()
    quoted = False
    while lines and (lines[-1].lstrip().startswith(">") or not lines[-1].strip()):
        quoted = quoted or lines[-1].lstrip().startswith(">")
        lines.pop()
    if quoted and lines and re.search(r"[:：]\s*$", lines[-1]) and re.search(r"\d|@", lines[-1]):
        lines.pop()  # "On … wrote:" in a language nobody above knew: it introduced the quote
    drop_blank()
    for i in range(len(lines) - 1, max(-1, len(lines) - 12), -1):
        if _SIGNATURE.match(lines[i].rstrip()) and (lines[i].rstrip() in ("--", "-- ") or i >= len(lines) - 2):
            del lines[i:]
            break
    drop_blank()
    return lines


def strip_text(text: str) -> str:
    """The new part of a plain-text reply; the whole text if nothing new is left (a mail that is all quote)."""
    lines = text.replace("\r\n", "\n").split("\n")
    cuts = [c for c in (_library_cut(lines), _own_cut(lines)) if c is not None]
    kept = _trim_end(lines[: min(cuts)] if cuts else list(lines))
    reply = "\n".join(kept).strip()
    return reply or text.strip()


# -- HTML ----------------------------------------------------------------------------------------------------
_BLOCKS = {"br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "blockquote", "table", "ul", "ol", "hr", "pre"}


def _is_marker(tag: str, attrs: dict[str, str]) -> bool:
    classes = set((attrs.get("class") or "").split())
    ident = attrs.get("id") or ""
    style = re.sub(r"\s+", "", (attrs.get("style") or "").lower())
    if classes & {"gmail_quote", "gmail_attr", "moz-cite-prefix", "yahoo_quoted", "OutlookMessageHeader",
                  "protonmail_quote", "zmail_extra"}:
        return True
    if ident in ("divRplyFwdMsg", "appendonsend", "divtagdefaultwrapper_quote") or ident.startswith("yahoo_quoted"):
        return True
    if tag == "blockquote" and (attrs.get("type") or "").lower() == "cite":
        return True
    # Outlook desktop: <div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0in 0in 0in">
    return tag == "div" and "border-top:solid" in style and "border:none" in style


class _Cut(HTMLParser):
    """Text before the first quote marker, and inside it; a block boundary starts a line, <br> ends one."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.before: list[str] = []
        self.inside: list[str] = []
        self.found = False
        self._skip = 0
        self._pre = 0

    def _out(self) -> list[str]:
        return self.inside if self.found else self.before

    def _block(self) -> None:
        out = self._out()
        if out and not "".join(out[-2:]).endswith("\n"):
            out.append("\n")

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        if tag in ("script", "style", "head", "title"):
            self._skip += 1
            return
        if not self.found and _is_marker(tag, {k: v or "" for k, v in attrs}):
            self.found = True
        if tag == "pre":
            self._pre += 1
        if tag in ("br", "hr"):
            self._out().append("\n")
        elif tag in _BLOCKS:
            self._block()

    def handle_startendtag(self, tag, attrs):  # noqa: ANN001
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag):  # noqa: ANN001
        if tag in ("script", "style", "head", "title"):
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCKS and tag != "br":
            self._pre -= tag == "pre" and self._pre > 0
            self._block()

    def handle_data(self, data):  # noqa: ANN001
        if not self._skip:
            self._out().append(data if self._pre else re.sub(r"[ \t\r\n]+", " ", data))


def html_cut(markup: str) -> tuple[str, str | None]:
    """(the text before the first quote marker, the first line of text inside it); (all text, None) if none."""
    p = _Cut()
    try:
        p.feed(markup)
        p.close()
    except Exception:
        return "", None
    before = re.sub(r"[ \t]*\n[ \t]?", "\n", "".join(p.before))  # the space a <br> leaves at a line start
    before = re.sub(r"\n\s*\n+", "\n\n", before).strip()
    if not p.found:
        return before, None
    first = next((_norm(x) for x in "".join(p.inside).splitlines() if _norm(x)), "")
    return before, first


def reply_text(text: str, html: str | None = None, *, text_from_html: bool = False) -> str:
    """The new part of a reply whose body text is ``text`` and whose HTML part (if any) is ``html``.

    ``text_from_html``: the mail had no plain part and ``text`` was made from ``html``.
    """
    if html:
        before, marker = html_cut(html)
        if marker is not None:
            if text_from_html:
                return strip_text(before) if before.strip() else strip_text(text)
            lines = text.replace("\r\n", "\n").split("\n")
            at = find_line(lines, marker)
            if at is not None:
                cut = strip_text("\n".join(lines[:at]))
                return cut if cut.strip() else strip_text(text)
            stripped = strip_text(text)
            # The plain part did not show where the quote starts and the patterns found nothing either:
            # the HTML's own text before its marker is the safe answer (no history reaches the partner).
            if before.strip() and len(stripped) > len(before) + 40:
                return strip_text(before)
            return stripped
    return strip_text(text)

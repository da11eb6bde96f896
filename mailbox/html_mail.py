"""The HTML alternative of every mail: a designed page made from the same words as the text part.

The text part stays the one source of the wording (templates/<kind>.txt.j2). Its rendered text is read
as blocks (paragraphs, "Label:  value" details, "- " lists, indented listings, a quoted message after a
"----- … -----" line, a code snippet) and laid out by templates/mail.html.j2 in Jinja2 with autoescaping,
so every word, the partner's included, is escaped by the library, never by hand: partner text stays data.
URLs and addresses become links (absolute https and mailto only). The program's name heads the mail; one
call to action is added where the mail has one (renew, sign up, add to calendar, the partner profile).

Mail clients strip ``<style>`` and never load remote CSS: the stylesheet (templates/mail.css) is inlined
into ``style`` attributes by css-inline (pinned) and the ``<style>`` element removed. Every block sets its own
background and text colour, so a client that darkens mail (Gmail, Outlook, Apple Mail in dark mode)
inverts pairs, never text alone; the layout is one fluid column of at most 600 px, readable on a phone.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

_LINK = re.compile(r"(?P<url>https://[^\s<>\"'()]+[^\s<>\"'().,;:!?])|"
                   r"(?P<mail>\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b)")
_DETAIL = re.compile(r"^ *([A-Z][\w -]{0,14}):( +)(\S.*)$")
_ITEM = re.compile(r"^ {0,4}- (.*)$")
_RULE = re.compile(r"^-{3,} (.+?) -{3,}$")
_WORD = re.compile(r"[A-Za-z0-9]+")  # what a paragraph's shape leaves out (HtmlMail._paragraph)
_MARK = "\ue000"  # a private-use character: no link, no escaping, no text of ours


@dataclass
class Block:
    kind: str  # "p" | "details" | "list" | "pre" | "quote" | "heading" | "code" | "sig"
    lines: list[Any] = field(default_factory=list)
    title: str = ""


def linkify(text: str) -> Markup:
    """``text`` escaped, with https URLs and mail addresses as links."""
    out: list[Markup | str] = []
    pos = 0
    for m in _LINK.finditer(text):
        out.append(escape(text[pos:m.start()]))
        if m.group("url"):
            out.append(Markup('<a href="{0}">{0}</a>').format(m.group("url")))
        else:
            out.append(Markup('<a href="mailto:{0}">{0}</a>').format(m.group("mail")))
        pos = m.end()
    out.append(escape(text[pos:]))
    return Markup("").join(out)


def _details(lines: list[str]) -> list[list[str]] | None:
    """"Label:  value" lines (indented, or aligned with two spaces after a colon), with indented continuations."""
    rows: list[list[str]] = []
    aligned = False
    for x in lines:
        m = _DETAIL.match(x)
        if m:
            rows.append([m.group(1), m.group(3).strip()])
            aligned = aligned or x.startswith("  ") or len(m.group(2)) >= 2
        elif rows and x.startswith("   ") and not _ITEM.match(x):
            rows[-1][1] += " " + x.strip()
        else:
            return None
    return rows if rows and aligned else None


def _is_list(lines: list[str]) -> bool:
    return bool(lines) and bool(_ITEM.match(lines[0])) and all(_ITEM.match(x) or x.startswith("    ") for x in lines)


def blocks(text: str, *, keep_lines: bool = False) -> list[Block]:
    """The rendered text as blocks; ``keep_lines``: a person's own text (a relay), whose line breaks are theirs."""
    out: list[Block] = []
    chunks = re.split(r"\n[ \t]*\n", text.strip("\n"))
    for i, chunk in enumerate(chunks):
        lines = chunk.rstrip().split("\n")
        if not chunk.strip():
            continue
        rule = _RULE.match(lines[0].strip())
        if rule:  # "----- message -----": what follows is someone's mail, kept as written
            rest = "\n".join(["\n".join(lines[1:])] + chunks[i + 1:]).strip("\n")
            out.append(Block(kind="quote", title=rule.group(1), lines=[rest]))
            break
        head = lines[0]
        if head.lstrip().startswith("<") and head.rstrip().endswith(">"):
            out.append(Block(kind="code", lines=["\n".join(lines)]))
        elif head.strip() in ("--", "-- ") and keep_lines:
            out.append(Block(kind="sig", lines=lines[1:]))
        elif (rows := _details(lines)) is not None and (len(rows) > 1 or head.startswith("  ")):
            out.append(Block(kind="details", lines=rows))
        elif _is_list(lines):
            out.append(_list(lines))
        elif len(lines) > 1 and not head.startswith(" ") and head.rstrip().endswith(":") and _is_list(lines[1:]):
            out += [Block(kind="heading", lines=[head.strip()]), _list(lines[1:])]
        elif len(lines) > 1 and not head.startswith(" ") and head.rstrip().endswith(":") and all(
                x.startswith("  ") for x in lines[1:]):
            out += [Block(kind="heading", lines=[head.strip()]),
                    Block(kind="pre", lines=["\n".join(x[2:] for x in lines[1:])])]
        elif all(x.startswith("  ") for x in lines):
            out.append(Block(kind="pre", lines=["\n".join(x[2:] for x in lines)]))
        elif keep_lines:
            out.append(Block(kind="p", lines=lines))
        else:
            out.append(Block(kind="p", lines=[" ".join(x.strip() for x in lines)]))
    return out


def _list(lines: list[str]) -> Block:
    items: list[str] = []
    for x in lines:
        m = _ITEM.match(x)
        if m:
            items.append(m.group(1).strip())
        else:
            items[-1] += " " + x.strip()
    return Block(kind="list", lines=items)


# -- the one call to action ---------------------------------------------------------------------------------------
def _google_calendar(event: Any) -> str:
    # Every recipient of a call gets the same link (it does not name the attendee): made once per call.
    return _google_link(event.summary, event.start, event.end, event.description, event.location)


@functools.lru_cache(maxsize=64)
def _google_link(summary: str, start: Any, end: Any, description: str, location: str) -> str:
    def stamp(dt: Any) -> str:
        return dt.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")

    query = urlencode({"action": "TEMPLATE", "text": summary, "dates": f"{stamp(start)}/{stamp(end)}",
                       "details": description, "location": location}, quote_via=quote)
    return f"https://calendar.google.com/calendar/render?{query}"


def call_to_action(kind: str, context: dict[str, Any], calendar: Any, support_address: str
                   ) -> tuple[str, str, str] | None:
    """(label, absolute https or mailto URL, a line under the button) for the mail's one action, or None."""
    def https(url: Any) -> str:
        return url if isinstance(url, str) and url.startswith("https://") else ""

    if kind == "renewal":
        if https(context.get("pay_url")):
            return ("Renew the partnership", context["pay_url"],
                    f"{context.get('amount', '')} for one year".strip())
        return ("Reply about the renewal", f"mailto:{support_address}?subject={quote('Renewal: ' + str(context.get('partner_name', '')))}", "")
    if kind in ("call-invite", "call-update") and calendar is not None and getattr(calendar, "method", "") == "REQUEST":
        return ("Add to calendar", _google_calendar(calendar),
                "Google Calendar; in Outlook or Apple Calendar, open the attached invitation (invite.ics).")
    if kind == "call-reminder" and https(context.get("dial_in", "").split(",")[0].strip()):
        return ("Join the call", context["dial_in"].split(",")[0].strip(), str(context.get("when", "")))
    if kind in ("training-announcement", "training-refresher"):
        if https(context.get("training_url")):
            return ("Sign up for the training", context["training_url"], str(context.get("when", "")))
        subject = quote(f"Training {context.get('training_id', '')}: a place for {context.get('partner_name', '')}")
        return ("Reply to take a place", f"mailto:{support_address}?subject={subject}", str(context.get("when", "")))
    if kind == "welcome" and https(context.get("profile_url")):
        return ("See your partner profile", context["profile_url"], "")
    return None


_BODY = "<!--partnerdesk:body-->"  # where the blocks go in the inlined page (css-inline keeps comments)
_REMEMBER_UP_TO = 2000  # characters: a block longer than this is inlined each time, not remembered


class HtmlMail:
    """Renders the HTML alternative; one per Composer.

    A page is its frame (templates/mail.html.j2) around its blocks (templates/mail_blocks.html.j2), and
    each is inlined on its own, remembered by what it says: the recipients of a mailing differ in a line
    or two, and inlining whole pages made the HTML part most of the cost of a mail. The lines that name
    one recipient ("Hello Ana Rossi,", the unsubscribe token) are inlined by their shape, once for all
    recipients (_paragraph; the frame by its preheader's shape likewise). The stylesheet's
    selectors reach no further than one block (tests/test_compose_fast.py checks that a page made so is
    the page css-inline makes of the whole)."""

    def __init__(self, templates_dir: Path, *, program_name: str) -> None:
        self.program_name = program_name
        self.env = Environment(loader=FileSystemLoader(str(templates_dir)), undefined=StrictUndefined,
                               autoescape=select_autoescape(default=True, default_for_string=True),
                               trim_blocks=True, lstrip_blocks=True, auto_reload=False)  # as Composer's
        self.env.filters["linkify"] = linkify
        self.inliner = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)
        self._css: str | None = None
        self._macros: Any = None
        # Bounded: a mailing's shared blocks stay, the lines that name one recipient pass through. Long
        # pieces (a quoted mail in a relay) are never the same twice and are not kept.
        self._remembered = functools.lru_cache(maxsize=1024)(self._make_piece)
        # Paragraphs by their words first (a mailing's shared ones), then by their shape (_paragraph).
        self._remembered_p = functools.lru_cache(maxsize=1024)(self._make_paragraph)
        self._frame = functools.lru_cache(maxsize=128)(self._make_frame)
        # The preheader names a partner ("... for everyone at Nuvole:"): frames by it, then by its shape.
        self._framed = functools.lru_cache(maxsize=128)(self._make_framed)

    def render(self, text: str, *, kind: str, subject: str, context: dict[str, Any], calendar: Any,
               support_address: str, support_name: str, personal: bool = False) -> str:
        pieces = [self._piece(call) for call in _calls(text, kind, context, calendar, support_address, personal)]
        head, tail = self._framed(subject, _preheader(text), support_name, support_address)
        return head + "".join(pieces) + tail

    def page(self, text: str, *, kind: str, subject: str, context: dict[str, Any], calendar: Any,
             support_address: str, support_name: str, personal: bool = False) -> str:
        """The same page inlined whole, as css-inline makes it (what ``render`` must equal; for the tests)."""
        macros = self.macros()
        body = "".join(str(getattr(macros, name)(*args))
                       for name, *args in _calls(text, kind, context, calendar, support_address, personal))
        return self.inliner.inline(self._page(subject, _preheader(text), support_name, support_address, body))

    def macros(self) -> Any:
        if self._macros is None:
            self._macros = self.env.get_template("mail_blocks.html.j2").module
        return self._macros

    def _piece(self, call: tuple[Any, ...]) -> str:
        if sum(map(len, map(str, call))) > _REMEMBER_UP_TO:
            return self._make_piece(*call)
        if call[0] == "block" and call[1] == "p":
            return self._remembered_p(call[2], call[3])
        return self._remembered(*call)

    def _make_paragraph(self, lines: tuple[str, ...], title: str) -> str:
        made = self._paragraph(lines, title)
        return made if made is not None else self._remembered("block", "p", lines, title)

    def _paragraph(self, lines: tuple[str, ...], title: str) -> str | None:
        """A paragraph inlined by its shape: its words of plain letters and digits stand in as one mark
        each, so "Hello Ana Rossi," and "Hello Bob Smith," are one shape, inlined once; the words are put
        back in order. Those words are text to the page (no escaping, never a link's own: a link is kept
        whole in the shape). None when the shape would not say the same (a mark in the text, links
        found differently, the marks not all back in order), and the paragraph is made as it is."""
        words: list[str] = []
        shaped = []
        for line in lines:
            if _MARK in line:
                return None
            out, pos = [], 0
            links = list(_LINK.finditer(line))
            for m in links:
                words += _WORD.findall(line, pos, m.start())
                out += [_WORD.sub(_MARK, line[pos:m.start()]), m.group(0)]
                pos = m.end()
            words += _WORD.findall(line, pos)
            out.append(_WORD.sub(_MARK, line[pos:]))
            shape = "".join(out)
            if [m.group(0) for m in _LINK.finditer(shape)] != [m.group(0) for m in links]:
                return None
            shaped.append(shape)
        if not words:
            return None
        made = self._remembered("block", "p", tuple(shaped), title)
        return _put_back(made, words)

    def _page(self, subject: str, preheader: str, support_name: str, support_address: str, body: str) -> str:
        return self.env.get_template("mail.html.j2").render(
            program=self.program_name, subject=subject, body=Markup(body), support_name=support_name,
            support_address=support_address, preheader=preheader)

    def _make_piece(self, macro: str, *args: Any) -> str:
        if self._css is None:
            loader = self.env.loader
            assert loader is not None
            self._css = loader.get_source(self.env, "mail.css")[0]
        return self.inliner.inline_fragment(str(getattr(self.macros(), macro)(*args)), self._css)

    def _make_framed(self, subject: str, preheader: str, support_name: str, support_address: str
                     ) -> tuple[str, str]:
        """The frame made for the preheader's shape (its words as marks, as _paragraph does), the words
        put back; as it is when a mark is in the way."""
        words = _WORD.findall(preheader)
        if words and not any(_MARK in x for x in (subject, preheader, support_name, support_address)):
            head, tail = self._frame(subject, _WORD.sub(_MARK, preheader), support_name, support_address)
            if _MARK not in tail and (head := _put_back(head, words)) is not None:
                return head, tail
        return self._frame(subject, preheader, support_name, support_address)

    def _make_frame(self, subject: str, preheader: str, support_name: str, support_address: str) -> tuple[str, str]:
        head, found, tail = self.inliner.inline(self._page(subject, preheader, support_name, support_address,
                                                          _BODY)).partition(_BODY)
        if not found:  # css-inline stopped keeping comments: every page would lose its body
            raise RuntimeError(f"css-inline dropped the body marker {_BODY} from templates/mail.html.j2")
        return head, tail


def _put_back(made: str, words: list[str]) -> str | None:
    """``made`` with its marks replaced by ``words`` in order; None unless there is one mark per word."""
    parts = made.split(_MARK)
    if len(parts) != len(words) + 1:
        return None
    out = [""] * (2 * len(words) + 1)
    out[0::2] = parts
    out[1::2] = words
    return "".join(out)


def _calls(text: str, kind: str, context: dict[str, Any], calendar: Any, support_address: str,
           personal: bool) -> list[tuple[Any, ...]]:
    """The page's body as calls of templates/mail_blocks.html.j2's macros: (macro, *arguments), in order."""
    parts = blocks(text, keep_lines=personal)
    calls: list[tuple[Any, ...]] = [
        ("block", b.kind, tuple(tuple(x) if isinstance(x, list) else x for x in b.lines), b.title) for b in parts]
    # The button goes after what the mail says and before its "This is an automated message" footer.
    ends = [i for i, b in enumerate(parts) if b.kind == "p" and str(b.lines[0]).startswith("This is an autom")]
    cta = call_to_action(kind, context, calendar, support_address)
    if cta:
        calls.insert(ends[-1] if ends else len(parts), ("action", *cta))
    return calls


def _preheader(text: str) -> str:
    """The first sentence after the greeting: what inbox lists show next to the subject."""
    for para in re.split(r"\n\s*\n", text.strip()):
        line = " ".join(para.split())
        if line and not line.startswith("Hello"):
            return line[:140]
    return ""

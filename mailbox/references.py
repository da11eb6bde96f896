"""The Message-IDs named in an In-Reply-To or References header, as real clients write them.

RFC 5322 says both headers hold ``<id@host>`` tokens and nothing else. Mail in the wild holds more:

- several ids in In-Reply-To (``<a@x> <b@x>``), folded over lines, even folded at an id's ``@`` or a dot;
- comments, nested or not: ``<a@x> (message from Joe Bloggs <joe@x> on Mon, 1 Jan 2001)`` (Emacs);
- a phrase with the author's address in angle brackets: ``Message from Joe <joe@x> of "Mon, 1 Jan"
  <a@x>`` (MH), ``joe@x's message of Mon, 1 Jan`` (old Gnus): an address there is not an id, and
  reading it as one would join every reply to Joe into one thread;
- ids without angle brackets (``References: 7fcb0c@mail.gmail.com``);
- References cut by a client or a gateway: the last id left half written (``<abc@ho``), dropped here.

Pure text in, ids out (``<...>``, without inner white space), first seen first, duplicates dropped,
bounded: at most ``limit`` ids are kept, the first one and the last ``limit - 1`` (a long References
chain keeps its root and its nearest ancestors, as clients do when they shorten it).
"""

from __future__ import annotations

import re

MAX_ID = 900  # characters; longer tokens are not ids
LIMIT = 200  # ids kept per header

_BARE_ID = re.compile(r"^[^\s<>()\"@,;:\[\]]+@[^\s<>()\"@,;:\[\]]+\.[^\s<>()\"@,;:\[\]]+$")
_AFTER_ADDRESS = ("of", "on", "at", "'s", "wrote", "writes", "dated", "sent")


def _names_author(phrase: list[str]) -> bool:
    """Whether the words before a token introduce a person: "Message from Joe Bloggs" (not "... on Mon 1 Jan")."""
    lowered = [w.lower() for w in phrase]
    if "from" not in lowered:
        return False
    after = lowered[len(lowered) - 1 - lowered[::-1].index("from") + 1:]
    return len(after) <= 5 and not any(re.search(r"\d", w) or w in _AFTER_ADDRESS for w in after)


def _skip_comment(text: str, i: int) -> int:
    """The index just after the (nested) comment that starts at ``i``, or the end if it is never closed."""
    depth, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        depth += ch == "("
        depth -= ch == ")"
        i += 1
        if depth == 0:
            return i
    return n


def _skip_quoted(text: str, i: int) -> int:
    """The index just after the quoted string that starts at ``i``, or the end if it is never closed."""
    i += 1
    n = len(text)
    while i < n:
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i + 1
        i += 1
    return n


def _next_word(text: str, i: int) -> str:
    m = re.match(r"\s*('s|[A-Za-z]+)", text[i:])
    return m.group(1).lower() if m else ""


def message_ids(value: str | None, *, limit: int = LIMIT) -> tuple[str, ...]:
    """The ids in one In-Reply-To or References header value (folded or not)."""
    if not value:
        return ()
    text = str(value)
    found: list[str] = []
    phrase: list[str] = []  # the words since the last id: "Message from Joe"
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "(":
            i = _skip_comment(text, i)
        elif ch == '"':
            i = _skip_quoted(text, i)
            phrase.append('"')
        elif ch == "<":
            end = text.find(">", i + 1)
            nxt = text.find("<", i + 1)
            if end < 0 or (0 <= nxt < end):  # cut off (References truncated mid-id) or broken: not an id
                i = nxt if nxt >= 0 else n
                continue
            # Folding may split an id at its "@" or a dot; a space anywhere else means it is no id.
            token = re.sub(r"\s*([@.])\s*", r"\1", text[i + 1:end].strip())
            i = end + 1
            after = _next_word(text, i)
            is_address = _names_author(phrase) or after in _AFTER_ADDRESS
            phrase = []
            if token and len(token) <= MAX_ID and not is_address and not re.search(r"\s", token):
                found.append(f"<{token}>")
        elif ch.isspace() or ch in ",;":
            i += 1
        else:
            m = re.compile(r"[^\s<(\",;]+").match(text, i)
            word = m.group(0) if m else ch
            i += len(word)
            bare = word.rstrip(".:")
            if bare.endswith("'s") or _next_word(text, i) in _AFTER_ADDRESS or _names_author(phrase):
                phrase.append(word)
                continue
            if _BARE_ID.match(bare) and len(bare) <= MAX_ID:
                found.append(f"<{bare}>")
                phrase = []
            else:
                phrase.append(word)
    unique = tuple(dict.fromkeys(found))
    if len(unique) > limit:
        unique = unique[:1] + unique[-(limit - 1):]
    return unique

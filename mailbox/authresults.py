"""Authentication-Results our own receiving server added (RFC 8601), and none a sender wrote.

Anyone can write ``Authentication-Results: mx.google.com; dmarc=pass`` into a mail;
a header counts only where a sender cannot have put it. Servers add their trace
headers on top of what they received, so everything a sender wrote lies *below* the
``Received:`` line that records our server taking the mail from outside, the
**hand-over line**. Reading the header block from the top:

1. ``Received:`` lines of delivery inside our servers are passed over: those with no
   ``from`` clause (Gmail's ``Received: by 2002:a05:…``) and those ``with LMTP``
   or ``with LOCAL`` (Dovecot, Postfix handing the mail to the mailbox). A sender
   cannot make the hand-over look like one of these: they would have to choose the
   protocol our own server speaks with itself, and ``from`` and ``by`` host names
   (which a sender's HELO does choose) are never used to decide this.
2. The first other ``Received:`` line is the hand-over line. It must be *by* one of
   our servers: a host named in ``[trust] authserv_ids`` or ``trusted_relays``, or a
   subdomain of one. Otherwise our server left no trace (the mail was put into the
   mailbox by IMAP APPEND, or the settings name the wrong host) and nothing is trusted.
3. Trusted: every header above the hand-over line carrying a trusted authserv-id
   (rspamd, Postfix with well-behaved milters). If there is none there, the single
   topmost one directly below it, before any further ``Received:`` line (Gmail puts
   its header just below its own ``Received:``; OpenDKIM and OpenDMARC under Postfix
   do too). Only the topmost: a sender's forgery sits under the real one.

What this relies on, said plainly in the README: the trusted server stamps *every*
mail it receives with its authserv-id (Gmail and rspamd do; OpenDKIM only with
``AlwaysAddARHeader yes``) or removes headers carrying its id from incoming mail, as
RFC 8601 section 5 requires of it. And nobody but the mail server may APPEND to the
support mailbox: a message appended by IMAP carries whatever headers its writer chose
(reply keys and partnerdesk's own DKIM check are not fooled by that).
"""

from __future__ import annotations

import email.parser
import email.policy
import re
from typing import Iterable

import authres

from workflows.proofs import AuthResult, AuthResultsReading

_INTERNAL_PROTOCOLS = frozenset({"lmtp", "lmtps", "lmtpa", "lmtpsa", "local"})
_MAX_HEADERS = 500  # a hostile mail may carry thousands; ours are all near the top


def header_fields(raw: bytes) -> list[tuple[str, str]]:
    """(name, unfolded value) of every header field, top first, as the bytes have them."""
    msg = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    return [(name, re.sub(r"\r?\n(?=[ \t])", "", value).strip()) for name, value in msg.raw_items()]


def _strip_comments(value: str) -> str:
    out, depth, escaped = [], 0, False
    for ch in value:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(ch)
            continue
        if ch == "\\":
            escaped = True
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def received_clauses(value: str) -> dict[str, str]:
    """The ``from``, ``by`` and ``with`` clauses of a Received value (lower-cased), comments removed.

    RFC 5321 4.4 fixes the clause words; no kept Python library parses them, and three words
    are all this needs.
    """
    text = _strip_comments(value)
    words = (text.rpartition(";")[0] if ";" in text else text).split()  # after the last ";": the date
    clauses: dict[str, str] = {}
    for i, word in enumerate(words[:-1]):
        w = word.lower()
        if w in ("from", "by", "with") and w not in clauses:
            clauses[w] = words[i + 1].lower().strip("[]<>").rstrip(".")
    return clauses


def _ours(host: str, names: frozenset[str]) -> bool:
    return any(host == n or host.endswith("." + n) for n in names)


def read(raw: bytes, *, authserv_ids: Iterable[str], trusted_relays: Iterable[str] = ()) -> AuthResultsReading:
    """The Authentication-Results of ``raw`` that our own servers added (see the module text)."""
    ids = frozenset(i.strip().lower().rstrip(".") for i in authserv_ids if i.strip())
    hosts = ids | frozenset(h.strip().lower().rstrip(".") for h in trusted_relays if h.strip())
    if not ids:
        return AuthResultsReading(notes=("no authserv-id is trusted",))
    fields = header_fields(raw)[:_MAX_HEADERS]
    notes: list[str] = []

    handover = None
    for i, (name, value) in enumerate(fields):
        if name.lower() != "received":
            continue
        clauses = received_clauses(value)
        if "from" not in clauses or clauses.get("with", "") in _INTERNAL_PROTOCOLS:
            continue
        by = clauses.get("by", "")
        if not _ours(by, hosts):
            return AuthResultsReading(notes=(f"the topmost Received line from another host was written by "
                                             f"{by or 'an unnamed host'}, not by our servers; nothing trusted",))
        handover = i
        break
    if handover is None:
        return AuthResultsReading(notes=("no Received line shows our servers taking the mail in "
                                         "(put in by IMAP APPEND?); nothing trusted",))

    def parsed(value: str) -> authres.AuthenticationResultsHeader | None:
        try:
            return authres.AuthenticationResultsHeader.parse_value(value)
        except authres.AuthResError as e:
            notes.append(f"unreadable Authentication-Results ({str(e)[:80]})")
            return None

    trusted: list[authres.AuthenticationResultsHeader] = []
    for name, value in fields[:handover]:
        if name.lower() == "authentication-results" and (h := parsed(value)) is not None:
            if h.authserv_id.lower() in ids:
                trusted.append(h)
            else:
                notes.append(f"Authentication-Results from {h.authserv_id}, which is not trusted, ignored")
    if not trusted:
        for name, value in fields[handover + 1:]:
            low = name.lower()
            if low == "received":
                break
            if low == "authentication-results" and (h := parsed(value)) is not None:
                if h.authserv_id.lower() in ids:
                    trusted.append(h)
                    break
                notes.append(f"Authentication-Results from {h.authserv_id}, which is not trusted, ignored")
    for h in trusted:
        if not h.results:
            notes.append(f"{h.authserv_id.lower()} checked nothing (none)")
    ignored = sum(1 for name, _ in fields if name.lower() == "authentication-results") - len(trusted)
    if ignored > 0:
        notes.append(f"{ignored} other Authentication-Results header(s) ignored")
    results = tuple(
        AuthResult(authserv_id=h.authserv_id.lower(), method=r.method.lower(), result=(r.result or "").lower(),
                   properties=tuple((f"{p.type}.{p.name}".lower(), str(p.value or "")) for p in r.properties))
        for h in trusted for r in h.results
    )
    return AuthResultsReading(results=results, notes=tuple(dict.fromkeys(notes)))

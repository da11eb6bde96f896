"""Message-IDs for the mail we send, and the subject tag.

Our Message-IDs name the thread and carry a keyed hash, e.g.
``<oa-12.ack.3f9c1a2b7d4e.5b0c9d1e2f3a4b6c@support.example>``. A reply quoting one
finds its thread even if the references got mangled, and nobody without the
secret can mint one that files mail into someone else's thread.
"""

from __future__ import annotations

import hashlib
import hmac
import re

TAG_RE = re.compile(r"\[(OA-(\d{1,9}))\]", re.IGNORECASE)
# The optional last segment carries a reply key (workflows/replykeys.py) in mail to staff; it has a
# MAC of its own, so the Message-ID's MAC does not cover it and ids with and without one are ours.
_OURS_RE = re.compile(
    r"^<oa-(\d{1,9})\.([a-z-]{1,20})\.([0-9a-f]{12})\.([0-9a-f]{16})(?:\.([0-9a-z]{1,40}))?@([^>]+)>$")


def thread_id(number: int) -> str:
    return f"OA-{number}"


def tag(thread_id_: str) -> str:
    return f"[{thread_id_}]"


def mac(secret: bytes, body: str) -> str:
    """A short keyed hash: what makes our ids and tokens unforgeable without the secret."""
    return hmac.new(secret, body.encode(), hashlib.sha256).hexdigest()[:16]


def make_message_id(secret: bytes, *, thread_number: int, kind: str, key: str, domain: str,
                    suffix: str = "") -> str:
    """Deterministic in ``key``: deciding the same mail twice gives the same Message-ID.

    ``suffix``: a reply key for the one staff member the mail goes to (lower-case letters and digits).
    """
    nonce = hashlib.sha256(key.encode()).hexdigest()[:12]
    kind = re.sub(r"[^a-z-]", "", kind.lower())[:20] or "mail"
    body = f"oa-{thread_number}.{kind}.{nonce}"
    if suffix and not re.fullmatch(r"[0-9a-z]{1,40}", suffix):
        raise ValueError(f"Message-ID suffix {suffix!r}: 1-40 lower-case letters and digits")
    return f"<{body}.{mac(secret, body)}{'.' + suffix if suffix else ''}@{domain}>"


def suffix_of_message_id(message_id: str) -> str:
    """The suffix (a reply key) of one of our Message-IDs, "" when it has none or is not ours."""
    m = _OURS_RE.match(message_id.strip().lower())
    return (m.group(5) or "") if m else ""


def thread_of_message_id(secret: bytes, message_id: str) -> str | None:
    """The thread id a Message-ID of ours names, or None if it is not ours or is forged."""
    m = _OURS_RE.match(message_id.strip().lower())
    if not m:
        return None
    number, kind, nonce, given = m.group(1), m.group(2), m.group(3), m.group(4)
    body = f"oa-{number}.{kind}.{nonce}"
    if not hmac.compare_digest(mac(secret, body), given):
        return None
    return thread_id(int(number))


def tagged_thread(subject: str) -> str | None:
    m = TAG_RE.search(subject or "")
    return thread_id(int(m.group(2))) if m else None


def with_tag(subject: str, thread_id_: str) -> str:
    """The subject with our tag, added once, keeping "Re:" out front."""
    subject = (subject or "").strip() or "(no subject)"
    if tag(thread_id_).lower() in subject.lower():
        return subject
    return f"{tag(thread_id_)} {subject}"


def reply_subject(subject: str, thread_id_: str) -> str:
    s = with_tag(subject, thread_id_)
    return s if re.match(r"^\s*re\s*:", s, re.IGNORECASE) else f"Re: {s}"

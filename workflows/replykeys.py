"""Reply keys: how a staff member's press of Reply proves who they are.

Every mail we send to one staff member about one thread carries a key that only
that mail carries: in ``Reply-To: support+KEY@domain`` (GitHub, GitLab and
Discourse do reply-by-email the same way) and as the last segment of our
Message-ID, which every client copies into ``In-Reply-To``/``References``. A reply
that brings the key back for that thread, from that address, is proven staff.

A key is ``<thread number>k<nonce><mac>``, e.g. ``12kq3vd7m2a5xk7fz2lqmbd4r6nw``:

- the thread number in digits, so the key alone names its thread (0: mail about
  no single thread, such as the digest);
- ``k``: the format (a later format gets another letter);
- an 8-character nonce, different for every mail and recipient, so one leaked key
  can be refused without touching the others;
- a 16-character MAC (80 bits) under a subkey of the store's secret over the
  thread, the nonce and the staff address. Nothing is stored: a key is checked by
  computing it again, and it is worthless for anyone else, for any other thread,
  and as soon as its address leaves the staff list.

Letters are RFC 4648 base32 in lower case: some servers lower-case the local part,
and a case-insensitive alphabet survives that. The longest key is 34 characters,
so ``support+KEY`` stays within RFC 5321's 64 octets for a support local part of up
to 29 characters (``address_problem`` says so at config time).

Keys are bearer secrets: whoever holds the mail holds the key. A staff member who
copies the partner on a reply shows the partner the key; ``exposed_keys`` finds
such keys so that the thread can refuse them from then on.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

from . import msgids
from .model import FROZEN, InboundMail

FORMAT = "k"
NONCE_LEN = 8  # base32 characters (40 bits): unique per mail and recipient, not secret
MAC_LEN = 16  # base32 characters (80 bits): what a forger would have to guess, one mail per try
MAX_THREAD_DIGITS = 9
MAX_KEY_LEN = MAX_THREAD_DIGITS + len(FORMAT) + NONCE_LEN + MAC_LEN
LOCAL_PART_LIMIT = 64  # RFC 5321 4.5.3.1.1
_KEY_RE = re.compile(rf"^(\d{{1,{MAX_THREAD_DIGITS}}}){FORMAT}([a-z2-7]{{{NONCE_LEN}}})([a-z2-7]{{{MAC_LEN}}})$")


def _b32(data: bytes, length: int) -> str:
    return base64.b32encode(data).decode("ascii").lower().rstrip("=")[:length]


def _subkey(secret: bytes) -> bytes:
    # A key of its own, so that no other MAC made with the store's secret (Message-IDs,
    # unsubscribe tokens) can ever be replayed as a reply key, or the other way round.
    return hmac.new(secret, b"partnerdesk reply keys v1", hashlib.sha256).digest()


def _mac(secret: bytes, thread_number: int, nonce: str, address: str) -> str:
    body = f"{thread_number}.{nonce}.{address.strip().lower()}".encode()
    return _b32(hmac.new(_subkey(secret), body, hashlib.sha256).digest(), MAC_LEN)


def mint(secret: bytes, *, thread_number: int, address: str, seed: str) -> str:
    """The key for one mail to ``address`` about thread ``thread_number``.

    ``seed`` names that mail (its outbox key): deciding the same mail twice gives the same key,
    and two mails never share one.
    """
    if not 0 <= thread_number < 10**MAX_THREAD_DIGITS:
        raise ValueError(f"thread number {thread_number} out of range")
    nonce = _b32(hashlib.sha256(f"{seed}\n{address.strip().lower()}".encode()).digest(), NONCE_LEN)
    return f"{thread_number}{FORMAT}{nonce}{_mac(secret, thread_number, nonce, address)}"


@dataclass(**FROZEN)
class ParsedKey:
    thread_number: int
    nonce: str
    mac: str

    @property
    def token(self) -> str:
        return f"{self.thread_number}{FORMAT}{self.nonce}{self.mac}"


def parse(token: str) -> ParsedKey | None:
    """The parts of a key as written, not yet verified; None if it is not a key at all."""
    m = _KEY_RE.match((token or "").strip().lower())
    if not m:
        return None
    return ParsedKey(thread_number=int(m.group(1)), nonce=m.group(2), mac=m.group(3))


def is_valid(secret: bytes, token: str, *, address: str) -> bool:
    key = parse(token)
    return key is not None and hmac.compare_digest(_mac(secret, key.thread_number, key.nonce, address), key.mac)


# -- where keys travel ---------------------------------------------------------------------------

def reply_address(support_address: str, token: str, *, delimiter: str = "+") -> str:
    """``support+KEY@domain``: the Reply-To of a mail to one staff member."""
    local, _, domain = support_address.strip().lower().rpartition("@")
    address = f"{local}{delimiter}{token}@{domain}"
    if len(f"{local}{delimiter}{token}") > LOCAL_PART_LIMIT:
        raise ValueError(f"{address}: local part longer than {LOCAL_PART_LIMIT} octets")
    return address


def address_problem(support_address: str, *, delimiter: str = "+") -> str | None:
    """Why keys cannot ride on plus-addresses of ``support_address`` (for the config check), or None."""
    local, at, domain = support_address.strip().rpartition("@")
    if not at or not local or not domain:
        return f"{support_address!r} is not an address"
    if len(delimiter) != 1 or delimiter.isalnum() or delimiter in "@.\"\\ ":
        return f"recipient delimiter {delimiter!r} must be one character such as + or -"
    if delimiter in local:
        # The server would cut the support address itself at the delimiter.
        return f"the support address's local part {local!r} contains the delimiter {delimiter!r}"
    room = LOCAL_PART_LIMIT - len(delimiter) - MAX_KEY_LEN
    if len(local) > room:
        return (f"the support address's local part {local!r} has {len(local)} characters; with a reply key "
                f"it must have at most {room} (RFC 5321: 64 per local part)")
    return None


def keyed_message_id(secret: bytes, *, thread_number: int, kind: str, key: str, domain: str, token: str) -> str:
    """Our Message-ID (see msgids) with the recipient's key as its last segment: clients that drop
    Reply-To, and servers that do not take plus-addresses, still bring it back in In-Reply-To."""
    return msgids.make_message_id(secret, thread_number=thread_number, kind=kind, key=key, domain=domain,
                                  suffix=token)


@dataclass(**FROZEN)
class KeyedCopy:
    """One recipient's copy of a mail to staff: its own outbox key, key and Reply-To."""

    recipient: str
    outbox_key: str  # "<the mail's key>#<recipient>": one outbox entry per copy
    token: str  # "" for a recipient outside staff (an address put on an escalation list): no key
    reply_to: str  # support+KEY@domain, or the plain support address


def copies(*, key: str, recipients: tuple[str, ...], staff: frozenset[str], secret: bytes, thread_number: int,
           support_address: str, plus_addresses: bool = True, delimiter: str = "+") -> tuple[KeyedCopy, ...]:
    """How a mail to ``recipients`` goes out with keys: one copy each, since a key is per recipient.

    Only staff get a key: a key in a partner's hands would let them write as staff. Without
    plus-addresses the key rides in the Message-ID alone and Reply-To stays the support address.
    """
    out = []
    for recipient in dict.fromkeys(r.strip().lower() for r in recipients if r.strip()):
        token = mint(secret, thread_number=thread_number, address=recipient, seed=key) if recipient in staff else ""
        reply_to = reply_address(support_address, token, delimiter=delimiter) if token and plus_addresses \
            else support_address
        out.append(KeyedCopy(recipient=recipient, outbox_key=f"{key}#{recipient}", token=token, reply_to=reply_to))
    return tuple(out)


@dataclass(**FROZEN)
class FoundKey:
    token: str
    where: str  # "To", "Cc", "Delivered-To", "In-Reply-To/References"


def found_keys(mail: InboundMail, support_address: str, *, delimiter: str = "+") -> tuple[FoundKey, ...]:
    """Every key-shaped token a mail brings back, with where it was, nothing verified yet."""
    local, _, domain = support_address.strip().lower().rpartition("@")
    prefix = f"{local}{delimiter}"
    out: dict[str, FoundKey] = {}

    def add(token: str, where: str) -> None:
        if parse(token) is not None and token not in out:
            out[token] = FoundKey(token=token, where=where)

    for where, addresses in (("To", mail.to), ("Cc", mail.cc), ("Delivered-To", mail.envelope_to)):
        for address in addresses:
            a_local, _, a_domain = address.lower().rpartition("@")
            if a_domain == domain and a_local.startswith(prefix):
                add(a_local[len(prefix):], where)
    for ref in mail.thread_refs:
        suffix = msgids.suffix_of_message_id(ref)
        if suffix:
            add(suffix, "In-Reply-To/References")
    return tuple(out.values())


# -- the check -----------------------------------------------------------------------------------

@dataclass(**FROZEN)
class KeyCheck:
    """What the keys of one mail prove: ``proven`` and where the good key was, or why none was good."""

    proven: bool
    where: str = ""
    token: str = ""
    reason: str = ""


def check(mail: InboundMail, *, secret: bytes, thread_number: int | None, staff: frozenset[str],
          support_address: str, refused: frozenset[str] = frozenset(), delimiter: str = "+",
          merged: frozenset[int] = frozenset()) -> KeyCheck:
    """Does ``mail`` bring back a key minted for its From address and thread ``thread_number``?

    ``thread_number`` None: the mail joins no thread; only keys of mail about no single thread (0)
    count. ``refused``: nonces no longer accepted for this thread (keys exposed to outsiders).
    ``merged``: numbers of threads merged into this one, whose keys count here too.
    """
    address = mail.from_addr
    keys = found_keys(mail, support_address, delimiter=delimiter)
    if not keys:
        return KeyCheck(proven=False, reason="no reply key")
    if address not in staff:
        return KeyCheck(proven=False, reason=f"{address or 'the sender'} is not on the staff list")
    want = 0 if thread_number is None else thread_number
    problems: list[str] = []
    for found in keys:
        key = parse(found.token)
        if key is None or not is_valid(secret, found.token, address=address):
            problems.append(f"a reply key in {found.where} that is not {address}'s")
        elif key.thread_number != want and key.thread_number not in merged:
            named = f"OA-{key.thread_number}" if key.thread_number else "no single thread"
            problems.append(f"{address}'s reply key in {found.where} is for {named}, not "
                            + (f"OA-{want}" if want else "a new thread"))
        elif key.nonce in refused:
            problems.append(f"{address}'s reply key in {found.where} was shown to someone outside staff "
                            "and is no longer accepted")
        else:
            return KeyCheck(proven=True, where=found.where, token=found.token)
    return KeyCheck(proven=False, reason="; ".join(dict.fromkeys(problems)))


def redact(text: str, support_address: str, *, delimiter: str = "+") -> str:
    """``text`` with every ``support+KEY@domain`` written as the plain support address: what a staff
    member's words carry on to a partner (a quoted "..., Support <support+KEY@...> wrote:") never
    hands over a key."""
    local, _, domain = support_address.strip().lower().rpartition("@")
    pattern = re.compile(rf"{re.escape(local)}{re.escape(delimiter)}[0-9a-z]{{1,{MAX_KEY_LEN}}}@{re.escape(domain)}",
                         re.IGNORECASE)
    return pattern.sub(support_address, text)


def exposed_keys(mail: InboundMail, *, staff: frozenset[str], support_address: str,
                 delimiter: str = "+") -> tuple[str, ...]:
    """Nonces of the keys this mail shows to someone outside staff: a Cc'd partner, or a sender who is
    not staff and quotes one (a partner answering a staff member's direct mail).

    Whoever got this mail holds those keys from now on; the thread should refuse them. (A Bcc is
    invisible here.)
    """
    local, _, domain = support_address.strip().lower().rpartition("@")

    def inside(address: str) -> bool:
        a_local, _, a_domain = address.lower().rpartition("@")
        ours = a_domain == domain and (a_local == local or a_local.startswith(f"{local}{delimiter}"))
        return ours or address.lower() in staff

    if mail.from_addr in staff and all(inside(a) for a in mail.recipients):
        return ()
    keys = (parse(k.token) for k in found_keys(mail, support_address, delimiter=delimiter))
    return tuple(k.nonce for k in keys if k is not None)

"""A corpus of forged (and genuine) staff mail, built fresh for each test run.

Everything an outsider can get hold of is used: the thread's ``[OA-12]`` tag and the
acknowledgement's Message-ID (both are in mail the partner received), any From
header, any header at all (Authentication-Results included), a DKIM signature of a
domain they own, an account of their own on our server, keys minted for someone
else, and IMAP APPEND straight into the support mailbox. Each ``Scenario`` says how
it reaches us (``route``) and what must come of it (``proven_by``: "" = not proven).

``verdict`` runs a received message through the adapters and the rules exactly as
intake will (phase 2), so the same corpus drives the pure tests here and the
intake tests later ("none relays, none runs, none stops a clock").
"""

from __future__ import annotations

import base64
import email.policy
import email.utils
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import EmailMessage

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailbox import authresults, dkim_check
from mailbox.parse import parse
from workflows import msgids, replykeys
from workflows.staffproof import StaffProof, judge

RECEIVED_AT = datetime(2026, 12, 1, 15, 0, tzinfo=timezone.utc)


class DkimKey:
    """An RSA key of our own for a domain: signs like the staff member's provider, answers like its DNS."""

    def __init__(self, domain: str, selector: str = "s1") -> None:
        self.domain, self.selector = domain, selector
        # 1024 bits: dkimpy's minimum, and quick to make.
        key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        self.private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())
        public = key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
        self.record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    @property
    def dns_name(self) -> bytes:
        return f"{self.selector}._domainkey.{self.domain}.".encode()

    def sign(self, raw: bytes, headers: tuple[str, ...] = ("from", "to", "subject", "date", "message-id",
                                                           "in-reply-to", "references")) -> bytes:
        present = {line.split(b":", 1)[0].strip().lower().decode() for line in raw.split(b"\r\n\r\n", 1)[0]
                   .split(b"\r\n") if b":" in line and not line[:1].isspace()}
        signed = [h.encode() for h in headers if h in present]
        return dkim.sign(raw, self.selector.encode(), self.domain.encode(), self.private_pem,
                         include_headers=signed) + raw


@dataclass
class World:
    """The desk the corpus is written against: support address, staff, the thread, keys and DNS."""

    secret: bytes = b"forgery corpus secret, 32 bytes!"
    support: str = "support@example.test"
    staff: frozenset[str] = frozenset({"young@staff.example.test", "eric@staff.example.test"})
    removed: str = "gone@staff.example.test"  # was staff when the key was minted
    partner: str = "antonio@nuvole.example.test"
    outsider: str = "mallory@example.test"  # has a login on our server, like any customer might
    thread: int = 12
    other_thread: int = 7
    authserv_id: str = "mx.mailservers.test"
    ack: str = ""  # the real acknowledgement's Message-ID, when the corpus runs against a real desk
    staff_dkim: DkimKey = field(default_factory=lambda: DkimKey("staff.example.test"))
    evil_dkim: DkimKey = field(default_factory=lambda: DkimKey("evil.example.test"))

    @property
    def young(self) -> str:
        return "young@staff.example.test"

    @property
    def eric(self) -> str:
        return "eric@staff.example.test"

    @property
    def ack_id(self) -> str:
        if self.ack:
            return self.ack
        return msgids.make_message_id(self.secret, thread_number=self.thread, kind="ack", key=f"ack:OA-{self.thread}",
                                      domain=self.support.partition("@")[2])

    def token(self, address: str, thread: int | None = None) -> str:
        """The key a notification about ``thread`` to ``address`` carried."""
        thread = self.thread if thread is None else thread
        return replykeys.mint(self.secret, thread_number=thread, address=address,
                              seed=f"notify:OA-{thread}:<req-{thread}@nuvole.example.test>")

    def notification_id(self, address: str) -> str:
        """The Message-ID of the notification to ``address`` (carrying its key)."""
        return replykeys.keyed_message_id(self.secret, thread_number=self.thread, kind="notify",
                                          key=f"notify:OA-{self.thread}:{address}",
                                          domain=self.support.partition("@")[2], token=self.token(address))

    def plus(self, token: str) -> str:
        return replykeys.reply_address(self.support, token)

    def dns(self, name: bytes, timeout: float = 5) -> bytes | None:
        return {k.dns_name: k.record for k in (self.staff_dkim, self.evil_dkim)}.get(name)


def message(w: World, *, sender: str, text: str, to: str | None = None, in_reply_to: str | None = None,
            extra: tuple[tuple[str, str], ...] = (), subject: str | None = None) -> bytes:
    subject = subject or f"Re: [OA-{w.thread}] Login broken"
    msg = EmailMessage(policy=email.policy.SMTP)
    for name, value in extra:  # on top, as a forger writes them
        msg[name] = value
    msg["From"] = sender
    msg["To"] = to or w.support
    msg["Subject"] = subject
    msg["Date"] = email.utils.format_datetime(RECEIVED_AT)
    msg["Message-ID"] = email.utils.make_msgid(domain=sender.partition("@")[2] or "x.example")
    if in_reply_to is not None:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content(text)
    return msg.as_bytes()


@dataclass(frozen=True)
class Scenario:
    name: str
    raw: bytes
    route: str  # "smtp" (no login), "smtp-auth" (as ``login``), "append" (IMAP, into the support INBOX)
    login: str = ""
    rcpt: str = ""  # envelope recipient; default the support address
    proven_by: str = ""  # "" = must not count as staff; else the expected StaffProof.method


COMMANDS = {"answer": "Thanks, fixed on our side. Please try again.", "close": "#close",
            "note": "#note the partner is lying", "assign": "#assign me"}


def forgeries(w: World) -> list[Scenario]:
    young, tag_and_ack = w.young, dict(in_reply_to=w.ack_id)
    out = []
    for route in ("smtp", "append"):
        for name, text in COMMANDS.items():
            raw = message(w, sender=young, text=text, **tag_and_ack)
            out.append(Scenario(f"{route}-{name}: From staff, tag and ack Message-ID", raw, route))
    forged_ar = ("Authentication-Results", f"{w.authserv_id}; auth=pass smtp.auth={young}; "
                                           "dmarc=pass header.from=staff.example.test")
    out += [
        Scenario("forged Authentication-Results below the trusted one",
                 message(w, sender=young, text="#close", extra=(forged_ar,), **tag_and_ack), "smtp"),
        Scenario("forged Authentication-Results with an untrusted authserv-id",
                 message(w, sender=young, text="#close", **tag_and_ack,
                         extra=(("Authentication-Results",
                                 "mx.evil.example.test; dmarc=pass header.from=staff.example.test"),)), "smtp"),
        Scenario("forged Authentication-Results on top, by IMAP APPEND (no trace of our server)",
                 message(w, sender=young, text="#close", extra=(forged_ar,), **tag_and_ack), "append"),
        Scenario("authenticated on our server, but as someone else",
                 message(w, sender=young, text="#close", **tag_and_ack), "smtp-auth", login=w.outsider),
        Scenario("dkim=pass for an unaligned domain (the forger's own)",
                 w.evil_dkim.sign(message(w, sender=young, text="#close", **tag_and_ack)), "smtp"),
        Scenario("a genuine signed staff mail re-filed with an unsigned In-Reply-To on top",
                 b"In-Reply-To: " + w.ack_id.encode() + b"\r\n"
                 + w.staff_dkim.sign(message(w, sender=young, text="#close", subject=f"[OA-{w.thread}] status")), "smtp"),
        Scenario("a genuine signed staff mail with a line added to its body",
                 w.staff_dkim.sign(message(w, sender=young, text="Fixed.", **tag_and_ack))
                 .replace(b"Fixed.", b"Fixed. Log in at http://evil.example.test/ to check."), "smtp"),
        Scenario("a reply key for another thread",
                 message(w, sender=young, text="#close", to=w.plus(w.token(young, w.other_thread)), **tag_and_ack),
                 "smtp", rcpt=w.plus(w.token(young, w.other_thread))),
        Scenario("another staff member's reply key",
                 message(w, sender=young, text="#close", to=w.plus(w.token(w.eric)), **tag_and_ack),
                 "smtp", rcpt=w.plus(w.token(w.eric))),
        Scenario("the key of someone removed from staff",
                 message(w, sender=w.removed, text="#close", to=w.plus(w.token(w.removed)), **tag_and_ack),
                 "smtp", rcpt=w.plus(w.token(w.removed))),
        Scenario("a guessed reply key",
                 message(w, sender=young, text="#close", to=w.plus(f"{w.thread}k" + "a" * 24), **tag_and_ack),
                 "smtp", rcpt=w.plus(f"{w.thread}k" + "a" * 24)),
        Scenario("the partner answering in staff's name with the notification's Message-ID of someone else",
                 message(w, sender=young, text="#close", in_reply_to=w.notification_id(w.eric)), "smtp"),
    ]
    return out


def genuine(w: World) -> list[Scenario]:
    young = w.young
    return [
        Scenario("reply key in To (Reply to a notification)",
                 message(w, sender=young, text="Fixed.", to=w.plus(w.token(young)),
                         in_reply_to=w.notification_id(young)), "smtp", rcpt=w.plus(w.token(young)),
                 proven_by="reply-key"),
        Scenario("reply key only in In-Reply-To (the server takes no plus-addresses)",
                 message(w, sender=young, text="Fixed.", in_reply_to=w.notification_id(young)), "smtp",
                 proven_by="reply-key"),
        Scenario("reply key, by IMAP APPEND (mail moved in by hand)",
                 message(w, sender=young, text="Fixed.", to=w.plus(w.token(young)),
                         in_reply_to=w.notification_id(young)), "append", proven_by="reply-key"),
        Scenario("authenticated submission on our server",
                 message(w, sender=young, text="Fixed.", in_reply_to=w.ack_id), "smtp-auth", login=young,
                 proven_by="authentication-results"),
        Scenario("signed by the staff domain, plain SMTP",
                 w.staff_dkim.sign(message(w, sender=young, text="Fixed.", in_reply_to=w.ack_id)), "smtp",
                 proven_by="dkim"),
    ]


def verdict(w: World, raw: bytes, *, thread: int | None = None, staff: frozenset[str] | None = None,
            authres: bool = True, dkim_: bool = True) -> StaffProof:
    """What the rules make of ``raw`` as received (parse, reply keys, Authentication-Results, DKIM)."""
    staff = w.staff if staff is None else staff
    mail = parse(raw, received_at=RECEIVED_AT)
    key = replykeys.check(mail, secret=w.secret, thread_number=w.thread if thread is None else thread,
                          staff=staff, support_address=w.support)
    reading = authresults.read(raw, authserv_ids=[w.authserv_id]) if authres else None
    sigs = dkim_check.verify(raw, dnsfunc=w.dns) if dkim_ else None
    return judge(from_addr=mail.from_addr, staff=staff, key=key, authresults=reading, dkim=sigs)

"""DKIM checked by partnerdesk itself (RFC 6376, with dkimpy), for servers that stamp nothing.

A plain Dovecot adds no Authentication-Results, but a staff member's own provider
signs their mail; verifying that signature here proves the From domain's owner sent
it, whatever path it took, and an IMAP APPEND cannot fake it.

A signature only counts as valid when, besides verifying:
- it signs the whole body (no ``l=``: otherwise anyone can append text to a signed mail);
- it signs *every* From, Subject, In-Reply-To and References header the mail has.
  Those headers decide which thread a mail joins and what it says; a signature that
  leaves one unsigned lets a forger add an ``In-Reply-To`` to a genuine old staff
  mail (a ``#close``, say) and file it into any thread. Counting matters: DKIM signs
  the bottom-most instances, mail readers show the top-most.
Which domain a valid signature proves, and whether that is the staff member's, is
for workflows/staffproof.py to say.

The DNS lookup is a parameter (``dnsfunc(name: bytes, timeout=…) -> bytes | None``,
as dkimpy calls it) so that tests sign with a local key. The default asks the
system's resolver with dnspython; a timeout or an unreachable resolver is reported
as temporary, an absent record as a failure.
"""

from __future__ import annotations

import logging
from typing import Callable

import dkim
import dns.exception
import dns.rdatatype
import dns.resolver
from dkim.util import InvalidTagValueList, parse_tag_value

from workflows.proofs import DkimSignature

log = logging.getLogger(__name__)

DnsLookup = Callable[..., "bytes | None"]
MAX_SIGNATURES = 5  # each costs a DNS lookup; a mail with more is not a staff member's reply
SIGNED_HEADERS = (b"from", b"subject", b"in-reply-to", b"references")


class DnsTemporaryError(Exception):
    """The resolver did not answer now; it may later."""


def dns_lookup(resolver: dns.resolver.Resolver | None = None) -> DnsLookup:
    """A ``dnsfunc`` for dkimpy asking ``resolver`` (default: the system's, /etc/resolv.conf)."""

    def txt(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            qname = name.decode("ascii").rstrip(".") + "."
        except UnicodeDecodeError:
            return None  # d= and s= are ASCII (punycode); anything else names nothing
        try:
            answer = (resolver or dns.resolver.get_default_resolver()).resolve(
                qname, dns.rdatatype.TXT, lifetime=timeout, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return None
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.NoResolverConfiguration) as e:
            # dkimpy's own lookup takes SERVFAIL for "no key"; for us it is "try again later".
            raise DnsTemporaryError(f"{qname}: {e}") from e
        for rrset in answer.response.answer:
            if rrset.rdtype == dns.rdatatype.TXT:
                return b"".join(next(iter(rrset)).strings)
        return None

    return txt


def _tags(value: bytes) -> dict[bytes, bytes]:
    try:
        return parse_tag_value(value)
    except InvalidTagValueList:
        return {}


def _coverage_problem(headers: list[tuple[bytes, bytes]], signed: tuple[bytes, ...]) -> str:
    for name in SIGNED_HEADERS:
        present = sum(1 for k, _ in headers if k.lower() == name)
        covered = sum(1 for h in signed if h == name)
        if present > covered:
            return (f"leaves {present - covered} of {present} {name.decode().title()} header(s) unsigned")
    return ""


class _Reasons:
    """Stands in for dkimpy's logger: it *logs* why a signature failed ("missing public key: …")
    and only returns False; the last error is the reason we report."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, msg: object, *args: object) -> None:
        self.errors.append(str(msg) % args if args else str(msg))

    warning = error

    def debug(self, msg: object, *args: object) -> None:
        log.debug(msg, *args)

    info = debug

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 (dkimpy's name)
        return level >= logging.ERROR


def verify(raw: bytes, *, dnsfunc: DnsLookup | None = None, timeout: float = 5) -> tuple[DkimSignature, ...]:
    """Every DKIM-Signature of ``raw`` (the first MAX_SIGNATURES), verified; ``dnsfunc`` default: the
    system's resolver."""
    dnsfunc = dnsfunc or dns_lookup()
    reasons = _Reasons()
    try:
        checker = dkim.DKIM(raw, logger=reasons, timeout=timeout)
    except dkim.DKIMException as e:
        return (DkimSignature(domain="", reason=f"unreadable message ({e})"),)
    signatures = [v for k, v in checker.headers if k.lower() == b"dkim-signature"]
    out = []
    for idx, value in enumerate(signatures[:MAX_SIGNATURES]):
        tags = _tags(value)
        domain = tags.get(b"d", b"").decode("ascii", "replace").strip().lower()
        selector = tags.get(b"s", b"").decode("ascii", "replace").strip()

        def result(valid: bool, reason: str = "", temporary: bool = False) -> DkimSignature:
            return DkimSignature(domain=domain, selector=selector, valid=valid, reason=reason, temporary=temporary)

        reasons.errors.clear()
        try:
            ok = checker.verify(idx=idx, dnsfunc=dnsfunc)
        except DnsTemporaryError as e:
            out.append(result(False, f"its key could not be looked up for now ({e})", temporary=True))
            continue
        except dkim.DKIMException as e:
            # "body hash mismatch (got b'…', expected b'…')": the hashes help nobody reading the timeline.
            out.append(result(False, (str(e).partition(" (got ")[0] or type(e).__name__)[:200]))
            continue
        if not ok:
            why = reasons.errors[-1][:200] if reasons.errors else "altered in transit or forged"
            out.append(result(False, f"does not verify ({why})"))
        elif b"l" in checker.signature_fields:
            out.append(result(False, "signs only part of the body (l= tag)"))
        elif problem := _coverage_problem(checker.headers, checker.include_headers):
            out.append(result(False, problem))
        else:
            out.append(result(True))
    return tuple(out)

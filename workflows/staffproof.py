"""Staff proof: is a mail that says it is from a staff address really from that person?

A From header costs nothing to write, so a staff address alone proves nothing. One of
these does, tried in this order:

| proof | what it takes | shown as |
|---|---|---|
| reply key | a key (workflows/replykeys.py) minted for this thread and this address comes back | ``reply key (To)`` |
| Authentication-Results | our own receiving server says ``dmarc=pass`` for the From domain, ``dkim=pass`` with a signing domain aligned to it, or ``auth=pass`` by that user | ``Authentication-Results from mx.example (dmarc=pass)`` |
| DKIM | partnerdesk verifies a signature itself, signing domain aligned to the From domain, covering From, Subject and the thread headers | ``DKIM d=devseed.example`` |

The adapters (mailbox/authresults.py, mailbox/dkim_check.py) read the raw mail and
hand over the value types of workflows/proofs.py; this module only judges them. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from .proofs import AuthResult, AuthResultsReading, DkimSignature, StaffProof, TrustSettings
from .replykeys import KeyCheck

__all__ = ["AuthResult", "AuthResultsReading", "DkimSignature", "StaffProof", "TrustSettings", "aligned",
           "domain_of", "from_authresults", "from_dkim", "judge"]


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().lower().rstrip(".")


def aligned(signing_domain: str, from_domain: str) -> bool:
    """DMARC's relaxed alignment, without a public-suffix list: one domain is the other or a parent
    of it. Whoever controls a domain's DNS controls its subdomains', and nobody can publish keys
    for a bare public suffix, so a parent that happens to be one ("co.uk") proves nothing forged."""
    d, f = signing_domain.strip().lower().rstrip("."), from_domain.strip().lower().rstrip(".")
    if not d or not f or "." not in d:
        return False
    return d == f or f.endswith("." + d) or d.endswith("." + f)


@dataclass(frozen=True, slots=True)  # positional: Finding(False, "why")
class Finding:
    """What one kind of proof says about one mail: proven (``text`` says how) or not (``text`` says why)."""

    proven: bool
    text: str
    temporary: bool = False


def _results_text(results: tuple[AuthResult, ...]) -> str:
    parts = []
    for r in results:
        detail = " ".join(f"{k}={v}" for k, v in r.properties if k in ("header.from", "header.d", "header.i",
                                                                       "smtp.auth", "smtp.mailfrom"))
        parts.append(f"{r.method}={r.result}" + (f" {detail}" if detail else ""))
    return "; ".join(parts)


def from_authresults(reading: AuthResultsReading, from_addr: str) -> Finding:
    """Do our own server's results prove ``from_addr``?"""
    if not reading.results:
        return Finding(False, "Authentication-Results: " + ("; ".join(reading.notes) or "none from our own server"))
    from_domain = domain_of(from_addr)
    results = reading.results
    for r in results:
        # A DMARC failure for this very From outweighs any pass beside it: the two cannot both be right.
        if r.method == "dmarc" and r.result in ("fail", "reject", "quarantine") \
                and r.prop("header.from").lower() in ("", from_domain):
            return Finding(False, f"Authentication-Results from {r.authserv_id}: dmarc={r.result} for {from_domain}")
    for r in results:
        if r.result != "pass":
            continue
        how = f"Authentication-Results from {r.authserv_id}"
        if r.method == "dmarc" and r.prop("header.from").lower().rstrip(".") == from_domain:
            return Finding(True, f"{how} (dmarc=pass)")
        if r.method == "dkim":
            d = r.prop("header.d") or domain_of(r.prop("header.i"))
            if d and aligned(d, from_domain):
                return Finding(True, f"{how} (dkim=pass d={d.lower()})")
        if r.method == "auth" and r.prop("smtp.auth").strip().lower() == from_addr:
            return Finding(True, f"{how} (auth=pass by {from_addr})")
    ids = ", ".join(sorted({r.authserv_id for r in results}))
    return Finding(False, f"Authentication-Results from {ids} prove nothing about {from_addr}: "
                          f"{_results_text(results)}")


def from_dkim(signatures: tuple[DkimSignature, ...], from_addr: str) -> Finding:
    """Does a signature partnerdesk verified itself prove ``from_addr``?"""
    if not signatures:
        return Finding(False, "no DKIM signature")
    from_domain = domain_of(from_addr)
    problems: list[str] = []
    temporary = False
    for sig in signatures:
        if sig.valid and aligned(sig.domain, from_domain):
            return Finding(True, f"DKIM d={sig.domain}")
        if sig.valid:
            problems.append(f"DKIM d={sig.domain} verifies but is not aligned with {from_domain}")
        else:
            # Only a signature that would prove something if DNS answered makes waiting worthwhile.
            temporary = temporary or (sig.temporary and aligned(sig.domain, from_domain))
            problems.append(f"DKIM d={sig.domain or '?'}: {sig.reason or 'does not verify'}")
    return Finding(False, "; ".join(problems), temporary)


def judge(*, from_addr: str, staff: frozenset[str], key: KeyCheck | None = None,
          authresults: AuthResultsReading | None = None,
          dkim: tuple[DkimSignature, ...] | None = None) -> StaffProof:
    """Is ``from_addr`` proven? Each proof is None when it is switched off (not configured).

    Only an address on the staff list can be proven at all: a key or signature of someone
    removed from the list proves nothing any more.
    """
    address = (from_addr or "").strip().lower()
    if not address or address not in staff:
        return StaffProof(proven=False, address=address, reasons=(f"{address or 'the sender'} is not staff",))
    reasons: list[str] = []
    if key is not None:
        if key.proven:
            return StaffProof(proven=True, address=address, method="reply-key", how=f"reply key ({key.where})")
        reasons.append(key.reason)
    findings = []
    if authresults is not None:
        findings.append(("authentication-results", from_authresults(authresults, address)))
    if dkim is not None:
        findings.append(("dkim", from_dkim(dkim, address)))
    for method, finding in findings:
        if finding.proven:
            return StaffProof(proven=True, address=address, method=method, how=finding.text)
        reasons.append(finding.text)
    if not reasons:
        reasons.append("no proof is switched on")
    return StaffProof(proven=False, address=address, reasons=tuple(reasons),
                      temporary=any(f.temporary for _, f in findings))

"""The value types of staff proof: what the mail adapters read, and the verdict.

mailbox/authresults.py and mailbox/dkim_check.py hand these to the rules (workflows/staffproof.py
judges them); they are plain data, which is why the adapters may import this module.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import FROZEN


@dataclass(**FROZEN)
class TrustSettings:
    """The ``[trust]`` table: which proofs beyond reply keys (always on) are switched on."""

    # Put keys in Reply-To plus-addresses too (the Message-ID always carries them). Off for a
    # support mailbox that refuses plus-addresses: replies would bounce.
    plus_addresses: bool = True
    recipient_delimiter: str = "+"
    authserv_ids: frozenset[str] = frozenset()  # receiving servers whose Authentication-Results count
    # Host names (or parent domains) of our own servers in Received lines, when they differ from
    # the authserv-ids; see mailbox/authresults.py.
    trusted_relays: frozenset[str] = frozenset()
    verify_dkim: bool = False
    # Where partnerdesk asks for DKIM keys: "address:port" (IPv6 without brackets before the last ":");
    # empty: the system's resolver.
    dns_servers: tuple[str, ...] = ()
    dns_timeout: float = 5.0  # seconds per lookup; a timeout leaves the mail unverified, never blocks it


@dataclass(**FROZEN)
class AuthResult:
    """One method's result from an Authentication-Results header our own server added."""

    authserv_id: str
    method: str  # "dmarc", "dkim", "auth", "spf", ...
    result: str  # "pass", "fail", "none", ...
    properties: tuple[tuple[str, str], ...] = ()  # ("header.d", "devseed.example"), ("smtp.auth", "young")

    def prop(self, name: str) -> str:
        return next((v for k, v in self.properties if k == name), "")


@dataclass(**FROZEN)
class AuthResultsReading:
    """What mailbox/authresults.py found: the results it trusts, and what it set aside and why."""

    results: tuple[AuthResult, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(**FROZEN)
class DkimSignature:
    """One DKIM-Signature as partnerdesk verified it (mailbox/dkim_check.py)."""

    domain: str  # d=, lower-cased
    selector: str = ""
    valid: bool = False  # the signature verifies, covers every header that matters, signs the whole body
    reason: str = ""  # why not, when not valid
    temporary: bool = False  # DNS failed for now: the same mail may verify later


@dataclass(**FROZEN)
class StaffProof:
    """The verdict on one mail from a staff address."""

    proven: bool
    address: str
    method: str = ""  # "reply-key" | "authentication-results" | "dkim"; "" when not proven
    how: str = ""  # for the timeline and `threads show`: "reply key (To)", "DKIM d=devseed.example"
    reasons: tuple[str, ...] = ()  # when not proven: what each proof said
    temporary: bool = False  # not proven only because DNS failed for now (DKIM)

    def to_dict(self) -> dict[str, object]:
        return {"proven": self.proven, "address": self.address, "method": self.method, "how": self.how,
                "reasons": list(self.reasons), "temporary": self.temporary}

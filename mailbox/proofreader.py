"""The ProofReader port (service/ports.py): what a raw mail proves about its sender beyond a reply key.

Built by run.py from the [trust] table: the Authentication-Results our own server added
(mailbox/authresults.py) when ``authserv_ids`` names it, and partnerdesk's own DKIM check
(mailbox/dkim_check.py) when ``verify_dkim`` is on, asking the resolvers in ``dns_servers`` (default:
the system's). Each is None when switched off, so the verdict can say what was not tried.
"""

from __future__ import annotations

import dns.nameserver
import dns.resolver

from workflows.proofs import AuthResultsReading, DkimSignature, TrustSettings

from . import authresults, dkim_check


def resolver(servers: tuple[str, ...]) -> dns.resolver.Resolver | None:
    """A resolver asking ``servers`` ("address:port"), or None for the system's."""
    if not servers:
        return None
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = [dns.nameserver.Do53Nameserver(address, int(port))
                     for address, _, port in (s.rpartition(":") for s in servers)]
    return r


class ProofReader:
    def __init__(self, trust: TrustSettings, dnsfunc: dkim_check.DnsLookup | None = None) -> None:
        self.trust = trust
        self.dnsfunc = dnsfunc or (dkim_check.dns_lookup(resolver(trust.dns_servers)) if trust.verify_dkim else None)

    @property
    def active(self) -> bool:
        return bool(self.trust.authserv_ids) or self.trust.verify_dkim

    def read(self, raw: bytes) -> tuple[AuthResultsReading | None, tuple[DkimSignature, ...] | None]:
        t = self.trust
        reading = authresults.read(raw, authserv_ids=t.authserv_ids, trusted_relays=t.trusted_relays) \
            if t.authserv_ids else None
        signatures = dkim_check.verify(raw, dnsfunc=self.dnsfunc, timeout=t.dns_timeout) if t.verify_dkim else None
        return reading, signatures


def reader_for(trust: TrustSettings) -> ProofReader | None:
    """The reader [trust] asks for; None when only reply keys count (nothing to read)."""
    reader = ProofReader(trust)
    return reader if reader.active else None

"""The [trust] table: which proof of a staff sender counts besides reply keys (which always do).

    [trust]
    authserv_ids = ["mx.google.com"]   # receiving servers whose Authentication-Results count
    trusted_relays = []                # other names of our own servers in Received lines
    verify_dkim = false                # partnerdesk verifies DKIM signatures itself
    dns_servers = []                   # resolvers for those DKIM key lookups ("IP" or "IP:port"); default the system's
    dns_timeout = 5
    plus_addresses = true              # reply keys in Reply-To: support+KEY@...
    recipient_delimiter = "+"
"""

from __future__ import annotations

import ipaddress
import re

from workflows import replykeys
from workflows.proofs import TrustSettings

from .reader import Reader

KEYS = ("authserv_ids", "trusted_relays", "verify_dkim", "dns_servers", "dns_timeout", "plus_addresses",
        "recipient_delimiter")
_HOST_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
_SERVER_RE = re.compile(r"^(?:\[(?P<v6>[0-9a-f:]+)\]|(?P<host>[a-z0-9.-]+))(?::(?P<port>\d{1,5}))?$")


def _hosts(r: Reader, t: dict, key: str) -> frozenset[str]:
    values = r.get(t, "[trust]", key, list, [])
    out = []
    for v in values:
        if not isinstance(v, str) or not _HOST_RE.match(v.strip().lower().rstrip(".")):
            raise r.fail(f"[trust] {key}", f"{v!r} is not a host name like \"mx.google.com\"")
        out.append(v.strip().lower().rstrip("."))
    return frozenset(out)


def read_trust(r: Reader, support_address: str) -> TrustSettings:
    t = r.section("trust", KEYS)
    delimiter = r.text(t, "[trust]", "recipient_delimiter", "+")
    plus = r.flag(t, "[trust]", "plus_addresses", True)
    if plus:
        problem = replykeys.address_problem(support_address, delimiter=delimiter)
        if problem:
            key = "recipient_delimiter" if problem.startswith("recipient delimiter") else "plus_addresses"
            raise r.fail(f"[trust] {key}", f"{problem}; use another support address or delimiter, or set "
                                           f"plus_addresses = false (reply keys then ride only in Message-IDs)")
    servers = []
    for v in r.get(t, "[trust]", "dns_servers", list, []):
        m = _SERVER_RE.match(v.strip().lower()) if isinstance(v, str) else None
        try:
            address = str(ipaddress.ip_address(m.group("v6") or m.group("host"))) if m else ""
        except ValueError:
            address = ""
        if not address or (m and m.group("port") and not 0 < int(m.group("port")) < 65536):
            raise r.fail("[trust] dns_servers", f"{v!r} is not a resolver's IP address with an optional port, like "
                                                f"\"127.0.0.1\", \"10.0.0.2:5353\" or \"[::1]:53\"")
        servers.append(f"{address}:{m.group('port') or 53}")
    return TrustSettings(
        plus_addresses=plus,
        recipient_delimiter=delimiter,
        authserv_ids=_hosts(r, t, "authserv_ids"),
        trusted_relays=_hosts(r, t, "trusted_relays"),
        verify_dkim=r.flag(t, "[trust]", "verify_dkim", False),
        dns_servers=tuple(servers),
        dns_timeout=r.number(t, "[trust]", "dns_timeout", 5.0, lo=0.1),
    )

"""A tiny authoritative DNS server on 127.0.0.1 for tests: DKIM keys served to dnspython (and so to
partnerdesk's own DKIM check, `[trust] dns_servers`), without the internet."""

from __future__ import annotations

import socket
import threading

import dns.message
import dns.rcode
import dns.resolver
import dns.rrset


class LoopbackDns:
    """A tiny authoritative DNS server on 127.0.0.1 (UDP): TXT records, NXDOMAIN, SERVFAIL, silence."""

    def __init__(self, txt: dict[str, bytes], servfail=(), silent=()):
        self.txt, self.servfail, self.silent = txt, set(servfail), set(silent)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def resolver(self) -> dns.resolver.Resolver:
        r = dns.resolver.Resolver(configure=False)
        r.nameservers, r.port = ["127.0.0.1"], self.port
        return r

    def _serve(self):
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except (socket.timeout, OSError):
                continue
            query = dns.message.from_wire(data)
            name = query.question[0].name.to_text()
            if name in self.silent:
                continue
            response = dns.message.make_response(query)
            if name in self.servfail:
                response.set_rcode(dns.rcode.SERVFAIL)
            elif name in self.txt:
                value = self.txt[name]
                # Split in strings of 100: a 2048-bit key needs several, and they join without spaces.
                chunks = " ".join('"' + value[i:i + 100].decode() + '"' for i in range(0, len(value), 100))
                response.answer.append(dns.rrset.from_text(name, 60, "IN", "TXT", chunks))
            else:
                response.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(response.to_wire(), peer)

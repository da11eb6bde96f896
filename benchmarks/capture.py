#!/usr/bin/env python3
"""An SMTP server that takes every mail and notes when it came (a process of its own, for benchmarks).

    python3 benchmarks/capture.py LOG [--pipelining]     # prints its port, runs until SIGTERM

aiosmtpd on 127.0.0.1, a free port. For each accepted mail one line in LOG:
``<time.monotonic()>\\t<Message-ID>\\t<X-Partnerdesk-Kind>\\t<To>`` (CLOCK_MONOTONIC is the same for every
process on the machine, so the benchmark can compare it with its own clock). ``--pipelining``
offers PIPELINING (aiosmtpd reads pipelined commands in order anyway).
"""

from __future__ import annotations

import re
import signal
import sys
import threading
import time

from aiosmtpd.controller import Controller

_H = {name: re.compile(rb"(?mi)^" + name.encode() + rb":[ \t]*(.*?)\r?$")
      for name in ("Message-ID", "X-Partnerdesk-Kind", "To")}


class Handler:
    def __init__(self, log, pipelining: bool) -> None:
        self.log = log
        self.pipelining = pipelining
        self.lock = threading.Lock()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return responses[:-1] + (["250-PIPELINING"] if self.pipelining else []) + [responses[-1]]

    async def handle_DATA(self, server, session, envelope):
        t = time.monotonic()
        data = envelope.original_content or b""
        head = data.split(b"\r\n\r\n", 1)[0]
        fields = []
        for rx in _H.values():
            m = rx.search(head)
            fields.append(m.group(1).decode("ascii", "replace") if m else "")
        with self.lock:
            self.log.write(f"{t:.6f}\t" + "\t".join(fields) + "\n")
            self.log.flush()
        return "250 2.0.0 OK"


class _Controller(Controller):
    def _trigger_server(self):  # aiosmtpd 1.4.6 cannot bind port 0 otherwise (see tests/mailservers.py)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def main() -> None:
    log = open(sys.argv[1], "a", buffering=1 << 16)
    ctl = _Controller(Handler(log, "--pipelining" in sys.argv), hostname="127.0.0.1", port=0,
                      server_hostname="capture.bench.test")
    ctl.start()
    print(ctl.port, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    ctl.stop(no_assert=True)
    log.close()


if __name__ == "__main__":
    main()

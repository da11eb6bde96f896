"""Sending rendered mail with aiosmtplib.

``SmtpSender.send`` takes outbox entries and returns one SendResult per entry,
classified so the outbox knows what to do next:

* ``sent``      - the server took it (recipients it refused are named in detail)
* ``transient`` - 4xx, timeouts, dropped connections: retry later with backoff
* ``permanent`` - 5xx for every recipient: report, do not retry

It never raises for one bad mail. Several connections work through the batch in
parallel, under a rate limit, because a large mailing must not hog one server.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

import aiosmtplib

from workflows.ports import SendResult
from workflows.settings import SmtpSettings

from .imap import tls_context

log = logging.getLogger("partnerdesk.smtp")


def classify_error(e: BaseException) -> tuple[str, str]:
    if isinstance(e, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in e.recipients]
        status = "permanent" if codes and all(500 <= c < 600 for c in codes) else "transient"
        return status, "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in e.recipients)
    if isinstance(e, aiosmtplib.SMTPResponseException):
        return ("permanent" if 500 <= e.code < 600 else "transient"), f"{e.code} {e.message}"
    if isinstance(e, (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError)):
        return "transient", f"{type(e).__name__}: {e}"
    return "transient", f"unexpected {type(e).__name__}: {e}"


class SmtpSender:
    def __init__(self, settings: SmtpSettings, password: str | None) -> None:
        self.s = settings
        self.password = password

    def _client(self) -> aiosmtplib.SMTP:
        s = self.s
        kwargs: dict[str, Any] = dict(hostname=s.host, port=s.port, timeout=s.timeout)
        if s.security == "tls":
            kwargs.update(use_tls=True, tls_context=tls_context(s))
        elif s.security == "starttls":
            kwargs.update(start_tls=True, tls_context=tls_context(s))
        else:
            kwargs.update(use_tls=False, start_tls=False)
        if s.username:
            kwargs.update(username=s.username, password=self.password or "")
        return aiosmtplib.SMTP(**kwargs)

    def send(self, entries: list[dict[str, Any]],
             on_result: Callable[[SendResult], None] | None = None) -> list[SendResult]:
        """``on_result`` is called with each result as soon as it is known, so the caller can record it
        durably before the next mail goes out (a crash mid-mailing then resends nothing)."""
        if not entries:
            return []
        return asyncio.run(self._send_all(entries, on_result))

    async def _send_all(self, entries: list[dict[str, Any]],
                        on_result: Callable[[SendResult], None] | None = None) -> list[SendResult]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for e in entries:
            queue.put_nowait(e)
        results: dict[str, SendResult] = {}
        interval = 60.0 / self.s.rate_per_minute if self.s.rate_per_minute > 0 else 0.0
        gate = asyncio.Lock()
        loop = asyncio.get_running_loop()
        next_slot = [loop.time()]

        async def pace() -> None:
            if not interval:
                return
            async with gate:
                wait = next_slot[0] - loop.time()
                next_slot[0] = max(next_slot[0], loop.time()) + interval
            if wait > 0:
                await asyncio.sleep(wait)

        async def worker() -> None:
            client: aiosmtplib.SMTP | None = None
            try:
                while True:
                    try:
                        e = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    await pace()
                    try:
                        if client is None or not client.is_connected:
                            client = self._client()
                            await client.connect()
                        refused, _reply = await client.sendmail(e["mail_from"], e["rcpt_to"], e["raw"].encode())
                        detail = "; ".join(f"{r}: {c.code} {c.message}" for r, c in (refused or {}).items())
                        results[e["key"]] = SendResult(key=e["key"], status="sent",
                                                       detail=f"refused: {detail}" if detail else "")
                    except Exception as exc:  # classified per mail; never stops the batch
                        status, detail = classify_error(exc)
                        log.warning("sending %s failed (%s): %s", e["key"], status, detail)
                        results[e["key"]] = SendResult(key=e["key"], status=status, detail=detail)
                        if status == "transient" and client is not None:
                            try:
                                client.close()
                            except Exception:
                                pass
                            client = None
                    if on_result is not None:
                        on_result(results[e["key"]])
            finally:
                if client is not None and client.is_connected:
                    try:
                        await client.quit()
                    except Exception:
                        client.close()

        n = max(1, min(self.s.connections, len(entries)))
        await asyncio.gather(*(worker() for _ in range(n)))
        return [results[e["key"]] for e in entries if e["key"] in results]

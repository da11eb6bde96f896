"""Sending rendered mail with aiosmtplib.

``SmtpSender.send`` takes outbox entries and returns one SendResult per entry,
classified so the outbox knows what to do next:

* ``sent``      - the server took it for at least one recipient. Recipients it refused
  are named in detail; those refused for now (4xx, "452 over quota") are in
  ``retry_rcpts`` and the outbox queues a copy for just them.
* ``transient`` - 4xx, timeouts, dropped connections, and every failure of the
  connection itself (connect, EHLO, STARTTLS, AUTH: a wrong or rotated password,
  "530 authentication required"): retry later with backoff. The operator fixes the
  password; the mail is still there.
* ``held``      - not tried: our OAuth2 login lapsed (LoginRequired) before the server saw
  the mail. It waits for `auth login` without using up its retry window.
* ``permanent`` - the mail itself was refused: 5xx for every recipient at RCPT, or 5xx
  to DATA. Report, do not retry.

A failure of the connection stops the batch: every entry not yet tried gets the
same transient result instead of hammering a server that already said no.

It never raises for one bad mail. Several connections work through the batch in
parallel, under a rate limit, because a large mailing must not hog one server.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import aiosmtplib

from config.servers import SmtpSettings
from service.ports import SendResult
from workflows.errors import LoginRequired
from workflows.outbox import HELD, OutboxEntry

from .imap import tls_context

log = logging.getLogger("partnerdesk.smtp")


# Failures of the session, not of one mail: the next mail would fail the same way.
SESSION_ERRORS = (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPHeloError, aiosmtplib.SMTPAuthenticationError,
                  aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPNotSupported,
                  OSError, asyncio.TimeoutError)
SESSION_CODES = {421, 530, 534, 535, 538}  # closing; authentication required / too weak / failed


@dataclass(frozen=True)
class Failure:
    status: str  # "transient" | "permanent" | "held"
    detail: str
    session: bool = False  # the connection is unusable: stop the batch
    retry_rcpts: tuple[str, ...] = ()  # refused for now, next to others refused for good


def classify_error(e: BaseException, *, connecting: bool = False, oauth2: bool = False) -> Failure:
    """What one failed send means. ``connecting``: it happened in connect/EHLO/STARTTLS/AUTH;
    ``oauth2``: the login was by an OAuth2 token, not a password."""
    name = type(e).__name__
    if isinstance(e, LoginRequired):  # our login lapsed; the server never saw the mail
        return Failure(HELD, f"SMTP login: {e}", session=True)
    if connecting or isinstance(e, SESSION_ERRORS):
        code = getattr(e, "code", None)
        detail = f"{code} {e.message}" if code is not None and hasattr(e, "message") else f"{name}: {e}"
        if oauth2 and (isinstance(e, aiosmtplib.SMTPAuthenticationError) or code in (530, 535)):
            detail += (" (the server refused a freshly refreshed OAuth2 token: check that SMTP AUTH is enabled for "
                       "the mailbox and that [oauth2] scopes grant sending; the mail stays queued)")
        elif isinstance(e, aiosmtplib.SMTPAuthenticationError) or code in (530, 535):
            detail += " (check [smtp] username and password; the mail stays queued)"
        return Failure("transient", f"SMTP connection failed: {detail}", session=True)
    if isinstance(e, aiosmtplib.SMTPRecipientsRefused):  # every recipient refused at RCPT
        detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in e.recipients)
        if any(r.code in SESSION_CODES for r in e.recipients):
            return Failure("transient", f"SMTP session refused: {detail}", session=True)
        later = tuple(r.recipient for r in e.recipients if not 500 <= r.code < 600)
        if not later:
            return Failure("permanent", detail)
        if len(later) == len(e.recipients):
            return Failure("transient", detail)
        return Failure("permanent", detail, retry_rcpts=later)
    if isinstance(e, aiosmtplib.SMTPResponseException):
        detail = f"{e.code} {e.message}"
        if e.code in SESSION_CODES:
            return Failure("transient", f"SMTP session refused: {detail}", session=True)
        # Only DATA's 5xx condemns the mail; a refused MAIL FROM is the sender setup's problem.
        permanent = isinstance(e, aiosmtplib.SMTPDataError) and 500 <= e.code < 600
        return Failure("permanent" if permanent else "transient", detail)
    if isinstance(e, aiosmtplib.SMTPException):
        return Failure("transient", f"{name}: {e}")
    return Failure("transient", f"unexpected {name}: {e}")


class SmtpSender:
    def __init__(self, settings: SmtpSettings, password: str | None,
                 authenticator: Callable[[aiosmtplib.SMTP], Awaitable[Any]] | None = None) -> None:
        self.s = settings
        self.password = password
        # Logs each new connection in instead of the password (OAuth2: mailbox/oauth2_sasl.py); its
        # failures count as connection failures: the batch pauses, the mail stays queued.
        self.authenticator = authenticator

    def _client(self) -> aiosmtplib.SMTP:
        s = self.s
        kwargs: dict[str, Any] = dict(hostname=s.host, port=s.port, timeout=s.timeout)
        if s.security == "tls":
            kwargs.update(use_tls=True, tls_context=tls_context(s))
        elif s.security == "starttls":
            kwargs.update(start_tls=True, tls_context=tls_context(s))
        else:
            kwargs.update(use_tls=False, start_tls=False)
        if s.username and self.authenticator is None:
            kwargs.update(username=s.username, password=self.password or "")
        return aiosmtplib.SMTP(**kwargs)

    def check_login(self) -> None:
        """Connect and log in, send nothing (`auth login` checks the account so). Raises what failed."""
        async def go() -> None:
            client = self._client()
            await client.connect()
            try:
                if self.authenticator is not None:
                    await self.authenticator(client)
            finally:
                try:
                    await client.quit()
                except aiosmtplib.SMTPException:
                    client.close()

        asyncio.run(go())

    def send(self, entries: list[OutboxEntry],
             on_result: Callable[[SendResult], None] | None = None) -> list[SendResult]:
        """``on_result`` is called with each result as soon as it is known, so the caller can record it
        durably before the next mail goes out (a crash mid-mailing then resends nothing)."""
        if not entries:
            return []
        return asyncio.run(self._send_all(entries, on_result))

    async def _send_all(self, entries: list[OutboxEntry],
                        on_result: Callable[[SendResult], None] | None = None) -> list[SendResult]:
        queue: asyncio.Queue[OutboxEntry] = asyncio.Queue()
        for e in entries:
            queue.put_nowait(e)
        results: dict[str, SendResult] = {}
        broken: list[Failure] = []  # set by the first session failure: the rest of the batch waits
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
                    if broken:
                        results[e.key] = SendResult(key=e.key, status=broken[0].status, detail=broken[0].detail)
                        if on_result is not None:
                            on_result(results[e.key])
                        continue
                    await pace()
                    connecting = False
                    try:
                        if client is None or not client.is_connected:
                            connecting = True
                            prepare = getattr(self.authenticator, "prepare", None)
                            if prepare is not None:  # OAuth2: a lapsed login is known before connecting
                                await asyncio.to_thread(prepare)
                            client = self._client()
                            await client.connect()
                            if self.authenticator is not None:
                                await self.authenticator(client)
                            connecting = False
                        refused, _reply = await client.sendmail(e.mail_from, list(e.rcpt_to), e.raw.encode())
                        refused = refused or {}
                        detail = "; ".join(f"{r}: {c.code} {c.message}" for r, c in refused.items())
                        later = tuple(r for r, c in refused.items() if not 500 <= c.code < 600)
                        results[e.key] = SendResult(key=e.key, status="sent",
                                                       detail=f"refused: {detail}" if detail else "",
                                                       retry_rcpts=later)
                    except Exception as exc:  # classified per mail
                        f = classify_error(exc, connecting=connecting, oauth2=self.authenticator is not None)
                        log.warning("sending %s failed (%s): %s", e.key, f.status, f.detail)
                        results[e.key] = SendResult(key=e.key, status=f.status, detail=f.detail,
                                                       retry_rcpts=f.retry_rcpts)
                        if f.session and not broken:
                            broken.append(f)
                            log.warning("stopping this batch: %s; the remaining mail stays queued",
                                        "the OAuth2 login lapsed" if f.status == HELD
                                        else "the SMTP server cannot take mail now")
                        if f.status != "permanent" and client is not None:
                            try:
                                client.close()
                            except Exception:
                                pass
                            client = None
                    if on_result is not None:
                        on_result(results[e.key])
            finally:
                if client is not None and client.is_connected:
                    try:
                        await client.quit()
                    except Exception:
                        client.close()

        n = max(1, min(self.s.connections, len(entries)))
        await asyncio.gather(*(worker() for _ in range(n)))
        return [results[e.key] for e in entries if e.key in results]

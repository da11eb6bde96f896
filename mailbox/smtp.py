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

It never raises for one bad mail. ``serve(feed)`` pulls mail from the outbox's dispatcher
(service/dispatch.py) on up to ``connections`` connections, opened when there is mail and kept
open a few seconds after; ``send(entries)`` does the same for a given list.

Near the wire: aiosmtplib opens the session (TLS, STARTTLS, EHLO, AUTH); the mail transactions then
run on a small protocol of our own on the same connection, because aiosmtplib reads one reply per
command and would lose the replies of pipelined commands. Where the server offers PIPELINING
(RFC 2920) MAIL, RCPT and DATA go out in one write: two round trips per mail instead of four or more.

At most one mail per connection is ever unrecorded. Results go to the dispatcher in groups, one fsync
for each: a result is written once a connection needs it durable or it has lingered two milliseconds,
so that the other connections' results join it (about one group per round of the connections instead
of one per mail). A connection sends the end of its next mail's DATA (the final ".", which makes the
server take it) only once its previous mail's result is durable; the rest of that mail travels meanwhile.
So a process killed while sending resends, on restart, at most one mail per open connection: the
one whose DATA exchange with the server was under way, with the same Message-ID.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import aiosmtplib
from aiosmtplib.email import quote_address
from aiosmtplib.response import SMTPResponse

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


# A dot-atom address, as partnerdesk's own mail is addressed: quoted as it is. aiosmtplib's quote_address
# parses every address with email.utils.parseaddr, a fifth of the sending thread's time in a large
# mailing; anything else still goes through it (tests/test_sending.py compares the two).
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9_+=-]+(?:\.[A-Za-z0-9_+=-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\Z")


def smtp_address(address: str) -> bytes:
    """``<address>`` as MAIL FROM and RCPT TO carry it."""
    if _PLAIN_ADDRESS.match(address):
        return b"<" + address.encode("ascii") + b">"
    return quote_address(address).encode("ascii")


KEEP_OPEN = 5.0  # seconds an idle connection is kept for the next mail (a burst of acks, say)


def wire_form(raw: bytes) -> bytes:
    """``raw`` as DATA carries it: every line ending CRLF, a leading dot doubled, the final "." line.

    Done with bytes methods, not regular expressions: on a 10 kB mail the two substitutions cost a
    quarter of a millisecond, as much as the rest of sending it. Our own mail is CRLF already."""
    lf = raw.count(b"\n")
    if raw.count(b"\r") != lf or raw.count(b"\r\n") != lf:
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if not raw.endswith(b"\r\n"):
        raw += b"\r\n"
    raw = raw.replace(b"\n.", b"\n..")
    if raw.startswith(b"."):
        raw = b"." + raw
    return raw + b".\r\n"


_TIMED_OUT = object()


def _expire(waiter: "asyncio.Future[object]") -> None:
    if not waiter.done():
        waiter.set_result(_TIMED_OUT)


class _Wire(asyncio.Protocol):
    """Replies as the server sends them, several per read if commands were pipelined."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.replies: collections.deque[SMTPResponse] = collections.deque()
        self.waiter: asyncio.Future[object] | None = None
        self.lost = False
        self.writable: asyncio.Future[None] | None = None
        self.wanted = 1  # replies the waiter waits for

    def data_received(self, data: bytes) -> None:
        self.buf += data
        lines: list[bytes] = []
        start = 0
        while (end := self.buf.find(b"\n", start)) >= 0:
            line = bytes(self.buf[start:end + 1])
            start = end + 1
            lines.append(line)
            if line[3:4] != b"-":
                try:
                    code = int(line[:3])
                except ValueError:
                    code = 500
                text = b"\n".join(part[4:].strip(b" \t\r\n") for part in lines)
                self.replies.append(SMTPResponse(code, text.decode("utf-8", "surrogateescape")))
                lines = []
                del self.buf[:start]
                start = 0
        if len(self.replies) >= self.wanted:
            self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._wake()
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def eof_received(self) -> bool:
        self.lost = True
        self._wake()
        return False

    def pause_writing(self) -> None:
        self.writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def reply(self, timeout: float) -> SMTPResponse:
        return (await self.replies_of(1, timeout))[0]

    async def replies_of(self, n: int, timeout: float) -> list[SMTPResponse]:
        """The next ``n`` replies (those of pipelined commands), waking once they are all here rather than
        once per reply; ``timeout`` for each wait."""
        while len(self.replies) < n:
            if self.lost:
                raise aiosmtplib.SMTPServerDisconnected("Connection lost")
            # A timer on the waiter rather than asyncio.wait_for, which wraps every wait in more futures
            # and callbacks (four replies a mail: a tenth of the sending thread's time).
            waiter = self.waiter = self.loop.create_future()
            self.wanted = n
            timer = self.loop.call_later(timeout, _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
            if waiter.result() is _TIMED_OUT and len(self.replies) < n:
                raise aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response")
        return [self.replies.popleft() for _ in range(n)]

    async def write(self, data: bytes) -> None:
        if self.lost or self.transport is None or self.transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        self.transport.write(data)
        if self.writable is not None and not self.writable.done():
            await self.writable


class _Connection:
    """One logged-in SMTP session, running mail transactions on _Wire."""

    def __init__(self, client: aiosmtplib.SMTP, timeout: float) -> None:
        self.client = client
        self.timeout = timeout
        self.pipelining = client.supports_extension("pipelining")
        self.size = client.supports_extension("size")
        loop = asyncio.get_running_loop()
        self.wire = _Wire(loop)
        transport = client.transport
        assert transport is not None
        self.wire.transport = transport  # type: ignore[assignment]
        transport.set_protocol(self.wire)  # type: ignore[attr-defined]

    async def transact(self, e: OutboxEntry, before_data: asyncio.Future[None] | None,
                       committer: "_Committer | None" = None) -> SendResult:
        body = wire_form(e.raw.encode("ascii"))
        mail = b"MAIL FROM:" + smtp_address(e.mail_from)
        if self.size:
            mail += b" SIZE=%d" % (len(body) - 3)
        rcpts = list(e.rcpt_to)
        commands = [mail] + [b"RCPT TO:" + smtp_address(r) for r in rcpts] + [b"DATA"]
        if any(b"\r" in c or b"\n" in c for c in commands):
            raise ValueError(f"an address of {e.key} contains a line break")
        t = self.timeout
        refused: dict[str, aiosmtplib.SMTPRecipientRefused] = {}
        if self.pipelining:
            await self.wire.write(b"\r\n".join(commands) + b"\r\n")
            first, *answers, go = await self.wire.replies_of(len(commands), t)
        else:
            await self.wire.write(commands[0] + b"\r\n")
            first = await self.wire.reply(t)
            if first.code != 250:
                await self._reset()
                raise aiosmtplib.SMTPSenderRefused(first.code, first.message, e.mail_from)
            answers = []
            for c in commands[1:-1]:
                await self.wire.write(c + b"\r\n")
                answers.append(await self.wire.reply(t))
            go = None
        for r, a in zip(rcpts, answers):
            if a.code not in (250, 251):
                refused[r] = aiosmtplib.SMTPRecipientRefused(a.code, a.message, r)
        if first.code != 250 or len(refused) == len(rcpts):
            if go is not None and go.code == 354:  # the server opened DATA anyway: close it empty
                await self.wire.write(b".\r\n")
                await self.wire.reply(t)
            await self._reset()
            if first.code != 250:
                raise aiosmtplib.SMTPSenderRefused(first.code, first.message, e.mail_from)
            raise aiosmtplib.SMTPRecipientsRefused(list(refused.values()))
        if go is None:
            await self.wire.write(b"DATA\r\n")
            go = await self.wire.reply(t)
        if go.code != 354:
            await self._reset()
            raise aiosmtplib.SMTPDataError(go.code, go.message)
        # The message goes out now; only its last line (".", which makes the server take it) waits until
        # this connection's previous mail is recorded: at most one unrecorded, and that wait overlaps the
        # transfer. A failure to record leaves the message unfinished; the connection is closed, and the
        # server drops it.
        if before_data is not None and not before_data.done():
            await self.wire.write(body[:-3])
            if committer is not None:
                committer.flush()
            await before_data
            await self.wire.write(b".\r\n")
        else:
            if before_data is not None:
                before_data.result()  # raises what recording it raised
            await self.wire.write(body)
        done = await self.wire.reply(t)
        if done.code != 250:
            await self._reset()
            raise aiosmtplib.SMTPDataError(done.code, done.message)
        detail = "; ".join(f"{r}: {c.code} {c.message}" for r, c in refused.items())
        later = tuple(r for r, c in refused.items() if not 500 <= c.code < 600)
        return SendResult(key=e.key, status="sent", detail=f"refused: {detail}" if detail else "", retry_rcpts=later)

    async def _reset(self) -> None:
        try:
            await self.wire.write(b"RSET\r\n")
            await self.wire.reply(self.timeout)
        except (aiosmtplib.SMTPException, OSError):
            pass

    async def quit(self) -> None:
        try:
            await self.wire.write(b"QUIT\r\n")
            await self.wire.reply(min(self.timeout, 5.0))
        except (aiosmtplib.SMTPException, OSError):
            pass
        self.close()

    def close(self) -> None:
        transport = self.wire.transport
        if transport is not None and not transport.is_closing():
            transport.close()


class _Committer:
    """Results of every connection, handed to ``record`` in groups (one fsync each).

    A result is written when a connection needs it durable (it is about to end its next mail's DATA)
    or ``LINGER`` seconds after it came, whichever is first: by then the other connections' results
    have usually come too, and one fsync covers them all. Written as soon as they came, each result
    went alone (the connections rarely finish at the same instant): one fsync per mail."""

    LINGER = 0.002

    def __init__(self, record: Callable[[list[SendResult]], None]) -> None:
        self.record = record
        self.loop = asyncio.get_running_loop()
        self.pending: list[tuple[SendResult, asyncio.Future[None]]] = []
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    def add(self, r: SendResult) -> asyncio.Future[None]:
        fut = self.loop.create_future()
        self.pending.append((r, fut))
        if self.timer is None and (self.task is None or self.task.done()):
            self.timer = self.loop.call_later(self.LINGER, self.flush)
        return fut

    def flush(self) -> None:
        """Write what is pending now (a connection waits for it, or it has lingered long enough)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.pending and (self.task is None or self.task.done()):
            self.task = self.loop.create_task(self._flush())

    async def _flush(self) -> None:
        while self.pending:
            group, self.pending = self.pending, []
            try:
                await self.loop.run_in_executor(None, self.record, [r for r, _ in group])
            except BaseException as e:  # the journal cannot be written: nothing more may be sent
                for _, f in group + self.pending:
                    if not f.done():
                        f.set_exception(e)
                raise
            for _, f in group:
                if not f.done():
                    f.set_result(None)


class _ListFeed:
    """``send(entries)``'s feed: the given mail, in order, results collected (and passed on)."""

    def __init__(self, entries: list[OutboxEntry], on_result: Callable[[SendResult], None] | None) -> None:
        self.queue = collections.deque(entries)
        self.on_result = on_result
        self.results: dict[str, SendResult] = {}
        self.closed = True

    def next(self) -> tuple[OutboxEntry | None, float]:
        return (self.queue.popleft(), 0.0) if self.queue else (None, math.inf)

    def record(self, results: list[SendResult]) -> None:
        for r in results:
            self.results[r.key] = r
            if self.on_result is not None:
                self.on_result(r)

    def fail_queued(self, detail: str, status: str = "transient") -> None:
        queued, self.queue = list(self.queue), collections.deque()
        self.record([SendResult(key=e.key, status=status, detail=detail) for e in queued])

    def subscribe(self, wake: Callable[[], None]) -> None:
        pass

    def unsubscribe(self, wake: Callable[[], None]) -> None:
        pass


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
        """Send ``entries`` now; ``on_result`` is called with each result as it is known."""
        if not entries:
            return []
        feed = _ListFeed(entries, on_result)
        self.serve(feed)
        return [feed.results[e.key] for e in entries if e.key in feed.results]

    def serve(self, feed: Any) -> None:
        """Send what ``feed`` hands out until it is closed and empty (the calling thread runs the loop)."""
        asyncio.run(self._serve(feed))

    async def _serve(self, feed: Any) -> None:
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def waker() -> None:
            loop.call_soon_threadsafe(wake.set)

        feed.subscribe(waker)
        committer = _Committer(feed.record)
        try:
            await asyncio.gather(*(self._worker(feed, wake, committer) for _ in range(max(1, self.s.connections))))
            committer.flush()
            if committer.task is not None:
                await committer.task
        finally:
            feed.unsubscribe(waker)

    async def _open(self) -> _Connection:
        prepare = getattr(self.authenticator, "prepare", None)
        if prepare is not None:  # OAuth2: a lapsed login is known before connecting
            await asyncio.to_thread(prepare)
        client = self._client()
        await client.connect()
        if self.authenticator is not None:
            await self.authenticator(client)
        if client.is_ehlo_or_helo_needed:  # connect() greets only when it logs in or starts TLS
            try:
                await client.ehlo()
            except aiosmtplib.SMTPHeloError:
                if not client.is_connected:
                    raise
                await client.helo()
        return _Connection(client, self.s.timeout)

    async def _worker(self, feed: Any, wake: asyncio.Event, committer: _Committer) -> None:
        loop = asyncio.get_running_loop()
        conn: _Connection | None = None
        prev: asyncio.Future[None] | None = None  # the durability of this connection's last result
        last = loop.time()
        try:
            while True:
                wake.clear()  # before asking: a submission after this sets it again (no lost wake-up)
                e, wait = feed.next()
                if e is None:
                    if feed.closed:
                        return
                    if conn is not None and loop.time() - last >= KEEP_OPEN:
                        await conn.quit()
                        conn = None
                    timeout = min(wait, KEEP_OPEN) if conn is not None else wait
                    try:
                        await asyncio.wait_for(wake.wait(), None if math.isinf(timeout) else max(timeout, 0.001))
                    except (asyncio.TimeoutError, TimeoutError):
                        pass
                    continue
                connecting = False
                try:
                    if conn is None:
                        connecting = True
                        conn = await self._open()
                        connecting = False
                    result = await conn.transact(e, prev, committer)
                except Exception as exc:  # classified per mail
                    f = classify_error(exc, connecting=connecting, oauth2=self.authenticator is not None)
                    log.warning("sending %s failed (%s): %s", e.key, f.status, f.detail)
                    result = SendResult(key=e.key, status=f.status, detail=f.detail, retry_rcpts=f.retry_rcpts)
                    if f.status != "permanent" and conn is not None:
                        conn.close()
                        conn = None
                    prev = committer.add(result)
                    if f.session:
                        log.warning("stopping for now: %s; the queued mail stays queued",
                                    "the OAuth2 login lapsed" if f.status == HELD else "the SMTP server cannot take mail")
                        await prev
                        feed.fail_queued(f.detail, f.status)
                    last = loop.time()
                    continue
                log.debug("sent %s", e.key)
                prev = committer.add(result)
                last = loop.time()
        finally:
            if prev is not None:
                await asyncio.shield(prev)
            if conn is not None:
                await conn.quit()

"""Real mail servers on loopback for integration tests.

``MailServers`` runs a private Dovecot (IMAP + LMTP) and an aiosmtpd SMTP server
that hands mail for local domains to Dovecot over LMTP, so a message sent by SMTP
is in the recipient's IMAP INBOX as soon as the SMTP server has answered 250.
Mail for other domains is only recorded and written as ``.eml`` files.

With ``authserv_id`` set, the SMTP server stamps each message as a receiving mail
server would: a ``Received:`` line by ``mx.mailservers.test`` and, above it,
``Authentication-Results: <authserv_id>; auth=pass smtp.auth=<login>`` for an
authenticated submission (``none`` otherwise). Headers the sender wrote, forged
ones included, are kept below, as many real servers keep them.

    with MailServers(tmp_path) as ms:
        ms.add_user("support@example.test")
        ...  # SMTP to ms.host:ms.smtp_port, IMAP to ms.host:ms.imap_port

Needs root (Dovecot drops to the mail uid itself) and the Debian packages
dovecot-imapd and dovecot-lmtpd, and dovecot-sieve for ``MailServers(sieve=True)``
(see scripts/setup.sh).

OAuth2 (optional): ``MailServers(root, oauth2_introspection_url=URL)`` adds SASL XOAUTH2
and OAUTHBEARER to both servers. Dovecot gets a second passdb (``driver = oauth2``) and
the SMTP server its own mechanisms; both ask the RFC 7662 introspection endpoint at URL
(tests/oauth_provider.py runs one) whether a bearer token is active and for which user.
Passwords keep working beside it.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import binascii
import email.utils
import itertools
import json
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from imapclient import IMAPClient

MAIL_UID = 5000  # any uid >= 500 works: the static userdb needs no passwd entry


@dataclass(frozen=True, slots=True)
class Received:
    """One message the SMTP server accepted (one per SMTP transaction)."""

    mail_from: str  # "" for the null sender <>
    rcpt_tos: tuple[str, ...]
    data: bytes  # the message as the client sent it, dot-unstuffed (plus the stamp, with authserv_id)
    auth: str = ""  # "XOAUTH2 user@…" / "OAUTHBEARER user@…" when the client logged in by OAuth2


def _free_port() -> int:
    # Dovecot cannot report the port it bound, so pick one ourselves; the race with
    # other processes is handled by retrying the start-up.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make_traversable(path: Path) -> None:
    # Dovecot's mail processes run as MAIL_UID and fail with "Permission denied" if
    # any parent is closed to others (pytest's tmp dirs are 0700): add o+x only.
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if not mode & 0o001:
            os.chmod(p, (mode & 0o7777) | 0o005)


def _alive_in_group(pgid: int) -> list[int]:
    """PIDs in process group ``pgid`` that are not zombies.

    A stopped daemon can linger as a zombie until PID 1 reaps it; ``kill -0``
    still succeeds on it, so read the state from /proc instead.
    """
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces: fields start after the last ')'.
        fields = stat.rpartition(")")[2].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(entry))
    return pids


class _SMTPController(Controller):
    """aiosmtpd 1.4.6 cannot bind port 0: its start-up check connects to
    ``self.port`` (aio-libs/aiosmtpd#276, #388). Read the bound port first."""

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class _RelayHandler:
    """aiosmtpd handler: local domains go to Dovecot by LMTP, others to files."""

    def __init__(self, servers: MailServers):
        self._servers = servers

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        # Refuse unknown local users at RCPT time, like a real MX would.
        if self._servers._is_local(address) and not self._servers._has_user(address):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content
        if self._servers.authserv_id:
            data = self._servers._stamp(session) + data
        mail_from = "" if envelope.mail_from == "<>" else envelope.mail_from
        local = [r for r in envelope.rcpt_tos if self._servers._is_local(r)]
        loop = asyncio.get_running_loop()
        for rcpt in local:
            try:
                # smtplib blocks; run it off the loop so the SMTP server stays
                # responsive (a Sieve reply may come back by SMTP meanwhile).
                await loop.run_in_executor(
                    None, self._servers.deliver, rcpt, data, mail_from
                )
            except (smtplib.SMTPException, OSError) as exc:
                # Answer only after Dovecot accepted, so nothing is lost silently.
                return f"451 4.3.0 LMTP delivery to {rcpt} failed: {exc}"
        login = getattr(session, "auth_data", None)
        self._servers._record(
            Received(mail_from, tuple(envelope.rcpt_tos), data, auth=getattr(login, "summary", "")),
            capture=len(local) < len(envelope.rcpt_tos),
        )
        return "250 2.0.0 OK delivered"


class _PipeliningRelayHandler(_RelayHandler):
    """The same, offering PIPELINING (RFC 2920) as most real servers do; aiosmtpd reads pipelined
    commands in order anyway."""

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return responses[:-1] + ["250-PIPELINING", responses[-1]]


@dataclass(frozen=True, slots=True)
class _OAuthLogin:
    mechanism: str
    login: bytes  # aiosmtpd reads session.login_data from this attribute

    @property
    def summary(self) -> str:
        return f"{self.mechanism} {self.login.decode()}"


class _OAuthRelayHandler(_RelayHandler):
    """The relay handler plus SASL XOAUTH2 and OAUTHBEARER (aiosmtpd finds ``auth_<MECH>``
    methods on the handler), checked against the introspection endpoint."""

    async def _initial(self, server, args) -> bytes | None:
        if len(args) == 1 or args[1] == "=":
            blob = await server.challenge_auth("")
            return None if not isinstance(blob, bytes) else blob
        try:
            return base64.b64decode(args[1], validate=True)
        except binascii.Error:
            await server.push("501 5.5.2 Can't decode base64")
            return None

    async def _finish(self, server, mechanism: str, user: str, token: str):
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(None, self._servers._token_valid_for, user, token)
        if ok:
            return AuthResult(success=True, auth_data=_OAuthLogin(mechanism, user.encode()))
        # Both mechanisms answer a bad token with a 334 carrying a JSON error (RFC 7628 3.2.2);
        # the client then sends a dummy response and gets the final 535.
        error = json.dumps({"status": "invalid_token", "schemes": "bearer", "scope": "mail"})
        await server.challenge_auth(error)
        return AuthResult(success=False, handled=False)  # handled=False: aiosmtpd answers 535

    async def auth_XOAUTH2(self, server, args):
        blob = await self._initial(server, args)
        if blob is None:
            return AuthResult(success=False, handled=True)
        fields = dict(f.split(b"=", 1) for f in blob.split(b"\x01") if b"=" in f)
        user = fields.get(b"user", b"").decode()
        auth = fields.get(b"auth", b"").decode()
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        return await self._finish(server, "XOAUTH2", user, token)

    async def auth_OAUTHBEARER(self, server, args):
        blob = await self._initial(server, args)
        if blob is None:
            return AuthResult(success=False, handled=True)
        gs2, _, rest = blob.partition(b"\x01")
        user = ""
        for part in gs2.decode().split(","):
            if part.startswith("a="):
                user = part[2:].replace("=2C", ",").replace("=3D", "=")
        fields = dict(f.split(b"=", 1) for f in rest.split(b"\x01") if b"=" in f)
        auth = fields.get(b"auth", b"").decode()
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        return await self._finish(server, "OAUTHBEARER", user, token)


class _PipeliningOAuthRelayHandler(_PipeliningRelayHandler, _OAuthRelayHandler):
    pass


class MailServers:
    """Private Dovecot (IMAP+LMTP) and aiosmtpd (SMTP) on 127.0.0.1, free ports.

    ``root`` is a directory to own (created if missing); default: a new dir under /tmp.
    ``local_domains``: recipients in these domains are delivered into Dovecot.
    ``pipelining``: the SMTP server offers PIPELINING.
    """

    host = "127.0.0.1"
    smtp_hostname = "mx.mailservers.test"  # the SMTP server's name: its greeting and Received lines

    def __init__(self, root: str | os.PathLike | None = None, *,
                 local_domains: tuple[str, ...] = ("example.test",),
                 oauth2_introspection_url: str | None = None, sieve: bool = False, pipelining: bool = False,
                 authserv_id: str | None = None):
        self.root = Path(root or tempfile.mkdtemp(prefix="mailservers-", dir="/tmp"))
        # sieve: Dovecot's LMTP runs users' Sieve scripts (Pigeonhole, Debian dovecot-sieve), and what
        # they send (vacation replies) goes out by SMTP through our own server (set_vacation).
        self.sieve = sieve
        self.local_domains = tuple(d.lower() for d in local_domains)
        self.oauth2_introspection_url = oauth2_introspection_url
        self.pipelining = pipelining
        self.authserv_id = authserv_id  # None: no trace headers added (the default)
        self._stamped = itertools.count(1)
        self.capture_dir = self.root / "outbound"
        self.imap_port = self.lmtp_port = self.smtp_port = 0
        self._conf = self.root / "dovecot.conf"
        self._users: dict[str, str] = {}
        self._received: list[Received] = []
        self._captured = itertools.count(1)
        self._lock = threading.Condition()
        self._dovecot: subprocess.Popen | None = None
        self._smtp: _SMTPController | None = None

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> MailServers:
        # `with MailServers(...).start() as ms:` works too.
        return self if self._dovecot is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> MailServers:
        if self._dovecot is not None or self._smtp is not None:
            # A second start would orphan the running Dovecot.
            raise RuntimeError("MailServers already started")
        for sub in ("run", "state", "log", "mail", "outbound", "users"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        _make_traversable(self.root)
        os.chown(self.root / "mail", MAIL_UID, MAIL_UID)
        atexit.register(self.stop)  # safety net if a test run forgets stop()
        try:
            if self.sieve:
                self._start_smtp()  # Dovecot's config names the SMTP port Sieve submits to
            self._start_dovecot()
            if not self.sieve:
                self._start_smtp()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_smtp(self) -> None:
        oauth = bool(self.oauth2_introspection_url)
        handler = {(False, False): _RelayHandler, (True, False): _PipeliningRelayHandler,
                   (False, True): _OAuthRelayHandler,
                   (True, True): _PipeliningOAuthRelayHandler}[(self.pipelining, oauth)](self)
        self._smtp = _SMTPController(
            handler, hostname=self.host, port=0,
            # A fixed name: the default calls socket.getfqdn(), slow without DNS.
            server_hostname=self.smtp_hostname,
            authenticator=self._authenticate, auth_require_tls=False,
        )
        self._smtp.start()
        self.smtp_port = self._smtp.port

    def stop(self) -> None:
        """Stop both servers and wait until no Dovecot process is left. Idempotent."""
        atexit.unregister(self.stop)
        if self._smtp is not None:
            self._smtp.stop(no_assert=True)
            self._smtp = None
        if self._dovecot is not None:
            self._stop_dovecot(self._dovecot)
            self._dovecot = None

    def _start_dovecot(self, attempts: int = 3) -> None:
        for attempt in range(attempts):
            self.imap_port, self.lmtp_port = _free_port(), _free_port()
            self._conf.write_text(self._dovecot_conf())
            out = open(self.root / "log" / "dovecot.out", "ab")
            cmd = ["dovecot", "-F", "-c", str(self._conf)]
            if shutil.which("setpriv"):
                # If the test process dies without atexit (SIGKILL, CI timeout),
                # the kernel sends Dovecot SIGTERM. Bound to the starting thread.
                cmd = ["setpriv", "--pdeathsig", "TERM", *cmd]
            # -F keeps the master as our child: we reap it ourselves, and its pid is
            # the process group of all its children. stdin/stdout/stderr go to files,
            # never pipes: Dovecot keeps them open for its whole life.
            with out:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=out, start_new_session=True)
            self._dovecot = proc
            if self._wait_ports(proc, (self.imap_port, self.lmtp_port), timeout=10):
                return
            self._stop_dovecot(proc)
            self._dovecot = None
            log = self._dovecot_log()
            if "in use" not in log or attempt == attempts - 1:
                raise RuntimeError(f"Dovecot did not start; its log:\n{log}")

    def _wait_ports(self, proc, ports, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        pending = list(ports)
        while pending and time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection((self.host, pending[0]), timeout=1).close()
                pending.pop(0)
            except OSError:
                time.sleep(0.02)
        return not pending

    def _stop_dovecot(self, proc: subprocess.Popen) -> None:
        # SIGTERM to the whole group stops Dovecot in a few ms; to the master alone
        # it takes ~1.1 s (it stops its children one by one). Right after start-up
        # the master sometimes hangs ~6 s on SIGTERM, hence SIGKILL after a grace
        # period: Maildir and Dovecot's indexes are crash-safe.
        pgid = proc.pid
        for sig, wait in ((signal.SIGTERM, 0.5), (signal.SIGKILL, 10)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + wait
            while (proc.poll() is None or _alive_in_group(pgid)) \
                    and time.monotonic() < deadline:
                time.sleep(0.01)
            if proc.poll() is not None and not _alive_in_group(pgid):
                break
        else:
            raise RuntimeError(f"Dovecot process group {pgid} survived SIGKILL")
        # A killed master leaves its pid file; a later start could take a reused
        # pid for a running Dovecot.
        (self.root / "run" / "master.pid").unlink(missing_ok=True)

    def _dovecot_log(self) -> str:
        parts = []
        for name in ("dovecot.out", "dovecot.log"):
            path = self.root / "log" / name
            if path.exists():
                parts.append(path.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def _oauth2_conf(self) -> tuple[str, str, str]:
        """(auth_mechanisms, the passwd-file passdb's extra line, the oauth2 passdb block)."""
        if not self.oauth2_introspection_url:
            return "plain login", "", ""
        args = self.root / "dovecot-oauth2.conf.ext"
        args.write_text(f"""\
introspection_mode = post
introspection_url = {self.oauth2_introspection_url}
username_attribute = username
active_attribute = active
active_value = true
""")
        # Without this line a bearer token would also be tried as a password; "none" keeps
        # the userdb lookups (LMTP's) that carry no mechanism.
        passwd_mechanisms = "  mechanisms = plain login none\n"
        passdb = f"""passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {args}
}}
"""
        return "plain login xoauth2 oauthbearer", passwd_mechanisms, passdb

    def _dovecot_conf(self) -> str:
        r = self.root
        mechanisms, passwd_mechanisms, oauth2_passdb = self._oauth2_conf()
        return f"""\
# Private Dovecot for tests, written by tests/mailservers.py.
base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/log/dovecot.log
protocols = imap lmtp
listen = {self.host}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
# Defaults that slow tests: 2 s per failed login, 10 connections per user and IP.
auth_failure_delay = 0
mail_max_userip_connections = 100
# Each imap process shows its user and current command ("dovecot/imap [a@x 127.0.0.1 IDLE]"),
# so a test can see what a client is doing (imap_commands()).
verbose_proctitle = yes
# Dovecot says "* OK Still here" to an IDLE client every 2 minutes (at a time aligned across
# connections, so anywhere in that window): a wake-up no test has asked for. Rarer here.
imap_idle_notify_interval = 10 mins
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {r}/users/%u
{passwd_mechanisms}}}
{oauth2_passdb}userdb {{
  driver = static
  args = uid={MAIL_UID} gid={MAIL_UID} home={r}/mail/%d/%n
}}
service imap-login {{
  inet_listener imap {{
    address = {self.host}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = {self.host}
    port = {self.lmtp_port}
  }}
}}
{self._sieve_conf() if self.sieve else ""}
# After a few failed logins from one IP, every later login (correct ones too)
# would wait 2, 4, 8, 15 s. Nobody can connect to the penalty socket: no penalty.
# A failed login still takes ~0.5 s (Dovecot's auth checks failures twice a second).
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""

    def _sieve_conf(self) -> str:
        return f"""\
# Sieve (Pigeonhole) on delivery: each user's ~/.dovecot.sieve; what it sends goes to our SMTP server.
protocol lmtp {{
  mail_plugins = $mail_plugins sieve
  postmaster_address = postmaster@mailservers.test
}}
submission_host = {self.host}:{self.smtp_port}
hostname = mx.mailservers.test
plugin {{
  sieve = file:~/.dovecot.sieve
}}
"""

    # -- users -------------------------------------------------------------

    def add_user(self, address: str, password: str = "pw") -> None:
        """Create a mailbox; its IMAP (and SMTP AUTH) login is the full address.

        Each user gets its own passwd-file: Dovecot re-stats a passwd-file at most
        once per second, so a user appended to a shared file right after another
        login stays unknown for up to a second. A new file is read at once.
        (Changing an existing user's password has that one-second lag.)
        """
        address = address.lower()  # Dovecot lowercases logins (auth_username_format)
        with self._lock:
            self._users[address] = password
        # Renamed into place so Dovecot never reads a half-written file.
        path = self.root / "users" / address
        tmp = path.with_name(f".{address}.tmp")
        tmp.write_text(f"{address}:{{PLAIN}}{password}\n")
        os.replace(tmp, path)

    def home(self, address: str) -> Path:
        local, _, domain = address.lower().rpartition("@")
        return self.root / "mail" / domain / local

    def set_vacation(self, address: str, reason: str = "I am out of the office.", *,
                     subject: str = "Out of office", days: int = 1) -> None:
        """Turn on a Sieve vacation responder for ``address`` (needs ``sieve=True``).

        Pigeonhole answers each sender at most once per ``days``, never answers
        automatic mail, lists or null senders (RFC 3834, RFC 5230), and only mail
        that names ``address`` in To or Cc.
        """
        if not self.sieve:
            raise RuntimeError("MailServers(sieve=True) is needed for a vacation responder")

        def quoted(text: str) -> str:
            return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

        home = self.home(address)
        home.mkdir(parents=True, exist_ok=True)
        for p in [home, *home.parents]:
            if p == self.root / "mail":
                break
            os.chown(p, MAIL_UID, MAIL_UID)
        script = home / ".dovecot.sieve"
        script.write_text(f'require ["vacation"];\nvacation :days {days} :subject {quoted(subject)} '
                          f"{quoted(reason)};\n")
        os.chown(script, MAIL_UID, MAIL_UID)
    def _token_valid_for(self, user: str, token: str) -> bool:
        """Ask the introspection endpoint, as Dovecot does: active, and issued to ``user``."""
        body = urllib.parse.urlencode({"token": token}).encode()
        try:
            with urllib.request.urlopen(self.oauth2_introspection_url, body, timeout=10) as resp:  # type: ignore[arg-type]
                info = json.load(resp)
        except (OSError, ValueError):
            return False
        return info.get("active") is True and str(info.get("username", "")).lower() == user.lower()

    def _has_user(self, address: str) -> bool:
        local, _, domain = address.lower().rpartition("@")
        return f"{local.split('+')[0]}@{domain}" in self._users  # Dovecot strips +detail

    def _is_local(self, address: str) -> bool:
        # Subdomains count too, so tests can give each partner shop a domain of its own.
        domain = address.rpartition("@")[2].lower()
        return any(domain == d or domain.endswith("." + d) for d in self.local_domains)

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        # SMTP AUTH (optional for clients) accepts the same credentials as IMAP.
        login = auth_data.login.decode()
        ok = self._users.get(login.lower()) == auth_data.password.decode()
        # auth_data kept on success: session.auth_data.login names the user for _stamp.
        return AuthResult(success=ok, auth_data=auth_data if ok else None)

    def _stamp(self, session) -> bytes:
        """Trace headers a receiving server prepends: Authentication-Results above its Received line
        (as rspamd or a well-behaved milter writes them)."""
        login = getattr(session.auth_data, "login", None) if session.authenticated else None
        login = login.decode() if isinstance(login, bytes) else (login or "")
        result = f"auth=pass smtp.auth={login}" if login else "none"
        ip = session.peer[0] if session.peer else "127.0.0.1"
        proto = ("ESMTP" if session.extended_smtp else "SMTP") + ("A" if login else "")
        date = email.utils.format_datetime(email.utils.localtime())
        return (f"Authentication-Results: {self.authserv_id};\r\n\t{result}\r\n"
                f"Received: from {session.host_name or 'unknown'} (localhost [{ip}])\r\n"
                f"\tby {self.smtp_hostname} with {proto} id {next(self._stamped):06d};\r\n"
                f"\t{date}\r\n").encode()

    # -- what the SMTP server received --------------------------------------

    @property
    def received(self) -> list[Received]:
        """A copy of every accepted SMTP transaction, oldest first (clear_received
        empties the record)."""
        with self._lock:
            return list(self._received)

    def clear_received(self) -> None:
        with self._lock:
            self._received.clear()

    def wait_received(self, count: int, timeout: float = 5) -> list[Received]:
        """Wait until at least ``count`` transactions were accepted."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._received) >= count, timeout):
                raise TimeoutError(f"SMTP received {len(self._received)}, wanted {count}")
            return list(self._received)

    def _record(self, item: Received, capture: bool) -> None:
        with self._lock:
            self._received.append(item)
            if capture:
                path = self.capture_dir / f"{next(self._captured):05d}.eml"
                path.write_bytes(item.data)
            self._lock.notify_all()

    # -- helpers for tests ---------------------------------------------------

    def deliver(self, address: str, raw: bytes,
                mail_from: str = "seed@mailservers.test") -> None:
        """Put ``raw`` into ``address``'s INBOX by LMTP (bypasses SMTP and .received).

        One recipient per LMTP transaction: LMTP answers DATA once per recipient
        and smtplib reads only one reply. A fresh connection each time, because
        Dovecot drops idle LMTP clients after about 5 minutes.
        """
        with smtplib.LMTP(self.host, self.lmtp_port, timeout=30) as lmtp:
            lmtp.sendmail(mail_from, [address], raw)

    def imap(self, address: str, password: str | None = None) -> IMAPClient:
        """A logged-in IMAPClient (plain, no TLS); use it as a context manager.

        Default password: the one given to add_user.
        """
        client = IMAPClient(self.host, port=self.imap_port, ssl=False, timeout=30)
        try:
            client.login(address, password or self._users[address.lower()])
        except BaseException:
            client.shutdown()
            raise
        return client

    def fetch_all(self, address: str, folder: str = "INBOX") -> list[bytes]:
        """Raw bytes of every message in ``folder``, in UID order; flags untouched."""
        with self.imap(address) as client:
            client.select_folder(folder, readonly=True)
            uids = sorted(client.search("ALL"))
            fetched = client.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
            return [fetched[uid][b"BODY[]"] for uid in uids]

    def folders(self, address: str) -> list[str]:
        """Names of the user's folders, sorted ("/" separates levels)."""
        with self.imap(address) as client:
            return sorted(name for _flags, _sep, name in client.list_folders())

    def imap_commands(self, address: str) -> list[str]:
        """What each IMAP session of ``address`` is doing right now: "" between commands, else the
        command ("IDLE", "UID FETCH"...). Read from the titles of Dovecot's imap processes
        (verbose_proctitle); a session that logged out has no process left."""
        prefix = f"dovecot/imap [{address.lower()} "
        pgid = self._dovecot.pid if self._dovecot is not None else None
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                title = Path("/proc", entry, "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
                stat = Path("/proc", entry, "stat").read_text()
            except OSError:
                continue
            fields = stat.rpartition(")")[2].split()
            if fields[0] == "Z" or int(fields[2]) != pgid or not title.startswith(prefix):
                continue
            ip_and_command = title[len(prefix):].rstrip("]").split(" ", 1)
            out.append(ip_and_command[1] if len(ip_and_command) > 1 else "")
        return out

    def wait_for(self, address: str, count: int, folder: str = "INBOX",
                 timeout: float = 5) -> list[bytes]:
        """Wait until ``folder`` holds at least ``count`` messages; return them all."""
        deadline = time.monotonic() + timeout
        with self.imap(address) as client:
            while True:
                try:
                    n = client.folder_status(folder, [b"MESSAGES"])[b"MESSAGES"]
                except IMAPClient.Error:
                    n = 0  # the folder does not exist yet
                if n >= count:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{address} {folder}: {n} messages, wanted {count}")
                time.sleep(0.05)
        return self.fetch_all(address, folder)

"""The one-time OAuth2 logins a person runs (`auth login`), ending in a saved token file.

* Device authorization (RFC 8628): the person opens a URL on any device and types a code;
  nothing listens on this machine, so it suits servers without a browser (Microsoft).
* Loopback redirect with PKCE (RFC 8252, RFC 7636): the browser is sent back to
  http://127.0.0.1:PORT/ where this process listens for the code (Google, which allows no
  device login for Gmail). On a machine without a browser: forward the port
  (``ssh -L PORT:127.0.0.1:PORT host``) or paste the address the browser ended on.
* A refresh token obtained elsewhere (an admin tool), checked by using it once.
* Client credentials (app-only, Microsoft): no person involved; one token request checks it.

Authlib (requests) builds and sends every request; only the device-authorization request
itself, a plain form POST that Authlib's client has no call for, is sent by hand.

``LoginDesk`` is what `auth login` and `auth status` (cli/auth.py) are handed: it runs the
configured flow, then logs in to the mail servers with the new token, so that a login as the
wrong account (easy in a browser already logged in as oneself) is caught at once and the login
that was there before is put back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs, urlsplit

import aiosmtplib
import requests
from authlib.common.errors import AuthlibBaseError
from authlib.common.security import generate_token
from imapclient.exceptions import LoginError

from config.servers import CLIENT_CREDENTIALS, DEVICE, LOOPBACK, ImapSettings, SmtpSettings
from service.ports import LoginState
from workflows.errors import ConfigError, LoginRequired, Transient

from .imap import ImapSource
from .oauth2 import TokenRecord, TokenSource
from .oauth2_sasl import imap_login, smtp_login
from .smtp import SmtpSender

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
PAGE = (b"<!doctype html><title>partnerdesk</title><p>partnerdesk received the login. "
        b"You can close this tab and go back to the terminal.</p>")


@dataclass(frozen=True, slots=True)
class DevicePrompt:
    verification_uri: str
    user_code: str
    expires_in: int
    message: str  # the provider's own instructions, when it sends them


def login(tokens: TokenSource, *, show: Callable[[str], None], **kwargs: Any) -> TokenRecord:
    """The configured flow. ``show`` prints instructions for the person."""
    flow = tokens.s.flow
    if flow == DEVICE:
        return device_login(tokens, show=lambda p: show(p.message or f"Open {p.verification_uri} and enter the "
                                                                      f"code {p.user_code}"), **kwargs)
    if flow == LOOPBACK:
        return loopback_login(tokens, show=lambda url: show(f"Open this address in a browser and log in as "
                                                            f"{tokens.account}:\n{url}"), **kwargs)
    if flow == CLIENT_CREDENTIALS:
        tokens.renew()  # app-only: proves the secret and tenant work; nothing to store by hand
        rec = tokens.file.read()
        assert rec is not None
        return rec
    raise ConfigError(f"{tokens.s.source}: [oauth2] flow: unknown flow {flow!r}")


def _require_refresh_token(tokens: TokenSource, resp: Mapping[str, Any]) -> None:
    if not resp.get("refresh_token"):
        hint = "offline_access" if tokens.s.provider == "microsoft" else "the scope that grants a refresh token"
        raise ConfigError(f"{tokens.s.source}: [oauth2] scopes: {tokens.s.provider} returned no refresh token, so the "
                          f"login would stop working within the hour; include {hint} in scopes")


# -- device authorization (RFC 8628) ------------------------------------------------------------

def device_login(tokens: TokenSource, *, show: Callable[[DevicePrompt], None],
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> TokenRecord:
    s = tokens.s
    if not s.device_url:
        raise ConfigError(f"{s.source}: [oauth2] device_url: needed for flow = \"device\"")
    data = {"client_id": s.client_id, "scope": " ".join(s.scopes)}
    if tokens.client_secret:
        data["client_secret"] = tokens.client_secret
    try:
        r = requests.post(s.device_url, data=data, headers={"Accept": "application/json"}, timeout=tokens.timeout)
    except requests.RequestException as e:
        raise Transient(f"cannot reach the {s.provider} device login endpoint: {type(e).__name__}; try again") from None
    try:
        answer = r.json()
    except ValueError:
        answer = {}
    if r.status_code != 200 or "device_code" not in answer:
        error = answer.get("error_description") or answer.get("error") or f"HTTP {r.status_code}"
        if r.status_code >= 500:
            raise Transient(f"the {s.provider} device login endpoint failed ({error}); try again")
        raise ConfigError(f"{s.source}: [oauth2]: {s.provider} refused to start a device login ({error}); check "
                          f"client_id, scopes, and that the app allows public client flows")
    prompt = DevicePrompt(verification_uri=str(answer.get("verification_uri") or answer.get("verification_url")),
                          user_code=str(answer["user_code"]), expires_in=int(answer.get("expires_in") or 900),
                          message=str(answer.get("message") or ""))
    show(prompt)
    interval = float(answer.get("interval") if answer.get("interval") is not None else 5)  # RFC 8628 3.2: 5 s
    deadline = monotonic() + prompt.expires_in
    while True:
        sleep(interval)
        try:
            resp = tokens.call_endpoint(
                "the device login",
                lambda c: c.fetch_token(s.token_url, grant_type=DEVICE_GRANT, device_code=answer["device_code"]),
                expect=("authorization_pending", "slow_down", "access_denied", "expired_token"))
        except AuthlibBaseError as e:
            if e.error == "authorization_pending" and monotonic() < deadline:
                continue
            if e.error == "slow_down" and monotonic() < deadline:
                interval += 5  # RFC 8628 3.5
                continue
            if e.error == "access_denied":
                raise tokens.login_required("the login was declined at the provider") from None
            raise tokens.login_required("nobody approved the code in time") from None
        _require_refresh_token(tokens, resp)
        return tokens.store_login(resp)


# -- loopback redirect with PKCE (RFC 8252 7.3, RFC 7636) --------------------------------------

class _Catcher(BaseHTTPRequestHandler):
    caught: list[str]

    def log_message(self, *args: Any) -> None:  # the code is in the request line
        pass

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        if "code" not in query and "error" not in query:
            self.send_response(404)  # a browser asking for /favicon.ico
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.caught.append(f"http://{self.headers.get('Host', '127.0.0.1')}{self.path}")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)


def loopback_login(tokens: TokenSource, *, show: Callable[[str], None], port: int = 0, timeout: float = 600,
                   pasted: Callable[[], str] | None = None,
                   monotonic: Callable[[], float] = time.monotonic) -> TokenRecord:
    """``port`` 0: any free port (RFC 8252 allows any port on a loopback redirect); a fixed one for
    an SSH tunnel. ``pasted``: read the address the browser ended on instead of listening."""
    s = tokens.s
    if not s.authorize_url:
        raise ConfigError(f"{s.source}: [oauth2] authorize_url: needed for flow = \"loopback\"")

    class Catcher(_Catcher):
        caught: list[str] = []

    server = HTTPServer(("127.0.0.1", port), Catcher)
    try:
        server.timeout = 1.0
        redirect_uri = f"http://127.0.0.1:{server.server_port}/"
        verifier = generate_token(64)  # 43..128 characters of the unreserved set (RFC 7636 4.1)
        with tokens.session() as session:
            session.redirect_uri = redirect_uri
            session.code_challenge_method = "S256"
            url, state = session.create_authorization_url(s.authorize_url, code_verifier=verifier,
                                                          **dict(s.authorize_params))
            show(url)
            if pasted is not None:
                back = pasted().strip()
            else:
                deadline = monotonic() + timeout
                while not Catcher.caught and monotonic() < deadline:
                    server.handle_request()
                if not Catcher.caught:
                    raise tokens.login_required("nobody completed the login in the browser in time")
                back = Catcher.caught[0]
    finally:
        server.server_close()
    query = {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}
    if query.get("state") != state:
        # Not the answer to our request (an old tab, or someone else's redirect): never use its code.
        raise tokens.login_required("the browser came back with an answer to another login request")
    if "error" in query:
        raise tokens.login_required(f"the login was declined at the provider ({query['error']})")
    resp = tokens.call_endpoint(
        "the authorization code",
        lambda c: _exchange(c, s.token_url, query["code"], redirect_uri, verifier))
    _require_refresh_token(tokens, resp)
    return tokens.store_login(resp)


def _exchange(session: Any, token_url: str, code: str, redirect_uri: str, verifier: str) -> Mapping[str, Any]:
    session.redirect_uri = redirect_uri
    return session.fetch_token(token_url, grant_type="authorization_code", code=code, code_verifier=verifier)


# -- a refresh token from elsewhere --------------------------------------------------------------

def store_refresh_token(tokens: TokenSource, refresh_token: str) -> TokenRecord:
    """Use the token once before keeping it: a typo must not replace a working login, and a
    rotating provider answers with the refresh token to keep."""
    refresh_token = refresh_token.strip()
    if not refresh_token or any(c.isspace() for c in refresh_token):
        raise LoginRequired("the refresh token given on standard input is empty or has spaces in it",
                            provider=tokens.s.provider, account=tokens.account, command=tokens.s.login_command)
    resp = dict(tokens.call_endpoint(
        "the refresh token", lambda c: c.refresh_token(tokens.s.token_url, refresh_token=refresh_token)))
    resp.setdefault("refresh_token", refresh_token)
    return tokens.store_login(resp)


# -- what `auth login` / `auth status` are handed -------------------------------------------------

class LoginDesk:
    def __init__(self, tokens: TokenSource, *, imap: ImapSettings | None = None,
                 smtp: SmtpSettings | None = None) -> None:
        self.tokens = tokens
        self.imap = imap  # the servers that log in by OAuth2, checked after a login
        self.smtp = smtp

    def state(self) -> LoginState | None:
        return self.tokens.state()

    def login(self, *, show: Callable[[str], None], port: int = 0,
              pasted: Callable[[], str] | None = None) -> list[str]:
        """The configured flow, then the check; returns one line per server checked."""
        extra: dict[str, Any] = {}
        if self.tokens.s.flow == LOOPBACK:
            extra = {"port": port, "pasted": pasted}
        before = self.tokens.file.snapshot()
        login(self.tokens, show=show, **extra)
        return self._checked(before)

    def store_refresh_token(self, refresh_token: str) -> list[str]:
        before = self.tokens.file.snapshot()
        store_refresh_token(self.tokens, refresh_token)
        return self._checked(before)

    def _checked(self, before: bytes | None) -> list[str]:
        """Log in to each OAuth2 server with the new token. A refusal puts the old login back."""
        lines = []
        for name, check in (("IMAP", self._imap), ("SMTP", self._smtp)):
            server = self.imap if name == "IMAP" else self.smtp
            if server is None:
                continue
            where = f"{name} {server.host}:{server.port}"
            try:
                lines.append(f"{where}: logged in as {self.tokens.account} ({check()})")
            except (LoginError, aiosmtplib.SMTPAuthenticationError, LoginRequired) as e:
                self.tokens.file.restore(before)
                kept = "the login that was there before is back" if before else "nothing was kept"
                raise self.tokens.login_required(
                    f"{where} refused the new login ({e}); {kept}. Log in as {self.tokens.account} itself (a "
                    f"browser may still be logged in as someone else), and check that {name} is enabled for that "
                    f"mailbox") from None
            except (Transient, OSError, aiosmtplib.SMTPException, ConfigError) as e:
                lines.append(f"{where}: not checked ({e}); the login is kept")
        return lines

    def _imap(self) -> str:
        used: list[str] = []
        assert self.imap is not None
        src = ImapSource(self.imap, None,
                         authenticator=lambda c: used.append(imap_login(c, self.tokens.account, self.tokens,
                                                                        self.tokens.s.mechanism)))
        try:
            src.connect()
        except ConfigError as e:
            if isinstance(e.__cause__, LoginError):
                raise e.__cause__ from None
            raise
        finally:
            src.close()
        return used[0] if used else "?"

    def _smtp(self) -> str:
        used: list[str] = []
        assert self.smtp is not None

        async def auth(client: aiosmtplib.SMTP) -> None:
            used.append(await smtp_login(client, self.tokens.account, self.tokens, self.tokens.s.mechanism))

        SmtpSender(self.smtp, None, authenticator=auth).check_login()
        return used[0] if used else "?"

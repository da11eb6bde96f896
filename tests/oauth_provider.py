"""A small OAuth2 authorization server on 127.0.0.1 for the tests: the provider's side.

No real provider is reachable from the tests, so this one plays Microsoft, Google or
Keycloak: a token endpoint (RFC 6749: refresh_token with rotation, authorization_code with
PKCE (RFC 7636), the device grant (RFC 8628), client_credentials), a device-authorization
endpoint, an authorization endpoint that "logs in" a chosen user and redirects to the
client's loopback address (RFC 8252), and an RFC 7662 introspection endpoint that Dovecot's
oauth2 passdb and the test SMTP server ask whether a bearer token is good.

Rotation is strict, as OAuth 2.1 recommends: a refresh token works once; using a spent one
again revokes its whole login ("reuse detection"), so a client that loses a rotation is
caught. The provider's clock can be set apart from ours (``clock_offset``).

    with OAuthProvider() as op:
        op.add_client("desk")
        tokens = op.issue("support@example.test", "desk")   # what an admin tool would hand over
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class OAuthFailure(Exception):
    def __init__(self, error: str, description: str = "", status: int = 400) -> None:
        super().__init__(error)
        self.error, self.description, self.status = error, description, status


@dataclass
class _Refresh:
    username: str
    client_id: str
    scope: str
    family: int
    expires: float | None  # provider clock
    spent: bool = False


@dataclass
class _Access:
    username: str
    client_id: str
    scope: str
    family: int | None
    exp: float  # provider clock


@dataclass
class _Device:
    client_id: str
    scope: str
    user_code: str
    expires: float
    approved_by: str | None = None
    denied: bool = False


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str | None
    method: str | None
    username: str
    scope: str


@dataclass
class Client:
    client_id: str
    secret: str | None = None
    app_user: str | None = None  # whose mailbox a client_credentials token opens


@dataclass
class Stats:
    grants: list[str] = field(default_factory=list)  # grant_type of every successful token response
    token_requests: int = 0  # every request to the token endpoint, refused ones too
    reuse_detected: int = 0
    introspections: int = 0


class OAuthProvider:
    host = "127.0.0.1"

    def __init__(self, **behaviour: Any) -> None:
        self.reset(**behaviour)
        self.stats = Stats()
        self._clients: dict[str, Client] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._access: dict[str, _Access] = {}
        self._devices: dict[str, _Device] = {}
        self._codes: dict[str, _Code] = {}
        self._revoked_families: set[int] = set()
        self._families = itertools.count(1)
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def reset(self, *, access_lifetime: int = 3600, rotate: bool = True, clock_offset: float = 0.0,
              send_expires_in: bool = True, send_expires_at: bool = False, refresh_token_lifetime: int | None = None,
              refresh_delay: float = 0.0, device_interval: int = 0, offline_access: bool = True) -> None:
        """Back to the default behaviour (or the one given); clients, users and tokens stay."""
        self.access_lifetime = access_lifetime
        self.rotate = rotate
        self.clock_offset = clock_offset  # seconds the provider's clock is ahead of ours
        self.send_expires_in = send_expires_in
        self.send_expires_at = send_expires_at  # absolute, on the provider's clock (some servers do)
        self.refresh_token_lifetime = refresh_token_lifetime  # sent as refresh_token_expires_in
        self.refresh_delay = refresh_delay  # widens the window in which two refreshes overlap
        self.device_interval = device_interval
        self.offline_access = offline_access  # False: logins get no refresh token (scope not granted)
        self.slow_down_polls = 0  # the next N device-grant polls are told to slow down
        self.authorizing_user: str | None = None  # who "logs in" at the authorization endpoint
        self.deny_authorization = False
        self.last_authorize: dict[str, str] = {}
        self._failures: list[tuple[int, str]] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> OAuthProvider:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> OAuthProvider:
        provider = self

        class Handler(_Handler):
            op = provider

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="oauth-provider", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    token_url = property(lambda self: self.url + "/token")
    device_url = property(lambda self: self.url + "/device")
    authorize_url = property(lambda self: self.url + "/authorize")
    introspect_url = property(lambda self: self.url + "/introspect")

    def now(self) -> float:
        return time.time() + self.clock_offset

    # -- what a test does as the provider's admin or as the person ---------------------------
    def add_client(self, client_id: str, secret: str | None = None, app_user: str | None = None) -> None:
        with self._lock:
            self._clients[client_id] = Client(client_id, secret, app_user)

    def issue(self, username: str, client_id: str, scope: str = "mail") -> dict[str, Any]:
        """A fresh login's token response, as an admin tool would obtain it."""
        with self._lock:
            return self._tokens(username, client_id, scope, next(self._families), with_refresh=True)

    def approve(self, user_code: str, username: str) -> None:
        with self._lock:
            for d in self._devices.values():
                if d.user_code == user_code:
                    d.approved_by = username
                    return
        raise KeyError(user_code)

    def deny(self, user_code: str) -> None:
        with self._lock:
            for d in self._devices.values():
                if d.user_code == user_code:
                    d.denied = True
                    return
        raise KeyError(user_code)

    def revoke_user(self, username: str) -> None:
        """The person withdrew consent, or an admin revoked their sessions: every token stops."""
        with self._lock:
            for r in self._refresh.values():
                if r.username == username:
                    self._revoked_families.add(r.family)
            for a in self._access.values():
                if a.username == username:
                    a.exp = 0

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is now expired (as if an hour had passed at the server)."""
        with self._lock:
            for a in self._access.values():
                a.exp = 0

    def fail_next(self, status: int = 503, body: str = "<html>Service Unavailable</html>", count: int = 1) -> None:
        with self._lock:
            self._failures.extend([(status, body)] * count)

    def live_refresh_tokens(self, username: str) -> list[str]:
        with self._lock:
            return [t for t, r in self._refresh.items()
                    if r.username == username and not r.spent and r.family not in self._revoked_families]

    def is_active(self, token: str) -> bool:
        return bool(self.introspect(token).get("active"))

    # -- the endpoints -----------------------------------------------------------------------
    def introspect(self, token: str) -> dict[str, Any]:
        with self._lock:
            self.stats.introspections += 1
            a = self._access.get(token)
            if a is None or self.now() >= a.exp or (a.family is not None and a.family in self._revoked_families):
                return {"active": False}
            return {"active": True, "username": a.username, "client_id": a.client_id, "scope": a.scope,
                    "exp": int(a.exp), "token_type": "Bearer"}

    def token(self, form: dict[str, str], basic: tuple[str, str] | None) -> dict[str, Any]:
        with self._lock:
            self.stats.token_requests += 1
            if self._failures:
                status, body = self._failures.pop(0)
                raise _Raw(status, body)
        client = self._client(form, basic)
        grant = form.get("grant_type", "")
        if grant == "refresh_token":
            if self.refresh_delay:
                time.sleep(self.refresh_delay)  # outside the lock: two requests really overlap
            resp = self._grant_refresh(form, client)
        elif grant == "authorization_code":
            resp = self._grant_code(form, client)
        elif grant == DEVICE_GRANT:
            resp = self._grant_device(form, client)
        elif grant == "client_credentials":
            if client.secret is None or client.app_user is None:
                raise OAuthFailure("unauthorized_client", "this client may not use client_credentials")
            with self._lock:
                resp = self._tokens(client.app_user, client.client_id, form.get("scope", ""), None,
                                    with_refresh=False)
        else:
            raise OAuthFailure("unsupported_grant_type", grant)
        with self._lock:
            self.stats.grants.append(grant)
        return resp

    def device_authorization(self, form: dict[str, str], basic: tuple[str, str] | None) -> dict[str, Any]:
        client = self._client(form, basic)
        with self._lock:
            device_code = secrets.token_urlsafe(16)
            user_code = "-".join(secrets.token_hex(2).upper() for _ in range(2))
            self._devices[device_code] = _Device(client.client_id, form.get("scope", ""), user_code,
                                                 expires=self.now() + 600)
        return {"device_code": device_code, "user_code": user_code, "verification_uri": self.url + "/device/verify",
                "expires_in": 600, "interval": self.device_interval,
                "message": f"To sign in, open {self.url}/device/verify and enter the code {user_code}."}

    def authorize(self, query: dict[str, str]) -> str:
        """The Location to redirect the browser to."""
        with self._lock:
            self.last_authorize = dict(query)
            redirect = query.get("redirect_uri", "")
            parts = urlsplit(redirect)
            if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "::1", "localhost"):
                raise OAuthFailure("invalid_request", "redirect_uri must be a loopback address")
            if query.get("client_id") not in self._clients or query.get("response_type") != "code":
                raise OAuthFailure("invalid_request", "unknown client or response_type")
            back = {"state": query["state"]} if "state" in query else {}
            if self.deny_authorization:
                return f"{redirect}?{urlencode({'error': 'access_denied', **back})}"
            if self.authorizing_user is None:
                raise OAuthFailure("invalid_request", "nobody is logged in at the test provider")
            code = secrets.token_urlsafe(16)
            self._codes[code] = _Code(query["client_id"], redirect, query.get("code_challenge"),
                                      query.get("code_challenge_method"), self.authorizing_user,
                                      query.get("scope", ""))
            return f"{redirect}?{urlencode({'code': code, **back})}"

    # -- grants ----------------------------------------------------------------------------------
    def _client(self, form: dict[str, str], basic: tuple[str, str] | None) -> Client:
        client_id, secret = basic if basic else (form.get("client_id", ""), form.get("client_secret"))
        client = self._clients.get(client_id)
        if client is None or (client.secret is not None and secret != client.secret):
            raise OAuthFailure("invalid_client", "unknown client or wrong secret", status=401)
        return client

    def _grant_refresh(self, form: dict[str, str], client: Client) -> dict[str, Any]:
        with self._lock:
            token = form.get("refresh_token", "")
            r = self._refresh.get(token)
            if r is None or r.client_id != client.client_id:
                raise OAuthFailure("invalid_grant", "unknown refresh token")
            if r.family in self._revoked_families:
                raise OAuthFailure("invalid_grant", "Token has been expired or revoked.")
            if r.spent:
                # Someone used a rotated-away token: a thief, or a client that lost a rotation.
                self.stats.reuse_detected += 1
                self._revoked_families.add(r.family)
                raise OAuthFailure("invalid_grant", "refresh token reuse detected; the login is revoked")
            if r.expires is not None and self.now() >= r.expires:
                raise OAuthFailure("invalid_grant", "The refresh token has expired due to inactivity.")
            if self.rotate:
                r.spent = True
            return self._tokens(r.username, r.client_id, form.get("scope") or r.scope, r.family,
                                with_refresh=self.rotate)

    def _grant_code(self, form: dict[str, str], client: Client) -> dict[str, Any]:
        with self._lock:
            c = self._codes.pop(form.get("code", ""), None)
            if c is None or c.client_id != client.client_id or c.redirect_uri != form.get("redirect_uri"):
                raise OAuthFailure("invalid_grant", "unknown code, or another client or redirect_uri")
            if c.challenge is not None:
                verifier = form.get("code_verifier", "")
                digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                if c.method != "S256" or digest != c.challenge:
                    raise OAuthFailure("invalid_grant", "PKCE verification failed")
            return self._tokens(c.username, c.client_id, c.scope, next(self._families), with_refresh=True)

    def _grant_device(self, form: dict[str, str], client: Client) -> dict[str, Any]:
        with self._lock:
            d = self._devices.get(form.get("device_code", ""))
            if d is None or d.client_id != client.client_id:
                raise OAuthFailure("invalid_grant", "unknown device code")
            if self.now() >= d.expires:
                raise OAuthFailure("expired_token", "the device code expired")
            if d.denied:
                raise OAuthFailure("access_denied", "the user declined")
            if self.slow_down_polls:
                self.slow_down_polls -= 1
                raise OAuthFailure("slow_down", "polling too fast")
            if d.approved_by is None:
                raise OAuthFailure("authorization_pending", "the user has not approved yet")
            del self._devices[form["device_code"]]
            return self._tokens(d.approved_by, d.client_id, d.scope, next(self._families), with_refresh=True)

    def _tokens(self, username: str, client_id: str, scope: str, family: int | None, *,
                with_refresh: bool) -> dict[str, Any]:
        now = self.now()
        access = "at-" + secrets.token_urlsafe(24)
        self._access[access] = _Access(username, client_id, scope, family, now + self.access_lifetime)
        resp: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "scope": scope}
        if self.send_expires_in:
            resp["expires_in"] = self.access_lifetime
        if self.send_expires_at:
            resp["expires_at"] = int(now + self.access_lifetime)
        if with_refresh and family is not None and self.offline_access:
            refresh = "rt-" + secrets.token_urlsafe(24)
            lifetime = self.refresh_token_lifetime
            self._refresh[refresh] = _Refresh(username, client_id, scope, family,
                                              now + lifetime if lifetime else None)
            resp["refresh_token"] = refresh
            if lifetime:
                resp["refresh_token_expires_in"] = lifetime
        return resp


class _Raw(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(status)
        self.status, self.body = status, body


class _Handler(BaseHTTPRequestHandler):
    op: OAuthProvider
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet: tokens are in the requests
        pass

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}

    def _basic(self) -> tuple[str, str] | None:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return None
        user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
        return user, pw

    def _send(self, status: int, body: bytes, ctype: str = "application/json", headers: dict[str, str] | None = None,
              ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: dict[str, Any]) -> None:
        self._send(status, json.dumps(obj).encode())

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        form = self._form()
        try:
            if path == "/token":
                self._json(200, self.op.token(form, self._basic()))
            elif path == "/device":
                self._json(200, self.op.device_authorization(form, self._basic()))
            elif path == "/introspect":
                self._json(200, self.op.introspect(form.get("token", "")))
            else:
                self._send(404, b"not found", "text/plain")
        except OAuthFailure as e:
            self._json(e.status, {"error": e.error, "error_description": e.description})
        except _Raw as e:
            self._send(e.status, e.body.encode(), "text/html")

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/device/verify" and "user_code" in query and self.op.authorizing_user:
            # By hand (scripts/mailservers.py --oauth2): opening the page approves as the logged-in user.
            try:
                self.op.approve(query["user_code"].strip().upper(), self.op.authorizing_user)
            except KeyError:
                self._send(404, b"unknown code", "text/plain")
                return
            self._send(200, b"approved; go back to the terminal", "text/plain")
            return
        if parts.path != "/authorize":
            self._send(404, b"not found", "text/plain")
            return
        try:
            self._send(302, b"", "text/plain", {"Location": self.op.authorize(query)})
        except OAuthFailure as e:
            self._send(400, f"{e.error}: {e.description}".encode(), "text/plain")

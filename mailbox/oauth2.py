"""OAuth2 access tokens for the mail logins, from one token file shared by every process.

The file (JSON, mode 0600, replaced atomically) holds the refresh token, the current
access token and facts about the login. The daemon and a CLI verb may both need a fresh
access token at the same moment, and many providers rotate the refresh token on every
use (the old one stops working, or using it again revokes the whole login). So every
refresh is a read-modify-write under an exclusive flock on ``<token file>.lock``: read
the file *after* taking the lock (another process may have refreshed already), refresh,
write the new refresh token to disk, and only then hand out the access token.

Errors: the token endpoint unreachable or failing (5xx, 429) is Transient; a refused
refresh token (``invalid_grant``: expired, revoked, consent withdrawn) or no login at all
is LoginRequired, naming provider, account and the command to run; a refused app
(``invalid_client``: a wrong client id, an expired client secret) is ConfigError during a
login a person runs, and LoginRequired for a login that worked before (a daemon must not
stop over it). A refusal is written into the token file, so that no process asks the
provider again with a token it refused (at most once an hour, in case the refusal was the
provider's mistake) and `auth status` can tell; a new login replaces it. Tokens never
appear in logs, messages or reprs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping
from urllib.parse import urlsplit

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.common.errors import AuthlibBaseError

from config.servers import CLIENT_CREDENTIALS, OAuth2Settings
from service.ports import LoginState
from workflows.errors import ConfigError, LoginRequired, Transient

log = logging.getLogger("partnerdesk.oauth2")
FORMAT = 1
# Ahead of expiry: a connection that starts just before it, and clocks a little apart
# (ours, the provider's, the mail server's), must not meet an expired token.
REFRESH_MARGIN = timedelta(minutes=5)
RETRY_REFUSED = timedelta(hours=1)  # a refused login is tried again this seldom (the refusal may be a fluke)
HTTP_TIMEOUT = 30.0
# error codes of RFC 6749 5.2 and providers' additions, by what a person has to do about them
_LOGIN_AGAIN = {"invalid_grant", "interaction_required", "consent_required", "login_required"}
_FIX_CONFIG = {"invalid_client", "unauthorized_client", "invalid_scope", "unsupported_grant_type"}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def read_client_secret(s: OAuth2Settings, environ: Mapping[str, str] = os.environ) -> str | None:
    if s.client_secret_env:
        value = environ.get(s.client_secret_env)
        if not value:
            raise ConfigError(f"{s.source}: [oauth2] client_secret_env: the environment variable "
                              f"{s.client_secret_env} is not set")
        return value
    if s.client_secret_file:
        try:
            return Path(s.client_secret_file).read_text().strip()
        except OSError as e:
            raise ConfigError(f"{s.source}: [oauth2] client_secret_file: cannot read {s.client_secret_file}: "
                              f"{e.strerror}") from None
    return None


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def _time(v: Any) -> datetime | None:
    return datetime.fromisoformat(v) if isinstance(v, str) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRecord:
    """What the token file holds. The identity fields say which login it is, so a config
    pointed at another account or app is noticed instead of sending the wrong token."""

    provider: str
    account: str
    client_id: str
    token_url: str
    scopes: tuple[str, ...]
    logged_in_at: datetime
    refresh_token: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    expires_at: datetime | None = None  # of the access token, on our clock
    refreshed_at: datetime | None = None
    refresh_token_expires_at: datetime | None = None  # only when the provider said so
    refused: str | None = None  # the provider refused this login for good: why (no secret in it)
    refused_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "provider": self.provider, "account": self.account, "client_id": self.client_id,
                "token_url": self.token_url, "scopes": list(self.scopes), "logged_in_at": _iso(self.logged_in_at),
                "refreshed_at": _iso(self.refreshed_at), "refresh_token": self.refresh_token,
                "access_token": self.access_token, "expires_at": _iso(self.expires_at),
                "refresh_token_expires_at": _iso(self.refresh_token_expires_at), "refused": self.refused,
                "refused_at": _iso(self.refused_at)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TokenRecord:
        if d.get("format") != FORMAT:
            raise ValueError(f"unknown format {d.get('format')!r}")
        logged_in = _time(d.get("logged_in_at"))
        if logged_in is None:
            raise ValueError("logged_in_at is missing")
        return cls(provider=str(d["provider"]), account=str(d["account"]), client_id=str(d["client_id"]),
                   token_url=str(d["token_url"]), scopes=tuple(d.get("scopes") or ()), logged_in_at=logged_in,
                   refreshed_at=_time(d.get("refreshed_at")), refresh_token=d.get("refresh_token"),
                   access_token=d.get("access_token"), expires_at=_time(d.get("expires_at")),
                   refresh_token_expires_at=_time(d.get("refresh_token_expires_at")),
                   refused=d.get("refused") or None, refused_at=_time(d.get("refused_at")))


class TokenFile:
    """The file and its lock. Reads need no lock (writes are atomic renames); writes do."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise ConfigError(f"cannot open the OAuth2 token file's lock {self.lock_path} ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by close, also if the process dies
            yield
        finally:
            os.close(fd)

    def stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def read(self) -> TokenRecord | None:
        try:
            text = self.path.read_text()
            mode = self.path.stat().st_mode & 0o777
        except FileNotFoundError:
            return None
        if mode & 0o077:
            # Someone copied it in by hand: tokens are passwords, only our user may read them.
            log.warning("token file %s was readable by others (mode %o); setting it to 0600", self.path, mode)
            os.chmod(self.path, 0o600)
        return TokenRecord.from_json(json.loads(text))

    def reserve(self) -> Path:
        """A temporary file next to the token file (mode 0600). Made *before* asking the provider
        for a rotated token, so that a folder we cannot write to fails before the old token is spent."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        return Path(tmp)

    def write(self, record: TokenRecord, tmp: Path | None = None) -> None:
        self.write_bytes(json.dumps(record.to_json(), indent=1).encode(), tmp)

    def snapshot(self) -> bytes | None:
        """The file as it is (None: there is none), to put back with ``restore``."""
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def restore(self, data: bytes | None) -> None:
        with self.locked():
            if data is None:
                self.path.unlink(missing_ok=True)
            else:
                self.write_bytes(data)

    def write_bytes(self, data: bytes, tmp: Path | None = None) -> None:
        tmp = tmp or self.reserve()
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


class TokenSource:
    """A valid access token for one account, refreshed ahead of expiry and after a refusal.

    Thread-safe (SMTP connections ask from worker threads); process-safe through the flock.
    ``clock`` returns an aware datetime (tests move it instead of sleeping).
    """

    def __init__(self, settings: OAuth2Settings, account: str | None = None, *,
                 client_secret: str | Callable[[], str | None] | None = None,
                 clock: Callable[[], datetime] = utcnow, margin: timedelta = REFRESH_MARGIN,
                 timeout: float = HTTP_TIMEOUT) -> None:
        self.s = settings
        self.account = account or settings.account
        # A callable is asked once, when the secret is first needed: `auth status` needs none.
        self._client_secret = client_secret
        self.clock = clock
        self.margin = margin
        self.timeout = timeout
        self.file = TokenFile(settings.token_file)
        self._lock = threading.Lock()
        self._seen: tuple[tuple[int, int, int] | None, TokenRecord | None] = (None, None)
        self._unsaved: TokenRecord | None = None  # rotated but not yet on disk (write failed)

    @property
    def client_secret(self) -> str | None:
        if callable(self._client_secret):
            self._client_secret = self._client_secret()
        return self._client_secret

    # -- what the mail logins call ---------------------------------------------------------
    def access_token(self) -> str:
        rec = self._peek()
        if self._usable(rec):
            return rec.access_token  # type: ignore[union-attr]
        with self._lock, self.file.locked():
            rec = self._read_locked()
            self._still_refused(rec)
            if self._usable(rec):  # another process refreshed while we waited for the lock
                return rec.access_token  # type: ignore[union-attr]
            return self._refresh_locked(rec)

    def renew(self) -> str:
        """A new access token now, whatever the file says of the last one (`auth login` of app-only access)."""
        with self._lock, self.file.locked():
            return self._refresh_locked(self._read_locked())

    def rejected(self, token: str) -> str:
        """The mail server refused ``token`` (revoked early, clocks apart): a new one, unless
        another process has already put a different token in the file."""
        with self._lock, self.file.locked():
            rec = self._read_locked()
            self._still_refused(rec)
            if self._usable(rec) and rec.access_token != token:  # type: ignore[union-attr]
                return rec.access_token  # type: ignore[union-attr]
            log.info("the mail server refused the OAuth2 access token of %s; refreshing it", self.account)
            return self._refresh_locked(rec)

    def state(self) -> LoginState | None:
        """The login as the token file has it (service.ports.Login); None before the first login."""
        rec = self._read_checked(self.file.read)
        if rec is None:
            return None
        return LoginState(provider=rec.provider, account=rec.account, scopes=rec.scopes,
                          token_file=str(self.file.path), logged_in_at=rec.logged_in_at,
                          refreshed_at=rec.refreshed_at, access_expires_at=rec.expires_at,
                          refresh_token_expires_at=rec.refresh_token_expires_at, refused=rec.refused or "",
                          refused_at=rec.refused_at)

    # -- what the login flows call ---------------------------------------------------------
    def store_login(self, response: Mapping[str, Any]) -> TokenRecord:
        """Save the token response of an interactive login (or a refresh token given by hand)
        as a new login, replacing whatever the file held."""
        now = self.clock()
        base = TokenRecord(provider=self.s.provider, account=self.account, client_id=self.s.client_id,
                           token_url=self.s.token_url, scopes=self.s.scopes, logged_in_at=now)
        rec = self._merge(base, response, now, logged_in=True)
        with self._lock, self.file.locked():
            self._save(rec)
            self._seen = (self.file.stamp(), rec)
        return rec

    def session(self) -> OAuth2Session:
        auth = "client_secret_post" if self.client_secret else "none"
        return OAuth2Session(client_id=self.s.client_id, client_secret=self.client_secret,
                             token_endpoint_auth_method=auth, scope=" ".join(self.s.scopes),
                             default_timeout=self.timeout)

    def call_endpoint(self, what: str, call: Callable[[OAuth2Session], Mapping[str, Any]],
                      expect: tuple[str, ...] = (), worked_before: bool = False) -> Mapping[str, Any]:
        """Run one token-endpoint request, with its failures turned into our error types.
        OAuth error codes in ``expect`` (the device flow's authorization_pending) are re-raised as they are.
        ``worked_before``: a refused app is LoginRequired (its secret expired, say), not a config error."""
        s = self.s
        try:
            with self.session() as session:
                resp = call(session)
        except requests.HTTPError as e:
            code = e.response.status_code if e.response is not None else 0
            if code in (404, 405):
                raise ConfigError(f"{s.source}: [oauth2] token_url: {s.token_url} answered HTTP {code} to {what}; "
                                  f"is it the token endpoint?") from None
            raise Transient(f"the {s.provider} token endpoint answered HTTP {code} to {what}; the login is kept, "
                            f"retrying later") from None
        except (requests.ConnectionError, requests.Timeout) as e:
            raise Transient(f"cannot reach the {s.provider} token endpoint ({_host(s.token_url)}) for {what}: "
                            f"{type(e).__name__}; the login is kept, retrying later") from None
        except AuthlibBaseError as e:
            error, description = str(e.error or ""), str(e.description or "")[:300]
            if error in expect:
                raise
            if error in _LOGIN_AGAIN:
                raise self.login_required(f"{s.provider} refused {what} ({error}: {description})") from None
            if error in _FIX_CONFIG and worked_before:
                raise self.login_required(f"{s.provider} refused the app for {what} ({error}: {description}); "
                                          f"the client secret may have expired or the app registration changed: "
                                          f"fix [oauth2] in {s.source} if need be") from None
            if error in _FIX_CONFIG:
                raise ConfigError(f"{s.source}: [oauth2]: {s.provider} refused the app for {what} ({error}: "
                                  f"{description}); check client_id, the client secret and scopes against the "
                                  f"app registration") from None
            raise Transient(f"the {s.provider} token endpoint failed {what} ({error}: {description}); "
                            f"retrying later") from None
        except (requests.RequestException, ValueError) as e:
            raise Transient(f"the {s.provider} token endpoint gave no usable answer to {what} "
                            f"({type(e).__name__}); retrying later") from None
        if not resp.get("access_token"):
            raise Transient(f"the {s.provider} token endpoint answered {what} without an access token; retrying later")
        return resp

    def login_required(self, why: str) -> LoginRequired:
        s = self.s
        return LoginRequired(f"the OAuth2 login of {self.account} at {s.provider} cannot be used: {why}. "
                             f"To log in, run: {s.login_command}",
                             provider=s.provider, account=self.account, command=s.login_command, reason=why)

    # -- inside ----------------------------------------------------------------------------
    def _usable(self, rec: TokenRecord | None) -> bool:
        """A token to use as it is: not refused, and not within ``margin`` of its expiry. An unknown
        expiry (the provider sent no expires_in): used until a server refuses it."""
        if rec is None or rec.access_token is None or rec.refused:
            return False
        if rec.expires_at is None:
            return True
        # A provider handing out tokens shorter than twice the margin: refresh halfway, not at every use.
        obtained = rec.refreshed_at or rec.logged_in_at
        margin = min(self.margin, max(rec.expires_at - obtained, timedelta(0)) / 2)
        return self.clock() < rec.expires_at - margin

    def _still_refused(self, rec: TokenRecord | None) -> None:
        """The provider refused this login; ask again only once RETRY_REFUSED has passed."""
        if rec is not None and rec.refused and (rec.refused_at is None
                                                or self.clock() - rec.refused_at < RETRY_REFUSED):
            raise self.login_required(rec.refused)

    def _peek(self) -> TokenRecord | None:
        stamp = self.file.stamp()
        if self._unsaved is None and stamp is not None and stamp == self._seen[0]:
            return self._seen[1]
        return None  # changed, missing, or unsaved: decide under the lock

    def _read_checked(self, read: Callable[[], TokenRecord | None]) -> TokenRecord | None:
        try:
            rec = read()
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise self.login_required(f"the token file {self.file.path} cannot be read ({type(e).__name__}: {e})") \
                from None
        if rec is None:
            return None
        s = self.s
        if (rec.client_id, rec.token_url, rec.account.lower()) != (s.client_id, s.token_url, self.account.lower()):
            raise self.login_required(f"the token file {self.file.path} holds the login of {rec.account} for app "
                                      f"{rec.client_id} at {rec.token_url}, not the one the config names")
        return rec

    def _save(self, rec: TokenRecord, tmp: Path | None = None) -> None:
        try:
            self.file.write(rec, tmp)
        except OSError as e:
            self._unsaved = rec  # written at the next call, before anything else
            raise ConfigError(f"cannot write the OAuth2 token file {self.file.path} ({e.strerror}); the new token is "
                              f"kept in memory until it can be written: fix the folder's permissions or disk space") \
                from None
        self._unsaved = None

    def _read_locked(self) -> TokenRecord | None:
        if self._unsaved is not None:
            # A rotated refresh token that could not be written: the one on disk may be spent.
            self._save(self._unsaved)
        stamp = self.file.stamp()
        rec = self._read_checked(self.file.read)
        self._seen = (stamp, rec)
        return rec

    def _refresh_locked(self, rec: TokenRecord | None) -> str:
        s = self.s
        if s.flow == CLIENT_CREDENTIALS:
            base = rec or TokenRecord(provider=s.provider, account=self.account, client_id=s.client_id,
                                      token_url=s.token_url, scopes=s.scopes, logged_in_at=self.clock())
            refresh = None
        elif rec is None:
            raise self.login_required(f"there is no login yet (no token file {self.file.path})")
        elif not rec.refresh_token:
            raise self.login_required("the token file holds no refresh token")
        else:
            base, refresh = rec, rec.refresh_token
        try:
            tmp = self.file.reserve()
        except OSError as e:
            raise ConfigError(f"cannot write the OAuth2 token file's folder {self.file.path.parent} ({e.strerror}); "
                              f"nothing was refreshed") from None
        try:
            try:
                if refresh is None:
                    resp = self.call_endpoint("the app-only token request", worked_before=rec is not None,
                                              call=lambda c: c.fetch_token(s.token_url, grant_type="client_credentials"))
                else:
                    resp = self.call_endpoint("the refresh token", worked_before=True,
                                              call=lambda c: c.refresh_token(s.token_url, refresh_token=refresh))
            except LoginRequired as e:
                if rec is not None:  # kept in the file: no process asks again with what was refused
                    self._remember_refusal(replace(rec, refused=e.reason, refused_at=self.clock()), tmp)
                    tmp = None
                raise
            new = self._merge(base, resp, self.clock(), logged_in=False)
        except BaseException:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            raise
        self._save(new, tmp)
        self._seen = (self.file.stamp(), new)
        log.info("refreshed the OAuth2 access token of %s at %s", self.account, s.provider)
        return new.access_token  # type: ignore[return-value]

    def _remember_refusal(self, rec: TokenRecord, tmp: Path) -> None:
        try:
            self.file.write(rec, tmp)
        except OSError as e:  # the refusal itself is what the caller must hear
            log.warning("could not note the refused login in %s (%s)", self.file.path, e.strerror)
            return
        self._seen = (self.file.stamp(), rec)

    @staticmethod
    def _merge(base: TokenRecord, resp: Mapping[str, Any], now: datetime, *, logged_in: bool) -> TokenRecord:
        # expires_in is relative, so a provider whose clock is off from ours cannot make a fresh
        # token look expired (or an old one fresh); an absolute expires_at is only a fallback.
        expires_at = None
        if _number(resp.get("expires_in")) is not None:
            expires_at = now + timedelta(seconds=_number(resp["expires_in"]))  # type: ignore[arg-type]
        elif _number(resp.get("expires_at")) is not None:
            at = datetime.fromtimestamp(_number(resp["expires_at"]), timezone.utc)  # type: ignore[arg-type]
            expires_at = at if at > now else None  # already past on our clock: use it until it is refused
        new_refresh = resp.get("refresh_token") or base.refresh_token
        rt_expires = base.refresh_token_expires_at if new_refresh == base.refresh_token else None
        for key in ("refresh_token_expires_in", "refresh_expires_in"):  # Google, Keycloak
            v = resp.get(key)
            if isinstance(v, (int, float)) and v > 0:
                rt_expires = now + timedelta(seconds=int(v))
        granted = tuple(str(resp["scope"]).split()) if resp.get("scope") else base.scopes
        return replace(base, access_token=str(resp["access_token"]), refresh_token=new_refresh, expires_at=expires_at,
                       refreshed_at=None if logged_in else now, refresh_token_expires_at=rt_expires, scopes=granted,
                       refused=None, refused_at=None)


def _host(url: str) -> str:
    return urlsplit(url).netloc


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    try:
        n = float(v)
    except (TypeError, ValueError):
        return None
    return n if n >= 0 else None

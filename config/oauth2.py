"""The [oauth2] table: which provider, which app registration, where the token lives.

``read_oauth2(reader, imap, smtp)`` returns the OAuth2Settings (config/servers.py) the servers'
``auth = "oauth2"`` needs, or raises ConfigError naming the file, [oauth2] and the key; it uses
config.reader.Reader like every table's reader. Provider presets are data (``PRESETS``), checked against the
providers' documentation:

* Microsoft 365 (Entra ID, v2.0 endpoints): "Authenticate an IMAP, POP or SMTP connection
  using OAuth" (learn.microsoft.com, exchange/client-developer/legacy-protocols) gives the
  scopes https://outlook.office.com/IMAP.AccessAsUser.All and .../SMTP.Send (plus
  offline_access for a refresh token), the authorization-code and device-authorization flows,
  and the client-credentials flow with https://outlook.office365.com/.default for app-only
  access. "Refresh tokens in the Microsoft identity platform": 90 days for everything but
  single-page apps, each refresh returns a new refresh token; AADSTS700082 says "expired due
  to inactivity ... inactive for 90.00:00:00".
* Google Workspace / Gmail: the XOAUTH2 protocol page names the scope https://mail.google.com/;
  "OAuth 2.0 for Mobile & Desktop Apps" is the loopback flow (127.0.0.1, PKCE), with
  access_type=offline for a refresh token; the device flow ("TV and Limited-Input Device
  Applications") allows only a short list of scopes that does not include Gmail. Refresh tokens
  of apps whose consent screen is in "Testing" status lapse after 7 days; others after six
  months unused.
* generic: any RFC 6749 server (Keycloak, Dovecot setups); the endpoints come from the config.

Reading the secret's environment variable or file is the caller's job (mailbox/oauth2.py),
so that loading a config never touches anything outside it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from workflows.login_lifetime import AGE, IDLE, Limit
from workflows.model import FROZEN

from .reader import Reader
from .servers import (CLIENT_CREDENTIALS, DEVICE, FLOWS, LOOPBACK, MECHANISMS, ImapSettings, OAuth2Settings,
                      SmtpSettings)

DEFAULT_TOKEN_FILE = "partnerdesk-data/oauth2-token.json"
W = "[oauth2]"


@dataclass(**FROZEN)
class Preset:
    name: str
    authorize_url: str | None  # may contain {tenant}
    token_url: str | None
    device_url: str | None  # None: the provider offers no device flow for mail scopes
    scopes: tuple[str, ...]
    flow: str  # the interactive flow to use by default
    authorize_params: tuple[tuple[str, str], ...] = ()
    app_only_scopes: tuple[str, ...] = ()  # for the client-credentials grant
    limits: tuple[Limit, ...] = ()
    testing_limits: tuple[Limit, ...] = ()  # extra limits while the app is unpublished (Google "Testing")
    tenant_default: str | None = None
    needs_secret: bool = False  # the token endpoint refuses a login without the client secret


_MS = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0"
PRESETS: dict[str, Preset] = {
    "microsoft": Preset(
        name="microsoft",
        authorize_url=f"{_MS}/authorize",
        token_url=f"{_MS}/token",
        device_url=f"{_MS}/devicecode",
        scopes=("https://outlook.office.com/IMAP.AccessAsUser.All", "https://outlook.office.com/SMTP.Send",
                "offline_access"),
        flow=DEVICE,
        app_only_scopes=("https://outlook.office365.com/.default",),
        limits=(Limit(kind=IDLE, days=90, warn_days=14,
                      why="Microsoft refresh tokens lapse after 90 days unused"),),
        # Work and school accounts of any tenant; a single-tenant app needs its tenant id or domain.
        tenant_default="organizations",
    ),
    "google": Preset(
        name="google",
        authorize_url="https://accounts.google.com/o/oauth2/v2/auth",
        token_url="https://oauth2.googleapis.com/token",
        device_url=None,
        scopes=("https://mail.google.com/",),
        flow=LOOPBACK,
        # offline: a refresh token at all; consent: a refresh token on every login, not only the first.
        authorize_params=(("access_type", "offline"), ("prompt", "consent")),
        limits=(Limit(kind=IDLE, days=182, warn_days=14,
                      why="Google refresh tokens lapse after six months unused"),),
        testing_limits=(Limit(kind=AGE, days=7, warn_days=2,
                              why='Google apps in "Testing" publishing status get refresh tokens that '
                                  'lapse 7 days after the login'),),
        needs_secret=True,  # a Desktop-app client's secret is not secret, but Google requires it
    ),
    "generic": Preset(name="generic", authorize_url=None, token_url=None, device_url=None, scopes=(), flow=DEVICE),
}

KEYS = ("provider", "client_id", "client_secret_env", "client_secret_file", "scopes", "token_url",
        "authorize_url", "device_url", "tenant", "flow", "publishing_status", "token_file", "mechanism")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(r: Reader, url: Any, key: str) -> str:
    """https, or plain http to this machine only (a local Keycloak, the tests): a token sent in
    clear over a network could be read by anyone on the way."""
    if not isinstance(url, str) or not url:
        raise r.fail(f"{W} {key}", f"must be a URL, got {url!r}")
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return url
    raise r.fail(f"{W} {key}", f"{url!r} must start with https:// (plain http only to 127.0.0.1 or localhost)")


def _string(r: Reader, t: dict[str, Any], key: str, default: Any = ...) -> Any:
    v = r.get(t, W, key, str, default)
    if key not in t:
        return v
    if not v.strip():
        raise r.fail(f"{W} {key}", "must not be empty")
    return v.strip()


def _choice(r: Reader, t: dict[str, Any], key: str, allowed: tuple[str, ...], default: Any = ...) -> str:
    v = _string(r, t, key, default)
    if v not in allowed:
        raise r.fail(f"{W} {key}", f"{v!r} is not one of: {', '.join(allowed)}")
    return v


def read_oauth2(r: Reader, imap: ImapSettings | None, smtp: SmtpSettings | None) -> OAuth2Settings | None:
    """[oauth2], required when [imap] or [smtp] says auth = "oauth2" and refused when neither does.

    One token file is one account: IMAP and SMTP logging in by OAuth2 use the same username.
    """
    users = [s for s in (imap, smtp) if s is not None and s.oauth2]
    if "oauth2" not in r.data:
        if users:
            raise r.fail(W, f"[{users[0].table}] auth = \"oauth2\" needs this table: provider, client_id and "
                            f"where the token comes from (see the README, OAuth2 logins)")
        return None
    if not users:
        raise r.fail(W, "no server uses it: set auth = \"oauth2\" in [imap] and/or [smtp], or remove [oauth2]")
    accounts = {s.username.lower() for s in users}
    if len(accounts) > 1:
        raise r.fail("[smtp] username", f"must be the same mailbox as [imap] username ({imap.username}) when both "
                                        f"log in by OAuth2: one token file holds one account's login")
    return parse(r, r.section("oauth2", KEYS), account=users[0].username)


def parse_oauth2(table: dict[str, Any], *, source: str, account: str = "") -> OAuth2Settings:
    """The [oauth2] table alone (tests, and the presets as data)."""
    r = Reader({"oauth2": table}, source)
    return parse(r, r.section("oauth2", KEYS), account=account)


def parse(r: Reader, table: dict[str, Any], *, account: str) -> OAuth2Settings:
    provider = _choice(r, table, "provider", tuple(PRESETS))
    preset = PRESETS[provider]
    client_id = _string(r, table, "client_id")
    base = Path(r.source).resolve().parent  # relative paths are relative to the config file

    if "client_secret_env" in table and "client_secret_file" in table:
        raise r.fail(f"{W} client_secret_file", "give client_secret_env or client_secret_file, not both")
    secret_env = _string(r, table, "client_secret_env", None)
    secret_file = _string(r, table, "client_secret_file", None)
    if secret_file is not None:
        secret_file = str(base / secret_file)

    tenant = None
    if provider == "microsoft":
        tenant = _string(r, table, "tenant", preset.tenant_default)
    elif "tenant" in table:
        raise r.fail(f"{W} tenant", "only for provider = \"microsoft\"")

    def endpoint(key: str, preset_url: str | None) -> str | None:
        if key in table:
            return check_url(r, table[key], key)
        return preset_url.format(tenant=tenant) if preset_url else None

    token_url = endpoint("token_url", preset.token_url)
    if token_url is None:
        raise r.fail(f"{W} token_url", f"required for provider = \"{provider}\" (the server's RFC 6749 token "
                                       f"endpoint)")
    authorize_url = endpoint("authorize_url", preset.authorize_url)
    device_url = endpoint("device_url", preset.device_url)

    default_flow = preset.flow if provider != "generic" else (DEVICE if device_url else LOOPBACK)
    flow = _choice(r, table, "flow", FLOWS, default_flow)
    if flow == DEVICE and provider != "generic" and preset.device_url is None and "device_url" not in table:
        raise r.fail(f"{W} flow", f"{provider} offers no device login for mail scopes; use flow = \"loopback\"")
    if flow == CLIENT_CREDENTIALS:
        if provider == "google":
            raise r.fail(f"{W} flow", "Google has no client-credentials grant for Gmail (it uses service accounts "
                                      "with domain-wide delegation); use flow = \"loopback\"")
        if not (secret_env or secret_file):
            raise r.fail(f"{W} flow", "client_credentials needs the app's secret: set client_secret_env or "
                                      "client_secret_file")
        if provider == "microsoft" and tenant in ("common", "organizations", "consumers"):
            raise r.fail(f"{W} tenant", "app-only access (flow = \"client_credentials\") needs your tenant's id "
                                        f"or domain, not \"{tenant}\"")
    if preset.needs_secret and not (secret_env or secret_file):
        raise r.fail(f"{W} client_secret_env", f"{provider}'s token endpoint requires the client secret (of a "
                                               f"Desktop-app client); set client_secret_env or client_secret_file")

    default_scopes = preset.app_only_scopes if flow == CLIENT_CREDENTIALS else preset.scopes
    scopes = table.get("scopes", list(default_scopes))
    if not isinstance(scopes, list) or not all(isinstance(x, str) and x.strip() for x in scopes):
        raise r.fail(f"{W} scopes", f"must be a list of strings, got {scopes!r}")
    if not scopes:
        raise r.fail(f"{W} scopes", f"required for provider = \"{provider}\" (the scopes your server grants for "
                                    f"IMAP and SMTP)")

    limits = preset.limits
    if provider == "google":
        status = _choice(r, table, "publishing_status", ("production", "testing"), "production")
        if status == "testing":
            limits = limits + preset.testing_limits
    elif "publishing_status" in table:
        raise r.fail(f"{W} publishing_status", "only for provider = \"google\"")

    return OAuth2Settings(
        source=r.source, provider=provider, client_id=client_id, token_url=token_url, account=account,
        scopes=tuple(x.strip() for x in scopes),
        token_file=str(base / _string(r, table, "token_file", DEFAULT_TOKEN_FILE)),
        flow=flow, authorize_url=authorize_url, device_url=device_url,
        authorize_params=preset.authorize_params, client_secret_env=secret_env, client_secret_file=secret_file,
        mechanism=_choice(r, table, "mechanism", MECHANISMS, "auto"), limits=limits, tenant=tenant,
    )

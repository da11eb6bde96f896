"""The [oauth2] table: which provider, which app registration, where the token lives.

``parse_oauth2(table, source=CONFIG_FILE)`` returns OAuth2Settings or raises ConfigError
naming the file and key. Provider presets are data (``PRESETS``), checked against the
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

from workflows.errors import ConfigError
from workflows.login_lifetime import AGE, IDLE, Limit
from workflows.model import FROZEN

DEVICE, LOOPBACK, CLIENT_CREDENTIALS = "device", "loopback", "client_credentials"
FLOWS = (DEVICE, LOOPBACK, CLIENT_CREDENTIALS)
MECHANISMS = ("auto", "xoauth2", "oauthbearer")
DEFAULT_TOKEN_FILE = "partnerdesk-data/oauth2-token.json"


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

_KNOWN = {"provider", "client_id", "client_secret_env", "client_secret_file", "scopes", "token_url",
          "authorize_url", "device_url", "tenant", "flow", "publishing_status", "token_file", "mechanism"}


@dataclass(**FROZEN)
class OAuth2Settings:
    source: str  # the config file: messages and the login command name it
    provider: str
    client_id: str
    token_url: str
    scopes: tuple[str, ...]
    token_file: str  # absolute
    flow: str
    authorize_url: str | None = None
    device_url: str | None = None
    authorize_params: tuple[tuple[str, str], ...] = ()
    client_secret_env: str | None = None
    client_secret_file: str | None = None  # absolute
    mechanism: str = "auto"
    limits: tuple[Limit, ...] = ()
    tenant: str | None = None

    @property
    def confidential(self) -> bool:
        return bool(self.client_secret_env or self.client_secret_file)

    @property
    def login_command(self) -> str:
        return f"python3 run.py --config {self.source} auth login"


def _fail(source: str, key: str, problem: str) -> ConfigError:
    return ConfigError(f"{source}: [oauth2] {key}: {problem}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: Any, source: str, key: str) -> str:
    """https, or plain http to this machine only (a local Keycloak, the tests): a token sent in
    clear over a network could be read by anyone on the way."""
    if not isinstance(url, str) or not url:
        raise _fail(source, key, f"must be a URL, got {url!r}")
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return url
    raise _fail(source, key, f"{url!r} must start with https:// (plain http only to 127.0.0.1 or localhost)")


def _string(t: dict[str, Any], source: str, key: str, default: Any = ...) -> Any:
    if key not in t:
        if default is ...:
            raise _fail(source, key, "missing; it is required")
        return default
    v = t[key]
    if not isinstance(v, str) or not v.strip():
        raise _fail(source, key, f"must be a non-empty string, got {v!r}")
    return v.strip()


def _choice(t: dict[str, Any], source: str, key: str, allowed: tuple[str, ...], default: str) -> str:
    v = _string(t, source, key, default)
    if v not in allowed:
        raise _fail(source, key, f"{v!r} is not one of: {', '.join(allowed)}")
    return v


def parse_oauth2(table: dict[str, Any], *, source: str) -> OAuth2Settings:
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [oauth2]: must be a table")
    unknown = sorted(set(table) - _KNOWN)
    if unknown:
        raise _fail(source, unknown[0], f"unknown key; allowed: {', '.join(sorted(_KNOWN))}")
    provider = _choice(table, source, "provider", tuple(PRESETS), "")
    preset = PRESETS[provider]
    client_id = _string(table, source, "client_id")
    base = Path(source).resolve().parent

    if "client_secret_env" in table and "client_secret_file" in table:
        raise _fail(source, "client_secret_file", "give client_secret_env or client_secret_file, not both")
    secret_env = _string(table, source, "client_secret_env", None)
    secret_file = _string(table, source, "client_secret_file", None)
    if secret_file is not None:
        secret_file = str(base / secret_file)

    tenant = None
    if provider == "microsoft":
        tenant = _string(table, source, "tenant", preset.tenant_default)
    elif "tenant" in table:
        raise _fail(source, "tenant", "only for provider = \"microsoft\"")

    def endpoint(key: str, preset_url: str | None) -> str | None:
        if key in table:
            return check_url(table[key], source, key)
        return preset_url.format(tenant=tenant) if preset_url else None

    token_url = endpoint("token_url", preset.token_url)
    if token_url is None:
        raise _fail(source, "token_url", f"required for provider = \"{provider}\" (the server's RFC 6749 token endpoint)")
    authorize_url = endpoint("authorize_url", preset.authorize_url)
    device_url = endpoint("device_url", preset.device_url)

    default_flow = preset.flow if provider != "generic" else (DEVICE if device_url else LOOPBACK)
    flow = _choice(table, source, "flow", FLOWS, default_flow)
    if flow == DEVICE and provider != "generic" and preset.device_url is None and "device_url" not in table:
        raise _fail(source, "flow", f"{provider} offers no device login for mail scopes; use flow = \"loopback\"")
    if flow == CLIENT_CREDENTIALS:
        if provider == "google":
            raise _fail(source, "flow", "Google has no client-credentials grant for Gmail (it uses service "
                                        "accounts with domain-wide delegation); use flow = \"loopback\"")
        if not (secret_env or secret_file):
            raise _fail(source, "flow", "client_credentials needs the app's secret: set client_secret_env or "
                                        "client_secret_file")
        if provider == "microsoft" and tenant in ("common", "organizations", "consumers"):
            raise _fail(source, "tenant", "app-only access (flow = \"client_credentials\") needs your tenant's id "
                                          f"or domain, not \"{tenant}\"")
    if preset.needs_secret and not (secret_env or secret_file):
        raise _fail(source, "client_secret_env", f"{provider}'s token endpoint requires the client secret "
                                                 "(of a Desktop-app client); set client_secret_env or client_secret_file")

    default_scopes = preset.app_only_scopes if flow == CLIENT_CREDENTIALS else preset.scopes
    scopes = table.get("scopes", list(default_scopes))
    if not isinstance(scopes, list) or not all(isinstance(s, str) and s.strip() for s in scopes):
        raise _fail(source, "scopes", f"must be a list of strings, got {scopes!r}")
    if not scopes:
        raise _fail(source, "scopes", f"required for provider = \"{provider}\" (the scopes your server grants "
                                      "for IMAP and SMTP)")

    limits = preset.limits
    if provider == "google":
        status = _choice(table, source, "publishing_status", ("production", "testing"), "production")
        if status == "testing":
            limits = limits + preset.testing_limits
    elif "publishing_status" in table:
        raise _fail(source, "publishing_status", "only for provider = \"google\"")

    return OAuth2Settings(
        source=source, provider=provider, client_id=client_id, token_url=token_url,
        scopes=tuple(s.strip() for s in scopes),
        token_file=str(base / _string(table, source, "token_file", DEFAULT_TOKEN_FILE)),
        flow=flow, authorize_url=authorize_url, device_url=device_url,
        authorize_params=preset.authorize_params, client_secret_env=secret_env, client_secret_file=secret_file,
        mechanism=_choice(table, source, "mechanism", MECHANISMS, "auto"), limits=limits, tenant=tenant,
    )

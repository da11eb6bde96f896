"""The [imap] and [smtp] tables: where the mail adapters connect, and with which secret.

The settings are plain frozen values that mailbox/imap.py and mailbox/smtp.py import from here.
Passwords are looked up only when a verb is about to connect (``password``): `threads list` needs no
mail password, while `once` must stop on a missing one before it opens the store.

``auth = "oauth2"`` logs in with a token instead of a password; the [oauth2] table (config/oauth2.py)
says from where, and its settings (``OAuth2Settings``) live here beside the servers' because the mail
adapters (mailbox/oauth2*.py) read them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflows.errors import ConfigError
from workflows.login_lifetime import Limit
from workflows.model import FROZEN

from .reader import Reader

SECURITY = ("none", "starttls", "tls")
PASSWORD, OAUTH2 = "password", "oauth2"
AUTH = (PASSWORD, OAUTH2)
_SECRETS = ("password", "password_env", "password_file")
_SERVER_KEYS = {"host", "port", "security", "username", *_SECRETS, "verify_tls", "ca_file", "timeout", "auth"}
IMAP_KEYS = _SERVER_KEYS | {"folder", "done_keyword", "done_folder", "quarantine_folder", "idle", "poll_seconds"}
SMTP_KEYS = _SERVER_KEYS | {"connections", "rate_per_minute"}


@dataclass(**FROZEN)
class ServerSettings:
    host: str
    port: int
    security: str  # none | starttls | tls
    username: str = ""
    password: str | None = None  # literal (discouraged)
    password_env: str | None = None
    password_file: str | None = None
    verify_tls: bool = True
    ca_file: str | None = None
    timeout: float = 30.0
    auth: str = PASSWORD  # "password" | "oauth2" (a token from [oauth2])

    @property
    def oauth2(self) -> bool:
        return self.auth == OAUTH2


@dataclass(**FROZEN)
class ImapSettings(ServerSettings):
    folder: str = "INBOX"
    done_keyword: str = "$PartnerdeskDone"
    done_folder: str | None = None  # move taken-in mail there instead of only flagging it
    quarantine_folder: str = "Partnerdesk-Quarantine"
    idle: bool = True
    poll_seconds: float = 60.0

    table = "imap"


@dataclass(**FROZEN)
class SmtpSettings(ServerSettings):
    connections: int = 2
    rate_per_minute: int = 120

    table = "smtp"


_PORTS = {"imap": {"none": 143, "starttls": 143, "tls": 993}, "smtp": {"none": 25, "starttls": 587, "tls": 465}}
_EXTRA = {
    "imap": {"folder": str, "done_keyword": str, "done_folder": str, "quarantine_folder": str, "idle": bool,
             "poll_seconds": (int, float)},
    "smtp": {"connections": int, "rate_per_minute": int},
}


def read_server(r: Reader, name: str) -> ImapSettings | SmtpSettings | None:
    """[imap] or [smtp], or None when the table is absent (then the local spool is used)."""
    cls: type[ImapSettings] | type[SmtpSettings] = ImapSettings if name == "imap" else SmtpSettings
    if name not in r.data:
        return None
    t = r.section(name, IMAP_KEYS if name == "imap" else SMTP_KEYS)
    where = f"[{name}]"
    security = r.get(t, where, "security", str, "tls")
    if security not in SECURITY:
        raise r.fail(f"{where} security", f"{security!r}: use one of {', '.join(SECURITY)}")
    port = r.get(t, where, "port", int, _PORTS[name][security])
    if not 0 < port < 65536:
        raise r.fail(f"{where} port", f"{port} is not a TCP port")
    auth = r.get(t, where, "auth", str, PASSWORD)
    if auth not in AUTH:
        raise r.fail(f"{where} auth", f"{auth!r}: use one of {', '.join(AUTH)}")
    secrets_given = [k for k in _SECRETS if k in t]
    if auth == OAUTH2 and secrets_given:
        raise r.fail(f"{where} {secrets_given[0]}", "auth = \"oauth2\" logs in with a token from [oauth2], not a "
                                                    "password: remove this key")
    if auth == OAUTH2 and not t.get("username"):
        raise r.fail(f"{where} username", "auth = \"oauth2\" needs the mailbox to log in as (the account the "
                                          "token belongs to)")
    if len(secrets_given) > 1:
        raise r.fail(f"{where} {secrets_given[1]}", "give only one of password, password_env, password_file")
    kwargs: dict[str, Any] = dict(
        host=r.get(t, where, "host", str),
        port=port,
        security=security,
        username=r.get(t, where, "username", str, ""),
        password=r.get(t, where, "password", str, None),
        password_env=r.get(t, where, "password_env", str, None),
        password_file=r.get(t, where, "password_file", str, None),
        verify_tls=r.get(t, where, "verify_tls", bool, True),
        ca_file=r.get(t, where, "ca_file", str, None),
        timeout=float(r.get(t, where, "timeout", (int, float), 30.0)),
        auth=auth,
    )
    if kwargs["username"] and not secrets_given and auth == PASSWORD:
        raise r.fail(f"{where} password", "username is set but none of password, password_env, password_file is")
    for key, kind in _EXTRA[name].items():
        if key in t:
            kwargs[key] = r.get(t, where, key, kind)
    if "poll_seconds" in kwargs:
        kwargs["poll_seconds"] = float(kwargs["poll_seconds"])
    return cls(**kwargs)


# -- OAuth2 logins ([oauth2], read by config/oauth2.py) ------------------------------------------------
DEVICE, LOOPBACK, CLIENT_CREDENTIALS = "device", "loopback", "client_credentials"
FLOWS = (DEVICE, LOOPBACK, CLIENT_CREDENTIALS)
MECHANISMS = ("auto", "xoauth2", "oauthbearer")


@dataclass(**FROZEN)
class OAuth2Settings:
    source: str  # the config file: messages and the login command name it
    provider: str  # "microsoft" | "google" | "generic"
    client_id: str
    token_url: str
    scopes: tuple[str, ...]
    token_file: str  # absolute once loaded from a file
    flow: str  # DEVICE | LOOPBACK | CLIENT_CREDENTIALS
    account: str = ""  # the mailbox the token is for: [imap]/[smtp] username
    authorize_url: str | None = None
    device_url: str | None = None
    authorize_params: tuple[tuple[str, str], ...] = ()
    client_secret_env: str | None = None
    client_secret_file: str | None = None  # absolute once loaded from a file
    mechanism: str = "auto"  # SASL: "auto" (OAUTHBEARER where offered, else XOAUTH2) | "xoauth2" | "oauthbearer"
    limits: tuple[Limit, ...] = ()  # the provider's known lapses, warned about ahead
    tenant: str | None = None

    @property
    def confidential(self) -> bool:
        return bool(self.client_secret_env or self.client_secret_file)

    @property
    def login_command(self) -> str:
        return f"python3 run.py --config {self.source} auth login"


def password(server: ServerSettings, source: str) -> str | None:
    """The server's password from the config, the environment or a file; None when it needs none."""
    if server.oauth2:
        return None
    where = f"[{getattr(server, 'table', '?')}]"
    if server.password is not None:
        return server.password
    if server.password_env:
        value = os.environ.get(server.password_env)
        if value is None:
            raise ConfigError(f"{source}: {where} password_env: the environment variable {server.password_env} "
                              f"is not set")
        return value
    if server.password_file:
        try:
            return Path(server.password_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ConfigError(f"{source}: {where} password_file: cannot read {server.password_file}: "
                              f"{e.strerror}") from None
    return None

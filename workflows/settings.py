"""The config file's meaning, checked before anything connects anywhere.

``load(data, source)`` takes the parsed TOML (a dict) and returns Settings, or
raises ConfigError naming the file and the key. Reading the file, environment
variables and password files is run.py's job; this module only validates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .autoclose import parse_lifecycle
from .calendar import BusinessCalendar, parse_calendar
from .digest import parse_digest
from .escalation import check_people, parse_stages
from .errors import ConfigError
from .model import FROZEN

_ADDR_RE = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+$")
SECURITY = ("none", "starttls", "tls")


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


@dataclass(**FROZEN)
class ImapSettings(ServerSettings):
    folder: str = "INBOX"
    done_keyword: str = "$PartnerdeskDone"
    done_folder: str | None = None  # move taken-in mail there instead of only flagging it
    quarantine_folder: str = "Partnerdesk-Quarantine"
    idle: bool = True
    poll_seconds: float = 60.0


@dataclass(**FROZEN)
class SmtpSettings(ServerSettings):
    connections: int = 2
    rate_per_minute: int = 120


@dataclass(**FROZEN)
class Settings:
    source: str  # the file it came from, for messages
    support_address: str
    support_name: str = "Open Atrium Support"
    staff: frozenset[str] = frozenset()
    escalation: tuple[str, ...] = ()
    secret: str | None = None
    imap: ImapSettings | None = None
    smtp: SmtpSettings | None = None
    store_path: str = "partnerdesk-data/partnerdesk.json"
    calendar: BusinessCalendar = BusinessCalendar()
    acks_per_hour: int = 3
    history_before: datetime | None = None
    # Issue 3: the escalation ladder, lifecycle timers and digest (parsed by their own modules).
    program_lead: str | None = None
    ladder: tuple[Any, ...] = ()  # escalation.Stage, the default ladder unless [escalation] stages
    lifecycle: Any = None  # autoclose.LifecycleConfig
    digest: Any = None  # digest.DigestConfig
    mailings: Any = None  # mailings.config.MailingsConfig ([mailings], [calls], [trainings], [renewals], [program])
    raw: dict[str, Any] = field(default_factory=dict)  # the whole table, for later workflows' own sections


_KNOWN = {
    "support": {"address", "name", "staff", "escalation", "secret", "program_lead"},
    "imap": {"host", "port", "security", "username", "password", "password_env", "password_file", "folder",
             "verify_tls", "ca_file", "timeout", "done_keyword", "done_folder", "quarantine_folder", "idle",
             "poll_seconds"},
    "smtp": {"host", "port", "security", "username", "password", "password_env", "password_file", "verify_tls",
             "ca_file", "timeout", "connections", "rate_per_minute"},
    "store": {"path"},
    "intake": {"acks_per_hour", "history_before"},
}
_FREE_TABLES = {"sla", "escalation", "mailings", "calls", "trainings", "renewals", "program", "digest", "lifecycle"}


_WORDS = {int: "a whole number", float: "a number", str: "a string (in quotes)", bool: "true or false",
          list: "a list like [\"a\", \"b\"]", dict: "a table"}


def _kind_words(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if set(kinds) == {int, float}:
        return "a number"
    return " or ".join(_WORDS.get(k, k.__name__) for k in kinds)


class _Reader:
    def __init__(self, data: dict[str, Any], source: str) -> None:
        self.data = data
        self.source = source

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {problem}")

    def table(self, name: str, required: bool = False) -> dict[str, Any] | None:
        t = self.data.get(name)
        if t is None:
            if required:
                raise self.fail(f"[{name}]", "this table is required")
            return None
        if not isinstance(t, dict):
            raise self.fail(f"[{name}]", "must be a table")
        unknown = set(t) - _KNOWN.get(name, set(t))
        if unknown:
            raise self.fail(f"[{name}] {sorted(unknown)[0]}",
                            f"unknown key; allowed: {', '.join(sorted(_KNOWN[name]))}")
        return t

    def get(self, t: dict[str, Any], table: str, key: str, kind: type | tuple[type, ...], default: Any = ...,
            ) -> Any:
        if key not in t:
            if default is ...:
                raise self.fail(f"[{table}] {key}", "missing; it is required")
            return default
        v = t[key]
        if isinstance(v, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.fail(f"[{table}] {key}", f"must be {_kind_words(kind)}, not true/false")
        if not isinstance(v, kind):
            raise self.fail(f"[{table}] {key}", f"must be {_kind_words(kind)}, got {v!r}")
        return v

    def address(self, v: Any, where: str) -> str:
        if not isinstance(v, str) or not _ADDR_RE.match(v.strip()):
            raise self.fail(where, f"{v!r} is not a mail address like support@example.com")
        return v.strip().lower()

    def server(self, name: str, cls: type, defaults: dict[str, Any]) -> Any:
        t = self.table(name)
        if t is None:
            return None
        security = self.get(t, name, "security", str, "tls")
        if security not in SECURITY:
            raise self.fail(f"[{name}] security", f"{security!r}: use one of {', '.join(SECURITY)}")
        default_port = defaults["ports"][security]
        port = self.get(t, name, "port", int, default_port)
        if not 0 < port < 65536:
            raise self.fail(f"[{name}] port", f"{port} is not a TCP port")
        secrets_given = [k for k in ("password", "password_env", "password_file") if k in t]
        if len(secrets_given) > 1:
            raise self.fail(f"[{name}] {secrets_given[1]}", "give only one of password, password_env, password_file")
        kwargs: dict[str, Any] = dict(
            host=self.get(t, name, "host", str),
            port=port,
            security=security,
            username=self.get(t, name, "username", str, ""),
            password=self.get(t, name, "password", str, None),
            password_env=self.get(t, name, "password_env", str, None),
            password_file=self.get(t, name, "password_file", str, None),
            verify_tls=self.get(t, name, "verify_tls", bool, True),
            ca_file=self.get(t, name, "ca_file", str, None),
            timeout=float(self.get(t, name, "timeout", (int, float), 30.0)),
        )
        if kwargs["username"] and not secrets_given:
            raise self.fail(f"[{name}] password", "username is set but none of password, password_env, "
                                                  "password_file is")
        for key, kind in defaults["extra"].items():
            if key in t:
                kwargs[key] = self.get(t, name, key, kind)
        return cls(**kwargs)


def load(data: dict[str, Any], source: str) -> Settings:
    r = _Reader(data, source)
    unknown = set(data) - set(_KNOWN) - _FREE_TABLES
    if unknown:
        raise r.fail(f"[{sorted(unknown)[0]}]", f"unknown table; known: {', '.join(sorted(set(_KNOWN) | _FREE_TABLES))}")
    for name in sorted(_FREE_TABLES & set(data)):  # `sla = 5` would otherwise crash their parsers
        if not isinstance(data[name], dict):
            raise r.fail(f"[{name}]", "must be a table")
    support = r.table("support", required=True)
    assert support is not None
    address = r.address(r.get(support, "support", "address", str), "[support] address")
    staff_list = r.get(support, "support", "staff", list, [])
    staff = frozenset(r.address(a, "[support] staff") for a in staff_list)
    if address in staff:
        raise r.fail("[support] staff", "must not contain the support address itself (it would answer itself)")
    escalation = tuple(r.address(a, "[support] escalation") for a in r.get(support, "support", "escalation", list, []))
    imap = r.server("imap", ImapSettings, {
        "ports": {"none": 143, "starttls": 143, "tls": 993},
        "extra": {"folder": str, "done_keyword": str, "done_folder": str, "quarantine_folder": str, "idle": bool,
                  "poll_seconds": (int, float)},
    })
    smtp = r.server("smtp", SmtpSettings, {
        "ports": {"none": 25, "starttls": 587, "tls": 465},
        "extra": {"connections": int, "rate_per_minute": int},
    })
    if (imap is None) != (smtp is None):
        raise r.fail("[imap]" if imap is None else "[smtp]", "give both [imap] and [smtp], or neither (local spool)")
    store = r.table("store") or {}
    intake = r.table("intake") or {}
    history_before = None
    if "history_before" in intake:
        v = intake["history_before"]
        try:
            history_before = v if isinstance(v, datetime) else datetime.fromisoformat(str(v))
        except ValueError:
            raise r.fail("[intake] history_before", f"{v!r} is not an ISO-8601 date-time") from None
        if history_before.tzinfo is None:
            raise r.fail("[intake] history_before", "needs a UTC offset, e.g. 2026-11-01T00:00:00-05:00")
    acks = r.get(intake, "intake", "acks_per_hour", int, 3)
    if acks < 1:
        raise r.fail("[intake] acks_per_hour", "must be at least 1")
    try:
        calendar = parse_calendar(data.get("sla") or {})
    except ValueError as e:
        raise r.fail("[sla]", str(e).removeprefix("[sla] ")) from None
    program_lead = None
    if "program_lead" in support:
        program_lead = r.address(support["program_lead"], "[support] program_lead")
    for table in ("escalation", "lifecycle", "digest"):
        if table in data and not isinstance(data[table], dict):
            raise r.fail(f"[{table}]", "must be a table")
    try:
        ladder = parse_stages(data.get("escalation"))
        check_people(ladder, escalation=escalation, program_lead=program_lead, support_address=address)
        lifecycle_cfg = parse_lifecycle(data.get("lifecycle"))
        digest_cfg = parse_digest(data.get("digest"))
    except ValueError as e:
        raise ConfigError(f"{source}: {e}") from None
    # The mailings' own tables are checked now too, so that every verb reports a bad
    # [calls] or [renewals] key before it does anything (parse_mailings names file and key).
    from .mailings.config import parse_mailings

    mailings = parse_mailings(data, source)
    return Settings(
        source=source,
        support_address=address,
        support_name=r.get(support, "support", "name", str, "Open Atrium Support"),
        staff=staff,
        escalation=escalation,
        secret=r.get(support, "support", "secret", str, None),
        imap=imap,
        smtp=smtp,
        store_path=r.get(store, "store", "path", str, "partnerdesk-data/partnerdesk.json"),
        calendar=calendar,
        acks_per_hour=acks,
        history_before=history_before,
        program_lead=program_lead,
        ladder=ladder,
        lifecycle=lifecycle_cfg,
        digest=digest_cfg,
        mailings=mailings,
        raw=data,
    )

"""The config file's meaning, checked before anything connects anywhere.

``load_file(path)`` reads a TOML file (``load_file(None)``: the built-in demo settings, local spool)
and returns Settings, or raises ConfigError naming the file, the table and the key. ``load(data,
source)`` does the same for an already parsed table. Each room of the program gets its own frozen
settings from here (``intake()``, ``ladder()``, ``mailings``...): no other module reads the config.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from workflows.autoclose import LifecycleConfig
from workflows.delivery import DeliveryPolicy
from workflows.loopbreaker import LoopPolicy
from workflows.calendar import BusinessCalendar
from workflows.digest import DigestConfig
from workflows.errors import ConfigError
from workflows.escalation import DEFAULT_STAGES, LadderConfig, Stage
from workflows.health import HealthConfig
from workflows.intake import IntakeSettings
from workflows.mailings.types import MailingsConfig
from workflows.model import FROZEN
from workflows.proofs import TrustSettings

from .automatic import INTAKE_KEYS as LOOP_KEYS, read_delivery, read_loop
from .health import read_health
from .mailings import KEYS as MAILING_KEYS, read_mailings
from .oauth2 import read_oauth2
from .promise import check_people, read_digest, read_lifecycle, read_stages
from .reader import Reader
from .servers import ImapSettings, OAuth2Settings, SmtpSettings, read_server
from .sla import read_sla
from .trust import read_trust

DEFAULT_STORE = "partnerdesk-data/partnerdesk.json"
BUILT_IN = {"support": {"address": "support@openatrium.example", "staff": ["staff@openatrium.example"]}}

_TABLES = {
    "support": ("address", "name", "staff", "escalation", "secret", "program_lead"),
    "store": ("path", "keep_sent_mail_days"),
    "intake": ("acks_per_hour", "history_before", *LOOP_KEYS),
    "report": ("dir",),
}
# Tables whose keys their own reader checks.
_OTHER_TABLES = ("imap", "smtp", "oauth2", "sla", "escalation", "lifecycle", "digest", "delivery", "trust",
                 "health",
                 *(t for t in MAILING_KEYS if "." not in t))


@dataclass(**FROZEN)
class Settings:
    source: str  # the file it came from, for messages
    support_address: str
    support_name: str = "Open Atrium Support"
    staff: frozenset[str] = frozenset()
    escalation: tuple[str, ...] = ()
    program_lead: str | None = None
    secret: str | None = None
    imap: ImapSettings | None = None
    smtp: SmtpSettings | None = None
    oauth2: OAuth2Settings | None = None  # when [imap] or [smtp] has auth = "oauth2"
    store_path: str = DEFAULT_STORE
    keep_sent_mail_days: int = 90  # the rendered copy of sent mail is kept this long (0: for ever)
    calendar: BusinessCalendar = BusinessCalendar()
    acks_per_hour: int = 3
    history_before: datetime | None = None
    ladder: tuple[Stage, ...] = DEFAULT_STAGES
    lifecycle: LifecycleConfig = LifecycleConfig()
    digest: DigestConfig = DigestConfig()
    mailings: MailingsConfig = MailingsConfig()
    health: HealthConfig = HealthConfig()
    heartbeat_path: str | None = None  # None: next to the store
    metrics_path: str | None = None  # None: no Prometheus textfile
    report_dir: str | None = None  # [report] dir: the status report is refreshed there every cycle
    loop: LoopPolicy = LoopPolicy()  # [intake] acks_per_hour, answers_per_hour_all, answers_resume_at
    delivery: DeliveryPolicy = DeliveryPolicy()  # [delivery]
    trust: TrustSettings = TrustSettings()

    @property
    def heartbeat_file(self) -> str:
        return self.heartbeat_path or self.store_path + ".heartbeat"

    @property
    def team(self) -> frozenset[str]:
        """Recognised as staff without getting every notification: the escalation list and the lead."""
        return frozenset(self.escalation) | frozenset(a for a in (self.program_lead,) if a)

    def intake(self) -> IntakeSettings:
        return IntakeSettings(support_address=self.support_address, support_name=self.support_name,
                              staff=self.staff, team=self.team, calendar=self.calendar,
                              acks_per_hour=self.acks_per_hour, reopen_days=self.lifecycle.reopen_days,
                              recipient_delimiter=self.trust.recipient_delimiter,
                              lapse_grace_days=self.mailings.renewals.grace_days)

    def ladder_config(self) -> LadderConfig:
        return LadderConfig(support_address=self.support_address, support_name=self.support_name,
                            staff=self.staff, escalation=self.escalation, program_lead=self.program_lead,
                            stages=self.ladder)

    def require_staff(self) -> None:
        """The intake needs staff (they are told, and only their replies reach partners); reading verbs do not."""
        if not self.staff:
            raise ConfigError(f"{self.source}: [support] staff: list at least one staff address; they are told "
                              f"of every request, and only their replies reach partners")


def known_keys() -> dict[str, tuple[str, ...]]:
    """Every table the config file may have and its keys ("calls.dates": the array of tables), for the
    example config's test: partnerdesk.example.toml must show each of them."""
    from .automatic import DELIVERY_KEYS
    from .health import KEYS as HEALTH_KEYS
    from .oauth2 import KEYS as OAUTH2_KEYS
    from .promise import KEYS as PROMISE_KEYS
    from .servers import IMAP_KEYS, SMTP_KEYS
    from .sla import KEYS as SLA_KEYS
    from .trust import KEYS as TRUST_KEYS

    return {**{t: tuple(k) for t, k in _TABLES.items()}, "imap": tuple(sorted(IMAP_KEYS)),
            "smtp": tuple(sorted(SMTP_KEYS)), "sla": SLA_KEYS, "health": HEALTH_KEYS, "oauth2": tuple(OAUTH2_KEYS),
            "delivery": DELIVERY_KEYS, "trust": tuple(TRUST_KEYS), **PROMISE_KEYS, **MAILING_KEYS}


def load_file(path: str | None) -> Settings:
    """The settings of a TOML file; a relative [store] path is relative to the file, not to the cwd."""
    if path is None:
        return load(BUILT_IN, "(built-in defaults)")
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text; save the config file as UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    s = load(data, str(p))

    def beside(path: str | None) -> str | None:  # relative paths are relative to the config file
        return path if path is None or Path(path).is_absolute() else str((p.parent / path).resolve())

    return replace(s, store_path=beside(s.store_path), heartbeat_path=beside(s.heartbeat_path),
                   metrics_path=beside(s.metrics_path), report_dir=beside(s.report_dir))


def load(data: dict[str, Any], source: str) -> Settings:
    r = Reader(data, source)
    known = sorted(set(_TABLES) | set(_OTHER_TABLES))
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise r.fail(f"[{unknown[0]}]", f"unknown table; known: {', '.join(known)}")
    for name in sorted(set(_OTHER_TABLES) & set(data)):  # `sla = 5` must not reach a table's own reader
        if not isinstance(data[name], dict):
            raise r.fail(f"[{name}]", "must be a table")

    support = r.section("support", _TABLES["support"], required=True)
    address = r.address(r.get(support, "[support]", "address", str), "[support] address")
    staff = frozenset(r.addresses(support, "[support]", "staff"))
    if address in staff:
        raise r.fail("[support] staff", "must not contain the support address itself (it would answer itself)")
    escalation = r.addresses(support, "[support]", "escalation")
    program_lead = r.address(support["program_lead"], "[support] program_lead") if "program_lead" in support else None

    imap, smtp = read_server(r, "imap"), read_server(r, "smtp")
    if (imap is None) != (smtp is None):
        raise r.fail("[imap]" if imap is None else "[smtp]", "give both [imap] and [smtp], or neither (local spool)")

    store = r.section("store", _TABLES["store"])
    intake = r.section("intake", _TABLES["intake"])
    history_before = None
    if "history_before" in intake:
        v = intake["history_before"]
        try:
            history_before = v if isinstance(v, datetime) else datetime.fromisoformat(str(v))
        except ValueError:
            raise r.fail("[intake] history_before", f"{v!r} is not an ISO-8601 date-time") from None
        if history_before.tzinfo is None:
            raise r.fail("[intake] history_before", "needs a UTC offset, e.g. 2026-11-01T00:00:00-05:00")
    keep_days = r.get(store, "[store]", "keep_sent_mail_days", int, 90)
    if keep_days < 0:
        raise r.fail("[store] keep_sent_mail_days", "must be 0 (keep for ever) or a number of days")
    acks = r.get(intake, "[intake]", "acks_per_hour", int, 3)
    if acks < 1:
        raise r.fail("[intake] acks_per_hour", "must be at least 1")

    health, heartbeat, metrics = read_health(r)
    report = r.section("report", _TABLES["report"])
    report_dir = r.get(report, "[report]", "dir", str, None)
    if report_dir is not None and not report_dir.strip():
        raise r.fail("[report] dir", "must name a folder, e.g. \"/var/www/partnerdesk\" (or leave the key out)")

    ladder = read_stages(r)
    check_people(r, ladder, escalation=escalation, program_lead=program_lead, support_address=address)
    return Settings(
        source=source,
        support_address=address,
        support_name=r.get(support, "[support]", "name", str, "Open Atrium Support"),
        staff=staff,
        escalation=escalation,
        program_lead=program_lead,
        secret=r.get(support, "[support]", "secret", str, None),
        imap=imap,  # type: ignore[arg-type]
        smtp=smtp,  # type: ignore[arg-type]
        oauth2=read_oauth2(r, imap, smtp),  # type: ignore[arg-type]
        store_path=r.get(store, "[store]", "path", str, DEFAULT_STORE),
        keep_sent_mail_days=keep_days,
        calendar=read_sla(r),
        acks_per_hour=acks,
        history_before=history_before,
        ladder=ladder,
        lifecycle=read_lifecycle(r),
        digest=read_digest(r),
        mailings=read_mailings(r),
        health=health,
        heartbeat_path=heartbeat,
        metrics_path=metrics,
        report_dir=report_dir,
        loop=read_loop(r, acks),
        delivery=read_delivery(r),
        trust=read_trust(r, address),
    )

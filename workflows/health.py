"""Is the desk working? The heartbeat's content, the intake alarm, `status` and the Prometheus metrics.

Pure: the state of the last cycles (``Health``) and what one cycle did go in, the next state, the
alarm mail to staff and the lines for people come out. service/health.py keeps the state in the
heartbeat file (through a port) and queues the alarm; `status` reads the same file and the store.

The alarm: when no fetch has succeeded for ``alert_after`` (IMAP login refused, server gone...), staff
get ONE mail per outage (its key names the outage's start), and every cycle says so in its problems
(the daemon's log). If SMTP is down too, the mail waits in the outbox like any other and goes out when
SMTP is back; until then the log, the heartbeat file, `status` and the metrics are the routes left.
When intake works again after an alarm went out, staff get one "working again" mail.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Iterable

from .calendar import PROGRAM_TZ, format_duration, format_local
from .model import FROZEN, OutgoingMail
from .outbox import REPORT_AFTER, OutboxEntry, Status


@dataclass(**FROZEN)
class HealthConfig:
    alert_after: timedelta = timedelta(minutes=30)  # [health] intake_alert_minutes


@dataclass(**FROZEN)
class Link:
    """One server as the last cycles saw it: "ok", "failing" or "unknown" (not tried yet)."""

    state: str = "unknown"
    since: datetime | None = None  # when it entered that state
    last_ok: datetime | None = None
    error: str = ""

    def after(self, ok: bool, now: datetime, error: str = "") -> Link:
        state = "ok" if ok else "failing"
        since = self.since if self.state == state and self.since else now
        return Link(state=state, since=since, last_ok=now if ok else self.last_ok, error="" if ok else error)

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "since": _iso(self.since), "last_ok": _iso(self.last_ok), "error": self.error}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Link:
        d = d or {}
        return cls(state=d.get("state", "unknown"), since=_dt(d.get("since")), last_ok=_dt(d.get("last_ok")),
                   error=d.get("error", ""))


@dataclass(**FROZEN)
class Health:
    started: datetime | None = None  # when this record began (the first cycle it knows of)
    last_cycle: datetime | None = None
    last_tick: datetime | None = None  # the ticks (escalations, digest, mailings) last ran through
    intake: Link = Link()  # fetching mail (IMAP login, or the spool folder)
    sending: Link = Link()  # handing mail to SMTP
    alert_for: str = ""  # the outage staff were told about (its start), "" when none
    alert_queued: str = ""  # outbox key of that alarm

    def to_dict(self) -> dict[str, Any]:
        return {"started": _iso(self.started), "last_cycle": _iso(self.last_cycle), "last_tick": _iso(self.last_tick),
                "intake": self.intake.to_dict(), "sending": self.sending.to_dict(), "alert_for": self.alert_for,
                "alert_queued": self.alert_queued}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Health:
        d = d or {}
        return cls(started=_dt(d.get("started")), last_cycle=_dt(d.get("last_cycle")),
                   last_tick=_dt(d.get("last_tick")), intake=Link.from_dict(d.get("intake")),
                   sending=Link.from_dict(d.get("sending")), alert_for=d.get("alert_for", ""),
                   alert_queued=d.get("alert_queued", ""))


def _iso(v: datetime | None) -> str | None:
    return v.isoformat() if v else None


def _dt(v: Any) -> datetime | None:
    return datetime.fromisoformat(v) if isinstance(v, str) and v else None


# -- one cycle ------------------------------------------------------------------------------------------
def after_intake(h: Health, now: datetime, error: str | None) -> Health:
    """``error`` None: the fetch succeeded (even with no new mail)."""
    return replace(h, started=h.started or now, intake=h.intake.after(error is None, now, error or ""))


def after_sending(h: Health, now: datetime, *, sent: int, retried: int, last_error: str) -> Health:
    """What the cycle's drains did: something accepted (ok), only temporary failures (failing), or nothing
    to send (the state stays as it was)."""
    if sent:
        return replace(h, sending=h.sending.after(True, now))
    if retried:
        return replace(h, sending=h.sending.after(False, now, last_error))
    return h


def after_ticks(h: Health, now: datetime) -> Health:
    return replace(h, last_tick=now)


def outage_start(h: Health) -> datetime | None:
    """Since when no fetch has succeeded (the last success, or the first failure if none ever did)."""
    if h.intake.state != "failing":
        return None
    return h.intake.last_ok or h.intake.since


def intake_problem(h: Health, now: datetime, cfg: HealthConfig) -> str | None:
    start = outage_start(h)
    if start is None or now - start < cfg.alert_after:
        return None
    told = "staff were told" if h.alert_for else "staff are being told"
    return (f"ALERT: no mail has been taken in since {start.isoformat()} ({format_duration(now - start)}): "
            f"{h.intake.error or 'the mail source fails'}; {told} (if SMTP works); see `run.py status`")


def alarm(h: Health, now: datetime, cfg: HealthConfig, *, staff: Iterable[str], support_name: str,
          support_address: str, timezone: str = PROGRAM_TZ) -> tuple[Health, OutgoingMail | None]:
    """The alarm mail due now (once per outage), or the "working again" mail after one; else None.
    Times in the mail are for people, in the program's time zone (the keys keep ISO-8601)."""
    to = tuple(sorted(staff))
    start = outage_start(h)

    def local(t: datetime) -> str:
        return format_local(t, timezone, with_year=True)

    if start is not None and now - start >= cfg.alert_after and h.alert_for != start.isoformat() and to:
        out = _mail(f"health:intake-down:{start.isoformat()}", to, support_name,
                    f"partnerdesk: no mail taken in since {local(start)}",
                    {"down": True, "since": local(start), "for": format_duration(now - start),
                     "error": h.intake.error, "smtp": h.sending.state, "support_address": support_address,
                     "support_name": support_name})
        return replace(h, alert_for=start.isoformat(), alert_queued=out.key), out
    if start is None and h.alert_for:
        back = h.intake.since or now
        out = _mail(f"health:intake-ok:{h.alert_for}", to, support_name,
                    f"partnerdesk: taking in mail again since {local(back)}",
                    {"down": False, "since": local(datetime.fromisoformat(h.alert_for)), "back": local(back),
                     "error": "", "smtp": h.sending.state,
                     "for": format_duration(back - datetime.fromisoformat(h.alert_for)),
                     "support_address": support_address, "support_name": support_name})
        return replace(h, alert_for="", alert_queued=""), out if to else None
    return h, None


def _mail(key: str, to: tuple[str, ...], name: str, subject: str, context: dict[str, Any]) -> OutgoingMail:
    return OutgoingMail(key=key, kind="health", template="health_alert", to=to, subject=subject, from_name=name,
                        auto_kind="auto-generated", reply_to_support=False, context=context)


# -- what `status` and the metrics say --------------------------------------------------------------------
def report(h: Health | None, entries: list[OutboxEntry], now: datetime, cfg: HealthConfig, *,
           daemon_pid: int | None = None) -> dict[str, Any]:
    """Everything `status` prints, as data (the --json output)."""
    pending = [e for e in entries if e.status is Status.PENDING]
    stuck = [e for e in pending if e.first_failed_at and now - e.first_failed_at >= REPORT_AFTER]
    oldest = min(pending, key=lambda e: e.created_at) if pending else None
    h = h or Health()
    problems = []
    if h.last_cycle is None:
        problems.append("no cycle has run yet (no heartbeat): start the daemon (`run.py run`) or run `run.py once`")
    if (p := intake_problem(h, now, cfg)) is not None:
        problems.append(p)
    elif h.intake.state == "failing":
        problems.append(f"the last fetch failed: {h.intake.error}")
    if h.sending.state == "failing":
        problems.append(f"sending fails since {_iso(h.sending.since)}: {h.sending.error}")
    if stuck:
        problems.append(f"{len(stuck)} mail(s) failing to go out for over {int(REPORT_AFTER.total_seconds() // 60)} "
                        f"minutes; see `run.py outbox list --status pending`")
    return {
        "now": now.isoformat(),
        "daemon": {"running": daemon_pid is not None, "pid": daemon_pid},
        "last_cycle": _iso(h.last_cycle),
        "last_fetch": _iso(h.intake.last_ok),
        "last_send": _iso(h.sending.last_ok),
        "last_tick": _iso(h.last_tick),
        "intake": h.intake.to_dict(),
        "sending": h.sending.to_dict(),
        "outbox": {"pending": len(pending), "stuck": len(stuck),
                   "oldest_pending": ({"key": oldest.key, "queued_at": oldest.created_at.isoformat(),
                                       "tries": oldest.attempts, "last_error": oldest.detail} if oldest else None)},
        "alert": {"outage_since": h.alert_for or None, "mail": h.alert_queued or None},
        "problems": problems,
        "healthy": not problems,
    }


def _ts(v: str | None) -> str:
    return f"{datetime.fromisoformat(v).timestamp():.0f}" if v else "0"


def metrics(r: dict[str, Any]) -> str:
    """The report in the node_exporter textfile collector's format (Prometheus exposition text)."""
    now = datetime.fromisoformat(r["now"])
    oldest = r["outbox"]["oldest_pending"]
    rows = [
        ("partnerdesk_up", "gauge", "1 when the last cycle found no problem", 1 if r["healthy"] else 0),
        ("partnerdesk_heartbeat_timestamp_seconds", "gauge", "when the last cycle ended (Unix time)",
         _ts(r["last_cycle"])),
        ("partnerdesk_last_fetch_success_timestamp_seconds", "gauge", "when mail was last fetched successfully",
         _ts(r["last_fetch"])),
        ("partnerdesk_last_send_success_timestamp_seconds", "gauge", "when SMTP last accepted a mail",
         _ts(r["last_send"])),
        ("partnerdesk_last_tick_timestamp_seconds", "gauge", "when the scheduled work last ran through",
         _ts(r["last_tick"])),
        ("partnerdesk_intake_ok", "gauge", "1 when the last fetch succeeded", int(r["intake"]["state"] == "ok")),
        ("partnerdesk_smtp_ok", "gauge", "1 unless the last sending attempt failed",
         int(r["sending"]["state"] != "failing")),
        ("partnerdesk_outbox_pending", "gauge", "mail queued and not sent yet", r["outbox"]["pending"]),
        ("partnerdesk_outbox_stuck", "gauge", "pending mail failing for over an hour", r["outbox"]["stuck"]),
        ("partnerdesk_outbox_oldest_pending_age_seconds", "gauge", "age of the oldest pending mail",
         f"{(now - datetime.fromisoformat(oldest['queued_at'])).total_seconds():.0f}" if oldest else "0"),
    ]
    out = []
    for name, kind, text, value in rows:
        out += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {value}"]
    return "\n".join(out) + "\n"

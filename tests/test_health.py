"""The health rules (workflows/health.py) and the heartbeat file: one alarm per outage, the problems
`status` lists, and metrics in the textfile collector's format."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

from store.heartbeat import HeartbeatFile
from workflows import health
from workflows.health import Health, HealthConfig
from workflows.outbox import OutboxEntry

T0 = datetime(2027, 1, 21, 15, 0, tzinfo=timezone.utc)
CFG = HealthConfig(alert_after=timedelta(minutes=30))
STAFF = dict(staff=["b@x.example", "a@x.example"], support_name="Support", support_address="s@x.example")


def test_one_alarm_per_outage_and_one_all_clear():
    h = health.after_intake(Health(), T0, None)
    mails = []
    for minutes in (10, 20, 31, 40, 90):  # failing from T0 + 10 on
        h = health.after_intake(h, T0 + timedelta(minutes=minutes), "IMAP login refused")
        h, m = health.alarm(h, T0 + timedelta(minutes=minutes), CFG, **STAFF)
        mails.append(m)
    assert [m is not None for m in mails] == [False, False, True, False, False]
    alarm = mails[2]
    assert alarm.key == f"health:intake-down:{T0.isoformat()}" and alarm.to == ("a@x.example", "b@x.example")
    assert "IMAP login refused" in alarm.context["error"]
    assert "ALERT" in health.intake_problem(h, T0 + timedelta(minutes=90), CFG)
    h = health.after_intake(h, T0 + timedelta(minutes=100), None)
    h, back = health.alarm(h, T0 + timedelta(minutes=100), CFG, **STAFF)
    assert back is not None and back.key.startswith("health:intake-ok:") and h.alert_for == ""
    assert health.alarm(h, T0 + timedelta(minutes=110), CFG, **STAFF)[1] is None
    assert health.intake_problem(h, T0 + timedelta(minutes=110), CFG) is None


def test_report_and_metrics():
    h = health.after_intake(Health(), T0, None)
    h = health.after_sending(h, T0, sent=2, retried=0, last_error="")
    h = health.after_ticks(health.after_intake(h, T0 + timedelta(hours=1), "cannot reach"), T0 + timedelta(hours=1))
    stuck = OutboxEntry(key="ack:1", kind="ack", message_id="<m>", mail_from="", rcpt_to=("p@x.example",), raw="",
                        created_at=T0, first_failed_at=T0, attempts=5, detail="421 busy")
    r = health.report(h, [stuck], T0 + timedelta(hours=2), CFG, daemon_pid=42)
    assert r["outbox"] == {"pending": 1, "stuck": 1, "oldest_pending": {"key": "ack:1", "queued_at": T0.isoformat(),
                                                                        "tries": 5, "last_error": "421 busy"}}
    assert r["daemon"] == {"running": True, "pid": 42} and not r["healthy"]
    assert any(p.startswith("ALERT") for p in r["problems"]) and any("failing to go out" in p for p in r["problems"])
    text = health.metrics(r)
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert all(re.fullmatch(r"partnerdesk_[a-z_]+ -?\d+(\.\d+)?", s) for s in samples), samples
    assert f"partnerdesk_last_fetch_success_timestamp_seconds {T0.timestamp():.0f}" in samples
    assert "partnerdesk_outbox_oldest_pending_age_seconds 7200" in samples and "partnerdesk_intake_ok 0" in samples
    for name in {s.split()[0] for s in samples}:
        assert f"# TYPE {name} gauge" in text and f"# HELP {name} " in text


def test_the_heartbeat_round_trips_and_is_readable_by_others(tmp_path):
    f = HeartbeatFile(tmp_path / "pd.json.heartbeat", tmp_path / "m" / "pd.prom")
    h = health.after_intake(Health(), T0, "x")
    f.write(h.to_dict())
    assert Health.from_dict(f.read()) == h
    assert oct((tmp_path / "pd.json.heartbeat").stat().st_mode & 0o777) == "0o644"
    f.write_metrics("partnerdesk_up 1\n")
    assert (tmp_path / "m" / "pd.prom").read_text() == "partnerdesk_up 1\n"
    assert not list(tmp_path.glob("**/*.tmp"))
    assert json.loads((tmp_path / "pd.json.heartbeat").read_text())["intake"]["state"] == "failing"

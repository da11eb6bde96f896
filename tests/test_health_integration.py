"""Health on real servers: the heartbeat, `status`, the metrics, and the intake alarm sent by SMTP while
IMAP is unreachable (Dovecot + SMTP on 127.0.0.1; the IMAP outage is a config pointing at a closed port)."""

from __future__ import annotations

import email
import email.policy
import json
import re
import socket

import pytest

pytestmark = pytest.mark.integration

T0 = "2026-12-01T10:00:00-05:00"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subjects(raws: list[bytes]) -> list[str]:
    return [str(email.message_from_bytes(r, policy=email.policy.default)["Subject"]) for r in raws]


def imap_at(desk, port: int) -> None:
    text = re.sub(r"(\[imap\]\nhost = \"127.0.0.1\"\nport = )\d+", rf"\g<1>{port}", desk.config.read_text())
    desk.config.write_text(text)


def test_intake_outage_alarms_staff_once_by_smtp_then_says_it_works_again(desk, tmp_path):
    metrics = tmp_path / "textfile" / "partnerdesk.prom"
    desk.write_config(f'[health]\nintake_alert_minutes = 30\nmetrics_file = "{metrics}"\n')
    desk.run("once", now=T0)
    st = json.loads(desk.run("status", "--json", now="2026-12-01T10:05:00-05:00").stdout)
    assert st["healthy"] and st["intake"]["state"] == "ok" and st["last_fetch"].startswith("2026-12-01T15:00")
    assert st["daemon"] == {"running": False, "pid": None}
    assert "partnerdesk_intake_ok 1" in metrics.read_text()
    assert oct(metrics.stat().st_mode & 0o777) == "0o644"  # node_exporter runs as another user

    good = desk.servers.imap_port
    imap_at(desk, closed_port())
    p = desk.run("once", now="2026-12-01T10:10:00-05:00", check=False)
    assert p.returncode == 75 and "ALERT" not in p.stderr  # 10 minutes: not yet
    p = desk.run("once", now="2026-12-01T10:40:00-05:00", check=False)
    assert p.returncode == 75, p.stderr
    assert "ALERT: no mail has been taken in since 2026-12-01T15:00" in p.stderr and "cannot reach" in p.stderr
    for staff in desk.staff:
        [alarm] = desk.servers.wait_for(staff, 1)
        msg = email.message_from_bytes(alarm, policy=email.policy.default)
        assert msg["Subject"] == "partnerdesk: no mail taken in since Tuesday, December 1, 2026, 10:00 AM ET"
        assert msg["Auto-Submitted"] == "auto-generated"
        assert "cannot reach IMAP server" in msg.get_body(preferencelist=("plain",)).get_content()
    st = json.loads(desk.run("status", "--json", now="2026-12-01T10:41:00-05:00").stdout)
    assert not st["healthy"] and st["intake"]["state"] == "failing"
    assert st["alert"]["outage_since"].startswith("2026-12-01T15:00") and st["last_send"] is not None
    assert "partnerdesk_intake_ok 0" in metrics.read_text()
    text = desk.run("status", now="2026-12-01T10:41:00-05:00").stdout
    assert "intake       FAILING since" in text and "problem: ALERT" in text

    p = desk.run("once", now="2026-12-01T11:10:00-05:00", check=False)  # still down: said again, not mailed
    assert p.returncode == 75 and "ALERT" in p.stderr
    assert len(desk.servers.fetch_all(desk.staff[0])) == 1

    imap_at(desk, good)
    desk.run("once", now="2026-12-01T11:20:00-05:00")
    got = subjects(desk.servers.wait_for(desk.staff[0], 2))
    assert got[1] == "partnerdesk: taking in mail again since Tuesday, December 1, 2026, 11:20 AM ET"
    assert json.loads(desk.run("status", "--json", now="2026-12-01T11:21:00-05:00").stdout)["healthy"]


def test_heartbeat_file_is_where_the_config_says(desk, tmp_path):
    desk.write_config('[health]\nheartbeat = "hb/heartbeat.json"\n')
    desk.run("once", now=T0)
    data = json.loads((desk.config.parent / "hb" / "heartbeat.json").read_text())
    assert data["intake"]["state"] == "ok" and data["last_tick"]

"""The [health] table: where the heartbeat and the Prometheus metrics go, and when staff are alarmed.

    [health]
    heartbeat = "partnerdesk-data/partnerdesk.json.heartbeat"   # default: next to the store
    metrics_file = "/var/lib/prometheus/node-exporter/partnerdesk.prom"   # default: no metrics
    intake_alert_minutes = 30   # no mail taken in for this long: staff are told once
"""

from __future__ import annotations

from datetime import timedelta

from workflows.health import HealthConfig

from .reader import Reader

KEYS = ("heartbeat", "metrics_file", "intake_alert_minutes")


def read_health(r: Reader) -> tuple[HealthConfig, str | None, str | None]:
    t = r.section("health", KEYS)
    minutes = r.whole(t, "[health]", "intake_alert_minutes", 30, 1, 7 * 24 * 60)
    heartbeat = r.get(t, "[health]", "heartbeat", str, None)
    metrics = r.get(t, "[health]", "metrics_file", str, None)
    if metrics is not None and not metrics.endswith(".prom"):
        raise r.fail("[health] metrics_file", f"{metrics!r} must end in .prom (node_exporter's textfile collector "
                                              f"reads only those)")
    return HealthConfig(alert_after=timedelta(minutes=minutes)), heartbeat, metrics

"""The heartbeat file (JSON: what the last cycles saw, see workflows/health.py) and the optional
Prometheus textfile, both written atomically (temp file, fsync, rename): a reader, `status` or
node_exporter's textfile collector, never sees half a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .atomic import atomic_write_bytes


class HeartbeatFile:
    def __init__(self, path: str | Path, metrics_path: str | Path | None = None) -> None:
        self.path = Path(path)
        self.metrics_path = Path(metrics_path) if metrics_path else None
        self.metrics_wanted = self.metrics_path is not None

    def read(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return data if isinstance(data, dict) else None

    def write(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, (json.dumps(state, indent=2) + "\n").encode(), mode=0o644)

    def write_metrics(self, text: str) -> None:
        if self.metrics_path is None:
            return
        self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.metrics_path, text.encode(), mode=0o644)  # node_exporter runs as another user

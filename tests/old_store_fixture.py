"""What the tests of a store written by an older version share: running a verb of the code under test
on the fixture's copy, and the output that version printed (recorded, with PD_RECORD=1, by running the
same test with PD_CODE naming a checkout of that version)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = Path(os.environ.get("PD_CODE") or ROOT)  # the code under test (another checkout only to record)


def run(config: Path, *args: str, now: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CODE / "run.py"), "--config", str(config), "--now", now, *args],
                          capture_output=True, text=True, cwd=config.parent, timeout=60)


def recorded(expected: Path, name: str, text: str, tmp: Path) -> tuple[str, str]:
    """(``text`` as compared, what the older version printed): line ends and the temp folder evened out."""
    text = text.replace("\r\n", "\n").replace(str(tmp), "TMP")
    path = expected / f"{name}.txt"
    if os.environ.get("PD_RECORD"):
        expected.mkdir(exist_ok=True)
        path.write_text(text)
    return text, path.read_text()

"""The daemon on the embedded default (local spool, no mail account): picks up mail dropped while it runs."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_daemon_takes_in_spool_mail_dropped_while_it_runs(tmp_path):
    daemon = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "run"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        inbox = tmp_path / "partnerdesk-data" / "spool" / "inbox"
        deadline = time.monotonic() + 20
        while not inbox.is_dir() and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.copyfile(ROOT / "templates" / "demo" / "inbox" / "05-stranger.eml", inbox / "new.eml")
        outbox = tmp_path / "partnerdesk-data" / "spool" / "outbox"
        want = {"OA-1-ack.eml", "OA-1-notify.eml"}

        def names() -> set[str]:
            return {p.name.split("-", 1)[1] for p in outbox.glob("*.eml")}

        while time.monotonic() < deadline and not want <= names():
            time.sleep(0.1)
        # The daemon runs on the wall clock: at digest time (9 AM ET) the day's digest goes out too.
        assert want <= names() and names() - want <= {"mail-digest.eml"}, names()
        assert (inbox / "done" / "new.eml").exists()
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0 and "stopped" in err

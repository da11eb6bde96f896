"""Exit codes of `run.py` itself, as a service manager or a cron job sees them.

3: another partnerdesk already works on the same store (the second one touches nothing);
75 (EX_TEMPFAIL): a temporary failure such as an unreachable IMAP server: run again later.
No mail servers needed: the spool mode and a port nobody listens on are enough.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
SUPPORT = "support@openatrium.example"


def run(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run.py"), "--config", str(config), *args],
                          cwd=config.parent, capture_output=True, text=True, timeout=120)


def spool_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "partnerdesk.toml"
    cfg.write_text(f'[support]\naddress = "{SUPPORT}"\nstaff = ["staff@openatrium.example"]\n'
                   f'[store]\npath = "data/store.json"\n')
    return cfg


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_second_partnerdesk_on_the_same_store_exits_3_and_names_the_first(tmp_path):
    cfg = spool_config(tmp_path)
    lock = tmp_path / "data" / "store.json.daemon.lock"  # holds the pid of whoever has the store
    daemon = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--config", str(cfg), "run"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (lock.exists() and lock.read_text().strip() == str(daemon.pid)):
            assert daemon.poll() is None, daemon.communicate()
            assert time.monotonic() < deadline, "the daemon never took the store's lock"
            time.sleep(0.05)
        for verb in ("once", "run"):
            second = run(cfg, verb)
            assert second.returncode == 3, (verb, second.stderr)
            assert f"pid {daemon.pid}" in second.stderr and str(tmp_path / "data" / "store.json") in second.stderr
            assert second.stdout == ""  # it did nothing: no cycle summary
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err
    # Once the first has stopped, the store is free again.
    again = run(cfg, "once")
    assert again.returncode == 0 and again.stdout.startswith("fetched 0"), again.stderr


def test_an_unreachable_imap_server_exits_75_and_says_so(tmp_path):
    cfg = tmp_path / "partnerdesk.toml"
    port = unused_port()  # nobody listens: the connection is refused
    cfg.write_text(f'[support]\naddress = "{SUPPORT}"\nstaff = ["staff@openatrium.example"]\n'
                   f'[imap]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\nusername = "{SUPPORT}"\n'
                   f'password = "pw"\n[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
                   f'[store]\npath = "data/store.json"\n')
    p = run(cfg, "once")
    assert p.returncode == 75, p.stderr
    assert "temporary failure" in p.stderr and f"cannot reach IMAP server 127.0.0.1:{port}" in p.stderr
    assert "nothing was lost" in p.stderr and "Traceback" not in p.stderr
    assert "before the failure: fetched 0" in p.stderr and p.stdout == ""  # the rest of the cycle ran

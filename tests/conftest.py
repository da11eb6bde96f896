"""Shared fixtures: real mail servers and a partnerdesk deployment pointed at them.

``servers`` is one Dovecot + SMTP pair for the whole session (start-up is cheap,
but each test still gets its own addresses, so tests never see each other's mail).
``desk`` is a configured partnerdesk for one test: its own support mailbox, staff
and partner mailboxes, config file, roster and store, and ``desk.run(...)`` runs
``python run.py`` in a subprocess exactly as a user would.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.mailservers import MailServers

ROOT = Path(__file__).resolve().parent.parent
_ids = itertools.count(1)


@pytest.fixture(scope="session")
def servers():
    # Not under pytest's basetemp: a second pytest run resets that to mode 0700, which
    # locks Dovecot's mail uid out of a running session's mailboxes.
    root = Path(tempfile.mkdtemp(prefix="partnerdesk-mail-"))
    try:
        with MailServers(root) as ms:
            yield ms
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Desk:
    servers: MailServers
    dir: Path
    n: int
    support: str
    staff: list[str]
    escalation: list[str]
    lead: str
    partner: str  # contact with a seat
    colleague: str  # contact without a seat
    stranger: str
    extra_config: str = ""
    config: Path = field(init=False)

    def __post_init__(self) -> None:
        self.config = self.dir / "partnerdesk.toml"
        self.write_config()

    def write_config(self, extra: str | None = None) -> None:
        if extra is not None:
            self.extra_config = extra
        s = self.servers
        staff = ", ".join(f'"{a}"' for a in self.staff)
        esc = ", ".join(f'"{a}"' for a in self.escalation)
        self.config.write_text(f"""
[support]
address = "{self.support}"
name = "Open Atrium Support"
staff = [{staff}]
escalation = [{esc}]
program_lead = "{self.lead}"

[imap]
host = "127.0.0.1"
port = {s.imap_port}
security = "none"
username = "{self.support}"
password_env = "PD_TEST_PASSWORD"
idle = true
poll_seconds = 1

[smtp]
host = "127.0.0.1"
port = {s.smtp_port}
security = "none"

[store]
path = "store/partnerdesk.json"
{self.extra_config}
""")

    def run(self, *args: str, now: str | None = None, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [sys.executable, str(ROOT / "run.py"), "--config", str(self.config)]
        if now:
            cmd += ["--now", now]
        cmd += list(args)
        env = dict(os.environ, PD_TEST_PASSWORD="pw")
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=self.dir)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
        return p

    def roster(self, rows: list[str]) -> Path:
        path = self.dir / "roster.csv"
        header = "partner_id,partner_name,plan,renews_on,contact_name,contact_email,roles,trained_on\n"
        path.write_text(header + "\n".join(rows) + "\n")
        return path

    def append(self, raw: bytes, when=None, address: str | None = None, folder: str = "INBOX") -> None:
        """Put a message in a mailbox with a chosen INTERNALDATE (deterministic clocks)."""
        with self.servers.imap(address or self.support) as c:
            c.append(folder, raw, msg_time=when)


@pytest.fixture
def desk(servers, tmp_path) -> Desk:
    n = next(_ids)
    d = Desk(
        servers=servers,
        dir=tmp_path,
        n=n,
        support=f"support{n}@example.test",
        staff=[f"staff{n}a@example.test", f"staff{n}b@example.test"],
        escalation=[f"esc{n}@example.test"],
        lead=f"lead{n}@example.test",
        partner=f"antonio{n}@shop{n}.example.test",
        colleague=f"giulia{n}@shop{n}.example.test",
        stranger=f"stranger{n}@example.test",
    )
    for a in [d.support, *d.staff, *d.escalation, d.lead, d.stranger, d.partner, d.colleague]:
        servers.add_user(a)
    return d

"""SIGKILL while a mailing is being sent: on restart at most one mail per open SMTP connection goes out
again, and it is the same mail (the same Message-ID); nobody is left out.

The README states it so: the window is a connection's DATA exchange whose result is not yet on disk,
and a connection does not end its next DATA before that result is.
"""

from __future__ import annotations

import email
import email.policy
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from tests.conftest import ROOT
from tests.test_mailings_integration import CALLS, INVITES_DUE

pytestmark = pytest.mark.integration

CONNECTIONS = 2


def test_sigkill_mid_mailing_resends_at_most_one_mail_per_connection_with_the_same_message_id(desk):
    n = 240
    desk.write_config(CALLS.replace("[calls]", '[mailings]\nenabled = ["calls"]\n[calls]'))
    cfg = desk.config.read_text().replace('security = "none"\n\n[store]',
                                          f'security = "none"\nrate_per_minute = 0\nconnections = {CONNECTIONS}\n\n[store]')
    desk.config.write_text(cfg)
    # Contacts outside the servers' local domains: the SMTP server takes the mail and keeps it.
    rows = [f"p{i},Partner {i},standard,2027-09-30,Person {i},c{i}@shop{i % 7}.kill{desk.n}.invalid,primary,"
            for i in range(n)]
    desk.run("partners", "import", str(desk.roster(rows)), now="2026-12-29T10:00:00-05:00")
    s = desk.servers
    s.clear_received()
    env = dict(os.environ, PD_TEST_PASSWORD="pw")
    cmd = [sys.executable, str(ROOT / "run.py"), "--config", str(desk.config), "--now", INVITES_DUE, "once"]
    kills = 0
    for stop_at in (40, 130):
        proc = subprocess.Popen(cmd, cwd=desk.dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while len(s.received) < stop_at and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        assert proc.poll() is None, "the mailing ended before the kill; it should still be sending"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        assert len(s.received) < n, "the kill should land in the middle of the mailing"
    desk.run("once", now=INVITES_DUE)  # the restart finishes the mailing
    assert desk.run("once", now=INVITES_DUE).stdout.startswith("fetched 0")

    mails = [email.message_from_bytes(r.data, policy=email.policy.default) for r in s.received]
    invites = [m for m in mails if m["X-Partnerdesk-Kind"] == "call-invite"]
    per_rcpt = Counter(str(m["To"]) for m in invites)
    assert set(per_rcpt) == {f"c{i}@shop{i % 7}.kill{desk.n}.invalid" for i in range(n)}, "someone was left out"
    ids = {}
    for m in invites:
        ids.setdefault(str(m["To"]), set()).add(m["Message-ID"])
    assert all(len(v) == 1 for v in ids.values()), "a resend must be the same mail"
    again = sum(per_rcpt.values()) - n
    assert again <= kills * CONNECTIONS, f"{again} mails sent twice after {kills} kills"
    print(f"{kills} kills; {again} mails sent again (at most {kills * CONNECTIONS})")

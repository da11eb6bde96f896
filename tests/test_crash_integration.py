"""Kill the intake with SIGKILL at random points and count what partners and staff receive.

The promise: no request is lost, none is acknowledged twice with different mails. A mail
sent again after a crash keeps its Message-ID (the outbox records it before sending), so
the test counts distinct Message-IDs per request.
"""

from __future__ import annotations

import email
import email.policy
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from tests.conftest import ROOT
from tests.test_intake_integration import mail, send, setup_desk, threads

pytestmark = pytest.mark.integration


def test_sigkill_at_random_points_loses_and_duplicates_nothing(desk):
    setup_desk(desk)
    s = desk.servers
    n_requests = 24
    # One sender each (colleagues at the partner's shop), so the per-address ack limit plays no part.
    senders = [f"dev{i}@shop{desk.n}.example.test" for i in range(n_requests)]
    for i, who in enumerate(senders):
        s.add_user(who)
        send(desk, mail(who, desk.support, f"Question {i}", f"body {i}", msgid=f"<q{i}.{desk.n}@shop.example>"))

    rng = random.Random(20261129)
    env = dict(os.environ, PD_TEST_PASSWORD="pw")
    kills = 0
    for _ in range(8):
        p = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--config", str(desk.config), "once"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=desk.dir)
        time.sleep(rng.uniform(0.15, 1.2))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.wait(timeout=30)
    desk.run("once")  # a clean pass finishes whatever was left
    assert desk.run("once").stdout.startswith("fetched 0, new threads 0, acks 0, notifications 0")

    subjects = Counter(t["subject"] for t in threads(desk))
    assert subjects == Counter({f"Question {i}": 1 for i in range(n_requests)}), "a request lost or doubled"

    acks = [email.message_from_bytes(r, policy=email.policy.default) for who in senders for r in s.fetch_all(who)]
    acks = [m for m in acks if m["X-Partnerdesk-Kind"] == "ack"]
    per_request = Counter(m["In-Reply-To"] for m in acks)
    distinct = Counter(m["In-Reply-To"] for m in {m["Message-ID"]: m for m in acks}.values())
    assert set(distinct) == {f"<q{i}.{desk.n}@shop.example>" for i in range(n_requests)}, "a request never acked"
    assert max(distinct.values()) == 1, "one request acknowledged by two different mails"
    # Copies of the same mail (killed between the server's 250 and the store write) are possible but rare.
    assert sum(per_request.values()) - n_requests <= kills
    print(f"{kills} kills; {sum(per_request.values()) - n_requests} same-Message-ID resends")

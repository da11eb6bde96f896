"""Kill `once` with SIGKILL at random points, most of them while the intake is under way, and count
what partners and staff receive.

The promise: no request is lost, none is acknowledged twice with different mails. A mail sent
again after a crash keeps its Message-ID (the outbox records it before sending), so the test
counts distinct Message-IDs per request. It also counts the kills that landed while the intake was
under way (the process had logged in to IMAP and had not yet recorded and marked done every message
it was taking in) and fails if none did: a kill during start-up or after the intake proves nothing
about the intake.
"""

from __future__ import annotations

import email
import email.policy
import json
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


def cursor(desk) -> int:
    """The last UID the store records as taken in (0: none)."""
    try:
        data = json.loads((desk.dir / "store" / "partnerdesk.json").read_bytes())
    except (FileNotFoundError, ValueError):
        return 0
    return int(data.get("cursors", {}).get("INBOX", {}).get("last_uid", 0))


def flagged_done(desk) -> dict[int, bool]:
    with desk.servers.imap(desk.support) as c:
        c.select_folder("INBOX", readonly=True)
        return {uid: b"$PartnerdeskDone" in f for uid, f in c.get_flags(c.search("ALL")).items()}


def test_sigkill_at_random_points_loses_and_duplicates_nothing(desk):
    # No SMTP pacing: the drains are short, so the kills are spent on the intake.
    desk.config.write_text(desk.config.read_text().replace('security = "none"\n\n[store]',
                                                           'security = "none"\nrate_per_minute = 0\n\n[store]'))
    setup_desk(desk)
    s = desk.servers
    rng = random.Random(20261129)
    env = dict(os.environ, PD_TEST_PASSWORD="pw")
    rounds, per_round = 8, 4
    # One sender each (colleagues at the partner's shop), so the per-address ack limit plays no part.
    senders = [f"dev{i}@shop{desk.n}.example.test" for i in range(rounds * per_round)]
    kills, intake_kills = 0, 0
    for r in range(rounds):
        for i in range(r * per_round, (r + 1) * per_round):  # new mail every round: every run has intake work
            s.add_user(senders[i])
            send(desk, mail(senders[i], desk.support, f"Question {i}", f"body {i}", msgid=f"<q{i}.{desk.n}@shop.example>"))
        before = cursor(desk)
        p = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--config", str(desk.config), "once"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=desk.dir)
        if r % 4 == 3:  # now and then anywhere in the run: start-up, either drain, the ticks
            time.sleep(rng.uniform(0.1, 1.5))
        else:  # mostly a few milliseconds after it logged in to IMAP, which it does to take mail in
            deadline = time.monotonic() + 30
            while not s.imap_commands(desk.support) and p.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.05))
        logged_in = bool(s.imap_commands(desk.support))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
            p.wait(timeout=30)
            flags = flagged_done(desk)
            after = cursor(desk)
            finished = after == max(flags) and all(flags[u] for u in flags if u > before)
            intake_kills += logged_in and not finished
        else:
            p.wait(timeout=30)
    print(f"{kills} kills, {intake_kills} while the intake was under way")
    assert intake_kills >= 1, f"none of the {kills} kills landed while the intake was under way"

    desk.run("once")  # a clean pass finishes whatever was left
    assert desk.run("once").stdout.startswith("fetched 0, new threads 0, acks 0, notifications 0")
    n_requests = len(senders)
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
    print(f"{sum(per_request.values()) - n_requests} same-Message-ID resends")


class Killed(BaseException):
    """The process dies here (not an Exception: nothing on the way may catch it)."""


@pytest.mark.parametrize("done_folder", [None, "Done"])
def test_mail_recorded_but_not_yet_marked_done_when_the_process_died_is_marked_on_the_next_pass(desk, monkeypatch,
                                                                                                 done_folder):
    from contextlib import ExitStack

    import run
    from config.settings import load_file
    from service.cycle import cycle

    cfg = desk.config.read_text().replace('security = "none"\n\n[store]', 'security = "none"\nrate_per_minute = 0\n\n[store]')
    if done_folder:
        cfg = cfg.replace("poll_seconds = 1", f'poll_seconds = 1\ndone_folder = "{done_folder}"')
    desk.config.write_text(cfg)
    setup_desk(desk)
    for i in range(2):
        send(desk, mail(desk.stranger, desk.support, f"Question {i}", "body"))
    monkeypatch.setenv("PD_TEST_PASSWORD", "pw")
    with ExitStack() as stack:  # one cycle in this process, dying right after the store write
        app = run.Wiring(load_file(str(desk.config)), run.Clock(None), stack).desk()

        def dies(raw):
            raise Killed

        app.source.mark_done = app.source.mark_done_many = dies  # whichever the intake uses
        with pytest.raises(Killed):
            cycle(app)
    assert len(threads(desk)) == 2 and not any(flagged_done(desk).values())

    out = desk.run("once").stdout  # the next pass: nothing answered again, both marked done now
    assert out.startswith("fetched 2, new threads 0, acks 0, notifications 0") and "duplicates 2" in out, out
    if done_folder:
        assert flagged_done(desk) == {} and len(desk.servers.fetch_all(desk.support, done_folder)) == 2
    else:
        assert list(flagged_done(desk).values()) == [True, True]
    assert desk.run("once").stdout.startswith("fetched 0, new threads 0")

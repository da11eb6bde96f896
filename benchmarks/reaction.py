#!/usr/bin/env python3
"""How fast the daemon acknowledges a request, against Dovecot's own new-mail signal (IMAP IDLE).

    python3 benchmarks/reaction.py [--requests 50] [--mailing 2000]     # root, Dovecot

`run.py run` (the daemon, IMAP IDLE) watches a support mailbox; its SMTP goes to a capture server (a
process of its own) that notes when each mail arrives. The benchmark delivers requests into Dovecot
over LMTP, one from each of ``--requests`` partner contacts holding a seat, and for each notes:

* when Dovecot told an IDLE client of its own about the new mail (the floor: Dovecot batches its
  notifications, about 0.5 s after delivery);
* when the daemon's acknowledgement reached the SMTP server.

Three phases: requests one at a time with the daemon otherwise idle; the same while a mailing of
``--mailing`` call invitations is being decided and sent (the daemon is restarted with the call's
invitations due, so the phase starts with the decision; paced at 3,000 a minute, so that the
sending lasts the rest of the phase); a burst of ``--requests`` delivered at once. It prints p50,
p95 and the slowest of the time from delivery to the ack and from Dovecot's signal to the ack, the
daemon's peak RSS, and its CPU use while idle. ``PD_BENCH_DEBUG=1``: the daemon logs verbosely and
its log is kept beside the benchmark's output.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import PASSWORD  # noqa: E402

DOMAIN = "partners.bench.invalid"


class Watcher:
    """An IDLE client of our own: when Dovecot announces each new message (EXISTS)."""

    def __init__(self, ms, user: str) -> None:
        self.client = ms.imap(user)
        self.client.select_folder("INBOX", readonly=True)
        self.signals: list[float] = []
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        c = self.client
        c.idle()
        while not self.stop:
            for r in c.idle_check(timeout=0.5):
                if len(r) > 1 and r[1] == b"EXISTS":
                    t = time.monotonic()
                    n = int(r[0])
                    while len(self.signals) < n:
                        self.signals.append(t)
        c.idle_done()

    def close(self) -> None:
        self.stop = True
        self.thread.join(5)
        self.client.logout()


def request(addr: str, n: int, support: str) -> bytes:
    return (f"From: Partner {n} <{addr}>\r\nTo: {support}\r\nSubject: Help with Spaces {n}\r\n"
            f"Message-ID: <req{n}.{time.time_ns()}@{DOMAIN}>\r\nDate: Mon, 30 Nov 2026 10:00:00 -0500\r\n\r\n"
            f"We have a problem with Spaces permissions ({n}).\r\n").encode()


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--mailing", type=int, default=2000)
    args = ap.parse_args()
    from tests.mailservers import MailServers

    n = args.requests
    base = common.temp_base("partnerdesk-reaction-")
    daemon = None
    try:
        with MailServers(base / "servers") as ms:
            cap = common.Capture(base)
            support = "support-r@example.test"
            ms.add_user(support, PASSWORD)
            # A call whose invitations are due 14 days ahead: in the config from the second daemon on.
            start = (datetime.now(ZoneInfo("America/New_York")) + timedelta(days=14)).replace(
                second=0, microsecond=0, tzinfo=None)
            intake = """
[intake]
history_before = 2020-01-01T00:00:00+00:00
acks_per_hour = 100
"""
            calls = f"""
[calls]
invite_days_before = 14
reminder_days_before = 1
[[calls.dates]]
id = "call-bench"
start = {start.isoformat()}
[mailings]
enabled = ["calls"]
"""
            debug = bool(os.environ.get("PD_BENCH_DEBUG"))
            log_path = Path.cwd() / "reaction-daemon.log" if debug else base / "daemon.log"
            # The first daemon sends no mailing at all (not even the roster's welcome mail): "alone" is alone.
            quiet = "[mailings]\nenabled = []\n"
            d = common.desk(base, "daemon", ms, support, smtp_port=cap.port, rate=3000, extra=intake + quiet)
            (d / "partnerdesk.toml").write_text((d / "partnerdesk.toml").read_text().replace(
                "poll_seconds = 60", "poll_seconds = 300"))
            requesters = [f"r{i}@{DOMAIN}" for i in range(3 * n)]
            rows = ["partner_id,partner_name,plan,renews_on,contact_name,contact_email,roles,trained_on"]
            rows += [f"req,Requesters,standard,2027-09-30,R {i},{a},technical,2026-06-12" for i, a in enumerate(requesters)]
            rows += [f"m{i // 3},Partner {i // 3},standard,2027-09-30,C {i},c{i}@{DOMAIN},technical,"
                     for i in range(args.mailing)]
            (d / "roster.csv").write_text("\n".join(rows) + "\n")
            common.pd(d, "partners", "import", str(d / "roster.csv"), now=datetime.now(timezone.utc))
            watcher = Watcher(ms, support)
            log = open(log_path, "wb")

            def start_daemon(settle: bool = True) -> subprocess.Popen:
                p = subprocess.Popen([sys.executable, str(common.ROOT / "run.py"), "--config", str(d / "partnerdesk.toml"),
                                      *(["-v"] if debug else []), "run"], cwd=d,
                                     env=dict(os.environ, PD_BENCH_PASSWORD=PASSWORD),
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)
                if settle:
                    time.sleep(3)  # started, logged in, idle
                return p

            daemon = start_daemon()
            delivered = 0

            def deliver(addr: str) -> float:
                nonlocal delivered
                ms.deliver(support, request(addr, delivered, support))
                delivered += 1
                return time.monotonic()

            def ack_times(addrs: list[str], timeout: float = 60) -> dict[str, float]:
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    acks = {to: t for t, _, kind, to in cap.mails() if kind == "ack"}
                    if all(a in acks for a in addrs):
                        return acks
                    time.sleep(0.02)
                raise RuntimeError(f"acks missing after {timeout} s; daemon log:\n"
                                   f"{log_path.read_text()[-3000:]}")

            def one_at_a_time(addrs: list[str]) -> list[tuple[float, float, float]]:
                out = []
                for a in addrs:
                    t0 = deliver(a)
                    acks = ack_times([a])
                    while len(watcher.signals) < delivered:
                        time.sleep(0.005)
                    out.append((t0, watcher.signals[delivered - 1], acks[a]))
                    time.sleep(0.2)
                return out

            phases = {}
            phases["alone"] = one_at_a_time(requesters[:n])
            # The mailing falls due: a daemon whose config has the call decides it in its first cycle, and
            # the requests of this phase arrive while it is decided, then while it is sent.
            daemon.terminate()
            daemon.wait(30)
            (d / "partnerdesk.toml").write_text((d / "partnerdesk.toml").read_text().replace(quiet, calls))
            before = len([m for m in cap.mails() if m[2] == "call-invite"])
            t_restart = time.monotonic()
            daemon = start_daemon(settle=False)
            while not [m for m in cap.mails() if m[2] == "call-invite"]:  # the first invitation is out
                if daemon.poll() is not None or time.monotonic() - t_restart > 120:
                    raise RuntimeError(f"no invitation went out; daemon log:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.01)
            during = one_at_a_time(requesters[n:2 * n])
            invites = sorted(t for t, _, kind, _ in cap.mails() if kind == "call-invite")
            overlapped = sum(1 for t0, _, _ in during if invites and invites[0] <= t0 <= invites[-1])
            phases["during a mailing"] = during
            time.sleep(2)
            # A burst: every request at once (well, as fast as LMTP takes them).
            burst_addrs = requesters[2 * n:3 * n]
            first = delivered
            t_burst = [deliver(a) for a in burst_addrs]
            acks = ack_times(burst_addrs)
            while len(watcher.signals) < delivered:
                time.sleep(0.005)
            phases["burst of %d" % n] = [(t0, watcher.signals[first + i], acks[a])
                                         for i, (t0, a) in enumerate(zip(t_burst, burst_addrs))]
            # Idle means the mailing is over too: wait until no invitation has come for 3 s.
            count, since = -1, time.monotonic()
            while time.monotonic() - since < 3:
                now_count = len([m for m in cap.mails() if m[2] == "call-invite"])
                if now_count != count:
                    count, since = now_count, time.monotonic()
                time.sleep(0.2)
            time.sleep(3)
            cpu0, t_idle = cpu_seconds(daemon.pid), time.monotonic()
            time.sleep(20)
            idle_cpu = (cpu_seconds(daemon.pid) - cpu0) / (time.monotonic() - t_idle)
            rss = peak_rss_mb(daemon.pid)
            watcher.close()
            daemon.terminate()
            daemon.wait(30)
            cap.stop()
            print(f"daemon: IMAP IDLE; SMTP to a capture server (PIPELINING), 2 connections; mailing paced at "
                  f"3,000/min; {before} invitations had gone out before the second phase, "
                  f"{len(invites)} by its end; {overlapped} of its {n} requests arrived while invitations were "
                  f"being sent (the first was out before the phase began)")
            print(f"{'phase':<20} {'delivery->ack p50':>18} {'p95':>7} {'max':>7} {'signal->ack p50':>16} {'p95':>7} "
                  f"{'max':>7} {'Dovecot signal p50':>19}")
            for name, rows_ in phases.items():
                total = [a - t0 for t0, _, a in rows_]
                over = [a - s for _, s, a in rows_]
                floor = [s - t0 for t0, s, _ in rows_]
                print(f"{name:<20} {pct(total, 50):>17.3f}s {pct(total, 95):>6.3f}s {max(total):>6.3f}s "
                      f"{pct(over, 50):>15.3f}s {pct(over, 95):>6.3f}s {max(over):>6.3f}s {statistics.median(floor):>18.3f}s")
            print(f"daemon peak RSS {rss:.0f} MB (the second daemon: the mailing and the burst); "
                  f"CPU while idle {idle_cpu * 100:.2f} % of a core")
            if debug:
                for name, rows_ in phases.items():
                    print(name, [(round(s - t0, 3), round(a - t0, 3)) for t0, s, a in rows_])
                print(f"daemon log: {log_path}")
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
        common.remove(base)


if __name__ == "__main__":
    main()

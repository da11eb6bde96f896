#!/usr/bin/env python3
"""A mailing of call invitations against raw aiosmtplib with the same connections to the same server.

    python3 benchmarks/mailing.py [--sizes 1000,2000,4000] [--connections 2] [--repeat 2] [--no-pipelining]

An SMTP server that takes every mail and notes when it came (benchmarks/capture.py, a process of its
own) receives, alternately:

* raw aiosmtplib, in a process of its own: ``connections`` clients, each sending its share of N
  ready-made invitations (the bytes partnerdesk renders for them) with ``sendmail``, one after the
  other; timed from its first connect to the last mail the server accepted;
* partnerdesk: `run.py once` on a store whose roster has N contacts and whose call invitations are due,
  pacing off (``rate_per_minute = 0``): it plans, renders, stores in chunks and sends while it goes;
  timed from the process start to the last invitation accepted, minus its fixed cost (`once` with
  nothing to send on the same config, measured in the same run: start-up, store, IMAP login).

It prints the ratio (raw time / partnerdesk's time: above 1, partnerdesk is faster), when the first
invitation reached the server, and partnerdesk's peak RSS at each size (flat: memory does not grow
with the mailing), beside the peak RSS of `once` on the same store a month before the invitations are
due (what the roster itself costs: TinyDB holds the store in memory). By default the server offers PIPELINING, as real submission servers do
(raw aiosmtplib does not use it); ``--no-pipelining`` measures without.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import struct
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import PASSWORD  # noqa: E402

DUE = "2026-12-29T14:30:00-05:00"  # 14 days before the call of Tuesday, January 12, 2027, 2 PM ET
CALLS = """
[calls]
rrule = "FREQ=MONTHLY;INTERVAL=3;BYDAY=2TU"
first = 2027-01-12T14:00:00
dial_in = "https://meet.example.test/soa"
[mailings]
enabled = ["calls"]
"""
DOMAIN = "partners.bench.invalid"  # not a local domain of the test servers: the capture server takes it


def contacts(n: int) -> list[tuple[str, str]]:
    first, last = common.FIRST, common.LAST
    return [(f"{first[i % len(first)]} {last[(i // len(first)) % len(last)]}", f"c{i}@{DOMAIN}") for i in range(n)]


def roster(path: Path, people: list[tuple[str, str]]) -> None:
    rows = ["partner_id,partner_name,plan,renews_on,contact_name,contact_email,roles,trained_on"]
    for i, (name, addr) in enumerate(people):
        pid = f"p{i // 3}"  # three contacts per partner
        rows.append(f"{pid},Partner {i // 3},standard,2027-09-30,{name},{addr},{'primary' if i % 3 == 0 else 'technical'},")
    path.write_text("\n".join(rows) + "\n")


def render_invitations(people: list[tuple[str, str]], path: Path) -> None:
    """The bytes partnerdesk sends, rendered here once, for the raw baseline."""
    from datetime import timezone

    import run
    from config.settings import load

    base = path.parent / f"render-{len(people)}"  # one per size
    common.remove(base)
    base.mkdir()
    s = load({"support": {"address": "support@example.test", "staff": ["staff1@example.test"]},
              "store": {"path": str(base / "s.json")}, "calls": {"rrule": "FREQ=MONTHLY;INTERVAL=3;BYDAY=2TU",
              "first": datetime(2027, 1, 12, 14), "dial_in": "https://meet.example.test/soa"},
              "mailings": {"enabled": ["calls"]}}, "bench")
    from contextlib import ExitStack

    with ExitStack() as stack:
        w = run.Wiring(s, run.Clock(datetime.fromisoformat(DUE).astimezone(timezone.utc)), stack)
        store = w.store(write=True)
        from workflows.model import Contact, Partner
        with store.transaction():
            for i in range(0, len(people), 3):
                store.save_partner(Partner(id=f"p{i // 3}", name=f"Partner {i // 3}", plan="standard", renews_on=None,
                                           contacts=tuple(Contact(partner_id=f"p{i // 3}", name=n, email=a)
                                                          for n, a in people[i:i + 3])))
        runner = w.mailings(store)
        send, _ = runner.plan(w.clock.now())
        with open(path, "wb") as f:
            for d in send:
                out, _, raw = runner.render(d, w.clock.now())
                f.write(struct.pack(">I", len(raw)) + raw)
                to = d.recipient.encode()
                f.write(struct.pack(">I", len(to)) + to)


def raw_child(port: int, connections: int, path: str) -> None:
    import aiosmtplib

    data = Path(path).read_bytes()
    mails = []
    at = 0
    while at < len(data):
        (n,) = struct.unpack(">I", data[at:at + 4])
        raw = data[at + 4:at + 4 + n]
        at += 4 + n
        (m,) = struct.unpack(">I", data[at:at + 4])
        to = data[at + 4:at + 4 + m].decode()
        at += 4 + m
        mails.append((to, raw))

    async def main() -> float:
        t0 = time.monotonic()
        queue = list(reversed(mails))

        async def worker() -> None:
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, use_tls=False, start_tls=False, timeout=60)
            await client.connect()
            while queue:
                to, raw = queue.pop()
                await client.sendmail("support@example.test", [to], raw)
            await client.quit()

        await asyncio.gather(*(worker() for _ in range(connections)))
        return t0

    t0 = asyncio.run(main())
    print(json.dumps({"t0": t0, "mails": len(mails)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,2000,4000")
    ap.add_argument("--connections", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--no-pipelining", action="store_true")
    ap.add_argument("--raw-child", nargs=3, metavar=("PORT", "CONNECTIONS", "FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.raw_child:
        raw_child(int(args.raw_child[0]), int(args.raw_child[1]), args.raw_child[2])
        return

    from tests.mailservers import MailServers

    sizes = [int(s) for s in args.sizes.split(",")]
    base = common.temp_base("partnerdesk-mailing-")
    now = datetime.fromisoformat(DUE)
    rows: list[str] = []
    try:
        with MailServers(base / "servers") as ms:
            cap = common.Capture(base, pipelining=not args.no_pipelining)
            try:
                print(f"server: capture SMTP ({'with' if not args.no_pipelining else 'without'} PIPELINING), "
                      f"{args.connections} connections, pacing off")
                for a in [*common.STAFF, common.ESCALATION, common.LEAD]:
                    ms.add_user(a, PASSWORD)
                empty_support = "support-empty@example.test"
                ms.add_user(empty_support, PASSWORD)
                fixed: list[float] = []
                for rep in range(args.repeat):  # the fixed cost of `once`: nothing to send
                    d = common.desk(base, f"fixed-{rep}", ms, empty_support, smtp_port=cap.port,
                                    connections=args.connections, extra=CALLS)
                    fixed.append(common.pd(d, "once", now=now).seconds)
                fixed_s = statistics.median(fixed)
                print(f"fixed cost of `once` (start-up, store, IMAP login, nothing to send): {common.spread(fixed)} s")
                for n in sizes:
                    people = contacts(n)
                    blob = base / f"invites-{n}.bin"
                    render_invitations(people, blob)
                    res: dict[str, list[float]] = {"raw": [], "ours": [], "first": [], "first_spawn": [], "rss": [],
                                                   "idle_rss": []}
                    for rep in range(args.repeat):
                        cap.clear()
                        raw = common.run_child([sys.executable, str(Path(__file__).resolve()), "--raw-child",
                                                str(cap.port), str(args.connections), str(blob)], cwd=common.ROOT)
                        info = json.loads(raw.out)
                        got = cap.mails()
                        assert len(got) == n, (len(got), n)
                        res["raw"].append(max(t for t, *_ in got) - info["t0"])

                        support = f"support-m{n}-{rep}@example.test"
                        ms.add_user(support, PASSWORD)
                        d = common.desk(base, f"m{n}-{rep}", ms, support, smtp_port=cap.port,
                                        connections=args.connections, extra=CALLS)
                        roster(d / "roster.csv", people)
                        common.pd(d, "partners", "import", str(d / "roster.csv"), now=now)
                        # The same store a month before the invitations are due: what the roster itself
                        # costs in memory, apart from what the mailing does.
                        res["idle_rss"].append(common.pd(d, "once", now=now - timedelta(days=30)).rss_mb)
                        cap.clear()
                        spawn = time.monotonic()
                        ours = common.pd(d, "once", now=now)
                        got = [m for m in cap.mails() if m[2] == "call-invite"]
                        assert len(got) == n, (len(got), n, common.summary_line(ours))
                        first, last = min(t for t, *_ in got), max(t for t, *_ in got)
                        res["ours"].append(last - spawn - fixed_s)
                        res["first"].append(first - spawn - fixed_s)
                        res["first_spawn"].append(first - spawn)
                        res["rss"].append(ours.rss_mb)
                        print(f"  {n:,} run {rep + 1}: raw aiosmtplib {res['raw'][-1]:.2f} s; partnerdesk "
                              f"{ours.seconds:.2f} s in all, {res['ours'][-1]:.2f} s after start-up; first "
                              f"invitation {res['first_spawn'][-1]:.2f} s after the process started; "
                              f"peak RSS {ours.rss_mb:.0f} MB (the same store with nothing due: "
                              f"{res['idle_rss'][-1]:.0f} MB)")
                        common.remove(d)
                    ratios = [r / o for r, o in zip(res["raw"], res["ours"])]
                    rows.append(f"  {n:>6,} invitations: ratio {common.spread(ratios)} "
                                f"(raw {statistics.median(res['raw']):.2f} s = {n / statistics.median(res['raw']):,.0f}/s, "
                                f"partnerdesk {statistics.median(res['ours']):.2f} s = "
                                f"{n / statistics.median(res['ours']):,.0f}/s); first invitation "
                                f"{statistics.median(res['first']):.2f} s after start-up "
                                f"({statistics.median(res['first_spawn']):.2f} s after the process started); "
                                f"peak RSS {max(res['rss']):.0f} MB (nothing due, same roster: "
                                f"{max(res['idle_rss']):.0f} MB)")
            finally:
                cap.stop()
    finally:
        common.remove(base)
    print("\ncall invitations, partnerdesk against raw aiosmtplib (same server, same connections)")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

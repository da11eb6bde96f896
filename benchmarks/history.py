#!/usr/bin/env python3
"""History import against the naive pipe, at several mailbox sizes, in one run.

    python3 benchmarks/history.py [--sizes 5000,50000] [--repeat 2]     # root, Dovecot

For each size it fills a support mailbox with that many ~2 KB partner requests (MULTIAPPEND, dated
before the first start), then alternates, ``--repeat`` times:

* the naive pipe, in a process of its own: imapclient UID SEARCH + FETCH BODY.PEEK[] in batches of
  500 + email.message_from_bytes(policy=default), reading the headers a support desk reads and the
  text body;
* partnerdesk's first start on that mailbox (`run.py once` on a fresh store): every message taken in
  as history (threads, no acknowledgement), marked done on the server.

It prints rates, the ratio to the naive pipe (above 1: partnerdesk is faster), the cost per message
against the first size's, and each process's peak RSS. Never a verdict: ratios within a run are
what count, absolute numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import HEADERS, PASSWORD, T0  # noqa: E402


def naive_child(host: str, port: int, user: str) -> None:
    from imapclient import IMAPClient

    with IMAPClient(host, port=port, ssl=False, timeout=120) as c:
        c.login(user, PASSWORD)
        c.select_folder("INBOX", readonly=True)
        t = time.perf_counter()
        uids = sorted(c.search("ALL"))
        count = chars = 0
        for i in range(0, len(uids), 500):
            for item in c.fetch(uids[i:i + 500], ["BODY.PEEK[]"]).values():
                msg = email.message_from_bytes(item[b"BODY[]"], policy=email.policy.default)
                for h in HEADERS:
                    for v in msg.get_all(h, ()):
                        chars += len(str(v))
                body = msg.get_body(preferencelist=("plain", "html"))
                if body is not None:
                    chars += len(body.get_content())
                count += 1
        seconds = time.perf_counter() - t
    print(json.dumps({"messages": count, "seconds": seconds}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="5000,50000")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--naive-child", nargs=3, metavar=("HOST", "PORT", "USER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.naive_child:
        host, port, user = args.naive_child
        naive_child(host, int(port), user)
        return

    from tests.mailservers import MailServers

    sizes = [int(s) for s in args.sizes.split(",")]
    rng = random.Random(args.seed)
    partner, unknown = common.people(rng)
    base = common.temp_base("partnerdesk-history-")
    results: dict[int, dict[str, list]] = {}
    try:
        with MailServers(base / "servers") as ms:
            for a in [*common.STAFF, common.ESCALATION, common.LEAD]:
                ms.add_user(a, PASSWORD)
            for n in sizes:
                support = f"support-h{n}@example.test"
                ms.add_user(support, PASSWORD)
                templates = common.make_messages(n, partner, unknown, rng)
                secs = common.fill(ms, support, templates, T0 - timedelta(days=14), timedelta(days=13))
                print(f"\n{n:,} messages (~{sum(map(len, templates)) / n / 1024:.1f} KB each), "
                      f"filled by MULTIAPPEND in {secs:.1f} s")
                del templates
                r = results.setdefault(n, {"naive": [], "ours": [], "naive_rss": [], "ours_rss": [], "store": []})
                for rep in range(args.repeat):
                    b = common.run_child([sys.executable, str(Path(__file__).resolve()), "--naive-child", ms.host,
                                          str(ms.imap_port), support], cwd=common.ROOT)
                    bres = json.loads(b.out)
                    assert bres["messages"] == n, bres
                    d = common.desk(base, f"h{n}-{rep}", ms, support, extra="[mailings]\nenabled = []\n")
                    common.roster_csv(d / "roster.csv", partner)
                    common.pd(d, "partners", "import", str(d / "roster.csv"), now=T0 - timedelta(days=20))
                    ours = common.pd(d, "once", now=T0)
                    assert f"history {n}" in common.summary_line(ours), common.summary_line(ours)
                    r["naive"].append(n / bres["seconds"])
                    r["ours"].append(n / ours.seconds)
                    r["naive_rss"].append(b.rss_mb)
                    r["ours_rss"].append(ours.rss_mb)
                    store = d / "store"
                    r["store"].append((common.tree_size(store / "partnerdesk.json"),
                                       common.tree_size(store / "partnerdesk.json.archive")))
                    print(f"  run {rep + 1}: naive pipe {n / bres['seconds']:,.0f} msg/s ({b.rss_mb:.0f} MB); "
                          f"partnerdesk {n / ours.seconds:,.0f} msg/s in {ours.seconds:.1f} s ({ours.rss_mb:.0f} MB); "
                          f"ratio {bres['seconds'] / ours.seconds:.2f}x")
                    common.remove(d)
    finally:
        common.remove(base)

    print("\nhistory import (partnerdesk's first `once` on a full mailbox) against the naive pipe")
    first = sizes[0]
    cost0 = 1 / statistics.median(results[first]["ours"])
    for n in sizes:
        r = results[n]
        ratios = [o / b for o, b in zip(r["ours"], r["naive"])]
        cost = 1 / statistics.median(r["ours"])
        hot, arch = r["store"][-1]
        print(f"  {n:>7,} messages: ratio {common.spread(ratios)}; partnerdesk {statistics.median(r['ours']):,.0f} "
              f"msg/s, naive {statistics.median(r['naive']):,.0f} msg/s")
        print(f"           cost per message {cost * 1000:.3f} ms = {cost / cost0:.2f}x the cost at {first:,}; "
              f"peak RSS {max(r['ours_rss']):.0f} MB (naive {max(r['naive_rss']):.0f} MB); "
              f"store afterwards: JSON {hot / 1e3:.0f} kB, archive {arch / 1e6:.1f} MB")


if __name__ == "__main__":
    main()

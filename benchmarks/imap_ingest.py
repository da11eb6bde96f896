#!/usr/bin/env python3
"""Acting on new requests: `run.py once` on N new mails in a real IMAP mailbox, against the naive pipe
reading them plus raw aiosmtplib sending the mail they cause, in the same run.

    python3 benchmarks/imap_ingest.py [--messages 2000] [--repeat 2]     # root, Dovecot

The support mailbox holds N ~2 KB partner requests (MULTIAPPEND) that arrived after the first start;
partnerdesk's `once` takes them in, files threads, and sends acknowledgements and staff notifications
(to a capture SMTP server in a process of its own, benchmarks/capture.py, offering PIPELINING; pacing
off). The baseline, each part in a process of its own: the naive pipe (imapclient FETCH BODY.PEEK[]
in batches of 500 + email.message_from_bytes(policy=default) reading headers and text body), plus raw
aiosmtplib sending as many ready-made mails as partnerdesk sent, on the same connections to the same
server. Ratio = baseline time / partnerdesk's time (above 1: partnerdesk is faster); partnerdesk's
fixed cost (`once` with nothing to do: start-up, store, IMAP login) is measured in the same run and
shown apart. Also prints peak RSS and the store's size afterwards.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import struct
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import PASSWORD, T0  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--connections", type=int, default=2)
    args = ap.parse_args()
    from tests.mailservers import MailServers

    n = args.messages
    rng = random.Random(1)
    partner, unknown = common.people(rng, partners=600, unknown=100)
    templates = common.make_messages(n, partner, unknown, rng)
    base = common.temp_base("partnerdesk-new-")
    res: dict[str, list[float]] = {"ours": [], "naive": [], "raw": [], "rss": [], "sent": []}
    hot = arch = 0
    try:
        with MailServers(base / "servers") as ms:
            cap = common.Capture(base)
            try:
                for a in [*common.STAFF, common.ESCALATION, common.LEAD]:
                    ms.add_user(a, PASSWORD)
                fixed = []
                for rep in range(args.repeat):
                    support = f"support-new{rep}@example.test"
                    ms.add_user(support, PASSWORD)
                    d = common.desk(base, f"new{rep}", ms, support, smtp_port=cap.port, connections=args.connections,
                                    extra="[mailings]\nenabled = []\n")
                    common.roster_csv(d / "roster.csv", partner)
                    common.pd(d, "partners", "import", str(d / "roster.csv"), now=T0 - timedelta(days=20))
                    fixed.append(common.pd(d, "once", now=T0).seconds)  # first start: sets the history cut-off
                    common.fill(ms, support, templates, T0 + timedelta(seconds=1), timedelta(minutes=50))
                    cap.clear()
                    ours = common.pd(d, "once", now=T0 + timedelta(hours=1))
                    sent = cap.mails()
                    line = common.summary_line(ours)
                    assert f"fetched {n}" in line, line
                    # the baseline: the naive pipe on the same mailbox, and raw aiosmtplib sending as many mails
                    b = common.run_child([sys.executable, str(Path(__file__).with_name("history.py")), "--naive-child",
                                          ms.host, str(ms.imap_port), support], cwd=common.ROOT)
                    naive = json.loads(b.out)["seconds"]
                    blob = base / "mails.bin"
                    from store.tinystore import Store

                    stored = Store(d / "store" / "partnerdesk.json", readonly=True)
                    with open(blob, "wb") as f:  # the very bytes partnerdesk sent, for raw aiosmtplib
                        for e in stored.outbox("sent"):
                            one = e.raw.encode("ascii")
                            f.write(struct.pack(">I", len(one)) + one)
                            to = e.rcpt_to[0].encode()
                            f.write(struct.pack(">I", len(to)) + to)
                    stored.close()
                    cap.clear()
                    r = common.run_child([sys.executable, str(Path(__file__).with_name("mailing.py")), "--raw-child",
                                          str(cap.port), str(args.connections), str(blob)], cwd=common.ROOT)
                    got = cap.mails()
                    raw_s = max(t for t, *_ in got) - json.loads(r.out)["t0"]
                    res["ours"].append(ours.seconds)
                    res["naive"].append(naive)
                    res["raw"].append(raw_s * len(sent) / max(1, len(got)))
                    res["rss"].append(ours.rss_mb)
                    res["sent"].append(len(sent))
                    hot = common.tree_size(d / "store" / "partnerdesk.json")
                    arch = common.tree_size(d / "store" / "partnerdesk.json.archive")
                    print(f"  run {rep + 1}: partnerdesk {ours.seconds:.1f} s ({line}); naive read {naive:.1f} s + raw "
                          f"send of {len(sent)} mails {res['raw'][-1]:.1f} s; peak RSS {ours.rss_mb:.0f} MB")
                    common.remove(d)
                fixed_s = statistics.median(fixed)
            finally:
                cap.stop()
    finally:
        common.remove(base)
    ratios = [(nv + rw) / (o - fixed_s) for nv, rw, o in zip(res["naive"], res["raw"], res["ours"])]
    print(f"\nacting on {n:,} new requests (acks, staff notifications: {statistics.median(res['sent']):.0f} mails "
          f"sent), against the naive pipe + raw aiosmtplib")
    print(f"  ratio {common.spread(ratios)}; partnerdesk {statistics.median(res['ours']) - fixed_s:.1f} s after its "
          f"fixed cost of {fixed_s:.1f} s ({n / (statistics.median(res['ours']) - fixed_s):,.0f} requests/s); baseline "
          f"{statistics.median(res['naive']):.1f} s read + {statistics.median(res['raw']):.1f} s send")
    print(f"  peak RSS {max(res['rss']):.0f} MB; store afterwards: JSON {hot / 1e6:.2f} MB (the open threads), "
          f"archive {arch / 1e6:.1f} MB")


if __name__ == "__main__":
    main()

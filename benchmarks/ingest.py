#!/usr/bin/env python3
"""Ingest speed: partnerdesk's take-in per message against a raw parse baseline, in the same run.

    python3 benchmarks/ingest.py [N]

Prints ratios, never absolute verdicts: the baseline (email.message_from_bytes with
compat32 plus reading the headers we use) is measured on the same messages in the
same process, so machine speed cancels out. It also prints the cost per message
for the first and the last tenth of the run: if it grows, the store is the cause.
No servers: the source is in memory and the outbox is not drained.
"""

from __future__ import annotations

import email
import sys
import tempfile
import time
from datetime import datetime, timezone
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailbox.compose import Composer  # noqa: E402
from mailbox.parse import parse  # noqa: E402
from service.intake import BATCH as INTAKE_BATCH, IntakeService  # noqa: E402
from service.outbox import Outbox  # noqa: E402
from service.ports import RawMail  # noqa: E402
from service.report import CycleReport  # noqa: E402
from store.tinystore import Store  # noqa: E402
from workflows.intake import IntakeSettings  # noqa: E402

SUPPORT = "support@openatrium.example"


def messages(n: int) -> list[RawMail]:
    out = []
    now = datetime(2026, 11, 30, 15, tzinfo=timezone.utc)
    for i in range(n):
        m = EmailMessage()
        m["From"] = f"user{i % 50}@shop{i % 7}.example"
        m["To"] = SUPPORT
        m["Subject"] = f"Question {i} about Spaces and Features"
        m["Message-ID"] = f"<m{i}@bench.example>"
        m.set_content(("We have a problem with context overrides after a revert. " * 30)[:2000])
        out.append(RawMail(source_key=f"imap:INBOX:1:{i + 1}", data=m.as_bytes(), received_at=now, folder="INBOX",
                           uidvalidity=1, uid=i + 1))
    return out


def baseline(raws: list[RawMail]) -> float:
    t = time.perf_counter()
    for r in raws:
        msg = email.message_from_bytes(r.data)
        for h in ("Message-ID", "From", "To", "Subject", "In-Reply-To", "References"):
            msg.get(h)
        msg.get_payload(decode=True)
    return time.perf_counter() - t


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    raws = messages(n)
    base = baseline(raws)
    with tempfile.TemporaryDirectory() as d:
        store = Store(Path(d) / "store.json")
        outbox = Outbox(store=store, composer=Composer(support_address=SUPPORT, support_name="S"), secret=b"k",
                        support_address=SUPPORT)
        svc = IntakeService(store=store, settings=IntakeSettings(support_address=SUPPORT, staff=frozenset({"s@x.example"})),
                            parse=parse, outbox=outbox, secret=b"k")
        report = CycleReport()
        times = []
        for i in range(0, n, INTAKE_BATCH):  # batches, as run.py's cycle takes them in
            chunk = raws[i:i + INTAKE_BATCH]
            t = time.perf_counter()
            svc.take_in_many(chunk, chunk[0].received_at, report)
            times += [(time.perf_counter() - t) / len(chunk)] * len(chunk)
        store.close()
    total = sum(times)
    tenth = max(1, n // 10)
    first, last = sum(times[:tenth]) / tenth, sum(times[-tenth:]) / tenth
    print(f"messages: {n}")
    print(f"baseline parse: {n / base:,.0f} msg/s")
    print(f"partnerdesk take-in: {n / total:,.0f} msg/s  ratio to baseline: {base / total:.4f}")
    print(f"cost per message, last tenth / first tenth: {last / first:.1f}x (1.0 = does not grow with the store)")


if __name__ == "__main__":
    main()

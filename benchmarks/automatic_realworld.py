#!/usr/bin/env python3
"""Automatic mail on real-world bounces: what partnerdesk's intake makes of them.

    python3 benchmarks/automatic_realworld.py --git-dir /work/.mirror/sisimai+set-of-emails/repo [--tree maildir/bsd]

Every file of the tree (a bare git directory, read with git; e.g. sisimai/set-of-emails, whose maildir/bsd
holds real bounce mail) is taken in through the real intake (mailbox/parse, service/intake, the rules, the
TinyDB store in a temp folder; nothing is sent anywhere: answers stay in the store's outbox) as mail
arriving at the support inbox from outside. The roster is one partner whose contacts are the addresses our
own parser's reports (InboundMail.report) name as failed recipients, so the bounces are about partner
contacts, as the ones that matter are. The outbox has no record of the mail reported on (we never sent it).

Printed: messages read, judged automatic (by kind), threads opened (open work), answers that would go out
(by kind) and staff notices, quarantined; then every message that became work or got an answer, with our
verdict. A measurement: nothing is asserted.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import date, datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailbox.compose import Composer  # noqa: E402
from mailbox.parse import parse  # noqa: E402
from service.intake import IntakeService  # noqa: E402
from service.outbox import Outbox  # noqa: E402
from service.ports import RawMail  # noqa: E402
from service.report import CycleReport  # noqa: E402
from store.tinystore import Store  # noqa: E402
from workflows.intake import IntakeSettings  # noqa: E402
from workflows.loopbreaker import ANSWER_KINDS  # noqa: E402
from workflows.model import Contact, Partner  # noqa: E402

from gitblobs import git, read_blobs  # noqa: E402  (benchmarks/, the script's own folder)

SUPPORT = "support@partnerdesk.invalid"
STAFF = "staff@partnerdesk.invalid"
NOW = datetime(2026, 12, 1, 15, 0, tzinfo=timezone.utc)
WORK = ("thread-new", "thread-join", "unverified", "merged")


def read_tree(git_dir: Path, tree: str) -> list[tuple[str, bytes]]:
    """(file name, bytes) of every file under ``tree`` at HEAD, sorted by name."""
    names = sorted(git(git_dir, "ls-tree", "-r", "--name-only", "HEAD", tree))
    return [(spec.rpartition("/")[2], data) for spec, data in read_blobs(git_dir, [f"HEAD:{n}" for n in names])]


def distinct_ids(files: list[tuple[str, bytes]]) -> tuple[list[tuple[str, bytes]], int]:
    """The files with a Message-ID of their own: the corpus anonymised many bounces to one id (21 Exim
    bounces share one), and the intake takes a repeated id in as a duplicate, hiding its verdict. A file
    whose id (as our parser reads it) was seen before gets ``<FILE-NAME@corpus.invalid>`` instead, in
    place of its Message-ID header or, without one, added on top. Returns the files and how many changed."""
    seen: set[str] = set()
    out, changed = [], 0
    for name, data in files:
        try:
            mid = parse(data, received_at=NOW).message_id
        except Exception:
            mid = None
        if mid is None or mid not in seen:
            seen.add(mid or "")
            out.append((name, data))
            continue
        nl = b"\r\n" if b"\r\n" in data[:2000] else b"\n"
        fresh = b"Message-ID: <" + name.encode() + b"@corpus.invalid>"
        head, sep, body = data.partition(nl + nl)
        lines = head.split(nl)
        for i, line in enumerate(lines):
            if line.lower().startswith(b"message-id:"):
                j = i + 1
                while j < len(lines) and lines[j][:1] in (b" ", b"\t"):
                    j += 1
                lines[i:j] = [fresh]
                break
        else:
            lines.insert(0, fresh)
        out.append((name, nl.join(lines) + sep + body))
        seen.add(f"<{name}@corpus.invalid>")
        changed += 1
    return out, changed


def failed_recipients(files: list[tuple[str, bytes]]) -> list[str]:
    """Every address our parser's reports name as a failed recipient."""
    found: set[str] = set()
    for _, data in files:
        try:
            mail = parse(data, received_at=NOW)
        except Exception:  # the intake quarantines what the parser cannot read; the roster does without it
            continue
        if mail.report is not None:
            found.update(f.address for f in mail.report.failed if "@" in f.address)
    return sorted(found)


def measure(files: list[tuple[str, bytes]], work: Path) -> dict:
    roster = failed_recipients(files)
    store = Store(work / "store.json")
    try:
        with store.transaction():
            store.save_partner(Partner(id="bounced", name="The bounced-to", plan="standard", renews_on=None,
                                       contacts=tuple(Contact(partner_id="bounced", name=a, email=a,
                                                              trained_on=date(2026, 1, 1)) for a in roster)))
        outbox = Outbox(store=store, composer=Composer(support_address=SUPPORT, support_name="Support"),
                        secret=b"benchmark", support_address=SUPPORT)
        settings = IntakeSettings(support_address=SUPPORT, staff=frozenset({STAFF}), acks_per_hour=10**6)
        svc = IntakeService(store=store, settings=settings, parse=parse, outbox=outbox, secret=b"benchmark")
        report = CycleReport()
        rows = []
        seen_out: set[str] = set()
        for i, (name, data) in enumerate(files):
            raw = RawMail(source_key=f"{name}", data=data, received_at=NOW)
            before = len(report.actions)
            try:
                action = svc.take_in(raw, NOW, report)
            except Exception as e:  # a crash is a finding, not the end of the measurement
                action, report.actions[before:] = "crash", [f"{name}: crash: {type(e).__name__}: {e}"]
            new = [e for e in store.outbox(bodies=False) if e.key not in seen_out]
            seen_out.update(e.key for e in new)
            rows.append({"name": name, "action": action, "line": " | ".join(report.actions[before:]),
                         "sent": Counter(e.kind for e in new)})
        kinds = Counter(r.kind for r in store.automatic_mail())
        threads = [t for t in store.threads() if not t.merged_into]
        bouncing = sorted(a for a, s in store.delivery_states().items() if s.bouncing)
        return {"rows": rows, "roster": roster, "kinds": kinds, "threads": threads, "bouncing": bouncing,
                "counts": report.counts}
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--git-dir", type=Path, required=True)
    ap.add_argument("--tree", default="maildir/bsd")
    args = ap.parse_args(argv)
    files, renamed = distinct_ids(read_tree(args.git_dir, args.tree))
    with tempfile.TemporaryDirectory(prefix="pd-automatic-") as tmp:
        r = measure(files, Path(tmp))
    rows = r["rows"]
    actions = Counter(row["action"] for row in rows)
    sent = sum((row["sent"] for row in rows), Counter())
    answers = {k: n for k, n in sent.items() if k in ANSWER_KINDS}
    commit = subprocess.run(["git", "-C", str(args.git_dir), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    print(f"corpus: {args.git_dir} {args.tree} at {commit}")
    print(f"messages read: {len(rows)} ({renamed} given a Message-ID of their own: the corpus repeats ids)")
    print(f"roster: 1 partner, {len(r['roster'])} contacts (failed recipients)")
    print(f"judged automatic: {sum(r['kinds'].values())} "
          f"({', '.join(f'{k} {n}' for k, n in r['kinds'].most_common())})")
    print(f"intake actions: {', '.join(f'{k} {n}' for k, n in actions.most_common())}")
    print(f"threads opened (open work): {len(r['threads'])}; messages that became work: "
          f"{sum(actions[a] for a in WORK)}")
    print(f"answers that would go out: {sum(answers.values())}"
          f"{' (' + ', '.join(f'{k} {n}' for k, n in sorted(answers.items())) + ')' if answers else ''}")
    others = {k: n for k, n in sent.items() if k not in ANSWER_KINDS}
    print(f"other mail queued (to staff): {', '.join(f'{k} {n}' for k, n in sorted(others.items())) or 'none'}")
    print(f"contacts marked bouncing: {len(r['bouncing'])} of {len(r['roster'])}")
    print(f"quarantined: {actions['quarantined']}; crashed: {actions['crash']}")
    listed = [row for row in rows if row["action"] in WORK or row["action"] == "crash"
              or any(k in ANSWER_KINDS for k in row["sent"])]
    if listed:
        print("\nbecame work or got an answer:")
        for row in listed:
            print(f"  {row['line']}")
    quarantined = [row for row in rows if row["action"] == "quarantined"]
    if quarantined:
        print("\nquarantined:")
        for row in quarantined:
            print(f"  {row['line']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

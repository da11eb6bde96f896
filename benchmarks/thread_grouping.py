#!/usr/bin/env python3
"""Threading quality: partnerdesk's grouping against notmuch's, on the same mail, in the same run.

    python3 benchmarks/thread_grouping.py --mbox FILE.mbox --gold GOLD.json [--drop-first]
    python3 benchmarks/thread_grouping.py --public-inbox GIT_DIR [--start N] [--count M] [--windows K] [--drop-first]

Both threaders get the same messages. partnerdesk takes them in through its real intake (mailbox/parse,
service/intake, the rules, the TinyDB store, in a temp folder; nothing is sent), with every sender on
the roster as a contact of one partner: the conversation among a partner's people and support that
threading must keep together. The mailing-list headers (List-*, Precedence) are removed from the
copies both threaders get, so the list's mail reads as the direct mail it once was (list mail that
reaches the support inbox is kept apart on purpose, see README). notmuch (Debian's) indexes a Maildir
made from the same messages in a temp folder. Both are scored against the gold grouping by pairs:
precision = pairs put together that belong together / pairs put together; recall = pairs put
together that belong together / pairs that belong together.

Gold: ``--gold`` is a JSON list of lists of Message-IDs (one list per conversation). For a public-inbox
archive (one message per git commit, as the public mailing-list mirrors hold them) the gold is
derived from the complete archive: two messages are one conversation when they are connected through
the In-Reply-To/References ids of ANY message of the archive (a ghost ancestor counts), read plainly
(``gold_refs``: the ``<id>`` tokens, and bare ids where a header has no angle brackets at all). The threaders only get a window of it, where the earlier mail of a
conversation is missing, as mail that never reached support is; ``--drop-first`` also removes the first
message of every conversation in the window (the partner wrote to a staff member directly, the
replies copied support).

Nothing of the archive is written anywhere but a temp folder, removed at the end.
"""

from __future__ import annotations

import argparse
import email
import email.utils
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailbox.compose import Composer  # noqa: E402
from mailbox.parse import parse  # noqa: E402
from service.intake import IntakeService  # noqa: E402
from service.outbox import Outbox  # noqa: E402
from service.ports import RawMail  # noqa: E402
from service.report import CycleReport  # noqa: E402

from gitblobs import git, read_blobs  # noqa: E402  (benchmarks/, the script's own folder)
from store.tinystore import Store  # noqa: E402
from workflows.intake import IntakeSettings  # noqa: E402
from workflows.model import Contact, Partner  # noqa: E402

SUPPORT = "support@partnerdesk.invalid"
STAFF = "staff@partnerdesk.invalid"
_STRICT_ID = re.compile(r"<([^<>\s]+)>")
_LIST_HEADERS = re.compile(rb"^(List-[A-Za-z-]+|Precedence|X-Mailing-List|Mailing-List)\s*:", re.IGNORECASE)


# -- reading archives ------------------------------------------------------------------------------------
def read_mbox(path: Path) -> list[bytes]:
    """The messages of an mbox file (mboxrd/mboxo: ">From " unescaped one level)."""
    out: list[bytes] = []
    cur: list[bytes] | None = None
    prev_blank = True
    for line in path.read_bytes().splitlines(keepends=True):
        if line.startswith(b"From ") and prev_blank:
            if cur is not None:
                out.append(b"".join(cur).rstrip(b"\r\n") + b"\n")
            cur = []
        elif cur is not None:
            cur.append(line[1:] if re.match(rb"^>+From ", line) else line)
        prev_blank = line.strip() == b""
    if cur:
        out.append(b"".join(cur).rstrip(b"\r\n") + b"\n")
    return out


def write_mbox(messages: list[bytes], path: Path) -> None:
    with open(path, "wb") as f:
        for raw in messages:
            f.write(b"From benchmark@localhost Thu Jan  1 00:00:00 1970\n")
            for line in raw.splitlines(keepends=True):
                f.write(b">" + line if re.match(rb"^>*From ", line) else line)
            f.write(b"\n" if raw.endswith(b"\n") else b"\n\n")


def read_public_inbox(git_dir: Path) -> list[bytes]:
    """Every message of a public-inbox v2 epoch (one commit per message, blob ``m``), oldest first."""
    revs = git(git_dir, "rev-list", "--reverse", "HEAD")
    return [data for _, data in read_blobs(git_dir, [f"{rev}:m" for rev in revs])]


def headers(raw: bytes) -> email.message.Message:
    return email.message_from_bytes(raw.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0] + b"\n\n")


def message_id(raw: bytes) -> str | None:
    m = _STRICT_ID.search(str(headers(raw).get("Message-ID") or ""))
    return f"<{m.group(1)}>" if m else None


def gold_refs(raw: bytes, *, strict: bool = False) -> list[str]:
    """The ids a message's In-Reply-To and References name, read plainly: every ``<id>`` token, and
    where a header holds no ``<`` at all, every ``local@domain`` word (web posting forms write the
    parent's id bare, e.g. ``In-Reply-To: c1fa6123-...@gmail.com``). ``strict``: the ``<id>`` tokens only."""
    h = headers(raw)
    out: list[str] = []
    for name in ("In-Reply-To", "References"):
        for v in h.get_all(name, []):
            text = str(v)
            if "<" in text or strict:
                out += [f"<{m}>" for m in _STRICT_ID.findall(text)]
            else:
                out += [f"<{w}>" for w in text.split() if re.fullmatch(r"[^@\s()\"]+@[^@\s()\"]+\.[^@\s()\"]+", w)]
    return out


def as_direct_mail(raw: bytes) -> bytes:
    """The message without the list's headers: the direct mail it was before the list expanded it."""
    head, sep, body = raw.partition(b"\n\n")
    kept: list[bytes] = []
    skipping = False
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        skipping = bool(_LIST_HEADERS.match(line))
        if not skipping:
            kept.append(line)
    return b"".join(kept) + sep + body


# -- gold ------------------------------------------------------------------------------------------------
class Union:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        root = x
        while self.parent.setdefault(root, root) != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression, iteratively (1,000-message chains)
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def derived_gold(archive: list[bytes], *, strict: bool = False) -> dict[str, str]:
    """Message-ID -> conversation, by the complete archive's reference graph (ghosts included)."""
    u = Union()
    for raw in archive:
        mid = message_id(raw)
        if mid is None:
            continue
        u.find(mid)
        for ref in gold_refs(raw, strict=strict):
            u.union(mid, ref)
    return {mid: u.find(mid) for mid in list(u.parent)}


def gold_from_file(path: Path) -> dict[str, str]:
    return {mid: f"g{i}" for i, group in enumerate(json.loads(path.read_text())) for mid in group}


# -- the two threaders -----------------------------------------------------------------------------------
def received_times(messages: list[bytes]) -> list[datetime]:
    out, last = [], datetime(2020, 1, 1, tzinfo=timezone.utc)
    for raw in messages:
        try:
            at = email.utils.parsedate_to_datetime(str(headers(raw).get("Date")))
            at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
        except (TypeError, ValueError, IndexError, OverflowError):
            at = last
        last = max(at, last)  # a server receives in order; Date headers lie
        out.append(last)
    return out


def partnerdesk_groups(messages: list[bytes], work: Path) -> dict[str, str]:
    """Message-ID -> partnerdesk thread id, through the real intake on a fresh store."""
    store = Store(work / "store.json")
    try:
        senders = sorted({p.from_addr for p in (parse(r, received_at=datetime.now(timezone.utc)) for r in messages)
                          if p.from_addr})
        with store.transaction():
            store.save_partner(Partner(id="archive", name="The archive's people", plan="standard", renews_on=None,
                                       contacts=tuple(Contact(partner_id="archive", name=a, email=a,
                                                              trained_on=datetime(2020, 1, 1).date())
                                                      for a in senders)))
        outbox = Outbox(store=store, composer=Composer(support_address=SUPPORT, support_name="Support"),
                        secret=b"benchmark", support_address=SUPPORT)
        settings = IntakeSettings(support_address=SUPPORT, staff=frozenset({STAFF}), acks_per_hour=10**6)
        svc = IntakeService(store=store, settings=settings, parse=parse, outbox=outbox, secret=b"benchmark")
        times = received_times(messages)
        raws = [RawMail(source_key=f"bench:{i}", data=r, received_at=t) for i, (r, t) in enumerate(zip(messages, times))]
        report = CycleReport()
        for i in range(0, len(raws), 50):
            svc.take_in_many(raws[i:i + 50], times[-1] + timedelta(minutes=1), report)
        out = {}
        for raw in messages:
            mid = message_id(raw)
            rec = store.message(mid) if mid else None
            if rec and rec.get("thread_id"):
                t = getattr(svc, "live_thread", store.thread)(rec["thread_id"])
                out[mid] = t.id if t else rec["thread_id"]
        return out
    finally:
        store.close()


def notmuch_groups(messages: list[bytes], work: Path) -> dict[str, str] | None:
    """Message-ID -> notmuch thread id (None when notmuch is not installed)."""
    if shutil.which("notmuch") is None:
        return None
    maildir = work / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    for i, raw in enumerate(messages):
        (maildir / "cur" / f"{i:06d}.bench:2,S").write_bytes(raw)
    config = work / "notmuch-config"
    config.write_text(f"[database]\npath={maildir}\n[new]\ntags=\n[maildir]\nsynchronize_flags=false\n")
    env = {"NOTMUCH_CONFIG": str(config), "HOME": str(work), "PATH": "/usr/bin:/bin"}
    subprocess.run(["notmuch", "new", "--quiet"], env=env, check=True, capture_output=True)
    shown = subprocess.run(["notmuch", "show", "--format=json", "--body=false", "--entire-thread=true", "*"],
                           env=env, check=True, capture_output=True).stdout
    out: dict[str, str] = {}

    def walk(node: object, label: str) -> None:
        if isinstance(node, dict) and "id" in node:
            out[f"<{node['id']}>"] = label
        elif isinstance(node, list):
            for child in node:
                walk(child, label)

    for n, thread in enumerate(json.loads(shown)):
        walk(thread, f"nm{n}")
    return out


# -- scoring ---------------------------------------------------------------------------------------------
def pairs(groups: Counter) -> int:
    return sum(n * (n - 1) // 2 for n in groups.values())


def score(predicted: dict[str, str], gold: dict[str, str], ids: list[str]) -> dict[str, float]:
    """Pair precision and recall of ``predicted`` over ``ids`` (a message it does not know is alone)."""
    pred = {m: predicted.get(m, f"alone:{m}") for m in ids}
    both = Counter((pred[m], gold[m]) for m in ids)
    together, belong, right = pairs(Counter(pred.values())), pairs(Counter(gold[m] for m in ids)), pairs(both)
    return {"precision": right / together if together else 1.0, "recall": right / belong if belong else 1.0,
            "threads": len(set(pred.values())), "gold_threads": len(set(gold[m] for m in ids)),
            "pairs": together, "gold_pairs": belong}


def unique(messages: list[bytes]) -> list[bytes]:
    seen: set[str] = set()
    out = []
    for raw in messages:
        mid = message_id(raw)
        if mid is not None and mid not in seen:
            seen.add(mid)
            out.append(raw)
    return out


def drop_first(messages: list[bytes], gold: dict[str, str]) -> list[bytes]:
    """The window without the first message of each conversation in it: mail support never received."""
    seen: set[str] = set()
    out = []
    for raw in messages:
        g = gold[message_id(raw)]  # type: ignore[index]
        if g in seen:
            out.append(raw)
        seen.add(g)
    return out


def measure(window: list[bytes], gold: dict[str, str], *, label: str, drop: bool = False) -> dict[str, dict]:
    window = [as_direct_mail(r) for r in unique(window)]
    if drop:
        window = drop_first(window, gold)
    ids = [message_id(r) for r in window]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="pd-threading-") as tmp:
        results["partnerdesk"] = score(partnerdesk_groups(window, Path(tmp)), gold, ids)  # type: ignore[arg-type]
        nm = notmuch_groups(window, Path(tmp))
        if nm is not None:
            results["notmuch"] = score(nm, gold, ids)  # type: ignore[arg-type]
    results["_"] = {"label": label, "messages": len(window)}
    return results


def line(name: str, r: dict) -> str:
    return (f"    {name:<12} pairs precision {r['precision']:.3f}  recall {r['recall']:.3f}  "
            f"threads {r['threads']} (gold {r['gold_threads']})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mbox", type=Path)
    ap.add_argument("--gold", type=Path, help="JSON list of lists of Message-IDs")
    ap.add_argument("--public-inbox", type=Path, help="a public-inbox v2 epoch git directory")
    ap.add_argument("--start", type=int, default=None, help="first message of the window (default: the middle)")
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--windows", type=int, default=1, help="consecutive windows to measure")
    ap.add_argument("--drop-first", action="store_true", help="also measure without each conversation's first mail")
    ap.add_argument("--strict-gold", action="store_true",
                    help="derive the gold from <id> tokens only (bare ids ignored, as notmuch reads them)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    runs = []
    if args.public_inbox:
        archive = read_public_inbox(args.public_inbox)
        gold = derived_gold(archive, strict=args.strict_gold)
        start = args.start if args.start is not None else max(0, len(archive) // 2 - args.count * args.windows // 2)
        print(f"archive: {args.public_inbox} ({len(archive)} messages; gold: its whole reference graph"
              f"{', <id> tokens only' if args.strict_gold else ''})")
        for w in range(args.windows):
            lo = start + w * args.count
            runs.append(measure(archive[lo:lo + args.count], gold, label=f"messages {lo}..{lo + args.count - 1}"))
            if args.drop_first:
                runs.append(measure(archive[lo:lo + args.count], gold, drop=True,
                                    label=f"messages {lo}..{lo + args.count - 1}, first of each conversation dropped"))
    elif args.mbox and args.gold:
        messages = read_mbox(args.mbox)
        gold = gold_from_file(args.gold)
        messages = [r for r in messages if message_id(r) in gold]
        print(f"archive: {args.mbox} ({len(messages)} messages; gold: {args.gold})")
        runs.append(measure(messages, gold, label="as archived"))
        if args.drop_first:
            runs.append(measure(messages, gold, drop=True, label="first of each conversation dropped"))
    else:
        ap.error("give --public-inbox, or --mbox with --gold")
    if args.json:
        print(json.dumps(runs, indent=2))
        return 0
    for r in runs:
        print(f"  {r['_']['label']} ({r['_']['messages']} messages)")
        for name in ("partnerdesk", "notmuch"):
            if name in r:
                print(line(name, r[name]))
        if "notmuch" not in r:
            print("    notmuch      not installed (apt-get install notmuch)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`automatic list`: automatic mail taken in (bounces, out-of-office, reports, bulk), which is never work."""

from __future__ import annotations

import argparse
import json
from collections import Counter

from workflows.automatic import KINDS
from workflows.calendar import format_due

from .common import local_moment, plural
from .context import Context


def add_parser(sub: argparse._SubParsersAction) -> None:
    ap = sub.add_parser("automatic", help="automatic mail: recorded, never a support thread")
    asub = ap.add_subparsers(dest="automatic_verb", required=True)
    al = asub.add_parser("list", help="automatic mail taken in, oldest first, with why and where it was filed")
    al.add_argument("--kind", choices=[k for k in KINDS if k != "none"] + ["0.1.0-thread"],
                    help="only this kind")
    al.add_argument("--since", help="only mail received since this date or date-time (New York time if no offset)")
    al.add_argument("--json", action="store_true", help="print the records as a JSON array, for programs")
    al.set_defaults(run=list_automatic)


def list_automatic(args: argparse.Namespace, ctx: Context) -> int:
    cal = ctx.settings.calendar
    records = ctx.store().automatic_mail()
    if args.kind:
        records = [r for r in records if r.kind == args.kind]
    if args.since:
        since = local_moment(args.since, cal.tz())
        records = [r for r in records if r.received_at >= since]
    if args.json:
        print(json.dumps([r.to_dict() for r in records], indent=2))
        return 0
    for r in records:
        where = r.filed_with or "not work"
        print(f"{format_due(r.received_at, cal, with_year=True):<42} {r.kind:<15} {(r.sender or '(no sender)'):<34} "
              f"{where:<28} {r.subject[:60]}")
        print(f"    {r.reason[:150]}" + (f"; {r.note}" if r.note else ""))
    counts = Counter(r.kind for r in records)
    print(f"-- {plural(len(records), 'automatic message')}" + (": " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))
                                                    if counts else ""))
    return 0

"""`outbox list` and `outbox retry`: outgoing mail, what is queued, sent, failed; put failed mail back."""

from __future__ import annotations

import argparse
import json

from service.outbox import put_back
from workflows.errors import BadInput
from workflows.outbox import Status

from .common import plural
from .context import Context


def add_parser(sub: argparse._SubParsersAction) -> None:
    op = sub.add_parser("outbox", help="outgoing mail: what is queued, sent, failed; put failed mail back")
    osub = op.add_subparsers(dest="outbox_verb", required=True, metavar="VERB")
    ol = osub.add_parser("list", help="outbox entries, oldest first")
    ol.add_argument("--status", choices=[str(s) for s in Status], help="only entries in this state")
    ol.add_argument("--json", action="store_true", help="print JSON (without the raw messages) instead of a table")
    ol.set_defaults(run=list_entries)
    orr = osub.add_parser("retry", help="put failed mail back in the queue; the next cycle sends it")
    which = orr.add_mutually_exclusive_group(required=True)
    which.add_argument("key", nargs="?", help="the entry's key (see `outbox list --status failed`)")
    which.add_argument("--all-failed", action="store_true", help="every failed entry")
    orr.set_defaults(run=retry)


def list_entries(args: argparse.Namespace, ctx: Context) -> int:
    rows = ctx.store().outbox(args.status, bodies=False)
    if args.json:
        print(json.dumps([{k: v for k, v in e.to_dict().items() if k not in ("raw", "body")} for e in rows], indent=2))
        return 0
    for e in rows:
        detail = " ".join(e.detail.split())
        print(f"{e.key:<44} {e.status:<9} {e.kind:<16} tries {e.attempts:<3} to {', '.join(e.rcpt_to)}"
              + (f"  ({detail[:120]})" if detail else ""))
    print(f"-- {plural(len(rows), 'entry', 'entries')}" + (f" {args.status}" if args.status else ""))
    return 0


def retry(args: argparse.Namespace, ctx: Context) -> int:
    try:
        keys = put_back(ctx.store(write=True), None if args.all_failed else [args.key], ctx.clock.now())
    except KeyError as e:
        raise BadInput(f"cannot retry {args.key}: {e.args[0]}; see `outbox list --status failed`") from None
    print(f"{plural(len(keys), 'failed mail')} put back in the queue; the next cycle (`once` or the daemon) "
          f"sends {'it' if len(keys) == 1 else 'them'}")
    return 0

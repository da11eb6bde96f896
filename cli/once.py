"""`once`: one full cycle, then exit; `once --dry-run`: the same on a copy, writing what it would send."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from service.cycle import cycle
from workflows.errors import LoginRequired, Transient

from .common import plural, warn
from .context import Context
from .progress import progress
from .report import refresh as refresh_report

PROGRESS_FROM = 200  # messages in one cycle: a first start on a full mailbox (history import), say


def add_parser(sub: argparse._SubParsersAction) -> None:
    once = sub.add_parser("once", help="one full cycle, then exit")
    once.add_argument("--dry-run", action="store_true",
                      help="work on a copy of the store; write the mail it would send as .eml files; send nothing")
    once.add_argument("--dry-run-dir", metavar="DIR",
                      help="where --dry-run writes (default ./partnerdesk-dry-run/<timestamp>)")
    once.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    if args.dry_run:
        return dry_run(args, ctx)
    desk = ctx.desk()
    try:
        with progress(None, "taking in mail", threshold=PROGRESS_FROM, unit="msg") as bar:
            desk.progress = bar
            report = cycle(desk)
        refresh_report(desk.store, ctx)
    except (Transient, LoginRequired) as e:  # the rest of the cycle ran: say what it did
        done = getattr(e, "report", None)
        if done is not None:  # on stderr: this is not a successful cycle's summary
            warn(done)
            print(f"before the failure: {done.summary()}", file=sys.stderr)
        raise
    warn(report)
    print(report.summary())
    if ctx.verbose:  # what became of each message, and why
        for line in report.actions:
            print(f"  {line}")
    return 0


def dry_run(args: argparse.Namespace, ctx: Context) -> int:
    """One cycle on a copy of the store: what would be sent goes to .eml files; nothing is sent or changed.

    The real store is only read (copied); the mail source is wrapped so nothing is marked
    done or moved on the server; the sender writes files instead of talking SMTP.
    """
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")  # a folder name, not a rule's clock
    out_root = Path(args.dry_run_dir or "partnerdesk-dry-run").resolve() / stamp
    report = cycle(ctx.desk(dry_run_dir=out_root))
    warn(report)
    at = ctx.clock.now().astimezone(ctx.settings.calendar.tz()).isoformat(timespec="seconds")  # as `status` prints
    print(f"dry run at {at}: nothing was sent and nothing changed; this is what a cycle would do")
    print(report.summary(dry_run=True))
    for line in report.actions:
        print(f"  {line}")
    files = sorted((out_root / "outbox").glob("*.eml"))
    print(f"would send {plural(len(files), 'mail')}; written to {out_root / 'outbox'}")
    for f in files:
        print(f"  {f.name}")
    return 0

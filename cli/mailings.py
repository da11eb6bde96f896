"""`mailings list|plan|preview|send|rsvps`: the scheduled mailings, what they would send, and replies."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

from service.report import CycleReport
from workflows.errors import BadInput
from workflows.mailings import plan as plan_mod
from workflows.mailings.calls import call_dates
from workflows.mailings.due import MAILINGS, format_when
from workflows.trainings.schedule import training_dates

from .common import local_moment, plural, warn
from .context import Context


def add_parser(sub: argparse._SubParsersAction) -> None:
    mp = sub.add_parser("mailings", help="scheduled mailings: calls, renewal notices, trainings, welcome")
    msub = mp.add_subparsers(dest="mailings_verb", required=True, metavar="VERB")
    msub.add_parser("list", help="the mailings, upcoming calls and trainings, ledger counts").set_defaults(run=list_)
    mpl = msub.add_parser("plan", help="every mail that would go out between two dates, and every skip")
    mpl.add_argument("--from", dest="start", required=True, metavar="DATE",
                     help="the window's start: a date or date-time (New York time if no offset)")
    mpl.add_argument("--to", dest="end", required=True, metavar="DATE",
                     help="the window's end, included (a date means to the end of that day)")
    mpl.set_defaults(run=plan)
    mpv = msub.add_parser("preview", help="render one mail for a partner, to stdout or an .eml file")
    mpv.add_argument("name", help="mailing name (see `mailings list`)")
    mpv.add_argument("--partner", required=True, metavar="ID", help="the partner to address it to")
    mpv.add_argument("--out", metavar="FILE.eml", help="write the message to this .eml file instead of printing it")
    mpv.set_defaults(run=preview)
    ms = msub.add_parser("send", help="queue (and send) what is due now for one mailing")
    ms.add_argument("name", help="mailing name or group: calls, renewals, trainings, welcome")
    ms.add_argument("--dry-run", action="store_true", help="only show what would be queued and skipped")
    ms.set_defaults(run=send)
    mr = msub.add_parser("rsvps", help="calendar replies received for a call")
    mr.add_argument("call", nargs="?", help="call id, e.g. call-2027-01-12 (default: all)")
    mr.set_defaults(run=rsvps)


def list_(args: argparse.Namespace, ctx: Context) -> int:
    store = ctx.store()
    cfg = ctx.settings.mailings
    tz = cfg.tz()
    now = ctx.clock.now()
    counts: dict[tuple[str, str], int] = {}
    for e in store.ledger_all():
        k = (e.get("mailing", "?"), e.get("status", "?"))
        counts[k] = counts.get(k, 0) + 1
    print("mailings (ledger: queued / skipped):")
    for name, text in MAILINGS.items():
        print(f"  {name:<22} {counts.get((name, 'queued'), 0):>4} / {counts.get((name, 'skipped'), 0):<4} {text}")
    print(f"enabled: {', '.join(sorted(cfg.enabled))}")
    calls = call_dates(cfg.calls, now, now + timedelta(days=400))
    print(f"upcoming calls ({cfg.calls.title}; invitation {cfg.calls.invite_days_before} days before):")
    for c in calls[:5]:
        print(f"  {c.id:<22} {format_when(c.start, tz)}")
    if not calls:
        print("  none: add [calls] rrule/first or [[calls.dates]] to the config")
    print("upcoming trainings:")
    trs = training_dates(cfg.trainings, now, now + timedelta(days=400))
    for t in trs:
        print(f"  {t.id:<22} {format_when(t.start, tz)}  {t.title}")
    if not trs:
        print("  none: add [trainings] rrule/first or [[trainings.dates]] to the config")
    print(f"renewal notices: {', '.join(str(o) for o in cfg.renewals.offsets)} days before the renewal date")
    print(f"unsubscribed: {len(store.unsubscribed())}; RSVPs: {len(store.rsvps())}; "
          f"contacts bouncing: {sum(d.bouncing for d in store.delivery_states().values())}")
    return 0


def plan(args: argparse.Namespace, ctx: Context) -> int:
    store = ctx.store()
    cfg = ctx.settings.mailings
    tz = cfg.tz()
    start = local_moment(args.start, tz, flag="--from")
    end = local_moment(args.end, tz, end_of_day=True, flag="--to")
    if end <= start:
        raise BadInput(f"--to {args.end} is before --from {args.start}; give the earlier date first")
    ledger = {e["key"]: e for e in store.ledger_all()}
    steps = plan_mod.simulate(store.partners(), ledger, cfg, start, end,
                              welcome_requests=store.welcome_requests(), unsubscribed=store.unsubscribed(),
                              delivery=store.delivery_states(),
                              trainings_in=ctx.mailings(store).training_inputs())
    for step in steps:
        print(plan_mod.describe_step(step, tz))
    sent = sum(s.sent for s in steps)
    print(f"-- {plural(sent, 'mail')} would go out, {len(steps) - sent} skipped, "
          f"{format_when(start, tz)} to {format_when(end, tz)}")
    return 0


def preview(args: argparse.Namespace, ctx: Context) -> int:
    partner = ctx.store().partner(args.partner)
    if partner is None:
        raise BadInput(f"no partner {args.partner}; see `partners list`")
    now = ctx.clock.now()
    try:
        d = plan_mod.preview(args.name, partner, ctx.settings.mailings, now)
    except ValueError as e:
        raise BadInput(str(e)) from None
    _, _, raw = ctx.mailings().render(d, now)
    if args.out:
        Path(args.out).write_bytes(raw)
        print(f"wrote {args.out}: {d.mailing} to {d.recipient} ({d.why})")
    else:
        sys.stdout.write(raw.decode("ascii"))
    return 0


def send(args: argparse.Namespace, ctx: Context) -> int:
    now = ctx.clock.now()
    names = set(MAILINGS) | set(plan_mod.KIND_GROUPS)
    if args.name not in names:
        raise BadInput(f"no mailing {args.name!r}; use one of {', '.join(sorted(names))}")
    if args.dry_run:
        to_send, to_skip = ctx.mailings().plan(now, only=args.name)
        for d in to_send:
            print(f"would send  {d.mailing:<22} {d.recipient:<34} {d.subject}  ({d.why})")
        for d in to_skip:
            print(f"would skip  {d.mailing:<22} {d.recipient:<34} {d.reason}"
                  + (" (decided again at every cycle)" if d.held else ""))
        print(f"-- {len(to_send)} to send, {len(to_skip)} to skip (dry run: nothing recorded)")
        return 0
    desk = ctx.desk()
    assert desk.mailings is not None
    report = CycleReport()
    with desk.outbox.sending():  # the first chunk leaves while the next is decided
        queued, skipped = desk.mailings.tick(now, report, only=args.name)
    desk.outbox.drain(desk.sender, ctx.clock.now(), report)
    warn(report)
    print(f"{args.name}: queued {queued}, skipped {skipped}; {report.summary()}")
    return 0


def rsvps(args: argparse.Namespace, ctx: Context) -> int:
    runner = ctx.mailings()
    if args.call and args.call.lower() not in (known := runner.known_calls(ctx.clock.now())):
        raise BadInput(f"no call {args.call!r} in the config or the ledger; known calls: "
                       f"{', '.join(sorted(known)) or 'none'} (see `mailings list`)")
    rows = runner.rsvps(args.call)
    for r in rows:
        print(f"{r['call_id']:<22} {r['attendee']:<34} {r['partstat']:<12} {r['at']}")
    if not rows:
        print("no RSVPs recorded" + (f" for {args.call}" if args.call else ""))
    return 0

"""`threads list`, `threads show ID` and `states`: the support threads and the lifecycle they follow."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import datetime
from typing import Any

from workflows import escalation, sla
from workflows.calendar import format_due
from workflows.errors import BadInput
from workflows.escalation import LadderConfig
from workflows.lifecycle import State, table_text
from workflows.model import Thread

from .context import Context


def add_parser(sub: argparse._SubParsersAction) -> None:
    tp = sub.add_parser("threads", help="support threads: list them (filtered, as CSV), show one")
    tsub = tp.add_subparsers(dest="threads_verb", required=True, metavar="VERB")
    tl = tsub.add_parser("list", help="threads, oldest first: state, due time (ET, ! when overdue), waited, ladder "
                                      "stage; filter them, or export them as CSV")
    fmt = tl.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="a JSON array (every field and the timeline)")
    fmt.add_argument("--csv", action="store_true", help="CSV with a header row, for a spreadsheet")
    tl.add_argument("--overdue", action="store_true", help="only threads whose reply is overdue now")
    tl.add_argument("--state", choices=[str(s) for s in State], help="only threads in this state")
    tl.add_argument("--partner", metavar="ID", help="only this partner's threads (see `partners list`)")
    tl.set_defaults(run=list_threads)
    ts = tsub.add_parser("show", help="one thread: clock, assignee, stages fired and next, the full timeline")
    ts.add_argument("id", help="the thread id, e.g. OA-12")
    ts.add_argument("--json", action="store_true", help="print JSON instead of text")
    ts.set_defaults(run=show)


def add_states_parser(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("states", help="print the thread lifecycle table").set_defaults(run=states)


def thread_json(t: Thread) -> dict[str, Any]:
    d = t.to_dict()
    return {k: d[k] for k in ("id", "partner_id", "requester", "requester_name", "subject", "state", "created_at",
                              "due_at", "first_response_at", "first_responder", "seat", "sender_kind", "messages",
                              "merged_into")} | {"events": d["events"]}


def promise_info(t: Thread, now: datetime, ctx: Context, ladder: LadderConfig) -> dict[str, Any]:
    """What `threads` shows about the reply-time promise: clock, due (ET), business time waited, ladder."""
    cal = ctx.settings.calendar
    info: dict[str, Any] = sla.summary(t, now, cal)
    info["stage"] = escalation.current_stage(t) if sla.has_clock(t) else "-"
    nxt = escalation.next_stage(t, ladder, cal) if sla.has_clock(t) else None
    info["next_stage"] = (f"{nxt[0].name} at {format_due(nxt[1], cal)} to "
                          f"{', '.join(escalation.recipients(nxt[0], t, ladder)) or '-'}") if nxt else "-"
    info["assignee"] = t.assignee
    info["previous"] = t.previous
    return info


def _survivor(store: Any, t: Thread) -> tuple[Thread, list[str]]:
    """The thread ``t`` became (itself unless merged), and the ids passed on the way."""
    path = [t.id]
    while t.merged_into and len(path) < 20:
        nxt = store.thread(t.merged_into)
        if nxt is None:
            break
        t = nxt
        path.append(t.id)
    return t, path


def show(args: argparse.Namespace, ctx: Context) -> int:
    cal = ctx.settings.calendar
    store = ctx.store()
    t = store.thread(args.id)
    if t is None:
        raise BadInput(f"no thread {args.id}; see `threads list`")
    t, path = _survivor(store, t)
    info = promise_info(t, ctx.clock.now(), ctx, ctx.settings.ladder_config())
    if args.json:
        merged = {"requested": path[0], "merged_path": path} if len(path) > 1 else {}
        print(json.dumps(thread_json(t) | {"promise": info} | merged, indent=2))
        return 0
    if len(path) > 1:
        print(f"{path[0]} was merged into {t.id}" + (f" (by way of {', '.join(path[1:-1])})" if len(path) > 2 else "")
              + f"; showing {t.id}")
    print(f"{t.id}  {t.subject}")
    print(f"  partner {t.partner_id or '-'}  requester {t.requester}  seat {'yes' if t.seat else 'no'}"
          + (f"  assigned to {info['assignee']}" if info["assignee"] else "")
          + (f"  continues {info['previous']}" if info["previous"] else ""))
    print(f"  state {t.state}  clock {info['clock']}  due {info['due']} {info['overdue']}  "
          f"waited {info['waited']} (business time)")
    print(f"  ladder: fired {info['stage']}; next {info['next_stage']}")
    print("  timeline (ET):")
    for e in t.events:
        detail = " ".join(e.detail.split())
        print(f"  {format_due(e.at, cal, with_year=True):<40} {e.kind:<14} {e.by:<30} {detail[:100]}")
        if e.proof:  # how a staff member's message was proven theirs (workflows/staffproof.py)
            print(f"  {'':<40} {'':<14} proven by {e.proof}")
    return 0


CSV_FIELDS = ("id", "state", "overdue", "due_at", "due_et", "waited", "ladder", "partner_id", "requester",
              "subject", "created_at", "first_response_at", "first_responder", "seat", "assignee")


def _selected(threads: list[Thread], args: argparse.Namespace, now: datetime, ctx: Context) -> list[Thread]:
    cal = ctx.settings.calendar
    if getattr(args, "state", None):
        threads = [t for t in threads if t.state == State(args.state)]
    if getattr(args, "partner", None):
        threads = [t for t in threads if (t.partner_id or "").lower() == args.partner.lower()]
    if getattr(args, "overdue", False):
        threads = [t for t in threads if (c := sla.running_clock(t, now, cal)) is not None and c.overdue]
    return threads


def _csv(threads: list[Thread], now: datetime, ctx: Context, ladder: LadderConfig) -> None:
    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for t in threads:
        info = promise_info(t, now, ctx, ladder)
        w.writerow([t.id, str(t.state), "yes" if info["overdue"] else "", t.due_at.isoformat() if t.due_at else "",
                    "" if info["due"] == "-" else info["due"], "" if info["waited"] == "-" else info["waited"],
                    "" if info["stage"] == "-" else info["stage"], t.partner_id or "", t.requester, t.subject,
                    t.created_at.isoformat(), t.first_response_at.isoformat() if t.first_response_at else "",
                    t.first_responder, "yes" if t.seat else "no", t.assignee])


def list_threads(args: argparse.Namespace, ctx: Context) -> int:
    now = ctx.clock.now()
    ladder = ctx.settings.ladder_config()
    store = ctx.store()
    if getattr(args, "partner", None) and args.partner.lower() not in {p.id.lower() for p in store.partners()}:
        raise BadInput(f"no partner {args.partner}; see `partners list`")
    threads = _selected(store.threads(), args, now, ctx)
    if getattr(args, "csv", False):
        _csv(threads, now, ctx, ladder)
        return 0
    if args.json:
        print(json.dumps([thread_json(t) | {"promise": promise_info(t, now, ctx, ladder)} for t in threads], indent=2))
        return 0
    print(f"{'thread':<8} {'state':<19} {'due (ET)':<34} {'waited':<8} {'ladder':<13} {'partner':<14} "
          f"{'requester':<30} subject")
    for t in threads:
        info = promise_info(t, now, ctx, ladder)
        due = info["due"] + (" !" if info["overdue"] else "")
        subject = f"(merged into {t.merged_into}) {t.subject}" if t.merged_into else t.subject
        print(f"{t.id:<8} {t.state:<19} {due:<34} {info['waited']:<8} {info['stage']:<13} "
              f"{(t.partner_id or '-'):<14} {t.requester:<30} {subject[:50]}")
    return 0


def states(args: argparse.Namespace, ctx: Context) -> int:
    print(table_text())
    return 0

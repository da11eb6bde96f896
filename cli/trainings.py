"""`trainings list|show|register|cancel|approve|decline|attended|absent`: the courses and who is in them."""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
from datetime import datetime, timedelta
from typing import Any

from service.ports import Store
from service.trainings import Outcome, Trainings
from workflows.errors import BadInput
from workflows.mailings.due import format_when, outbox_key
from workflows.mailings.types import TrainingDate
from workflows.trainings import schedule
from workflows.trainings.model import Registration, Status

from .common import error, read_sheet
from .context import Context

STAFF = "staff (command line)"


def add_parser(sub: argparse._SubParsersAction) -> None:
    tp = sub.add_parser("trainings", help="training courses: registrations, waitlist, approvals, attendance")
    ts = tp.add_subparsers(dest="trainings_verb", required=True, metavar="VERB")
    tl = ts.add_parser("list", help="upcoming and recent courses, with their counts")
    tl.add_argument("--all", action="store_true", help="also courses long past")
    tl.set_defaults(run=list_)
    sh = ts.add_parser("show", help="one course: registrations, waitlist, pending approvals, attendance, mail")
    sh.add_argument("id", help="the course id (see `trainings list`)")
    sh.add_argument("--json", action="store_true", help="print JSON instead of text")
    sh.set_defaults(run=show)
    for name, what in (("register", "register people (a phone call, a mail staff read)"),
                       ("cancel", "cancel registrations"), ("absent", "record no-shows")):
        p = ts.add_parser(name, help=what)
        p.add_argument("id", help="the course id (see `trainings list`)")
        p.add_argument("addresses", nargs="+", metavar="ADDRESS", help="the people's mail addresses")
        if name == "register":
            p.add_argument("--approve", action="store_true", help="past the included places: an extra place")
            p.add_argument("--partner", default="", help="partner id for an address not on the roster yet")
        p.set_defaults(run=globals()[name])
    for name in ("approve", "decline"):
        p = ts.add_parser(name, help=f"{name} a registration held past the included places")
        p.add_argument("id", help="the course id (see `trainings list`)")
        p.add_argument("address", help="the registered person's mail address")
        if name == "decline":
            p.add_argument("--reason", default="", help="passed on to the partner")
        p.set_defaults(run=decide)
    at = ts.add_parser("attended", help="record who completed a course (grants the support seat)")
    at.add_argument("id", help="the course id (see `trainings list`)")
    at.add_argument("addresses", nargs="*", metavar="ADDRESS", help="who attended (or use --csv / --all)")
    at.add_argument("--csv", help="a sheet with an address column (and optionally attended = yes/no)")
    at.add_argument("--all", action="store_true", help="everyone still confirmed attended")
    at.set_defaults(run=attended)


def trainings(ctx: Context, store: Store) -> Trainings:
    return Trainings(store=store, config=ctx.settings.mailings)


def _print(outcomes: list[Outcome]) -> int:
    if not outcomes:
        print("  nobody to record (see `trainings show`)")
        return 1
    for o in outcomes:
        print(f"  {'ok  ' if o.ok else 'not '} {o.address}: {o.text}")
    print("the mail this causes goes out with the next cycle (`once`, or the running daemon)")
    return 0 if all(o.ok for o in outcomes) else 1


def _use(ctx: Context, action: Any, *args: Any, **kw: Any) -> int:
    try:
        return _print(action(*args, by=STAFF, via="cli", now=ctx.clock.now(), **kw))
    except BadInput as e:
        error(str(e))
        return 1


def register(args: argparse.Namespace, ctx: Context) -> int:
    return _use(ctx, trainings(ctx, ctx.store(write=True)).register, args.id.lower(),
                [(a, "") for a in args.addresses], partner_id=args.partner, approve=args.approve)


def cancel(args: argparse.Namespace, ctx: Context) -> int:
    return _use(ctx, trainings(ctx, ctx.store(write=True)).cancel, args.id.lower(), args.addresses)


def absent(args: argparse.Namespace, ctx: Context) -> int:
    return _use(ctx, trainings(ctx, ctx.store(write=True)).absent, args.id.lower(), args.addresses)


def decide(args: argparse.Namespace, ctx: Context) -> int:
    t = trainings(ctx, ctx.store(write=True))
    approve = args.trainings_verb == "approve"
    try:
        o = t.decide(args.id.lower(), args.address, approve=approve, by=STAFF, via="cli", now=ctx.clock.now(),
                     note="" if approve else args.reason)
    except BadInput as e:
        error(str(e))
        return 1
    return _print([o])


def read_attendance(path: str) -> tuple[list[str], list[str], list[str]]:
    """(attended, absent, problems as FILE:LINE: reason) from a sheet: any column holding addresses; a column
    named attended/present/attendance with yes/no, 1/0, x or empty says who did not come."""
    rows = list(csv.reader(io.StringIO(read_sheet(path))))
    header = [h.strip().lower() for h in rows[0]] if rows else []
    flag = next((i for i, h in enumerate(header) if h in ("attended", "present", "attendance")), None)
    start = 1 if header and not any("@" in h for h in header) else 0
    came, missed, problems = [], [], []
    for n, row in enumerate(rows[start:], start + 1):
        if not any(cell.strip() for cell in row):
            continue
        found = [c.strip().lower() for c in row if re.fullmatch(r"[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+", c.strip())]
        if len(found) != 1:
            problems.append(f"{path}:{n}: " + ("no address in this row" if not found else "more than one address"))
            continue
        value = row[flag].strip().lower() if flag is not None and flag < len(row) else "yes"
        if value in ("yes", "y", "1", "x", "true", "attended", "present", "ja", "oui", "si", "sim"):
            came.append(found[0])
        elif value in ("no", "n", "0", "", "false", "absent", "nein", "non", "nao"):
            missed.append(found[0])
        else:
            problems.append(f"{path}:{n}: {header[flag or 0]} {value!r} is neither yes nor no")
    return came, missed, problems


def attended(args: argparse.Namespace, ctx: Context) -> int:
    t = trainings(ctx, ctx.store(write=True))
    came: list[str] = list(args.addresses)
    missed: list[str] = []
    try:
        if args.csv:
            more, missed, problems = read_attendance(args.csv)
            for p in problems:
                print(f"  {p}")
            came += more
        if not came and not missed and not args.all:
            error("name who attended: addresses, --csv FILE, or --all (everyone still confirmed)")
            return 2
        now = ctx.clock.now()
        out = t.attended(args.id.lower(), None if args.all else came, by=STAFF, via="cli", now=now) \
            if (came or args.all) else []
        if missed:
            out += t.absent(args.id.lower(), missed, by=STAFF, via="cli", now=now)
    except BadInput as e:
        error(str(e))
        return 1
    return _print(out)


# -- seeing it --------------------------------------------------------------------------------------------------
def _counts(regs: list[Registration]) -> dict[str, int]:
    c: dict[str, int] = {}
    for r in regs:
        c[str(r.status)] = c.get(str(r.status), 0) + 1
    return c


def list_(args: argparse.Namespace, ctx: Context) -> int:
    cfg = ctx.settings.mailings
    tz = cfg.tz()
    now = ctx.clock.now()
    store = ctx.store()
    back = timedelta(days=3650 if args.all else 120)
    courses = {t.id: t for t in schedule.training_dates(cfg.trainings, now - back, now + timedelta(days=400))}
    regs = store.registrations()
    for r in regs:  # courses with registrations, even if gone from the calendar
        courses.setdefault(r.training_id, schedule.find(cfg.trainings, r.training_id)  # type: ignore[arg-type]
                           or TrainingDate(id=r.training_id, start=datetime.min.replace(tzinfo=tz), title="(removed)"))
    print(f"{'training':<24} {'starts (ET)':<38} {'places':>6} {'conf':>5} {'wait':>5} {'held':>5} {'att':>4}  state")
    for t in sorted(courses.values(), key=lambda t: (t.start, t.id)):
        c = _counts([r for r in regs if r.training_id == t.id])
        state = ("removed from the calendar" if t.title == "(removed)" else "over" if t.ends <= now
                 else "running" if t.start <= now else "open")
        when = format_when(t.start, tz) if t.title != "(removed)" else "-"
        print(f"{t.id:<24} {when:<38} {t.capacity:>6} {c.get('confirmed', 0):>5} {c.get('waitlisted', 0):>5} "
              f"{c.get('held', 0):>5} {c.get('attended', 0):>4}  {state}")
    if not courses:
        print("no trainings: add [trainings] rrule/first or [[trainings.dates]] to the config")
    return 0


def _mail_state(ctx: Context, tid: str) -> dict[str, str]:
    """Recipient -> their latest mail about the course: kind and whether it is queued, sent or failed."""
    store = ctx.store()
    latest: dict[str, dict[str, Any]] = {}
    for e in store.ledger_all():
        if e.get("training_id") == tid and e.get("status") == "queued":
            if e["recipient"] not in latest or e.get("at", "") > latest[e["recipient"]].get("at", ""):
                latest[e["recipient"]] = e
    out = {}
    for who, e in latest.items():
        entry = store.outbox_entry(outbox_key(e["key"]))
        out[who] = f"{e['mailing']} {entry.status if entry else 'queued'}"
    return out


def show(args: argparse.Namespace, ctx: Context) -> int:
    cfg = ctx.settings.mailings
    tz = cfg.tz()
    now = ctx.clock.now()
    tid = args.id.lower()
    t = schedule.find(cfg.trainings, tid)
    store = ctx.store()
    regs = store.registrations(tid)
    if t is None and not regs:
        error(f"no training {tid!r} in the calendar and nobody registered for it; see `trainings list`")
        return 1
    removed = t is None
    t = t or TrainingDate(id=tid, start=now, end=now, title="(removed from the calendar)")
    view = trainings(ctx, store).overview(t, now)
    mail = _mail_state(ctx, tid)
    upcoming = [d for d in ctx.mailings(store).plan(now, only="trainings")[0]
                if d.record.get("training_id") == tid]
    if args.json:
        print(json.dumps({"id": t.id, "title": t.title, "removed": removed, "start": t.start.isoformat(),
                          "end": t.ends.isoformat(), "place": t.place, "remote": t.remote, "capacity": t.capacity,
                          "registrations": [r.to_dict() | {"mail": mail.get(r.address, "")} for r in regs],
                          "waitlist": [r.address for r in view.waitlist], "places": view.places,
                          "due_now": [{"mailing": d.mailing, "to": d.recipient, "why": d.why} for d in upcoming]},
                         indent=2))
        return 0
    print(f"{t.id}  {t.title}")
    if not removed:
        days = schedule.days_of(t, cfg.timezone)
        state = "over" if t.ends <= now else "running: registration closed" if t.start <= now else "open"
        print(f"  when      {schedule.span_words(t, cfg.timezone)}" + (f" ({days} days)" if days > 1 else ""))
        print(f"  place     {t.place or '-'}; remote: {t.remote or '-'}")
        print(f"  places    {t.capacity}: {view.confirmed} confirmed; {state}")
    by = {s: [r for r in regs if r.status is s] for s in Status}

    def line(r: Registration, extra: str = "") -> str:
        last = r.last
        how = f"{last.via} {format_when(last.at, tz)}" if last else ""
        asked = f", asked by {r.registered_by}" if r.registered_by not in ("", r.address) else ""
        return (f"    {r.address:<34} {r.name[:22]:<22} {r.partner_id:<12} {r.seat:<9} {extra}{how}{asked}"
                f"  [mail: {mail.get(r.address, 'none yet')}]")

    sections = [("confirmed", Status.CONFIRMED), ("waitlist, in order", Status.WAITLISTED),
                ("pending staff approval (#approve / #decline)", Status.HELD)]
    for title, status in sections:
        rows = view.waitlist if status is Status.WAITLISTED else by[status]
        print(f"  {title} ({len(rows)}):")
        for i, r in enumerate(rows, 1):
            print(line(r, f"#{i} " if status is Status.WAITLISTED else ""))
    if view.ended or by[Status.ATTENDED] or by[Status.ABSENT]:
        print("  attendance:")
        for title, rows in (("attended", by[Status.ATTENDED]), ("absent (no-show)", by[Status.ABSENT]),
                            ("not marked yet (counts as a no-show until marked)",
                             by[Status.CONFIRMED] if view.ended else [])):
            print(f"    {title} ({len(rows)}):")
            for r in rows:
                print("  " + line(r))
    ended = by[Status.CANCELLED] + by[Status.DECLINED]
    if ended:
        print(f"  cancelled or declined ({len(ended)}):")
        for r in ended:
            print(line(r, f"{r.status} "))
    if view.places:
        print("  included places, in the course's term:")
        for pid, info in view.places.items():
            print(f"    {pid:<14} {info['plan']:<8} {len(info['taken'])} of {info['included']} taken "
                  f"({info['term']}): {', '.join(info['taken']) or '-'}")
    print(f"  mail due now ({len(upcoming)}):" + ("" if upcoming else " none"))
    for d in upcoming:
        print(f"    {d.mailing:<22} to {d.recipient:<34} {d.why}")
    return 0

"""`partners ...`: the roster (import, export, list), payments, trainings, and leaving the program."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from service import roster
from workflows.delivery import DeliveryState
from workflows.errors import BadInput
from workflows.mailings.trainings import seats_used
from workflows.roster import RosterImport, duplicates, export_csv, lapsed_since, parse_roster

from .common import day, error, plural, read_sheet
from .context import Context
from .progress import progress

PROGRESS_FROM = 500  # rows: smaller sheets import in a blink

def add_parser(sub: argparse._SubParsersAction) -> None:
    pp = sub.add_parser("partners", help="the roster: import, export, list; payments, trainings, leaving",
                        description="The partner roster and what happens to it.")
    psub = pp.add_subparsers(dest="partners_verb", required=True, metavar="VERB")
    pi = psub.add_parser("import", help="upsert partners and contacts from a CSV sheet (columns: docs/reference.md, Roster CSV)",
                         description="Upsert partners and contacts from a CSV sheet. Every rejected row is listed "
                                     "(FILE:LINE: reasons) and the exit code is 2; the other rows are imported, so "
                                     "fix the rows and import the sheet again.")
    pi.add_argument("file", help="the CSV file (UTF-8; comma- or semicolon-separated)")
    pi.add_argument("--sync", action="store_true",
                    help="make the roster the sheet: contacts missing from it are removed, partners missing from "
                         "it deactivated (threads and history are kept); prints the changes, applies them only "
                         "with --yes")
    pi.add_argument("--yes", action="store_true", help="with --sync: apply the changes it prints")
    pi.set_defaults(run=import_sheet)
    pe = psub.add_parser("export", help="write the roster as a CSV sheet that `partners import` reads back")
    pe.add_argument("file", help="the CSV file to write ('-' for standard output)")
    pe.set_defaults(run=export)
    pl = psub.add_parser("list", help="the roster, with plan, yearly fee, seats, and who is lapsed or deactivated")
    pl.add_argument("--json", action="store_true", help="print JSON (one object per partner) instead of a table")
    pl.set_defaults(run=list_partners)
    pr = psub.add_parser("renew", help="record a payment: the old term's renewal notices stop, a new term begins "
                                       "(a lapsed or deactivated partner is back in the program)")
    pr.add_argument("id", help="the partner id (see `partners list`)")
    pr.add_argument("--until", required=True, help="the new term's end date, e.g. 2028-03-31")
    pr.set_defaults(run=renew)
    ptr = psub.add_parser("trained", help="record that a contact completed a training (uses a seat, grants "
                                          "a channel seat)")
    ptr.add_argument("address", help="the contact's mail address")
    ptr.add_argument("--on", required=True, help="the training date, e.g. 2027-02-10 (not in the future)")
    ptr.set_defaults(run=trained)
    pd = psub.add_parser("deactivate", help="a partner leaves the program: no more mailings, its people write as "
                                            "strangers; threads and history are kept")
    pd.add_argument("id", help="the partner id")
    pd.add_argument("--on", help="the first day out of the program (default: today; a later day plans it ahead)")
    pd.set_defaults(run=deactivate)
    pa = psub.add_parser("reactivate", help="undo `partners deactivate`")
    pa.add_argument("id", help="the partner id")
    pa.set_defaults(run=reactivate)
    prc = psub.add_parser("remove-contact", help="take a contact off the roster (their threads and mail history "
                                                 "are kept)")
    prc.add_argument("address", help="the contact's mail address")
    prc.add_argument("--partner", help="the partner to remove it from, if several list it")
    prc.set_defaults(run=remove_contact)


def _read(path: str) -> RosterImport:
    return parse_roster(read_sheet(path))


def import_sheet(args: argparse.Namespace, ctx: Context) -> int:
    if args.yes and not args.sync:
        raise BadInput("--yes only goes with --sync (a plain import applies at once)")
    sheet = _read(args.file)
    for note in sheet.notes:
        print(f"{args.file}: {note}")
    rejected = list(sheet.rejected)
    if not sheet.rows and rejected:  # the header: nothing could be read
        _rejections(args.file, rejected, 0)
        return 2
    if args.sync and rejected:
        _rejections(args.file, rejected, sheet.rows)
        error("--sync changed nothing: a rejected row would look like a row missing from the sheet (and its "
              "contact would be removed); fix the rows above and run it again")
        return 2
    now = ctx.clock.now()
    today = now.astimezone(ctx.settings.calendar.tz()).date()
    apply = not args.sync or args.yes
    with progress(sheet.rows, "importing rows", threshold=PROGRESS_FROM) as bar:
        done = roster.import_roster(ctx.store(write=apply), sheet, now, today=today, sync=args.sync, apply=apply,
                                    step=bar.update)
    plan = done.plan
    rejected += plan.rejected
    contacts = sum(len(p.contacts) for p in sheet.partners)
    print(f"{'imported' if apply else 'read'} {plural(len(sheet.partners), 'partner')}, "
          f"{plural(contacts, 'contact')} from {plural(sheet.rows, 'row')}; rejected {len(rejected)}")
    for line in plan.changes:
        print(f"  {line}")
    for note in done.notes:
        print(f"  {note}")
    verb = "" if apply else "would be "
    if plan.empty:
        print("no changes: the roster already says what the sheet says")
    else:
        changed = len(plan.save) - len(plan.added)
        print(f"{verb}{plural(len(plan.added), 'partner')} added, {changed} changed, {plan.unchanged} unchanged"
              + (f"; {plural(len(plan.removed), 'contact')} removed" if plan.removed else "")
              + (f"; {plural(len(plan.deactivated), 'partner')} deactivated" if plan.deactivated else ""))
        if plan.added and apply:
            print(f"welcome mail for {', '.join(plan.added)} goes out at the next cycle")
    if not apply and not plan.empty:
        print("nothing changed yet: run it again with --yes to apply these changes")
    if rejected:
        _rejections(args.file, rejected, sheet.rows)
        return 2
    return 0


def _rejections(path: str, rejected: list, rows: int) -> None:
    for r in sorted(rejected, key=lambda r: r.line):
        print(f"{path}:{r.line}: {r.reason}", file=sys.stderr)
    if rows:
        error(f"{len(rejected)} of {plural(rows, 'row')} rejected (listed above); fix them and import the sheet "
              f"again (importing twice changes nothing)")


def export(args: argparse.Namespace, ctx: Context) -> int:
    partners = ctx.store().partners()
    text = export_csv(partners)
    if args.file == "-":
        sys.stdout.write(text)
    else:
        try:
            Path(args.file).write_text(text, encoding="utf-8")
        except OSError as e:
            raise BadInput(f"cannot write {args.file}: {e.strerror}") from None
        contacts = sum(len(p.contacts) for p in partners)
        print(f"wrote {plural(len(partners), 'partner')}, {plural(contacts, 'contact')} to {args.file}")
    for email, ids in duplicates(partners).items():
        print(f"warning: {email} is a contact of {' and '.join(ids)}; `partners import` refuses that sheet until "
              f"one is removed (`partners remove-contact {email} --partner {ids[0]}`)", file=sys.stderr)
    return 0


def list_partners(args: argparse.Namespace, ctx: Context) -> int:
    partners = ctx.store().partners()
    delivery = ctx.store().delivery_states()
    today = ctx.clock.now().astimezone(ctx.settings.calendar.tz()).date()
    grace = ctx.settings.mailings.renewals.grace_days
    if args.json:
        # "active": in the program today (a deactivation planned for a later day has not begun yet).
        rows = [p.to_dict() | {"active": p.active_on(today),
                               "lapsed_since": (s.isoformat() if (s := lapsed_since(p, today, grace)) else None)}
                for p in partners]
        for row in rows:  # each contact's delivery state, when anything went wrong with mail to it
            for c in row["contacts"]:
                if c["email"] in delivery and delivery[c["email"]].failures:
                    c["delivery"] = _delivery_json(delivery[c["email"]])
        print(json.dumps(rows, indent=2))
        return 0
    for p in partners:
        seats = sum(c.has_seat for c in p.contacts)
        standing = ""
        if not p.active_on(today):
            standing = f"  deactivated from {p.deactivated_on}" if p.deactivated_on else "  deactivated"
        elif p.deactivated_on:
            standing = f"  leaves on {p.deactivated_on}"
        elif (since := lapsed_since(p, today, grace)) is not None:
            standing = f"  LAPSED since {since}"
        print(f"{p.id:<16} {p.name:<30} {p.plan:<8} ${p.yearly_fee:,}/yr  renews {p.renews_on or '-'}  "
              f"{plural(len(p.contacts), 'contact')}, {plural(seats, 'seat')}{standing}")
        for c in p.contacts:
            d = delivery.get(c.email)
            if d is not None and d.failures:
                state = f"bouncing since {d.bouncing_since.date().isoformat()}" if d.bouncing else "delivery trouble"
                print(f"  {c.email}: {state}, {plural(d.failures, 'failure')}, "
                      f"last {d.last_failure_at.date().isoformat()}: {' '.join(d.last_reason.split())[:90]}")
    return 0


def _delivery_json(d: DeliveryState) -> dict[str, object]:
    full = d.to_dict()
    return {"bouncing": d.bouncing, **{k: full[k] for k in ("bouncing_since", "failures", "last_failure_at",
                                                             "last_reason", "staff_told_at")}}


def renew(args: argparse.Namespace, ctx: Context) -> int:
    until = day(args.until, "--until")
    try:
        p, stopped, cancelled = roster.record_renewal(ctx.store(write=True), ctx.settings.mailings, args.id, until,
                                                      ctx.clock.now())
    except KeyError:
        raise BadInput(f"no partner {args.id}; see `partners list`") from None
    print(f"{p.id}: renewal recorded, paid until {until.isoformat()} ({p.plan} plan, ${p.yearly_fee:,}); "
          f"{plural(len(stopped), 'remaining notice')} of the old term stopped, "
          f"{plural(cancelled, 'queued one')} cancelled")
    return 0


def trained(args: argparse.Namespace, ctx: Context) -> int:
    on = day(args.on, "--on")
    today = ctx.clock.now().astimezone(ctx.settings.calendar.tz()).date()
    if on > today:
        raise BadInput(f"--on {on.isoformat()} is in the future; record a training once it is completed (it grants "
                       f"the seat)")
    try:
        p = roster.record_training(ctx.store(write=True), args.address, on)
    except KeyError:
        raise BadInput(f"{args.address} is not a contact of any partner; add it with `partners import`") from None
    print(f"{args.address.lower()} ({p.id}) trained on {on.isoformat()}: holds a seat in the support channel; "
          f"{p.id} has used {seats_used(p, on)} of its training places this term")
    return 0


def deactivate(args: argparse.Namespace, ctx: Context) -> int:
    now = ctx.clock.now()
    today = now.astimezone(ctx.settings.calendar.tz()).date()
    on = day(args.on, "--on") if args.on else today
    try:
        p = roster.deactivate(ctx.store(write=True), args.id, on, now)
    except KeyError:
        raise BadInput(f"no partner {args.id}; see `partners list`") from None
    when = "from today" if on <= today else f"from {on.isoformat()}"
    print(f"{p.id} ({p.name}) is out of the program {when}: no more mailings; its people's mail is handled as "
          f"from strangers (no seat, no promise); its threads and history are kept. "
          f"Undo with `partners reactivate {p.id}`")
    return 0


def reactivate(args: argparse.Namespace, ctx: Context) -> int:
    try:
        p = roster.reactivate(ctx.store(write=True), args.id, ctx.clock.now())
    except KeyError:
        raise BadInput(f"no partner {args.id}; see `partners list`") from None
    print(f"{p.id} ({p.name}) is in the program again")
    return 0


def remove_contact(args: argparse.Namespace, ctx: Context) -> int:
    try:
        p = roster.remove_contact(ctx.store(write=True), args.address, ctx.clock.now(), args.partner)
    except KeyError:
        where = f"partner {args.partner}" if args.partner else "any partner"
        raise BadInput(f"{args.address} is not a contact of {where}; see `partners list --json`") from None
    print(f"{args.address.lower()} removed from {p.id} ({plural(len(p.contacts), 'contact')} left); their threads "
          f"and mail history are kept")
    return 0

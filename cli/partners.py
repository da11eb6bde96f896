"""`partners import|list|renew|trained`: the roster, payments and completed trainings."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

from service import roster
from workflows.mailings.trainings import seats_used
from workflows.roster import parse_roster

from .common import error
from .context import Context


def add_parser(sub: argparse._SubParsersAction) -> None:
    pp = sub.add_parser("partners", help="the roster")
    psub = pp.add_subparsers(dest="partners_verb", required=True)
    pi = psub.add_parser("import", help="upsert partners and contacts from a CSV file")
    pi.add_argument("file")
    pi.set_defaults(run=import_sheet)
    pl = psub.add_parser("list")
    pl.add_argument("--json", action="store_true")
    pl.set_defaults(run=list_partners)
    pr = psub.add_parser("renew", help="record a payment: the old term's renewal notices stop, a new term begins")
    pr.add_argument("id")
    pr.add_argument("--until", required=True, help="the new term's end date, e.g. 2028-03-31")
    pr.set_defaults(run=renew)
    ptr = psub.add_parser("trained", help="record that a contact completed a training (uses a seat, grants "
                                          "a channel seat)")
    ptr.add_argument("address")
    ptr.add_argument("--on", required=True, help="the training date, e.g. 2027-02-10")
    ptr.set_defaults(run=trained)


def import_sheet(args: argparse.Namespace, ctx: Context) -> int:
    try:
        text = Path(args.file).read_text(encoding="utf-8-sig")
    except OSError as e:
        error(f"cannot read {args.file}: {e.strerror}")
        return 2
    except UnicodeDecodeError:
        error(f"{args.file} is not UTF-8 text; save the spreadsheet as CSV UTF-8")
        return 2
    sheet = parse_roster(text)
    done = roster.import_roster(ctx.store(write=True), sheet, ctx.clock.now())
    contacts = sum(len(p.contacts) for p in sheet.partners)
    print(f"imported {len(sheet.partners)} partners, {contacts} contacts from {sheet.rows} rows; "
          f"rejected {len(sheet.rejected)}")
    for note in done.notes:
        print(f"  {note}")
    for r in sheet.rejected:
        print(f"  {args.file}:{r.line}: {r.reason}")
    return 1 if sheet.rejected and not sheet.partners else 0


def list_partners(args: argparse.Namespace, ctx: Context) -> int:
    partners = ctx.store().partners()
    if args.json:
        print(json.dumps([p.to_dict() for p in partners], indent=2))
        return 0
    for p in partners:
        seats = sum(c.has_seat for c in p.contacts)
        print(f"{p.id:<16} {p.name:<30} {p.plan:<8} ${p.yearly_fee:,}/yr  renews {p.renews_on or '-'}  "
              f"{len(p.contacts)} contacts, {seats} seats")
    return 0


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value)
    except ValueError:
        error(f"{value!r} is not a date like 2028-03-31")
        return None


def renew(args: argparse.Namespace, ctx: Context) -> int:
    day = _day(args.until)
    if day is None:
        return 2
    try:
        p, stopped, cancelled = roster.record_renewal(ctx.store(write=True), ctx.settings.mailings, args.id, day,
                                                      ctx.clock.now())
    except KeyError:
        error(f"no partner {args.id}; see `partners list`")
        return 1
    print(f"{p.id}: renewal recorded, paid until {day.isoformat()} ({p.plan} plan, ${p.yearly_fee:,}); "
          f"{len(stopped)} remaining notice(s) of the old term stopped, {cancelled} queued one(s) cancelled")
    return 0


def trained(args: argparse.Namespace, ctx: Context) -> int:
    day = _day(args.on)
    if day is None:
        return 2
    today = ctx.clock.now().astimezone(ctx.settings.calendar.tz()).date()
    if day > today:
        print(f"error: {day.isoformat()} is in the future; record a training once it is completed (it grants "
              f"the seat)", file=sys.stderr)
        return 2
    try:
        p = roster.record_training(ctx.store(write=True), args.address, day)
    except KeyError:
        error(f"{args.address} is not a contact of any partner; add it with `partners import`")
        return 1
    print(f"{args.address.lower()} ({p.id}) trained on {day.isoformat()}: holds a seat in the support channel; "
          f"{p.id} has used {seats_used(p, day)} of its training places this term")
    return 0

"""The partner roster from a spreadsheet (CSV text in, partners and rejections out), and back.

One row per contact:
partner_id,partner_name,plan,renews_on,contact_name,contact_email,roles,trained_on[,deactivated_on]

A row with the four contact columns empty declares a partner without contacts. ``deactivated_on`` is
optional: when the column is there it is the truth (empty: in the program); without it, a partner on
the sheet is in the program. ``plan_import`` compares a sheet with the stored roster (what is new,
changed, removed), ``export_csv`` writes the stored roster in the same form, so that exporting and
importing again changes nothing. ``lapsed_since`` is the lapse rule.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Sequence

from .model import FROZEN, PLANS, ROLES, Contact, Partner

COLUMNS = ("partner_id", "partner_name", "plan", "renews_on", "contact_name", "contact_email", "roles", "trained_on")
OPTIONAL = ("deactivated_on",)
CONTACT_COLUMNS = ("contact_name", "contact_email", "roles", "trained_on")
_EMAIL_RE = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(**FROZEN)
class Rejected:
    line: int
    reason: str


@dataclass(**FROZEN)
class RosterImport:
    partners: tuple[Partner, ...]
    rejected: tuple[Rejected, ...]
    rows: int
    notes: tuple[str, ...] = ()  # how the sheet was read ("semicolon-separated")
    lines: tuple[tuple[str, int], ...] = ()  # (contact address, its line), to name rows in later checks
    status_column: bool = False  # the sheet has deactivated_on: it says who is out of the program

    def line_of(self, email: str) -> int:
        return dict(self.lines).get(email, 0)


def _date(value: str, column: str, faults: list[str]) -> date | None:
    value = value.strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        faults.append(f"{column} {value!r} is not a date like 2027-03-31")
        return None


def _delimiter(text: str) -> tuple[str, tuple[str, ...]]:
    first = text.split("\n", 1)[0]
    if "," not in first and first.count(";") >= len(COLUMNS) - 1:
        # Excel saves "CSV" with semicolons where the decimal mark is a comma (German, French, Italian...).
        return ";", ("read as semicolon-separated (as Excel saves CSV in some languages)",)
    return ",", ()


def _header_problem(header: tuple[str, ...], text: str) -> str:
    missing = [c for c in COLUMNS if c not in header]
    reason = f"header lacks column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}"
    first = text.split("\n", 1)[0]
    if "\t" in first:
        reason += " (this looks tab-separated: save the sheet as CSV, comma-separated)"
    elif ";" in first and "," not in first:
        reason += " (this looks semicolon-separated but the columns are not the expected ones)"
    return reason


def _row_faults(r: dict[str, str], extra: int, short: bool) -> tuple[list[str], dict[str, object]]:
    """Every fault of one row (not just the first), and the values read."""
    faults: list[str] = []
    if short:
        faults.append(f"the row has fewer fields than the header ({len(COLUMNS)} expected)")
    if extra:
        faults.append(f"the row has {extra} more field(s) than the header; quote values that contain the "
                      f"separator (roles can also be separated by '|')")
    pid = r.get("partner_id", "")
    if not _ID_RE.match(pid):
        faults.append(f"partner_id {pid!r} must be letters, digits, '-', '_' or '.'")
    if not r.get("partner_name"):
        faults.append("partner_name is empty")
    plan = r.get("plan", "").lower()
    if plan not in PLANS:
        faults.append(f"plan {r.get('plan', '')!r} must be one of {', '.join(PLANS)}")
    renews = _date(r.get("renews_on", ""), "renews_on", faults)
    deactivated = _date(r.get("deactivated_on", ""), "deactivated_on", faults)
    no_contact = not any(r.get(c) for c in CONTACT_COLUMNS)
    email = r.get("contact_email", "").lower()
    roles: frozenset[str] = frozenset()
    trained = None
    if not no_contact:
        if not _EMAIL_RE.match(email):
            faults.append(f"contact_email {r.get('contact_email', '')!r} is not an address")
        roles = frozenset(x.strip().lower() for x in re.split(r"[;|]", r.get("roles", "")) if x.strip())
        if roles - ROLES:
            faults.append(f"roles {', '.join(sorted(roles - ROLES))} unknown (use {', '.join(sorted(ROLES))})")
        trained = _date(r.get("trained_on", ""), "trained_on", faults)
    return faults, {"pid": pid, "plan": plan, "renews": renews, "deactivated": deactivated, "email": email,
                    "roles": roles, "trained": trained, "no_contact": no_contact}


def parse_roster(text: str) -> RosterImport:
    """Parse the CSV. Good rows become partners (contacts grouped by partner_id); each bad row is
    reported with every fault it has."""
    text = text.lstrip("\ufeff")
    delimiter, notes = _delimiter(text)
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    header = tuple((h or "").strip() for h in (reader.fieldnames or ()))
    if any(c not in header for c in COLUMNS):
        return RosterImport(partners=(), rejected=(Rejected(line=1, reason=_header_problem(header, text)),), rows=0)
    partners: dict[str, Partner] = {}
    first_line: dict[str, int] = {}  # partner id -> line of its first row
    where: dict[str, tuple[str, int]] = {}  # address -> (partner id, line)
    rejected: list[Rejected] = []
    rows = 0
    for row in reader:
        rows += 1
        line = reader.line_num
        extra = len(row.get(None) or ())  # type: ignore[call-overload]
        r = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        short = any(v is None for k, v in row.items() if k in COLUMNS)
        faults, v = _row_faults(r, extra, short)
        pid, email = str(v["pid"]), str(v["email"])
        p = partners.get(pid)
        if p is not None and (p.plan != v["plan"] or (v["renews"] and p.renews_on and v["renews"] != p.renews_on)):
            faults.append(f"partner {pid} has a different plan or renewal date on line {first_line[pid]}; "
                          f"one partner, one plan")
        if not v["no_contact"] and email in where:
            owner, at = where[email]
            if owner != pid:
                # One address, one partner: otherwise who is writing would depend on row order.
                faults.append(f"{email} is already a contact of partner {owner} (line {at})")
            else:
                faults.append(f"{email} is listed twice for partner {pid} (line {at})")
        if faults:
            rejected.append(Rejected(line=line, reason="; ".join(faults)))
            continue
        if p is None:
            p = Partner(id=pid, name=r["partner_name"], plan=str(v["plan"]), renews_on=v["renews"],  # type: ignore[arg-type]
                        deactivated_on=v["deactivated"])  # type: ignore[arg-type]
            first_line[pid] = line
        if not v["no_contact"]:
            where[email] = (pid, line)
            contact = Contact(partner_id=pid, name=r["contact_name"], email=email, roles=v["roles"],  # type: ignore[arg-type]
                              trained_on=v["trained"])  # type: ignore[arg-type]
            p = replace(p, contacts=p.contacts + (contact,))
        partners[pid] = replace(p, renews_on=p.renews_on or v["renews"],  # type: ignore[arg-type]
                                deactivated_on=p.deactivated_on or v["deactivated"])  # type: ignore[arg-type]
    return RosterImport(partners=tuple(partners.values()), rejected=tuple(rejected), rows=rows, notes=notes,
                        lines=tuple((e, at) for e, (_, at) in where.items()), status_column="deactivated_on" in header)


def merge(existing: Partner | None, incoming: Partner, *, sync: bool = False, status_column: bool = False) -> Partner:
    """Upsert: the spreadsheet is the truth for the contacts it lists; keep contacts it does not mention
    (``sync``: drop them). A partner on the sheet is in the program unless its deactivated_on says not."""
    if existing is None:
        return incoming
    listed = {c.email for c in incoming.contacts}
    by_email = {c.email: c for c in existing.contacts if not sync or c.email in listed}
    for c in incoming.contacts:
        old = by_email.get(c.email)
        # A training date once recorded is not forgotten because a sheet left it empty.
        trained = c.trained_on or (old.trained_on if old else None)
        by_email[c.email] = replace(c, trained_on=trained)
    # A recorded payment (`partners renew`) moves the renewal date forward; an older sheet
    # re-imported to add a contact must not move it back and silently stop the next term's notices.
    renews = incoming.renews_on
    if existing.renews_on and (renews is None or existing.renews_on > renews):
        renews = existing.renews_on
    return replace(incoming, contacts=tuple(by_email.values()), active=True, renews_on=renews,
                   deactivated_on=incoming.deactivated_on if status_column else None)


@dataclass(**FROZEN)
class ImportPlan:
    """What importing a sheet would do to the stored roster; applied in one transaction by the service."""

    save: tuple[Partner, ...]  # partners to write: new or changed
    added: tuple[str, ...]  # ids new to the roster (a welcome mail is due for each)
    rejected: tuple[Rejected, ...]  # rows refused against the stored roster
    changes: tuple[str, ...]  # one line per change, for people
    removed: tuple[tuple[str, Contact], ...]  # (partner id, contact) taken off the roster (history kept)
    deactivated: tuple[str, ...]
    unchanged: int  # partners on the sheet that are already exactly so

    @property
    def empty(self) -> bool:
        return not self.save


def _describe(old: Partner | None, new: Partner) -> list[str]:
    if old is None:
        n = len(new.contacts)
        return [f"+ {new.id}: new partner {new.name!r} ({new.plan}, {n} contact{'' if n == 1 else 's'})"]
    out = []
    for field in ("name", "plan", "renews_on"):
        a, b = getattr(old, field), getattr(new, field)
        if a != b:
            out.append(f"~ {new.id}: {field} {a or '-'} -> {b or '-'}")
    if (old.active, old.deactivated_on) != (new.active, new.deactivated_on):
        out.append(f"~ {new.id}: " + (f"deactivated on {new.deactivated_on}" if new.deactivated_on
                                      else "back in the program (on the sheet)"))
    before = {c.email: c for c in old.contacts}
    after = {c.email: c for c in new.contacts}
    for e, c in after.items():
        if e not in before:
            out.append(f"+ {new.id}: contact {e}")
        elif before[e] != c:
            diffs = [f"{f} {getattr(before[e], f) or '-'} -> {getattr(c, f) or '-'}"
                     for f in ("name", "trained_on") if getattr(before[e], f) != getattr(c, f)]
            if before[e].roles != c.roles:
                diffs.append(f"roles {';'.join(sorted(before[e].roles)) or '-'} -> {';'.join(sorted(c.roles)) or '-'}")
            out.append(f"~ {new.id}: contact {e}: {', '.join(diffs)}")
    for e in before:
        if e not in after:
            out.append(f"- {new.id}: contact {e} removed (not on the sheet; their threads and mail history stay)")
    return out


def plan_import(stored: Sequence[Partner], sheet: RosterImport, *, sync: bool, today: date) -> ImportPlan:
    """The sheet against the stored roster. Plain import merges; ``sync`` makes the roster the sheet:
    contacts missing from it are removed, partners missing from it deactivated (from ``today``)."""
    by_id = {p.id: p for p in stored}
    owners: dict[str, str] = {}
    for p in stored:
        for c in p.contacts:
            owners.setdefault(c.email, p.id)
    rejected: list[Rejected] = []
    incoming: list[Partner] = []
    for p in sheet.partners:
        keep = []
        for c in p.contacts:
            owner = owners.get(c.email)
            if owner is not None and owner != p.id and not sync:
                rejected.append(Rejected(line=sheet.line_of(c.email), reason=(
                    f"{c.email} is already a contact of partner {owner} in the roster; an address belongs to one "
                    f"partner: `partners remove-contact {c.email}` first, or import the whole sheet with --sync")))
            else:
                keep.append(c)
        if keep or not p.contacts or p.id in by_id:
            incoming.append(replace(p, contacts=tuple(keep)))
    on_sheet = {p.id for p in incoming}
    moved = {c.email for p in incoming for c in p.contacts}
    save: list[Partner] = []
    changes: list[str] = []
    removed: list[tuple[str, Contact]] = []
    added: list[str] = []
    unchanged = 0
    for p in incoming:
        old = by_id.get(p.id)
        new = merge(old, p, sync=sync, status_column=sheet.status_column)
        if new == old:
            unchanged += 1
            continue
        save.append(new)
        changes += _describe(old, new)
        if old is None:
            added.append(p.id)
        removed += [(p.id, c) for c in (old.contacts if old else ()) if c.email not in {x.email for x in new.contacts}]
    deactivated: list[str] = []
    if sync:
        for p in stored:
            if p.id in on_sheet:
                continue
            gone = tuple(c for c in p.contacts if c.email in moved)  # moved to a partner on the sheet
            new = replace(p, contacts=tuple(c for c in p.contacts if c.email not in moved))
            if p.active_on(today):
                new = replace(new, deactivated_on=today)
                deactivated.append(p.id)
                changes.append(f"x {p.id}: deactivated from {today.isoformat()} (not on the sheet; contacts, "
                               f"threads and history kept)")
            for c in gone:
                changes.append(f"- {p.id}: contact {c.email} moved to another partner on the sheet")
            removed += [(p.id, c) for c in gone]
            if new != p:
                save.append(new)
    return ImportPlan(save=tuple(save), added=tuple(added), rejected=tuple(rejected), changes=tuple(changes),
                      removed=tuple(removed), deactivated=tuple(deactivated), unchanged=unchanged)


def export_csv(partners: Sequence[Partner]) -> str:
    """The roster as a sheet `partners import` reads back to the same roster (one row per contact; a
    partner without contacts gets one row with the contact columns empty)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(COLUMNS + OPTIONAL)
    for p in partners:
        head = [p.id, p.name, p.plan, p.renews_on.isoformat() if p.renews_on else ""]
        tail = [p.deactivated_on.isoformat() if p.deactivated_on else ""]
        for c in p.contacts or (None,):
            if c is None:
                w.writerow(head + ["", "", "", ""] + tail)
            else:
                w.writerow(head + [c.name, c.email, ";".join(sorted(c.roles)),
                                   c.trained_on.isoformat() if c.trained_on else ""] + tail)
    return out.getvalue()


def duplicates(partners: Sequence[Partner]) -> dict[str, list[str]]:
    """Addresses listed under more than one partner (stores made before the sheet check): address -> ids."""
    seen: dict[str, list[str]] = {}
    for p in partners:
        for c in p.contacts:
            seen.setdefault(c.email, []).append(p.id)
    return {e: ids for e, ids in seen.items() if len(ids) > 1}


def lapsed_since(partner: Partner, today: date, grace_days: int) -> date | None:
    """The day a partner lapsed: its renewal date plus the grace period passed without a recorded
    payment (`partners renew` moves the renewal date). None while it is in good standing."""
    if partner.renews_on is None:
        return None
    end = partner.renews_on + timedelta(days=grace_days)
    return end + timedelta(days=1) if today > end else None


def lapse_note(partner: Partner, today: date, grace_days: int) -> str:
    """For staff: "" when in good standing, else why the partner counts as lapsed."""
    since = lapsed_since(partner, today, grace_days)
    if since is None:
        return ""
    return (f"LAPSED since {since.isoformat()}: renewal was due {partner.renews_on.isoformat()} "  # type: ignore[union-attr]
            f"and no payment is recorded (`partners renew {partner.id} --until DATE`)")

"""The partner roster from a spreadsheet (CSV text in, partners and rejections out).

One row per contact:
partner_id,partner_name,plan,renews_on,contact_name,contact_email,roles,trained_on
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, replace
from datetime import date

from .model import FROZEN, PLANS, ROLES, Contact, Partner

COLUMNS = ("partner_id", "partner_name", "plan", "renews_on", "contact_name", "contact_email", "roles", "trained_on")
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


def _date(value: str, column: str) -> date | None:
    value = value.strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{column} {value!r} is not a date like 2027-03-31") from None


def parse_roster(text: str) -> RosterImport:
    """Parse the CSV. Good rows become partners (contacts grouped by partner_id); bad rows are reported."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = tuple((h or "").strip() for h in (reader.fieldnames or ()))
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        return RosterImport(partners=(), rejected=(Rejected(line=1, reason=f"header lacks column(s) {', '.join(missing)}; "
                                                              f"expected {','.join(COLUMNS)}"),), rows=0)
    partners: dict[str, Partner] = {}
    rejected: list[Rejected] = []
    rows = 0
    for row in reader:
        rows += 1
        line = reader.line_num
        r = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        try:
            pid = r["partner_id"]
            if not _ID_RE.match(pid):
                raise ValueError(f"partner_id {pid!r} must be letters, digits, '-', '_' or '.'")
            plan = r["plan"].lower()
            if plan not in PLANS:
                raise ValueError(f"plan {r['plan']!r} must be one of {', '.join(PLANS)}")
            email = r["contact_email"].lower()
            if not _EMAIL_RE.match(email):
                raise ValueError(f"contact_email {r['contact_email']!r} is not an address")
            roles = frozenset(x.strip().lower() for x in re.split(r"[;|]", r["roles"]) if x.strip())
            if roles - ROLES:
                raise ValueError(f"roles {', '.join(sorted(roles - ROLES))} unknown; use {';'.join(sorted(ROLES))}")
            renews = _date(r["renews_on"], "renews_on")
            trained = _date(r["trained_on"], "trained_on")
            if not r["partner_name"]:
                raise ValueError("partner_name is empty")
        except ValueError as e:
            rejected.append(Rejected(line=line, reason=str(e)))
            continue
        contact = Contact(partner_id=pid, name=r["contact_name"], email=email, roles=roles, trained_on=trained)
        p = partners.get(pid)
        if p is None:
            p = Partner(id=pid, name=r["partner_name"], plan=plan, renews_on=renews)
        elif p.plan != plan or (renews and p.renews_on and renews != p.renews_on):
            rejected.append(Rejected(line=line, reason=f"partner {pid} has a different plan or renewal date on an "
                                                        f"earlier row; one partner, one plan"))
            continue
        owner = next((q.id for q in partners.values() if q.id != pid and any(c.email == email for c in q.contacts)),
                     None)
        if owner is not None:
            # One address, one partner: otherwise who is writing would depend on row order.
            rejected.append(Rejected(line=line, reason=f"{email} is already a contact of partner {owner}"))
            continue
        if any(c.email == email for c in p.contacts):
            rejected.append(Rejected(line=line, reason=f"{email} is listed twice for partner {pid}"))
            continue
        partners[pid] = replace(p, contacts=p.contacts + (contact,), renews_on=p.renews_on or renews)
    return RosterImport(partners=tuple(partners.values()), rejected=tuple(rejected), rows=rows)


def merge(existing: Partner | None, incoming: Partner) -> Partner:
    """Upsert: the spreadsheet is the truth for the contacts it lists; keep contacts it does not mention."""
    if existing is None:
        return incoming
    by_email = {c.email: c for c in existing.contacts}
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
    return replace(incoming, contacts=tuple(by_email.values()), active=existing.active or incoming.active,
                   renews_on=renews)

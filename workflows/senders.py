"""Who is writing: partner contact, someone else at a partner's shop, staff, or a stranger."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from .model import FROZEN, Contact, Partner, Sender

# Mail providers whose domain says nothing about the employer. A partner contact
# using gmail.com must not make every gmail.com user "that partner".
PUBLIC_DOMAINS = frozenset(
    """
    gmail.com googlemail.com yahoo.com yahoo.co.uk ymail.com hotmail.com hotmail.co.uk outlook.com
    live.com msn.com aol.com icloud.com me.com mac.com gmx.com gmx.de gmx.net web.de mail.com
    proton.me protonmail.com pm.me zoho.com yandex.com yandex.ru mail.ru qq.com 163.com 126.com
    fastmail.com hey.com tutanota.com comcast.net verizon.net att.net sbcglobal.net orange.fr
    free.fr laposte.net libero.it t-online.de btinternet.com
    """.split()
)


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


@dataclass(**FROZEN)
class Roster:
    """Look-up tables over the partner list; build once per cycle with ``Roster.build``."""

    partners: dict[str, Partner] = field(default_factory=dict)
    by_email: dict[str, Contact] = field(default_factory=dict)
    by_domain: dict[str, str] = field(default_factory=dict)  # domain -> partner id (unambiguous only)

    @classmethod
    def build(cls, partners: list[Partner] | tuple[Partner, ...], today: date | None = None) -> Roster:
        """``today``: partners deactivated by then are left out (their people write as strangers)."""
        by_email: dict[str, Contact] = {}
        owners: dict[str, set[str]] = {}
        for p in partners:
            if not (p.active_on(today) if today is not None else p.active and p.deactivated_on is None):
                continue
            for c in p.contacts:
                by_email[c.email] = c
                d = domain_of(c.email)
                if d and d not in PUBLIC_DOMAINS:
                    owners.setdefault(d, set()).add(p.id)
        # A domain claimed by two partners (an agency and its client, say) proves nothing.
        by_domain = {d: next(iter(ids)) for d, ids in owners.items() if len(ids) == 1}
        return cls(partners={p.id: p for p in partners}, by_email=by_email, by_domain=by_domain)


def classify(address: str, roster: Roster, staff: frozenset[str]) -> Sender:
    address = address.lower()
    if address in staff:
        return Sender(kind="staff", address=address)
    contact = roster.by_email.get(address)
    if contact is not None:
        return Sender(
            kind="partner",
            address=address,
            partner_id=contact.partner_id,
            contact_name=contact.name,
            seat=contact.has_seat,
            on_roster=True,
        )
    pid = roster.by_domain.get(domain_of(address))
    if pid is not None:
        return Sender(kind="partner", address=address, partner_id=pid, seat=False)
    return Sender(kind="unknown", address=address)

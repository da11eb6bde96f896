"""The welcome mail when a partner is added (``partners import`` queues a request; the next tick sends it).

It says what the program includes, how the support channel works, who holds a
seat, and gives the partner badge snippet linking to the partner's profile page.
"""

from __future__ import annotations

import html
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

from ..model import Partner
from .types import MailingsConfig
from .due import Due, format_day, money

STALE_AFTER = timedelta(days=30)  # a request this old (daemon down a month?) is no longer a welcome


def profile_url(partner: Partner, mc: MailingsConfig) -> str:
    return mc.program.profile_url.replace("{id}", partner.id)


def badge_snippet(partner: Partner, mc: MailingsConfig) -> str:
    return (f'<a href="{profile_url(partner, mc)}"><img src="{mc.program.badge_image}" '
            f'alt="{html.escape(partner.name)} is an {html.escape(mc.program.name)} member" width="160"></a>')


def mail(partner: Partner, email: str, name: str, mc: MailingsConfig, requested_at: datetime) -> Due:
    seats = [{"name": c.name or c.email, "email": c.email, "trained_on": c.trained_on.isoformat()}
             for c in partner.contacts if c.has_seat]
    return Due(
        mailing="welcome", occurrence=partner.id, recipient=email, partner_id=partner.id, due_at=requested_at,
        template="welcome", subject=f"Welcome to the {mc.program.name}, {partner.name}",
        why=f"{partner.name} was added to the roster",
        context={
            "name": name, "partner_name": partner.name, "solo": partner.plan == "solo",
            "has_seat": any(c.email == email and c.has_seat for c in partner.contacts), "program_name": mc.program.name, "plan": partner.plan,
            "amount": money(partner.yearly_fee),
            "renews_on": format_day(partner.renews_on) if partner.renews_on else "",
            "seats": seats, "seats_per_term": mc.trainings.included(partner.plan),
            "profile_url": profile_url(partner, mc),
            "badge_html": badge_snippet(partner, mc),
        },
    )


def due(partners: Sequence[Partner], ledger: Mapping[str, Mapping[str, Any]], mc: MailingsConfig, now: datetime,
        requests: Mapping[str, datetime]) -> tuple[list[Due], list[Due]]:
    send: list[Due] = []
    skip: list[Due] = []
    by_id = {p.id: p for p in partners}
    for pid, at in sorted(requests.items()):
        p = by_id.get(pid)
        if p is None or not p.active_on(now.astimezone(mc.tz()).date()):
            continue
        for c in p.contacts:
            d = mail(p, c.email, c.name, mc, at)
            if d.key in ledger:
                continue
            if now - at > STALE_AFTER:
                skip.append(d.skipped(f"{p.name} was added on {at.date().isoformat()}, more than "
                                      f"{STALE_AFTER.days} days ago; a welcome now would be odd"))
            else:
                send.append(d)
    return send, skip

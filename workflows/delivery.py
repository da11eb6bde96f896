"""Delivery state of contacts: who bounces, since when, and what that changes. Pure: data and times in.

A permanent failure (workflows.automatic: the address itself is bad) marks a
contact *bouncing* at once. Temporary failures (delays, full mailboxes, policy
rejections, class-4 give-ups) are counted, and ``soft_limit`` of them within
``soft_window`` mark it too. Evidence that mail arrives clears it: a delivery
report or read receipt from that address, a roster update of the contact, or
mail our server handed over that drew no bounce for ``settle_after``. (The
SMTP server's "250" alone proves nothing: our relay accepts first and bounces
later, so clearing on it would flap between every send and its bounce.)

Staff are told once per contact and bouncing spell when mail that *matters*
did not arrive: an acknowledgement, a relayed answer, a renewal notice or an
invitation. Renewal notices for a partner whose billing contact bounces also go
to its primary contact, and say so; other mailings skip a bouncing contact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from .automatic import Failure, Verdict
from .mailings.due import billing_contacts, primary_contacts
from .model import FROZEN, Contact, Partner

# Mail whose loss staff must hear about: someone is waiting for it or the contract depends on it.
# (Outbox kinds: a call invitation is "call-invite", its update "call-update".)
MATTERS = frozenset({"ack", "relay", "renewal", "invitation", "call-invite", "call-update"})


@dataclass(**FROZEN)
class DeliveryPolicy:
    soft_limit: int = 3  # temporary failures...
    soft_window: timedelta = timedelta(days=5)  # ...within this long mark a contact bouncing
    settle_after: timedelta = timedelta(days=3)  # mail accepted this long ago without a bounce clears it


@dataclass(**FROZEN)
class DeliveryState:
    """What we know about mail to one address. The default value: nothing wrong known."""

    address: str
    bouncing_since: datetime | None = None
    failures: int = 0  # failures since mail last arrived fine (permanent and temporary)
    last_failure_at: datetime | None = None
    last_reason: str = ""  # "5.1.1 Recipient address rejected: User unknown"
    soft_failures: tuple[datetime, ...] = ()  # temporary failures inside the window, oldest first
    staff_told_at: datetime | None = None  # staff heard about this bouncing spell (once per spell)
    cleared_at: datetime | None = None
    cleared_why: str = ""

    @property
    def bouncing(self) -> bool:
        return self.bouncing_since is not None

    def to_dict(self) -> dict[str, Any]:
        def iso(v: datetime | None) -> str | None:
            return v.isoformat() if v else None

        return {"address": self.address, "bouncing_since": iso(self.bouncing_since), "failures": self.failures,
                "last_failure_at": iso(self.last_failure_at), "last_reason": self.last_reason,
                "soft_failures": [t.isoformat() for t in self.soft_failures],
                "staff_told_at": iso(self.staff_told_at), "cleared_at": iso(self.cleared_at),
                "cleared_why": self.cleared_why}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DeliveryState:
        def dt(v: str | None) -> datetime | None:
            return datetime.fromisoformat(v) if v else None

        return cls(address=d["address"], bouncing_since=dt(d.get("bouncing_since")), failures=d.get("failures", 0),
                   last_failure_at=dt(d.get("last_failure_at")), last_reason=d.get("last_reason", ""),
                   soft_failures=tuple(datetime.fromisoformat(t) for t in d.get("soft_failures", ())),
                   staff_told_at=dt(d.get("staff_told_at")), cleared_at=dt(d.get("cleared_at")),
                   cleared_why=d.get("cleared_why", ""))


def failed_recipients(verdict: Verdict, *, sent_to: tuple[str, ...] = ()) -> tuple[Failure, ...]:
    """Who did not get our mail, by a bounce's verdict and the recipients our outbox sent it to.

    A report that names addresses is believed for those of our recipients it names (a report naming
    only an address we never wrote to is an alias or forward of one of ours: believed as it is when
    we sent to one address only). A notice that names nobody, about mail we sent to exactly one
    address, is about that address; as the notice does not say why, it counts as a temporary failure.
    """
    if verdict.kind != "bounce":
        return ()
    ours = {a.lower() for a in sent_to}
    named = verdict.failures
    if named and ours:
        mine = tuple(f for f in named if f.address in ours)
        if mine:
            return mine
        if len(ours) == 1:
            only = next(iter(ours))
            return tuple(replace(f, address=only, reason=f"{f.reason}; reported as {f.address}".lstrip("; "))
                         for f in named[:1])
        return named
    if named:
        return named
    if len(ours) == 1:
        return (Failure(address=next(iter(ours)), permanent=False, gave_up=True,
                        reason=f"a notice naming no address ({verdict.reason})"),)
    return ()


def record_failure(state: DeliveryState, failure: Failure, at: datetime,
                   policy: DeliveryPolicy = DeliveryPolicy()) -> DeliveryState:
    """``state`` after a bounce reporting ``failure`` for its address, received at ``at``."""
    reason = " ".join(x for x in (failure.status, failure.reason) if x)[:300] or "no reason given"
    recent = tuple(t for t in state.soft_failures if at - t < policy.soft_window)
    state = replace(state, failures=state.failures + 1, last_failure_at=at, last_reason=reason,
                    cleared_at=None, cleared_why="")
    if failure.permanent:
        return replace(state, soft_failures=recent, bouncing_since=state.bouncing_since or at)
    recent += (at,)
    marked = state.bouncing_since or (at if len(recent) >= policy.soft_limit else None)
    return replace(state, soft_failures=recent, bouncing_since=marked)


def record_delivered(state: DeliveryState, at: datetime, why: str) -> DeliveryState:
    """Mail reached the address (a delivery report or read receipt says so, or the roster changed it)."""
    return DeliveryState(address=state.address, cleared_at=at, cleared_why=why) \
        if state.failures or state.bouncing else state


def settle(state: DeliveryState, accepted_at: datetime, now: datetime,
           policy: DeliveryPolicy = DeliveryPolicy()) -> DeliveryState:
    """Clear ``state`` if mail our server accepted at ``accepted_at``, after the last failure, drew no
    bounce by ``now``."""
    if state.last_failure_at is None or accepted_at <= state.last_failure_at:
        return state
    if now - accepted_at < policy.settle_after:
        return state
    return record_delivered(state, now, f"mail accepted {accepted_at.isoformat()} drew no bounce")


def roster_updated(state: DeliveryState, at: datetime) -> DeliveryState:
    """Someone changed the contact on the roster (a new address, or a fix): start from nothing known."""
    return record_delivered(state, at, "roster updated")


def should_tell_staff(state: DeliveryState, failure: Failure, mail_kind: str) -> bool:
    """Tell staff that ``mail_kind`` did not arrive? Only mail that matters, only when it will not
    arrive (a delay may still get through), once per bouncing spell of the contact."""
    return mail_kind in MATTERS and failure.gave_up and state.staff_told_at is None


def staff_told(state: DeliveryState, at: datetime) -> DeliveryState:
    return replace(state, staff_told_at=at)


@dataclass(**FROZEN)
class BounceNotice:
    """What staff are told: who did not get which mail, why, and whom else to reach."""

    partner_id: str | None
    address: str
    mail_kind: str
    reason: str
    bouncing_since: datetime | None
    others: tuple[Contact, ...]  # the partner's other contacts that are not bouncing


def bounce_notice(partner: Partner | None, state: DeliveryState, mail_kind: str,
                  states: Mapping[str, DeliveryState]) -> BounceNotice:
    others = tuple(c for c in (partner.contacts if partner else ())
                   if c.email != state.address and not _bouncing(states, c.email))
    return BounceNotice(partner_id=partner.id if partner else None, address=state.address, mail_kind=mail_kind,
                        reason=state.last_reason, bouncing_since=state.bouncing_since, others=others)


@dataclass(**FROZEN)
class RenewalRecipient:
    contact: Contact
    note: str = ""  # why this contact gets it too, for the notice's text; "" for the billing contact


def renewal_recipients(partner: Partner, states: Mapping[str, DeliveryState]) -> tuple[RenewalRecipient, ...]:
    """Who gets a renewal notice: the billing contacts (as today), and when one of them bounces, the
    primary contacts too, told why. The bouncing address keeps getting it: the contract is at stake,
    and a mailbox that works again ends the spell."""
    billing = billing_contacts(partner)
    out = [RenewalRecipient(contact=c) for c in billing]
    bouncing = [c for c in billing if _bouncing(states, c.email)]
    if bouncing:
        names = ", ".join(c.email for c in bouncing)
        note = (f"You receive this notice because mail to the billing address {names} bounces "
                f"(since {min(states[c.email].bouncing_since for c in bouncing).date().isoformat()}).")
        for c in primary_contacts(partner):
            if c not in billing and not _bouncing(states, c.email):
                out.append(RenewalRecipient(contact=c, note=note))
    return tuple(out)


def mailing_skip_reason(state: DeliveryState | None) -> str:
    """Why a mailing other than a renewal notice skips this address; "" when it goes out."""
    if state is None or not state.bouncing:
        return ""
    return (f"{state.address} bounces since {state.bouncing_since.date().isoformat()} "
            f"({state.failures} failure(s); last: {state.last_reason})")


def _bouncing(states: Mapping[str, DeliveryState], address: str) -> bool:
    s = states.get(address)
    return s is not None and s.bouncing

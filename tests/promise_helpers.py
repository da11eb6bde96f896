"""Plain-data helpers for the pure tests of issue 3 (clocks, ladder, commands, lifecycle)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from workflows.calendar import BusinessCalendar
from workflows.escalation import LadderConfig
from workflows.intake import Candidates, IntakeSettings, decide
from workflows.model import Contact, InboundMail, Partner, Thread
from workflows.proofs import StaffProof
from workflows.senders import Roster, classify

ET = ZoneInfo("America/New_York")
CAL = BusinessCalendar()
SUPPORT = "support@oa.example"
STAFF = frozenset({"sam@oa.example", "kim@oa.example"})
SETTINGS = IntakeSettings(support_address=SUPPORT, staff=STAFF, calendar=CAL)
LADDER = LadderConfig(support_address=SUPPORT, staff=STAFF, escalation=("boss@oa.example",),
                      program_lead="lead@oa.example")
ACME = Partner(id="acme", name="Acme Web", plan="standard", renews_on=None, contacts=(
    Contact(partner_id="acme", name="Ann", email="ann@acme.example", trained_on=date(2026, 1, 5)),
    Contact(partner_id="acme", name="Bob", email="bob@acme.example"),
))
ROSTER = Roster.build([ACME])


def et(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=ET)


_n = [0]


def mail(frm: str, at: datetime, text: str = "Please help", *, subject: str = "Upgrade fails",
         reply_to: str | None = None, to: tuple[str, ...] = (SUPPORT,)) -> InboundMail:
    _n[0] += 1
    return InboundMail(message_id=f"<m{_n[0]}@test>", raw_sha256=f"{_n[0]:064x}", received_at=at, from_addr=frm,
                       to=to, subject=subject, text=text, reply_text=text,
                       in_reply_to=(reply_to,) if reply_to else ())


def proven(address: str) -> StaffProof:
    """What the service finds for a staff member pressing Reply on our mail: its reply key came back."""
    return StaffProof(proven=True, address=address, method="reply-key", how="reply key (To)")


def step(thread: Thread | None, m: InboundMail, settings: IntakeSettings = SETTINGS, next_number: int = 1):
    """Run intake's decide on one mail, as the service would (by_reference = the thread); staff mail
    comes as a reply to our mail, proven by its reply key (tests/test_unverified.py: without)."""
    sender = classify(m.from_addr, ROSTER, settings.staff)
    c = Candidates(by_reference=thread, next_number=next_number,
                   staff_proof=proven(m.from_addr) if sender.kind == "staff" else None)
    return decide(m, sender, c, ROSTER, settings)


def request(at: datetime, frm: str = "ann@acme.example", text: str = "Please help") -> Thread:
    d = step(None, mail(frm, at, text))
    assert d.thread is not None
    return d.thread

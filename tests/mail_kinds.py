"""Every kind of mail partnerdesk writes, made by the real rules for a roster shape, rendered by the real composer.

The wording tests (tests/test_wording.py) read the text parts over every shape; the HTML tests
(tests/test_html_mail.py) open the HTML parts in Chromium. Nothing here is a fake of the rules: mailings
come from ``workflows.mailings.plan.preview`` and the runner's rendering, acknowledgements and relays from
``workflows.intake.decide``, escalations and the digest from their ticks' rules.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from config.mailings import read_mailings
from config.reader import Reader
from mailbox.compose import Composer
from service.mailings import MailingRunner, RunnerSettings
from service.outbox import Outbox
from workflows import commands, health
from workflows.calendar import BusinessCalendar
from workflows.digest import DigestConfig, due_digest
from workflows.escalation import LadderConfig, due_escalations
from workflows.automatic import Failure, Verdict
from workflows.filing import FilingSettings, SentMail, file_automatic
from workflows.intake import Candidates, IntakeSettings, decide
from workflows.mailings.plan import preview
from workflows.proofs import StaffProof
from workflows.model import Contact, InboundMail, OutgoingMail, Partner, Thread
from workflows.senders import Roster, classify

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = json.loads((ROOT / "templates" / "samples" / "mailings.json").read_text())
SUPPORT = "support@openatrium.example"
STAFF = "young@openatrium.example"
LEAD = "eric@openatrium.example"
CAL = BusinessCalendar()
SETTINGS = IntakeSettings(support_address=SUPPORT, staff=frozenset({STAFF}), team=frozenset({LEAD}), calendar=CAL)
LADDER = LadderConfig(support_address=SUPPORT, staff=frozenset({STAFF}), escalation=(LEAD,), program_lead=LEAD)
NOW = datetime(2026, 12, 1, 15, 0, tzinfo=timezone.utc)  # Tuesday 10:00 AM ET
# Staff replies here come back with the reply key of the notification they answer (the default proof).
PROVEN = StaffProof(proven=True, address=STAFF, method="reply-key", how="reply key (To)")


def _c(pid: str, name: str, email: str, roles: str, trained: date | None = None) -> Contact:
    return Contact(partner_id=pid, name=name, email=email, roles=frozenset(roles.split(";")) - {""},
                   trained_on=trained)


# The roster shapes the wording must survive. Each renews on 2027-03-31; trainings were in 2026.
SHAPES: dict[str, Partner] = {
    "billing contact": Partner(id="nuvole", name="Nuvole Web", plan="standard", renews_on=date(2027, 3, 31), contacts=(
        _c("nuvole", "Antonio De Marco", "antonio@nuvole.example", "primary;technical", date(2026, 4, 12)),
        _c("nuvole", "Claudia Rossi", "billing@nuvole.example", "billing"))),
    "no billing contact": Partner(id="acme", name="Acme Web", plan="standard", renews_on=date(2027, 3, 31), contacts=(
        _c("acme", "Ann Archer", "ann@acme.example", "primary", date(2026, 5, 2)),
        _c("acme", "Bob Brown", "bob@acme.example", "technical"))),
    "sole primary contact": Partner(id="lone", name="Lone Pine Sites", plan="standard", renews_on=date(2027, 3, 31),
                                    contacts=(_c("lone", "Lee Pine", "lee@lonepine.example", "primary"),)),
    "solo plan": Partner(id="cookshop", name="Mark's Site Kitchen", plan="solo", renews_on=date(2027, 3, 31), contacts=(
        _c("cookshop", "Mark Cook", "mark@cookshop.example", "primary;billing;technical", date(2026, 6, 12)),)),
    "no seat": Partner(id="fresh", name="Fresh Start Co", plan="standard", renews_on=date(2027, 3, 31), contacts=(
        _c("fresh", "Pat Quill", "pat@fresh.example", "primary;billing"),
        _c("fresh", "Quinn Ray", "quinn@fresh.example", "technical"))),
}

MAILINGS = ("welcome", "call-invite", "call-update", "call-cancel", "call-reminder", "training-announcement",
            "training-refresher")
RENEWAL_AT = {"renewal 60 days before": datetime(2027, 1, 30, 15, tzinfo=timezone.utc),
              "renewal on the day": datetime(2027, 3, 31, 15, tzinfo=timezone.utc),
              "renewal lapsed": datetime(2027, 4, 14, 15, tzinfo=timezone.utc)}


@dataclass
class Rendered:
    kind: str  # "welcome", "ack", "channel_info", "renewal on the day"...
    shape: str
    to: str  # the recipient
    out: OutgoingMail
    raw: bytes
    partner_facing: bool = True


def mailing_config():
    return read_mailings(Reader(SAMPLES["config"], "samples"))


def composer() -> Composer:
    return Composer(support_address=SUPPORT, support_name="Open Atrium Support")


def runner() -> MailingRunner:
    class NoStore:
        pass

    outbox = Outbox(store=NoStore(), composer=composer(), secret=b"k", support_address=SUPPORT)
    return MailingRunner(store=NoStore(), outbox=outbox, secret=b"k", settings=RunnerSettings(
        support_address=SUPPORT, support_name="Open Atrium Support", staff=frozenset({STAFF}), config=mailing_config()))


def first(partner: Partner, contact: Contact) -> Partner:
    """``partner`` with ``contact`` first: previews address the first contact."""
    return replace(partner, contacts=(contact,) + tuple(c for c in partner.contacts if c != contact))


def _render(out: OutgoingMail, n: int) -> bytes:
    return composer().render(out, message_id=f"<k{n}@openatrium.example>", date=NOW)


_n = [0]


def inbound(frm: str, text: str, *, subject: str = "Features revert fails", name: str = "",
            reply_to: str | None = None, at: datetime = NOW) -> InboundMail:
    _n[0] += 1
    return InboundMail(message_id=f"<in{_n[0]}@example.test>", raw_sha256=f"{_n[0]:064x}", received_at=at,
                       from_addr=frm, from_name=name, to=(SUPPORT,), subject=subject, text=text, reply_text=text,
                       in_reply_to=(reply_to,) if reply_to else ())


def partner_mails(shape: str) -> list[Rendered]:
    """Every partner-facing mail for every contact of roster shape ``shape``."""
    _n[0] = 0  # the same Message-IDs whatever ran before (the reply corpus is made from these)
    partner = SHAPES[shape]
    cfg = mailing_config()
    run = runner()
    out: list[Rendered] = []
    for contact in partner.contacts:
        p = first(partner, contact)
        for name in MAILINGS:
            who = p
            if name == "training-refresher":  # offered to those who trained long enough ago
                who = replace(p, contacts=tuple(replace(c, trained_on=date(2025, 1, 10)) for c in p.contacts))
            try:
                d = preview(name, who, cfg, NOW)
            except ValueError:  # this shape gets none (no unused seat, say)
                continue
            o, _mid, raw = run.render(d, NOW)
            out.append(Rendered(kind=name, shape=shape, to=d.recipient, out=o, raw=raw))
        roster = Roster.build([partner])
        sender = classify(contact.email, roster, SETTINGS.staff)
        request = inbound(contact.email, "Features revert fails on the Atrium dashboard after the upgrade.",
                          name=contact.name)
        d = decide(request, sender, Candidates(next_number=7, now=NOW), roster, SETTINGS)
        for o in d.outgoing:
            if o.kind == "ack":
                out.append(Rendered(kind=o.template, shape=shape, to=contact.email, out=o, raw=_render(o, 1)))
        thread = d.thread
        assert thread is not None
        answer = inbound(STAFF, "Hi! Run `drush features-revert-all` and clear the cache.\n\n"
                                "The details are on https://community.openatrium.example/node/12 if you want them.\n",
                         name="Young Hahn", subject=f"Re: [OA-7] {thread.subject}", reply_to=thread.messages[0])
        a = decide(answer, classify(STAFF, roster, SETTINGS.staff),
                   Candidates(by_reference=thread, now=NOW, staff_proof=PROVEN),
                   roster, SETTINGS)
        relay = [o for o in a.outgoing if o.kind == "relay"][0]
        out.append(Rendered(kind="relay", shape=shape, to=contact.email, out=relay, raw=_render(relay, 2)))
        assert a.thread is not None
        close = commands.closing_mail(a.thread, SETTINGS, key="close:test", automatic_close=False)
        out.append(Rendered(kind="close", shape=shape, to=contact.email, out=close, raw=_render(close, 3)))
        auto = commands.closing_mail(a.thread, SETTINGS, key="autoclose:test", automatic_close=True, waited_days=10)
        out.append(Rendered(kind="close (automatic)", shape=shape, to=contact.email, out=auto, raw=_render(auto, 4)))
    for kind, at in RENEWAL_AT.items():
        d = preview("renewal", partner, cfg, at)
        o, _mid, raw = run.render(d, at)
        out.append(Rendered(kind=kind, shape=shape, to=d.recipient, out=o, raw=raw))
    return out


def staff_mails() -> list[Rendered]:
    """The mail staff get: notifications, escalations, the digest, bounce notices, command replies."""
    _n[0] = 0
    partner = SHAPES["billing contact"]
    roster = Roster.build([partner])
    antonio = partner.contacts[0]
    out: list[Rendered] = []
    request = inbound(antonio.email, "Features revert fails after the upgrade <script>alert(1)</script>\n\n"
                                     "Log: https://nuvole.example/log?id=1&x=2", name=antonio.name,
                      at=NOW - timedelta(days=3))
    d = decide(request, classify(antonio.email, roster, SETTINGS.staff), Candidates(next_number=3, now=NOW), roster,
               SETTINGS)
    thread: Thread = d.thread  # type: ignore[assignment]
    for o in d.outgoing:
        if o.kind == "notify":
            out.append(Rendered(kind="staff_notification", shape="staff", to=STAFF, out=o, raw=_render(o, 10),
                                partner_facing=False))
    for o in due_escalations(thread, NOW, LADDER, CAL, partner_name=partner.name, request_text=request.text):
        out.append(Rendered(kind="escalation", shape="staff", to=", ".join(o.to), out=o, raw=_render(o, 11),
                            partner_facing=False))
    digest = due_digest([thread], NOW, CAL, DigestConfig(), LADDER, partner_names={partner.id: partner.name})
    assert digest is not None
    out.append(Rendered(kind="digest", shape="staff", to=STAFF, out=digest, raw=_render(digest, 12),
                        partner_facing=False))
    report = replace(inbound("mailer-daemon@nuvole.example", "550 5.1.1 <antonio@nuvole.example>: no such user"),
                     auto_submitted="auto-replied")
    verdict = Verdict(kind="bounce", reason="RFC 3464 delivery status notification", declared=True,
                      failures=(Failure(address=antonio.email, permanent=True, gave_up=True, status="5.1.1",
                                        reason="550 5.1.1 no such user"),))
    ack = SentMail(message_id=thread.messages[0], kind="ack", to=(antonio.email,), thread_id=thread.id)
    b = file_automatic(report, verdict, thread=thread, ours=(ack,), states={}, roster=roster,
                       s=FilingSettings(support_address=SUPPORT, support_name="Open Atrium Support", staff=(STAFF,)))
    assert b.outgoing, "a permanent bounce of a partner's ack tells staff"
    for o in b.outgoing:
        out.append(Rendered(kind="bounce_notice", shape="staff", to=STAFF, out=o, raw=_render(o, 13),
                            partner_facing=False))
    for line, kind in (("#assign me", "command_ok"), ("#frobnicate", "command_error")):
        m = inbound(STAFF, line + "\n", reply_to=thread.messages[0], subject=f"Re: [OA-3] {thread.subject}")
        c = decide(m, classify(STAFF, roster, SETTINGS.staff),
                   Candidates(by_reference=thread, now=NOW, staff_proof=PROVEN), roster,
                   SETTINGS)
        for o in c.outgoing:
            out.append(Rendered(kind=kind, shape="staff", to=STAFF, out=o, raw=_render(o, 14),
                                partner_facing=False))
    failure = OutgoingMail(key="failure-report:x", kind="mailing-failure", template="mailing_failure", to=(STAFF,),
                           subject="Undeliverable: Invitation", context={
                               "mailing": "call-invite", "recipient": "old@nuvole.example", "partner_id": "nuvole",
                               "subject": "Invitation: State of Open Atrium", "failures": 1,
                               "detail": "550 5.1.1 No such user here", "support_name": "Open Atrium Support"})
    out.append(Rendered(kind="mailing_failure", shape="staff", to=STAFF, out=failure, raw=_render(failure, 15),
                        partner_facing=False))
    # The intake alarm (issue 13): IMAP refused for an hour, then working again.
    down = health.after_intake(health.Health(), NOW - timedelta(hours=1), "IMAP login refused: [AUTHENTICATIONFAILED]")
    down = health.after_intake(down, NOW, "IMAP login refused: [AUTHENTICATIONFAILED]")
    for kind, h, at in (("health_alert", down, NOW),
                        ("health_all_clear", None, NOW + timedelta(minutes=5))):
        if h is None:  # the alarm went out; now a fetch succeeds
            h = health.after_intake(told, at, None)
        told, o = health.alarm(h, at, health.HealthConfig(), staff=(STAFF,), support_name="Open Atrium Support",
                               support_address="support@openatrium.example")
        assert o is not None, kind
        out.append(Rendered(kind=kind, shape="staff", to=STAFF, out=o, raw=_render(o, 16), partner_facing=False))
    return out

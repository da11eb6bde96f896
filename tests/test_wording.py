"""Every partner-facing template, rendered by the real rules over every roster shape, reads right for it.

Shapes (tests/mail_kinds.py): a partner with a billing contact, one without, a sole primary contact,
a solo plan, and nobody holding a seat. Each mail is rendered for each contact it can go to.
"""

from __future__ import annotations

import email
import email.policy
import re

import pytest

from mail_kinds import SHAPES, partner_mails, staff_mails

RENDERED = {shape: partner_mails(shape) for shape in SHAPES}


def text_of(raw: bytes) -> str:
    m = email.message_from_bytes(raw, policy=email.policy.default)
    return m.get_body(("plain",)).get_content()


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def mails(shape: str, kind: str = "") -> list[tuple[str, str]]:
    """(recipient, text) of every mail of ``kind`` (a prefix) for ``shape``."""
    return [(r.to, squash(text_of(r.raw))) for r in RENDERED[shape] if r.kind.startswith(kind)]


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_partner_mail_of_every_shape_is_clean_text(shape):
    assert len(RENDERED[shape]) >= 12
    for r in RENDERED[shape]:
        text = text_of(r.raw)
        where = f"{r.kind} to {r.to} ({shape})"
        for bad in ("contact(s)", "(s) ", "None", "{{", "{%", "Hello ,", " ,", "  .", "\n\n\n\n"):
            assert bad not in text, f"{where}: {bad!r} in\n{text}"
        assert not re.search(r"\b(\w+) \1\b", text.replace("had had", "")), f"{where}: a doubled word\n{text}"


def test_a_renewal_notice_to_a_partner_without_a_billing_contact_does_not_claim_it_went_to_billing():
    for shape in ("no billing contact", "sole primary contact"):
        notices = mails(shape, "renewal")
        assert len(notices) == 3  # before, on the day, lapsed
        for to, text in notices:
            assert "billing contact" not in text.replace("no billing contact is on record", ""), text
            assert "sent to you as the primary contact of" in text and "no billing contact is on record" in text
            assert "If someone else handles invoices, reply with their name and address." in text
    # With billing contacts it says so, in the singular for one.
    for to, text in mails("billing contact", "renewal"):
        assert to == "billing@nuvole.example"
        assert "sent to the billing contact of Nuvole Web." in text
    for to, text in mails("solo plan", "renewal"):
        assert "sent to the billing contact of Mark's Site Kitchen." in text


def test_a_primary_contact_without_a_seat_is_not_told_to_ask_their_primary_contact():
    infos = {to: text for to, text in mails("sole primary contact", "channel_info")}
    assert list(infos) == ["lee@lonepine.example"]
    infos |= {to: text for to, text in mails("no seat", "channel_info")}
    for primary in ("lee@lonepine.example", "pat@fresh.example"):
        assert "primary contact can tell you" not in infos[primary]
        assert "As the primary contact of" in infos[primary] and "simply reply" in infos[primary]
    # Someone else without a seat is pointed at their primary contact.
    assert "Your partner's primary contact can tell you about the next training" in infos["quinn@fresh.example"]
    bob = dict(mails("no billing contact", "channel_info"))["bob@acme.example"]
    assert "Your partner's primary contact can tell you" in bob


def test_a_solo_plan_is_not_addressed_as_a_team():
    texts = [text for _, text in mails("solo plan")]
    assert len(texts) >= 12
    for text in texts:
        for team in ("everyone on your team", "everyone at", "your trained staff", "Nobody at"):
            assert team not in text, text
    renewal = dict(mails("solo plan", "renewal 60"))["mark@cookshop.example"]
    assert "support through this channel once you have completed a training" in renewal
    # A team still is one.
    assert "for everyone at Nuvole Web" in dict(mails("billing contact", "call-invite"))["antonio@nuvole.example"]
    assert "for everyone on your team" in dict(mails("billing contact", "welcome"))["antonio@nuvole.example"]


def test_seats_are_described_as_they_are():
    welcome = dict(mails("no seat", "welcome"))
    assert set(welcome) == {"pat@fresh.example", "quinn@fresh.example"}
    for text in welcome.values():
        assert "Nobody at Fresh Start Co holds a seat yet" in text and "Who holds a seat now" not in text
    solo = dict(mails("solo plan", "welcome"))["mark@cookshop.example"]
    assert "Who holds a seat now: - Mark Cook <mark@cookshop.example>, trained 2026-06-12" in solo
    lone = dict(mails("sole primary contact", "welcome"))["lee@lonepine.example"]
    assert "Nobody at Lone Pine Sites holds a seat yet" in lone
    # A seat holder is promised a reply time; nobody without a seat is.
    for shape in SHAPES:
        partner = SHAPES[shape]
        for to, text in mails(shape, "ack"):
            assert next(c for c in partner.contacts if c.email == to).has_seat and "You will hear from us by" in text
        for to, text in mails(shape, "channel_info"):
            assert not next(c for c in partner.contacts if c.email == to).has_seat
            assert "we cannot promise a reply time" in text


def test_renewal_phases_say_what_happened():
    notices = {r.kind: squash(text_of(r.raw)) for r in RENDERED["no billing contact"] if r.kind.startswith("renewal")}
    assert "renews on Wednesday, March 31, 2027, in 60 days" in notices["renewal 60 days before"]
    assert "renews today" in notices["renewal on the day"]
    assert "ended on Wednesday, March 31, 2027, 14 days ago" in notices["renewal lapsed"]
    assert "The partnership includes" not in notices["renewal lapsed"]


def test_staff_mail_renders_too():
    kinds = {r.kind for r in staff_mails()}
    assert kinds == {"staff_notification", "escalation", "digest", "bounce_notice", "command_ok", "command_error",
                     "mailing_failure", "health_alert", "health_all_clear"}

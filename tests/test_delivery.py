"""workflows.delivery: the delivery state of contacts, step by step and table by table."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from workflows.automatic import Failure, Verdict
from workflows.delivery import DeliveryPolicy, DeliveryState, bounce_notice, failed_recipients, mailing_skip_reason, \
    record_delivered, record_failure, renewal_recipients, roster_updated, settle, should_tell_staff, staff_told
from workflows.model import Contact, Partner

T0 = datetime(2026, 11, 30, 15, 0, tzinfo=timezone.utc)
ADDR = "billing@nuvole.example"
HARD = Failure(address=ADDR, permanent=True, gave_up=True, status="5.1.1", reason="User unknown")
SOFT = Failure(address=ADDR, permanent=False, gave_up=True, status="4.4.7", reason="expired")
DELAY = Failure(address=ADDR, permanent=False, gave_up=False, status="4.4.1", reason="timed out")


def test_a_permanent_failure_marks_the_contact_at_once():
    s = record_failure(DeliveryState(address=ADDR), HARD, T0)
    assert s.bouncing and s.bouncing_since == T0 and s.failures == 1
    assert s.last_reason == "5.1.1 User unknown" and s.last_failure_at == T0
    later = record_failure(s, HARD, T0 + timedelta(days=2))
    assert later.bouncing_since == T0 and later.failures == 2  # since the first, how often


@pytest.mark.parametrize("gaps_days,bouncing", [
    ([0, 1, 2], True),  # three within five days
    ([0, 1], False),  # two are not "several"
    ([0, 3, 6], False),  # three, but never three inside the window
    ([0, 3, 6, 7], True),  # 3, 6, 7 are inside one window
])
def test_temporary_failures_mark_the_contact_after_several_in_a_few_days(gaps_days, bouncing):
    s = DeliveryState(address=ADDR)
    for days in gaps_days:
        s = record_failure(s, SOFT if days % 2 else DELAY, T0 + timedelta(days=days))
    assert s.bouncing is bouncing
    assert s.failures == len(gaps_days)


def test_policy_is_a_parameter():
    s = DeliveryState(address=ADDR)
    policy = DeliveryPolicy(soft_limit=1)
    assert record_failure(s, DELAY, T0, policy).bouncing


def test_evidence_of_delivery_clears_the_state_and_the_staff_flag():
    s = staff_told(record_failure(DeliveryState(address=ADDR), HARD, T0), T0)
    cleared = record_delivered(s, T0 + timedelta(days=1), "read receipt")
    assert not cleared.bouncing and cleared.failures == 0 and cleared.staff_told_at is None
    assert cleared.cleared_why == "read receipt"
    assert roster_updated(s, T0).cleared_why == "roster updated"
    fresh = DeliveryState(address=ADDR)
    assert record_delivered(fresh, T0, "x") == fresh  # nothing to clear: no change to store


@pytest.mark.parametrize("accepted_days,now_days,cleared", [
    (1, 4, True),  # accepted after the failure, three quiet days since
    (1, 3, False),  # not quiet long enough yet: a bounce can still come
    (-1, 10, False),  # accepted before the failure: says nothing
    (0, 10, False),  # the very mail that bounced
])
def test_accepted_mail_clears_only_after_a_quiet_spell(accepted_days, now_days, cleared):
    s = record_failure(DeliveryState(address=ADDR), HARD, T0)
    out = settle(s, T0 + timedelta(days=accepted_days), T0 + timedelta(days=now_days))
    assert (not out.bouncing) is cleared


def test_staff_are_told_once_per_spell_and_only_for_mail_that_matters():
    s = record_failure(DeliveryState(address=ADDR), HARD, T0)
    for kind in ("ack", "relay", "renewal", "invitation"):
        assert should_tell_staff(s, HARD, kind)
    for kind in ("notify", "training_refresher", "digest", "channel-info"):
        assert not should_tell_staff(s, HARD, kind)
    assert not should_tell_staff(s, DELAY, "ack")  # a delay may still arrive
    told = staff_told(s, T0)
    assert not should_tell_staff(told, HARD, "renewal")  # once per contact
    again = record_failure(record_delivered(told, T0 + timedelta(days=9), "read receipt"), HARD, T0 + timedelta(days=10))
    assert should_tell_staff(again, HARD, "ack")  # a new spell, a new notice


def _partner() -> Partner:
    def c(name, email, *roles):
        return Contact(partner_id="nuvole", name=name, email=email, roles=frozenset(roles))

    return Partner(id="nuvole", name="Nuvole Web", plan="standard", renews_on=date(2027, 1, 31), contacts=(
        c("Accounts", ADDR, "billing"), c("Antonio", "antonio@nuvole.example", "primary", "technical"),
        c("Andrea", "andrea@nuvole.example", "technical")))


def test_renewal_notices_also_go_to_the_primary_contact_and_say_why():
    partner = _partner()
    assert [r.contact.email for r in renewal_recipients(partner, {})] == [ADDR]
    states = {ADDR: record_failure(DeliveryState(address=ADDR), HARD, T0)}
    recipients = renewal_recipients(partner, states)
    assert [r.contact.email for r in recipients] == [ADDR, "antonio@nuvole.example"]
    assert recipients[0].note == ""
    assert "billing@nuvole.example bounces (since 2026-11-30)" in recipients[1].note
    states["antonio@nuvole.example"] = record_failure(DeliveryState(address="antonio@nuvole.example"), HARD, T0)
    assert [r.contact.email for r in renewal_recipients(partner, states)] == [ADDR]  # no point adding a bouncer


def test_other_mailings_skip_a_bouncing_contact_with_a_reason():
    assert mailing_skip_reason(None) == "" and mailing_skip_reason(DeliveryState(address=ADDR)) == ""
    reason = mailing_skip_reason(record_failure(DeliveryState(address=ADDR), HARD, T0))
    assert reason.startswith("billing@nuvole.example bounces since 2026-11-30") and "User unknown" in reason


def test_bounce_notice_names_the_other_contacts_that_work():
    partner = _partner()
    states = {ADDR: record_failure(DeliveryState(address=ADDR), HARD, T0),
              "andrea@nuvole.example": record_failure(DeliveryState(address="andrea@nuvole.example"), HARD, T0)}
    notice = bounce_notice(partner, states[ADDR], "renewal", states)
    assert [c.email for c in notice.others] == ["antonio@nuvole.example"]
    assert notice.reason == "5.1.1 User unknown" and notice.mail_kind == "renewal"
    assert bounce_notice(None, states[ADDR], "ack", states).others == ()


def test_failed_recipients_from_the_report_and_the_outbox():
    named = Verdict(kind="bounce", reason="r", failures=(HARD,))
    assert failed_recipients(named, sent_to=(ADDR,)) == (HARD,)
    alias = Verdict(kind="bounce", reason="r", failures=(Failure(address="accounts@elsewhere.example",
                                                                 permanent=True, gave_up=True),))
    (only,) = failed_recipients(alias, sent_to=(ADDR,))
    assert only.address == ADDR and only.permanent and "reported as accounts@elsewhere.example" in only.reason
    nobody = Verdict(kind="bounce", reason="a gateway notice")
    (guess,) = failed_recipients(nobody, sent_to=(ADDR,))
    assert guess.address == ADDR and not guess.permanent and guess.gave_up
    assert failed_recipients(nobody, sent_to=(ADDR, "antonio@nuvole.example")) == ()  # cannot tell which
    assert failed_recipients(Verdict(kind="auto-reply", reason="x"), sent_to=(ADDR,)) == ()


def test_state_round_trips_through_a_dict():
    s = staff_told(record_failure(record_failure(DeliveryState(address=ADDR), DELAY, T0), HARD, T0), T0)
    assert DeliveryState.from_dict(s.to_dict()) == s
    assert DeliveryState.from_dict({"address": ADDR}) == DeliveryState(address=ADDR)

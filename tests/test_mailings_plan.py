"""Pure due-computation of scheduled mailings: calls, renewal series, seats. No store, no servers."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from workflows.errors import ConfigError
from workflows.mailings import calls, renewals, trainings
from config.mailings import read_mailings
from config.reader import Reader
from workflows.mailings.plan import due_mailings, preview, simulate
from workflows.model import Contact, Partner

NY = ZoneInfo("America/New_York")
UTC = timezone.utc


def at(y, m, d, h=12, mi=0):
    return datetime(y, m, d, h, mi, tzinfo=NY)


def contact(pid, email, roles=(), trained=None, name=""):
    return Contact(partner_id=pid, name=name or email.split("@")[0].title(), email=email, roles=frozenset(roles),
                   trained_on=trained)


ACME = Partner(id="acme", name="Acme", plan="standard", renews_on=date(2027, 3, 31), contacts=(
    contact("acme", "boss@acme.example", ["primary"], date(2026, 6, 1)),
    contact("acme", "pay@acme.example", ["billing"]),
    contact("acme", "dev@acme.example", ["technical"]),
))
SOLO = Partner(id="solo", name="Solo Shop", plan="solo", renews_on=date(2027, 5, 1), contacts=(
    contact("solo", "me@solo.example", ["primary"]),
))
CFG = {
    "calls": {"rrule": "FREQ=MONTHLY;INTERVAL=3;BYDAY=2TU", "first": datetime(2027, 1, 12, 14, 0),
              "dial_in": "https://meet.example/soa"},
    "trainings": {"dates": [{"start": datetime(2027, 2, 10, 10, 0)}]},
}


def cfg(**overrides):
    raw = {k: dict(v) for k, v in CFG.items()}
    for table, values in overrides.items():
        raw.setdefault(table, {}).update(values)
    return read_mailings(Reader(raw, "test.toml"))


def commit(ledger, send, skip, now):
    for d in send:
        ledger[d.key] = d.ledger_record("queued", now)
    for d in skip:
        ledger[d.key] = d.ledger_record("skipped", now)


# -- calls ----------------------------------------------------------------------------------
def test_rrule_gives_second_tuesdays_every_quarter_at_2pm_new_york_across_dst():
    got = calls.call_dates(cfg().calls, at(2027, 1, 1), at(2028, 1, 1))
    assert [c.start for c in got] == [at(2027, 1, 12, 14), at(2027, 4, 13, 14), at(2027, 7, 13, 14),
                                      at(2027, 10, 12, 14)]
    assert got[1].start.utcoffset() == timedelta(hours=-4)  # EDT in April: still 2 PM local
    assert [c.id for c in got][:2] == ["call-2027-01-12", "call-2027-04-13"]


def test_explicit_dates_move_and_cancelled_removes_rule_occurrences():
    c = cfg(calls={"dates": [{"id": "call-2027-04-13", "start": datetime(2027, 4, 15, 15, 0)},
                             {"start": datetime(2027, 12, 1, 11, 0)}],
                   "cancelled": ["call-2027-07-13"]}).calls
    got = {x.id: x.start for x in calls.call_dates(c, at(2027, 1, 1), at(2028, 1, 1))}
    assert got == {"call-2027-01-12": at(2027, 1, 12, 14), "call-2027-04-13": at(2027, 4, 15, 15),
                   "call-2027-10-12": at(2027, 10, 12, 14), "call-2027-12-01": at(2027, 12, 1, 11)}


def test_invitation_14_days_before_to_every_contact_of_active_partners_then_reminder():
    inactive = replace(SOLO, active=False)
    ledger = {}
    send, skip = due_mailings([ACME, inactive], ledger, cfg(), at(2026, 12, 29, 13, 59))
    assert [d for d in send if d.mailing.startswith("call")] == []
    now = at(2026, 12, 29, 14, 0)
    send, skip = due_mailings([ACME, inactive], ledger, cfg(), now, only="calls")
    assert sorted(d.recipient for d in send) == ["boss@acme.example", "dev@acme.example", "pay@acme.example"]
    assert {d.mailing for d in send} == {"call-invite"} and not skip
    inv = send[0]
    assert inv.event.method == "REQUEST" and inv.event.sequence == 0 and inv.event.uid == "call-2027-01-12"
    assert inv.list_name == "calls"
    commit(ledger, send, skip, now)
    assert due_mailings([ACME], ledger, cfg(), now + timedelta(days=5), only="calls") == ([], [])
    send, _ = due_mailings([ACME], ledger, cfg(), at(2027, 1, 11, 14, 0), only="calls")
    assert {d.mailing for d in send} == {"call-reminder"} and len(send) == 3


def test_downtime_past_the_call_skips_invitation_and_reminder_with_reasons():
    send, skip = due_mailings([ACME], {}, cfg(), at(2027, 1, 13, 9), only="calls")
    assert send == []
    assert {d.mailing for d in skip} == {"call-invite", "call-reminder"}
    assert all("already started" in d.reason for d in skip)


def test_downtime_until_the_day_before_sends_the_invitation_and_skips_the_separate_reminder():
    send, skip = due_mailings([ACME], {}, cfg(), at(2027, 1, 11, 16), only="calls")
    assert {d.mailing for d in send} == {"call-invite"}
    assert {d.mailing for d in skip} == {"call-reminder"}


def test_moved_call_sends_update_with_higher_sequence_then_cancel_when_removed():
    ledger = {}
    now = at(2026, 12, 30)
    commit(ledger, *due_mailings([SOLO], ledger, cfg(), now, only="calls"), now)
    moved = cfg(calls={"dates": [{"id": "call-2027-01-12", "start": datetime(2027, 1, 14, 16, 0)}]})
    send, skip = due_mailings([SOLO], ledger, moved, now + timedelta(hours=1), only="calls")
    [upd] = send
    assert upd.mailing == "call-update" and upd.event.sequence == 1 and upd.event.uid == "call-2027-01-12"
    assert upd.event.start == at(2027, 1, 14, 16) and "moved from" in upd.why
    commit(ledger, send, skip, now)
    assert due_mailings([SOLO], ledger, moved, now + timedelta(hours=2), only="calls") == ([], [])
    # Moved again: SEQUENCE 2.
    again = cfg(calls={"dates": [{"id": "call-2027-01-12", "start": datetime(2027, 1, 15, 16, 0)}]})
    [upd2], _ = due_mailings([SOLO], ledger, again, now + timedelta(hours=3), only="calls")
    assert upd2.event.sequence == 2
    commit(ledger, [upd2], [], now)
    # Removed from the config altogether: CANCEL with the next SEQUENCE, once.
    gone = cfg(calls={"cancelled": ["call-2027-01-12"]})
    [cancel], _ = due_mailings([SOLO], ledger, gone, now + timedelta(hours=4), only="calls")
    assert cancel.mailing == "call-cancel" and cancel.event.method == "CANCEL" and cancel.event.sequence == 3
    commit(ledger, [cancel], [], now)
    assert due_mailings([SOLO], ledger, gone, now + timedelta(days=1), only="calls") == ([], [])


def test_unsubscribed_contacts_get_no_invitation_but_a_skip():
    send, skip = due_mailings([SOLO], {}, cfg(), at(2026, 12, 30), only="calls",
                              unsubscribed=frozenset({"calls:me@solo.example"}))
    assert send == [] and "unsubscribed" in skip[0].reason


# -- renewals -----------------------------------------------------------------------------------
def renewal_offsets(items):
    return sorted((d.record["offset"] for d in items), reverse=True)


def test_renewal_series_goes_to_billing_contact_at_each_offset_with_the_plan_amount():
    ledger = {}
    steps = simulate([ACME, SOLO], ledger, cfg(mailings={"enabled": ["renewals"]}), at(2027, 1, 1),
                     at(2027, 6, 1))
    acme = [s.due for s in steps if s.due.partner_id == "acme"]
    assert {d.recipient for d in acme} == {"pay@acme.example"}  # billing, not primary
    assert renewal_offsets(acme) == [60, 30, 7, 0, -14] and all(s.sent for s in steps)
    assert acme[0].due_at == datetime(2027, 1, 30, 10, 0, tzinfo=NY)
    assert all(d.context["amount"] == "$4,000" for d in acme)
    solo = [s.due for s in steps if s.due.partner_id == "solo"]
    assert {d.recipient for d in solo} == {"me@solo.example"}  # no billing contact: the primary
    assert all(d.context["amount"] == "$2,000" for d in solo) and "$2,000" in solo[0].subject
    assert solo[-1].context["phase"] == "lapsed"


def test_after_downtime_only_the_latest_due_notice_goes_out_the_rest_skipped():
    send, skip = due_mailings([ACME], {}, cfg(mailings={"enabled": ["renewals"]}), at(2027, 3, 25))
    assert renewal_offsets(send) == [7]
    assert renewal_offsets(skip) == [60, 30]
    assert all("superseded" in d.reason and "7 days before" in d.reason for d in skip)


def test_a_notice_is_never_sent_twice_nor_an_older_one_after_a_newer():
    ledger = {}
    c = cfg(mailings={"enabled": ["renewals"]})
    now = at(2027, 3, 2)
    send, skip = due_mailings([ACME], ledger, c, now)
    assert renewal_offsets(send) == [30] and renewal_offsets(skip) == [60]
    commit(ledger, send, skip, now)
    assert due_mailings([ACME], ledger, c, now + timedelta(days=1)) == ([], [])


def test_renewal_recorded_mid_series_stops_the_old_series_and_starts_a_new_one():
    c = cfg(mailings={"enabled": ["renewals"]})
    ledger = {}
    now = at(2027, 3, 2)
    commit(ledger, *due_mailings([ACME], ledger, c, now), now)
    renewed = replace(ACME, renews_on=date(2028, 3, 31))
    stopped = renewals.stop_series(ACME, date(2027, 3, 31), ledger, c, now.date(), date(2028, 3, 31))
    assert renewal_offsets(stopped) == [7, 0, -14] and all("renewal recorded" in d.reason for d in stopped)
    commit(ledger, [], stopped, now)
    steps = simulate([renewed], ledger, c, now, at(2028, 5, 1))
    assert {s.due.record["term_end"] for s in steps} == {"2028-03-31"}
    assert renewal_offsets([s.due for s in steps]) == [60, 30, 7, 0, -14]


# -- trainings and seats ------------------------------------------------------------------------
def test_seats_are_counted_in_the_current_term():
    assert trainings.term(ACME, date(2027, 1, 1)) == (date(2026, 4, 1), date(2027, 3, 31))
    assert trainings.seats_used(ACME, date(2027, 1, 1)) == 1
    assert trainings.seats_unused(ACME, date(2027, 1, 1)) == 1
    two = replace(ACME, contacts=tuple(replace(c, trained_on=date(2026, 10, 1)) if c.email.startswith("dev") else c
                                       for c in ACME.contacts))
    assert trainings.seats_unused(two, date(2027, 1, 1)) == 0
    old = replace(ACME, contacts=tuple(replace(c, trained_on=date(2025, 1, 1)) for c in ACME.contacts))
    assert trainings.seats_unused(old, date(2027, 1, 1)) == 2  # trained in an earlier term


def renewing_on(day: date, trained: date | None = None) -> Partner:
    return replace(ACME, renews_on=day, contacts=(contact("acme", "boss@acme.example", ["primary"], trained),))


def days(first: date, last: date):
    while first <= last:
        yield first
        first += timedelta(days=1)


def test_consecutive_terms_tile_the_calendar_across_leap_years():
    # A partner renewing every year on the same date: each term starts the day after the one before it
    # ended, and ends on its renewal date; checked for every end date of 2026-2033 (two leap years).
    for end in days(date(2026, 1, 1), date(2033, 12, 31)):
        if (end.month, end.day) == (2, 29):
            continue  # no same date a year later: see the Feb-29 tests below
        first, last = trainings.term(renewing_on(end), end)
        after = renewals.next_term_end(end)
        assert (last, after.replace(year=end.year)) == (end, end), end  # same date, one year on
        assert trainings.term(renewing_on(after), after) == (end + timedelta(days=1), after), end
        assert (last - first).days + 1 in (365, 366), end


def test_a_term_ending_on_feb_29_starts_the_day_after_the_term_before_it():
    first, last = trainings.term(renewing_on(date(2028, 2, 29)), date(2027, 6, 1))
    assert (first, last) == (date(2027, 3, 1), date(2028, 2, 29))
    assert trainings.term(renewing_on(date(2027, 2, 28)), date(2027, 1, 1))[1] == first - timedelta(days=1)
    # The first day of the term counts: a training on March 1 uses one of its seats.
    assert trainings.seats_used(renewing_on(date(2028, 2, 29), trained=date(2027, 3, 1)), date(2027, 6, 1)) == 1
    assert trainings.seats_used(renewing_on(date(2028, 2, 29), trained=date(2027, 2, 28)), date(2027, 6, 1)) == 0
    assert trainings.term(renewing_on(date(2032, 2, 29)), date(2031, 6, 1)) == (date(2031, 3, 1), date(2032, 2, 29))


def test_a_feb_29_renewal_is_next_due_on_feb_28_with_no_day_left_out():
    # The rule: a Feb 29 has no anniversary in a common year; it is taken as the last day of February.
    assert renewals.next_term_end(date(2028, 2, 29)) == date(2029, 2, 28)
    assert renewals.next_term_end(date(2032, 2, 29)) == date(2033, 2, 28)
    # The year paid for in the notice: "for one year, until Wednesday, February 28, 2029".
    c = cfg(mailings={"enabled": ["renewals"]})
    d = preview("renewal", replace(renewing_on(date(2028, 2, 29)), contacts=ACME.contacts), c, at(2028, 1, 1))
    assert d.context["next_term_end"] == "Wednesday, February 28, 2029"
    # The next term (computed from its end, like every term ending on Feb 28 after a leap day) leaves no
    # day of the calendar outside a term: it starts no later than the day after the Feb-29 term ended.
    nxt = renewals.next_term_end(date(2028, 2, 29))
    first, last = trainings.term(renewing_on(nxt), date(2028, 6, 1))
    assert last == nxt and date(2028, 2, 29) <= first <= date(2028, 3, 1)


def test_announcement_to_partners_with_unused_seats_refresher_to_long_trained():
    c = cfg(mailings={"enabled": ["trainings"]}, trainings={"refresher_after_days": 200})
    now = at(2027, 1, 11, 10)
    send, skip = due_mailings([ACME], {}, c, now)
    by = {d.recipient: d.mailing for d in send}
    # Untrained people hear about it; the primary trained 2026-06-01 (> 200 days before): a refresher,
    # one mail, not an announcement as well.
    assert by == {"pay@acme.example": "training-announcement", "dev@acme.example": "training-announcement",
                  "boss@acme.example": "training-refresher"}
    fresh = cfg(mailings={"enabled": ["trainings"]})  # refresher after 365 days: the primary is announced to
    assert {d.recipient: d.mailing for d in due_mailings([ACME], {}, fresh, now)[0]}["boss@acme.example"] \
        == "training-announcement"
    full = replace(ACME, contacts=tuple(replace(x, trained_on=date(2026, 5, 1)) for x in ACME.contacts[:2])
                   + ACME.contacts[2:])
    send, _ = due_mailings([full], {}, c, now)
    assert {d.recipient: d.mailing for d in send} == {"boss@acme.example": "training-refresher",
                                                      "pay@acme.example": "training-refresher"}


def test_training_not_announced_after_it_started():
    send, skip = due_mailings([SOLO], {}, cfg(mailings={"enabled": ["trainings"]}), at(2027, 2, 11))
    assert send == [] and skip and all("already started" in d.reason for d in skip)


# -- welcome --------------------------------------------------------------------------------
def test_welcome_once_per_contact_when_requested():
    c = cfg(mailings={"enabled": ["welcome"]})
    now = at(2027, 1, 5)
    send, _ = due_mailings([SOLO, ACME], {}, c, now, welcome_requests={"solo": now - timedelta(minutes=1)})
    [w] = send
    assert w.recipient == "me@solo.example" and 'href="https://openatrium.com/partners/solo"' in w.context["badge_html"]
    ledger = {}
    commit(ledger, send, [], now)
    assert due_mailings([SOLO], ledger, c, now, welcome_requests={"solo": now}) == ([], [])


# -- config ---------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, key", [
    ({"calls": {"rrule": "FREQ=SOMETIMES"}}, "[calls] first"),
    ({"calls": {"rrule": "FREQ=SOMETIMES", "first": datetime(2027, 1, 1, 14)}}, "[calls] rrule"),
    ({"calls": {"invite_days_before": 0}}, "[calls] invite_days_before"),
    ({"calls": {"dates": [{"when": "x"}]}}, "[calls.dates] when"),
    ({"calls": {"dates": [{"start": "tomorrow"}]}}, "[[calls.dates]] #1 start"),
    ({"renewals": {"offsets": [60, 60]}}, "[renewals] offsets"),
    ({"program": {"profile_url": "https://x.example/partners"}}, "[program] profile_url"),
    ({"mailings": {"enabled": ["spam"]}}, "[mailings] enabled"),
    ({"trainings": {"colour": "red"}}, "[trainings] colour"),
])
def test_config_errors_name_file_and_key(raw, key):
    with pytest.raises(ConfigError) as e:
        read_mailings(Reader(raw, "partnerdesk.toml"))
    assert str(e.value).startswith("partnerdesk.toml: ") and key in str(e.value)


def test_preview_builds_every_mailing_for_both_plans():
    c = cfg()
    for p in (ACME, SOLO):
        for name in ("call-invite", "call-update", "call-cancel", "call-reminder", "renewal", "welcome",
                     "training-announcement"):
            d = preview(name, p, c, at(2026, 12, 1))
            assert d.mailing == name and d.recipient


def test_ledger_entries_of_one_mailing_share_their_words_and_keep_each_time_as_written():
    from workflows.mailings.due import Due

    def due(recipient: str, at: datetime) -> Due:
        return Due(mailing="call-invite", occurrence="c1", recipient=recipient, partner_id="p1", due_at=at,
                   why="w", template="call_invite", subject="s")

    eastern = datetime(2027, 1, 12, 14, tzinfo=timezone(timedelta(hours=-5)))
    utc = eastern.astimezone(timezone.utc)  # the same instant, written in another zone
    a, b = due("a@p.example", eastern).ledger_record("queued", eastern), due("b@p.example", eastern).ledger_record("queued", eastern)
    assert a["due_at"] is b["due_at"] and a["at"] is b["at"]  # one copy for the whole mailing
    c = due("c@p.example", utc).ledger_record("queued", utc)
    assert (a["due_at"], c["due_at"]) == ("2027-01-12T14:00:00-05:00", "2027-01-12T19:00:00+00:00")
    assert c["at"] == "2027-01-12T19:00:00+00:00"

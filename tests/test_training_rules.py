"""Trainings, the pure rules: terms and included places, capacity, the waitlist and promotion, what a reply
asks for (in seven languages), staff commands, the mail each change calls for, and the [trainings] config.
No store, no servers."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from config.mailings import read_mailings
from config.reader import Reader
from workflows.errors import ConfigError
from workflows.mailings.plan import due_mailings, simulate
from workflows.model import Contact, Partner
from workflows.trainings import notices, schedule, seats
from workflows.trainings.model import Registration, Seat, Status, TrainingInputs
from workflows.trainings.replies import parse_staff_command, understand

NY = ZoneInfo("America/New_York")


def at(y, m, d, h=12, mi=0):
    return datetime(y, m, d, h, mi, tzinfo=NY)


def contact(pid, email, name="", trained=None, roles=()):
    return Contact(partner_id=pid, name=name or email.split("@")[0].title(), email=email, roles=frozenset(roles),
                   trained_on=trained)


STD = Partner(id="std", name="Standard Shop", plan="standard", renews_on=date(2027, 9, 30), contacts=(
    contact("std", "a@std.example", "Ann Able", roles=["primary"]),
    contact("std", "b@std.example", "Bob Baker"),
    contact("std", "c@std.example", "Cat Cole"),
    contact("std", "old@std.example", "Olga Old", trained=date(2025, 5, 1)),
))
SOLO = Partner(id="solo", name="Solo Shop", plan="solo", renews_on=date(2027, 9, 30), contacts=(
    contact("solo", "me@solo.example", "Mo Solo", roles=["primary"]),
    contact("solo", "two@solo.example", "Tess Two"),
))
PARTNERS = {p.id: p for p in (STD, SOLO)}
RAW = {"trainings": {"rrule": "FREQ=MONTHLY;INTERVAL=4;BYDAY=2MO", "first": datetime(2027, 3, 8, 9, 0),
                     "capacity": 3, "place": "Washington, DC", "remote": "https://meet.example/oa"},
       "mailings": {"enabled": ["trainings"]}}


def config(**trainings):
    raw = {k: dict(v) for k, v in RAW.items()}
    raw["trainings"].update(trainings)
    return read_mailings(Reader(raw, "test.toml"))


MC = config()
MARCH = schedule.find(MC.trainings, "training-2027-03-08")
JULY = schedule.find(MC.trainings, "training-2027-07-12")
COURSES = {t.id: t for t in (MARCH, JULY)}
NOW = at(2027, 2, 10, 10)


def reg(address, status=Status.CONFIRMED, seat=Seat.INCLUDED, t=MARCH, minutes=0, partner="std", **kw):
    r = Registration(training_id=t.id, address=address, partner_id=partner, requested_at=NOW + timedelta(minutes=minutes),
                     registered_by=address, **kw)
    return r.moved(status, seat, NOW + timedelta(minutes=minutes), by=address, via="reply", note="",
                   message_id=f"<{address}>")


def place(address, regs, partner=STD, t=MARCH, approved=False, trained=False, now=NOW):
    return seats.place(partner=partner, address=address, trained=trained, training=t, regs=regs, trainings=COURSES,
                       cfg=MC.trainings, now=now, tz=NY, approved=approved)


# -- the calendar -------------------------------------------------------------------------------------------------
def test_every_four_months_two_days_each_with_moves_and_cancellations():
    ts = schedule.training_dates(MC.trainings, at(2027, 1, 1), at(2028, 1, 1))
    assert [t.id for t in ts] == ["training-2027-03-08", "training-2027-07-12", "training-2027-11-08"]
    assert MARCH.ends == at(2027, 3, 9, 17) and schedule.days_of(MARCH, MC.timezone) == 2
    moved = config(dates=[{"id": "training-2027-07-12", "start": datetime(2027, 7, 19, 9), "capacity": 8}],
                   cancelled=["training-2027-11-08"])
    ts = schedule.training_dates(moved.trainings, at(2027, 1, 1), at(2028, 1, 1))
    assert [(t.id, t.start, t.capacity) for t in ts][1:] == [("training-2027-07-12", at(2027, 7, 19, 9), 8)]
    assert schedule.find(moved.trainings, "training-2027-11-08") is None
    ev = schedule.event(MARCH, MC, method="REQUEST", sequence=0, email="a@std.example", name="Ann", registered=True)
    assert ev.days == 2 and ev.end == at(2027, 3, 8, 17) and ev.partstat == "ACCEPTED" and "meet.example" in ev.description
    invite = schedule.event(MARCH, MC, method="REQUEST", sequence=0, email="a@std.example", name="", registered=False)
    assert "meet.example" not in invite.description and invite.partstat == "NEEDS-ACTION"


@pytest.mark.parametrize("raw, seats_", [
    ({}, {"standard": 2, "solo": 1}),                                  # the program: two people; solo pays half
    ({"seats_per_term": 2}, {"standard": 2, "solo": 1}),               # today's key: the standard plan's number
    ({"seats_per_term": 4}, {"standard": 4, "solo": 2}),               # ... and half of it, rounded up, for solo
    ({"seats_per_term": 3, "seats": {"solo": 3}}, {"standard": 3, "solo": 3}),
    ({"seats": {"standard": 1, "solo": 0}}, {"standard": 1, "solo": 0}),
])
def test_included_places_per_plan_and_the_old_key(raw, seats_):
    t = read_mailings(Reader({"trainings": raw}, "x.toml")).trainings
    assert {plan: t.included(plan) for plan in seats_} == seats_


def test_todays_config_keeps_working():
    """A [trainings] table written for 0.1.0: dated entries, seats_per_term, duration_minutes."""
    t = read_mailings(Reader({"trainings": {"seats_per_term": 2, "duration_minutes": 180, "announce_days_before": 30,
                                            "dates": [{"id": "training-2027-03", "start": datetime(2027, 3, 8, 9),
                                                       "place": "Washington, DC and online"}]}}, "x.toml")).trainings
    [d] = t.dates
    assert (d.id, d.ends, d.place, d.capacity) == ("training-2027-03", at(2027, 3, 8, 12), "Washington, DC and online", 16)
    assert schedule.find(t, "training-2027-03") == d


@pytest.mark.parametrize("raw, key", [
    ({"trainings": {"rrule": "FREQ=MONTHLY;INTERVAL=4"}}, "[trainings] first"),
    ({"trainings": {"rrule": "FREQ=OFTEN", "first": datetime(2027, 3, 8, 9)}}, "[trainings] rrule"),
    ({"trainings": {"seats_per_term": 2, "seats": {"standard": 3}}}, "[trainings] seats_per_term"),
    ({"trainings": {"seats": {"gold": 3}}}, "[trainings.seats] gold"),
    ({"trainings": {"capacity": 0}}, "[trainings] capacity"),
    ({"trainings": {"dates": [{"start": datetime(2027, 3, 8, 9), "end": datetime(2027, 3, 7, 9)}]}},
     "[[trainings.dates]] #1 end"),
    ({"trainings": {"duration_minutes": 60, "days": 2}}, "[trainings] duration_minutes"),
    ({"trainings": {"reminder_days_before": 40}}, "[trainings] reminder_days_before"),
    ({"trainings": {"day_ends": "5pm"}}, "[trainings] day_ends"),
])
def test_config_errors_name_the_key(raw, key):
    with pytest.raises(ConfigError) as e:
        read_mailings(Reader(raw, "partnerdesk.toml"))
    assert key in str(e.value)


# -- terms and included places ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("day, term", [
    (date(2027, 3, 8), (date(2026, 10, 1), date(2027, 9, 30))),
    (date(2027, 9, 30), (date(2026, 10, 1), date(2027, 9, 30))),
    (date(2027, 10, 1), (date(2027, 10, 1), date(2028, 9, 30))),   # after the renewal date: the next term
    (date(2025, 1, 1), (date(2024, 10, 1), date(2025, 9, 30))),
])
def test_the_term_containing_a_day(day, term):
    assert seats.term_of(STD, day) == term


@pytest.mark.parametrize("regs, users", [
    ([], set()),
    ([reg("a@std.example")], {"a@std.example"}),                                          # reserved
    ([reg("a@std.example", Status.WAITLISTED)], {"a@std.example"}),                       # waiting for it
    ([reg("a@std.example", Status.HELD, Seat.EXTRA)], set()),                             # an extra one, pending
    ([reg("a@std.example", Status.CANCELLED)], set()),
    ([reg("a@std.example", Status.ABSENT)], set()),                                       # a no-show keeps the place
    ([reg("a@std.example", seat=Seat.REFRESHER)], set()),
    ([reg("a@std.example", seat=Seat.EXTRA)], set()),
    ([reg("a@std.example", t=JULY)], {"a@std.example"}),                                  # same term, later course
])
def test_places_used_and_reserved(regs, users):
    assert seats.included_users(STD, regs, COURSES, date(2027, 3, 8), NOW, NY) == users


def test_attendance_uses_a_place_a_refresher_does_not_and_an_unmarked_course_frees_it():
    done = reg("a@std.example").moved(Status.ATTENDED, Seat.INCLUDED, at(2027, 3, 9, 18), by="s", via="cli",
                                      attended_on=date(2027, 3, 9))
    trained = replace(STD, contacts=tuple(replace(c, trained_on=date(2027, 3, 9)) if c.email in ("a@std.example",
                                          "old@std.example") else c for c in STD.contacts))
    refresher = reg("old@std.example", seat=Seat.REFRESHER).moved(Status.ATTENDED, Seat.REFRESHER, at(2027, 3, 9, 18),
                                                                   by="s", via="cli", attended_on=date(2027, 3, 9))
    after = at(2027, 3, 10)
    assert seats.included_users(trained, [done, refresher], COURSES, date(2027, 7, 12), after, NY) == {"a@std.example"}
    # Confirmed but never marked attended, once the course is over: a no-show, nothing used.
    assert seats.included_users(STD, [reg("b@std.example")], COURSES, date(2027, 7, 12), after, NY) == set()
    # Someone recorded as trained by hand (`partners trained`) in the term uses a place too.
    by_hand = replace(STD, contacts=(replace(STD.contacts[1], trained_on=date(2027, 1, 5)),) + STD.contacts[2:])
    assert seats.free_places(by_hand, [], COURSES, MC.trainings, date(2027, 3, 8), NOW, NY) == 1


# -- placing a registration: confirmed, held, waitlisted ---------------------------------------------------------------
@pytest.mark.parametrize("partner, address, regs, approved, trained, expected", [
    (STD, "a@std.example", [], False, False, (Seat.INCLUDED, Status.CONFIRMED)),
    (STD, "b@std.example", [reg("a@std.example")], False, False, (Seat.INCLUDED, Status.CONFIRMED)),
    (STD, "c@std.example", [reg("a@std.example"), reg("b@std.example")], False, False, (Seat.EXTRA, Status.HELD)),
    (STD, "c@std.example", [reg("a@std.example"), reg("b@std.example")], True, False, (Seat.EXTRA, Status.CONFIRMED)),
    (STD, "c@std.example", [reg("a@std.example"), reg("b@std.example", t=JULY)], False, False,
     (Seat.EXTRA, Status.HELD)),                                                  # July is in the same term
    (STD, "old@std.example", [reg("a@std.example"), reg("b@std.example")], False, True,
     (Seat.REFRESHER, Status.CONFIRMED)),                                         # refreshers use no place
    (SOLO, "me@solo.example", [], False, False, (Seat.INCLUDED, Status.CONFIRMED)),
    (SOLO, "two@solo.example", [reg("me@solo.example", partner="solo")], False, False,
     (Seat.EXTRA, Status.HELD)),                                                  # solo: one place
    (STD, "c@std.example", [reg("x@solo.example", partner="solo"), reg("y@solo.example", partner="solo"),
                            reg("z@solo.example", partner="solo")], False, False,
     (Seat.INCLUDED, Status.WAITLISTED)),                                         # capacity 3: full
    (STD, "c@std.example", [reg("x@solo.example", partner="solo"), reg("y@solo.example", partner="solo"),
                            reg("z@solo.example", Status.CANCELLED, partner="solo")], False, False,
     (Seat.INCLUDED, Status.CONFIRMED)),
    (STD, "a@std.example", [reg("a@std.example", Status.CANCELLED)], False, False,
     (Seat.INCLUDED, Status.CONFIRMED)),                                          # registering again
])
def test_where_a_registration_goes(partner, address, regs, approved, trained, expected):
    p = place(address, regs, partner=partner, approved=approved, trained=trained)
    assert (p.seat, p.status) == expected, p.note


# -- promotion ---------------------------------------------------------------------------------------------------------
def keyed(changed):
    return {(r.address, r.status, r.seat) for r in changed}


@pytest.mark.parametrize("regs, capacity, expected", [
    # Someone cancelled: the first in line gets the place, the second waits.
    ([reg("x@solo.example", Status.CANCELLED, partner="solo"), reg("a@std.example"), reg("b@std.example"),
      reg("c@std.example", Status.WAITLISTED, minutes=5), reg("old@std.example", Status.WAITLISTED, minutes=1)],
     3, {("old@std.example", Status.CONFIRMED, Seat.INCLUDED)}),
    # A raised capacity promotes in order.
    ([reg("a@std.example"), reg("b@std.example", Status.WAITLISTED, minutes=2),
      reg("c@std.example", Status.WAITLISTED, minutes=1)], 3,
     {("c@std.example", Status.CONFIRMED, Seat.INCLUDED), ("b@std.example", Status.CONFIRMED, Seat.INCLUDED)}),
    # An included place freed by a cancellation goes to the partner's held registration, without staff.
    ([reg("a@std.example", Status.CANCELLED), reg("b@std.example"), reg("c@std.example", Status.HELD, Seat.EXTRA)], 3,
     {("c@std.example", Status.CONFIRMED, Seat.INCLUDED)}),
    # ... and if the course is full, to the waitlist.
    ([reg("a@std.example", Status.CANCELLED), reg("b@std.example"), reg("x@solo.example", partner="solo"),
      reg("y@solo.example", seat=Seat.EXTRA, partner="solo"), reg("c@std.example", Status.HELD, Seat.EXTRA)], 3,
     {("c@std.example", Status.WAITLISTED, Seat.INCLUDED)}),
    # A lowered capacity moves nobody down.
    ([reg("a@std.example"), reg("b@std.example"), reg("c@std.example"), reg("old@std.example", Status.WAITLISTED)],
     1, set()),
])
def test_places_freed_are_given_in_order(regs, capacity, expected):
    courses = {MARCH.id: replace(MARCH, capacity=capacity)}
    changed = seats.settle(regs, PARTNERS, courses, MC.trainings, NOW, NY)
    assert keyed(changed) == expected
    assert all(r.last.by == seats.AUTOMATIC for r in changed)


def test_no_promotion_once_the_course_started_and_positions():
    regs = [reg("a@std.example", Status.CANCELLED), reg("b@std.example", Status.WAITLISTED)]
    assert seats.settle(regs, PARTNERS, COURSES, MC.trainings, at(2027, 3, 8, 10), NY) == []
    line = [reg("b@std.example", Status.WAITLISTED, minutes=3), reg("c@std.example", Status.WAITLISTED, minutes=1)]
    assert [seats.position(r, line) for r in line] == [2, 1]


# -- what a reply asks for ---------------------------------------------------------------------------------------------
ME = "a@std.example"
CONTACTS = STD.contacts


@pytest.mark.parametrize("text, action, who", [
    ("please register me and b@std.example", "register", [ME, "b@std.example"]),
    ("Yes", "register", [ME]),
    ("Count me in!", "register", [ME]),
    ("I would like to register my colleague c@std.example", "register", ["c@std.example"]),
    ("Please register Bob and me", "register", [ME, "b@std.example"]),
    ("Please register Cat Cole <c@std.example>\n\nThanks\nAnn", "register", ["c@std.example"]),
    ("Bitte melden Sie mich an.", "register", [ME]),                                   # German
    ("Bitte Bob und mich anmelden, danke", "register", [ME, "b@std.example"]),
    ("Je voudrais m'inscrire", "register", [ME]),                                      # French
    ("Inscrivez-moi et b@std.example, merci", "register", [ME, "b@std.example"]),
    ("Me gustaría inscribirme", "register", [ME]),                                     # Spanish
    ("Sí, gracias", "register", [ME]),
    ("Vorrei iscrivermi", "register", [ME]),                                           # Italian
    ("Per favore iscrivete Bob", "register", ["b@std.example"]),
    ("Gostaria de me inscrever", "register", [ME]),                                    # Portuguese
    ("Graag aanmelden voor mij en Cat", "register", [ME, "c@std.example"]),            # Dutch
    ("Please cancel my registration", "cancel", [ME]),
    ("No, I can't attend", "cancel", [ME]),
    ("Bob can't make it, please cancel him", "cancel", ["b@std.example"]),
    ("Ich muss leider absagen", "cancel", [ME]),
    ("Je dois annuler, désolée", "cancel", [ME]),
    ("No podré ir, lo siento", "cancel", [ME]),
    ("Purtroppo non posso partecipare", "cancel", [ME]),
    ("Infelizmente não posso", "cancel", [ME]),
    ("Ik moet me helaas afmelden", "cancel", [ME]),
])
def test_a_reply_is_understood(text, action, who):
    i = understand(text, sender=ME, contacts=CONTACTS)
    assert (i.action, list(i.addresses)) == (action, who), i.reason


@pytest.mark.parametrize("text", [
    "Is there parking nearby?",                         # no request
    "Please don't register me",                         # a negation
    "I'd love to attend but I can't",
    "Please register me. Unfortunately Bob can't come",  # both
    "Please register my colleague",                     # whom?
    "I don't want to cancel",
    "Thanks for the information",
    "> please register me\n",                            # quoted, not written
])
def test_anything_unclear_is_left_for_staff(text):
    assert understand(text, sender=ME, contacts=CONTACTS).action == "unclear"


def test_our_own_words_pasted_back_ask_nothing_and_a_question_is_flagged():
    ours = notices_lines = frozenset({"the calendar entry is attached. if your plans change, reply \"cancel\" to this"})
    del notices_lines
    assert understand('Thanks!\nThe calendar entry is attached. If your plans change, reply "cancel" to this',
                      sender=ME, ours=ours).action == "unclear"
    i = understand("Can you register me? Is lunch included?", sender=ME)
    assert i.action == "register" and i.question
    # A capitalised first name is a person; the same word in lower case is not.
    will = replace(STD, contacts=STD.contacts + (contact("std", "will@std.example", "Will Wu"),))
    assert understand("I will attend", sender=ME, contacts=will.contacts).addresses == (ME,)
    assert set(understand("Will and I will attend", sender=ME, contacts=will.contacts).addresses) == {
        ME, "will@std.example"}


@pytest.mark.parametrize("line, name, tid, addresses, everyone", [
    ("#approve", "approve", "", (), False),
    ("#decline the March course is for first-timers", "decline", "", (), False),
    ("#attended all", "attended", "", (), True),
    ("#attended training-2027-03-08 a@x.example, b@y.example", "attended", "training-2027-03-08",
     ("a@x.example", "b@y.example"), False),
    ("#noshow c@z.example", "absent", "", ("c@z.example",), False),
])
def test_staff_commands(line, name, tid, addresses, everyone):
    c = parse_staff_command(f"{line}\n\n> the quoted notice")
    assert (c.name, c.training_id, c.addresses, c.everyone) == (name, tid, addresses, everyone)
    assert parse_staff_command("#note about a thread") is None and parse_staff_command("approve") is None


# -- the mail each change calls for ------------------------------------------------------------------------------------
STAFF = ("staff@oa.example",)


def plan(regs, ledger=None, now=NOW, mc=MC, partners=(STD, SOLO)):
    return notices.due(list(partners), ledger or {}, mc, now,
                       TrainingInputs(registrations=tuple(regs), staff=STAFF, promise="a reply within a day"))


def commit(ledger, send, skip, now=NOW):
    for d in send:
        ledger[d.key] = {**d.ledger_record("queued", now), "recipient": d.recipient}
    for d in skip:
        ledger[d.key] = d.ledger_record("skipped", now)
    return ledger


def test_each_change_is_mailed_once_and_only_the_latest():
    held = reg("c@std.example", Status.HELD, Seat.EXTRA)
    send, _ = plan([held])
    assert sorted((d.mailing, d.recipient) for d in send) == [("training-approval", "staff@oa.example"),
                                                              ("training-held", "c@std.example")]
    ledger = commit({}, *plan([held]))
    assert plan([held], ledger) == ([], [])
    # Staff approve; the course is full: waitlisted, and the person told (with the place in line).
    later = NOW + timedelta(hours=1)
    approved = held.moved(Status.WAITLISTED, Seat.EXTRA, later, by="staff@oa.example", via="staff-mail",
                          note="approved")
    send, _ = plan([approved], ledger, later)
    [d] = send
    assert (d.mailing, d.context["approved"], d.context["position"]) == ("training-waitlisted", True, 1)
    # Promoted and then cancelled before any of it went out: only the cancellation is mailed.
    gone = approved.moved(Status.CONFIRMED, Seat.EXTRA, later, by="partnerdesk", via="automatic").moved(
        Status.CANCELLED, Seat.EXTRA, later, by="c@std.example", via="reply")
    send, skip = plan([gone], ledger, later)
    assert [d.mailing for d in send] == ["training-cancelled"]
    assert {d.mailing for d in skip} == {"training-waitlisted", "training-promoted"}
    assert all("superseded" in d.reason for d in skip)


def test_confirmation_carries_the_entry_and_sequence_rises_per_person():
    r = reg("a@std.example")
    send, _ = plan([r])
    [d] = send
    assert d.event.method == "REQUEST" and d.event.sequence == 0 and d.context["remote"] == "https://meet.example/oa"
    assert d.in_reply_to == "<a@std.example>"  # threaded to the mail that asked
    ledger = commit({}, send, [])
    cancelled = r.moved(Status.CANCELLED, Seat.INCLUDED, NOW, by="a@std.example", via="calendar")
    [c], _ = plan([cancelled], ledger)
    assert c.event.method == "CANCEL" and c.event.sequence == 1
    commit(ledger, [c], [])
    again = cancelled.moved(Status.CONFIRMED, Seat.INCLUDED, NOW, by="a@std.example", via="reply")
    [back], _ = plan([again], ledger)
    assert back.mailing == "training-confirmed" and back.event.sequence == 2


def test_a_moved_course_updates_every_calendar_holding_it_and_a_removed_one_is_cancelled():
    r = reg("a@std.example")
    ledger = commit({}, *plan([r]))
    moved = config(dates=[{"id": "training-2027-03-08", "start": datetime(2027, 3, 15, 9)}])
    [u], _ = plan([r], ledger, mc=moved)
    assert (u.mailing, u.event.method, u.event.sequence) == ("training-update", "REQUEST", 1)
    assert u.event.start == at(2027, 3, 15, 9) and u.context["remote"]  # still registered: joining details
    commit(ledger, [u], [])
    assert plan([r], ledger, mc=moved) == ([], [])
    gone = config(cancelled=["training-2027-03-08"])
    send, _ = plan([r], ledger, mc=gone)
    [c] = [d for d in send if d.mailing == "training-cancel"]
    assert c.event.method == "CANCEL" and c.event.sequence == 2
    commit(ledger, send, [])
    # Put back: re-invited, with the next SEQUENCE.
    [b], _ = plan([r], ledger)
    assert b.mailing == "training-update" and b.context["restored"] and b.event.sequence == 3


def test_reminder_attendance_sheet_and_seat_mail():
    r = reg("a@std.example")
    ledger = commit({}, *plan([r]))
    [rem], _ = plan([r], ledger, at(2027, 3, 6, 10))
    assert rem.mailing == "training-reminder"
    late = reg("b@std.example", minutes=60 * 24 * 25)  # confirmed after the reminder was due
    send, skip = plan([late], now=late.requested_at)
    assert [d.mailing for d in send] == ["training-confirmed"]
    assert any(d.mailing == "training-reminder" and "confirmation itself" in d.reason for d in skip)
    [sheet], _ = plan([r], commit(ledger, [rem], []), at(2027, 3, 9, 17, 30))
    assert sheet.mailing == "training-attendance" and sheet.recipient == "staff@oa.example"
    done = r.moved(Status.ATTENDED, Seat.INCLUDED, at(2027, 3, 10), by="staff@oa.example", via="staff-mail",
                   attended_on=date(2027, 3, 9))
    send, _ = plan([done], commit(ledger, [sheet], []), at(2027, 3, 10, 1))
    [seat] = send
    assert seat.mailing == "training-seat" and seat.context["promise"] == "a reply within a day"
    refresher = replace(done, address="old@std.example", trained_before=date(2025, 5, 1))
    assert [d for d in plan([refresher], ledger, at(2027, 3, 10, 1))[0] if d.mailing == "training-seat"] == []


def test_a_colleague_who_registered_others_gets_a_receipt():
    mid = "<ask@std.example>"

    def asked(address, status):
        r = Registration(training_id=MARCH.id, address=address, partner_id="std", requested_at=NOW,
                         registered_by="a@std.example")
        return r.moved(status, Seat.INCLUDED, NOW, by="a@std.example", via="reply", message_id=mid)

    send, _ = plan([asked("a@std.example", Status.CONFIRMED), asked("b@std.example", Status.CONFIRMED),
                    asked("c@std.example", Status.HELD)])
    [receipt] = [d for d in send if d.mailing == "training-receipt"]
    assert receipt.recipient == "a@std.example" and [r["status"] for r in receipt.context["rows"]] == [
        "confirmed", "confirmed", "held"]
    assert receipt.in_reply_to == mid


def test_announcements_carry_the_invitation_and_skip_who_is_registered():
    c = MC
    now = at(2027, 2, 6, 9, 30)
    send, _ = due_mailings([STD, SOLO], {}, c, now)
    ann = {d.recipient: d for d in send}
    assert set(ann) == {"a@std.example", "b@std.example", "c@std.example", "me@solo.example", "two@solo.example",
                        "old@std.example"}
    assert ann["old@std.example"].mailing == "training-refresher"
    assert ann["a@std.example"].event.method == "REQUEST" and ann["a@std.example"].event.uid == "training-2027-03-08"
    regs = (reg("b@std.example"),)
    send, _ = due_mailings([STD, SOLO], {}, c, now, trainings_in=TrainingInputs(registrations=regs))
    assert "b@std.example" not in {d.recipient for d in send if d.mailing == "training-announcement"}
    # Solo's one place taken: no announcement for Solo Shop.
    regs = (reg("me@solo.example", partner="solo"),)
    send, _ = due_mailings([SOLO], {}, c, now, trainings_in=TrainingInputs(registrations=regs))
    assert [d for d in send if d.mailing == "training-announcement"] == []


def test_the_plan_lists_every_training_mail_of_a_window():
    regs = (reg("a@std.example"), reg("c@std.example", Status.HELD, Seat.EXTRA))
    steps = simulate([STD, SOLO], {}, MC, at(2027, 2, 10, 9), at(2027, 3, 10),
                     trainings_in=TrainingInputs(registrations=regs, staff=STAFF))
    kinds = {s.due.mailing for s in steps if s.sent}
    assert {"training-confirmed", "training-held", "training-approval", "training-reminder",
            "training-attendance"} <= kinds

"""The mailings ledger stays small: entries no planning will list again move to the store's archive once
a day, and are still found by key, so nothing is decided (or sent) a second time."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

from service.cycle import cycle
from tests.test_mailings_runner import FakeSender, seed, wired  # noqa: F401  (the fixture)
from workflows.mailings.due import settled


def at(s: str) -> datetime:
    return datetime.fromisoformat(s).astimezone(timezone.utc)


def test_settled_is_about_listing_only_calls_not_yet_history_are_listed():
    now = at("2027-05-01T12:00:00+00:00")
    call = {"mailing": "call-invite", "status": "queued", "start": "2027-04-13T18:00:00+00:00"}
    assert not settled(call, now)  # a call 18 days ago: planning still lists its calendar state
    assert settled({**call, "start": "2027-01-12T19:00:00+00:00"}, now)
    assert settled({"mailing": "renewal", "status": "queued"}, now)  # asked for by key only
    assert settled({**call, "status": "skipped"}, now)
    # Training mail is listed too (the calendar state of each registration, a course that moved).
    course = {"mailing": "training-confirmed", "status": "queued", "training_id": "t-2027-04",
              "start": "2027-04-13T13:00:00+00:00", "method": "REQUEST"}
    assert not settled(course, now)
    assert not settled({**course, "mailing": "training-reminder", "method": None}, now)
    assert settled({**course, "start": "2027-02-01T13:00:00+00:00"}, now)
    assert not settled({"mailing": "training-waitlisted", "status": "queued", "training_id": "t"}, now)  # no start: kept


def test_a_year_of_mailings_decides_everything_once_with_a_small_hot_ledger(wired):  # noqa: F811
    stack, app, runner = wired("2026-12-29T19:30:00+00:00")
    sent: list = []
    sizes = []
    with stack:
        seed(app)
        # Every day at 15:00 UTC for a year and a half: calls, renewal series (cookshop lapses: it never
        # renews, so its series stays the current one and is asked for by key all along), trainings.
        day = at("2026-12-29T19:30:00+00:00")
        while day < at("2028-06-01T00:00:00+00:00"):
            app.sender = FakeSender()
            app.now = (lambda t: (lambda: t))(day)
            app.outbox.dispatcher.now = app.now
            cycle(app)
            sent += app.sender.sent
            sizes.append(len(app.store.ledger_view()))
            day += timedelta(days=1)
        keys = Counter(e.key for e in sent)
        assert keys and max(keys.values()) == 1, [k for k, n in keys.items() if n > 1][:5]
        everything = {e["key"] for e in app.store.ledger_all()}
        assert {k.removeprefix("mailing:") for k in keys} <= everything
        assert len(app.store.ledger_view()) < len(everything) / 2  # most of it left the hot store
        assert all(app.store.ledger(k) is not None for k in everything)  # and is still found by key
        # Planning sees what it decided long ago: nothing is proposed again (not even as a skip).
        assert runner.plan(day) == ([], [])
    assert max(sizes[-60:]) < max(sizes)

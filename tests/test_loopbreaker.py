"""workflows.loopbreaker: per-address limits and the global circuit breaker, over counts and time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from workflows.loopbreaker import Breaker, LoopPolicy, may_answer, update

T0 = datetime(2026, 11, 30, 15, 0, tzinfo=timezone.utc)
POLICY = LoopPolicy(per_address_per_hour=3, global_per_hour=10, resume_at=5)


@pytest.mark.parametrize("to_address,known,tripped,allowed", [
    (0, False, False, True),
    (2, False, False, True),
    (3, False, False, False),  # the per-address limit holds for everyone
    (3, True, False, False),
    (0, False, True, False),  # tripped: strangers wait
    (0, True, True, True),  # partners and staff are still answered
    (3, True, True, False),
])
def test_may_answer(to_address, known, tripped, allowed):
    breaker = Breaker(tripped_at=T0, answers_when_tripped=11) if tripped else Breaker()
    check = may_answer(to_address_last_hour=to_address, sender_known=known, breaker=breaker, policy=POLICY)
    assert check.allowed is allowed
    assert bool(check.reason) is not allowed


def test_the_breaker_trips_once_tells_staff_once_and_closes_when_calm():
    b = Breaker()
    history = []
    for minute, count in [(0, 4), (10, 10), (20, 11), (30, 40), (40, 12), (50, 6), (60, 5), (70, 11), (80, 12)]:
        change = update(b, count, T0 + timedelta(minutes=minute), POLICY)
        b = change.breaker
        history.append((count, b.tripped, change.tell_staff))
    assert history == [
        (4, False, False), (10, False, False),  # exactly N is not "more than N"
        (11, True, True),  # trips, staff told
        (40, True, False), (12, True, False), (6, True, False),  # still tripped, nobody told again
        (5, False, False),  # calm: closes
        (11, True, True),  # a new storm: told again
        (12, True, False),
    ]


def test_tripping_records_when_and_how_many():
    change = update(Breaker(), 61, T0)
    assert change.breaker.tripped_at == T0 and change.breaker.answers_when_tripped == 61
    assert "61 automatic answers in the last hour (limit 60)" in change.note
    check = may_answer(to_address_last_hour=0, sender_known=False, breaker=change.breaker)
    assert "2026-11-30T15:00" in check.reason

"""The loop breaker for everything partnerdesk sends in answer to inbound mail. Pure: counts and ``now`` in.

Two limits. Per address, as the intake has always had: at most
``per_address_per_hour`` answers to one address in an hour, whatever happens,
so a responder we failed to recognise gets three answers, not three thousand.
And a global circuit breaker, for a storm no per-address limit stops (a
misconfigured list, a bounce storm from many addresses, forged senders): more
than ``global_per_hour`` automatic answers in the last hour trips it; while it
is tripped, unknown senders are not answered (partners and staff still are:
the promise to them stands), and staff are told once. It closes again when the
last hour's answers fall to ``resume_at`` or below.

The caller counts from the outbox (answers queued or sent in the hour before
``now``) and keeps the Breaker value in the store between cycles.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .model import FROZEN, OutgoingMail

# The outbox kinds that answer a sender (staff notifications and mailings are not answers).
ANSWER_KINDS = frozenset({"ack", "channel-info", "command", "command-error"})


@dataclass(**FROZEN)
class LoopPolicy:
    per_address_per_hour: int = 3
    global_per_hour: int = 60  # a support desk answers a few dozen senders an hour on a busy day
    resume_at: int = 30


@dataclass(**FROZEN)
class Breaker:
    """The circuit breaker's state, kept between cycles. Breaker() is closed (answers flow)."""

    tripped_at: datetime | None = None
    answers_when_tripped: int = 0

    @property
    def tripped(self) -> bool:
        return self.tripped_at is not None


@dataclass(**FROZEN)
class BreakerChange:
    breaker: Breaker
    tell_staff: bool = False  # the breaker just tripped: staff hear it once, with the count
    note: str = ""  # for the log: what changed and why


def update(breaker: Breaker, answers_last_hour: int, now: datetime, policy: LoopPolicy = LoopPolicy()) -> BreakerChange:
    """The breaker after counting ``answers_last_hour`` at ``now``."""
    if not breaker.tripped and answers_last_hour > policy.global_per_hour:
        return BreakerChange(
            breaker=Breaker(tripped_at=now, answers_when_tripped=answers_last_hour), tell_staff=True,
            note=f"{answers_last_hour} automatic answers in the last hour (limit {policy.global_per_hour}): "
                 "unknown senders are not answered until it calms down")
    if breaker.tripped and answers_last_hour <= policy.resume_at:
        return BreakerChange(breaker=Breaker(), note=f"{answers_last_hour} answers in the last hour: answering again")
    return BreakerChange(breaker=breaker)


@dataclass(**FROZEN)
class AnswerCheck:
    allowed: bool
    reason: str = ""  # why not, for the thread's record and the log


def may_answer(*, to_address_last_hour: int, sender_known: bool, breaker: Breaker,
               policy: LoopPolicy = LoopPolicy()) -> AnswerCheck:
    """May one more automatic answer go to this sender? ``sender_known``: a roster contact or staff."""
    if to_address_last_hour >= policy.per_address_per_hour:
        return AnswerCheck(allowed=False, reason=f"{to_address_last_hour} answers already sent to this address "
                                                 f"this hour (limit {policy.per_address_per_hour})")
    if breaker.tripped and not sender_known:
        since = breaker.tripped_at.isoformat(timespec="minutes") if breaker.tripped_at else "?"
        return AnswerCheck(allowed=False, reason=f"loop breaker tripped at {since} ({breaker.answers_when_tripped} "
                                                 "answers in an hour): unknown senders are not answered")
    return AnswerCheck(allowed=True)


def staff_notice(change: BreakerChange, policy: LoopPolicy, *, staff: tuple[str, ...], support_name: str,
                 support_address: str) -> OutgoingMail:
    """The one mail that tells staff the breaker tripped (its key names the moment: once per trip)."""
    b = change.breaker
    at = b.tripped_at.isoformat(timespec="seconds") if b.tripped_at else "?"
    return OutgoingMail(
        key=f"loop-breaker:{at}", kind="loop-breaker", template="loop_breaker_notice", to=staff,
        subject=f"partnerdesk stopped answering unknown senders ({b.answers_when_tripped} automatic answers in "
                f"an hour)", from_name=support_name, auto_kind="auto-generated", reply_to_support=False,
        context={"answers": b.answers_when_tripped, "limit": policy.global_per_hour, "resume_at": policy.resume_at,
                 "tripped_at": at, "support_name": support_name, "support_address": support_address})

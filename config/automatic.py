"""The [delivery] table and the loop breaker's keys of [intake]: how bounces and automatic answers are kept
in check (workflows/delivery.py, workflows/loopbreaker.py)."""

from __future__ import annotations

from datetime import timedelta

from workflows.delivery import DeliveryPolicy
from workflows.loopbreaker import LoopPolicy

from .reader import Reader

DELIVERY_KEYS = ("soft_limit", "soft_window_days", "settle_days")
INTAKE_KEYS = ("answers_per_hour_all", "answers_resume_at")


def read_delivery(r: Reader) -> DeliveryPolicy:
    t = r.section("delivery", DELIVERY_KEYS)
    d = DeliveryPolicy()
    return DeliveryPolicy(
        soft_limit=r.whole(t, "[delivery]", "soft_limit", d.soft_limit, lo=1),
        soft_window=timedelta(days=r.number(t, "[delivery]", "soft_window_days", d.soft_window.days, lo=0.01)),
        settle_after=timedelta(days=r.number(t, "[delivery]", "settle_days", d.settle_after.days, lo=0.01)))


def read_loop(r: Reader, per_address: int) -> LoopPolicy:
    t = r.section("intake")
    d = LoopPolicy()
    limit = r.whole(t, "[intake]", "answers_per_hour_all", d.global_per_hour, lo=1)
    resume = r.whole(t, "[intake]", "answers_resume_at", min(d.resume_at, limit // 2), lo=0)
    if resume >= limit:
        raise r.fail("[intake] answers_resume_at", f"must be below answers_per_hour_all ({limit}), got {resume}: "
                                                   f"otherwise the breaker would close again at once")
    return LoopPolicy(per_address_per_hour=per_address, global_per_hour=limit, resume_at=resume)

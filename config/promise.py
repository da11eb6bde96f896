"""The [escalation], [lifecycle] and [digest] tables: how the reply-time promise is kept."""

from __future__ import annotations

import re

from workflows.autoclose import LifecycleConfig
from workflows.digest import DIGEST_ROLES, DigestConfig
from workflows.escalation import DEFAULT_STAGES, ROLES, Stage

from .reader import Reader

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
_STAGE_KEYS = ("name", "percent", "plus_hours", "to", "urgent", "title")
LIFECYCLE_KEYS = ("autoclose_business_days", "reopen_days")
DIGEST_KEYS = ("enabled", "to")
KEYS = {"escalation": ("stages",), "escalation.stages": _STAGE_KEYS, "lifecycle": LIFECYCLE_KEYS,
        "digest": DIGEST_KEYS}


def read_stages(r: Reader) -> tuple[Stage, ...]:
    """The ladder from [[escalation.stages]]; the default ladder when none is given."""
    t = r.section("escalation")
    if not t:
        return DEFAULT_STAGES
    r.check_keys(t, "[escalation]", ("stages",),
                 hint=f"unknown key; allowed: stages (an array of tables [[escalation.stages]] with "
                      f"{', '.join(sorted(_STAGE_KEYS))})")
    raw = t.get("stages", None)
    if raw is None:
        return DEFAULT_STAGES
    if not isinstance(raw, list):
        raise r.fail("[escalation] stages", "must be an array of tables ([[escalation.stages]])")
    stages: list[Stage] = []
    for i, s in enumerate(raw, start=1):
        where = f"[escalation] stages[{i}]"
        if not isinstance(s, dict):
            raise r.fail(where, "must be a table with name, percent, plus_hours, to, urgent")
        r.check_keys(s, where, _STAGE_KEYS)
        name = s.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise r.fail(f"{where} name", f"{name!r}: use lower-case letters, digits and '-', like \"warning\"")
        if any(x.name == name for x in stages):
            raise r.fail(f"{where} name", f"{name!r} is used twice")
        percent = r.number(s, where, "percent", 100.0)
        plus_hours = r.number(s, where, "plus_hours", 0.0)
        if percent == 0 and plus_hours == 0:
            raise r.fail(where, "percent and plus_hours are both 0; a stage needs some waiting")
        to = r.people(s.get("to"), f"{where} to", ROLES)
        urgent = r.flag(s, where, "urgent", False)
        title = r.text(s, where, "title", "")
        stages.append(Stage(name=name, percent=percent, plus_hours=plus_hours, to=to, urgent=urgent,
                            title=title.strip()))
    return tuple(stages)


def check_people(r: Reader, stages: tuple[Stage, ...], *, escalation: tuple[str, ...], program_lead: str | None,
                 support_address: str) -> None:
    """A configured ladder must name people who exist (the default ladder falls back to staff instead)."""
    if stages == DEFAULT_STAGES:
        return
    for i, st in enumerate(stages, start=1):
        where = f"[escalation] stages[{i}] to"
        if "escalation" in st.to and not escalation:
            raise r.fail(where, "names the role escalation but [support] escalation is empty")
        if "program_lead" in st.to and not program_lead:
            raise r.fail(where, "names the role program_lead but [support] program_lead is not set")
        if support_address in st.to:
            raise r.fail(where, "the support address itself would escalate to itself")


def read_lifecycle(r: Reader) -> LifecycleConfig:
    t = r.section("lifecycle", LIFECYCLE_KEYS)
    autoclose = r.whole(t, "[lifecycle]", "autoclose_business_days", LifecycleConfig().autoclose_business_days)
    reopen = r.whole(t, "[lifecycle]", "reopen_days", LifecycleConfig().reopen_days, lo=1)
    return LifecycleConfig(autoclose_business_days=autoclose, reopen_days=reopen)


def read_digest(r: Reader) -> DigestConfig:
    t = r.section("digest", DIGEST_KEYS)
    enabled = r.flag(t, "[digest]", "enabled", True)
    to = r.people(t.get("to", ["staff"]), "[digest] to", DIGEST_ROLES)
    return DigestConfig(enabled=enabled, to=to)

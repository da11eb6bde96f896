"""Store layouts by version, and the step from each to the next. A store is migrated when it is first
opened for writing by a newer version (read-only opens read the old layout as it is).

| schema | written by | layout                                                                    |
|--------|------------|---------------------------------------------------------------------------|
| 1      | 0.1.0      | threads keep assignee, previous, closed_at and the ladder in ``extra``;   |
|        |            | outbox rows hold only the fields that were ever set                       |
| 2      | 0.2.0      | typed thread fields (Thread.to_dict); every outbox row in OutboxEntry form |
| 3      | 0.3.0      | ``delivery`` (DeliveryState per address) replaces ``contact_failures``;   |
|        |            | ``automatic`` holds automatic mail; threads older versions opened for     |
|        |            | automatic mail are set aside (closed, and listed as automatic mail)        |

Additions that need no step (absent means empty): a thread's
``refused_keys`` and an event's ``proof`` (staff proof), the ``unverified`` table; the tables
``roster_changes`` and ``first_seen`` and ``Partner.deactivated_on`` (roster lifecycle, spool receipt).
"""

from __future__ import annotations

from typing import Any, Callable

from datetime import datetime

from workflows.delivery import DeliveryState
from workflows.filing import set_aside
from workflows.model import Thread
from workflows.outbox import OutboxEntry

SCHEMA = 3


def _v1_to_v2(tables: dict[str, Any]) -> dict[str, Any]:
    threads = tables.get("threads", {})
    for key, doc in threads.items():
        threads[key] = Thread.from_dict(doc).to_dict()
    outbox = tables.get("outbox", {})
    for key, doc in outbox.items():
        outbox[key] = OutboxEntry.from_dict({**doc, "key": key}).to_dict()
    return tables


def _v2_to_v3(tables: dict[str, Any]) -> dict[str, Any]:
    # A contact failure was recorded for an SMTP refusal or a bounce of a mailing, and staff were told:
    # it becomes a bouncing delivery state whose staff have heard of it.
    delivery = tables.setdefault("delivery", {})
    for address, rec in (tables.pop("contact_failures", None) or {}).items():
        at = datetime.fromisoformat(rec["last_at"]) if rec.get("last_at") else None
        delivery.setdefault(address.lower(), DeliveryState(
            address=address.lower(), bouncing_since=at, failures=int(rec.get("count", 1)), last_failure_at=at,
            last_reason=str(rec.get("last_detail", ""))[:300], staff_told_at=at).to_dict())
    # Threads opened for automatic mail (0.1.0 and 0.2.0 made one of every bounce and out-of-office from
    # outside our conversations): closed, their mail listed by `automatic list`.
    roster = {c.get("email", "").lower() for p in tables.get("partners", {}).values() for c in p.get("contacts", ())}
    messages = tables.get("messages", {})
    automatic = tables.setdefault("automatic", {})
    threads = tables.get("threads", {})
    for key, doc in threads.items():
        thread = Thread.from_dict(doc)
        first = messages.get(thread.messages[0]) if thread.messages else None
        found = set_aside(thread, first, sender_known=thread.requester in roster)
        if found is not None:
            closed, record = found
            threads[key] = closed.to_dict()
            automatic.setdefault(record.message_id or f"<set-aside.{thread.id}@partnerdesk.invalid>",
                                 record.to_dict())
    return tables


STEPS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2, 2: _v2_to_v3}


def migrate(tables: dict[str, Any]) -> dict[str, Any]:
    """``tables`` (the whole store, as TinyDB holds it) brought to SCHEMA."""
    meta = tables.setdefault("meta", {})
    version = int(meta.get("schema", {}).get("value", 1))
    while version < SCHEMA:
        tables = STEPS[version](tables)
        version += 1
    tables.setdefault("meta", {})["schema"] = {"value": SCHEMA}
    return tables


def migrated_view(tables: dict[str, Any]) -> dict[str, Any]:
    """What a read-only open shows of a store in an older layout: the migration, in memory only."""
    if int(tables.get("meta", {}).get("schema", {}).get("value", 1)) >= SCHEMA:
        return tables
    return migrate(tables)

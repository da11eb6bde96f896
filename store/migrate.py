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
| 4      | 0.4.0      | outbox rows without the rendered bytes (``body`` names where they are, in  |
|        |            | ``<store>.mail/``); the JSON keeps open work only, the rest moves to      |
|        |            | ``<store>.archive/`` at the migration's commit (store/tinystore.py)       |
| 5      | 0.5.0      | hot ledger rows compact: what the entries of a mailing share is kept once |
|        |            | in ``ledger_shapes`` (store/ledger_rows.py); archived entries stay whole  |

A step gets the whole store as TinyDB holds it and ``put_body(day, bytes) -> reference``, which keeps
a rendered mail's bytes apart from the JSON (written, fsynced, before the migrated JSON replaces the
old one). A read-only open migrates in memory only (``migrated_view``): there is no ``put_body``, and
the bytes stay in the rows, where the outbox reads them as before.

Additions that need no step (absent means empty): a thread's
``refused_keys`` and an event's ``proof`` (staff proof), the ``unverified`` table; the tables
``roster_changes`` and ``first_seen`` and ``Partner.deactivated_on`` (roster lifecycle, spool receipt).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

from workflows.delivery import DeliveryState
from workflows.filing import set_aside
from workflows.model import Thread
from workflows.outbox import OutboxEntry

from .ledger_rows import compact_table

SCHEMA = 5

PutBody = Callable[[str, bytes], str]


def _v1_to_v2(tables: dict[str, Any], put_body: PutBody | None) -> dict[str, Any]:
    threads = tables.get("threads", {})
    for key, doc in threads.items():
        threads[key] = Thread.from_dict(doc).to_dict()
    outbox = tables.get("outbox", {})
    for key, doc in outbox.items():
        outbox[key] = OutboxEntry.from_dict({**doc, "key": key}).to_dict()
    return tables


def _v2_to_v3(tables: dict[str, Any], put_body: PutBody | None) -> dict[str, Any]:
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


def _v3_to_v4(tables: dict[str, Any], put_body: PutBody | None) -> dict[str, Any]:
    if put_body is None:  # a read-only view: the rows keep their bytes
        return tables
    for key, doc in tables.get("outbox", {}).items():
        raw = doc.pop("raw", "") or ""
        if raw and not doc.get("body"):
            day = datetime.fromisoformat(doc["created_at"]).date().isoformat()
            doc["body"] = put_body(day, raw.encode("ascii"))
    return tables


def _v4_to_v5(tables: dict[str, Any], put_body: PutBody | None) -> dict[str, Any]:
    if tables.get("ledger"):
        compact_table(tables["ledger"], tables.setdefault("ledger_shapes", {}))
    return tables


STEPS: dict[int, Callable[[dict[str, Any], PutBody | None], dict[str, Any]]] = {1: _v1_to_v2, 2: _v2_to_v3,
                                                                            3: _v3_to_v4, 4: _v4_to_v5}


def migrate(tables: dict[str, Any], *, put_body: PutBody | None) -> dict[str, Any]:
    """``tables`` (the whole store, as TinyDB holds it) brought to SCHEMA; ``put_body`` None: in memory."""
    meta = tables.setdefault("meta", {})
    version = int(meta.get("schema", {}).get("value", 1))
    while version < SCHEMA:
        tables = STEPS[version](tables, put_body)
        version += 1
    tables.setdefault("meta", {})["schema"] = {"value": SCHEMA}
    return tables


def migrated_view(tables: dict[str, Any]) -> dict[str, Any]:
    """What a read-only open shows of a store in an older layout: the migration, in memory only."""
    if int(tables.get("meta", {}).get("schema", {}).get("value", 1)) >= SCHEMA:
        return tables
    return migrate(tables, put_body=None)

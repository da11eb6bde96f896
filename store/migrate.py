"""Store layouts by version, and the step from each to the next. A store is migrated when it is first
opened for writing by a newer version (read-only opens read the old layout as it is).

| schema | written by | layout                                                                    |
|--------|------------|---------------------------------------------------------------------------|
| 1      | 0.1.0      | threads keep assignee, previous, closed_at and the ladder in ``extra``;   |
|        |            | outbox rows hold only the fields that were ever set                       |
| 2      | 0.2.0      | typed thread fields (Thread.to_dict); every outbox row in OutboxEntry form |
|        | (additive) | tables roster_changes and first_seen, Partner.deactivated_on: absent means |
|        |            | empty / none, so a schema-2 store without them needs no step           |
"""

from __future__ import annotations

from typing import Any, Callable

from workflows.model import Thread
from workflows.outbox import OutboxEntry

SCHEMA = 2


def _v1_to_v2(tables: dict[str, Any]) -> dict[str, Any]:
    threads = tables.get("threads", {})
    for key, doc in threads.items():
        threads[key] = Thread.from_dict(doc).to_dict()
    outbox = tables.get("outbox", {})
    for key, doc in outbox.items():
        outbox[key] = OutboxEntry.from_dict({**doc, "key": key}).to_dict()
    return tables


STEPS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2}


def migrate(tables: dict[str, Any]) -> dict[str, Any]:
    """``tables`` (the whole store, as TinyDB holds it) brought to SCHEMA."""
    meta = tables.setdefault("meta", {})
    version = int(meta.get("schema", {}).get("value", 1))
    while version < SCHEMA:
        tables = STEPS[version](tables)
        version += 1
    tables.setdefault("meta", {})["schema"] = {"value": SCHEMA}
    return tables

"""Store layouts by version, and the step from each to the next. A store is migrated when it is first
opened for writing by a newer version (read-only opens read the old layout as it is).

| schema | written by | layout                                                                    |
|--------|------------|---------------------------------------------------------------------------|
| 1      | 0.1.0      | threads keep assignee, previous, closed_at and the ladder in ``extra``;   |
|        |            | outbox rows hold only the fields that were ever set                       |
| 2      | 0.2.0      | typed thread fields (Thread.to_dict); every outbox row in OutboxEntry form |
| 3      | 0.3.0      | outbox rows without the rendered bytes (``body`` names where they are, in  |
|        |            | ``<store>.mail/``); the JSON keeps open work only, the rest moves to      |
|        |            | ``<store>.archive/`` at the migration's commit (store/tinystore.py)       |

A step gets the whole store as TinyDB holds it and ``put_body(day, bytes) -> reference``, which keeps
a rendered mail's bytes apart from the JSON (written, fsynced, before the migrated JSON replaces the
old one).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

from workflows.model import Thread
from workflows.outbox import OutboxEntry

SCHEMA = 3

PutBody = Callable[[str, bytes], str]


def _v1_to_v2(tables: dict[str, Any], put_body: PutBody) -> dict[str, Any]:
    threads = tables.get("threads", {})
    for key, doc in threads.items():
        threads[key] = Thread.from_dict(doc).to_dict()
    outbox = tables.get("outbox", {})
    for key, doc in outbox.items():
        outbox[key] = OutboxEntry.from_dict({**doc, "key": key}).to_dict()
    return tables


def _v2_to_v3(tables: dict[str, Any], put_body: PutBody) -> dict[str, Any]:
    for key, doc in tables.get("outbox", {}).items():
        raw = doc.pop("raw", "") or ""
        if raw and not doc.get("body"):
            day = datetime.fromisoformat(doc["created_at"]).date().isoformat()
            doc["body"] = put_body(day, raw.encode("ascii"))
    return tables


STEPS: dict[int, Callable[[dict[str, Any], PutBody], dict[str, Any]]] = {1: _v1_to_v2, 2: _v2_to_v3}


def migrate(tables: dict[str, Any], *, put_body: PutBody) -> dict[str, Any]:
    """``tables`` (the whole store, as TinyDB holds it) brought to SCHEMA."""
    meta = tables.setdefault("meta", {})
    version = int(meta.get("schema", {}).get("value", 1))
    while version < SCHEMA:
        tables = STEPS[version](tables, put_body)
        version += 1
    tables.setdefault("meta", {})["schema"] = {"value": SCHEMA}
    return tables

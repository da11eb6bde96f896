"""The mailings ledger half of the store (a mixin of store.tinystore.Store), its hot rows kept compact.

A mailing of thousands writes one ledger entry per recipient, and those entries stay in the hot store
until the call (or term) is past: every commit of the mailing, and of anything else meanwhile, rewrote
them all, and each held a dozen fields that are the same for the whole mailing ("why", "due_at",
"start", "sequence", ...). In the hot store an entry therefore keeps only what is its own: the partner,
and a reference (``"~"``) to its **shape** in the ``ledger_shapes`` table, which holds the field order
and the values the entries of a mailing share. The mailing, occurrence and recipient are read from the
entry's key, its outbox key from the mailing's rule (``mailing:<ledger key>``); a field that says
otherwise (a skip's outbox key is None) is part of the shape. About 100 bytes of JSON per entry instead of 550, and a third of
the memory.

Readers never see a compact row: every read (by key, listing, the archive) gives the entry as it was
recorded, fields in their order. The archive holds whole entries. A row without ``~`` (written whole by
schema 4) is read as it is; an entry that has a field named ``~`` is kept whole under ``whole``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterator, Mapping

from workflows.mailings.due import SEP, outbox_key

SHAPE = "~"  # the field of a compact row naming its shape
OWN = frozenset({"partner_id"})  # kept per entry even when the entries of a mailing agree


def _derived(key: str) -> dict[str, str]:
    """What the key says of its entry (nothing for a key not in the mailing form)."""
    parts = key.split(SEP, 2)
    if len(parts) != 3:
        return {}
    mailing, occurrence, recipient = parts
    return {"mailing": mailing, "occurrence": occurrence, "recipient": recipient, "outbox_key": outbox_key(key)}


def shape_id(shape: dict[str, Any]) -> str:
    """A name for a shape, the same in every process (the table is shared): a hash of its JSON."""
    text = json.dumps(shape, ensure_ascii=True, separators=(",", ":"), sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def compact(key: str, record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``record`` as (its shape, its own row); None when it cannot be (it uses the field name ``~``)."""
    if SHAPE in record:
        return None
    derived = _derived(key)
    same: dict[str, Any] = {}
    own: dict[str, Any] = {}
    for field, value in record.items():
        if field in derived and value == derived[field]:
            continue  # the key says it
        if field in OWN:
            own[field] = value
        else:
            same[field] = value
    return {"order": list(record), "same": same}, own


def expand(key: str, row: dict[str, Any], shapes: Mapping[str, Any]) -> dict[str, Any]:
    """The entry as recorded, from its hot row."""
    sid = row.get(SHAPE)
    if sid is None:
        return row
    if sid == "":  # a record that has a field named "~" of its own, kept whole beside it
        return dict(row["whole"])
    shape = shapes[sid]
    same = shape["same"]
    derived = _derived(key)
    return {f: row[f] if f in row else same[f] if f in same else derived[f] for f in shape["order"]}


class LedgerRows:
    # Provided by Store: _t, _get, _hot, _sync_archive, _update, archive.

    def _shapes(self) -> dict[str, Any]:
        return self._t("ledger_shapes")._read_table()  # type: ignore[attr-defined,no-any-return]

    def ledger(self, key: str) -> dict[str, Any] | None:
        d = self._hot("ledger", key)  # type: ignore[attr-defined]
        if d is not None:
            return expand(key, d, self._shapes())
        self._sync_archive()  # type: ignore[attr-defined]
        return self.archive.get("ledger", key)  # type: ignore[attr-defined,no-any-return]

    def ledger_all(self) -> list[dict[str, Any]]:
        """Every ledger entry, archived ones included (for the verbs that show or simulate the ledger)."""
        self._sync_archive()  # type: ignore[attr-defined]
        docs = dict(self.archive.items("ledger"))  # type: ignore[attr-defined]
        shapes = self._shapes()
        docs.update((k, expand(k, d, shapes)) for k, d in self._t("ledger")._read_table().items())  # type: ignore[attr-defined]
        return [dict(d, key=k) for k, d in docs.items()]

    def ledger_view(self) -> Mapping[str, dict[str, Any]]:
        """The ledger as the planner reads it at every tick: listing it lists the hot entries only (the
        ones planning may need to list); asking for a key asks the archive too."""
        self._sync_archive()  # type: ignore[attr-defined]
        return _LedgerView(self._t("ledger")._read_table(), self._shapes(), self.archive)  # type: ignore[attr-defined]

    def record_ledger(self, key: str, record: dict[str, Any]) -> None:
        """Record (or update: fields merged into what is there) the entry under ``key``."""
        old = self._hot("ledger", key)  # type: ignore[attr-defined]
        if old is not None:
            record = {**expand(key, old, self._shapes()), **record}
        parts = compact(key, record)
        if parts is None:
            row = {SHAPE: "", "whole": dict(record)}
        else:
            shape, row = parts
            sid = shape_id(shape)
            if sid not in self._shapes():
                self._update("ledger_shapes", lambda docs: docs.__setitem__(sid, shape))  # type: ignore[attr-defined]
            row[SHAPE] = sid
        self._update("ledger", lambda docs: docs.__setitem__(key, row))  # type: ignore[attr-defined]

    def archive_ledger(self, keys: list[str]) -> None:
        """Call inside a transaction: these entries (settled: workflows/mailings/due.py) leave the hot store,
        whole; shapes no hot entry names any more go with them."""
        self._sync_archive()  # type: ignore[attr-defined]
        hot = self._t("ledger")._read_table()  # type: ignore[attr-defined]
        shapes = self._shapes()
        present = [k for k in keys if k in hot]
        for k in present:
            self.archive.put("ledger", k, expand(k, hot[k], shapes))  # type: ignore[attr-defined]
        if not present:
            return
        gone = set(present)
        self._update("ledger", lambda docs: [docs.pop(k, None) for k in gone])  # type: ignore[attr-defined]
        used = {d.get(SHAPE) for k, d in hot.items() if k not in gone}
        unused = [s for s in shapes if s not in used]
        if unused:
            self._update("ledger_shapes", lambda docs: [docs.pop(s, None) for s in unused])  # type: ignore[attr-defined]


def compact_table(ledger: dict[str, Any], shapes: dict[str, Any]) -> None:
    """Every whole row of ``ledger`` made compact, in place (the schema-5 migration)."""
    for key, row in list(ledger.items()):
        if SHAPE in row:
            continue
        parts = compact(key, row)
        if parts is None:
            continue
        shape, own = parts
        sid = shape_id(shape)
        shapes.setdefault(sid, shape)
        ledger[key] = {**own, SHAPE: sid}


class _LedgerView(Mapping[str, dict[str, Any]]):
    def __init__(self, hot: dict[str, Any], shapes: Mapping[str, Any], archive: Any) -> None:
        self.hot = hot
        self.shapes = shapes
        self.archive = archive

    def __getitem__(self, key: str) -> dict[str, Any]:
        d = self.hot.get(key)
        if d is not None:
            return expand(key, d, self.shapes)
        d = self.archive.get("ledger", key)
        if d is None:
            raise KeyError(key)
        return d  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        return key in self.hot or self.archive.get("ledger", key) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self.hot)

    def __len__(self) -> int:
        return len(self.hot)

"""The partnerdesk store on TinyDB.

Tables are keyed by natural keys (thread id, Message-ID, idempotency key), so a
look-up is a dict access, not a scan, and writing the same thing twice is an
upsert, never a duplicate.

| table       | key                        | what                                               |
|-------------|----------------------------|----------------------------------------------------|
| meta        | name                       | secret, history cut-off, thread counter            |
| partners    | partner id                 | roster (Partner.to_dict)                           |
| threads     | thread id ("OA-12")        | Thread.to_dict                                     |
| messages    | Message-ID                 | which thread a message belongs to, and its side    |
| raw         | sha256 of the raw bytes    | Message-ID of mail already taken in                |
| outbox      | idempotency key            | the rendered mail, its envelope and send status    |
| cursors     | folder                     | UIDVALIDITY and the last UID taken in              |
| quarantine  | source key                 | mail we could not take in, and why                 |
| ledger      | mailing key                | scheduled mailings already decided (issue 4)       |
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from tinydb import TinyDB
from tinydb.table import Document, Table

from workflows.errors import AlreadyRunning
from workflows.model import Partner, Thread

from .atomic import AtomicJSONStorage


class KeyedTable(Table):
    """Documents keyed by our own string keys instead of TinyDB's counters.

    TinyDB caches its next integer id per process; two processes (daemon and a
    CLI command) would hand out the same id. Natural keys avoid that entirely.
    """

    document_id_class = str

    def _update_table(self, updater):  # type: ignore[no-untyped-def]
        # TinyDB rebuilds the whole table dict twice per write to convert ids; with
        # string ids both copies are identity maps, and they made every write cost
        # O(table size). Update in place instead: AtomicJSONStorage only allows
        # writes inside a transaction and drops its cache when one rolls back.
        tables = self._storage.read()
        if tables is None:
            tables = {}
        table = tables.setdefault(self.name, {})
        updater(table)
        self._storage.write(tables)
        self.clear_cache()


class KeyedTinyDB(TinyDB):
    table_class = KeyedTable


class Store:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._db = KeyedTinyDB(self.path, storage=AtomicJSONStorage)
        self._storage: AtomicJSONStorage = self._db.storage  # type: ignore[assignment]
        self._daemon_lock: Any = None
        self.apply_journal()  # finish what a process that died mid-send had recorded

    def _t(self, name: str) -> Table:
        # cache_size=0: another process may have changed the file since our last query.
        return self._db.table(name, cache_size=0)

    def close(self) -> None:
        self.release_daemon_lock()
        self._db.close()

    # -- one durable write per decision ---------------------------------------
    def transaction(self, after_commit: Any = None) -> contextlib.AbstractContextManager[None]:
        return self._storage.transaction(after_commit)

    # -- one daemon per store --------------------------------------------------
    def acquire_daemon_lock(self) -> None:
        lock_path = self.path.with_name(self.path.name + ".daemon.lock")
        f = open(lock_path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise AlreadyRunning(
                f"another partnerdesk process (pid {holder}) is already working on the store {self.path}; "
                f"stop it first, or point this one at a different [store] path"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._daemon_lock = f

    def release_daemon_lock(self) -> None:
        if self._daemon_lock is not None:
            fcntl.flock(self._daemon_lock, fcntl.LOCK_UN)
            self._daemon_lock.close()
            self._daemon_lock = None

    # -- meta -------------------------------------------------------------------
    def meta(self, name: str, default: Any = None) -> Any:
        doc = self._t("meta").get(doc_id=name)
        return doc["value"] if doc is not None else default

    def set_meta(self, name: str, value: Any) -> None:
        self._t("meta").upsert(Document({"value": value}, doc_id=name))

    def secret(self, configured: str | None = None) -> bytes:
        """The key for our Message-IDs: from config, or generated once and kept."""
        if configured:
            return configured.encode()
        value = self.meta("secret")
        if value is not None:
            return value.encode()
        with self.transaction():
            value = self.meta("secret")
            if value is None:
                value = secrets.token_hex(32)
                self.set_meta("secret", value)
        return value.encode()

    def allocate_thread_number(self) -> int:
        """The next thread number; call inside the transaction that saves the thread."""
        n = int(self.meta("next_thread", 1))
        self.set_meta("next_thread", n + 1)
        return n

    def peek_thread_number(self) -> int:
        return int(self.meta("next_thread", 1))

    # -- partners -----------------------------------------------------------------
    def partners(self) -> list[Partner]:
        return sorted((Partner.from_dict(d) for d in self._t("partners").all()), key=lambda p: p.id)

    def partner(self, partner_id: str) -> Partner | None:
        d = self._t("partners").get(doc_id=partner_id)
        return Partner.from_dict(d) if d is not None else None

    def save_partner(self, partner: Partner) -> None:
        self._t("partners").upsert(Document(partner.to_dict(), doc_id=partner.id))

    # -- threads ------------------------------------------------------------------
    def thread(self, thread_id: str) -> Thread | None:
        d = self._t("threads").get(doc_id=thread_id.upper())
        return Thread.from_dict(d) if d is not None else None

    def threads(self, *, open_only: bool = False) -> list[Thread]:
        """All threads, oldest first; ``open_only`` skips closed ones before decoding them
        (the per-cycle tick needs only those, and closed threads are most of a mature store)."""
        docs = self._t("threads").all()
        if open_only:
            docs = [d for d in docs if d.get("state") != "closed"]
        return sorted((Thread.from_dict(d) for d in docs), key=lambda t: t.number)

    def save_thread(self, thread: Thread) -> None:
        self._t("threads").upsert(Document(thread.to_dict(), doc_id=thread.id))

    # -- messages -----------------------------------------------------------------
    def message(self, message_id: str) -> dict[str, Any] | None:
        return self._t("messages").get(doc_id=message_id)

    def record_message(self, message_id: str, **fields: Any) -> None:
        table = self._t("messages")
        old = table.get(doc_id=message_id) or {}
        table.upsert(Document({**old, **fields}, doc_id=message_id))

    def seen_raw(self, sha256: str) -> str | None:
        d = self._t("raw").get(doc_id=sha256)
        return d["message_id"] if d is not None else None

    def record_raw(self, sha256: str, message_id: str, source: str) -> None:
        self._t("raw").upsert(Document({"message_id": message_id, "source": source}, doc_id=sha256))

    # -- outbox -------------------------------------------------------------------
    def outbox_add(self, entry: dict[str, Any]) -> bool:
        """Queue a rendered mail; False (and nothing written) if its key is already queued or sent."""
        table = self._t("outbox")
        if table.get(doc_id=entry["key"]) is not None:
            return False
        table.insert(Document({"status": "pending", "attempts": 0, **entry}, doc_id=entry["key"]))
        return True

    # -- send results journal ------------------------------------------------------
    # Recording each send result in the store would rewrite the whole file per mail sent
    # (a mailing of 2,000 mails: 2,000 rewrites, each bigger than the last). Instead each
    # result is appended, fsynced, to a small journal, O(1) per mail, and the journal is
    # folded into the store in one write at the end of the drain, or by whoever opens the
    # store next after a crash. A mail recorded as sent is never sent again.
    def _journal_path(self) -> Path:
        return self.path.with_name(self.path.name + ".journal")

    def journal_outbox_update(self, key: str, **fields: Any) -> None:
        line = (json.dumps({"key": key, "fields": fields}, separators=(",", ":")) + "\n").encode()
        with self._storage.locked():  # never between another process's read and truncate of the journal
            with open(self._journal_path(), "ab") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())

    def apply_journal(self) -> int:
        """Fold journaled send results into the outbox (one store write); returns how many."""
        path = self._journal_path()
        try:
            if path.stat().st_size == 0:
                return 0
        except FileNotFoundError:
            return 0
        applied = 0

        def truncate() -> None:
            with open(path, "r+b") as f:
                f.truncate(0)
                os.fsync(f.fileno())

        with self.transaction(after_commit=truncate):
            for line in path.read_bytes().splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line torn by a crash: that result was not recorded; at worst one resend
                if self._t("outbox").get(doc_id=rec["key"]) is not None:
                    self.outbox_update(rec["key"], **rec["fields"])
                    applied += 1
        return applied

    def outbox(self, status: str | None = None) -> list[dict[str, Any]]:
        rows = [dict(d, key=d.doc_id) for d in self._t("outbox").all()]
        if status:
            rows = [r for r in rows if r["status"] == status]
        return sorted(rows, key=lambda r: (r.get("created_at", ""), r["key"]))

    def outbox_update(self, key: str, **fields: Any) -> None:
        table = self._t("outbox")
        doc = table.get(doc_id=key)
        if doc is None:
            raise KeyError(f"no outbox entry {key!r}")
        table.upsert(Document({**doc, **fields}, doc_id=key))

    def count_outbox_to(self, address: str, kind: str, since: datetime) -> int:
        """How many mails of ``kind`` were queued to ``address`` since ``since`` (the ack rate limit)."""
        d = self._t("recent").get(doc_id=f"{kind}:{address}")
        since_s = since.isoformat()
        return sum(1 for at in (d or {}).get("at", ()) if at >= since_s)

    def remember_sent(self, address: str, kind: str, at: datetime, keep: int = 50) -> None:
        # A small per-address index, so the rate limit does not scan the whole outbox.
        table = self._t("recent")
        key = f"{kind}:{address}"
        times = ((table.get(doc_id=key) or {}).get("at", []) + [at.isoformat()])[-keep:]
        table.upsert(Document({"at": times}, doc_id=key))

    # -- IMAP cursors ---------------------------------------------------------------
    def cursor(self, folder: str) -> dict[str, Any] | None:
        return self._t("cursors").get(doc_id=folder)

    def set_cursor(self, folder: str, uidvalidity: int, last_uid: int) -> None:
        self._t("cursors").upsert(Document({"uidvalidity": uidvalidity, "last_uid": last_uid}, doc_id=folder))

    # -- quarantine -------------------------------------------------------------------
    def quarantine(self, source_key: str, record: dict[str, Any]) -> None:
        table = self._t("quarantine")
        old = table.get(doc_id=source_key) or {}
        attempts = int(old.get("attempts", 0)) + 1
        table.upsert(Document({**old, **record, "attempts": attempts}, doc_id=source_key))

    def quarantined(self) -> list[dict[str, Any]]:
        return [dict(d, source=d.doc_id) for d in self._t("quarantine").all()]

    def quarantine_record(self, source_key: str) -> dict[str, Any] | None:
        return self._t("quarantine").get(doc_id=source_key)

    # -- ledger (scheduled mailings) -----------------------------------------------------
    def ledger(self, key: str) -> dict[str, Any] | None:
        return self._t("ledger").get(doc_id=key)

    def ledger_all(self) -> list[dict[str, Any]]:
        return [dict(d, key=d.doc_id) for d in self._t("ledger").all()]

    def record_ledger(self, key: str, record: dict[str, Any]) -> None:
        self._t("ledger").upsert(Document(record, doc_id=key))

    def table(self, name: str) -> Table:
        """Raw access for later workflows that need a table of their own."""
        return self._t(name)


@contextlib.contextmanager
def open_store(path: str | os.PathLike[str]) -> Iterator[Store]:
    store = Store(path)
    try:
        yield store
    finally:
        store.close()

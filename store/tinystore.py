"""The partnerdesk store on TinyDB: the Store port of service/ports.py, with named methods only.

Tables are keyed by natural keys (thread id, Message-ID, idempotency key), so a look-up is a dict
access, not a scan, and writing the same thing twice is an upsert, never a duplicate. No code outside
this package touches a table.

The JSON file is the **hot store**: open work only, so that rewriting it at every durable write costs
what the open work weighs, not what the history weighs. At each commit, what is no longer worked on
moves to the archive (store/archive.py) in the same atomic step: closed threads and the message
index of threads that are not open, every raw-hash record, finished (sent, cancelled) outbox rows;
the mailings tick moves ledger entries no planning needs to list (``archive_ledger``).
Look-ups try the hot store and then, on a miss, the archive; a reopened thread is saved hot again and
wins over its archived copy. Small commits leave what could move where it is until at least
``archive_batch`` records could (one fsync less for each of them); so the hot store holds open work
plus at most that much. Rendered mail never enters the JSON (store/mailfiles.py).

| table            | key                        | what                                        | hot store keeps       |
|------------------|----------------------------|---------------------------------------------|-----------------------|
| meta             | name                       | secret, history cut-off, thread counter, digest day, schema, archive state, the loop breaker, when delivery states were last settled | all |
| partners         | partner id                 | the roster (Partner.to_dict)                | all                   |
| payments         | "partner id|recorded at"   | renewals recorded by `partners renew`       | all                   |
| threads          | thread id ("OA-12")        | Thread.to_dict                              | threads not closed    |
| messages         | Message-ID                 | which thread a message belongs to, its side | those of open threads |
| ghosts           | Message-ID                 | an id named in References/In-Reply-To that we never received: the first thread whose mail named it | those of open threads |
| raw              | sha256 of the raw bytes    | Message-ID of mail already taken in         | none (archive only)   |
| cursors          | folder                     | UIDVALIDITY and the last UID taken in       | all                   |
| quarantine       | source key                 | mail we could not take in, and why          | all                   |
| outbox           | idempotency key            | OutboxEntry without its bytes (``body`` says where they are) | pending, failed |
| recent           | "kind:address"             | when mail of a kind last went to an address (ack limit); "answer:ADDRESS" and "answer:*": automatic answers | all |
| ledger           | mailing key                | scheduled mailings already decided (hot rows compact: store/ledger_rows.py) | unsettled entries |
| ledger_shapes    | shape id                   | what the ledger entries of a mailing share  | those hot rows name   |
| mailing_requests | "welcome:partner id"       | welcome mails asked for by `partners import` | all                  |
| unsubscribed     | "list:address"             | List-Unsubscribe requests honoured          | all                   |
| rsvps            | "calendar uid|attendee"    | calendar replies to our invitations         | all                   |
| delivery         | address                    | DeliveryState: bouncing since, failures, last reason | all          |
| accepted         | address                    | the first mail our server accepted after an address's last failure, of sent rows gone to the archive | those still failing |
| automatic        | Message-ID                 | automatic mail taken in (AutomaticRecord): never work | none (archive only) |
| registrations    | "training id|address"      | training registrations (workflows/trainings/model.py) | all         |
| unverified       | Message-ID                 | unproven staff-looking mail, held until its writer confirms it | all |
| roster_changes   | "at|partner id|what"       | contacts removed, partners (de/re)activated: who, when | all       |
| first_seen       | source key + content hash  | when a spool file was first seen, on the rules' clock | all        |

Beside the JSON file: ``.archive/`` (store/archive.py), ``.mail/`` (rendered outgoing mail,
store/mailfiles.py), ``.journal`` (send results not yet folded in, store/journal.py), ``.lock``
(the write lock) and ``.daemon.lock`` (one daemon per store).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterable, Iterator

from tinydb import TinyDB
from tinydb.table import Document, Table

from workflows.errors import AlreadyRunning
from workflows.filing import AutomaticRecord
from workflows.lifecycle import State
from workflows.model import Partner, Thread
from workflows.outbox import OutboxEntry, Status

from .archive import Archive
from .atomic import AtomicJSONStorage
from .journal import SendJournal
from .mailfiles import MailFiles
from .migrate import SCHEMA, migrate, migrated_view
from .delivery_rows import DeliveryRows
from .ledger_rows import LedgerRows
from .outbox_rows import FINISHED, OutboxRows
from .small_tables import SmallTables


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
        storage = self._storage
        tables = storage.read()
        if tables is None:
            tables = {}
        table = tables.setdefault(self.name, {})
        if isinstance(storage, AtomicJSONStorage):  # (tests give TinyDB's MemoryStorage too)
            storage.changing(self.name)  # the JSON it keeps of this table is stale from here on
            updater(table)
            storage.write_table(tables)
        else:
            updater(table)
            storage.write(tables)
        self.clear_cache()


class KeyedTinyDB(TinyDB):
    table_class = KeyedTable


def _side(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


class Store(OutboxRows, LedgerRows, DeliveryRows, SmallTables):
    """``readonly``: for verbs that only read; a write raises, and nothing on disk changes."""

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._db = KeyedTinyDB(self.path, storage=AtomicJSONStorage, readonly=readonly)
        self._storage: AtomicJSONStorage = self._db.storage  # type: ignore[assignment]
        self.archive = Archive(_side(self.path, ".archive"), readonly=readonly)
        self.mail = MailFiles(_side(self.path, ".mail"), readonly=readonly)
        self.journal = SendJournal(_side(self.path, ".journal"))
        self._storage.before_save = self._before_save
        self._storage.after_save = self.archive.after_commit
        self._storage.on_rollback = self._rolled_back
        if readonly:  # an older store, read as this version would migrate it (nothing is written)
            self._storage.view = migrated_view
        self._daemon_lock: Any = None
        self._roster: tuple[Any, list[Partner]] | None = None  # (the partners table read, its partners)
        self._migrating = False
        if not readonly:
            # Migrate first: any write stamps the current schema, so a journal folded into an old store
            # before its migration would mark it migrated without migrating it.
            self._migrate()
            self.apply_journal()  # finish what a process that died mid-send had recorded

    def _t(self, name: str) -> Table:
        # cache_size=0: another process may have changed the file since our last query.
        return self._db.table(name, cache_size=0)

    def _hot(self, table: str, key: str) -> dict[str, Any] | None:
        return self._t(table).get(doc_id=key)  # type: ignore[return-value]

    def _get(self, table: str, key: str) -> dict[str, Any] | None:
        """The hot store's record, else the archive's (for the tables that have one)."""
        d = self._hot(table, key)
        if d is None and table in ARCHIVED:
            self._sync_archive()
            d = self.archive.get(table, key)
        return d

    def _sync_archive(self) -> None:
        self.archive.sync(self.meta("archive"))

    # -- what moves to the archive, at each commit ------------------------------------------------------
    archive_batch = 200  # records that may leave the hot store before a commit moves them (one fsync less
    # for the small commits of a quiet desk, whose moves wait for the next big one)

    def _before_save(self, tables: dict[str, Any]) -> None:
        """Last touches to what a commit writes: what is no longer worked on goes to the archive (made
        durable first) once there is enough of it, the outgoing mail staged by this transaction to its
        file, the schema stamp."""
        self._sync_archive()
        closed = str(State.CLOSED)
        threads = tables.get("threads", {})
        messages = tables.get("messages", {})
        raw = tables.get("raw", {})
        outbox = tables.get("outbox", {})
        gone_threads = [t for t, d in threads.items() if d.get("state") == closed]
        open_ids = set(threads) - set(gone_threads)
        gone_messages = [m for m, d in messages.items() if d.get("thread_id") not in open_ids]
        ghosts = tables.get("ghosts", {})
        gone_ghosts = [g for g, d in ghosts.items() if d.get("thread_id") not in open_ids]
        gone_rows = [k for k, d in outbox.items() if d.get("status") in FINISHED]
        automatic = tables.get("automatic", {})
        movable = len(gone_threads) + len(gone_messages) + len(gone_ghosts) + len(raw) + len(gone_rows) + len(automatic)
        if movable and (movable >= self.archive_batch or self._migrating):
            for name in ("threads", "messages", "ghosts", "raw", "automatic", "outbox"):
                self._storage.changing(name)
            for tid in gone_threads:
                self.archive.put("threads", tid, threads.pop(tid))
            for mid in gone_messages:
                self.archive.put("messages", mid, messages.pop(mid))
            for mid in gone_ghosts:
                self.archive.put("ghosts", mid, ghosts.pop(mid))
            for sha in list(raw):
                self.archive.put("raw", sha, raw.pop(sha))
            for mid in list(automatic):
                self.archive.put("automatic", mid, automatic.pop(mid))
            self._keep_accepted(tables, [outbox[k] for k in gone_rows])
            for key in gone_rows:
                self.archive.put("outbox", key, outbox.pop(key))
        self.mail.flush()  # the bytes of mail queued now exist before anything refers to them
        self._storage.changing("meta")
        state = self.archive.flush()
        if state is not None:
            tables.setdefault("meta", {})["archive"] = {"value": state}
        tables.setdefault("meta", {}).setdefault("schema", {"value": SCHEMA})

    def _rolled_back(self) -> None:
        self.mail.rollback()
        self.archive.rollback(self.meta("archive"))

    def _put(self, table: str, key: str, data: dict[str, Any]) -> None:
        """TinyDB's upsert of ``data`` under ``key`` (fields merged into a document that is there, a new one
        added), in one table update: upsert itself tries an update, finds nothing, and inserts in a second
        one (a mailing puts three records per recipient)."""
        def upsert(docs: dict[str, Any]) -> None:
            old = docs.get(key)
            if old is None:
                docs[key] = dict(data)
            else:
                old.update(data)

        self._update(table, upsert)

    def _update(self, table: str, change: Any) -> None:
        """``change(documents)`` applied to ``table`` in place (inside a transaction)."""
        self._t(table)._update_table(change)  # type: ignore[attr-defined]

    def _all(self, table: str) -> list[Document]:
        return self._t(table).all()

    def close(self) -> None:
        self.release_daemon_lock()
        self.mail.close()
        self.journal.close()
        self._db.close()

    def _migrate(self) -> None:
        """Bring a store written by an older version up to this one's layout, once, in one write (what
        the layout now keeps apart, the archive and the mail files, is written first, then the JSON)."""
        if not self._storage.read() or self.meta("schema", 1) >= SCHEMA:
            return  # a new store is stamped with this version by its first write
        self._migrating = True  # the migration's commit moves everything it can, however little
        try:
            with self.transaction():
                tables = self._storage.read() or {}
                if tables.get("meta", {}).get("schema", {}).get("value", 1) < SCHEMA:
                    self._storage.write(migrate(tables, put_body=self.mail.stage))
        finally:
            self._migrating = False

    # -- one durable write per decision -----------------------------------------------------------------
    def transaction(self, after_commit: Any = None) -> contextlib.AbstractContextManager[None]:
        return self._storage.transaction(after_commit)

    # -- one daemon per store ----------------------------------------------------------------------------
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

    def daemon_pid(self) -> int | None:
        """Who holds the daemon lock now (a running `run` or `once`), without taking it; None if nobody."""
        lock_path = self.path.with_name(self.path.name + ".daemon.lock")
        if self._daemon_lock is not None:
            return os.getpid()
        try:
            f = open(lock_path)
        except FileNotFoundError:
            return None
        with f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = f.read().strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(f, fcntl.LOCK_UN)
        return None

    def release_daemon_lock(self) -> None:
        if self._daemon_lock is not None:
            fcntl.flock(self._daemon_lock, fcntl.LOCK_UN)
            self._daemon_lock.close()
            self._daemon_lock = None

    # -- program state -------------------------------------------------------------------------------------
    def meta(self, name: str, default: Any = None) -> Any:
        doc = self._get("meta", name)
        return doc["value"] if doc is not None else default

    def set_meta(self, name: str, value: Any) -> None:
        self._put("meta", name, {"value": value})

    def secret(self, configured: str | None = None) -> bytes:
        """The key for our Message-IDs and tokens: from config, or generated once and kept."""
        if configured:
            return configured.encode()
        value = self.meta("secret")
        if value is not None:
            return value.encode()
        if self.readonly:  # a store nothing was ever written to: nothing to recognise, nothing to keep
            return secrets.token_hex(32).encode()
        with self.transaction():
            value = self.meta("secret")
            if value is None:
                value = secrets.token_hex(32)
                self.set_meta("secret", value)
        return value.encode()

    def history_cutoff(self) -> datetime | None:
        value = self.meta("history_cutoff")
        return datetime.fromisoformat(value) if value else None

    def set_history_cutoff(self, at: datetime) -> None:
        self.set_meta("history_cutoff", at.isoformat())

    def digest_day(self) -> str | None:
        return self.meta("digest_day")

    def set_digest_day(self, day: str) -> None:
        self.set_meta("digest_day", day)

    def allocate_thread_number(self) -> int:
        """The next thread number; call inside the transaction that saves the thread."""
        n = int(self.meta("next_thread", 1))
        self.set_meta("next_thread", n + 1)
        return n

    def peek_thread_number(self) -> int:
        return int(self.meta("next_thread", 1))

    # -- the roster ------------------------------------------------------------------------------------------
    def partners(self) -> list[Partner]:
        # Remembered until save_partner (KeyedTable writes in place) or until the table is another object:
        # a rollback and another process's write both reload the file. The roster is read by every tick
        # and every decision; rebuilding 300 partners each time was the largest part of acknowledging a
        # request. The table read is held, so its identity cannot pass to another.
        table = (self._storage.read() or {}).get("partners")
        if table is None:
            return []
        if self._roster is None or self._roster[0] is not table:
            self._roster = (table, sorted((Partner.from_dict(d) for d in self._all("partners")),
                                          key=lambda p: p.id))
        return list(self._roster[1])

    def partner(self, partner_id: str) -> Partner | None:
        d = self._get("partners", partner_id)
        return Partner.from_dict(d) if d is not None else None

    def save_partner(self, partner: Partner) -> None:
        self._roster = None
        self._put("partners", partner.id, partner.to_dict())

    def record_payment(self, partner_id: str, *, at: datetime, old_term_end: date | None, paid_until: date,
                       plan: str, amount: int) -> None:
        self._put("payments", f"{partner_id}|{at.isoformat()}", {
            "partner_id": partner_id, "recorded_at": at.isoformat(),
            "old_term_end": old_term_end.isoformat() if old_term_end else None,
            "paid_until": paid_until.isoformat(), "plan": plan, "amount": amount})

    def record_roster_change(self, at: datetime, record: dict[str, Any]) -> None:
        what = record.get("contact", {}).get("email", "") if isinstance(record.get("contact"), dict) else ""
        self._put("roster_changes", f"{at.isoformat()}|{record.get('partner_id', '')}|{record['change']}|{what}",
                  {"at": at.isoformat(), **record})

    def roster_changes(self) -> list[dict[str, Any]]:
        return sorted((dict(d) for d in self._all("roster_changes")), key=lambda r: r["at"])

    def payments(self) -> list[dict[str, Any]]:
        return sorted((dict(d) for d in self._all("payments")), key=lambda r: r["recorded_at"])

    # -- threads -----------------------------------------------------------------------------------------------
    def thread(self, thread_id: str) -> Thread | None:
        d = self._get("threads", thread_id.upper())
        return Thread.from_dict(d) if d is not None else None

    def threads(self, *, open_only: bool = False) -> list[Thread]:
        """All threads, oldest first; ``open_only``: only those not closed, which are all in the hot store
        (the per-cycle tick needs only those; closed threads are most of a mature store, in the archive)."""
        docs: dict[str, dict[str, Any]] = {}
        if not open_only:
            self._sync_archive()
            docs.update(self.archive.items("threads"))
        docs.update((d.doc_id, d) for d in self._all("threads"))
        rows = docs.values()
        if open_only:
            rows = [d for d in rows if d.get("state") != State.CLOSED]
        return sorted((Thread.from_dict(d) for d in rows), key=lambda t: t.number)

    def save_thread(self, thread: Thread) -> None:
        self._put("threads", thread.id, thread.to_dict())

    # -- messages ------------------------------------------------------------------------------------------------
    def message(self, message_id: str) -> dict[str, Any] | None:
        return self._get("messages", message_id)

    def record_message(self, message_id: str, **fields: Any) -> None:
        # Goes to the hot store; the commit moves it to the archive unless its thread is open.
        self._put("messages", message_id, {**(self._get("messages", message_id) or {}), **fields})

    # -- ghosts: ancestors we never received (threading by the reference graph, workflows/refgraph.py) ----
    def ghost_thread(self, message_id: str) -> str | None:
        """The thread whose mail names ``message_id``, a message we never received; None if none does."""
        d = self._get("ghosts", message_id)
        return d["thread_id"] if d is not None else None

    def record_ghosts(self, thread_id: str, message_ids: Iterable[str]) -> int:
        """Remember that ``thread_id``'s mail names these ids; the first thread to name one keeps it.

        The caller passes at most one message's bounded ancestors (refgraph.MAX_ANCESTORS), so the
        index grows by at most that much per message taken in. Returns how many were new."""
        added = 0
        for mid in message_ids:
            if mid and self._get("ghosts", mid) is None:
                self._put("ghosts", mid, {"thread_id": thread_id})
                added += 1
        return added

    def seen_raw(self, sha256: str) -> str | None:
        d = self._get("raw", sha256)
        return d["message_id"] if d is not None else None

    def record_raw(self, sha256: str, message_id: str, source: str) -> None:
        self._put("raw", sha256, {"message_id": message_id, "source": source})

    def first_seen(self, key: str, at: datetime) -> datetime:
        """Call inside a transaction: the first call for ``key`` records ``at``; later ones return it."""
        d = self._get("first_seen", key)
        if d is not None:
            return datetime.fromisoformat(d["at"])
        if not self.readonly:
            self._put("first_seen", key, {"at": at.isoformat()})
        return at

    # -- IMAP cursors ---------------------------------------------------------------------------------------------
    def cursor(self, folder: str) -> dict[str, Any] | None:
        return self._get("cursors", folder)

    def set_cursor(self, folder: str, uidvalidity: int, last_uid: int) -> None:
        self._put("cursors", folder, {"uidvalidity": uidvalidity, "last_uid": last_uid})

    # -- quarantine ----------------------------------------------------------------------------------------------
    def quarantine(self, source_key: str, record: dict[str, Any]) -> None:
        old = self._get("quarantine", source_key) or {}
        self._put("quarantine", source_key, {**old, **record, "attempts": int(old.get("attempts", 0)) + 1})

    def quarantined(self) -> list[dict[str, Any]]:
        return [dict(d, source=d.doc_id) for d in self._all("quarantine")]

    def quarantine_record(self, source_key: str) -> dict[str, Any] | None:
        return self._get("quarantine", source_key)

    # -- the ack rate limit -------------------------------------------------------------------------------------
    def count_sent_to(self, address: str, kind: str, since: datetime) -> int:
        """How many mails of ``kind`` were queued to ``address`` since ``since`` (the ack rate limit)."""
        since_s = since.isoformat()
        return sum(1 for at in (self._get("recent", f"{kind}:{address}") or {}).get("at", ()) if at >= since_s)

    def remember_sent(self, address: str, kind: str, at: datetime, keep: int = 50) -> None:
        # A small per-address index, so the rate limit does not scan the whole outbox.
        key = f"{kind}:{address}"
        self._put("recent", key, {"at": ((self._get("recent", key) or {}).get("at", []) + [at.isoformat()])[-keep:]})

    # -- scheduled mailings (the ledger: store/ledger_rows.py) --------------------------------------------------
    def request_welcome(self, partner_id: str, at: datetime) -> None:
        """Call inside the transaction that adds the partner: the next tick sends the welcome."""
        self._put("mailing_requests", f"welcome:{partner_id}", {"at": at.isoformat()})

    def welcome_requests(self) -> dict[str, datetime]:
        return {d.doc_id.removeprefix("welcome:"): datetime.fromisoformat(d["at"])
                for d in self._all("mailing_requests") if d.doc_id.startswith("welcome:")}

    def record_unsubscribe(self, list_name: str, address: str, record: dict[str, Any]) -> None:
        self._put("unsubscribed", f"{list_name}:{address}", record)

    def unsubscribed(self) -> frozenset[str]:
        """ "list:address" of everyone who unsubscribed from a list."""
        return frozenset(d.doc_id for d in self._all("unsubscribed"))

    def record_rsvp(self, uid: str, attendee: str, record: dict[str, Any]) -> None:
        self._put("rsvps", f"{uid}|{attendee}", record)

    def rsvps(self) -> list[dict[str, Any]]:
        return [dict(d) for d in self._all("rsvps")]

    # -- automatic mail (the delivery state of contacts: store/delivery_rows.py) --------------------------------------------------
    def record_automatic(self, record: AutomaticRecord) -> None:
        self._put("automatic", record.message_id, record.to_dict())

    def automatic_mail(self) -> list[AutomaticRecord]:
        """Every automatic message taken in, oldest first."""
        self._sync_archive()
        docs = dict(self.archive.items("automatic"))
        docs.update({d.doc_id: d for d in self._all("automatic")})
        return sorted((AutomaticRecord.from_dict(d) for d in docs.values()), key=lambda r: r.received_at)


ARCHIVED = frozenset({"threads", "messages", "ghosts", "raw", "outbox", "ledger", "automatic"})


def copy_store(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """A copy of the store at ``src`` (the JSON file and what lies beside it) at ``dst``, for dry runs."""
    src, dst = Path(src), Path(dst)
    if src.exists():
        shutil.copyfile(src, dst)
    for suffix in (".journal", ".journal.folding"):
        if _side(src, suffix).exists():
            shutil.copyfile(_side(src, suffix), _side(dst, suffix))
    for suffix in (".archive", ".mail"):
        if _side(src, suffix).is_dir():
            shutil.copytree(_side(src, suffix), _side(dst, suffix))


@contextlib.contextmanager
def open_store(path: str | os.PathLike[str], *, readonly: bool = False) -> Iterator[Store]:
    store = Store(path, readonly=readonly)
    try:
        yield store
    finally:
        store.close()

"""The partnerdesk store on TinyDB: the Store port of service/ports.py, with named methods only.

Tables are keyed by natural keys (thread id, Message-ID, idempotency key), so a look-up is a dict
access, not a scan, and writing the same thing twice is an upsert, never a duplicate. No code outside
this package touches a table.

| table            | key                        | what                                                   |
|------------------|----------------------------|--------------------------------------------------------|
| meta             | name                       | secret, history cut-off, thread counter, digest day, schema, |
|                  |                            | the loop breaker, when delivery states were last settled |
| partners         | partner id                 | the roster (Partner.to_dict)                           |
| payments         | "partner id|recorded at"   | renewals recorded by `partners renew`                  |
| roster_changes   | "at|partner id|what"       | contacts removed, partners (de/re)activated: who, when |
| first_seen       | source key + content hash  | when a spool file was first seen, on the rules' clock  |
| threads          | thread id ("OA-12")        | Thread.to_dict                                         |
| messages         | Message-ID                 | which thread a message belongs to, and its side        |
| ghosts           | Message-ID                 | an id named in References/In-Reply-To that we never    |
|                  |                            | received: the first thread whose mail named it          |
| raw              | sha256 of the raw bytes    | Message-ID of mail already taken in                    |
| cursors          | folder                     | UIDVALIDITY and the last UID taken in                  |
| quarantine       | source key                 | mail we could not take in, and why                     |
| outbox           | idempotency key            | OutboxEntry: the rendered mail, envelope, send status  |
| recent           | "kind:address"             | when mail of a kind last went to an address (ack limit); |
|                  |                            | "answer:ADDRESS" and "answer:*": automatic answers     |
| ledger           | mailing key                | scheduled mailings already decided                     |
| mailing_requests | "welcome:partner id"       | welcome mails asked for by `partners import`           |
| unsubscribed     | "list:address"             | List-Unsubscribe requests honoured                     |
| rsvps            | "calendar uid|attendee"    | calendar replies to our invitations                    |
| delivery         | address                    | DeliveryState: bouncing since, failures, last reason   |
| automatic        | Message-ID                 | automatic mail taken in (AutomaticRecord): never work  |
| unverified       | Message-ID                 | unproven staff-looking mail, held until its writer confirms it |
| registrations    | "training id|address"      | training registrations (workflows/trainings/model.py)  |

Beside the JSON file: ``.journal`` (send results not yet folded in), ``.lock`` (the write lock) and
``.daemon.lock`` (one daemon per store).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterable, Iterator

from tinydb import TinyDB
from tinydb.table import Document, Table

from workflows.delivery import DeliveryState
from workflows.errors import AlreadyRunning
from workflows.filing import AutomaticRecord
from workflows.lifecycle import State
from workflows.loopbreaker import Breaker
from workflows.model import Partner, Thread
from workflows.outbox import OutboxEntry, Status
from workflows.trainings.model import Registration

from .atomic import AtomicJSONStorage
from .migrate import SCHEMA, migrate, migrated_view


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
    """``readonly``: for verbs that only read; a write raises, and nothing on disk changes."""

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._db = KeyedTinyDB(self.path, storage=AtomicJSONStorage, readonly=readonly)
        self._storage: AtomicJSONStorage = self._db.storage  # type: ignore[assignment]
        self._storage.before_save = _stamp_schema
        if readonly:  # an older store, read as this version would migrate it (nothing is written)
            self._storage.view = migrated_view
        self._daemon_lock: Any = None
        if not readonly:
            # Migrate first: any write stamps the current schema, so a journal folded into an old store
            # before its migration would mark it migrated without migrating it.
            self._migrate()
            self.apply_journal()  # finish what a process that died mid-send had recorded

    def _t(self, name: str) -> Table:
        # cache_size=0: another process may have changed the file since our last query.
        return self._db.table(name, cache_size=0)

    def _get(self, table: str, key: str) -> dict[str, Any] | None:
        return self._t(table).get(doc_id=key)  # type: ignore[return-value]

    def _put(self, table: str, key: str, data: dict[str, Any]) -> None:
        self._t(table).upsert(Document(data, doc_id=key))

    def _all(self, table: str) -> list[Document]:
        return self._t(table).all()

    def close(self) -> None:
        self.release_daemon_lock()
        self._db.close()

    def _migrate(self) -> None:
        """Bring a store written by an older version up to this one's layout, once, in one write."""
        if not self._storage.read() or self.meta("schema", 1) >= SCHEMA:
            return  # a new store is stamped with this version by its first write
        with self.transaction():
            tables = self._storage.read() or {}
            if tables.get("meta", {}).get("schema", {}).get("value", 1) < SCHEMA:
                self._storage.write(migrate(tables))

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
        return sorted((Partner.from_dict(d) for d in self._all("partners")), key=lambda p: p.id)

    def partner(self, partner_id: str) -> Partner | None:
        d = self._get("partners", partner_id)
        return Partner.from_dict(d) if d is not None else None

    def save_partner(self, partner: Partner) -> None:
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
        """All threads, oldest first; ``open_only`` skips closed ones before decoding them
        (the per-cycle tick needs only those, and closed threads are most of a mature store)."""
        docs = self._all("threads")
        if open_only:
            docs = [d for d in docs if d.get("state") != State.CLOSED]
        return sorted((Thread.from_dict(d) for d in docs), key=lambda t: t.number)

    def save_thread(self, thread: Thread) -> None:
        self._put("threads", thread.id, thread.to_dict())

    # -- messages ------------------------------------------------------------------------------------------------
    def message(self, message_id: str) -> dict[str, Any] | None:
        return self._get("messages", message_id)

    def record_message(self, message_id: str, **fields: Any) -> None:
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

    # -- held mail (unproven, from a staff address) ------------------------------------------------------------
    def hold_unverified(self, message_id: str, record: dict[str, Any]) -> None:
        if self._get("unverified", message_id) is None:  # held once; a repeat must not undo a release
            self._put("unverified", message_id, record)

    def unverified_mail(self, message_id: str) -> dict[str, Any] | None:
        return self._get("unverified", message_id)

    def release_unverified(self, message_id: str, *, at: datetime, by: str) -> None:
        rec = self._get("unverified", message_id)
        if rec is not None:
            self._put("unverified", message_id, {**rec, "released_at": at.isoformat(), "released_by": by})

    # -- the outbox ------------------------------------------------------------------------------------------------
    def outbox_add(self, entry: OutboxEntry) -> bool:
        """Queue a rendered mail; False (and nothing written) if its key is already queued or sent."""
        if self._get("outbox", entry.key) is not None:
            return False
        self._put("outbox", entry.key, entry.to_dict())
        return True

    def outbox_entry(self, key: str) -> OutboxEntry | None:
        d = self._get("outbox", key)
        if d is None:
            return None
        return OutboxEntry.from_dict({**d, "key": key, **self._unapplied().get(key, {})})

    def outbox(self, status: Status | str | None = None) -> list[OutboxEntry]:
        """Entries oldest first, optionally only those in ``status``."""
        unapplied = self._unapplied()
        rows = [OutboxEntry.from_dict({**d, "key": d.doc_id, **unapplied.get(d.doc_id, {})})
                for d in self._all("outbox")]
        if status:
            rows = [r for r in rows if r.status == status]
        return sorted(rows, key=lambda r: (r.created_at, r.key))

    def outbox_save(self, entry: OutboxEntry) -> None:
        if self._get("outbox", entry.key) is None:
            raise KeyError(f"no outbox entry {entry.key!r}")
        self._put("outbox", entry.key, entry.to_dict())

    def count_sent_to(self, address: str, kind: str, since: datetime) -> int:
        """How many mails of ``kind`` were queued to ``address`` since ``since`` (the ack rate limit)."""
        since_s = since.isoformat()
        return sum(1 for at in (self._get("recent", f"{kind}:{address}") or {}).get("at", ()) if at >= since_s)

    def remember_sent(self, address: str, kind: str, at: datetime, keep: int = 50) -> None:
        # A small per-address index, so the rate limit does not scan the whole outbox.
        key = f"{kind}:{address}"
        self._put("recent", key, {"at": ((self._get("recent", key) or {}).get("at", []) + [at.isoformat()])[-keep:]})

    # -- the send journal ------------------------------------------------------------------------------------------
    # Recording each send result in the store would rewrite the whole file per mail sent (a mailing of
    # 2,000 mails: 2,000 rewrites, each bigger than the last). Instead each result is appended, fsynced,
    # to a small journal, O(1) per mail, and the journal is folded into the store in one write at the
    # end of the drain, or by whoever opens the store next after a crash. A mail recorded as sent is
    # never sent again.
    def _journal_path(self) -> Path:
        return self.path.with_name(self.path.name + ".journal")

    def journal_progress(self, entry: OutboxEntry) -> None:
        line = (json.dumps({"key": entry.key, "fields": entry.progress()}, separators=(",", ":")) + "\n").encode()
        with self._storage.locked():  # never between another process's read and truncate of the journal
            with open(self._journal_path(), "ab") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())

    def _journal(self) -> list[dict[str, Any]]:
        try:
            data = self._journal_path().read_bytes()
        except FileNotFoundError:
            return []
        out = []
        for line in data.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line torn by a crash: that result was not recorded; at worst one resend
        return out

    def _unapplied(self) -> dict[str, dict[str, Any]]:
        """A read-only store cannot fold the journal in; it shows what the journal says on top."""
        if not self.readonly:
            return {}
        fields: dict[str, dict[str, Any]] = {}
        for rec in self._journal():
            fields.setdefault(rec["key"], {}).update(rec["fields"])
        return fields

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
            for rec in self._journal():
                doc = self._get("outbox", rec["key"])
                if doc is not None:
                    self._put("outbox", rec["key"], {**doc, **rec["fields"]})
                    applied += 1
        return applied

    # -- scheduled mailings -----------------------------------------------------------------------------------------
    def ledger(self, key: str) -> dict[str, Any] | None:
        return self._get("ledger", key)

    def ledger_all(self) -> list[dict[str, Any]]:
        return [dict(d, key=d.doc_id) for d in self._all("ledger")]

    def record_ledger(self, key: str, record: dict[str, Any]) -> None:
        self._put("ledger", key, record)

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

    # -- automatic mail and the delivery state of contacts ------------------------------------------------------
    def record_automatic(self, record: AutomaticRecord) -> None:
        self._put("automatic", record.message_id, record.to_dict())

    def automatic_mail(self) -> list[AutomaticRecord]:
        """Every automatic message taken in, oldest first."""
        return sorted((AutomaticRecord.from_dict(d) for d in self._all("automatic")), key=lambda r: r.received_at)

    def delivery_state(self, address: str) -> DeliveryState | None:
        d = self._get("delivery", address.lower())
        return DeliveryState.from_dict(d) if d is not None else None

    def save_delivery_state(self, state: DeliveryState) -> None:
        self._put("delivery", state.address.lower(), state.to_dict())

    def delivery_states(self) -> dict[str, DeliveryState]:
        return {d.doc_id: DeliveryState.from_dict(d) for d in self._all("delivery")}

    def last_accepted(self, addresses: frozenset[str]) -> dict[str, datetime]:
        """When our server last accepted mail to each of ``addresses`` (sent outbox entries)."""
        out: dict[str, str] = {}
        for d in self._all("outbox"):
            if d.get("status") != Status.SENT or not d.get("sent_at"):
                continue
            for rcpt in d.get("rcpt_to", ()):
                a = rcpt.lower()
                if a in addresses and d["sent_at"] > out.get(a, ""):
                    out[a] = d["sent_at"]
        return {a: datetime.fromisoformat(v) for a, v in out.items()}

    def delivery_settled_at(self) -> datetime | None:
        v = self.meta("delivery_settled_at")
        return datetime.fromisoformat(v) if v else None

    def set_delivery_settled_at(self, at: datetime) -> None:
        self.set_meta("delivery_settled_at", at.isoformat())

    # -- the loop breaker ----------------------------------------------------------------------------------------
    def loop_breaker(self) -> Breaker:
        d = self.meta("loop_breaker") or {}
        at = d.get("tripped_at")
        return Breaker(tripped_at=datetime.fromisoformat(at) if at else None,
                       answers_when_tripped=d.get("answers_when_tripped", 0))

    def set_loop_breaker(self, breaker: Breaker) -> None:
        self.set_meta("loop_breaker", {"tripped_at": breaker.tripped_at.isoformat() if breaker.tripped_at else None,
                                       "answers_when_tripped": breaker.answers_when_tripped})

    def remember_answer(self, address: str, at: datetime) -> None:
        """An automatic answer (acknowledgement, command reply) queued to ``address``."""
        self.remember_sent(address.lower(), "answer", at)
        self.remember_sent("*", "answer", at, keep=2000)

    def count_answers(self, since: datetime, address: str | None = None) -> int:
        """Automatic answers queued since ``since``: to ``address``, or to anyone (None)."""
        return self.count_sent_to(address.lower() if address else "*", "answer", since)


    # -- training registrations (a new table: a store without it simply has none; no migration needed) ----------
    def registrations(self, training_id: str | None = None) -> list[Registration]:
        """Registrations, in request order; ``training_id``: of one course only."""
        docs = self._all("registrations")
        if training_id is not None:
            docs = [d for d in docs if d.get("training_id") == training_id]
        return sorted((Registration.from_dict(d) for d in docs), key=lambda r: (r.requested_at, r.key))

    def registration(self, training_id: str, address: str) -> Registration | None:
        d = self._get("registrations", f"{training_id}|{address.lower()}")
        return Registration.from_dict(d) if d is not None else None

    def save_registration(self, reg: Registration) -> None:
        self._put("registrations", reg.key, reg.to_dict())


def _stamp_schema(tables: dict[str, Any]) -> None:
    # Every write says which layout it is in; a store opened by an older version is migrated first.
    tables.setdefault("meta", {}).setdefault("schema", {"value": SCHEMA})


@contextlib.contextmanager
def open_store(path: str | os.PathLike[str], *, readonly: bool = False) -> Iterator[Store]:
    store = Store(path, readonly=readonly)
    try:
        yield store
    finally:
        store.close()

"""A TinyDB storage that never leaves a half-written file and batches a transaction into one write.

TinyDB's JSONStorage rewrites the file in place, so a crash mid-write loses the
whole database. Here every write goes to a temporary file that is fsynced and
renamed over the old one (then the directory is fsynced), as Mailman's queue does.

TinyDB writes once per table operation; a decision touches several tables
(thread, messages, outbox, cursor). Inside ``transaction()`` those writes stay in
memory and reach the disk together, or not at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from tinydb.storages import Storage


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def still_at(fd: int, path: Path) -> bool:
    """Whether the file open as ``fd`` is the one at ``path`` now (a descriptor kept open across calls:
    another process may have renamed or removed that file since, and put another in its place)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def atomic_write_bytes(path: Path, data: bytes | Iterable[bytes], mode: int | None = None) -> None:
    """``data``: the bytes, or pieces of them written in turn. ``mode``: the file's permissions (mkstemp
    makes it 0600), e.g. 0o644 for a file others read."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, (bytes, bytearray)):
                f.write(data)
            else:
                for piece in data:
                    f.write(piece)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


JSON_PIECE = 500  # documents per piece of a big table when the store is written


def json_pieces(data: dict[str, Any], kept: dict[str, tuple[Any, bytes]] | None = None,
                changed: set[str] | frozenset[str] = frozenset()) -> Iterator[bytes]:
    """``json.dumps(data, ensure_ascii=True, separators=(",", ":"))``, byte for byte, in pieces of at most
    JSON_PIECE documents of a table: written whole, a store of a few megabytes cost two or three times its
    size in memory at every commit (the text, its bytes, the encoder's parts), so a large mailing's
    peak grew with the number of ledger entries it had written so far.

    ``kept``: name -> (table, its JSON) of tables written before; a table that is still that same object
    is not encoded again (the roster, rewritten unchanged at every commit, was half of a mailing
    chunk's write). Tables not in ``changed`` (this transaction's) are kept there for the next write."""

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode()

    def encoded(table: Any) -> Iterator[bytes]:
        if not isinstance(table, dict) or len(table) <= JSON_PIECE:
            yield dumps(table)
            return
        yield b"{"
        items = iter(table.items())
        first = True
        while batch := dict(itertools.islice(items, JSON_PIECE)):
            yield (b"" if first else b",") + dumps(batch)[1:-1]
            first = False
        yield b"}"

    yield b"{"
    for i, (name, table) in enumerate(data.items()):
        yield (b"," if i else b"") + dumps(name) + b":"
        if kept is not None and (hit := kept.get(name)) is not None and hit[0] is table:
            yield hit[1]
        elif kept is not None and name not in changed:
            text = b"".join(encoded(table))
            kept[name] = (table, text)
            yield text
        else:
            yield from encoded(table)
    yield b"}"


class AtomicJSONStorage(Storage):
    """``readonly``: nothing is ever written, not even the lock file; a write raises."""

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False, **_: Any) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._cache: dict[str, Any] | None = None
        self._cache_stamp: tuple[int, int, int] | None = None
        self._txn: dict[str, Any] | None = None
        self.before_save: Callable[[dict[str, Any]], None] | None = None  # last touches to what is written
        self.after_save: Callable[[], None] | None = None  # the write is committed (lock still held)
        self.on_rollback: Callable[[], None] | None = None  # a write transaction ended without committing
        # Read-only opens: what is read, as this version sees it (an older layout migrated in memory).
        self.view: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self._depth = 0
        self._dirty = False
        self._after_commit: list[Callable[[], None]] = []  # of transactions inside the open one
        # The JSON of tables as last written (json_pieces), valid while the table is the same object and
        # nothing said it changes; ``_changed``: the tables this transaction changes.
        self._kept: dict[str, tuple[Any, bytes]] = {}
        self._changed: set[str] = set()

    def changing(self, name: str) -> None:
        """``name``'s documents are about to change in place (every write to a table says so first)."""
        self._kept.pop(name, None)
        self._changed.add(name)

    # -- TinyDB's interface --------------------------------------------------
    def read(self) -> dict[str, Any] | None:
        if self._txn is not None:
            return self._txn
        return self._load()

    def write(self, data: dict[str, Any]) -> None:
        """The whole store, as TinyDB writes it (a migration, drop_table): no table's kept JSON holds."""
        self._kept.clear()
        self._write(data)

    def write_table(self, data: dict[str, Any]) -> None:
        """``write`` after a table's own update, which said beforehand which one changes (``changing``)."""
        self._write(data)

    def _write(self, data: dict[str, Any]) -> None:
        if self._txn is None:
            # A write outside a transaction would be a read-modify-write without the
            # file lock: another process's change could be silently lost.
            self._cache = None  # TinyDB may have changed the cached dicts before calling us
            self._cache_stamp = None
            raise RuntimeError("store writes must happen inside Store.transaction()")
        if self.readonly:
            self._cache = None
            self._cache_stamp = None
            raise RuntimeError(f"the store {self.path} was opened read-only, for a verb that only reads; "
                               f"this write is a bug in that verb")
        self._txn = data
        self._dirty = True

    def close(self) -> None:
        self._cache = None
        self._kept.clear()

    # -- transactions --------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self, after_commit: Callable[[], None] | None = None) -> Iterator[None]:
        """All writes inside reach the disk in one atomic write, or none do.

        Holds an exclusive file lock, so a CLI command and the daemon never
        interleave their read-modify-write cycles. ``after_commit`` runs after a
        successful write while the lock is still held (journal truncation); given to a
        transaction inside another, it runs once the outermost one has committed, and not
        at all if that one rolls back.
        """
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            if after_commit is not None:  # only for a body that finished: one that raised asks for nothing
                self._after_commit.append(after_commit)
            return
        if self.readonly:  # a consistent view for reads; write() refuses anything else
            self._depth, self._txn = 1, dict(self._load() or {})
            try:
                yield
            finally:
                self._txn, self._depth, self._after_commit = None, 0, []
            return
        with self._file_lock():
            self._depth = 1
            # A shallow copy is enough to keep the cache clean for TinyDB's table
            # replacements; TinyDB updates documents in place, though, so after a
            # rollback the cache is dropped and the file read again.
            self._txn = dict(self._load() or {})
            self._dirty = False
            self._changed = set()
            committed = False
            try:
                yield
                if self._dirty:  # a transaction that only read leaves the file alone
                    if self.before_save is not None:
                        self.before_save(self._txn)
                    self._save(self._txn)
                    if self.after_save is not None:
                        self.after_save()
                committed = True
                # Each runs, whatever an earlier one raised (the first error is raised after them all):
                # one of them may be the journal's, whose lines must be let go once they are folded in.
                # They must not write to the store: the transaction is over.
                error: BaseException | None = None
                for then in self._after_commit + ([after_commit] if after_commit is not None else []):
                    try:
                        then()
                    except BaseException as e:
                        error = error or e
                if error is not None:
                    raise error
            finally:
                self._txn = None
                self._depth = 0
                self._after_commit = []
                if not committed:
                    self._cache = None
                    self._cache_stamp = None
                    self._kept.clear()
                    if self.on_rollback is not None:
                        self.on_rollback()

    # -- file handling -------------------------------------------------------
    def locked(self) -> contextlib.AbstractContextManager[None]:
        """The store's exclusive lock without a transaction (for appending to a journal)."""
        if self._depth:
            raise RuntimeError("already inside a transaction, which holds the lock")
        return self._file_lock()

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _load(self) -> dict[str, Any] | None:
        stamp = self._stamp()
        if stamp is None:
            return None
        if stamp != self._cache_stamp or self._cache is None:
            with open(self.path, "rb") as f:
                raw = f.read()
            try:
                loaded = json.loads(raw) if raw.strip() else {}
            except ValueError as e:  # JSONDecodeError, or UnicodeDecodeError for binary junk
                raise RuntimeError(
                    f"the store {self.path} is not valid JSON ({e}); it was written atomically, so this is "
                    f"outside damage: restore it from a backup"
                ) from e
            self._cache = self.view(loaded) if self.view is not None and loaded else loaded
            self._cache_stamp = stamp
            self._kept.clear()
        return self._cache

    def _save(self, data: dict[str, Any]) -> None:
        atomic_write_bytes(self.path, json_pieces(data, self._kept, self._changed))
        self._cache = data
        self._cache_stamp = self._stamp()

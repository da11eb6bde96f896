"""The archive: what the hot store no longer works on (closed threads, their messages, raw hashes, sent
outbox rows), kept beside it in files whose write cost does not grow with their size.

    <store>.archive/log-<gen>.jsonl      the records of the last few commits, appended, one fsync each
    <store>.archive/<kind>/<nn>.jsonl    everything older, hashed into SHARDS files per kind

A record is ``"key"<TAB>{json}`` on one line; a later line for the same key replaces an earlier one.

Commit protocol. The hot store (the TinyDB JSON file) records, in meta ``archive``, the generation of
the log and how many of its bytes are committed. A transaction that archives something appends its
records to the log and fsyncs it *before* the hot store is renamed into place; only that rename
commits them. A crash in between leaves bytes past the committed length, which nobody reads and the
next append cuts off. So the hot store and the archive change together or not at all.

When the log passes LOG_LIMIT bytes it is folded into the shards: each shard file that gets records
is appended to and fsynced, then the hot store's next commit names the next (empty) log generation.
A crash during a fold only means the next fold appends the same records again (a later line wins,
and it is the same line), so folding needs no more care than that. Shard files are append-only; a
reader (another process) sees a prefix of them, which is complete for everything its view of the
hot store refers to.

A look-up reads the in-memory index of the (small) log and then one shard file: its cost depends on
the size of one shard, not on the number of records. Most look-ups are misses (is this new mail's
Message-ID or hash known?): a Bloom filter per kind (10 bits a key, built from the shards the first
time a process asks, then from what is appended to them) answers those without reading a shard.
Nothing else is held in memory but the log's index, which says where each record's line is, not what
it says (the records themselves, up to LOG_LIMIT of them, held a large mailing's every sent row in
memory until the next fold), and the last records read from the log.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zlib
from pathlib import Path
from typing import Any, Iterator

from .atomic import fsync_dir

KINDS = ("threads", "messages", "ghosts", "raw", "outbox", "ledger", "automatic")
SHARDS = 128
LOG_LIMIT = 4 * 1024 * 1024  # bytes of log before a fold


def shard_of(key: str) -> int:
    return zlib.crc32(key.encode("utf-8")) % SHARDS


def _line(key: str, record: dict[str, Any]) -> bytes:
    return (json.dumps(key) + "\t" + json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n").encode()


def _parse(line: bytes) -> tuple[str, dict[str, Any]] | None:
    try:
        k, _, v = line.partition(b"\t")
        return json.loads(k), json.loads(v)
    except ValueError:  # a line torn by a crash in the middle of a fold: that fold is redone
        return None


class Bloom:
    """A set that may answer "maybe" for a key it never got, never "no" for one it got."""

    K = 7

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.bits = max(1024, capacity * 10)
        self.array = bytearray(self.bits // 8 + 1)
        self.count = 0

    def _positions(self, key: bytes) -> list[int]:
        d = hashlib.blake2b(key, digest_size=16).digest()
        a, b = int.from_bytes(d[:8], "little"), int.from_bytes(d[8:], "little") | 1
        return [(a + i * b) % self.bits for i in range(self.K)]

    def add(self, key: bytes) -> None:
        for p in self._positions(key):
            self.array[p >> 3] |= 1 << (p & 7)
        self.count += 1

    def __contains__(self, key: bytes) -> bool:
        return all(self.array[p >> 3] & (1 << (p & 7)) for p in self._positions(key))


class _ShardIndex:
    """What is in one kind's shard files, as far as a Bloom filter can say; kept up to date by reading
    what was appended to a shard since it was last looked at (shards only grow)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.paths = [os.path.join(folder, f"{n:03d}.jsonl") for n in range(SHARDS)]
        self.seen = [0] * SHARDS  # bytes of each shard already in the filter
        self.bloom = Bloom(1 << 16)
        # The generation each shard was last looked at in: shards grow only by a fold, and the fold that
        # counts is the commit that names the next generation (what an unfinished one appended is still
        # in its log too). A look-up in the same generation needs no stat (a third of a miss's cost).
        self.looked = [-1] * SHARDS

    def maybe(self, shard: int, key: str, gen: int) -> bool:
        if self.looked[shard] != gen:
            try:
                size = os.stat(self.paths[shard]).st_size
            except FileNotFoundError:
                size = 0
            if not size:
                self.seen[shard] = 0
            elif size != self.seen[shard]:
                self._scan(shard, size)
            self.looked[shard] = gen
        if not self.seen[shard]:
            return False
        return json.dumps(key).encode() in self.bloom

    def _scan(self, shard: int, size: int) -> None:
        start = self.seen[shard] if size > self.seen[shard] else 0  # shorter: a torn tail was cut, start over
        with open(self.paths[shard], "rb") as f:
            f.seek(start)
            data = f.read(size - start)
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        for line in data[:end].split(b"\n"):
            k, tab, _ = line.partition(b"\t")
            if tab:
                self.bloom.add(k)
        self.seen[shard] = start + end
        if self.bloom.count > self.bloom.capacity:  # fuller than planned: a bigger filter, from scratch
            self.bloom = Bloom(self.bloom.capacity * 4)
            self.seen = [0] * SHARDS
            self.looked = [-1] * SHARDS


RECENT = 1024  # records read from the log kept parsed (planning asks for the same settled keys every tick)


class Archive:
    """``state`` is the hot store's view: {"gen": generation of the log, "log": committed bytes}."""

    def __init__(self, root: Path, *, readonly: bool = False) -> None:
        self.root = root
        self.readonly = readonly
        self._state: dict[str, int] = {"gen": 0, "log": 0}
        self._log: dict[tuple[str, str], tuple[int, int]] = {}  # the committed log: where each record's line is
        self._recent: dict[tuple[int, int], dict[str, Any]] = {}  # (offset, length) -> record, newest last
        self._log_read = 0  # bytes of the log in _log
        self._staged: dict[tuple[str, str], dict[str, Any]] = {}  # this transaction's records
        self._old_logs: list[Path] = []  # folded, removed once the hot store names the next generation
        self._index: dict[str, _ShardIndex] = {}

    # -- the hot store's view -------------------------------------------------------------------------
    def sync(self, state: dict[str, int] | None) -> None:
        """Follow the hot store's committed state (it may have been changed by another process)."""
        state = state or {"gen": 0, "log": 0}
        if state.get("gen", 0) != self._state["gen"] or state.get("log", 0) < self._log_read:
            self._log, self._log_read, self._recent = {}, 0, {}
        self._state = {"gen": int(state.get("gen", 0)), "log": int(state.get("log", 0))}
        if self._log_read < self._state["log"]:
            self._read_log()

    def _log_path(self, gen: int | None = None) -> Path:
        return self.root / f"log-{self._state['gen'] if gen is None else gen:06d}.jsonl"

    def _read_log(self) -> None:
        try:
            with open(self._log_path(), "rb") as f:
                f.seek(self._log_read)
                data = f.read(self._state["log"] - self._log_read)
        except FileNotFoundError:  # folded and removed since our view of the hot store: all in shards
            data = b""
        at = self._log_read
        for line in data.split(b"\n")[:-1]:  # committed bytes end with a newline
            k, tab, _ = line.partition(b"\t")
            with contextlib.suppress(ValueError):
                if tab:
                    kind, _, key = json.loads(k).partition(":")
                    self._log[(kind, key)] = (at, len(line))
            at += len(line) + 1
        self._log_read = self._state["log"]

    def _from_log(self, where: tuple[int, int]) -> dict[str, Any] | None:
        found = self._recent.get(where)
        if found is not None:
            return found
        offset, length = where
        try:
            with open(self._log_path(), "rb") as f:
                f.seek(offset)
                line = f.read(length)
        except FileNotFoundError:  # folded by another process since we looked: the shards have it
            return None
        rec = _parse(line) if len(line) == length else None
        if rec is None:
            return None
        if len(self._recent) >= RECENT:
            del self._recent[next(iter(self._recent))]
        self._recent[where] = rec[1]
        return rec[1]

    def _log_lines(self) -> Iterator[tuple[str, str, bytes]]:
        """(kind, key, the record's JSON) for every committed line of the log, oldest first."""
        try:
            with open(self._log_path(), "rb") as f:
                data = f.read(self._state["log"])
        except FileNotFoundError:
            return
        for line in data.split(b"\n")[:-1]:
            k, tab, v = line.partition(b"\t")
            try:
                kind, _, key = json.loads(k).partition(":") if tab else ("", "", "")
            except ValueError:
                continue
            if tab:
                yield kind, key, v

    # -- reading ----------------------------------------------------------------------------------------
    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        found = self._staged.get((kind, key))
        if found is None and (where := self._log.get((kind, key))) is not None:
            found = self._from_log(where)
        if found is None:
            found = self._from_shard(kind, key)
        return None if found is None or found.get("_gone") else found

    def _from_shard(self, kind: str, key: str) -> dict[str, Any] | None:
        index = self._index.get(kind)
        if index is None:
            index = self._index[kind] = _ShardIndex(self.root / kind)
        shard = shard_of(key)
        if not index.maybe(shard, key, self._state["gen"]):
            return None
        try:
            with open(index.paths[shard], "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        needle = b"\n" + json.dumps(key).encode() + b"\t"
        at = data.rfind(needle)
        if at < 0:
            return None
        end = data.find(b"\n", at + 1)
        if end < 0:
            return None  # torn tail of an unfinished fold
        rec = _parse(data[at + 1:end])
        return rec[1] if rec else None

    def items(self, kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every record of ``kind`` (newest version of each), for the verbs that list everything."""
        found: dict[str, dict[str, Any]] = {}
        folder = self.root / kind
        for path in sorted(folder.glob("*.jsonl")) if folder.exists() else ():
            for line in path.read_bytes().splitlines():
                if line and (rec := _parse(line)) is not None:
                    found[rec[0]] = rec[1]
        for k, key, v in self._log_lines():
            if k == kind:
                with contextlib.suppress(ValueError):
                    found[key] = json.loads(v)
        for (k, key), rec in self._staged.items():
            if k == kind:
                found[key] = rec
        return ((k, v) for k, v in found.items() if not v.get("_gone"))

    def keys(self, kind: str) -> set[str]:
        return {k for k, _ in self.items(kind)}

    # -- writing, inside the hot store's transaction ------------------------------------------------------
    def put(self, kind: str, key: str, record: dict[str, Any]) -> None:
        self._staged[(kind, key)] = record

    def rollback(self, committed: dict[str, int] | None) -> None:
        """The transaction failed (maybe after flush): back to what the hot store committed."""
        self._staged = {}
        self._old_logs = []
        self._state = {"gen": -1, "log": 0}  # forces sync() to re-read the committed log
        self.sync(committed)

    def flush(self) -> dict[str, int] | None:
        """Append this transaction's records to the log (fsynced); the new state for the hot store, or None."""
        if not self._staged:
            return None
        if self.readonly:
            raise RuntimeError("the archive was opened read-only")
        staged, self._staged = self._staged, {}
        if self._state["log"] >= LOG_LIMIT:
            self._fold()
        lines = [_line(f"{kind}:{key}", rec) for (kind, key), rec in staged.items()]
        data = b"".join(lines)
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._log_path()
        new = not path.exists()
        with open(path, "ab") as f:
            f.truncate(self._state["log"])  # bytes of a commit that never happened
            f.seek(self._state["log"])
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if new:
            fsync_dir(self.root)
        at = self._state["log"]
        for (kind, key), line in zip(staged, lines):
            self._log[(kind, key)] = (at, len(line) - 1)
            at += len(line)
        self._state = {"gen": self._state["gen"], "log": self._state["log"] + len(data)}
        self._log_read = self._state["log"]
        return dict(self._state)

    def _fold(self) -> None:
        """Move the committed log into the shards; the next log generation starts empty."""
        by_file: dict[Path, list[bytes]] = {}
        for kind, key, v in self._log_lines():  # every version, in order: in a shard too the later line wins
            by_file.setdefault(self.root / kind / f"{shard_of(key):03d}.jsonl", []).append(
                json.dumps(key).encode() + b"\t" + v + b"\n")
        dirs = set()
        for path, lines in by_file.items():
            if not path.parent.exists():
                path.parent.mkdir(parents=True)
                dirs.add(self.root)
            new = not path.exists()
            with open(path, "ab+") as f:
                size = f.seek(0, os.SEEK_END)
                if size == 0:
                    f.write(b"\n")  # every record line follows a newline: one search pattern for all
                else:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":  # torn by a crash in an earlier fold: that fold is being redone
                        f.seek(0)
                        keep = f.read().rfind(b"\n") + 1
                        f.truncate(keep)
                f.seek(0, os.SEEK_END)
                f.write(b"".join(lines))
                f.flush()
                os.fsync(f.fileno())
            if new:
                dirs.add(path.parent)
        for d in dirs:
            fsync_dir(d)
        self._old_logs.append(self._log_path())
        self._state = {"gen": self._state["gen"] + 1, "log": 0}
        self._log, self._log_read, self._recent = {}, 0, {}

    def after_commit(self) -> None:
        """The hot store names the new generation: the folded logs can go."""
        for path in self._old_logs:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self._old_logs = []

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file()) if self.root.exists() else 0

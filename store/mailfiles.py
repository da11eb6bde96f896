"""Rendered outgoing mail, outside the JSON: the hot store keeps only where each mail's bytes are.

    <store>.mail/<YYYY-MM-DD>.mail    the mail queued that day, one after the other

A transaction that queues mail appends its bytes to the day's file and fsyncs it *before* the hot
store is renamed into place, so a queued mail's bytes are on disk before anything refers to them.
Appends happen under the store's write lock, so the offsets known when a mail is queued are where
its bytes land. A crash between the append and the hot store's rename leaves bytes nobody refers to,
and the next append goes after them. A mail is found again by its reference
``<day>.mail:<offset>:<length>``. One fsync per commit, whatever it queued: a mailing of 2,000
invitations costs a handful, not 2,000 (and no directory fsync but the day's first).

``prune(before, keep)`` deletes the files of days before ``before`` that no unfinished (pending or
failed) mail refers to: the outbox row of a pruned mail stays, with everything `outbox list` shows.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from .atomic import fsync_dir, still_at


class MailFiles:
    def __init__(self, root: Path, *, readonly: bool = False) -> None:
        self.root = root
        self.readonly = readonly
        self._staged: dict[str, list[bytes]] = {}  # "<day>.mail" -> bodies, in order
        self._ends: dict[str, int] = {}  # where the next staged body of a file will start
        # The day file last read from, kept open: the sending thread reads a mailing's mail one after the
        # other from the same file, and opening it for each one cost as much as quoting its addresses.
        self._reader: int | None = None
        self._reader_lock = threading.Lock()

    def stage(self, day: str, data: bytes) -> str:
        """Where ``data`` will be once this transaction commits (call under the store's write lock)."""
        name = f"{day}.mail"
        if name not in self._ends:
            try:
                self._ends[name] = (self.root / name).stat().st_size
            except FileNotFoundError:
                self._ends[name] = 0
        offset = self._ends[name]
        self._staged.setdefault(name, []).append(data)
        self._ends[name] = offset + len(data)
        return f"{name}:{offset}:{len(data)}"

    def _staged_bytes(self, ref: str) -> bytes | None:
        name, offset, length = _split(ref)
        chunks = self._staged.get(name)
        if not chunks:
            return None
        start = self._ends[name] - sum(map(len, chunks))
        if offset < start:
            return None
        return b"".join(chunks)[offset - start:offset - start + length]

    def flush(self) -> None:
        if not self._staged:
            return
        if self.readonly:
            raise RuntimeError("the mail folder was opened read-only")
        staged, ends = self._staged, self._ends
        self._staged, self._ends = {}, {}
        new_dir = not self.root.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        if new_dir:
            fsync_dir(self.root.parent)
        for name, chunks in staged.items():
            data = b"".join(chunks)
            path = self.root / name
            new = not path.exists()
            with open(path, "ab") as f:
                f.truncate(ends[name] - len(data))  # bytes of a commit that never happened, if any
                f.seek(ends[name] - len(data))
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if new:
                fsync_dir(self.root)

    def rollback(self) -> None:
        self._staged, self._ends = {}, {}

    def read(self, ref: str) -> bytes | None:
        """The mail's bytes (this transaction's staged ones too), or None when they were pruned."""
        staged = self._staged_bytes(ref) if self._staged else None
        return staged if staged is not None else self.read_committed(ref)

    def read_committed(self, ref: str) -> bytes | None:
        """Committed bytes only. Safe from any thread: committed bytes never change, appends go after them."""
        name, offset, length = _split(ref)
        path = self.root / name
        with self._reader_lock:
            # Another file than the one read last, or that one pruned by another process (and perhaps made
            # again by a later commit): open the file at that name.
            if self._reader is None or not still_at(self._reader, path):
                self._close_reader()
                try:
                    self._reader = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    return None
            data = os.pread(self._reader, length, offset)
        return data if len(data) == length else None

    def _close_reader(self) -> None:
        if self._reader is not None:
            os.close(self._reader)
            self._reader = None

    def close(self) -> None:
        with self._reader_lock:
            self._close_reader()

    def prune(self, before_day: str, keep: set[str]) -> int:
        """Delete the files of days before ``before_day`` (YYYY-MM-DD) except those named in ``keep``
        (references of unfinished mail). Returns how many files went."""
        if self.readonly or not self.root.exists():
            return 0
        keep_files = {_split(ref)[0] for ref in keep}
        self.close()  # a pruned file is not kept alive by our reader
        gone = 0
        for path in sorted(self.root.glob("*.mail")):
            if path.stem < before_day and path.name not in keep_files:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                gone += 1
        return gone

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob("*.mail")) if self.root.exists() else 0


def _split(ref: str) -> tuple[str, int, int]:
    name, offset, length = ref.rsplit(":", 2)
    return name, int(offset), int(length)

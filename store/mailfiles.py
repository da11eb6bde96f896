"""Rendered outgoing mail, outside the JSON: the hot store keeps only where each mail's bytes are.

    <store>.mail/<YYYY-MM-DD>/<commit>.mail    the mail queued by one commit, one after the other

Every transaction that queues mail writes one such file (fsynced, with its folder) *before* the hot
store is renamed into place, so a queued mail's bytes are on disk before anything refers to them: a
crash in between only leaves a file nobody refers to. A mail is found again by its reference
``<day>/<file>:<offset>:<length>``. One file per commit, not one per mail: a mailing of 2,000
invitations costs a handful of fsyncs, not 2,000.

``prune(before, keep)`` deletes the files of days before ``before`` that no unfinished (pending or
failed) mail refers to: the outbox row of a pruned mail stays, with everything `outbox list` shows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

from .atomic import fsync_dir


class MailFiles:
    def __init__(self, root: Path, *, readonly: bool = False) -> None:
        self.root = root
        self.readonly = readonly
        self._staged: dict[str, list[bytes]] = {}  # "<day>/<file>" -> bodies, in order
        self._sizes: dict[str, int] = {}
        self._name = ""

    def stage(self, day: str, data: bytes) -> str:
        """Where ``data`` will be once this transaction commits."""
        if not self._name:
            self._name = f"{time.time_ns():x}-{os.getpid()}.mail"
        rel = f"{day}/{self._name}"
        offset = self._sizes.get(rel, 0)
        self._staged.setdefault(rel, []).append(data)
        self._sizes[rel] = offset + len(data)
        return f"{rel}:{offset}:{len(data)}"

    def staged(self, ref: str) -> bytes | None:
        rel, offset, length = _split(ref)
        chunks = self._staged.get(rel)
        if chunks is None:
            return None
        return b"".join(chunks)[offset:offset + length]

    def flush(self) -> None:
        if not self._staged:
            return
        if self.readonly:
            raise RuntimeError("the mail folder was opened read-only")
        staged, self._staged, self._sizes, self._name = self._staged, {}, {}, ""
        for rel, chunks in staged.items():
            path = self.root / rel
            new_day = not path.parent.exists()
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as f:
                f.write(b"".join(chunks))
                f.flush()
                os.fsync(f.fileno())
            fsync_dir(path.parent)
            if new_day:
                fsync_dir(self.root)

    def rollback(self) -> None:
        self._staged, self._sizes, self._name = {}, {}, ""

    def read(self, ref: str) -> bytes | None:
        """The mail's bytes, or None when they were pruned. Safe from any thread: files never change."""
        staged = self.staged(ref)
        if staged is not None:
            return staged
        rel, offset, length = _split(ref)
        try:
            with open(self.root / rel, "rb") as f:
                f.seek(offset)
                data = f.read(length)
        except FileNotFoundError:
            return None
        return data if len(data) == length else None

    def prune(self, before_day: str, keep: set[str]) -> int:
        """Delete the files of days before ``before_day`` (YYYY-MM-DD) except those named in ``keep``
        (references of unfinished mail). Returns how many files went."""
        if self.readonly or not self.root.exists():
            return 0
        keep_files = {_split(ref)[0] for ref in keep}
        gone = 0
        for day in sorted(p for p in self.root.iterdir() if p.is_dir() and p.name < before_day):
            files = list(day.iterdir())
            kept = [f for f in files if f"{day.name}/{f.name}" in keep_files]
            if not kept:
                shutil.rmtree(day)
                gone += len(files)
                continue
            for f in files:
                if f not in kept:
                    with contextlib.suppress(FileNotFoundError):
                        f.unlink()
                    gone += 1
        return gone

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file()) if self.root.exists() else 0


def _split(ref: str) -> tuple[str, int, int]:
    rel, offset, length = ref.rsplit(":", 2)
    return rel, int(offset), int(length)

"""The send journal: send results, appended and fsynced as the server answers, folded into the hot
store later in one write.

Recording each result in the store itself would rewrite the store per mail sent. A result is one
line here; a group of results (all the answers that arrived while the last fsync ran) costs one
write and one fsync. The journal has its own lock file, so the sending thread never waits for the
store's lock (a transaction of the main thread) and the main thread never for a send.

Folding: ``take()`` renames the journal to ``.folding`` (under the journal's lock, an instant),
the store folds those lines into the outbox in one transaction and ``done()`` removes the file
after that commit. A crash before ``done()`` only means folding the same lines again, which sets
the same fields again. A line torn by a crash was not recorded: at worst that one mail is sent
again, with the same Message-ID.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any, Iterator


class SendJournal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.folding = path.with_name(path.name + ".folding")
        self._lock = path.with_name(path.name + ".lock")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self._lock, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def append(self, records: list[dict[str, Any]]) -> None:
        """Durably record ``records`` (one write, one fsync)."""
        if not records:
            return
        data = b"".join((json.dumps(r, separators=(",", ":")) + "\n").encode() for r in records)
        with self._locked():
            with open(self.path, "ab") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())

    @staticmethod
    def _read(path: Path) -> list[dict[str, Any]]:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        out = []
        for line in data.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # torn by a crash: that result was not recorded; at worst one resend
        return out

    def pending(self) -> list[dict[str, Any]]:
        """Every line not yet folded in, oldest first (for read-only views).

        Under the lock, so a line being appended by the sending thread is read whole or not at all
        (read without it, that line looks torn and its mail unsent)."""
        try:
            with self._locked():
                return self._read(self.folding) + self._read(self.path)
        except PermissionError:  # a reader who may not create the lock file: a torn last line is skipped
            return self._read(self.folding) + self._read(self.path)

    def take(self) -> list[dict[str, Any]]:
        """The lines to fold now: an unfinished earlier fold's, else the journal's (moved aside)."""
        with self._locked():
            if not self.folding.exists():
                try:
                    if self.path.stat().st_size == 0:
                        return []
                except FileNotFoundError:
                    return []
                os.rename(self.path, self.folding)
                open(self.path, "ab").close()  # appenders find an (empty) journal as before
        return self._read(self.folding)

    def done(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.folding.unlink()

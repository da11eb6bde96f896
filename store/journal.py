"""The send journal: send results, appended and fsynced as the server answers, folded into the hot
store later in one write.

Recording each result in the store itself would rewrite the store per mail sent. A result is one
line here; a group of results (all the answers that arrived while the last fsync ran) costs one
write and one fsync. The journal has its own lock file, so the sending thread never waits for the
store's lock (a transaction of the main thread) and the main thread never for a send.

Folding: ``take()`` renames the journal to ``.folding`` (under the journal's lock, an instant),
the store folds those lines into the outbox in one transaction and ``done()`` removes the file
after that commit. A crash (or a rolled-back transaction) before ``done()`` only means folding the
same lines again, which sets the same fields again; the next ``take()`` adds what was journaled since
to that ``.folding`` file, so one fold always covers everything journaled when it began. A line torn
by a crash was not recorded: at worst that one mail is sent again, with the same Message-ID.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from pathlib import Path
from typing import Any, Iterator

from .atomic import still_at


class SendJournal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.folding = path.with_name(path.name + ".folding")
        self._lock = path.with_name(path.name + ".lock")
        # The lock file and the journal stay open between appends (a mailing appends a thousand groups:
        # opening both files for each was a third of the journal's cost). flock excludes other
        # processes; the thread lock, this process's other threads (they share the open file).
        self._thread_lock = threading.Lock()
        self._lock_fd: int | None = None
        self._fd: int | None = None  # the journal as last opened: renamed away by take(), reopened then

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock:
            if self._lock_fd is None:
                self._lock_fd = os.open(self._lock, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _journal_fd(self) -> int:
        """The journal's descriptor (under the lock): reopened when the file at ``path`` is another one
        (a fold, here or in another process, renamed it to ``.folding``)."""
        if self._fd is not None:
            if still_at(self._fd, self.path):
                return self._fd
            os.close(self._fd)
            self._fd = None
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666)
        return self._fd

    def close(self) -> None:
        with self._thread_lock:
            for fd in (self._fd, self._lock_fd):
                if fd is not None:
                    os.close(fd)
            self._fd = self._lock_fd = None

    @contextlib.contextmanager
    def _shared(self) -> Iterator[None]:
        """For readers: never creates the lock file (a read-only view changes nothing on disk); without
        one, no appender has run yet, or the folder cannot be locked, and a torn last line is skipped."""
        try:
            lock = open(self._lock, "rb")
        except OSError:
            yield
            return
        with lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_SH)
            except OSError:
                yield
                return
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
            fd = self._journal_fd()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)

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
        with self._shared():
            return self._read(self.folding) + self._read(self.path)

    def take(self) -> list[dict[str, Any]]:
        """The lines to fold now: everything journaled so far (an unfinished earlier fold's lines first),
        moved aside to ``.folding``."""
        with self._locked():
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                size = 0
            if size and not self.folding.exists():
                os.rename(self.path, self.folding)
                open(self.path, "ab").close()  # appenders find an (empty) journal as before
            elif size:
                # An earlier fold did not finish (a crash, a rolled-back transaction): what came since goes
                # after its lines, durably, before the journal is emptied. A crash in between only means
                # those lines are in both files, and folded twice (the same fields again).
                with open(self.path, "rb") as f:
                    data = f.read()
                with open(self.folding, "ab+") as f:
                    end = f.seek(0, os.SEEK_END)
                    if end:
                        f.seek(end - 1)
                        if f.read(1) != b"\n":
                            data = b"\n" + data  # a torn last line stays a line of its own
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                with open(self.path, "r+b") as f:
                    f.truncate(0)
                    f.flush()
                    os.fsync(f.fileno())
        return self._read(self.folding)

    def done(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.folding.unlink()

"""Rendering a mailing ahead of storing it: in this process, or, for a large mailing, in a forked one.

Why a second process: the sending thread and the rendering share one interpreter lock. While the main
thread renders (pure Python, about a millisecond a mail), the sending thread gets the lock back only
every switch interval (5 ms) after each socket read, journal write or fsync, so a mailing's first
mails trickled out at 20 to 60 a second until the last one was rendered, and only then at the
server's pace. Rendered in a child, the mail arrives over a pipe; the main thread waits on the pipe
(holding no lock) and the sending thread goes at the server's pace from the first chunk on.

The child is forked at the tick, renders the given mailing in order and writes each result to the
pipe, then exits. It writes nothing but the pipe (and, on a bug of its own, the daemon's stderr), holds
no state and dies with the daemon: killing it (or the daemon) loses nothing, since nothing is stored or
sent until the main process has committed the chunk. The pipe holds about a hundred mails: a child
that is ahead waits, so memory stays flat.

``render(due, now) -> (OutgoingMail, message_id, bytes)`` is the runner's own; a mail it cannot
render comes back as ``RenderFailed`` and is reported by the runner as before.
"""

from __future__ import annotations

import fcntl
import logging
import os
import pickle
import select
import signal
import struct
import traceback
from datetime import datetime
from typing import Any, Callable, Iterator, Sequence

log = logging.getLogger("partnerdesk.mailings")

Render = Callable[[Any, datetime], Any]

_PIPE_BYTES = 1 << 20  # ~100 rendered invitations ahead (the default pipe holds 64 KiB, six of them); the
# largest pipe an unprivileged process may ask for on Linux by default (/proc/sys/fs/pipe-max-size)
_PR_SET_PDEATHSIG = 1


class RenderFailed(Exception):
    """A mail the child could not render: the exception's type and words, and where it happened."""

    def __init__(self, kind: str, message: str, trace: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.trace = trace

    def __reduce__(self) -> tuple[Any, tuple[str, str, str]]:
        return RenderFailed, (self.kind, str(self), self.trace)


def in_process(render: Render, items: Sequence[Any], now: datetime) -> Iterator[tuple[Any, Any]]:
    """Each item with its rendering, or the exception that stopped it."""
    for d in items:
        try:
            yield d, render(d, now)
        except Exception as e:  # our bug (a template, say): the runner reports it and queues the rest
            yield d, e


class ForkedRenderer:
    """``in_process`` in a forked child for mailings of at least ``min_mails`` mails (smaller ones are
    rendered here: forking costs more than they do).

    A child that says nothing for ``stall`` seconds is killed and the rest is rendered here. It can
    happen: the child is forked from a process whose sending thread may hold a lock inside a C library
    at that instant (OpenSSL's, during a TLS exchange), and the child's first HMAC would then wait
    for it for ever. The mailing goes on either way; it only loses the head start. The child dies with
    the daemon (PR_SET_PDEATHSIG): a daemon killed while its child hangs leaves no process holding a copy
    of the daemon lock."""

    def __init__(self, min_mails: int = 100, stall: float = 10.0) -> None:
        self.min_mails = min_mails
        self.stall = stall

    def __call__(self, render: Render, items: Sequence[Any], now: datetime) -> Iterator[tuple[Any, Any]]:
        if len(items) < self.min_mails or not hasattr(os, "fork"):
            return in_process(render, items, now)
        return self._forked(render, items, now)

    def _forked(self, render: Render, items: Sequence[Any], now: datetime) -> Iterator[tuple[Any, Any]]:
        r, w = os.pipe()
        if hasattr(fcntl, "F_SETPIPE_SZ"):
            try:
                fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
            except OSError:  # a lower system limit: a smaller pipe only means less rendered ahead
                pass
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError as e:  # no memory or no process left for a child: render here, as small mailings are
            os.close(r)
            os.close(w)
            log.warning("could not start a rendering process (%s); rendering the mailing here", e)
            yield from in_process(render, items, now)
            return
        if pid == 0:  # the child: render, write, exit; never return into the daemon's code
            _child(render, items, now, r, w, parent)
        os.close(w)
        done = 0
        reader = _Frames(r, self.stall)
        try:
            for d in items:
                got = reader.next()
                if got is _STALLED or got is _ENDED:
                    log.warning("the rendering process %s; rendering the rest of the mailing here",
                                f"made no progress for {self.stall:.0f} s" if got is _STALLED else "ended early")
                    break
                done += 1
                yield d, got
            else:
                return
            _end(pid)
            pid = 0
            for d, got in in_process(render, items[done:], now):
                done += 1
                yield d, got
        finally:
            os.close(r)
            if pid:
                _end(pid, kill=done < len(items))  # stopped early (an error, a shutdown): not needed


def _child(render: Render, items: Sequence[Any], now: datetime, r: int, w: int, parent: int) -> None:
    code = 0
    try:
        # It holds copies of the daemon's descriptors (the daemon lock's among them): it must not outlive
        # the daemon. (They are not closed here: an object of the parent's collected in the child would
        # close whatever file had been given that number since.)
        _die_with(parent)
        os.close(r)
        # The daemon's handlers are not the child's. A stop (SIGTERM to the whole group, Ctrl-C) is the
        # parent's to handle: it finishes the tick with what the child renders, and the child ends with it.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with os.fdopen(w, "wb", buffering=1 << 16) as out:
            for _, got in in_process(render, items, now):
                if isinstance(got, Exception):
                    got = RenderFailed(type(got).__name__, str(got), "".join(traceback.format_exception(got)))
                try:
                    frame = pickle.dumps(got, protocol=pickle.HIGHEST_PROTOCOL)
                except Exception as e:  # a rendering that cannot travel: that mail is reported, the rest go on
                    frame = pickle.dumps(RenderFailed(type(e).__name__, f"the rendered mail could not be passed "
                                                      f"back: {e}", traceback.format_exc()))
                out.write(struct.pack(">I", len(frame)) + frame)
                out.flush()
    except BrokenPipeError:  # the parent stopped reading (it stopped early or went away)
        code = 1
    except BaseException:  # our bug: said on the daemon's stderr, the parent renders the rest itself
        code = 2
        try:
            os.write(2, ("partnerdesk rendering process failed:\n" + traceback.format_exc()).encode(errors="replace"))
        except OSError:
            pass
    finally:
        os._exit(code)


def _die_with(parent: int) -> None:
    """Linux: SIGKILL when the parent dies (a child waiting on a lock would otherwise never notice)."""
    import ctypes  # here: only a child needs it, every start of the program would pay for it

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: a stalled child is still killed by the parent's watch
        pass
    if os.getppid() != parent:  # the parent died before the call above took effect
        os._exit(1)


def _end(pid: int, *, kill: bool = True) -> None:
    if kill:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, -signal.SIGKILL):
        log.warning("the rendering process ended with status %s", code)


_STALLED, _ENDED = object(), object()


class _Frames:
    """Length-prefixed pickles from a pipe, waiting at most ``stall`` seconds for each read."""

    def __init__(self, fd: int, stall: float) -> None:
        self.fd = fd
        self.stall = stall
        self.buf = bytearray()

    def _fill(self, n: int) -> object | None:
        """None once ``n`` bytes are buffered, else why not (_STALLED, _ENDED)."""
        while len(self.buf) < n:
            if not select.select([self.fd], [], [], self.stall)[0]:
                return _STALLED
            data = os.read(self.fd, 1 << 20)
            if not data:
                return _ENDED
            self.buf += data
        return None

    def next(self) -> Any:
        """The next result, or _STALLED / _ENDED."""
        if (why := self._fill(4)) is not None:
            return why
        (n,) = struct.unpack(">I", self.buf[:4])
        if (why := self._fill(4 + n)) is not None:
            return why
        frame = bytes(self.buf[4:4 + n])
        del self.buf[:4 + n]
        return pickle.loads(frame)

"""A local spool directory as inbox and outbox: the embedded default, no mail account needed.

    <root>/inbox/*.eml        mail to take in (received: when partnerdesk first saw the file, on the
                              rules' clock in whole seconds, so with --now too; kept in the store, so a restart
                              does not change it. Not the file's mtime: a file copied in keeps an
                              old mtime, and `--now` would make mail "arrive" days late.)
    <root>/inbox/done/        taken in
    <root>/inbox/quarantine/  could not be taken in (see `threads`/the store for why)
    <root>/inbox/automatic/   automatic mail (bounces, out-of-office...), recorded, never work
    <root>/outbox/*.eml       what partnerdesk "sent"
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from store.atomic import atomic_write_bytes
from service.ports import RawMail, SendResult, Store
from workflows.outbox import OutboxEntry


class SpoolSource:
    def __init__(self, root: Path, clock: Callable[[], datetime] | None = None) -> None:
        self.inbox = Path(root) / "inbox"
        self.expected: int | None = None
        self.clock = clock or (lambda: datetime.now(timezone.utc))  # run.py passes the rules' clock
        for d in (self.inbox, self.inbox / "done", self.inbox / "quarantine", self.inbox / "automatic"):
            d.mkdir(parents=True, exist_ok=True)

    def fetch_new(self, store: Store | None = None) -> Iterator[RawMail]:
        files = [(path, path.read_bytes()) for path in sorted(self.inbox.glob("*.eml"))]
        self.expected = len(files)  # for a progress bar
        if not files:
            return
        # Whole seconds, as IMAP's INTERNALDATE: two runs at the same --now see their files at the same time.
        now = self.clock().replace(microsecond=0)
        seen: dict[str, datetime] = {}
        if store is not None:
            # Durable before anything is taken in: a crash or restart keeps each file's receipt time.
            with store.transaction():
                for path, data in files:
                    key = _seen_key(path.name, data)
                    seen[key] = store.first_seen(key, now)
        for path, data in files:
            yield RawMail(source_key=f"spool:{path.name}", data=data,
                          received_at=seen.get(_seen_key(path.name, data), now))

    def _move(self, raw: RawMail, where: str) -> None:
        name = raw.source_key.removeprefix("spool:")
        src = self.inbox / name
        if src.exists():
            os.replace(src, self.inbox / where / name)

    def mark_done(self, raw: RawMail) -> None:
        self._move(raw, "done")

    def file_automatic(self, raw: RawMail) -> None:
        self._move(raw, "automatic")

    def quarantine(self, raw: RawMail, reason: str) -> None:
        self._move(raw, "quarantine")


def _seen_key(name: str, data: bytes) -> str:
    # Name and content: another file dropped later under a reused name is a new mail.
    return f"spool:{name}:{hashlib.sha256(data).hexdigest()[:32]}"


class SpoolSender:
    """Writes each mail as an .eml file; the file name keeps them in sending order."""

    def __init__(self, root: Path) -> None:
        self.outbox = Path(root) / "outbox"
        self.outbox.mkdir(parents=True, exist_ok=True)

    def send(self, entries: list[OutboxEntry],
             on_result: Callable[[SendResult], None] | None = None) -> list[SendResult]:
        results = []
        n = len(list(self.outbox.glob("*.eml")))
        for e in entries:
            n += 1
            safe = re.sub(r"[^A-Za-z0-9-]+", "-", f"{e.thread_id or 'mail'}-{e.kind}")
            path = self.outbox / f"{n:04d}-{safe}.eml"
            envelope = f"X-Envelope-From: <{e.mail_from}>\r\nX-Envelope-To: {', '.join(e.rcpt_to)}\r\n"
            atomic_write_bytes(path, envelope.encode() + e.raw.encode())
            results.append(SendResult(key=e.key, status="sent", detail=str(path)))
            if on_result is not None:
                on_result(results[-1])
        return results

"""The seams between the rules and the outside world.

Adapters in ``mailbox/`` and ``store/`` implement these; ``run.py`` picks which.
Unit tests pass fakes. Only plain data crosses a port.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, Protocol

from .model import FROZEN


@dataclass(**FROZEN)
class RawMail:
    """One message as a source holds it, before parsing."""

    source_key: str  # unique per copy: "imap:INBOX:1700000000:42" or "spool:0001.eml"
    data: bytes
    received_at: datetime  # the server's receipt time (IMAP INTERNALDATE), aware
    folder: str | None = None
    uidvalidity: int | None = None
    uid: int | None = None


@dataclass(**FROZEN)
class SendResult:
    key: str
    status: str  # "sent" | "transient" | "permanent"
    detail: str = ""
    # Recipients the server refused for now (4xx, e.g. 452 over quota) while it took the mail
    # for the others: the outbox queues a copy for just these.
    retry_rcpts: tuple[str, ...] = ()


class MailSource(Protocol):
    def fetch_new(self, store: Any) -> Iterable[RawMail]: ...
    def mark_done(self, raw: RawMail) -> None: ...
    def quarantine(self, raw: RawMail, reason: str) -> None: ...


class MailSender(Protocol):
    def send(self, entries: list[dict[str, Any]],
             on_result: Callable[[SendResult], None] | None = None) -> list[SendResult]:
        """Send rendered outbox entries (keys: key, mail_from, rcpt_to, raw). Never raises for one bad mail.

        ``on_result`` is called with each result as soon as it is known, so the caller can
        record it before the next mail goes out (a crash mid-batch then resends nothing).
        """
        ...


class Composer(Protocol):
    def render(self, out: Any, *, message_id: str, date: datetime) -> bytes: ...

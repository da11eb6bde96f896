"""The outbox entry: one rendered mail, its envelope and its Message-ID, as every workflow queues it.

Intake, the promise tick and the mailings all put mail in the outbox the same way; the
few things that differ between them (envelope sender, thread, extra fields) are arguments.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from . import msgids
from .model import OutgoingMail


def render(composer: Any, secret: bytes, domain: str, out: OutgoingMail, *, thread_number: int,
           now: datetime) -> tuple[str, bytes]:
    """Our Message-ID for ``out`` (deterministic in its key) and the rendered bytes."""
    mid = msgids.make_message_id(secret, thread_number=thread_number, kind=out.kind, key=out.key, domain=domain)
    return mid, composer.render(out, message_id=mid, date=now)


def entry(out: OutgoingMail, *, message_id: str, raw: bytes, now: datetime, mail_from: str,
          thread_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """The outbox record for a rendered mail; ``Store.outbox_add`` refuses a key it already holds."""
    return {
        "key": out.key,
        "kind": out.kind,
        "thread_id": thread_id,
        "message_id": message_id,
        "mail_from": mail_from,
        "rcpt_to": list(out.to),
        "subject": out.subject,
        "raw": raw.decode("ascii"),
        "created_at": now.isoformat(),
        **extra,
    }

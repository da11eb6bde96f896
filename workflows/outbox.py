"""The outbox entry: one rendered mail, its envelope, its Message-ID and where it stands.

An entry is queued ``pending`` in the same store write as the decision that caused it, and then
moves only through the pure transitions below, which hold the retry policy too: a transient failure
is retried with backoff (1 minute growing to hourly) for three days after the first failure, then
the mail is ``failed``; ``outbox retry`` puts a failed mail back. Nothing here sends or stores.

A mail *held* because our own OAuth2 login lapsed (the sender could not log in, so no server ever
saw the mail) is not failing: the three days do not run while it is held. The window is for a
server that keeps refusing or is away; a login that lapsed over a long weekend is the operator's
to renew (every cycle says so, naming the command), and the mail must go out once they have,
not be marked failed for a problem it never had. ``held_since`` marks the pause; the next real
try moves the first failure forward by the time it was held, so the time spent failing still
counts in full. Held mail is due at every drain: the sender knows the login lapsed without
connecting anywhere, and the first drain after `auth login` sends it.

| from     | how                                          | to        |
|----------|----------------------------------------------|-----------|
| pending  | the server took it                           | sent      |
| pending  | transient failure, within RETRY_FOR          | pending (next_attempt later) |
| pending  | held: our OAuth2 login lapsed (not a try)    | pending (window paused)      |
| pending  | permanent failure, or transient after that   | failed    |
| pending  | no longer wanted at send time                | cancelled |
| failed   | `outbox retry`                               | pending (a fresh retry window) |
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from . import msgids
from .mailings.due import MAILINGS
from .model import FROZEN, OutgoingMail

RETRY_FOR = timedelta(days=3)  # an outage overnight or over a weekend loses nothing
REPORT_AFTER = timedelta(hours=1)  # from then on every cycle says that mail is stuck
BACKOFF = (60, 300, 900, 1800, 3600)  # seconds between tries; the last one repeats
STUCK_MARK = "still not sent"  # marks the one stuck-mail line of a cycle
HELD = "held"  # a send result: not tried, our login lapsed
HELD_MARK = "held since"  # marks the one held-mail line of a cycle


class Status(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"


def _dt(v: Any) -> datetime | None:
    # 0.1.0 wrote "" for "no next attempt" and False for "failure not reported"
    return datetime.fromisoformat(v) if isinstance(v, str) and v else None


def _iso(v: datetime | None) -> str | None:
    return v.isoformat() if v else None


@dataclass(**FROZEN)
class OutboxEntry:
    key: str  # idempotency key: deciding the same mail twice yields the same key
    kind: str  # "ack", "relay", "notify", "call-invite", ...
    message_id: str
    mail_from: str  # envelope sender; "" is the null sender (automatic replies: nothing bounces back)
    rcpt_to: tuple[str, ...]
    raw: str  # the rendered message, 7-bit clean ("" when the store keeps it apart: see ``body``)
    created_at: datetime
    subject: str = ""
    thread_id: str | None = None
    partner_id: str | None = None  # scheduled mailings: whose contact it goes to
    retry_of: str | None = None  # a copy for the recipients a server refused for now
    status: Status = Status.PENDING
    attempts: int = 0
    next_attempt: datetime | None = None  # None: as soon as possible
    first_failed_at: datetime | None = None
    detail: str = ""  # the last server answer, or why it was cancelled
    sent_at: datetime | None = None
    finished_at: datetime | None = None  # failed or cancelled at
    failure_reported: datetime | None = None  # a permanent failure was recorded against the contact
    held_since: datetime | None = None  # waiting for our OAuth2 login to be renewed: the retry window pauses
    body: str = ""  # where the store keeps the rendered bytes (opaque to everyone but the store)

    # -- the transitions ----------------------------------------------------------------------------
    def due(self, now: datetime) -> bool:
        return self.status is Status.PENDING and (self.next_attempt is None or self.next_attempt <= now)

    def after_send(self, result: str, detail: str, now: datetime) -> OutboxEntry:
        """The entry after one try: ``result`` is "sent", "transient", "permanent" or "held"."""
        if result == HELD:  # not a try: no attempt counted, the window paused from the first hold
            return replace(self, detail=detail, held_since=self.held_since or now, next_attempt=None)
        attempts = self.attempts + 1
        first_failed = self.first_failed_at
        if self.held_since is not None and first_failed is not None:
            first_failed += max(now - self.held_since, timedelta(0))  # the time held does not count
        e = replace(self, held_since=None, first_failed_at=first_failed)
        if result == "sent":
            return replace(e, status=Status.SENT, sent_at=now, attempts=attempts, detail=detail)
        first_failed = first_failed or now
        if result == "transient" and now - first_failed < RETRY_FOR:
            wait = BACKOFF[min(attempts - 1, len(BACKOFF) - 1)]
            return replace(e, attempts=attempts, detail=detail, first_failed_at=first_failed,
                           next_attempt=now + timedelta(seconds=wait))
        return replace(e, status=Status.FAILED, attempts=attempts, detail=detail, finished_at=now)

    def copy_for(self, rcpts: tuple[str, ...], now: datetime) -> OutboxEntry:
        """The same message (same Message-ID) for the recipients a server refused for now (452 over quota)."""
        return replace(self, key=f"{self.key}#retry{self.attempts + 1}", rcpt_to=tuple(rcpts), created_at=now,
                       retry_of=self.key, status=Status.PENDING, attempts=0, detail="", sent_at=None,
                       finished_at=None, failure_reported=None, first_failed_at=self.first_failed_at or now,
                       held_since=None, next_attempt=now + timedelta(seconds=BACKOFF[0]))

    def cancel(self, reason: str, now: datetime) -> OutboxEntry:
        return replace(self, status=Status.CANCELLED, detail=reason, finished_at=now)

    def put_back(self, now: datetime) -> OutboxEntry:
        """A failed mail back in the queue, with a fresh retry window (`outbox retry`)."""
        return replace(self, status=Status.PENDING, attempts=0, next_attempt=None, first_failed_at=None,
                       failure_reported=None, finished_at=None, held_since=None,
                       detail=f"put back by `outbox retry` at {now.isoformat()}; was: {self.detail}")

    def reported(self, now: datetime) -> OutboxEntry:
        return replace(self, failure_reported=now)

    # -- storage ------------------------------------------------------------------------------------
    def progress(self) -> dict[str, Any]:
        """The fields a send changes: what the store's send journal records."""
        return {"status": str(self.status), "attempts": self.attempts, "detail": self.detail,
                "next_attempt": _iso(self.next_attempt), "first_failed_at": _iso(self.first_failed_at),
                "sent_at": _iso(self.sent_at), "finished_at": _iso(self.finished_at),
                "failure_reported": _iso(self.failure_reported), "held_since": _iso(self.held_since)}

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "thread_id": self.thread_id, "partner_id": self.partner_id,
                "message_id": self.message_id, "mail_from": self.mail_from, "rcpt_to": list(self.rcpt_to),
                "subject": self.subject, "created_at": self.created_at.isoformat(), "retry_of": self.retry_of,
                **self.progress(), "raw": self.raw, **({"body": self.body} if self.body else {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OutboxEntry:
        return cls(key=d["key"], kind=d.get("kind", ""), message_id=d.get("message_id", ""),
                   mail_from=d.get("mail_from", ""), rcpt_to=tuple(d.get("rcpt_to", ())), raw=d.get("raw", ""),
                   created_at=datetime.fromisoformat(d["created_at"]), subject=d.get("subject", ""),
                   thread_id=d.get("thread_id"), partner_id=d.get("partner_id"), retry_of=d.get("retry_of"),
                   status=Status(d.get("status", "pending")), attempts=int(d.get("attempts", 0)),
                   next_attempt=_dt(d.get("next_attempt")), first_failed_at=_dt(d.get("first_failed_at")),
                   detail=d.get("detail") or "", sent_at=_dt(d.get("sent_at")),
                   finished_at=_dt(d.get("finished_at")), failure_reported=_dt(d.get("failure_reported")),
                   held_since=_dt(d.get("held_since")), body=d.get("body") or "")


# Which mail goes first when several are waiting (lower first). Partner-facing mail and escalations
# are the promise itself; staff mail next; scheduled mailings last, and only they are paced
# (``rate_per_minute``), so an acknowledgement never waits behind a mailing.
URGENT, STAFF, BULK = 0, 1, 2
# A training's answers to a partner's own registration mail are partner-facing too; the training mail
# that goes to staff (an extra place to approve, the attendance sheet) is staff mail.
_URGENT_KINDS = frozenset({"ack", "relay", "close", "command-partner", "escalation", "training-confirmed",
                           "training-waitlisted", "training-held", "training-declined", "training-receipt",
                           "training-cancelled"})
_STAFF_KINDS = frozenset({"training-approval", "training-attendance"})


def lane(kind: str) -> int:
    if kind in _URGENT_KINDS:
        return URGENT
    return BULK if kind in MAILINGS and kind not in _STAFF_KINDS else STAFF


def stuck_problem(pending: list[OutboxEntry], now: datetime) -> str | None:
    """One line for people while mail has been failing to go out for over REPORT_AFTER, else None."""
    # Held mail is not failing: the lapsed login's own warning speaks for it (held_problem).
    stuck = [e for e in pending if e.first_failed_at and not e.held_since and now - e.first_failed_at >= REPORT_AFTER]
    if not stuck:
        return None
    oldest = min(stuck, key=lambda e: e.first_failed_at)  # type: ignore[arg-type, return-value]
    assert oldest.first_failed_at is not None
    minutes = int(REPORT_AFTER.total_seconds() // 60)
    return (f"{len(stuck)} mail(s) {STUCK_MARK} for over {minutes} minutes (oldest {oldest.key} failing since "
            f"{oldest.first_failed_at.isoformat()}, last error: {oldest.detail}); retrying until "
            f"{(oldest.first_failed_at + RETRY_FOR).isoformat()}; see `run.py outbox list --status pending`")


def held_problem(pending: list[OutboxEntry]) -> str | None:
    """One line for people while mail waits for a lapsed OAuth2 login to be renewed, else None."""
    held = [e for e in pending if e.held_since is not None]
    if not held:
        return None
    oldest = min(e.held_since for e in held)  # type: ignore[type-var]
    return (f"{len(held)} mail(s) {HELD_MARK} {oldest.isoformat()} because the OAuth2 login lapsed; they go out "
            f"once it is renewed (their 3-day retry window is paused meanwhile); see `run.py outbox list`")


def message_id(secret: bytes, domain: str, out: OutgoingMail, thread_number: int) -> str:
    """Our Message-ID for ``out``: deterministic in its key, so a mail decided twice has one id. A copy
    for one staff member ends in their reply key (workflows/replykeys.py)."""
    return msgids.make_message_id(secret, thread_number=thread_number, kind=out.kind, key=out.key, domain=domain,
                                  suffix=out.reply_key)


def entry(out: OutgoingMail, *, message_id: str, raw: bytes, now: datetime, mail_from: str,
          thread_id: str | None = None, partner_id: str | None = None) -> OutboxEntry:
    """The outbox record for a rendered mail; the store refuses a key it already holds."""
    return OutboxEntry(key=out.key, kind=out.kind, thread_id=thread_id, partner_id=partner_id,
                       message_id=message_id, mail_from=mail_from, rcpt_to=tuple(out.to), subject=out.subject,
                       raw=raw.decode("ascii"), created_at=now)


def envelope_sender(out: OutgoingMail, support_address: str) -> str:
    """RFC 3834: automatic replies go out with a null envelope sender, so nothing bounces back."""
    return "" if out.automatic and out.auto_kind == "auto-replied" else support_address

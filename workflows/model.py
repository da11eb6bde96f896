"""The value types the rules work on.

All frozen: a rule returns new values (``dataclasses.replace``) instead of
mutating what it was given, so a decision can be inspected, logged and stored
before anything happens because of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from .lifecycle import State

FROZEN = dict(frozen=True, slots=True, kw_only=True)

PLANS = {"standard": 4000, "solo": 2000}
"""Yearly price in US dollars, from the program text: $4,000, half for one-person shops."""

ROLES = frozenset({"primary", "billing", "technical"})


@dataclass(**FROZEN)
class Attachment:
    filename: str
    content_type: str  # "application/pdf"
    data: bytes


@dataclass(**FROZEN)
class FailedRecipient:
    """One recipient a delivery report says our mail did not reach (yet)."""

    address: str  # lower-cased addr-spec as the report names it
    gave_up: bool  # the reporting server stopped trying: this message will not arrive (False: delayed)
    status: str = ""  # RFC 3463 enhanced status code, "5.1.1"; "" when the report gives none
    diagnostic: str = ""  # the remote server's words, shortened: the "last reason" staff see


@dataclass(**FROZEN)
class MailReport:
    """What the machine-readable side of an automatic message says (read by mailbox.reports).

    ``format`` names where it came from: "dsn" (RFC 3464), "arf" (RFC 5965 feedback
    report), "mdn" (RFC 8098 read receipt), or "heuristic" (one of flufl.bounce's
    detectors for the many bounce formats that are not RFC 3464).
    """

    format: str
    failed: tuple[FailedRecipient, ...] = ()
    actions: tuple[str, ...] = ()  # DSN Action values seen: failed, delayed, delivered, relayed, expanded
    delivered: tuple[str, ...] = ()  # DSN recipients reported delivered, relayed or expanded: mail arrives there
    feedback_type: str = ""  # ARF Feedback-Type: abuse, fraud, virus, not-spam, auth-failure, other
    disposition: str = ""  # MDN Disposition, "manual-action/mdn-sent-manually; displayed"
    reporters: tuple[str, ...] = ()  # whose mailbox the report is about: ARF Original-Rcpt-To, MDN Final-Recipient
    about_ids: tuple[str, ...] = ()  # Message-IDs of the original mail, wherever the report carries them


@dataclass(**FROZEN)
class InboundMail:
    """One received message, parsed once at the boundary (see mailbox.parse)."""

    message_id: str  # "<id@host>"; synthesised from the raw hash when missing
    raw_sha256: str
    received_at: datetime  # when *our* server got it (IMAP INTERNALDATE), aware
    from_addr: str  # lower-cased addr-spec, "" when absent or unparseable
    from_name: str = ""
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    # Envelope recipients as receiving servers recorded them (Delivered-To, X-Original-To): where a
    # reply key still is when the sender Bcc'd the support address.
    envelope_to: tuple[str, ...] = ()
    subject: str = ""
    date_header: datetime | None = None
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    text: str = ""  # best plain-text rendering of the body
    reply_text: str = ""  # text with quoted history and signature stripped
    auto_submitted: str = ""  # RFC 3834 header value, lower-cased
    precedence: str = ""
    return_path: str | None = None  # None: header absent; "": "<>" (a bounce)
    list_id: str = ""
    other_auto_headers: tuple[str, ...] = ()  # X-Autoreply, X-Auto-Response-Suppress...
    content_type: str = "text/plain"
    calendar_parts: tuple[str, ...] = ()  # text/calendar bodies (RSVPs to our invitations)
    reported_ids: tuple[str, ...] = ()  # a delivery report's (bounce's) original Message-IDs
    report: MailReport | None = None  # bounce / feedback / read-receipt contents (mailbox.reports)
    # Headers that tell automatic mail apart, with their values: (name as listed in mailbox.reports, value).
    auto_headers: tuple[tuple[str, str], ...] = ()
    attachments: tuple[Attachment, ...] = ()  # files, so a staff answer's attachments reach the partner
    size: int = 0
    defects: tuple[str, ...] = ()
    # False: only the header block was read (history that no rule reads the body of); text and parts
    # are empty then. body_hint: the bytes hold something only a full reading finds (a delivery
    # report, a calendar part, an unsubscribe token).
    body_read: bool = True
    body_hint: bool = False

    @property
    def recipients(self) -> tuple[str, ...]:
        return self.to + self.cc

    @property
    def thread_refs(self) -> tuple[str, ...]:
        """Message-IDs this mail says it answers, nearest first."""
        seen: list[str] = []
        for mid in self.in_reply_to + tuple(reversed(self.references)):
            if mid not in seen:
                seen.append(mid)
        return tuple(seen)


@dataclass(**FROZEN)
class Contact:
    partner_id: str
    name: str
    email: str  # lower-cased
    roles: frozenset[str] = frozenset()
    trained_on: date | None = None

    @property
    def has_seat(self) -> bool:
        # The program: "anyone who completes a training will get a seat in the channel".
        return self.trained_on is not None


@dataclass(**FROZEN)
class Partner:
    id: str
    name: str
    plan: str  # "standard" | "solo"
    renews_on: date | None
    contacts: tuple[Contact, ...] = ()
    active: bool = True
    # `partners deactivate`: out of the program from this day on (no mailings, no support seat); a
    # later day is a deactivation planned ahead. ``active`` False (0.1.0 stores) means out already.
    deactivated_on: date | None = None

    @property
    def yearly_fee(self) -> int:
        return PLANS[self.plan]

    def active_on(self, day: date) -> bool:
        """In the program on ``day``: not deactivated, or deactivated only from a later day."""
        return self.active and (self.deactivated_on is None or day < self.deactivated_on)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "plan": self.plan,
            "yearly_fee": self.yearly_fee,
            "renews_on": self.renews_on.isoformat() if self.renews_on else None,
            "active": self.active,
            "deactivated_on": self.deactivated_on.isoformat() if self.deactivated_on else None,
            "contacts": [
                {
                    "name": c.name,
                    "email": c.email,
                    "roles": sorted(c.roles),
                    "trained_on": c.trained_on.isoformat() if c.trained_on else None,
                    "seat": c.has_seat,
                }
                for c in self.contacts
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Partner:
        pid = d["id"]
        return cls(
            id=pid,
            name=d["name"],
            plan=d["plan"],
            renews_on=date.fromisoformat(d["renews_on"]) if d.get("renews_on") else None,
            active=d.get("active", True),
            deactivated_on=date.fromisoformat(d["deactivated_on"]) if d.get("deactivated_on") else None,
            contacts=tuple(
                Contact(
                    partner_id=pid,
                    name=c["name"],
                    email=c["email"],
                    roles=frozenset(c.get("roles", ())),
                    trained_on=date.fromisoformat(c["trained_on"]) if c.get("trained_on") else None,
                )
                for c in d.get("contacts", ())
            ),
        )


@dataclass(**FROZEN)
class Sender:
    """Who wrote a message, as far as the roster and config can tell."""

    kind: str  # "partner" | "staff" | "unknown"
    address: str
    partner_id: str | None = None
    contact_name: str = ""
    seat: bool = False
    on_roster: bool = False  # exact contact address (vs. matched by domain only)


@dataclass(**FROZEN)
class ThreadEvent:
    """One line of a thread's timeline."""

    at: datetime
    kind: str  # "request", "follow-up", "answer", "note", "ack", "notify", "relay", "state", ...
    message_id: str = ""
    by: str = ""  # address
    detail: str = ""
    # How a staff member's message was proven to be theirs (workflows/staffproof.py):
    # "reply key (To)", "Authentication-Results from mx.example (dmarc=pass)", "DKIM d=example.com".
    proof: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = {
            "at": self.at.isoformat(),
            "kind": self.kind,
            "message_id": self.message_id,
            "by": self.by,
            "detail": self.detail,
        }
        return d | ({"proof": self.proof} if self.proof else {})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ThreadEvent:
        return cls(
            at=datetime.fromisoformat(d["at"]),
            kind=d["kind"],
            message_id=d.get("message_id", ""),
            by=d.get("by", ""),
            detail=d.get("detail", ""),
            proof=d.get("proof", ""),
        )


@dataclass(**FROZEN)
class FiredStage:
    """One escalation stage that went out on a clock: when, and to whom."""

    stage: str
    at: datetime
    to: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "at": self.at.isoformat(), "to": list(self.to)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FiredStage:
        return cls(stage=d["stage"], at=datetime.fromisoformat(d["at"]), to=tuple(d.get("to", ())))


@dataclass(**FROZEN)
class LadderMemory:
    """The escalation ladder's memory of one clock: which stages fired. A new clock starts a new ladder."""

    clock: str = ""  # the clock it belongs to (sla.clock_id: the clock's start)
    fired: tuple[FiredStage, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"clock": self.clock, "fired": [f.to_dict() for f in self.fired]}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> LadderMemory:
        d = d or {}
        return cls(clock=d.get("clock", ""), fired=tuple(FiredStage.from_dict(f) for f in d.get("fired", ())))


@dataclass(**FROZEN)
class Thread:
    id: str  # "OA-12"
    number: int
    partner_id: str | None
    requester: str  # address of whoever opened it
    requester_name: str = ""
    sender_kind: str = "unknown"  # of the requester: partner | staff | unknown
    seat: bool = False
    subject: str = ""
    state: State = State.NEW
    created_at: datetime
    due_at: datetime | None = None  # the running clock's deadline; None when no clock runs
    clock_started_at: datetime | None = None
    first_response_at: datetime | None = None
    first_responder: str = ""
    closed_at: datetime | None = None  # set by lifecycle.apply when the thread enters CLOSED
    assignee: str = ""  # #assign: gets the escalations first
    previous: str = ""  # a closed thread this one continues (written to after the reopen window)
    merged_into: str = ""  # this thread became part of that one (closed here; its mail is filed there)
    ladder: LadderMemory = LadderMemory()
    messages: tuple[str, ...] = ()  # Message-IDs, oldest first, ours included
    partner_messages: tuple[str, ...] = ()  # only the partner side, for relay threading
    events: tuple[ThreadEvent, ...] = ()
    # Nonces of reply keys shown to someone outside staff (a Cc'd partner): refused in this thread from
    # then on (workflows/replykeys.py). Absent from older stores: none refused.
    refused_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.state, State):  # Thread(state="closed") from a test or an old record
            object.__setattr__(self, "state", State(self.state))

    @property
    def promised(self) -> bool:
        """Whether the requester is promised replies: "anyone who completes a training will get a seat"."""
        return self.seat and self.sender_kind == "partner"

    def with_message(self, message_id: str, *, partner_side: bool = False) -> Thread:
        if not message_id or message_id in self.messages:
            return self
        return replace(
            self,
            messages=self.messages + (message_id,),
            partner_messages=self.partner_messages + ((message_id,) if partner_side else ()),
        )

    def with_event(self, event: ThreadEvent) -> Thread:
        return replace(self, events=self.events + (event,))

    def to_dict(self) -> dict[str, Any]:
        def iso(v: datetime | None) -> str | None:
            return v.isoformat() if v else None

        return {
            "id": self.id,
            "number": self.number,
            "partner_id": self.partner_id,
            "requester": self.requester,
            "requester_name": self.requester_name,
            "sender_kind": self.sender_kind,
            "seat": self.seat,
            "subject": self.subject,
            "state": str(self.state),
            "created_at": iso(self.created_at),
            "due_at": iso(self.due_at),
            "clock_started_at": iso(self.clock_started_at),
            "first_response_at": iso(self.first_response_at),
            "first_responder": self.first_responder,
            "closed_at": iso(self.closed_at),
            "assignee": self.assignee,
            "previous": self.previous,
            "merged_into": self.merged_into,
            "ladder": self.ladder.to_dict(),
            "messages": list(self.messages),
            "partner_messages": list(self.partner_messages),
            "events": [e.to_dict() for e in self.events],
        } | ({"refused_keys": list(self.refused_keys)} if self.refused_keys else {})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Thread:
        def dt(v: str | None) -> datetime | None:
            return datetime.fromisoformat(v) if v else None

        # Stores written by 0.1.0 kept assignee, previous, closed_at and the ladder in an untyped
        # "extra" dict; they are read from there until the thread is saved again.
        legacy = d.get("extra") or {}
        return cls(
            id=d["id"],
            number=d["number"],
            partner_id=d.get("partner_id"),
            requester=d["requester"],
            requester_name=d.get("requester_name", ""),
            sender_kind=d.get("sender_kind", "unknown"),
            seat=d.get("seat", False),
            subject=d.get("subject", ""),
            state=State(d["state"]),
            created_at=datetime.fromisoformat(d["created_at"]),
            due_at=dt(d.get("due_at")),
            clock_started_at=dt(d.get("clock_started_at")),
            first_response_at=dt(d.get("first_response_at")),
            first_responder=d.get("first_responder", ""),
            closed_at=dt(d.get("closed_at", legacy.get("closed_at"))),
            assignee=d.get("assignee", legacy.get("assignee", "")) or "",
            previous=d.get("previous", legacy.get("previous", "")) or "",
            merged_into=d.get("merged_into", ""),
            ladder=LadderMemory.from_dict(d.get("ladder", legacy.get("ladder"))),
            messages=tuple(d.get("messages", ())),
            partner_messages=tuple(d.get("partner_messages", ())),
            events=tuple(ThreadEvent.from_dict(e) for e in d.get("events", ())),
            refused_keys=tuple(d.get("refused_keys", ())),
        )


@dataclass(**FROZEN)
class OutgoingMail:
    """A mail the rules decided to send; rendered and stored before it is sent.

    ``key`` is the idempotency key: the same decision taken twice yields the same
    key, and the outbox refuses a key it already holds.
    """

    key: str
    kind: str  # "ack", "notify", "relay", "channel-info", ...
    template: str  # template base name under templates/
    to: tuple[str, ...]
    context: dict[str, Any]
    thread_id: str | None = None
    subject: str = ""
    from_name: str = ""  # display name; address is always the support address
    reply_to_support: bool = True
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    automatic: bool = True  # sets Auto-Submitted (auto-replied/auto-generated)
    auto_kind: str = "auto-replied"
    extra_headers: tuple[tuple[str, str], ...] = ()
    body_text: str | None = None  # relays: the staff member's own words, not a template
    # Scheduled mailings: a calendar invitation (workflows.mailings.due.CalendarEvent) that the
    # composer turns into a text/calendar part with mailbox/ical.py. None for ordinary mail.
    calendar: Any = None
    attachments: tuple[Attachment, ...] = ()  # carried over from a staff answer to its relay
    # Mail to staff goes out one copy per recipient (service/outbox.py), each with its own reply key:
    # in Reply-To (``support+KEY@...``; "" means the plain support address) and in the Message-ID.
    reply_to: str = ""
    reply_key: str = ""
    about: str = ""  # the inbound Message-ID this mail is about (an unverified-mail notice: the held mail)


@dataclass(**FROZEN)
class Decision:
    """What the rules decided about one inbound message."""

    action: str  # "thread-new", "thread-join", "answer", "note", "skip", ...
    thread: Thread | None
    outgoing: tuple[OutgoingMail, ...] = ()
    sender: Sender | None = None
    reason: str = ""  # for the log / summary: why this action
    also: tuple[Thread, ...] = ()  # other threads the decision changed (merged into ``thread``)
    counters: dict[str, int] = field(default_factory=dict)
    released: str = ""  # the held (unverified) Message-ID this decision sends on, confirmed by its writer

"""What one cycle did, for the summary line, the log and `once -v`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

# Counted only when they happened, in this order, after the six counts every summary shows.
_OPTIONAL = ("sent", "send_failed", "duplicates", "history", "skipped", "automatic", "escalations", "auto_closed",
             "digests", "bounces", "unverified", "mailings_queued", "mailings_skipped", "rsvp", "unsubscribed",
             "send_retry", "held", "cancelled")


@dataclass
class CycleReport:
    counts: Counter[str] = field(default_factory=Counter)
    written: list[str] = field(default_factory=list)  # where a spool sender put mail, for demo output
    problems: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)  # one line per message taken in: what and why

    def summary(self, *, dry_run: bool = False) -> str:
        """The one-line summary; ``dry_run``: nothing went out, so "sent" is what would have been sent."""
        c = self.counts
        parts = [f"fetched {c['fetched']}", f"new threads {c['new_threads']}", f"acks {c['acks']}",
                 f"notifications {c['notifications']}", f"relayed {c['relayed']}", f"quarantined {c['quarantined']}"]
        words = {"sent": "would send"} if dry_run else {}
        return ", ".join(parts + [f"{words.get(k, k.replace('_', ' '))} {c[k]}" for k in _OPTIONAL if c[k]])

    def merge(self, other: CycleReport) -> None:
        self.counts.update(other.counts)
        self.written += other.written
        self.problems += other.problems
        self.actions += other.actions

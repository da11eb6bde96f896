"""The outbox half of the store (a mixin of store.tinystore.Store): rows, their bodies, the send journal.

A row in the hot store holds what `outbox list` shows and where the rendered bytes are (``body``: a
reference into store/mailfiles.py); the bytes themselves never enter the JSON. Unfinished rows
(pending, failed) stay in the hot store; a finished one (sent, cancelled) moves to the archive at
the commit that finishes it. Send results reach the store through the journal (store/journal.py)
and are folded in by ``apply_journal``, one write for many results.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any, Callable

from workflows.outbox import OutboxEntry, Status

FINISHED = (str(Status.SENT), str(Status.CANCELLED))


class OutboxRows:
    # Provided by Store: _get, _put, _all, _hot, archive, mail, journal, readonly, transaction.

    def _row(self, key: str) -> dict[str, Any] | None:
        d = self._hot("outbox", key)  # type: ignore[attr-defined]
        if d is None:
            self._sync_archive()  # type: ignore[attr-defined]
            d = self.archive.get("outbox", key)  # type: ignore[attr-defined]
        return d

    def _entry(self, key: str, d: dict[str, Any], unapplied: dict[str, dict[str, Any]], bodies: bool) -> OutboxEntry:
        e = OutboxEntry.from_dict({**d, "key": key, **unapplied.get(key, {})})
        if bodies and not e.raw and e.body:
            data = self.mail.read(e.body)  # type: ignore[attr-defined]
            if data is not None:
                e = replace(e, raw=data.decode("ascii"))
        return e

    def outbox_add(self, entry: OutboxEntry) -> bool:
        """Queue a rendered mail; False (and nothing written) if its key is already queued or sent."""
        if self._row(entry.key) is not None:
            return False
        row = entry.to_dict()
        raw = row.pop("raw", "")
        if raw:
            row["body"] = self.mail.stage(entry.created_at.date().isoformat(), raw.encode("ascii"))  # type: ignore[attr-defined]
        self._put("outbox", entry.key, row)  # type: ignore[attr-defined]
        return True

    def outbox_entry(self, key: str, *, bodies: bool = True) -> OutboxEntry | None:
        d = self._row(key)
        return None if d is None else self._entry(key, d, self._unapplied(), bodies)

    def outbox(self, status: Status | str | None = None, *, bodies: bool = True,
               skip: Callable[[str], bool] | None = None) -> list[OutboxEntry]:
        """Entries oldest first, optionally only those in ``status``. Unfinished ones are all in the hot
        store; listing finished ones reads the archive too. ``bodies``: with the rendered bytes;
        ``skip(key)``: leave those out before decoding them (mail the dispatcher already has)."""
        unapplied = self._unapplied()
        rows: dict[str, dict[str, Any]] = {}
        if status is None or str(status) in FINISHED:
            self._sync_archive()  # type: ignore[attr-defined]
            rows.update(self.archive.items("outbox"))  # type: ignore[attr-defined]
        rows.update(self._t("outbox")._read_table())  # type: ignore[attr-defined]
        if status is not None:
            rows = {k: d for k, d in rows.items() if unapplied.get(k, d).get("status", d.get("status")) == str(status)}
        if skip is not None:
            rows = {k: d for k, d in rows.items() if not skip(k)}
        out = [self._entry(k, d, unapplied, False) for k, d in rows.items()]
        if status:
            out = [r for r in out if r.status == status]
        out.sort(key=lambda r: (r.created_at, r.key))
        if bodies:
            out = [replace(r, raw=data.decode("ascii")) if not r.raw and r.body and
                   (data := self.mail.read(r.body)) is not None else r for r in out]  # type: ignore[attr-defined]
        return out

    def outbox_body(self, entry: OutboxEntry) -> bytes | None:
        """The rendered bytes of ``entry``; None when they were pruned. Safe from any thread."""
        if entry.raw:
            return entry.raw.encode("ascii")
        return self.mail.read_committed(entry.body) if entry.body else None  # type: ignore[attr-defined]

    def outbox_save(self, entry: OutboxEntry) -> None:
        old = self._row(entry.key)
        if old is None:
            raise KeyError(f"no outbox entry {entry.key!r}")
        row = entry.to_dict()
        row.pop("raw", None)
        row["body"] = entry.body or old.get("body", "")
        if not row["body"] and entry.raw:
            row["body"] = self.mail.stage(entry.created_at.date().isoformat(), entry.raw.encode("ascii"))  # type: ignore[attr-defined]
        self._put("outbox", entry.key, row)  # type: ignore[attr-defined]

    def prune_sent_mail(self, before: datetime) -> int:
        """Delete the stored bytes of mail queued before ``before``, except unfinished mail's (those rows
        are all in the hot store). The rows stay. Returns how many files went."""
        keep = {d["body"] for d in self._all("outbox") if d.get("body")}  # type: ignore[attr-defined]
        return self.mail.prune(before.date().isoformat(), keep)  # type: ignore[attr-defined]

    # -- the send journal ---------------------------------------------------------------------------
    def journal_results(self, results: list[dict[str, Any]]) -> None:
        """Durably record send results (one fsync for all): [{"key", "fields", ("copy")}]."""
        self.journal.append(results)  # type: ignore[attr-defined]

    def journal_progress(self, entry: OutboxEntry) -> None:
        self.journal_results([{"key": entry.key, "fields": entry.progress()}])

    def _unapplied(self) -> dict[str, dict[str, Any]]:
        """A read-only store cannot fold the journal in; it shows what the journal says on top."""
        if not self.readonly:  # type: ignore[attr-defined]
            return {}
        fields: dict[str, dict[str, Any]] = {}
        for rec in self.journal.pending():  # type: ignore[attr-defined]
            fields.setdefault(rec["key"], {}).update(rec["fields"])
        return fields

    def apply_journal(self) -> int:
        """Fold journaled send results into the outbox (one store write); returns how many.

        What is journaled when the fold begins is folded (with what a fold that did not finish left), in
        one write. Not "until the journal is empty": while a mailing is being sent, results arrive faster
        than a store write takes, and chasing them kept the daemon folding, not taking in mail, for as
        long as the mailing lasted. Later results wait for the next settle. Inside another transaction
        (a mailing's chunk) the fold is part of that one's write, and the folded lines are let go only
        once it has committed.

        A result that says some recipients were refused for now (452) carries the copy for them, queued
        here in the same write: the copy exists as soon as the result is folded, or neither does.
        """
        applied = 0
        # Under the store's lock from take() to done(): another process folding at the same time (a CLI
        # command opening the store) would otherwise add lines to a .folding file this one is about to
        # remove. Nothing readable taken (torn lines only, or nothing): done() removes what there is.
        with self.transaction(after_commit=self.journal.done):  # type: ignore[attr-defined]
            for rec in self.journal.take():  # type: ignore[attr-defined]
                key = rec["key"]
                d = self._row(key)
                if d is None:
                    continue
                row = {**d, **rec["fields"]}
                self._put("outbox", key, row)  # type: ignore[attr-defined]
                applied += 1
                if rec.get("copy"):  # for the recipients refused for now; its key makes this idempotent
                    self.outbox_add(OutboxEntry.from_dict(rec["copy"]))
        return applied

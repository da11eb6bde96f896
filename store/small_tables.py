"""Small tables of the store with nothing to archive: unproven staff mail held, the loop breaker's
memory, training registrations. A mixin of store.tinystore.Store, which provides _get, _put, _all,
meta, set_meta, remember_sent and count_sent_to."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from workflows.loopbreaker import Breaker
from workflows.trainings.model import Registration


class SmallTables:
    # Provided by Store: _get, _put, _all, meta, set_meta, remember_sent, count_sent_to.

    # -- held mail (unproven, from a staff address) ------------------------------------------------------------
    def hold_unverified(self, message_id: str, record: dict[str, Any]) -> None:
        if self._get("unverified", message_id) is None:  # held once; a repeat must not undo a release
            self._put("unverified", message_id, record)

    def unverified_mail(self, message_id: str) -> dict[str, Any] | None:
        return self._get("unverified", message_id)

    def release_unverified(self, message_id: str, *, at: datetime, by: str) -> None:
        rec = self._get("unverified", message_id)
        if rec is not None:
            self._put("unverified", message_id, {**rec, "released_at": at.isoformat(), "released_by": by})

    # -- the loop breaker ----------------------------------------------------------------------------------------
    def loop_breaker(self) -> Breaker:
        d = self.meta("loop_breaker") or {}
        at = d.get("tripped_at")
        return Breaker(tripped_at=datetime.fromisoformat(at) if at else None,
                       answers_when_tripped=d.get("answers_when_tripped", 0))

    def set_loop_breaker(self, breaker: Breaker) -> None:
        self.set_meta("loop_breaker", {"tripped_at": breaker.tripped_at.isoformat() if breaker.tripped_at else None,
                                       "answers_when_tripped": breaker.answers_when_tripped})

    def remember_answer(self, address: str, at: datetime) -> None:
        """An automatic answer (acknowledgement, command reply) queued to ``address``."""
        self.remember_sent(address.lower(), "answer", at)
        self.remember_sent("*", "answer", at, keep=2000)

    def count_answers(self, since: datetime, address: str | None = None) -> int:
        """Automatic answers queued since ``since``: to ``address``, or to anyone (None)."""
        return self.count_sent_to(address.lower() if address else "*", "answer", since)

    # -- training registrations (a new table: a store without it simply has none; no migration needed) ----------
    def registrations(self, training_id: str | None = None) -> list[Registration]:
        """Registrations, in request order; ``training_id``: of one course only."""
        docs = self._all("registrations")
        if training_id is not None:
            docs = [d for d in docs if d.get("training_id") == training_id]
        return sorted((Registration.from_dict(d) for d in docs), key=lambda r: (r.requested_at, r.key))

    def registration(self, training_id: str, address: str) -> Registration | None:
        d = self._get("registrations", f"{training_id}|{address.lower()}")
        return Registration.from_dict(d) if d is not None else None

    def save_registration(self, reg: Registration) -> None:
        self._put("registrations", reg.key, reg.to_dict())

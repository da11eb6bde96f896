"""The delivery state of contacts (a mixin of store.tinystore.Store): one DeliveryState per address, and
what clearing one needs to know of the mail our server accepted."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from workflows.delivery import DeliveryState
from workflows.outbox import Status


class DeliveryRows:
    # Provided by Store: _get, _put, _all, _storage, meta, set_meta.

    def delivery_state(self, address: str) -> DeliveryState | None:
        d = self._get("delivery", address.lower())  # type: ignore[attr-defined]
        return DeliveryState.from_dict(d) if d is not None else None

    def save_delivery_state(self, state: DeliveryState) -> None:
        self._put("delivery", state.address.lower(), state.to_dict())  # type: ignore[attr-defined]

    def delivery_states(self) -> dict[str, DeliveryState]:
        return {d.doc_id: DeliveryState.from_dict(d) for d in self._all("delivery")}  # type: ignore[attr-defined]

    def first_accepted_after(self, since: Mapping[str, datetime]) -> dict[str, datetime]:
        """For each address of ``since``, when our server first accepted mail to it after that moment
        (sent outbox rows, and those kept in ``accepted`` when they left the hot store); absent if never."""
        out: dict[str, datetime] = {}

        def seen(address: str, sent_at: str) -> None:
            at = datetime.fromisoformat(sent_at)
            if at > since[address] and (address not in out or at < out[address]):
                out[address] = at

        for d in self._all("accepted"):  # type: ignore[attr-defined]
            if d.doc_id in since:
                seen(d.doc_id, d["sent_at"])
        for d in self._all("outbox"):  # type: ignore[attr-defined]
            if d.get("status") != Status.SENT or not d.get("sent_at"):
                continue
            for rcpt in d.get("rcpt_to", ()):
                if rcpt.lower() in since:
                    seen(rcpt.lower(), d["sent_at"])
        return out

    def delivery_settled_at(self) -> datetime | None:
        v = self.meta("delivery_settled_at")  # type: ignore[attr-defined]
        return datetime.fromisoformat(v) if v else None

    def set_delivery_settled_at(self, at: datetime) -> None:
        self.set_meta("delivery_settled_at", at.isoformat())  # type: ignore[attr-defined]

    def _keep_accepted(self, tables: dict[str, Any], leaving: list[dict[str, Any]]) -> None:
        """Sent rows about to leave the hot store: for each address that has failed, the first mail our
        server accepted after its last failure is kept in ``accepted`` (``first_accepted_after`` reads the
        hot rows, and the archive is years long). Without it, a contact was cleared only while the mail
        that proved the address was still hot."""
        failing = {a: datetime.fromisoformat(d["last_failure_at"]) for a, d in tables.get("delivery", {}).items()
                   if d.get("failures") and d.get("last_failure_at")}
        accepted = tables.get("accepted", {})
        keep: dict[str, datetime] = {}
        for a, d in accepted.items():
            at = datetime.fromisoformat(d["sent_at"])
            if a in failing and at > failing[a]:
                keep[a] = at
        for d in leaving:
            if d.get("status") != Status.SENT or not d.get("sent_at"):
                continue
            at = datetime.fromisoformat(d["sent_at"])
            for rcpt in d.get("rcpt_to", ()):
                a = rcpt.lower()
                if a in failing and at > failing[a] and (a not in keep or at < keep[a]):
                    keep[a] = at
        now = {a: {"sent_at": at.isoformat()} for a, at in keep.items()}
        if now != accepted:
            self._storage.changing("accepted")  # type: ignore[attr-defined]
            tables["accepted"] = now

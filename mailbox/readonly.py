"""A mail source that reads but never marks done or moves anything: `once --dry-run` changes nothing."""

from __future__ import annotations

from typing import Any, Iterable

from service.ports import MailSource, RawMail


class ReadOnlySource:
    def __init__(self, source: MailSource) -> None:
        self.source = source
        if hasattr(source, "readonly"):
            source.readonly = True  # IMAP EXAMINE: not even \Recent changes

    def fetch_new(self, store: Any) -> Iterable[RawMail]:
        return self.source.fetch_new(store)

    @property
    def expected(self) -> int | None:  # for a progress bar
        return getattr(self.source, "expected", None)

    def mark_done(self, raw: RawMail) -> None:
        pass

    def file_automatic(self, raw: RawMail) -> None:
        pass

    def quarantine(self, raw: RawMail, reason: str) -> None:
        pass

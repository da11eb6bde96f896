"""Keeping the store small: the rendered copies of sent mail go after ``[store] keep_sent_mail_days``.

A tick like the others (service/cycle.py): at most once per day of the rules' clock it asks the
store to delete the stored bytes of mail queued before the cut-off, except mail not yet sent (or
failed, which `outbox retry` may put back). The outbox rows stay, with what `outbox list` shows.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from .ports import Store
from .report import CycleReport

log = logging.getLogger("partnerdesk.upkeep")


class Upkeep:
    def __init__(self, *, store: Store, keep_sent_mail_days: int) -> None:
        self.store = store
        self.keep = keep_sent_mail_days
        self._done: date | None = None

    def tick(self, now: datetime, report: CycleReport) -> None:
        if not self.keep or self._done == now.date():
            return
        self._done = now.date()
        gone = self.store.prune_sent_mail(now - timedelta(days=self.keep))
        if gone:
            log.info("pruned the stored copies of sent mail older than %d days (%d files)", self.keep, gone)

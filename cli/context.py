"""What a verb is handed by run.py: the settings, the clock, and the adapters, built once on request."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Protocol

from config.settings import Settings
from service.cycle import Desk
from service.mailings import MailingRunner
from service.outbox import Outbox
from service.ports import HealthFile, Store


class Clock(Protocol):
    def now(self) -> datetime: ...


class Context(Protocol):
    settings: Settings
    clock: Clock
    verbose: bool
    root: Path  # the checkout: templates/, the demo's sample mail

    def with_settings(self, settings: Settings) -> Context: ...
    def store(self, *, write: bool = False) -> Store: ...
    def outbox(self, store: Store) -> Outbox: ...
    def mailings(self, store: Store | None = None, outbox: Outbox | None = None) -> MailingRunner: ...
    def desk(self, *, spool_root: Path | None = None, dry_run_dir: Path | None = None) -> Desk: ...
    def heartbeat(self) -> HealthFile: ...

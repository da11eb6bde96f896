"""What a verb is handed by run.py: the settings, the clock, and the adapters, built once on request."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Callable, Protocol

from config.settings import Settings
from service.cycle import Desk
from service.mailings import MailingRunner
from service.outbox import Outbox
from service.ports import HealthFile, LoginState, Store


class Clock(Protocol):
    def now(self) -> datetime: ...  # the rules' clock (--now)
    def wall(self) -> datetime: ...  # real time: OAuth2 token lifetimes


class Logins(Protocol):
    """The OAuth2 login (mailbox/oauth2_flows.py:LoginDesk): run the configured flow, then check it by
    logging in to the OAuth2 servers; each returns one line per server checked."""

    def state(self) -> LoginState | None: ...
    def login(self, *, show: Callable[[str], None], port: int = 0,
              pasted: Callable[[], str] | None = None) -> list[str]: ...
    def store_refresh_token(self, refresh_token: str) -> list[str]: ...


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
    def logins(self) -> Logins: ...
    def heartbeat(self) -> HealthFile: ...

#!/usr/bin/env python3
"""partnerdesk: the email side of the Open Atrium Partners Program.

    python run.py [--config FILE] [--now ISO-8601] VERB ...

The composition root: it reads the arguments and the config, picks the adapters (IMAP or the local
spool, SMTP, TinyDB, Jinja2), builds each once when a verb asks for it (read-only when the verb only
reads) and hands them to the verb (cli/). It is the only place that reads the wall clock and the only
place concrete classes are chosen. Nothing happens at import time.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import replace
from functools import partial
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # types only: nothing of the program is imported before main() runs
    from config.settings import Settings
    from service.cycle import Desk
    from service.mailings import MailingRunner
    from service.outbox import Outbox
    from mailbox.oauth2 import TokenSource
    from mailbox.oauth2_flows import LoginDesk
    from service.logins import LoginWatch
    from service.ports import MailSender, MailSource
    from store.tinystore import Store

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:  # our mailbox/ must win over the standard library's, however we are started
    sys.path.insert(0, str(ROOT))

log = logging.getLogger("partnerdesk")

# The exit codes live in cli/exits.py (README "Exit codes"); named here too for scripts and tests.
from cli.exits import (EXIT_BAD_INPUT, EXIT_CONFIG, EXIT_ERROR, EXIT_LOGIN, EXIT_PIPE,  # noqa: E402, F401  (re-exported)
                       EXIT_RUNNING, EXIT_TEMPFAIL)


class Clock:
    """The rules' clock: the wall clock, or --now, read first exactly as given and then advancing with
    real time (the start-up before the first reading does not count)."""

    def __init__(self, fixed: datetime | None) -> None:
        self.fixed = fixed
        self.started: float | None = None

    def now(self) -> datetime:
        if self.fixed is None:
            return datetime.now(timezone.utc)
        if self.started is None:
            self.started = time.monotonic()
        return self.fixed + timedelta(seconds=time.monotonic() - self.started)

    @staticmethod
    def wall() -> datetime:
        """Real time, whatever --now says: what OAuth2 token lifetimes are measured in."""
        return datetime.now(timezone.utc)


def parse_now(value: str) -> datetime:
    from workflows.errors import BadInput

    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise BadInput(f"--now {value!r} is not an ISO-8601 date-time like 2026-11-30T10:00:00-05:00") from None
    if dt.tzinfo is None:
        raise BadInput(f"--now {value!r} needs a UTC offset (e.g. -05:00 or Z): the rules run on US Eastern time")
    return dt.astimezone(timezone.utc)


class Wiring:
    """What a verb gets (the protocol is cli/context.py): settings, clock, and adapters built on request.

    Everything built is closed when the verb returns (``stack``).
    """

    def __init__(self, settings: Settings, clock: Clock, stack: ExitStack, *, verbose: bool = False) -> None:
        self.settings = settings
        self.clock = clock
        self.stack = stack
        self.verbose = verbose
        self.root = ROOT
        self._stores: dict[bool, Store] = {}
        self._tokens: TokenSource | None = None

    def with_settings(self, settings: Settings) -> Wiring:
        other = Wiring(settings, self.clock, self.stack, verbose=self.verbose)
        other._tokens = self._tokens  # one token source per process, whatever the store
        return other

    def store(self, *, write: bool = False) -> Store:
        """The store, opened once per verb: read-only unless the verb writes."""
        if write not in self._stores:
            from store.tinystore import Store

            store = Store(self.settings.store_path, readonly=not write)
            self.stack.callback(store.close)
            self._stores[write] = store
        return self._stores[write]

    def outbox(self, store: Store) -> Outbox:
        from mailbox.compose import Composer
        from service.outbox import Outbox

        s = self.settings
        return Outbox(store=store, composer=Composer(support_address=s.support_address, support_name=s.support_name,
                                                               program_name=s.mailings.program.name),
                      secret=store.secret(s.secret), support_address=s.support_address, staff=s.staff | s.team,
                      trust=s.trust)

    def mailings(self, store: Store | None = None, outbox: Outbox | None = None) -> MailingRunner:
        """The mailings runner, on a read-only store unless one is given."""
        from mailbox.ical import parse_replies
        from service.mailings import MailingRunner, RunnerSettings

        s = self.settings
        store = store or self.store()
        outbox = outbox or self.outbox(store)
        return MailingRunner(store=store, outbox=outbox, secret=outbox.secret,
                             parse_replies=parse_replies,
                             settings=RunnerSettings(support_address=s.support_address, support_name=s.support_name,
                                                     staff=s.staff, config=s.mailings, delivery=s.delivery))

    def tokens(self) -> TokenSource | None:
        """The OAuth2 token source ([oauth2]), built once; None when every login is by password."""
        o = self.settings.oauth2
        if self._tokens is None and o is not None:
            from mailbox.oauth2 import TokenSource, read_client_secret

            self._tokens = TokenSource(o, client_secret=lambda: read_client_secret(o), clock=Clock.wall)
        return self._tokens

    def logins(self) -> LoginDesk:
        """What `auth login` and `auth status` work on: the token file and the servers to check it with."""
        from mailbox.oauth2_flows import LoginDesk
        from workflows.errors import ConfigError

        s, tokens = self.settings, self.tokens()
        if tokens is None:
            raise ConfigError(f"{s.source}: [imap] auth: no server logs in by OAuth2; set auth = \"oauth2\" in "
                              f"[imap] and/or [smtp] and add [oauth2] (see the README, OAuth2 logins)")
        return LoginDesk(tokens, imap=s.imap if s.imap and s.imap.oauth2 else None,
                         smtp=s.smtp if s.smtp and s.smtp.oauth2 else None)

    def _login_watch(self) -> LoginWatch | None:
        """The cycle's eye on the OAuth2 login (service/logins.py); None for password logins. `once` and
        `run` stop before the store is opened when nobody has logged in yet (or the token file is damaged)."""
        from config.servers import CLIENT_CREDENTIALS
        from service.logins import LoginWatch

        o, tokens = self.settings.oauth2, self.tokens()
        if o is None or tokens is None:
            return None
        app_only = o.flow == CLIENT_CREDENTIALS
        _ = tokens.client_secret  # a missing client secret stops here, before the store is opened
        if not app_only and tokens.state() is None:
            raise tokens.login_required(f"nobody has logged in yet (there is no token file {o.token_file})")
        return LoginWatch(tokens, provider=o.provider, account=o.account, command=o.login_command,
                          limits=() if app_only else o.limits, clock=Clock.wall, needs_file=not app_only)

    def desk(self, *, spool_root: Path | None = None, dry_run_dir: Path | None = None) -> Desk:
        """Everything a cycle needs, on the store this process alone may act on (the daemon lock)."""
        from config.servers import password

        s = self.settings
        # Passwords are looked up here, not at load: `threads list` needs no mail password, but the
        # intake must fail on a missing one before it opens the store or connects anywhere.
        passwords = {srv.table: password(srv, s.source) for srv in (s.imap, s.smtp) if srv is not None}
        login = self._login_watch()
        s.require_staff()
        if dry_run_dir is not None:  # a copy of the store: nothing real changes
            tmp = Path(self.stack.enter_context(tempfile.TemporaryDirectory(prefix="partnerdesk-dry-run-")))
            copy = tmp / Path(s.store_path).name
            from store.tinystore import copy_store

            copy_store(s.store_path, copy)
            spool_root = spool_root or Path(s.store_path).parent / "spool"
            copied = self.with_settings(replace(s, store_path=str(copy)))
            return copied._desk(spool_root, dry_run_dir, passwords, login)
        return self._desk(spool_root, None, passwords, login)

    def _desk(self, spool_root: Path | None, dry_run_dir: Path | None, passwords: dict[str, str | None],
              login: LoginWatch | None) -> Desk:
        from mailbox.parse import parse
        from service.automatic import AutomaticMail
        from mailbox.proofreader import reader_for
        from service.cycle import Desk
        from service.intake import IntakeService, history_cutoff
        from service.promise import PromiseTicks
        from service.training_mail import training_desk

        s = self.settings
        store = self.store(write=True)
        store.acquire_daemon_lock()
        # A mailbox that already holds mail at the first start: what is there then is history.
        cutoff = s.history_before or (history_cutoff(store, self.clock.now()) if s.imap is not None else None)
        source, sender = self._mail(spool_root, passwords)
        if dry_run_dir is not None:
            from mailbox.readonly import ReadOnlySource
            from mailbox.spool import SpoolSender
            source, sender = ReadOnlySource(source), SpoolSender(dry_run_dir)
        outbox = self.outbox(store)
        from service.dispatch import Dispatcher

        # Mail leaves from a thread of its own as soon as it is recorded; only mailings are paced.
        outbox.dispatcher = Dispatcher(store=store, sender=sender, now=self.clock.now,
                                       bulk_per_minute=s.smtp.rate_per_minute if s.smtp and dry_run_dir is None else 0)
        self.stack.callback(outbox.dispatcher.close, finish=False)
        automatic = AutomaticMail(store=store, outbox=outbox, settings=s.intake(), loop=s.loop, delivery=s.delivery)
        intake = IntakeService(store=store, settings=s.intake(), parse=parse, outbox=outbox, secret=outbox.secret,
                               history_cutoff=cutoff, automatic=automatic, parse_head=partial(parse, bodies=False),
                               proofs=reader_for(s.trust))
        promise = PromiseTicks(store=store, outbox=outbox, settings=s.intake(), ladder=s.ladder_config(),
                               lifecycle=s.lifecycle, digest=s.digest)
        mailings = self.mailings(store, outbox)
        from service.render_ahead import ForkedRenderer

        mailings.render_ahead = ForkedRenderer()  # a large mailing renders in a child while this process sends
        # RSVPs, unsubscribes, training replies: claimed before threading; stale mail is called off at send time.
        intake.interceptors += [mailings.intercept, *training_desk(mailings, outbox, intake)]
        outbox.cancel_checks += [promise.cancel_reason, mailings.cancel_reason]
        from service.upkeep import Upkeep

        health = None if dry_run_dir is not None else self.health(store, outbox)
        return Desk(store=store, outbox=outbox, intake=intake, source=source, sender=sender, now=self.clock.now,
                    promise=promise, mailings=mailings, login=login, health=health,
                    extra_ticks=[automatic.tick, Upkeep(store=store, keep_sent_mail_days=s.keep_sent_mail_days).tick])

    def heartbeat(self) -> Any:
        from store.heartbeat import HeartbeatFile

        return HeartbeatFile(self.settings.heartbeat_file, self.settings.metrics_path)

    def health(self, store: Any, outbox: Any) -> Any:
        from service.health import HealthMonitor

        s = self.settings
        return HealthMonitor(store=store, outbox=outbox, file=self.heartbeat(), config=s.health,
                             staff=s.staff, support_name=s.support_name, support_address=s.support_address,
                             timezone=s.calendar.timezone)

    def _mail(self, spool_root: Path | None, passwords: dict[str, str | None]) -> tuple[MailSource, MailSender]:
        s = self.settings
        if s.imap is not None:
            from mailbox.imap import ImapSource
            from mailbox.smtp import SmtpSender

            assert s.smtp is not None  # the config allows both or neither
            tokens = self.tokens()
            imap_auth = smtp_auth = None
            if tokens:  # OAuth2's libraries are loaded only for a config that uses it (a third of start-up)
                from mailbox.oauth2_sasl import imap_authenticator, smtp_authenticator

                mech = s.oauth2.mechanism  # type: ignore[union-attr]  # tokens exist only with [oauth2]
                imap_auth = imap_authenticator(tokens, mech) if s.imap.oauth2 else None
                smtp_auth = smtp_authenticator(tokens, mech) if s.smtp.oauth2 else None
            source = ImapSource(s.imap, passwords["imap"], authenticator=imap_auth)
            self.stack.callback(source.close)
            return source, SmtpSender(s.smtp, passwords["smtp"], authenticator=smtp_auth)
        from mailbox.spool import SpoolSender, SpoolSource

        root = spool_root or Path(s.store_path).parent / "spool"
        return SpoolSource(root, clock=self.clock.now), SpoolSender(root)


def main(argv: list[str] | None = None) -> int:
    from cli.parser import parser

    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO if args.verb == "run" else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # imapclient logs the whole protocol, bodies included, at DEBUG; flufl.bounce every detector's guess;
    # mail-parser-reply its regular expressions.
    for noisy in ("imapclient", "aiosmtplib", "asyncio", "flufl.bounce", "mailparser_reply"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from cli.exits import run_verb
    from config.settings import load_file

    settings: list[Settings] = []

    def go() -> int:
        clock = Clock(parse_now(args.now) if args.now else None)
        settings.append(load_file(args.config))
        with ExitStack() as stack:
            return args.run(args, Wiring(settings[0], clock, stack, verbose=args.verbose))

    return run_verb(go, lambda: settings[0].source if settings else None)


if __name__ == "__main__":
    sys.exit(main())

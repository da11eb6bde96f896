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
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # types only: nothing of the program is imported before main() runs
    from config.settings import Settings
    from service.cycle import Desk
    from service.mailings import MailingRunner
    from service.outbox import Outbox
    from service.ports import MailSender, MailSource
    from store.tinystore import Store

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:  # our mailbox/ must win over the standard library's, however we are started
    sys.path.insert(0, str(ROOT))

log = logging.getLogger("partnerdesk")

# The exit codes (README "Exit codes"): 2 is "fix what you gave me" (config, arguments, input files);
# 75 is EX_TEMPFAIL, "run again later"; 141 = 128 + SIGPIPE, as for any tool whose reader went away.
EXIT_ERROR, EXIT_BAD_INPUT, EXIT_RUNNING, EXIT_TEMPFAIL, EXIT_PIPE = 1, 2, 3, 75, 141
EXIT_CONFIG = EXIT_BAD_INPUT


class Clock:
    """The rules' clock: the wall clock, or --now (which then advances with real time)."""

    def __init__(self, fixed: datetime | None) -> None:
        self.fixed = fixed
        self.started = time.monotonic()

    def now(self) -> datetime:
        if self.fixed is None:
            return datetime.now(timezone.utc)
        return self.fixed + timedelta(seconds=time.monotonic() - self.started)


def parse_now(value: str) -> datetime:
    from workflows.errors import BadInput

    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise BadInput(f"--now {value!r} is not an ISO-8601 date-time like 2026-11-30T10:00:00-05:00") from None
    if dt.tzinfo is None:
        raise BadInput(f"--now {value!r} needs a UTC offset (e.g. -05:00 or Z): the rules run on US Eastern time")
    return dt.astimezone(timezone.utc)


class ReadOnlySource:
    """A mail source that reads but never marks done or moves anything (for `once --dry-run`)."""

    def __init__(self, source: MailSource) -> None:
        self.source = source
        if hasattr(source, "readonly"):
            source.readonly = True  # IMAP EXAMINE: not even \Recent changes

    def fetch_new(self, store: Store) -> Any:
        return self.source.fetch_new(store)

    @property
    def expected(self) -> int | None:
        return getattr(self.source, "expected", None)

    def mark_done(self, raw: Any) -> None:
        pass

    def quarantine(self, raw: Any, reason: str) -> None:
        pass


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

    def with_settings(self, settings: Settings) -> Wiring:
        return Wiring(settings, self.clock, self.stack, verbose=self.verbose)

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
        return Outbox(store=store, composer=Composer(support_address=s.support_address, support_name=s.support_name),
                      secret=store.secret(s.secret), support_address=s.support_address)

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
                                                     staff=s.staff, config=s.mailings))

    def desk(self, *, spool_root: Path | None = None, dry_run_dir: Path | None = None) -> Desk:
        """Everything a cycle needs, on the store this process alone may act on (the daemon lock)."""
        from config.servers import password

        s = self.settings
        # Passwords are looked up here, not at load: `threads list` needs no mail password, but the
        # intake must fail on a missing one before it opens the store or connects anywhere.
        passwords = {srv.table: password(srv, s.source) for srv in (s.imap, s.smtp) if srv is not None}
        s.require_staff()
        if dry_run_dir is not None:  # a copy of the store: nothing real changes
            tmp = Path(self.stack.enter_context(tempfile.TemporaryDirectory(prefix="partnerdesk-dry-run-")))
            copy = tmp / Path(s.store_path).name
            if Path(s.store_path).exists():
                shutil.copyfile(s.store_path, copy)
            spool_root = spool_root or Path(s.store_path).parent / "spool"
            return self.with_settings(replace(s, store_path=str(copy)))._desk(spool_root, dry_run_dir, passwords)
        return self._desk(spool_root, None, passwords)

    def _desk(self, spool_root: Path | None, dry_run_dir: Path | None, passwords: dict[str, str | None]) -> Desk:
        from mailbox.parse import parse
        from service.cycle import Desk
        from service.intake import IntakeService
        from service.promise import PromiseTicks

        s = self.settings
        store = self.store(write=True)
        store.acquire_daemon_lock()
        cutoff = s.history_before
        if s.imap is not None and cutoff is None:
            # First start on a mailbox that already holds mail: what is there now is history.
            with store.transaction():
                cutoff = store.history_cutoff()
                if cutoff is None:
                    # Whole seconds: INTERNALDATE has no fractions, and mail arriving in the
                    # very second of the first start counts as new rather than being ignored.
                    cutoff = self.clock.now().replace(microsecond=0)
                    store.set_history_cutoff(cutoff)
        source, sender = self._mail(spool_root, passwords)
        if dry_run_dir is not None:
            from mailbox.spool import SpoolSender

            source, sender = ReadOnlySource(source), SpoolSender(dry_run_dir)
        outbox = self.outbox(store)
        intake = IntakeService(store=store, settings=s.intake(), parse=parse, outbox=outbox,
                               secret=outbox.secret, history_cutoff=cutoff)
        promise = PromiseTicks(store=store, outbox=outbox, settings=s.intake(), ladder=s.ladder_config(),
                               lifecycle=s.lifecycle, digest=s.digest)
        mailings = self.mailings(store, outbox)
        # RSVPs and unsubscribe requests are claimed before threading; stale mail is called off at send time.
        intake.interceptors.append(mailings.intercept)
        outbox.cancel_checks += [promise.cancel_reason, mailings.cancel_reason]
        health = None if dry_run_dir is not None else self.health(store, outbox)
        return Desk(store=store, outbox=outbox, intake=intake, source=source, sender=sender, now=self.clock.now,
                    promise=promise, mailings=mailings, health=health)

    def heartbeat(self) -> Any:
        from store.heartbeat import HeartbeatFile

        return HeartbeatFile(self.settings.heartbeat_file, self.settings.metrics_path)

    def health(self, store: Any, outbox: Any) -> Any:
        from service.health import HealthMonitor

        s = self.settings
        return HealthMonitor(store=store, outbox=outbox, file=self.heartbeat(), config=s.health,
                             staff=s.staff, support_name=s.support_name, support_address=s.support_address)

    def _mail(self, spool_root: Path | None, passwords: dict[str, str | None]) -> tuple[MailSource, MailSender]:
        s = self.settings
        if s.imap is not None:
            from mailbox.imap import ImapSource
            from mailbox.smtp import SmtpSender

            assert s.smtp is not None  # the config allows both or neither
            source = ImapSource(s.imap, passwords["imap"])
            self.stack.callback(source.close)
            return source, SmtpSender(s.smtp, passwords["smtp"])
        from mailbox.spool import SpoolSender, SpoolSource

        root = spool_root or Path(s.store_path).parent / "spool"
        return SpoolSource(root, clock=self.clock.now), SpoolSender(root)


def main(argv: list[str] | None = None) -> int:
    from cli.parser import parser

    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO if args.verb == "run" else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # imapclient logs the whole protocol, message bodies included, at DEBUG: never ours to print.
    for noisy in ("imapclient", "aiosmtplib", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        code = _run(args)
        sys.stdout.flush()  # a closed pipe shows here at the latest, not in the interpreter's shutdown
        return code
    except BrokenPipeError:
        # `... | head`: the reader has what it wanted. No traceback, and nothing more to print.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE


def _run(args: Any) -> int:
    from config.settings import load_file
    from workflows.errors import AlreadyRunning, BadInput, ConfigError, PartnerdeskError, Transient

    settings = None
    try:
        clock = Clock(parse_now(args.now) if args.now else None)
        settings = load_file(args.config)
        with ExitStack() as stack:
            return args.run(args, Wiring(settings, clock, stack, verbose=args.verbose))
    except BadInput as e:  # an argument or an input file: the message names it
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ConfigError as e:
        message = str(e)
        if settings is not None and not message.startswith(settings.source):
            message = f"{settings.source}: {message}"  # adapters do not know the file; say which one
        print(f"config error: {message}", file=sys.stderr)
        return EXIT_CONFIG
    except AlreadyRunning as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_RUNNING
    except Transient as e:
        print(f"temporary failure: {e}; nothing was lost, run again later", file=sys.stderr)
        return EXIT_TEMPFAIL
    except PartnerdeskError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())

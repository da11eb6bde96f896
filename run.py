#!/usr/bin/env python3
"""partnerdesk: the email side of the Open Atrium Partners Program.

    python run.py [--config FILE] [--now ISO-8601] VERB ...

This is the only place that reads the config file, the environment and the
wall clock, and the only place that picks adapters and wires them to the
workflows. Nothing happens at import time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import time
import tomllib
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:  # our mailbox/ must win over the standard library's, however we are started
    sys.path.insert(0, str(ROOT))

log = logging.getLogger("partnerdesk")


# --------------------------------------------------------------------------------------
# clock
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
    from workflows.errors import ConfigError

    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--now {value!r} is not an ISO-8601 date-time like 2026-11-30T10:00:00-05:00") from None
    if dt.tzinfo is None:
        raise ConfigError(f"--now {value!r} needs a UTC offset (e.g. -05:00 or Z): the rules run on US Eastern time")
    return dt.astimezone(timezone.utc)


# --------------------------------------------------------------------------------------
# config
def load_settings(path: str | None) -> Any:
    from workflows import settings as settings_mod
    from workflows.errors import ConfigError

    if path is None:
        return settings_mod.load({"support": {"address": "support@openatrium.example"}}, "(built-in defaults)")
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    s = settings_mod.load(data, str(p))
    store = s.store_path
    if not os.path.isabs(store):  # relative to the config file, not to wherever we were started
        from dataclasses import replace

        s = replace(s, store_path=str((p.parent / store).resolve()))
    for server in (s.imap, s.smtp):
        if server is not None:
            resolve_password(server, s.source)  # fail now, before any connection
    return s


def resolve_password(server: Any, source: str) -> str | None:
    from workflows.errors import ConfigError

    section = "[imap]" if hasattr(server, "folder") else "[smtp]"
    if server.password is not None:
        return server.password
    if server.password_env:
        value = os.environ.get(server.password_env)
        if value is None:
            raise ConfigError(f"{source}: {section} password_env: the environment variable {server.password_env} "
                              f"is not set")
        return value
    if server.password_file:
        try:
            return Path(server.password_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ConfigError(f"{source}: {section} password_file: cannot read {server.password_file}: "
                              f"{e.strerror}") from None
    return None


# --------------------------------------------------------------------------------------
# wiring
@dataclass
class App:
    settings: Any
    store: Any
    service: Any
    source: Any
    sender: Any
    clock: Clock
    spool_root: Path | None
    # Scheduled work run after intake in every cycle: each is tick(now, report) and decides
    # from the store what is due (escalations, mailings). Listed explicitly in build().
    ticks: list[Callable[[datetime, Any], None]] = field(default_factory=list)
    # Checks run on each queued mail just before sending: a reason string cancels it
    # (an escalation for a thread answered in the meantime, say).
    cancel_checks: list[Callable[[dict[str, Any]], str | None]] = field(default_factory=list)

    def still_wanted(self, entry: dict[str, Any]) -> str | None:
        for check in self.cancel_checks:
            reason = check(entry)
            if reason:
                return reason
        return None


def build(settings: Any, clock: Clock, stack: ExitStack, *, spool_root: Path | None = None,
          daemon: bool = False) -> App:
    """Wire adapters to the workflows. The one place where concrete classes are chosen."""
    from mailbox.compose import Composer
    from mailbox.parse import parse
    from store.tinystore import Store
    from workflows.intake import IntakeSettings
    from workflows.service import IntakeService

    store = Store(settings.store_path)
    stack.callback(store.close)
    if daemon:
        store.acquire_daemon_lock()
    secret = store.secret(settings.secret)

    cutoff = settings.history_before
    if settings.imap is not None and cutoff is None:
        # First start on a mailbox that already holds mail: what is there now is history.
        with store.transaction():
            stored = store.meta("history_cutoff")
            if stored is None:
                # Whole seconds: INTERNALDATE has no fractions, and mail arriving in the
                # very second of the first start counts as new rather than being ignored.
                stored = clock.now().replace(microsecond=0).isoformat()
                store.set_meta("history_cutoff", stored)
        cutoff = datetime.fromisoformat(stored)

    if settings.imap is not None:
        from mailbox.imap import ImapSource
        from mailbox.smtp import SmtpSender

        source: Any = ImapSource(settings.imap, resolve_password(settings.imap, settings.source))
        stack.callback(source.close)
        sender: Any = SmtpSender(settings.smtp, resolve_password(settings.smtp, settings.source))
    else:
        from mailbox.spool import SpoolSender, SpoolSource

        spool_root = spool_root or Path(settings.store_path).parent / "spool"
        source = SpoolSource(spool_root)
        sender = SpoolSender(spool_root)

    composer = Composer(support_address=settings.support_address, support_name=settings.support_name)
    intake = IntakeSettings(
        support_address=settings.support_address,
        support_name=settings.support_name,
        staff=settings.staff,
        calendar=settings.calendar,
        acks_per_hour=settings.acks_per_hour,
    )
    service = IntakeService(store=store, settings=intake, parse=parse, composer=composer, secret=secret,
                            history_cutoff=cutoff)
    return App(settings=settings, store=store, service=service, source=source, sender=sender, clock=clock,
               spool_root=spool_root)


def cycle(app: App) -> Any:
    """One full pass: retry what is queued, take in new mail, send what it caused."""
    from workflows.service import CycleReport

    report = CycleReport()
    now = app.clock.now()
    app.service.drain_outbox(app.sender, now, report, app.still_wanted)
    for raw in app.source.fetch_new(app.store):
        app.service.take_in(raw, app.clock.now(), report, app.source)
    for tick in app.ticks:
        tick(app.clock.now(), report)
    app.service.drain_outbox(app.sender, app.clock.now(), report, app.still_wanted)
    return report


# --------------------------------------------------------------------------------------
# verbs
def cmd_once(args: argparse.Namespace, settings: Any, clock: Clock) -> int:
    with ExitStack() as stack:
        app = build(settings, clock, stack, daemon=True)
        report = cycle(app)
    for p in report.problems:
        print(f"warning: {p}", file=sys.stderr)
    print(report.summary())
    return 0


def cmd_run(args: argparse.Namespace, settings: Any, clock: Clock) -> int:
    import schedule

    from workflows.errors import ConfigError, Transient

    stop = {"flag": False}

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %s: finishing the current step, then stopping", signum)
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    with ExitStack() as stack:
        app = build(settings, clock, stack, daemon=True)
        # `schedule` only says when to tick; what is due is decided from the store and `now`,
        # because schedule forgets everything across a restart. A private Scheduler, and every
        # job wrapped: schedule does not catch exceptions, and one failure would stop the rest.
        scheduler = schedule.Scheduler()
        wake = {"mail": True}

        def safe(job: Callable[[], Any]) -> Callable[[], None]:
            def run_job() -> None:
                try:
                    job()
                except (ConfigError, KeyboardInterrupt):
                    raise
                except Exception:
                    log.exception("scheduled job %s failed; it will run again at its next time", job.__name__)
            return run_job

        def poll() -> None:
            wake["mail"] = True

        poll_seconds = settings.imap.poll_seconds if settings.imap else 5.0
        scheduler.every(max(1, int(poll_seconds))).seconds.do(safe(poll))
        backoff = 1.0
        log.info("partnerdesk running on %s (store %s)", settings.support_address, settings.store_path)
        while not stop["flag"]:
            try:
                if wake["mail"]:
                    wake["mail"] = False
                    report = cycle(app)
                    if report.counts["fetched"] or report.counts["sent"]:
                        log.info("%s", report.summary())
                    for p in report.problems:
                        log.warning("%s", p)
                scheduler.run_pending()
                backoff = 1.0
                wait = max(0.5, min(poll_seconds, scheduler.idle_seconds or poll_seconds))
                if hasattr(app.source, "wait_for_mail") and app.source.wait_for_mail(wait):
                    wake["mail"] = True
                else:
                    _sleep(wait, stop)
            except Transient as e:
                log.warning("%s; retrying in %.0f s", e, backoff)
                _sleep(backoff, stop)
                backoff = min(backoff * 2, 300.0)
    log.info("stopped")
    return 0


def _sleep(seconds: float, stop: dict[str, bool]) -> None:
    end = time.monotonic() + seconds
    while not stop["flag"] and time.monotonic() < end:
        time.sleep(min(0.2, end - time.monotonic()))


def cmd_partners(args: argparse.Namespace, settings: Any, clock: Clock) -> int:
    from store.tinystore import open_store
    from workflows.roster import merge, parse_roster

    with open_store(settings.store_path) as store:
        if args.partners_verb == "import":
            try:
                text = Path(args.file).read_text(encoding="utf-8-sig")
            except OSError as e:
                print(f"error: cannot read {args.file}: {e.strerror}", file=sys.stderr)
                return 2
            except UnicodeDecodeError:
                print(f"error: {args.file} is not UTF-8 text; save the spreadsheet as CSV UTF-8", file=sys.stderr)
                return 2
            result = parse_roster(text)
            with store.transaction():
                for p in result.partners:
                    store.save_partner(merge(store.partner(p.id), p))
            contacts = sum(len(p.contacts) for p in result.partners)
            print(f"imported {len(result.partners)} partners, {contacts} contacts from {result.rows} rows; "
                  f"rejected {len(result.rejected)}")
            for r in result.rejected:
                print(f"  {args.file}:{r.line}: {r.reason}")
            return 1 if result.rejected and not result.partners else 0
        partners = store.partners()
        if args.json:
            print(json.dumps([p.to_dict() for p in partners], indent=2))
        else:
            for p in partners:
                seats = sum(c.has_seat for c in p.contacts)
                print(f"{p.id:<16} {p.name:<30} {p.plan:<8} ${p.yearly_fee:,}/yr  renews {p.renews_on or '-'}  "
                      f"{len(p.contacts)} contacts, {seats} seats")
    return 0


def thread_json(t: Any) -> dict[str, Any]:
    d = t.to_dict()
    return {k: d[k] for k in ("id", "partner_id", "requester", "requester_name", "subject", "state", "created_at",
                              "due_at", "first_response_at", "first_responder", "seat", "sender_kind", "messages")} | {
        "events": d["events"]}


def cmd_threads(args: argparse.Namespace, settings: Any, clock: Clock) -> int:
    from store.tinystore import open_store
    from workflows.calendar import format_due

    cal = settings.calendar
    with open_store(settings.store_path) as store:
        if args.threads_verb == "show":
            t = store.thread(args.id)
            if t is None:
                print(f"error: no thread {args.id}", file=sys.stderr)
                return 1
            if args.json:
                print(json.dumps(thread_json(t), indent=2))
                return 0
            print(f"{t.id}  {t.subject}")
            print(f"  partner {t.partner_id or '-'}  requester {t.requester}  seat {'yes' if t.seat else 'no'}")
            print(f"  state {t.state}  due {format_due(t.due_at, cal) if t.due_at else '-'}")
            for e in t.events:
                print(f"  {format_due(e.at, cal, with_year=True):<40} {e.kind:<10} {e.by:<30} {e.detail[:80]}")
            return 0
        threads = store.threads()
        if args.json:
            print(json.dumps([thread_json(t) for t in threads], indent=2))
            return 0
        for t in threads:
            due = format_due(t.due_at, cal) if t.due_at else "-"
            print(f"{t.id:<8} {t.state:<19} {(t.partner_id or '-'):<14} {t.requester:<32} due {due:<34} {t.subject[:50]}")
    return 0


def cmd_states(args: argparse.Namespace, settings: Any, clock: Clock) -> int:
    from workflows.lifecycle import table_text

    print(table_text())
    return 0


DEMO_STAFF = "young@openatrium.example"


def cmd_demo(args: argparse.Namespace, settings: Any, clock: Clock) -> int:
    """The real intake workflows on sample mail, with TinyDB and a spool directory in ./partnerdesk-demo."""
    import email
    import email.message
    import email.policy
    import email.utils
    from dataclasses import replace

    from store.tinystore import open_store
    from workflows.roster import merge, parse_roster

    samples = ROOT / "templates" / "demo"
    root = Path(args.dir).resolve()
    marker = root / ".partnerdesk-demo"
    if root.exists():
        if not marker.exists():
            print(f"error: {root} exists and is not a partnerdesk demo folder; choose another with --dir",
                  file=sys.stderr)
            return 2
        shutil.rmtree(root)  # every demo starts from scratch
    root.mkdir(parents=True)
    marker.write_text("made by `python run.py demo`; deleted and rebuilt by the next demo run\n")
    if args.config is None:
        settings = replace(settings, staff=frozenset({DEMO_STAFF}), escalation=("eric@openatrium.example",))
    settings = replace(settings, store_path=str(root / "partnerdesk.json"))

    with open_store(settings.store_path) as store, store.transaction():
        for p in parse_roster((samples / "roster.csv").read_text(encoding="utf-8")).partners:
            store.save_partner(merge(store.partner(p.id), p))
    print(f"demo folder: {root}")
    print(f"roster: {len(parse_roster((samples / 'roster.csv').read_text()).partners)} partners from {samples / 'roster.csv'}")

    inbox = root / "spool" / "inbox"
    inbox.mkdir(parents=True)
    start = clock.now() - timedelta(minutes=30)
    for i, sample in enumerate(sorted((samples / "inbox").glob("*.eml"))):
        target = inbox / sample.name
        shutil.copyfile(sample, target)
        ts = (start + timedelta(minutes=i)).timestamp()
        os.utime(target, (ts, ts))  # "received" just now, one a minute

    with ExitStack() as stack:
        app = build(settings, clock, stack, spool_root=root / "spool", daemon=True)
        print("\n== pass 1: partners' requests arrive ==")
        report = cycle(app)
        print(report.summary())
        for path in report.written:
            print(f"  wrote {path}")

        # A staff member answers the first notification from a mail client: Reply, type, send.
        notes = sorted((root / "spool" / "outbox").glob("*-notify.eml"))
        if notes:
            note = email.message_from_bytes(notes[0].read_bytes(), policy=email.policy.default)
            reply = email.message.EmailMessage()
            reply["From"] = f"Young Hahn <{DEMO_STAFF}>"
            reply["To"] = str(note["Reply-To"])
            reply["Subject"] = "Re: " + str(note["Subject"])
            reply["Message-ID"] = email.utils.make_msgid(domain="openatrium.example")
            reply["In-Reply-To"] = note["Message-ID"]
            reply["References"] = f"{note.get('References', '')} {note['Message-ID']}".strip()
            reply["Date"] = email.utils.format_datetime(clock.now())
            body = note.get_body(preferencelist=("plain",)).get_content()
            quoted = "\n".join("> " + line for line in body.splitlines())
            reply.set_content("Hi! Run `drush features-revert-all` and clear the cache; that fixes it.\n\n"
                              f"On {note['Date']}, Open Atrium Support wrote:\n{quoted}\n")
            (inbox / "zz-staff-reply.eml").write_bytes(reply.as_bytes())
            print(f"\n== pass 2: {DEMO_STAFF} replies to {notes[0].name} from a mail client ==")
            report = cycle(app)
            print(report.summary())
            for path in report.written:
                print(f"  wrote {path}")

        print("\n== threads ==")
        from workflows.calendar import format_due

        for t in app.store.threads():
            due = format_due(t.due_at, settings.calendar) if t.due_at else "-"
            print(f"{t.id:<7} {t.state:<19} {(t.partner_id or '-'):<12} {t.requester:<34} due {due}")
            print(f"        {t.subject}")
        print(f"\ninspect: python run.py --config {root / 'demo.toml'} threads list --json")
        (root / "demo.toml").write_text(
            "# written by `python run.py demo`: the settings the demo used\n"
            f"[support]\naddress = \"{settings.support_address}\"\nstaff = [\"{DEMO_STAFF}\"]\n"
            f"[store]\npath = \"partnerdesk.json\"\n")
    return 0


# --------------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="TOML config file (default: built-in demo settings, local spool)")
    p.add_argument("--now", help="the time the rules see, ISO-8601 with offset (default: the wall clock)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="verb", required=True)
    d = sub.add_parser("demo", help="run the intake on sample mail with a local spool; no mail account needed")
    d.add_argument("--dir", default="partnerdesk-demo", help="where the demo keeps its store and spool")
    sub.add_parser("run", help="the daemon: watch the inbox, act, repeat")
    sub.add_parser("once", help="one full cycle, then exit")
    sub.add_parser("states", help="print the thread lifecycle table")
    pp = sub.add_parser("partners", help="the roster")
    psub = pp.add_subparsers(dest="partners_verb", required=True)
    pi = psub.add_parser("import", help="upsert partners and contacts from a CSV file")
    pi.add_argument("file")
    pl = psub.add_parser("list")
    pl.add_argument("--json", action="store_true")
    tp = sub.add_parser("threads", help="support threads")
    tsub = tp.add_subparsers(dest="threads_verb", required=True)
    tl = tsub.add_parser("list")
    tl.add_argument("--json", action="store_true")
    ts = tsub.add_parser("show")
    ts.add_argument("id")
    ts.add_argument("--json", action="store_true")
    return p


VERBS = {"once": cmd_once, "run": cmd_run, "partners": cmd_partners, "threads": cmd_threads, "states": cmd_states,
         "demo": cmd_demo}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO if args.verb == "run" else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from workflows.errors import AlreadyRunning, ConfigError, PartnerdeskError, Transient

    try:
        clock = Clock(parse_now(args.now) if args.now else None)
        settings = load_settings(args.config)
        return VERBS[args.verb](args, settings, clock)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except AlreadyRunning as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except Transient as e:
        print(f"temporary failure: {e}; nothing was lost, run again later", file=sys.stderr)
        return 75  # EX_TEMPFAIL
    except PartnerdeskError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

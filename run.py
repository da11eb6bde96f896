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
        return settings_mod.load({"support": {"address": "support@openatrium.example",
                                               "staff": ["staff@openatrium.example"]}}, "(built-in defaults)")
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
    from workflows.errors import ConfigError
    from workflows.service import IntakeService

    # Passwords are looked up here, not at load: `threads list` needs no mail password, but the
    # intake must fail on a missing one before it opens the store or connects anywhere.
    passwords = {name: resolve_password(server, settings.source)
                 for name, server in (("imap", settings.imap), ("smtp", settings.smtp)) if server is not None}
    if not settings.staff:
        # Checked here, not at load: read-only verbs work without staff, the intake cannot.
        raise ConfigError(f"{settings.source}: [support] staff: list at least one staff address; they are told of "
                          f"every request, and only their replies reach partners")
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

        source: Any = ImapSource(settings.imap, passwords["imap"])
        stack.callback(source.close)
        sender: Any = SmtpSender(settings.smtp, passwords["smtp"])
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
        team=frozenset(settings.escalation) | frozenset(a for a in (settings.program_lead,) if a),
        calendar=settings.calendar,
        acks_per_hour=settings.acks_per_hour,
        reopen_days=settings.lifecycle.reopen_days if settings.lifecycle else 30,
    )
    service = IntakeService(store=store, settings=intake, parse=parse, composer=composer, secret=secret,
                            history_cutoff=cutoff)
    app = App(settings=settings, store=store, service=service, source=source, sender=sender, clock=clock,
              spool_root=spool_root)

    # Issue 3: the reply-time promise (escalation ladder, auto-close, daily digest).
    promise = promise_ticks(settings, store, service, intake)
    app.ticks.append(promise.tick)
    app.cancel_checks.append(promise.cancel_reason)

    # Issue 4: scheduled mailings (quarterly calls, renewals, trainings, welcome). The tick decides
    # from ledger + roster + now; RSVPs and unsubscribe requests are claimed before threading.
    mailings = mailing_runner(settings, store, composer, secret)
    app.ticks.append(mailings.tick)
    app.cancel_checks.append(mailings.cancel_reason)
    service.interceptors.append(mailings.intercept)
    return app


def mailing_runner(settings: Any, store: Any, composer: Any, secret: bytes) -> Any:
    from mailbox.ical import parse_replies
    from workflows.mailings.runner import MailingRunner, RunnerSettings

    config = settings.mailings  # parsed and checked once, when the config was loaded
    return MailingRunner(store=store, composer=composer, secret=secret, parse_replies=parse_replies,
                         settings=RunnerSettings(support_address=settings.support_address,
                                                 support_name=settings.support_name, staff=settings.staff,
                                                 config=config))


def ladder_config(settings: Any) -> Any:
    from workflows.escalation import DEFAULT_STAGES, LadderConfig

    return LadderConfig(support_address=settings.support_address, support_name=settings.support_name,
                        staff=settings.staff, escalation=settings.escalation, program_lead=settings.program_lead,
                        stages=tuple(settings.ladder) or DEFAULT_STAGES)


def promise_ticks(settings: Any, store: Any, service: Any, intake: Any) -> Any:
    from workflows.autoclose import LifecycleConfig
    from workflows.digest import DigestConfig
    from workflows.ticks import PromiseTicks

    return PromiseTicks(store=store, service=service, settings=intake, ladder=ladder_config(settings),
                        lifecycle=settings.lifecycle or LifecycleConfig(), digest=settings.digest or DigestConfig())


INTAKE_BATCH = 50  # messages per durable store write; nothing is sent or marked done before it


def cycle(app: App) -> Any:
    """One full pass: retry what is queued, take in new mail, send what it caused.

    An IMAP outage (Transient from the source) skips only the intake: escalations, digests,
    auto-close and mailings still fire and the outbox is still drained; then the Transient is
    re-raised, with the report attached as ``.report``, so the daemon backs off and `once` exits 75.
    """
    from workflows.errors import Transient
    from workflows.service import CycleReport

    report = CycleReport()
    now = app.clock.now()
    app.service.drain_outbox(app.sender, now, report, app.still_wanted)
    batch: list[Any] = []
    intake_failed: Transient | None = None
    try:
        for raw in app.source.fetch_new(app.store):
            batch.append(raw)
            if len(batch) >= INTAKE_BATCH:
                app.service.take_in_many(batch, app.clock.now(), report, app.source)
                batch = []
    except Transient as e:  # reported by whoever catches it below
        intake_failed = e
    app.service.take_in_many(batch, app.clock.now(), report, app.source)  # what arrived before a failure
    for tick in app.ticks:
        tick(app.clock.now(), report)
    app.service.drain_outbox(app.sender, app.clock.now(), report, app.still_wanted)
    if intake_failed is not None:
        intake_failed.report = report  # type: ignore[attr-defined]
        raise intake_failed
    return report


# --------------------------------------------------------------------------------------
# verbs
class ReadOnlySource:
    """A mail source that reads but never marks done or moves anything (for `once --dry-run`)."""

    def __init__(self, source: Any) -> None:
        self.source = source
        if hasattr(source, "readonly"):
            source.readonly = True  # IMAP EXAMINE: not even \Recent changes

    def fetch_new(self, store: Any) -> Any:
        return self.source.fetch_new(store)

    def mark_done(self, raw: Any) -> None:
        pass

    def quarantine(self, raw: Any, reason: str) -> None:
        pass


def cmd_once(args: argparse.Namespace, settings: Any, clock: Clock) -> int:
    if getattr(args, "dry_run", False):
        return dry_run(args, settings, clock)
    from workflows.errors import Transient

    with ExitStack() as stack:
        app = build(settings, clock, stack, daemon=True)
        try:
            report = cycle(app)
        except Transient as e:  # the intake failed; the rest of the cycle ran: say what it did
            done = getattr(e, "report", None)
            if done is not None:  # on stderr: this is not a successful cycle's summary
                for p in done.problems:
                    print(f"warning: {p}", file=sys.stderr)
                print(f"before the failure: {done.summary()}", file=sys.stderr)
            raise
    for p in report.problems:
        print(f"warning: {p}", file=sys.stderr)
    print(report.summary())
    if args.verbose:  # what became of each message, and why
        for line in report.actions:
            print(f"  {line}")
    return 0


def dry_run(args: argparse.Namespace, settings: Any, clock: Clock) -> int:
    """One cycle on a copy of the store: what would be sent goes to .eml files; nothing is sent or changed.

    The real store is only read (copied); the mail source is wrapped so nothing is marked
    done or moved on the server; the sender writes files instead of talking SMTP.
    """
    import tempfile
    from dataclasses import replace

    from mailbox.spool import SpoolSender

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    out_root = Path(args.dry_run_dir or "partnerdesk-dry-run").resolve() / stamp
    real_store = Path(settings.store_path)
    spool_root = real_store.parent / "spool"
    with tempfile.TemporaryDirectory(prefix="partnerdesk-dry-run-") as tmp, ExitStack() as stack:
        copy = Path(tmp) / real_store.name
        if real_store.exists():
            shutil.copyfile(real_store, copy)
        app = build(replace(settings, store_path=str(copy)), clock, stack, spool_root=spool_root, daemon=True)
        app.source = ReadOnlySource(app.source)
        app.sender = SpoolSender(out_root)
        report = cycle(app)
    for p in report.problems:
        print(f"warning: {p}", file=sys.stderr)
    print(f"dry run at {clock.now().isoformat()}: nothing was sent, nothing changed")
    print(report.summary())
    for line in report.actions:
        print(f"  {line}")
    files = sorted((out_root / "outbox").glob("*.eml"))
    print(f"would send {len(files)} mail(s); written to {out_root / 'outbox'}")
    for f in files:
        print(f"  {f.name}")
    return 0


def cmd_run(args: argparse.Namespace, settings: Any, clock: Clock) -> int:
    import schedule

    from workflows.errors import AlreadyRunning, ConfigError, Transient

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
                scheduler.run_pending()  # first: a poll that fell due while we waited wakes this pass
                if wake["mail"]:
                    wake["mail"] = False
                    report = cycle(app)
                    if report.counts["fetched"] or report.counts["sent"]:
                        log.info("%s", report.summary())
                    for p in report.problems:
                        log.warning("%s", p)
                backoff = 1.0
                wait = max(0.5, min(poll_seconds, scheduler.idle_seconds or poll_seconds))
                if hasattr(app.source, "wait_for_mail") and app.source.wait_for_mail(
                        wait, should_stop=lambda: stop["flag"]):
                    wake["mail"] = True
                else:
                    _sleep(wait, stop)
            except Transient as e:
                for p in getattr(getattr(e, "report", None), "problems", ()):
                    log.warning("%s", p)
                log.warning("%s; retrying in %.0f s", e, backoff)
                _sleep(backoff, stop)
                backoff = min(backoff * 2, 300.0)
            except (ConfigError, AlreadyRunning):
                raise
            except Exception:
                # A bug or a full disk must not end the daemon: say it loudly, wait, try again.
                # Nothing is lost: every step is redone from the server and the store.
                log.exception("cycle failed; retrying in %.0f s", backoff)
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
            welcome = mailing_runner(settings, store, None, b"")
            notes = []
            with store.transaction():
                for p in result.partners:
                    old = store.partner(p.id)
                    merged = merge(old, p)
                    store.save_partner(merged)
                    if merged.renews_on != p.renews_on:
                        notes.append(f"  {p.id}: kept renewal date {merged.renews_on} (recorded payment); the sheet "
                                     f"says {p.renews_on or 'nothing'}")
                    if old is None:  # a new partner: the next cycle sends the welcome mail
                        welcome.request_welcome(p.id, clock.now())
            contacts = sum(len(p.contacts) for p in result.partners)
            print(f"imported {len(result.partners)} partners, {contacts} contacts from {result.rows} rows; "
                  f"rejected {len(result.rejected)}")
            for note in notes:
                print(note)
            for r in result.rejected:
                print(f"  {args.file}:{r.line}: {r.reason}")
            return 1 if result.rejected and not result.partners else 0
        if args.partners_verb in ("renew", "trained"):
            return partners_mailing_verb(args, settings, clock, store)
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


def promise_info(t: Any, now: datetime, settings: Any, ladder: Any) -> dict[str, Any]:
    """What `threads` shows about the reply-time promise: clock, due (ET), business time waited, ladder."""
    from workflows import escalation, sla
    from workflows.calendar import format_due

    cal = settings.calendar
    info: dict[str, Any] = sla.summary(t, now, cal)
    info["stage"] = escalation.current_stage(t) if sla.has_clock(t) else "-"
    nxt = escalation.next_stage(t, ladder, cal) if sla.has_clock(t) else None
    info["next_stage"] = (f"{nxt[0].name} at {format_due(nxt[1], cal)} to "
                          f"{', '.join(escalation.recipients(nxt[0], t, ladder)) or '-'}") if nxt else "-"
    info["assignee"] = t.extra.get("assignee", "")
    info["previous"] = t.extra.get("previous", "")
    return info


def cmd_threads(args: argparse.Namespace, settings: Any, clock: Clock) -> int:
    from store.tinystore import open_store
    from workflows.calendar import format_due

    cal = settings.calendar
    now = clock.now()
    ladder = ladder_config(settings)
    with open_store(settings.store_path) as store:
        if args.threads_verb == "show":
            t = store.thread(args.id)
            if t is None:
                print(f"error: no thread {args.id}", file=sys.stderr)
                return 1
            info = promise_info(t, now, settings, ladder)
            if args.json:
                print(json.dumps(thread_json(t) | {"promise": info}, indent=2))
                return 0
            print(f"{t.id}  {t.subject}")
            print(f"  partner {t.partner_id or '-'}  requester {t.requester}  seat {'yes' if t.seat else 'no'}"
                  + (f"  assigned to {info['assignee']}" if info["assignee"] else "")
                  + (f"  continues {info['previous']}" if info["previous"] else ""))
            print(f"  state {t.state}  clock {info['clock']}  due {info['due']} {info['overdue']}  "
                  f"waited {info['waited']} (business time)")
            print(f"  ladder: fired {info['stage']}; next {info['next_stage']}")
            print("  timeline (ET):")
            for e in t.events:
                detail = " ".join(e.detail.split())
                print(f"  {format_due(e.at, cal, with_year=True):<40} {e.kind:<14} {e.by:<30} {detail[:100]}")
            return 0
        threads = store.threads()
        if args.json:
            print(json.dumps([thread_json(t) | {"promise": promise_info(t, now, settings, ladder)}
                              for t in threads], indent=2))
            return 0
        print(f"{'thread':<8} {'state':<19} {'due (ET)':<34} {'waited':<8} {'ladder':<13} {'partner':<14} "
              f"{'requester':<30} subject")
        for t in threads:
            info = promise_info(t, now, settings, ladder)
            due = info["due"] + (" !" if info["overdue"] else "")
            print(f"{t.id:<8} {t.state:<19} {due:<34} {info['waited']:<8} {info['stage']:<13} "
                  f"{(t.partner_id or '-'):<14} {t.requester:<30} {t.subject[:50]}")
    return 0


def cmd_states(args: argparse.Namespace, settings: Any, clock: Clock) -> int:
    from workflows.lifecycle import table_text

    print(table_text())
    return 0


DEMO_STAFF = "young@openatrium.example"


def _print_demo_report(report: Any) -> None:
    print(report.summary())
    for line in report.actions:
        print(f"  {line.removeprefix('spool:')}")
    for path in report.written:
        print(f"  wrote {path}")


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
        _print_demo_report(report)

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
            _print_demo_report(report)

        print("\n== threads ==")
        from workflows.calendar import format_due

        for t in app.store.threads():
            due = format_due(t.due_at, settings.calendar) if t.due_at else "-"
            print(f"{t.id:<7} {t.state:<19} {(t.partner_id or '-'):<12} {t.requester:<34} due {due}")
            print(f"        {t.subject}")
        print(f"\ninspect: python3 run.py --config {root / 'demo.toml'} threads list --json")
        (root / "demo.toml").write_text(
            "# written by `python run.py demo`: the settings the demo used\n"
            f"[support]\naddress = \"{settings.support_address}\"\nstaff = [\"{DEMO_STAFF}\"]\n"
            f"[store]\npath = \"partnerdesk.json\"\n")
    return 0


# --------------------------------------------------------------------------------------
# issue 4: scheduled mailings
def _local_moment(value: str, tz: Any, end_of_day: bool = False) -> datetime:
    """A CLI date or date-time; without an offset it is New York time (the program's)."""
    from workflows.errors import ConfigError

    try:
        if len(value) == 10:
            from datetime import date as date_

            d = date_.fromisoformat(value)
            dt = datetime(d.year, d.month, d.day, tzinfo=tz) + (timedelta(days=1) if end_of_day else timedelta())
        else:
            dt = datetime.fromisoformat(value)
            dt = dt.replace(tzinfo=tz) if dt.tzinfo is None else dt
    except ValueError:
        raise ConfigError(f"{value!r} is not a date like 2027-03-31 or a date-time like 2027-03-31T10:00") from None
    return dt.astimezone(timezone.utc)


def partners_mailing_verb(args: argparse.Namespace, settings: Any, clock: Clock, store: Any) -> int:
    from datetime import date as date_

    runner = mailing_runner(settings, store, None, b"")
    what = args.until if args.partners_verb == "renew" else args.on
    try:
        day = date_.fromisoformat(what)
    except ValueError:
        print(f"error: {what!r} is not a date like 2028-03-31", file=sys.stderr)
        return 2
    if args.partners_verb == "renew":
        try:
            p, stopped, cancelled = runner.record_renewal(args.id, day, clock.now())
        except KeyError:
            print(f"error: no partner {args.id}; see `partners list`", file=sys.stderr)
            return 1
        print(f"{p.id}: renewal recorded, paid until {day.isoformat()} ({p.plan} plan, ${p.yearly_fee:,}); "
              f"{len(stopped)} remaining notice(s) of the old term stopped, {cancelled} queued one(s) cancelled")
        return 0
    today = clock.now().astimezone(settings.calendar.tz()).date()
    if day > today:
        print(f"error: {day.isoformat()} is in the future; record a training once it is completed (it grants "
              f"the seat)", file=sys.stderr)
        return 2
    try:
        p = runner.record_training(args.address, day)
    except KeyError:
        print(f"error: {args.address} is not a contact of any partner; add it with `partners import`",
              file=sys.stderr)
        return 1
    from workflows.mailings.trainings import seats_used

    print(f"{args.address.lower()} ({p.id}) trained on {day.isoformat()}: holds a seat in the support channel; "
          f"{p.id} has used {seats_used(p, day)} of its training places this term")
    return 0


def cmd_mailings(args: argparse.Namespace, settings: Any, clock: Clock) -> int:
    from mailbox.compose import Composer
    from store.tinystore import open_store
    from workflows.mailings import plan as plan_mod
    from workflows.mailings.calls import call_dates
    from workflows.mailings.due import MAILINGS, format_when
    from workflows.service import CycleReport

    verb = args.mailings_verb
    now = clock.now()
    if verb == "send" and not args.dry_run:
        with ExitStack() as stack:
            app = build(settings, clock, stack, daemon=True)
            runner = mailing_runner(settings, app.store, app.service.composer, app.service.secret)
            report = CycleReport()
            queued, skipped = runner.tick(now, report, only=args.name)
            app.service.drain_outbox(app.sender, clock.now(), report, app.still_wanted)
        for p in report.problems:
            print(f"warning: {p}", file=sys.stderr)
        print(f"{args.name}: queued {queued}, skipped {skipped}; {report.summary()}")
        return 0
    with open_store(settings.store_path) as store:
        composer = Composer(support_address=settings.support_address, support_name=settings.support_name)
        runner = mailing_runner(settings, store, composer, store.secret(settings.secret))
        cfg = runner.s.config
        tz = cfg.tz()
        if verb == "list":
            counts: dict[tuple[str, str], int] = {}
            for e in store.ledger_all():
                k = (e.get("mailing", "?"), e.get("status", "?"))
                counts[k] = counts.get(k, 0) + 1
            print("mailings (ledger: queued / skipped):")
            for name, text in MAILINGS.items():
                print(f"  {name:<22} {counts.get((name, 'queued'), 0):>4} / {counts.get((name, 'skipped'), 0):<4} "
                      f"{text}")
            print(f"enabled: {', '.join(sorted(cfg.enabled))}")
            calls = call_dates(cfg.calls, now, now + timedelta(days=400))
            print(f"upcoming calls ({cfg.calls.title}; invitation {cfg.calls.invite_days_before} days before):")
            for c in calls[:5]:
                print(f"  {c.id:<22} {format_when(c.start, tz)}")
            if not calls:
                print("  none: add [calls] rrule/first or [[calls.dates]] to the config")
            print("upcoming trainings:")
            trs = [t for t in cfg.trainings.dates if t.start > now]
            for t in trs:
                print(f"  {t.id:<22} {format_when(t.start, tz)}  {t.title}")
            if not trs:
                print("  none: add [[trainings.dates]] to the config")
            print(f"renewal notices: {', '.join(str(o) for o in cfg.renewals.offsets)} days before the renewal date")
            print(f"unsubscribed: {len(runner.unsubscribed())}; RSVPs: {len(runner.rsvps())}; "
                  f"contacts with delivery failures: {len(runner.contact_failures())}")
            return 0
        if verb == "plan":
            start = _local_moment(args.start, tz)
            end = _local_moment(args.end, tz, end_of_day=True)
            steps = plan_mod.simulate(store.partners(), runner.ledger(), cfg, start, end,
                                      welcome_requests=runner.welcome_requests(), unsubscribed=runner.unsubscribed())
            for step in steps:
                print(plan_mod.describe_step(step, tz))
            sent = sum(s.sent for s in steps)
            print(f"-- {sent} mail(s) would go out, {len(steps) - sent} skipped, "
                  f"{format_when(start, tz)} to {format_when(end, tz)}")
            return 0
        if verb == "preview":
            partner = store.partner(args.partner)
            if partner is None:
                print(f"error: no partner {args.partner}; see `partners list`", file=sys.stderr)
                return 1
            try:
                d = plan_mod.preview(args.name, partner, cfg, now)
            except ValueError as e:
                print(f"error: {e}", file=sys.stderr)
                return 1
            _, _, raw = runner.render(d, now)
            if args.out:
                Path(args.out).write_bytes(raw)
                print(f"wrote {args.out}: {d.mailing} to {d.recipient} ({d.why})")
            else:
                sys.stdout.write(raw.decode("ascii"))
            return 0
        if verb == "send":  # --dry-run
            send, skip = runner.plan(now, only=args.name)
            for d in send:
                print(f"would send  {d.mailing:<22} {d.recipient:<34} {d.subject}  ({d.why})")
            for d in skip:
                print(f"would skip  {d.mailing:<22} {d.recipient:<34} {d.reason}")
            print(f"-- {len(send)} to send, {len(skip)} to skip (dry run: nothing recorded)")
            return 0
        if verb == "rsvps":
            rows = runner.rsvps(args.call)
            for r in rows:
                print(f"{r['call_id']:<22} {r['attendee']:<34} {r['partstat']:<12} {r['at']}")
            if not rows:
                print("no RSVPs recorded" + (f" for {args.call}" if args.call else ""))
            return 0
    return 2


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
    once = sub.add_parser("once", help="one full cycle, then exit")
    once.add_argument("--dry-run", action="store_true",
                      help="work on a copy of the store; write the mail it would send as .eml files; send nothing")
    once.add_argument("--dry-run-dir", help="where --dry-run writes (default ./partnerdesk-dry-run/<timestamp>)")
    sub.add_parser("states", help="print the thread lifecycle table")
    pp = sub.add_parser("partners", help="the roster")
    psub = pp.add_subparsers(dest="partners_verb", required=True)
    pi = psub.add_parser("import", help="upsert partners and contacts from a CSV file")
    pi.add_argument("file")
    pl = psub.add_parser("list")
    pl.add_argument("--json", action="store_true")
    pr = psub.add_parser("renew", help="record a payment: the old term's renewal notices stop, a new term begins")
    pr.add_argument("id")
    pr.add_argument("--until", required=True, help="the new term's end date, e.g. 2028-03-31")
    ptr = psub.add_parser("trained", help="record that a contact completed a training (uses a seat, grants "
                                          "a channel seat)")
    ptr.add_argument("address")
    ptr.add_argument("--on", required=True, help="the training date, e.g. 2027-02-10")
    mp = sub.add_parser("mailings", help="scheduled mailings: calls, renewal notices, trainings, welcome")
    msub = mp.add_subparsers(dest="mailings_verb", required=True)
    msub.add_parser("list", help="the mailings, upcoming calls and trainings, ledger counts")
    mpl = msub.add_parser("plan", help="every mail that would go out between two dates, and every skip")
    mpl.add_argument("--from", dest="start", required=True, help="date or date-time (New York time if no offset)")
    mpl.add_argument("--to", dest="end", required=True)
    mpv = msub.add_parser("preview", help="render one mail for a partner, to stdout or an .eml file")
    mpv.add_argument("name", help="mailing name (see `mailings list`)")
    mpv.add_argument("--partner", required=True)
    mpv.add_argument("--out", help="write the message to this .eml file instead of printing it")
    ms = msub.add_parser("send", help="queue (and send) what is due now for one mailing")
    ms.add_argument("name", help="mailing name or group: calls, renewals, trainings, welcome")
    ms.add_argument("--dry-run", action="store_true", help="only show what would be queued and skipped")
    mr = msub.add_parser("rsvps", help="calendar replies received for a call")
    mr.add_argument("call", nargs="?", help="call id, e.g. call-2027-01-12 (default: all)")
    tp = sub.add_parser("threads", help="support threads")
    tsub = tp.add_subparsers(dest="threads_verb", required=True)
    tl = tsub.add_parser("list")
    tl.add_argument("--json", action="store_true")
    ts = tsub.add_parser("show")
    ts.add_argument("id")
    ts.add_argument("--json", action="store_true")
    op = sub.add_parser("outbox", help="outgoing mail: what is queued, sent, failed; put failed mail back")
    osub = op.add_subparsers(dest="outbox_verb", required=True)
    ol = osub.add_parser("list", help="outbox entries, oldest first")
    ol.add_argument("--status", choices=("pending", "sent", "failed", "cancelled"), help="only entries in this state")
    ol.add_argument("--json", action="store_true")
    orr = osub.add_parser("retry", help="put failed mail back in the queue; the next cycle sends it")
    which = orr.add_mutually_exclusive_group(required=True)
    which.add_argument("key", nargs="?", help="the entry's key (see `outbox list --status failed`)")
    which.add_argument("--all-failed", action="store_true", help="every failed entry")
    return p


def cmd_outbox(args: argparse.Namespace, settings: Any, clock: Clock) -> int:
    from store.tinystore import open_store

    with open_store(settings.store_path) as store:
        if args.outbox_verb == "list":
            rows = store.outbox(args.status)
            if args.json:
                print(json.dumps([{k: v for k, v in e.items() if k != "raw"} for e in rows], indent=2))
                return 0
            for e in rows:
                detail = " ".join(str(e.get("detail", "")).split())
                print(f"{e['key']:<44} {e['status']:<9} {e.get('kind', ''):<16} tries {e.get('attempts', 0):<3} "
                      f"to {', '.join(e.get('rcpt_to', ()))}" + (f"  ({detail[:120]})" if detail else ""))
            print(f"-- {len(rows)} entr{'y' if len(rows) == 1 else 'ies'}" + (f" {args.status}" if args.status else ""))
            return 0
        # retry: failed -> pending, with a fresh retry window; the next cycle sends it
        failed = {e["key"]: e for e in store.outbox("failed")}
        if args.all_failed:
            keys = list(failed)
        else:
            if args.key not in failed:
                known = {e["key"]: e["status"] for e in store.outbox()}
                why = f"it is {known[args.key]}, not failed" if args.key in known else "no such entry"
                print(f"error: cannot retry {args.key}: {why}; see `outbox list --status failed`", file=sys.stderr)
                return 1
            keys = [args.key]
        now = clock.now().isoformat()
        with store.transaction():
            for key in keys:
                store.outbox_update(key, status="pending", attempts=0, next_attempt="", first_failed_at=None,
                                    failure_reported=False, finished_at=None,
                                    detail=f"put back by `outbox retry` at {now}; was: {failed[key].get('detail', '')}")
        print(f"{len(keys)} failed mail(s) put back in the queue; the next cycle (`once` or the daemon) sends them")
        return 0


VERBS = {"once": cmd_once, "run": cmd_run, "partners": cmd_partners, "threads": cmd_threads, "states": cmd_states,
         "demo": cmd_demo, "mailings": lambda *a: cmd_mailings(*a), "outbox": cmd_outbox}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO if args.verb == "run" else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # imapclient logs the whole protocol, message bodies included, at DEBUG: never ours to print.
    for noisy in ("imapclient", "aiosmtplib", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from workflows.errors import AlreadyRunning, ConfigError, PartnerdeskError, Transient

    settings = None
    try:
        clock = Clock(parse_now(args.now) if args.now else None)
        settings = load_settings(args.config)
        return VERBS[args.verb](args, settings, clock)
    except ConfigError as e:
        message = str(e)
        if settings is not None and not message.startswith(settings.source):
            message = f"{settings.source}: {message}"  # adapters do not know the file; say which one
        print(f"config error: {message}", file=sys.stderr)
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

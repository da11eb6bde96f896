"""`report --out DIR`: the status report, one static HTML page (inline CSS and SVG, no script, nothing
fetched), from the store as it is now. The daemon and `once` refresh it after every cycle when the
config has ``[report] dir``. The figures are workflows/report.py's; this module reads the store, renders
templates/report.html.j2 with autoescaping, and writes the file atomically (temp file, fsync, rename), so
a browser or a web server never sees half a page."""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from config.settings import Settings
from service.ports import Store
from workflows.calendar import format_duration
from workflows.report import Report, figures

from .common import error
from .context import Context
from .progress import progress

log = logging.getLogger("partnerdesk.report")
PAGE = "index.html"
PROGRESS_FROM = 2000  # threads in the store: below, the page is written before a bar could say anything


def add_parser(sub: argparse._SubParsersAction) -> None:
    rp = sub.add_parser("report", help="write the status report (one HTML page) into a folder",
                        description="Write the status report: open threads by due time, response times per month "
                                    "and partner, escalations, mailings, roster health. One HTML file, readable "
                                    "in any browser and printable; nothing is loaded from the network.")
    rp.add_argument("--out", help="the folder to write index.html into (default: [report] dir of the config)")
    rp.set_defaults(run=run)


def build(store: Store, settings: Settings, now: datetime, bar: Any = None) -> Report:
    threads = store.threads()
    if bar is not None and len(threads) >= PROGRESS_FROM:  # a store worth a bar: four steps, each a while
        bar.set_total(4)
    step = bar.update if bar is not None else (lambda n=1: None)
    step(1)  # the threads are read
    bounced = frozenset(mid for r in store.automatic_mail() if r.kind == "bounce" and r.failures for mid in r.about)
    data = dict(partners=store.partners(), ledger=store.ledger_all(), entries=store.outbox(),
                delivery=store.delivery_states(), bounced=bounced)
    step(1)
    report = figures(threads=threads, **data, now=now, cal=settings.calendar,
                     seats_per_term=settings.mailings.trainings.seats_per_term,
                     grace_days=settings.mailings.renewals.grace_days)
    step(1)
    return report


def render(report: Report, settings: Settings, templates: Path) -> str:
    env = Environment(loader=FileSystemLoader(str(templates)), undefined=StrictUndefined,
                      autoescape=select_autoescape(default=True, default_for_string=True), trim_blocks=True,
                      lstrip_blocks=True)
    cal = settings.calendar
    hours = f"{cal.opens:%H:%M}–{cal.closes:%H:%M} {cal.timezone}"
    return env.get_template("report.html.j2").render(
        r=report, program=settings.mailings.program.name, promise=format_duration(cal.response_time()), hours=hours)


def write(store: Store, settings: Settings, now: datetime, folder: Path, templates: Path, bar: Any = None) -> Path:
    """Render the report and put it at ``folder/index.html`` in one rename."""
    html = render(build(store, settings, now, bar), settings, templates)
    if bar is not None:
        bar.update(1)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / PAGE
    fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(html)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # a web server may serve it
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return target


def refresh(store: Store, ctx: Context) -> None:
    """After a cycle (daemon, `once`): rewrite the report if ``[report] dir`` is set; never stop the cycle."""
    folder = ctx.settings.report_dir
    if not folder:
        return
    try:
        write(store, ctx.settings, ctx.clock.now(), Path(folder), ctx.root / "templates")
    except Exception:
        log.exception("the status report in %s could not be written; the next cycle tries again", folder)


def run(args: argparse.Namespace, ctx: Context) -> int:
    folder = args.out or ctx.settings.report_dir
    if not folder:
        error("report: say where to write it: --out DIR (or [report] dir in the config)")
        return 2
    try:
        with progress(None, "writing the report", unit="step") as bar:
            path = write(ctx.store(), ctx.settings, ctx.clock.now(), Path(folder), ctx.root / "templates", bar)
    except OSError as e:
        error(f"report: cannot write to {folder}: {e.strerror or e}; pick a folder you can write to")
        return 2
    print(f"wrote {path}")
    return 0

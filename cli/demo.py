"""`demo`: the real intake on the sample mail in templates/demo/, with TinyDB and a local spool."""

from __future__ import annotations

import argparse
import email
import email.message
import email.policy
import email.utils
import shutil
from dataclasses import replace
from pathlib import Path

from service.cycle import cycle
from service.report import CycleReport
from workflows.calendar import format_due
from workflows.roster import parse_roster

from .common import error
from .context import Context

DEMO_STAFF = "young@openatrium.example"


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("demo", help="run the intake on sample mail with a local spool; no mail account needed")
    d.add_argument("--dir", default="partnerdesk-demo", help="where the demo keeps its store and spool")
    d.set_defaults(run=run)


def _print(report: CycleReport) -> None:
    print(report.summary())
    for line in report.actions:
        print(f"  {line.removeprefix('spool:')}")
    for path in report.written:
        print(f"  wrote {path}")


def _staff_reply(note: Path, ctx: Context) -> bytes:
    """What a staff member's mail client sends on Reply to a notification: quoted text and all."""
    msg = email.message_from_bytes(note.read_bytes(), policy=email.policy.default)
    reply = email.message.EmailMessage()
    reply["From"] = f"Young Hahn <{DEMO_STAFF}>"
    reply["To"] = str(msg["Reply-To"])
    reply["Subject"] = "Re: " + str(msg["Subject"])
    reply["Message-ID"] = email.utils.make_msgid(domain="openatrium.example")
    reply["In-Reply-To"] = msg["Message-ID"]
    reply["References"] = f"{msg.get('References', '')} {msg['Message-ID']}".strip()
    reply["Date"] = email.utils.format_datetime(ctx.clock.now())
    part = msg.get_body(preferencelist=("plain",))
    body = part.get_content() if part is not None else ""
    quoted = "\n".join("> " + line for line in body.splitlines())
    reply.set_content("Hi! Run `drush features-revert-all` and clear the cache; that fixes it.\n\n"
                      f"On {msg['Date']}, Open Atrium Support wrote:\n{quoted}\n")
    return reply.as_bytes()


def run(args: argparse.Namespace, ctx: Context) -> int:
    samples = ctx.root / "templates" / "demo"
    root = Path(args.dir).resolve()
    marker = root / ".partnerdesk-demo"
    if root.exists():
        if not marker.exists():
            error(f"{root} exists and is not a partnerdesk demo folder; choose another with --dir")
            return 2
        shutil.rmtree(root)  # every demo starts from scratch
    root.mkdir(parents=True)
    marker.write_text("made by `python run.py demo`; deleted and rebuilt by the next demo run\n")
    settings = ctx.settings
    if args.config is None:
        settings = replace(settings, staff=frozenset({DEMO_STAFF}), escalation=("eric@openatrium.example",))
    ctx = ctx.with_settings(replace(settings, store_path=str(root / "partnerdesk.json")))

    sheet = parse_roster((samples / "roster.csv").read_text(encoding="utf-8"))
    with ctx.store(write=True).transaction():  # the sample partners, without welcome mail
        for p in sheet.partners:
            ctx.store(write=True).save_partner(p)
    print(f"demo folder: {root}")
    print(f"roster: {len(sheet.partners)} partners from {samples / 'roster.csv'}")

    inbox = root / "spool" / "inbox"
    inbox.mkdir(parents=True)
    for sample in sorted((samples / "inbox").glob("*.eml")):  # received when the first pass sees them
        shutil.copyfile(sample, inbox / sample.name)

    desk = ctx.desk(spool_root=root / "spool")
    print("\n== pass 1: partners' requests arrive ==")
    _print(cycle(desk))

    # A staff member answers the first notification from a mail client: Reply, type, send.
    notes = sorted((root / "spool" / "outbox").glob("*-notify.eml"))
    if notes:
        (inbox / "zz-staff-reply.eml").write_bytes(_staff_reply(notes[0], ctx))
        print(f"\n== pass 2: {DEMO_STAFF} replies to {notes[0].name} from a mail client ==")
        _print(cycle(desk))

    print("\n== threads ==")
    for t in desk.store.threads():
        due = format_due(t.due_at, settings.calendar) if t.due_at else "-"
        print(f"{t.id:<7} {t.state:<19} {(t.partner_id or '-'):<12} {t.requester:<34} due {due}")
        print(f"        {t.subject}")
    print("\n== automatic mail (never work) and quarantine ==")
    for r in desk.store.automatic_mail():
        print(f"{r.kind:<14} {r.sender:<34} {r.filed_with or 'not work'}: {r.subject}")
    for q in desk.store.quarantined():
        print(f"quarantined    {q['source'].removeprefix('spool:'):<34} {q['reason'].splitlines()[0][:90]}")
    print(f"\ninspect: python3 run.py --config {root / 'demo.toml'} threads list --json")
    print(f"         python3 run.py --config {root / 'demo.toml'} automatic list")
    (root / "demo.toml").write_text(
        "# written by `python run.py demo`: the settings the demo used\n"
        f"[support]\naddress = \"{settings.support_address}\"\nstaff = [\"{DEMO_STAFF}\"]\n"
        f"[store]\npath = \"partnerdesk.json\"\n")
    return 0

"""Five weeks of the program, played through the real program (run.py in spool mode, `--now`), for the
status report's tests: requests answered in time and late, one left to escalate, a partner with no seat, a
lapsed partner (its call invitation held, its renewal notice sent and bounced), welcome mails, renewal
notices (some superseded), call invitations.

``build(folder)`` returns the config path; the store is ``folder/data/pd.json``.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import reply_styles

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = json.loads((ROOT / "templates" / "samples" / "mailings.json").read_text())
ROSTER = """partner_id,partner_name,plan,renews_on,contact_name,contact_email,roles,trained_on
nuvole,Nuvole Web,standard,2027-03-31,Antonio De Marco,antonio@nuvole.example,primary;technical,2026-06-12
nuvole,Nuvole Web,standard,2027-03-31,Bob Brown,bob@nuvole.example,billing,
cookshop,Mark's Site Kitchen,solo,2027-05-01,Mark Cook,mark@cookshop.example,primary;billing;technical,2026-06-12
oldco,Old & Co <Web>,standard,2026-11-20,Olga Old,olga@oldco.example,primary;billing,
"""
REPORT_AT = "2027-01-08T12:00:00-05:00"  # a Friday: the January request has waited three days


def _config(folder: Path) -> Path:
    cfg = SAMPLES["config"]
    toml = f"""[support]
address = "support@openatrium.example"
staff = ["young@openatrium.example"]
escalation = ["eric@openatrium.example"]
program_lead = "eric@openatrium.example"
[store]
path = "data/pd.json"
[mailings]
enabled = ["calls", "renewals", "welcome"]
[calls]
rrule = "{cfg['calls']['rrule']}"
first = {cfg['calls']['first']}
dial_in = "{cfg['calls']['dial_in']}"
[renewals]
pay_url = "https://openatrium.example/renew"
[report]
dir = "site"
"""
    path = folder / "pd.toml"
    path.write_text(toml)
    return path


def run(config: Path, now: str, *args: str) -> str:
    out = subprocess.run([sys.executable, str(ROOT / "run.py"), "--config", str(config), "--now", now, *args],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, f"{args} at {now}: {out.stderr}"
    return out.stdout


def _drop(folder: Path, name: str, raw: bytes, at: str) -> None:
    inbox = folder / "data" / "spool" / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / name
    path.write_bytes(raw)
    t = datetime.fromisoformat(at).timestamp()
    os.utime(path, (t, t))  # the spool's receipt time (and the rules' clock, below) agree


def _request(frm: str, name: str, subject: str, mid: str, at: str) -> bytes:
    date = email.utils.format_datetime(datetime.fromisoformat(at))
    return (f"From: {name} <{frm}>\r\nTo: support@openatrium.example\r\nSubject: {subject}\r\n"
            f"Message-ID: <{mid}>\r\nDate: {date}\r\n\r\n{subject}: please help.\r\n").encode()


def _outbox(folder: Path) -> list[Path]:
    return sorted((folder / "data" / "spool" / "outbox").glob("*.eml"))


def _notification(folder: Path, request_mid: str) -> bytes:
    for p in _outbox(folder):
        m = email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        if m["X-Partnerdesk-Kind"] == "notify" and request_mid in str(m.get("In-Reply-To", "")):
            return p.read_bytes()
    raise AssertionError(f"no notification for {request_mid}")


def _answer(folder: Path, config: Path, request_mid: str, n: int, at: str) -> None:
    note = _notification(folder, request_mid)
    date = email.utils.format_datetime(datetime.fromisoformat(at))
    _drop(folder, f"answer-{n}.eml", reply_styles.reply("gmail", "en", note, message_id=f"<answer-{n}@oa.example>",
                                                         date=date), at)
    run(config, at, "once")


def _bounce_of_first(folder: Path, kind: str, to: str) -> bytes:
    for p in _outbox(folder):
        m = email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        if m["X-Partnerdesk-Kind"] == kind and to in str(m["To"]):
            mid = m["Message-ID"]
            break
    else:
        raise AssertionError(f"no {kind} mail to {to}")
    return (f"From: Mail Delivery System <MAILER-DAEMON@mx.oldco.example>\r\nTo: support@openatrium.example\r\n"
            f"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-1@mx.oldco.example>\r\n"
            f"Auto-Submitted: auto-replied\r\nReturn-Path: <>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n\r\n"
            f"--b1\r\nContent-Type: text/plain\r\n\r\n<{to}>: host mx.oldco.example said: 550 5.1.1 User unknown\r\n"
            f"--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.oldco.example\r\n\r\n"
            f"Final-Recipient: rfc822; {to}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
            f"--b1\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {mid}\r\nTo: {to}\r\n"
            f"Subject: Renewal\r\n--b1--\r\n").encode()


def build(folder: Path) -> Path:
    config = _config(folder)
    (folder / "roster.csv").write_text(ROSTER)
    run(config, "2026-12-01T09:00:00-05:00", "partners", "import", str(folder / "roster.csv"))
    steps = [  # (request message-id, from, name, subject, received, answered or None)
        ("r1@nuvole.example", "antonio@nuvole.example", "Antonio De Marco", "Features revert fails",
         "2026-12-01T10:00:00-05:00", "2026-12-01T15:00:00-05:00"),
        ("r2@cookshop.example", "mark@cookshop.example", "Mark Cook", "Spaces <b>missing</b> after upgrade",
         "2026-12-02T10:00:00-05:00", "2026-12-04T11:00:00-05:00"),
        ("r3@nuvole.example", "bob@nuvole.example", "Bob Brown", "Invoice question",
         "2026-12-03T10:00:00-05:00", None),
        ("r4@nuvole.example", "antonio@nuvole.example", "Antonio De Marco", "Dashboard is blank",
         "2027-01-05T10:00:00-05:00", None),
    ]
    for i, (mid, frm, name, subject, at, answered) in enumerate(steps, 1):
        _drop(folder, f"request-{i}.eml", _request(frm, name, subject, mid, at), at)
        run(config, at, "once")
        if answered:
            _answer(folder, config, mid, i, answered)
    # The January call's invitations; Old & Co lapsed on 2026-12-21 (renewal due 2026-11-20, 30 days' grace,
    # no payment): its invitation is held, but its renewal notice (14 days after) went out on 2026-12-04.
    run(config, "2026-12-29T14:05:00-05:00", "once")
    _drop(folder, "dsn.eml", _bounce_of_first(folder, "renewal", "olga@oldco.example"), "2026-12-29T15:00:00-05:00")
    run(config, "2026-12-29T15:00:00-05:00", "once")
    for at in ("2027-01-06T09:30:00-05:00", "2027-01-06T16:30:00-05:00", "2027-01-07T09:30:00-05:00"):
        run(config, at, "once")  # the ladder on the unanswered January request
    return config

#!/usr/bin/env python3
"""Ingest speed against real servers: `run.py once` on a full IMAP mailbox vs a raw IMAP baseline.

    python3 benchmarks/imap_ingest.py [--messages N]      # default 2000; needs root and Dovecot

Starts the project's own test servers (tests/mailservers.py: Dovecot IMAP/LMTP and an
aiosmtpd SMTP server that delivers into Dovecot) under a temp dir, fills a support
mailbox with N realistic ~2 KB partner requests by MULTIAPPEND, and measures, in the
same run, on the same kind of mailbox:

* baseline: a fresh Python process doing UID SEARCH + FETCH BODY.PEEK[] in batches of
  500 + email.message_from_bytes (compat32) reading the headers partnerdesk reads;
* (a) history import: a fresh store's first `once` on the full mailbox (all history);
* (b) new mail: a fresh store's first `once` on an empty mailbox, then N messages
  arrive, then a timed `once` that also renders, queues and sends acks and staff
  notifications through SMTP -> LMTP -> Dovecot.

It prints rates and ratios to the baseline, never verdicts: absolute numbers depend on
the machine, the ratios much less. Peak RSS is per child process (os.wait4 gives each
child's own ru_maxrss, the number getrusage(RUSAGE_CHILDREN) reports as a running max).
Whether the per-message cost grows with the store is read from the store file itself:
every intake batch (run.INTAKE_BATCH messages) is one atomic rename, so a thread here
notes each new version as it appears and its IMAP cursor says how far the intake was; in
mode (b) every mail sent is one more durable write, which times the sending per mail.

The SMTP pace is switched off (rate_per_minute = 0) and scheduled mailings are disabled in
the generated config, so the run measures the intake and sending, not the throttle.
Mode (b) dominates the run time: with N = 2000 most of it is the sending phase.
"""

from __future__ import annotations

import argparse
import email
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The headers mailbox/parse.py reads (the baseline reads the same ones).
HEADERS = ("Message-ID", "From", "To", "Cc", "Subject", "Date", "In-Reply-To", "References", "Return-Path",
           "Auto-Submitted", "Precedence", "List-Id", "X-Auto-Response-Suppress", "Content-Type")
PASSWORD = "pw"
SUPPORT_A = "support-a@example.test"  # mode (a) and the baseline read this mailbox
SUPPORT_B = "support-b@example.test"  # mode (b): empty at the first start, filled afterwards
STAFF = ["staff1@example.test", "staff2@example.test"]
ESCALATION = "escalation@example.test"
LEAD = "lead@example.test"
PARTNER_DOMAIN = "northwind.example.test"  # on the roster
UNKNOWN_DOMAINS = ["prospect.example.test", "freelancer.example.test", "agency.example.test"]


def business_morning_before(now: datetime) -> datetime:
    """The latest weekday 15:00 UTC (10 or 11 AM ET) at least two hours before now.

    In the past on purpose: Dovecot clamps a future INTERNALDATE to the time of the APPEND.
    """
    t = now.replace(hour=15, minute=0, second=0, microsecond=0)
    while t > now - timedelta(hours=2) or t.weekday() >= 5:
        t -= timedelta(days=1)
    return t


T0 = business_morning_before(datetime.now(timezone.utc))  # the first start in both modes

FIRST = ["Anna", "Ben", "Carla", "Dev", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jon", "Kemal", "Lia", "Marco",
         "Nora", "Omar", "Priya", "Quentin", "Rosa", "Sven", "Tara", "Umar", "Vera", "Wes", "Xin", "Yara", "Zoe"]
LAST = ["Rossi", "Chen", "Okafor", "Silva", "Novak", "Larsen", "Haddad", "Ito", "Moreau", "Kowalski", "Park"]
TOPICS = ["Spaces permissions", "the Features revert", "context overrides", "Panels layouts", "the upgrade to 2.7",
          "OG membership sync", "search indexing", "the REST export", "cron timing out", "SSO login loops",
          "email notifications", "file uploads over 20 MB", "a white screen after update", "the theme override",
          "translations missing", "the calendar view", "private group visibility", "drush make failures"]
OPENERS = ["Quick question about {t}.", "We are stuck on {t} since yesterday.", "Our client reports a problem with {t}.",
           "Could you help us understand {t}?", "Since this morning {t} behaves differently on production."]
FILLER = [
    "We followed the documentation step by step and cleared all caches, but the result is the same on staging "
    "and on production.",
    "The site runs on PHP 8.1 with MySQL 8, Redis for the cache bins and Varnish in front; nothing in that "
    "stack changed in the last two weeks.",
    "The watchdog log shows a notice about an undefined index in the access callback, repeated once per request.",
    "Reverting the feature module brings back the old configuration for a few minutes, then the override wins "
    "again, which suggests something rebuilds it on cron.",
    "Steps to reproduce: log in as a space administrator, open the members tab, change a role, save, reload.",
    "This blocks a launch planned for Thursday, so any pointer would help, even a workaround for now.",
    "We can give you access to a copy of the database if that helps; it is about 3 GB compressed.",
    "Attached below is the relevant part of the configuration export, trimmed to the keys that changed.",
]


# -- the messages ------------------------------------------------------------------------------
def people(rng: random.Random) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """A few dozen roster contacts at the partner's domain, and unknown senders elsewhere."""
    names = [f"{f} {l}" for f in FIRST for l in LAST]
    rng.shuffle(names)
    partner = [(n, f"{n.split()[0].lower()}.{n.split()[1].lower()}@{PARTNER_DOMAIN}") for n in names[:36]]
    unknown = [(n, f"{n.split()[0].lower()}{i}@{UNKNOWN_DOMAINS[i % len(UNKNOWN_DOMAINS)]}")
               for i, n in enumerate(names[36:48])]
    return partner, unknown


def make_messages(n: int, partner: list, unknown: list, rng: random.Random) -> list[bytes]:
    """n partner requests of about 2 KB: mostly new requests, some follow-ups, some with an HTML part.

    The Date header is filled in at append time (see dated()); here it is a placeholder.
    """
    out: list[bytes] = []
    earlier: dict[str, list[tuple[str, str]]] = {}  # sender -> [(message-id, subject)]
    for i in range(n):
        name, addr = rng.choice(unknown) if rng.random() < 0.2 else rng.choice(partner)
        m = EmailMessage()
        m["From"] = f"{name} <{addr}>"
        m["To"] = "Open Atrium Support <{SUPPORT}>"  # placeholder, filled in at append time
        m["Date"] = "{DATE}"
        mine = earlier.setdefault(addr, [])
        if mine and rng.random() < 0.15:  # a follow-up to the sender's own earlier request
            parent_id, subject = rng.choice(mine)
            m["Subject"] = f"Re: {subject}"
            m["In-Reply-To"] = parent_id
            m["References"] = parent_id
        else:
            topic = rng.choice(TOPICS)
            subject = f"{rng.choice(['Problem with', 'Question about', 'Help needed:', 'Urgent:'])} {topic}"
            m["Subject"] = subject
        msgid = make_msgid(idstring=f"b{i}", domain=addr.rpartition("@")[2])
        m["Message-ID"] = msgid
        mine.append((msgid, str(m["Subject"]).removeprefix("Re: ")))
        m["User-Agent"] = rng.choice(["Thunderbird/115.5", "Apple Mail (2.3731)", "Microsoft Outlook 16.0"])
        paragraphs = [rng.choice(OPENERS).format(t=rng.choice(TOPICS))]
        while sum(map(len, paragraphs)) < 1100:
            paragraphs.append(rng.choice(FILLER))
        text = "Hello support team,\n\n" + "\n\n".join(paragraphs) + f"\n\nThanks,\n{name}\n{PARTNER_DOMAIN}\n"
        m.set_content(text)
        if rng.random() < 0.2:
            m.add_alternative("<html><body>" + "".join(f"<p>{p}</p>" for p in text.split("\n\n")) + "</body></html>",
                              subtype="html")
        out.append(m.as_bytes())
    return out


def dated(template: bytes, when: datetime, support: str) -> bytes:
    return template.replace(b"{DATE}", format_datetime(when).encode()).replace(b"{SUPPORT}", support.encode())


# -- filling a mailbox -------------------------------------------------------------------------
def fill(ms, support: str, templates: list[bytes], start: datetime, span: timedelta) -> tuple[float, str]:
    """Append every message with an INTERNALDATE spread over [start, start + span). Returns (seconds, how)."""
    n = len(templates)
    step = span / max(1, n)
    items = [(dated(t, start + step * i, support), start + step * i) for i, t in enumerate(templates)]
    t = time.perf_counter()
    with ms.imap(support) as c:
        multi = hasattr(c, "multiappend") and c.has_capability("MULTIAPPEND")
        for i in range(0, n, 250):
            chunk = items[i:i + 250]
            if multi:
                c.multiappend("INBOX", [{"msg": raw, "date": when} for raw, when in chunk])
            else:
                for raw, when in chunk:
                    c.append("INBOX", raw, msg_time=when)
    return time.perf_counter() - t, "MULTIAPPEND" if multi else "APPEND"


# -- the baseline (runs in a child process of its own) --------------------------------------------
def baseline_child(host: str, port: int, user: str) -> None:
    from imapclient import IMAPClient

    with IMAPClient(host, port=port, ssl=False, timeout=60) as c:
        c.login(user, PASSWORD)
        c.select_folder("INBOX", readonly=True)
        t = time.perf_counter()
        uids = sorted(c.search("ALL"))  # imapclient sends UID SEARCH
        count = 0
        for i in range(0, len(uids), 500):
            for item in c.fetch(uids[i:i + 500], ["BODY.PEEK[]"]).values():
                msg = email.message_from_bytes(item[b"BODY[]"])  # policy compat32, as mailbox/parse.py
                for h in HEADERS:
                    msg.get_all(h)
                count += 1
        seconds = time.perf_counter() - t
    print(json.dumps({"messages": count, "seconds": seconds}))


# -- child processes with their own peak RSS ----------------------------------------------------
class Child:
    def __init__(self, started: float, ended: float, rss_kb: int, out: str, err: str, code: int) -> None:
        self.started, self.ended, self.rss_kb, self.out, self.err, self.code = started, ended, rss_kb, out, err, code
        self.seconds = ended - started


def run_child(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 900) -> Child:
    """Run cmd; its wall time and its own peak RSS (os.wait4: this child's ru_maxrss, in KiB on Linux)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        deadline = t + timeout
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                p.kill()
                pid, status, usage = os.wait4(p.pid, 0)
                break
            time.sleep(0.002)
        ended = time.perf_counter()
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen from waiting again
        out.seek(0)
        err.seek(0)
        child = Child(t, ended, usage.ru_maxrss, out.read().decode(errors="replace"),
                      err.read().decode(errors="replace"), p.returncode)
    if child.code != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {child.code}\nstdout:\n{child.out}\nstderr:\n{child.err[-3000:]}")
    return child


class StoreWatch:
    """Notes every new version of the store file as it appears: each write is an atomic rename.

    For each version: when it was first seen, and the IMAP cursor's last UID. The cursor is
    read from the first 64 KB only (the cursors table is written before threads, messages
    and outbox, so it sits near the start): cheap enough to do while the child runs.
    """

    CURSOR = re.compile(rb'"last_uid":\s*(\d+)')

    def __init__(self, path: Path) -> None:
        self.path = path
        self.versions: list[tuple[float, int | None]] = []  # (time seen, cursor's last UID)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StoreWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        last = None
        while not self._stop.is_set():
            t = time.perf_counter()
            try:
                if os.stat(self.path).st_ino != last:
                    with open(self.path, "rb") as f:  # maybe a newer version than the stat: fine
                        last = os.fstat(f.fileno()).st_ino
                        m = self.CURSOR.search(f.read(65536))
                    self.versions.append((t, int(m.group(1)) if m else None))
            except FileNotFoundError:  # not created yet
                pass
            time.sleep(0.002)

    def intake_points(self) -> list[tuple[float, int]]:
        """(time, last UID taken in) for each store version that moved the cursor: one per intake batch."""
        points: list[tuple[float, int]] = []
        for t, uid in self.versions:
            if uid is not None and (not points or uid > points[-1][1]):
                points.append((t, uid))
        return points

    def writes_after(self, t: float) -> list[float]:
        return [v for v, _ in self.versions if v > t]


def growth(points: list[tuple[float, int]]) -> tuple[float, float] | None:
    """Seconds per message over the first and the last tenth of the intake (measured between batch writes)."""
    if len(points) < 3:
        return None
    first_uid, last_uid = points[0][1], points[-1][1]
    tenth = max(1, (last_uid - first_uid) // 10)
    a = next(p for p in points if p[1] >= first_uid + tenth)
    b = next(p for p in reversed(points) if p[1] <= last_uid - tenth)
    return (a[0] - points[0][0]) / (a[1] - first_uid), (points[-1][0] - b[0]) / (last_uid - b[1])


def growth_between(times: list[float]) -> tuple[float, float] | None:
    """Mean gap between consecutive events over the first and the last tenth of them."""
    if len(times) < 21:
        return None
    k = len(times) // 10
    return (times[k] - times[0]) / k, (times[-1] - times[-1 - k]) / k


# -- partnerdesk deployments ------------------------------------------------------------------------
def desk(base: Path, name: str, ms, support: str) -> Path:
    d = base / name
    d.mkdir(parents=True)
    staff = ", ".join(f'"{a}"' for a in STAFF)
    (d / "partnerdesk.toml").write_text(f"""
[support]
address = "{support}"
name = "Open Atrium Support"
staff = [{staff}]
escalation = ["{ESCALATION}"]
program_lead = "{LEAD}"

[imap]
host = "{ms.host}"
port = {ms.imap_port}
security = "none"
username = "{support}"
password_env = "PD_BENCH_PASSWORD"

[smtp]
host = "{ms.host}"
port = {ms.smtp_port}
security = "none"
# The default pace (120 mails a minute, for real providers' limits) would make the sending
# in mode (b) the whole measurement; unpaced, the run measures partnerdesk and the servers.
rate_per_minute = 0

[mailings]
# No welcome mail to the imported roster: mode (a) times the history import alone.
enabled = []

[store]
path = "{d / 'store' / 'partnerdesk.json'}"
""")
    return d


def roster_csv(path: Path, partner: list) -> None:
    rows = ["partner_id,partner_name,plan,renews_on,contact_name,contact_email,roles,trained_on"]
    for i, (name, addr) in enumerate(partner):
        roles = "primary;technical" if i == 0 else "technical"
        trained = "2026-06-12" if i % 2 == 0 else ""  # half the contacts hold a seat
        rows.append(f"northwind,Northwind Web,standard,2027-06-30,{name},{addr},{roles},{trained}")
    path.write_text("\n".join(rows) + "\n")


def pd(d: Path, *args: str, now: datetime) -> Child:
    cmd = [sys.executable, str(ROOT / "run.py"), "--config", str(d / "partnerdesk.toml"), "--now", now.isoformat(),
           *args]
    return run_child(cmd, cwd=d, env=dict(os.environ, PD_BENCH_PASSWORD=PASSWORD))


def summary_line(child: Child) -> str:
    lines = [l for l in child.out.splitlines() if l.strip()]
    return lines[-1] if lines else "(no summary)"


# -- the run ------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=2000, help="messages in the mailbox (default 2000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--baseline-child", nargs=3, metavar=("HOST", "PORT", "USER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline_child:
        host, port, user = args.baseline_child
        baseline_child(host, int(port), user)
        return

    from tests.mailservers import MailServers

    n = args.messages
    rng = random.Random(args.seed)
    partner, unknown = people(rng)
    templates = make_messages(n, partner, unknown, rng)
    avg_kb = sum(map(len, templates)) / n / 1024
    base = Path(tempfile.mkdtemp(prefix="partnerdesk-bench-", dir="/tmp"))
    try:
        with MailServers(base / "servers") as ms:
            for a in [SUPPORT_A, SUPPORT_B, *STAFF, ESCALATION, LEAD, *(a for _, a in partner + unknown)]:
                ms.add_user(a, PASSWORD)
            print(f"messages: {n} (~{avg_kb:.1f} KB each), senders: {len(partner)} roster contacts at {PARTNER_DOMAIN}"
                  f" + {len(unknown)} unknown")

            # Mode (a)'s mailbox: two weeks of mail before the first start (T0).
            secs, how = fill(ms, SUPPORT_A, templates, T0 - timedelta(days=14), timedelta(days=13))
            print(f"fill: {how} {n} messages in {secs:.1f} s ({n / secs:,.0f} msg/s)")

            b = run_child([sys.executable, str(Path(__file__).resolve()), "--baseline-child", ms.host,
                           str(ms.imap_port), SUPPORT_A], cwd=ROOT)
            bres = json.loads(b.out)
            assert bres["messages"] == n, bres
            brate = n / bres["seconds"]
            print(f"\nbaseline (own process): UID SEARCH + FETCH BODY.PEEK[] x500 + compat32 headers: "
                  f"{bres['seconds']:.2f} s, {brate:,.0f} msg/s; peak RSS {b.rss_kb / 1024:.0f} MB")

            # (a) history import: the first start sees a full mailbox.
            da = desk(base, "a", ms, SUPPORT_A)
            roster_csv(da / "roster.csv", partner)
            pd(da, "partners", "import", str(da / "roster.csv"), now=T0 - timedelta(days=20))
            with StoreWatch(da / "store" / "partnerdesk.json") as watch:
                ra = pd(da, "once", now=T0)
            report_mode("(a) history import, first `once` on the full mailbox", n, ra, brate, b.rss_kb,
                        watch.intake_points(), da / "store" / "partnerdesk.json")

            # (b) new mail: first start on the empty mailbox, then the mail arrives.
            db = desk(base, "b", ms, SUPPORT_B)
            roster_csv(db / "roster.csv", partner)
            pd(db, "partners", "import", str(db / "roster.csv"), now=T0 - timedelta(days=20))
            empty = pd(db, "once", now=T0)  # sets the history cutoff; nothing to do yet
            fill(ms, SUPPORT_B, templates, T0 + timedelta(seconds=1), timedelta(minutes=50))
            ms.clear_received()
            with StoreWatch(db / "store" / "partnerdesk.json") as watch:
                rb = pd(db, "once", now=T0 + timedelta(hours=1))
            points = watch.intake_points()
            report_mode("(b) new mail, `once` acting on it (ack, notify, send by SMTP -> LMTP)", n, rb, brate,
                        b.rss_kb, points, db / "store" / "partnerdesk.json")
            smtp = len(ms.received)
            print(f"    SMTP transactions received: {smtp}; acks are limited to 3 per address per hour "
                  f"({len(partner) + len(unknown)} senders), notifications go to {len(STAFF)} staff")
            print(f"    fixed cost: `once` on the empty mailbox takes {empty.seconds:.2f} s (start-up, login)")
            if points:
                sends = watch.writes_after(points[-1][0])  # one durable store write per mail sent
                after = rb.ended - points[-1][0]
                print(f"    intake (first to last batch write) {points[-1][0] - points[0][0]:.1f} s; after it "
                      f"(ticks, sending) {after:.1f} s = {smtp / after:,.0f} mails/s")
                g = growth_between(sends)
                if g:
                    print(f"    per mail sent, first tenth {g[0] * 1000:.1f} ms, last tenth {g[1] * 1000:.1f} ms: "
                          f"last / first = {g[1] / g[0]:.2f}x ({len(sends)} store writes while sending)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def report_mode(title: str, n: int, r: Child, brate: float, brss: int, points: list[tuple[float, int]],
                store: Path) -> None:
    rate = n / r.seconds
    print(f"\n{title}")
    print(f"    {r.seconds:.1f} s, {rate:,.0f} msg/s; ratio to baseline {rate / brate:.4f} "
          f"(the baseline is {brate / rate:.0f}x faster)")
    print(f"    peak RSS {r.rss_kb / 1024:.0f} MB = {r.rss_kb / brss:.1f}x the baseline's")
    print(f"    summary: {summary_line(r)}")
    print(f"    store file afterwards: {store.stat().st_size / 1e6:.1f} MB (rewritten whole at every durable write)")
    g = growth(points)
    if g:
        first, last = g
        print(f"    per message, first tenth {first * 1000:.2f} ms, last tenth {last * 1000:.2f} ms: "
              f"last / first = {last / first:.2f}x (1.0 = the cost does not grow with the store)")


if __name__ == "__main__":
    main()

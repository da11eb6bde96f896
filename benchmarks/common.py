"""What the benchmarks share: realistic partner mail, the project's test servers, filling a mailbox,
child processes with their own peak RSS, a partnerdesk deployment pointed at the servers.

Nothing here asserts a speed: the scripts print ratios against a baseline measured in the same run.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PASSWORD = "pw"
STAFF = ["staff1@example.test", "staff2@example.test"]
ESCALATION = "escalation@example.test"
LEAD = "lead@example.test"
PARTNER_DOMAIN = "northwind.example.test"  # on the roster
UNKNOWN_DOMAINS = ["prospect.example.test", "freelancer.example.test", "agency.example.test"]
# The headers a reader of support mail needs (the naive baseline reads these, and the text body).
HEADERS = ("Message-ID", "From", "To", "Cc", "Subject", "Date", "In-Reply-To", "References", "Return-Path",
           "Auto-Submitted", "Precedence", "List-Id", "X-Auto-Response-Suppress", "Content-Type")


def business_morning_before(now: datetime) -> datetime:
    """The latest weekday 15:00 UTC (10 or 11 AM ET) at least two hours before now.

    In the past on purpose: Dovecot clamps a future INTERNALDATE to the time of the APPEND.
    """
    t = now.replace(hour=15, minute=0, second=0, microsecond=0)
    while t > now - timedelta(hours=2) or t.weekday() >= 5:
        t -= timedelta(days=1)
    return t


T0 = business_morning_before(datetime.now(timezone.utc))

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


def people(rng: random.Random, partners: int = 36, unknown: int = 12) -> tuple[list, list]:
    """Roster contacts at the partner's domain, and unknown senders elsewhere."""
    names = [f"{f} {l}" for f in FIRST for l in LAST]
    rng.shuffle(names)
    partner = [(n, f"{n.split()[0].lower()}.{n.split()[1].lower()}{i}@{PARTNER_DOMAIN}")
               for i, n in enumerate((names * 20)[:partners])]
    unknown_ = [(n, f"{n.split()[0].lower()}{i}@{UNKNOWN_DOMAINS[i % len(UNKNOWN_DOMAINS)]}")
                for i, n in enumerate((names * 20)[partners:partners + unknown])]
    return partner, unknown_


def make_messages(n: int, partner: list, unknown: list, rng: random.Random) -> list[bytes]:
    """n partner requests of about 2 KB: mostly new requests, some follow-ups, some with an HTML part.

    Date and To are placeholders, filled in at append time (see dated()).
    """
    out: list[bytes] = []
    earlier: dict[str, list[tuple[str, str]]] = {}
    for i in range(n):
        name, addr = rng.choice(unknown) if rng.random() < 0.2 else rng.choice(partner)
        m = EmailMessage()
        m["From"] = f"{name} <{addr}>"
        m["To"] = "Open Atrium Support <{SUPPORT}>"
        m["Date"] = "{DATE}"
        mine = earlier.setdefault(addr, [])
        if mine and rng.random() < 0.15:
            parent_id, subject = rng.choice(mine)
            m["Subject"] = f"Re: {subject}"
            m["In-Reply-To"] = parent_id
            m["References"] = parent_id
        else:
            subject = f"{rng.choice(['Problem with', 'Question about', 'Help needed:', 'Urgent:'])} {rng.choice(TOPICS)}"
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


def fill(ms, support: str, templates: list[bytes], start: datetime, span: timedelta) -> float:
    """Append every message (MULTIAPPEND) with an INTERNALDATE spread over [start, start + span)."""
    n = len(templates)
    step = span / max(1, n)
    t = time.perf_counter()
    with ms.imap(support) as c:
        for i in range(0, n, 250):
            chunk = [(dated(tpl, start + step * (i + j), support), start + step * (i + j))
                     for j, tpl in enumerate(templates[i:i + 250])]
            c.multiappend("INBOX", [{"msg": raw, "date": when} for raw, when in chunk])
    return time.perf_counter() - t


class Child:
    def __init__(self, seconds: float, rss_kb: int, out: str, err: str, code: int, cpu: float = 0.0) -> None:
        self.seconds, self.rss_kb, self.out, self.err, self.code = seconds, rss_kb, out, err, code
        self.cpu = cpu  # user + system seconds of the child, all its threads

    @property
    def rss_mb(self) -> float:
        return self.rss_kb / 1024


# The child is started by this small launcher, which forks and execs it and reports its rusage. Linux
# carries a process's peak RSS across fork and exec (ru_maxrss starts at the forking process's size), so
# a child forked straight from a benchmark that holds 50,000 messages in memory "peaked" at the
# benchmark's size: both sides of the history benchmark read 153 MB. Forked from the launcher (a bare
# interpreter, a few MB), the figure is the child's own.
LAUNCHER = """
import json, os, sys, time
report, cmd = sys.argv[1], sys.argv[2:]
t = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(cmd[0], cmd)
    except OSError as e:
        print(f"cannot start {cmd[0]}: {e}", file=sys.stderr)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - t
with open(report, "w") as f:
    json.dump({"seconds": seconds, "maxrss_kb": usage.ru_maxrss, "cpu": usage.ru_utime + usage.ru_stime,
               "code": os.waitstatus_to_exitcode(status)}, f)
"""


def run_child(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 1800,
              check: bool = True) -> Child:
    """Run cmd; its wall time and its own peak RSS (its ru_maxrss, KiB on Linux, through LAUNCHER)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(suffix=".json") as report:
        p = subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER, report.name, *cmd], cwd=cwd, env=env,
                             stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)  # the launcher and the child with it
            p.wait()
        except BaseException:  # Ctrl-C: its own session does not get it, so take it down too
            os.killpg(p.pid, signal.SIGKILL)
            raise
        try:
            got = json.loads(Path(report.name).read_text())
        except ValueError:  # killed before it could report
            got = {"seconds": float(timeout), "maxrss_kb": 0, "code": -9}
        out.seek(0)
        err.seek(0)
        child = Child(got["seconds"], got["maxrss_kb"], out.read().decode(errors="replace"),
                      err.read().decode(errors="replace"), got["code"], got.get("cpu", 0.0))
    if check and child.code != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {child.code}\nstdout:\n{child.out}\nstderr:\n{child.err[-3000:]}")
    return child


def desk(base: Path, name: str, ms, support: str, *, smtp_port: int | None = None, extra: str = "",
         connections: int = 2, rate: int = 0, idle: bool = True) -> Path:
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
idle = {str(idle).lower()}
poll_seconds = 60

[smtp]
host = "{ms.host}"
port = {smtp_port or ms.smtp_port}
security = "none"
connections = {connections}
rate_per_minute = {rate}

[store]
path = "{d / 'store' / 'partnerdesk.json'}"
{extra}
""")
    return d


def roster_csv(path: Path, partner: list, *, renews: str = "2027-06-30") -> None:
    rows = ["partner_id,partner_name,plan,renews_on,contact_name,contact_email,roles,trained_on"]
    for i, (name, addr) in enumerate(partner):
        roles = "primary;technical" if i == 0 else "technical"
        trained = "2026-06-12" if i % 2 == 0 else ""  # half the contacts hold a seat
        rows.append(f"northwind,Northwind Web,standard,{renews},{name},{addr},{roles},{trained}")
    path.write_text("\n".join(rows) + "\n")


def pd(d: Path, *args: str, now: datetime, timeout: float = 1800) -> Child:
    cmd = [sys.executable, str(ROOT / "run.py"), "--config", str(d / "partnerdesk.toml"), "--now", now.isoformat(),
           *args]
    return run_child(cmd, cwd=d, env=dict(os.environ, PD_BENCH_PASSWORD=PASSWORD), timeout=timeout)


def summary_line(child: Child) -> str:
    lines = [l for l in child.out.splitlines() if l.strip()]
    return lines[-1] if lines else "(no summary)"


def spread(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.2f}" if values else "-"
    return f"median {statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"


def tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def temp_base(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class Capture:
    """benchmarks/capture.py in a process of its own: ``port``, and ``mails()`` = [(time, id, kind, to)]."""

    def __init__(self, base: Path, *, pipelining: bool = True) -> None:
        self.log = base / f"capture-{time.monotonic_ns()}.log"
        self.log.touch()
        cmd = [sys.executable, str(Path(__file__).with_name("capture.py")), str(self.log)]
        if pipelining:
            cmd.append("--pipelining")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        self.port = int(self.proc.stdout.readline())

    def cpu(self) -> float:
        """The server's user + system seconds so far (to tell whether it was the bottleneck)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def mails(self) -> list[tuple[float, str, str, str]]:
        out = []
        for line in self.log.read_text().splitlines():
            t, mid, kind, to = (line.split("\t") + ["", "", ""])[:4]
            out.append((float(t), mid, kind, to))
        return out

    def count(self) -> int:
        with open(self.log, "rb") as f:
            return f.read().count(b"\n")

    def clear(self) -> None:
        self.log.write_text("")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)

"""The command line as a new user meets it: closed pipes, exit codes (the README's table), help for every
verb and flag, plurals, dry-run wording, bad dates, unknown names, and the progress bar (a real pty)."""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOW = "2027-01-21T10:00:00-05:00"
HEADER = "partner_id,partner_name,plan,renews_on,contact_name,contact_email,roles,trained_on"
CONFIG = ('[support]\naddress = "support@openatrium.example"\nstaff = ["young@devseed.example"]\n'
          '[store]\npath = "data/partnerdesk.json"\n'
          '[calls]\nrrule = "FREQ=MONTHLY;INTERVAL=3;BYDAY=2TU"\nfirst = 2027-01-12T14:00:00\n')


@pytest.fixture
def cli(tmp_path):
    (tmp_path / "pd.toml").write_text(CONFIG)
    (tmp_path / "r.csv").write_text(f"{HEADER}\nnuvole,Nuvole Web,standard,2027-03-31,Antonio,antonio@nuvole.example,"
                                    f"primary,2026-06-12\n")

    def run(*args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "run.py"), "--config", "pd.toml", "--now", NOW, *args],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60, **kw)

    run.dir = tmp_path
    return run


def test_a_closed_pipe_ends_quietly(cli):
    cli("partners", "import", "r.csv")
    # `... | head -1`: the reader goes away after one line of a long output.
    p = subprocess.run(f"{sys.executable} {ROOT / 'run.py'} --config pd.toml --now {NOW} mailings plan "
                       f"--from 2027-01-01 --to 2029-12-31 | head -1", shell=True, cwd=cli.dir, capture_output=True,
                       text=True, timeout=60)
    assert p.stdout.count("\n") == 1
    assert p.stderr == "", p.stderr  # no BrokenPipeError traceback, no "Exception ignored"
    p = subprocess.run(f"set -o pipefail; {sys.executable} {ROOT / 'run.py'} --config pd.toml --now {NOW} states "
                       f"| head -c 10 >/dev/null", shell=True, executable="/bin/bash", cwd=cli.dir,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode in (0, 141) and p.stderr == ""


# The README's exit-code table, row by row.
@pytest.mark.parametrize("args, code, says", [
    (("threads", "show", "OA-99"), 2, "error: no thread OA-99"),
    (("partners", "import", "nope.csv"), 2, "error: cannot read nope.csv"),
    (("partners", "renew", "nobody", "--until", "2028-01-01"), 2, "error: no partner nobody"),
    (("partners", "renew", "nuvole", "--until", "soon"), 2, "error: --until 'soon' is not a date"),
    (("mailings", "plan", "--from", "2027-13-01", "--to", "2027-12-31"), 2, "error: --from '2027-13-01'"),
    (("mailings", "plan", "--from", "2027-06-01", "--to", "2027-01-01"), 2, "error: --to 2027-01-01 is before"),
    (("mailings", "rsvps", "call-nope"), 2, "error: no call 'call-nope'"),
    (("mailings", "send", "newsletter"), 2, "error: no mailing 'newsletter'"),
    (("mailings", "preview", "welcome", "--partner", "nobody"), 2, "error: no partner nobody"),
    (("outbox", "retry", "no-such-key"), 2, "error: cannot retry no-such-key: no such entry"),
    (("threads", "frobnicate"), 2, "invalid choice"),  # argparse: a bad argument, 2 as well
])
def test_bad_arguments_exit_2_and_say_what(cli, args, code, says):
    p = cli(*args)
    assert (p.returncode, p.stdout) == (code, ""), p
    assert says in p.stderr and "Traceback" not in p.stderr and "config error" not in p.stderr


def test_a_bad_now_is_not_blamed_on_the_config_file(cli):
    p = cli("--now", "yesterday", "states")
    assert p.returncode == 2 and p.stderr.startswith("error: --now 'yesterday'") and "pd.toml" not in p.stderr


def test_an_import_that_rejected_rows_says_so_in_its_exit_code(cli):
    (cli.dir / "bad.csv").write_text(f"{HEADER}\n" + "".join(
        f"p{i},P,{'gold' if i % 3 else 'solo'},,N,n{i}@p{i}.example,,\n" for i in range(9)))
    p = cli("partners", "import", "bad.csv")
    assert p.returncode == 2
    rejected = [line for line in p.stderr.splitlines() if line.startswith("bad.csv:")]
    assert len(rejected) == 6 and "error: 6 of 9 rows rejected" in p.stderr  # every rejected row is listed
    assert "imported 3 partners" in p.stdout


def test_every_verb_and_flag_has_help():
    from cli.parser import parser

    missing = []

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                helps = {c.dest: c.help for c in a._choices_actions}
                for name, sub in a.choices.items():
                    if not helps.get(name):
                        missing.append(f"{path} {name}")
                    walk(sub, f"{path} {name}")
            elif not isinstance(a, argparse._HelpAction) and not a.help:
                missing.append(f"{path} {'/'.join(a.option_strings) or a.dest}")

    walk(parser(), "run.py")
    assert not missing, missing


def test_plurals_are_right(cli):
    cli("partners", "import", "r.csv")
    line = cli("partners", "list").stdout
    assert "1 contact, 1 seat" in line and "contacts" not in line


def test_a_dry_run_does_not_claim_it_sent_anything(cli):
    cli("partners", "import", "r.csv")
    p = cli("once", "--dry-run", "--dry-run-dir", "dry")
    assert p.returncode == 0, p.stderr
    assert "nothing was sent" in p.stdout and not re.search(r"\bsent \d", p.stdout)
    assert re.search(r"would send \d", p.stdout)


def test_mailings_plan_prints_no_duplicate_rows(cli):
    cli("partners", "import", "r.csv")
    # Starting after several notices of a series fell due: each skipped notice is its own, named row.
    rows = cli("mailings", "plan", "--from", "2027-05-01", "--to", "2027-08-31").stdout.splitlines()[:-1]
    assert len(rows) == len(set(rows)) and sum("SKIP renewal notice" in r for r in rows) >= 3


# -- the progress bar: on a terminal only -----------------------------------------------------------------
def fill_spool(tmp: Path, n: int) -> None:
    inbox = tmp / "data" / "spool" / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (inbox / f"{i:04d}.eml").write_text(f"From: s{i}@x.example\r\nTo: support@openatrium.example\r\n"
                                            f"Subject: q{i}\r\nMessage-ID: <{i}@x.example>\r\n\r\nhi\r\n")


def on_a_terminal(args: list[str], cwd: Path) -> tuple[int, bytes]:
    """Run with stdin, stdout and stderr on a pty of its own session, as in a terminal window."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    p = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, start_new_session=True)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return p.wait(timeout=120), out


def test_a_long_intake_shows_a_progress_bar_on_a_terminal_only(cli):
    args = [sys.executable, str(ROOT / "run.py"), "--config", "pd.toml", "--now", NOW, "once"]
    fill_spool(cli.dir, 260)
    code, out = on_a_terminal(args, cli.dir)
    assert code == 0 and b"fetched 260" in out
    assert b"taking in mail" in out and b"260/260" in out
    fill_spool(cli.dir, 260)  # the same mail again: duplicates, but as much work for the bar
    p = subprocess.run(args, cwd=cli.dir, capture_output=True, timeout=120)
    assert p.returncode == 0 and b"taking in mail" not in p.stderr + p.stdout and b"\r" not in p.stderr


def test_a_large_import_shows_a_progress_bar_on_a_terminal_only(cli):
    sheet = cli.dir / "big.csv"
    sheet.write_text(f"{HEADER}\n" + "".join(f"p{i},P{i},solo,,N,n@p{i}.example,primary,\n" for i in range(600)))
    args = [sys.executable, str(ROOT / "run.py"), "--config", "pd.toml", "--now", NOW, "partners", "import",
            str(sheet)]
    code, out = on_a_terminal(args, cli.dir)
    assert code == 0 and b"importing rows" in out and b"600 partners added" in out
    p = subprocess.run(args, cwd=cli.dir, capture_output=True, timeout=120)
    assert p.returncode == 0 and b"importing rows" not in p.stderr and p.stderr == b""


def test_report_steps_a_bar_on_a_large_store_only(monkeypatch, tmp_path):
    from datetime import datetime

    import cli.report as report
    from config.settings import load

    class Store:  # the report reads these, nothing else
        def threads(self): return []
        def partners(self): return []
        def ledger_all(self): return []
        def outbox(self): return []
        def delivery_states(self): return {}
        def automatic_mail(self): return []

    class Bar:
        def __init__(self): self.total, self.done = None, 0
        def set_total(self, n): self.total = n
        def update(self, n=1): self.done += n

    now = datetime.fromisoformat(NOW)
    settings = load({"support": {"address": "support@openatrium.example"}}, "test")
    small = Bar()
    report.build(Store(), settings, now, small)
    assert small.total is None  # a bar that is never drawn: the page is written before it could say anything
    monkeypatch.setattr(report, "PROGRESS_FROM", 0)
    big = Bar()
    report.write(Store(), settings, now, tmp_path, ROOT / "templates", big)
    assert (big.total, big.done) == (4, 4)

"""partnerdesk.example.toml is complete and valid; contrib/partnerdesk.service is a unit systemd accepts,
restarting on the exit codes that mean "try again" and not on those that mean "fix it first"."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from config.settings import known_keys, load_file

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "partnerdesk.example.toml"
UNIT = ROOT / "contrib" / "partnerdesk.service"


def shown_keys(text: str) -> dict[str, set[str]]:
    """table -> keys written in it, given or commented out ("# key = ...")."""
    out: dict[str, set[str]] = {}
    table = ""
    for line in text.splitlines():
        if m := re.match(r"^(?:# )?\[\[?([a-z0-9.]+)\]\]?", line):  # "# [oauth2]": a table shown commented out
            table = m.group(1)
            out.setdefault(table, set())
            if "." in table:  # [[calls.dates]] shows the key "dates" of [calls]
                parent, _, key = table.rpartition(".")
                out.setdefault(parent, set()).add(key)
        elif m := re.match(r"^#? ?([a-z_]+) = ", line):
            out.setdefault(table, set()).add(m.group(1))
    return out


def test_the_example_config_loads_and_validates():
    s = load_file(str(EXAMPLE))
    assert s.imap is not None and s.smtp is not None and s.staff
    assert [st.name for st in s.ladder] == ["warning", "breach", "second-level"]
    tomllib.loads(EXAMPLE.read_text())  # and it is plain TOML


def test_the_example_config_shows_every_table_and_key_the_code_knows():
    shown = shown_keys(EXAMPLE.read_text())
    missing = [f"[{t}] {k}" for t, keys in known_keys().items() for k in keys if k not in shown.get(t, set())]
    assert not missing, f"partnerdesk.example.toml lacks: {missing}"
    unknown = [f"[{t}] {k}" for t, keys in shown.items() for k in keys if k not in known_keys().get(t, ())]
    assert not unknown, f"partnerdesk.example.toml shows keys the code does not know: {unknown}"


def test_the_check_above_can_fail():
    assert "timeout" not in shown_keys("[imap]\nhost = 1\n")["imap"]
    assert "dates" in shown_keys("[[calls.dates]]\nid = 1\n")["calls"]


def unit() -> configparser.ConfigParser:
    c = configparser.ConfigParser(strict=False, interpolation=None)
    c.optionxform = str  # type: ignore[assignment, method-assign]
    c.read_string(UNIT.read_text())
    return c


def test_the_service_restarts_on_tempfail_but_not_on_config_errors():
    svc = unit()["Service"]
    assert svc["ExecStart"].endswith("/run.py --config /etc/partnerdesk/partnerdesk.toml run")
    assert svc["Restart"] == "on-failure"  # 75 and 1: retried after RestartSec
    assert set(svc["RestartPreventExitStatus"].split()) == {"2", "3", "77"}
    import run

    assert (run.EXIT_BAD_INPUT, run.EXIT_RUNNING, run.EXIT_TEMPFAIL, run.EXIT_LOGIN) == (2, 3, 75, 77)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path):
    text = UNIT.read_text().replace("/opt/partnerdesk/.venv/bin/python", sys.executable)
    text = text.replace("/opt/partnerdesk", str(ROOT))
    (tmp_path / "partnerdesk.service").write_text(text)
    p = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "partnerdesk.service")], capture_output=True,
                       text=True, timeout=60)
    problems = [line for line in (p.stdout + p.stderr).splitlines() if "partnerdesk.service" in line]
    assert p.returncode == 0 and not problems, p.stdout + p.stderr

"""Guards on the shape of the code: our `mailbox` wins, and the rules stay pure."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN_IMPORTS = {"imapclient", "aiosmtplib", "aiosmtpd", "tinydb", "schedule", "socket", "smtplib", "imaplib",
                     "os", "pathlib", "shutil", "subprocess", "requests", "urllib", "http", "asyncio", "time",
                     "random", "mailbox", "store", "jinja2", "tempfile", "io_uring", "sqlite3"}
FORBIDDEN_CALLS = {("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today"),
                   ("time", "time"), ("time", "monotonic")}
BUILTINS = {"open", "input", "print", "exec", "eval", "__import__"}


def test_mailbox_is_ours_under_pytest():
    import mailbox

    assert getattr(mailbox, "PARTNERDESK_MAILBOX", False), mailbox.__file__
    assert Path(mailbox.__file__).resolve().parent == ROOT / "mailbox"


def test_mailbox_is_ours_under_run_py(tmp_path):
    # Started from another directory, as a service manager would: run.py must still pick ours.
    code = ("import runpy, sys; sys.argv = ['run.py', 'states']; "
            f"runpy.run_path({str(ROOT / 'run.py')!r}, run_name='not_main'); "
            "import mailbox; print(mailbox.__file__, getattr(mailbox, 'PARTNERDESK_MAILBOX', False))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    path, marker = out.stdout.split()
    assert marker == "True" and Path(path).resolve().parent == ROOT / "mailbox"
    # And the entry point itself runs from elsewhere.
    out = subprocess.run([sys.executable, str(ROOT / "run.py"), "states"], capture_output=True, text=True,
                         cwd=tmp_path, check=True)
    assert "waiting_on_partner" in out.stdout


def test_mailbox_package_has_no_side_effects():
    tree = ast.parse((ROOT / "mailbox" / "__init__.py").read_text())
    assert not [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]


def _workflow_files():
    return sorted((ROOT / "workflows").rglob("*.py"))


def violations(source: str, name: str = "<src>") -> list[str]:
    problems = []
    for node in ast.walk(ast.parse(source, filename=name)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else []
        else:
            names = []
        for mod in names:
            if mod.split(".")[0] in FORBIDDEN_IMPORTS:
                problems.append(f"{name}:{node.lineno} imports {mod}")
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and (f.value.id, f.attr) in FORBIDDEN_CALLS:
                problems.append(f"{name}:{node.lineno} reads the clock ({f.value.id}.{f.attr})")
            elif isinstance(f, ast.Attribute) and f.attr in ("now", "utcnow", "today") and not node.args:
                problems.append(f"{name}:{node.lineno} reads the clock (.{f.attr}())")
            if isinstance(f, ast.Name) and f.id in BUILTINS:
                problems.append(f"{name}:{node.lineno} calls {f.id}()")
    return problems


def test_workflows_do_no_io_and_read_no_clock():
    problems = [p for path in _workflow_files() for p in violations(path.read_text(), path.name)]
    assert not problems, "workflows/ must stay pure:\n" + "\n".join(problems)


def test_the_purity_check_can_fail():
    # The guard above is only worth something if it notices each kind of violation.
    assert violations("import socket")
    assert violations("from tinydb import TinyDB")
    assert violations("import imapclient.exceptions")
    assert violations("from datetime import datetime\nx = datetime.now()")
    assert violations("import datetime\nx = datetime.date.today()")
    assert violations("open('/etc/passwd')")
    assert not violations("from .model import Thread\nfrom datetime import datetime\nx = datetime(2026, 1, 1)")


def test_no_work_at_import_time():
    code = ("import sys; sys.path.insert(0, %r); import run, workflows.service, mailbox.imap, mailbox.smtp, "
            "mailbox.spool, store.tinystore; import threading; print(threading.active_count())") % str(ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT.parent)
    assert out.stdout.strip() == "1" and out.stderr == ""


def test_readme_shows_the_lifecycle_table_the_code_uses():
    from workflows.lifecycle import table_text

    assert table_text() in (ROOT / "README.md").read_text()

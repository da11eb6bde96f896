"""Guards on the shape of the code: our `mailbox` wins, the rules stay pure, and every room imports only
the rooms below it (README "Layout")."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN_IMPORTS = {"imapclient", "aiosmtplib", "aiosmtpd", "tinydb", "schedule", "socket", "smtplib", "imaplib",
                     "os", "pathlib", "shutil", "subprocess", "requests", "urllib", "http", "asyncio", "time",
                     "random", "mailbox", "store", "jinja2", "tempfile", "io_uring", "sqlite3", "logging",
                     "service", "config", "cli", "run", "threading", "signal", "sys"}
# The ports a rule must never hold or be handed: it decides, the service layer does the I/O.
PORT_NAMES = {"store", "source", "mail_sender", "composer", "outbox", "log", "logger"}
PORT_TYPES = {"Store", "MailSource", "MailSender", "Composer", "Outbox", "Logger"}
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
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            for a in args.posonlyargs + args.args + args.kwonlyargs:
                hint = ast.unparse(a.annotation) if a.annotation is not None else ""
                if a.arg in PORT_NAMES or any(re.search(rf"\b{t}\b", hint) for t in PORT_TYPES):
                    problems.append(f"{name}:{node.lineno} {node.name}() receives a {a.arg}")
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self" \
                and node.attr in PORT_NAMES:
            problems.append(f"{name}:{node.lineno} holds a {node.attr}")
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
    assert violations("import logging")
    assert violations("from service.ports import Store")
    assert violations("def decide(mail, store):\n    pass")
    assert violations("class R:\n    def f(self):\n        return self.store")
    assert violations("def tick(now, to: MailSender):\n    pass")
    assert not violations("from .model import Thread\nfrom datetime import datetime\nx = datetime(2026, 1, 1)")


def test_no_work_at_import_time():
    code = ("import sys; sys.path.insert(0, %r); import run, cli.parser, service.cycle, config.settings, mailbox.imap, "
            "mailbox.smtp, mailbox.spool, mailbox.compose, store.tinystore; import threading; "
            "print(threading.active_count())") % str(ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT.parent)
    assert out.stdout.strip() == "1" and out.stderr == ""


def test_the_docs_show_the_lifecycle_table_the_code_uses():
    from workflows.lifecycle import table_text

    assert table_text() in (ROOT / "docs" / "mail.md").read_text()


# -- the house: rooms, floors and arrows ------------------------------------------------------------------------
# Each room may import the rooms listed for it (and itself); nothing imports a room on a higher floor.
ROOMS = ("workflows", "config", "service", "mailbox", "store", "cli", "run")
MAY_IMPORT = {
    "workflows": set(),
    "config": {"workflows"},
    "service": {"workflows"},
    "mailbox": {"workflows", "service", "config", "store"},
    "store": {"workflows"},
    "cli": {"workflows", "config", "service"},
    "run": {"workflows", "config", "service", "mailbox", "store", "cli"},
}
# What the mail adapters may take from the rooms beside them: value types, errors, the ports, the server
# settings; never a rule.
# workflows.proofs: the staff-proof readings (Authentication-Results, DKIM signatures) the adapters hand over.
MAILBOX_MAY_USE = {"workflows.model", "workflows.errors", "workflows.outbox", "workflows.mailings.due",
                   "workflows.proofs", "service.ports", "config.servers", "store.atomic"}


def _source_files():
    files = [ROOT / "run.py"]
    for room in ROOMS[:-1]:
        files += sorted((ROOT / room).rglob("*.py"))
    return files


def _room(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return "run" if rel.parts == ("run.py",) else rel.parts[0]


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import of one of our rooms in ``path``."""
    out = []
    pkg = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                   for n in ast.walk(block)}  # annotations only: no arrow at run time
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                names = ([mod] if node.module else []) + [f"{mod}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        out += [(node.lineno, n) for n in names if n.split(".")[0] in ROOMS]
    return out


def test_every_room_imports_only_the_rooms_below_it():
    problems = []
    for path in _source_files():
        room = _room(path)
        for line, mod in _imports(path):
            target = mod.split(".")[0]
            if target != room and target not in MAY_IMPORT[room]:
                problems.append(f"{path.relative_to(ROOT)}:{line} ({room}) imports {mod}")
    assert not problems, "\n".join(problems)


def test_mailbox_takes_only_value_types_errors_ports_and_server_settings():
    known = {_module(p) for p in _source_files()}
    problems = []
    for path in sorted((ROOT / "mailbox").glob("*.py")):
        for line, mod in _imports(path):
            if mod.split(".")[0] == "mailbox" or mod not in known:
                continue  # ours, or a name imported from a module (checked as that module)
            if mod not in MAILBOX_MAY_USE:
                problems.append(f"mailbox/{path.name}:{line} imports {mod}")
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    known = {_module(p): p for p in _source_files()}
    graph = {m: {i for _, i in _imports(p) if i in known and i != m} for m, p in known.items()}
    state: dict[str, int] = {}

    def visit(m: str, trail: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(n):] + [n]) if n in trail
                                     else f"import cycle through {n}")
            if n not in state:
                visit(n, trail + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_no_module_is_a_maze():
    big = [f"{p.relative_to(ROOT)}: {n} lines" for p in _source_files()
           if (n := len(p.read_text().splitlines())) > 600]
    assert not big, big
    assert len((ROOT / "run.py").read_text().splitlines()) <= 300, "run.py is the composition root only"


def test_only_the_store_touches_tables():
    problems = [f"{p.relative_to(ROOT)}:{i}" for p in _source_files() if _room(p) != "store"
                for i, line in enumerate(p.read_text().splitlines(), 1)
                if ".table(" in line or "doc_id" in line or "tinydb" in line]
    assert not problems, problems


def test_no_state_name_is_spelled_outside_the_lifecycle_table():
    from workflows.lifecycle import State

    names = {s.value for s in State}
    problems = []
    for path in _source_files():
        if path == ROOT / "workflows" / "lifecycle.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                problems.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert not problems, "use workflows.lifecycle.State:\n" + "\n".join(problems)


def test_the_house_checks_can_fail(tmp_path):
    # The import walk must see relative imports the way Python resolves them.
    (tmp_path / "pkg").mkdir()
    f = tmp_path / "pkg" / "mod.py"
    f.write_text("from ..service import ports\nfrom .other import x\nimport store.tinystore\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert [m for _, m in _imports(f)] == ["service", "service.ports", "store.tinystore"]
    finally:
        ROOT = saved

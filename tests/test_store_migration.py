"""A store written by 0.1.0 (before the house move) opens and works: same CLI output, same decisions.

The expected outputs in tests/data/store-v1/expected/ were recorded with the 0.1.0 code on a copy of
the same store. Regenerate them only for an intended change of output: PD_RECORD=1 pytest this file.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from store.migrate import SCHEMA

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "data" / "store-v1"
EXPECTED = FIXTURE / "expected"
NOW = "2027-01-21T10:00:00-05:00"

VERBS = {
    "threads-list": ["threads", "list"],
    "threads-list-json": ["threads", "list", "--json"],
    "threads-show-oa1": ["threads", "show", "OA-1"],
    "threads-show-oa7-json": ["threads", "show", "OA-7", "--json"],
    "outbox-list": ["outbox", "list"],
    "outbox-list-json": ["outbox", "list", "--json"],
    "partners-list": ["partners", "list"],
    "partners-list-json": ["partners", "list", "--json"],
    "mailings-list": ["mailings", "list"],
    "mailings-plan": ["mailings", "plan", "--from", "2027-01-20", "--to", "2027-06-30"],
    "mailings-rsvps": ["mailings", "rsvps"],
}


@pytest.fixture
def old_store(tmp_path: Path) -> Path:
    for f in ("partnerdesk.json", "partnerdesk.json.journal", "partnerdesk.toml"):
        shutil.copy(FIXTURE / f, tmp_path / f)
    return tmp_path / "partnerdesk.toml"


def run(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run.py"), "--config", str(config), "--now", NOW, *args],
                          capture_output=True, text=True, cwd=config.parent, timeout=60)


def _kept(old, new) -> bool:
    """Everything 0.1.0 printed is still there; new fields may be added, but only empty ones."""
    if isinstance(old, dict) and isinstance(new, dict):
        return all(k in new and _kept(v, new[k]) for k, v in old.items()) and \
            all(v in (None, "", [], {}) for k, v in new.items() if k not in old)
    if isinstance(old, list) and isinstance(new, list):
        return len(old) == len(new) and all(_kept(a, b) for a, b in zip(old, new))
    return old == new


def check(name: str, text: str) -> None:
    text = text.replace("\r\n", "\n")
    path = EXPECTED / f"{name}.txt"
    if os.environ.get("PD_RECORD"):
        EXPECTED.mkdir(exist_ok=True)
        path.write_text(text)
    if name.endswith("-json"):  # JSON for programs: compared as data, where added (empty) fields are fine
        assert _kept(json.loads(path.read_text()), json.loads(text)), f"{name}: 0.1.0's output is not kept"
        return
    assert text == path.read_text(), f"{name}: output differs from what 0.1.0 printed on the same store"


def test_every_read_verb_prints_what_the_old_version_printed(old_store: Path):
    # Each verb on its own fresh copy would hide a verb that changes the store; run them in sequence.
    for name, args in VERBS.items():
        p = run(old_store, *args)
        assert p.returncode == 0, (name, p.stderr)
        check(name, p.stdout)


def test_the_lifecycle_table_keeps_every_row_and_adds_the_clock(old_store: Path):
    p = run(old_store, "states")
    old_rows = [line.rstrip("|").rstrip() for line in (EXPECTED / "states.txt").read_text().splitlines()
                if line.startswith("| ") and "state" not in line.split("|")[1]]
    new_rows = [line for line in p.stdout.splitlines() if line.startswith("| ") and "state" not in line.split("|")[1]]
    assert len(old_rows) == 16 and len(new_rows) == 16 + 3  # issue 14 appends the three "merge" rows
    assert all("| merge |" in row for row in new_rows[16:])
    for old, new in zip(old_rows, new_rows):
        assert new.startswith(old + " | ") and new.split("|")[4].strip() in ("start", "stop", "keep"), (old, new)


def _headers(eml: Path) -> str:
    text = eml.read_bytes().decode("ascii", "replace")
    head = text.split("\r\n\r\n", 1)[0]
    keep = [line for line in head.split("\r\n") if re.match(r"(X-Envelope-|To:|Subject:|Message-ID:|In-Reply-To:|"
                                                          r"X-Partnerdesk-)", line)]
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    body = msg.get_body(preferencelist=("plain",)).get_content()
    return eml.name + "\n  " + "\n  ".join(keep) + "\n" + body


def test_a_cycle_on_the_old_store_decides_what_the_old_version_decided(old_store: Path):
    outbox = old_store.parent / "spool" / "outbox"
    inbox = old_store.parent / "spool" / "inbox"
    inbox.mkdir(parents=True)
    at = datetime.fromisoformat(NOW).timestamp() - 3600
    for name, frm, subject, body in (
            ("a.eml", "Antonio De Marco <antonio@nuvole.example>", "Re: [OA-1] still lost", "Any news?"),
            ("b.eml", "Andrea Pescetti <andrea@nuvole.example>", "Drush make fails", "Since the upgrade.")):
        (inbox / name).write_text(f"From: {frm}\r\nTo: support@openatrium.example\r\nSubject: {subject}\r\n"
                                  f"Message-ID: <{name}@nuvole.example>\r\n\r\n{body}\r\n")
        os.utime(inbox / name, (at, at))
    p = run(old_store, "once")
    assert p.returncode == 0, p.stderr
    mails = sorted(outbox.glob("*.eml")) if outbox.exists() else []
    check("once", p.stdout + "".join(_headers(m) + "\n" for m in mails))
    # And the store it wrote is one this version reads back.
    p = run(old_store, "threads", "list", "--json")
    assert p.returncode == 0, p.stderr
    assert {t["id"] for t in json.loads(p.stdout)} == {f"OA-{n}" for n in range(1, 9)}


def test_threads_opened_for_automatic_mail_are_set_aside_by_the_upgrade(old_store: Path):
    """0.1.0 made threads of an out-of-office (OA-5) and of broken mail with no sender (OA-6): the upgrade
    closes them and lists their mail as automatic, on a read-only open (in memory) as after the first write.
    A stranger's real request (OA-4) and a partner's thread (OA-7) stay open."""
    for when in ("read-only", "migrated"):
        if when == "migrated":
            assert run(old_store, "once").returncode == 0
        threads = {t["id"]: t for t in json.loads(run(old_store, "threads", "list", "--json").stdout)}
        assert threads["OA-5"]["state"] == threads["OA-6"]["state"] == "closed", when
        assert threads["OA-5"]["events"][-1]["kind"] == "set-aside"
        assert threads["OA-4"]["state"] == threads["OA-7"]["state"] == "new"
        listed = json.loads(run(old_store, "automatic", "list", "--json").stdout)
        assert [(r["filed_with"], r["kind"]) for r in listed] == [("OA-5", "auto-reply"), ("OA-6", "0.1.0-thread")]
        partners = json.loads(run(old_store, "partners", "list", "--json").stdout)
        billing = next(c for p in partners for c in p["contacts"] if c["email"] == "billing@nuvole.example")
        assert billing["delivery"]["bouncing"] and billing["delivery"]["staff_told_at"]  # 0.1.0 told staff
    stored = json.loads((old_store.parent / "partnerdesk.json").read_text())
    assert stored["meta"]["schema"]["value"] == SCHEMA and "contact_failures" not in stored


def test_a_reply_to_a_notification_sent_by_0_1_0_gets_a_notice_and_one_reply_sends_it_on(old_store: Path):
    # 0.1.0's notifications carry no reply key: a staff member answering one after the upgrade is not
    # proven. They get the unverified-mail notice (with a key); replying to it sends the answer on.
    outbox = old_store.parent / "spool" / "outbox"
    inbox = old_store.parent / "spool" / "inbox"
    inbox.mkdir(parents=True)
    old_notification = "<oa-1.notify.cd224532c620.fcf545449032b981@openatrium.example>"
    at = datetime.fromisoformat(NOW).timestamp() - 3600

    def drop(name: str, headers: str, body: str) -> None:
        (inbox / name).write_text(f"From: Young <young@devseed.example>\r\n{headers}"
                                  f"Message-ID: <{name}@devseed.example>\r\n\r\n{body}\r\n")
        os.utime(inbox / name, (at, at))

    drop("old-reply.eml", "To: support@openatrium.example\r\nSubject: Re: [OA-1] New: Spaces override lost\r\n"
                          f"In-Reply-To: {old_notification}\r\nReferences: {old_notification}\r\n",
         "Revert with --force, then clear the cache.")
    p = run(old_store, "once")
    assert p.returncode == 0, p.stderr
    assert "relayed 0" in p.stdout and "unverified 1" in p.stdout, p.stdout
    [notice_file] = [f for f in outbox.glob("*.eml") if "unverified-notice" in f.read_text(errors="replace")]
    notice = email.message_from_bytes(notice_file.read_bytes(), policy=email.policy.default)
    assert str(notice["To"]) == "young@devseed.example"
    assert "Revert with --force" in notice.get_body(("plain",)).get_content()
    reply_to = notice["Reply-To"].addresses[0].addr_spec
    assert reply_to.startswith("support+1k")

    drop("confirm.eml", f"To: {reply_to}\r\nSubject: Re: {notice['Subject']}\r\n"
                        f"In-Reply-To: {notice['Message-ID']}\r\nReferences: {notice['Message-ID']}\r\n", "yes")
    p = run(old_store, "once")
    assert p.returncode == 0, p.stderr
    assert "relayed 1" in p.stdout, p.stdout
    [relay] = [f for f in outbox.glob("*relay*.eml")]
    text = relay.read_text(errors="replace")
    assert "X-Envelope-To: antonio@nuvole.example" in text and "Revert with --force" in text
    shown = run(old_store, "threads", "show", "OA-1").stdout
    assert "confirming it by replying to the unverified-mail notice" in shown

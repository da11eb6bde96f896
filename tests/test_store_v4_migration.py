"""A store written by schema 4 (commit 6cfee71, hot ledger rows whole) opens and works: the same output,
the same decisions, and its hot ledger rows made compact (store/ledger_rows.py) without losing a field.

The fixture and tests/data/store-v4/expected/ were made with the schema-4 code (see make_store.py there).
Regenerate the expected outputs only for an intended change of output:
PD_CODE=<a checkout of 6cfee71> PD_RECORD=1 pytest this file -k prints.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import old_store_fixture
from old_store_fixture import ROOT

FIXTURE = ROOT / "tests" / "data" / "store-v4"
EXPECTED = FIXTURE / "expected"
NOW = "2027-03-31T10:00:00-04:00"

VERBS = {
    "mailings-list": ["mailings", "list"],
    "mailings-plan": ["mailings", "plan", "--from", "2027-03-31", "--to", "2027-09-30"],
    "mailings-send-calls-dry-run": ["mailings", "send", "calls", "--dry-run"],
    "mailings-rsvps": ["mailings", "rsvps"],
    "outbox-list": ["outbox", "list"],
}


@pytest.fixture
def v4_store(tmp_path: Path) -> Path:
    for f in ("partnerdesk.json", "partnerdesk.toml"):
        shutil.copy(FIXTURE / f, tmp_path / f)
    for side in (".archive", ".mail"):
        shutil.copytree(FIXTURE / f"partnerdesk.json{side}", tmp_path / f"partnerdesk.json{side}")
    return tmp_path / "partnerdesk.toml"


def run(config: Path, *args: str, now: str = NOW) -> subprocess.CompletedProcess:
    return old_store_fixture.run(config, *args, now=now)


def check(name: str, text: str, tmp: Path) -> None:
    text, was = old_store_fixture.recorded(EXPECTED, name, text, tmp)
    assert text == was, f"{name}: output differs from what the schema-4 code printed on the same store"


def test_every_read_verb_prints_what_schema_4_printed(v4_store: Path):
    for name, args in VERBS.items():
        p = run(v4_store, *args)
        assert p.returncode == 0, (name, p.stderr)
        check(name, p.stdout, v4_store.parent)


def test_a_cycle_on_the_schema_4_store_decides_what_schema_4_decided(v4_store: Path):
    p = run(v4_store, "once", now="2027-04-06T10:00:00-04:00")  # the notices due a week later
    assert p.returncode == 0, p.stderr
    outbox = v4_store.parent / "spool" / "outbox"
    mails = sorted(m.name.split("-", 1)[1] for m in outbox.glob("*.eml")) if outbox.exists() else []
    check("once", p.stdout + "".join(m + "\n" for m in mails), v4_store.parent)
    p = run(v4_store, "mailings", "list", now="2027-04-06T10:00:00-04:00")
    assert p.returncode == 0, p.stderr
    # One intended change: the schema-4 code kept eric@devseed.example bouncing, because the mail this
    # very cycle sent him was the last one accepted, too recent to tell; the first one accepted after his
    # failure (March 30) drew no bounce, and now clears him (store.first_accepted_after).
    assert "contacts bouncing: 0\n" in p.stdout
    check("after-mailings-list", p.stdout.replace("contacts bouncing: 0\n", "contacts bouncing: 1\n"), v4_store.parent)


@pytest.mark.skipif(bool(os.environ.get("PD_CODE")), reason="checks this version's layout")
def test_the_first_write_open_makes_the_hot_ledger_compact_and_every_entry_reads_as_it_was(v4_store: Path):
    from store.ledger_rows import SHAPE
    from store.migrate import SCHEMA
    from store.tinystore import Store

    path = v4_store.parent / "partnerdesk.json"
    old = json.loads(path.read_text())
    assert old["meta"]["schema"]["value"] == 4 and len(old["ledger"]) == 14
    was = {k: v for k, v in Store(path, readonly=True).ledger_view().items()}  # read before the migration
    s = Store(path)
    s.close()
    data = json.loads(path.read_text())
    assert data["meta"]["schema"]["value"] == SCHEMA
    assert set(data["ledger"]) == set(old["ledger"])
    assert all(SHAPE in row and set(row) <= {SHAPE, "partner_id"} for row in data["ledger"].values())
    # The five invitations queued for April 13 share one shape; each skip's reason makes its own.
    queued = {row[SHAPE] for k, row in data["ledger"].items()
              if k.startswith("call-invite|") and old["ledger"][k]["status"] == "queued"}
    assert len(queued) == 1 and len(data["ledger_shapes"]) == 8
    s = Store(path, readonly=True)
    for key, row in old["ledger"].items():
        got = s.ledger(key)
        assert list(got.items()) == list(row.items()), key  # every field, in its order
        assert list(was[key].items()) == list(row.items()), key
    assert [list(e.items()) for e in sorted(s.ledger_all(), key=lambda e: e["key"])] == \
        [list({**row, "key": k}.items()) for k, row in sorted(
            {**{k: v for k, v in s.archive.items("ledger")}, **old["ledger"]}.items())]

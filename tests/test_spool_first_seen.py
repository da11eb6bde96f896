"""Spool mode: a file's receipt time is when partnerdesk first saw it, on the rules' clock (with --now
too), kept in the store so that a restart does not change it; never the file's mtime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from mailbox.spool import SpoolSource
from store.tinystore import open_store

ROOT = Path(__file__).resolve().parent.parent
HEADER = "partner_id,partner_name,plan,renews_on,contact_name,contact_email,roles,trained_on"
MAIL = ("From: Antonio <antonio@nuvole.example>\r\nTo: support@openatrium.example\r\nSubject: help\r\n"
        "Message-ID: <a1@nuvole.example>\r\n\r\nThe spaces override is lost.\r\n")


def test_receipt_time_is_first_seen_and_survives_a_restart(tmp_path):
    (tmp_path / "spool" / "inbox").mkdir(parents=True)
    f = tmp_path / "spool" / "inbox" / "a.eml"
    f.write_text(MAIL)
    old = datetime(2020, 1, 1, tzinfo=timezone.utc).timestamp()
    os.utime(f, (old, old))
    t1 = datetime(2027, 1, 21, 15, 0, tzinfo=timezone.utc)
    with open_store(tmp_path / "pd.json") as store:
        [raw] = SpoolSource(tmp_path / "spool", clock=lambda: t1).fetch_new(store)
        assert raw.received_at == t1  # not 2020: the mtime says nothing about when it reached us
    # Not marked done (a crash before the intake's write): a restart later sees the same receipt time.
    with open_store(tmp_path / "pd.json") as store:
        [raw] = SpoolSource(tmp_path / "spool", clock=lambda: t1 + timedelta(days=3)).fetch_new(store)
        assert raw.received_at == t1
        # Another mail dropped later under the same name is new mail, received when seen.
        f.write_text(MAIL.replace("a1@", "a2@"))
        [raw] = SpoolSource(tmp_path / "spool", clock=lambda: t1 + timedelta(days=3)).fetch_new(store)
        assert raw.received_at == t1 + timedelta(days=3)


def test_with_now_a_dropped_file_is_received_now_and_its_ack_promises_the_future(tmp_path):
    (tmp_path / "pd.toml").write_text('[support]\naddress = "support@openatrium.example"\n'
                                      'staff = ["young@devseed.example"]\n[store]\npath = "data/pd.json"\n')
    (tmp_path / "r.csv").write_text(f"{HEADER}\nnuvole,Nuvole Web,standard,2027-03-31,Antonio,"
                                    f"antonio@nuvole.example,primary,2026-06-12\n")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "run.py"), "--config", "pd.toml",
                               "--now", "2027-01-21T10:00:00-05:00", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60, check=True)

    run("partners", "import", "r.csv")
    inbox = tmp_path / "data" / "spool" / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "a.eml").write_text(MAIL)
    week_ago = datetime(2027, 1, 14, 12, tzinfo=timezone.utc).timestamp()  # copied in with an old mtime
    os.utime(inbox / "a.eml", (week_ago, week_ago))
    assert "escalations" not in run("once").stdout  # no second-level escalation fired at once
    [t] = json.loads(run("threads", "list", "--json").stdout)
    assert datetime.fromisoformat(t["created_at"]) - datetime(2027, 1, 21, 15, tzinfo=timezone.utc) < timedelta(minutes=1)
    assert t["due_at"].startswith("2027-01-22T10:00")  # one business day after it arrived, not overdue
    [ack] = (tmp_path / "data" / "spool" / "outbox").glob("*-ack.eml")
    assert "Friday, January 22" in ack.read_text() and "already" not in ack.read_text()

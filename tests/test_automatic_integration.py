"""Automatic mail on real servers: the corpus delivered into a real Dovecot support mailbox and taken in by
`run.py once` (filed in Partnerdesk/Automatic, never answered, no thread), and a real Sieve vacation
responder (Dovecot Pigeonhole) on a partner's mailbox exchanging with the daemon for several cycles."""

from __future__ import annotations

import email
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, Desk
from tests.mailservers import MailServers
from tests.test_automatic_corpus import OUT, SAMPLES
from tests.test_intake_integration import mail, parsed, send, threads

pytestmark = pytest.mark.integration


def _roster(desk: Desk) -> None:
    n = desk.n
    desk.run("partners", "import", str(desk.roster([
        f"shop{n},Shop {n},standard,2027-03-31,Antonio,{desk.partner},primary;technical,2026-06-12",
        f"shop{n},Shop {n},standard,2027-03-31,Giulia,{desk.colleague},billing,"])))
    assert desk.run("once").stdout.startswith("fetched 0")  # first start: the history cut-off


def test_the_corpus_in_a_real_mailbox_is_filed_aside_and_never_answered(desk):
    _roster(desk)
    automatic = sorted(n for n, s in SAMPLES.items() if s["kind"] != "none")
    for name in automatic:
        desk.append((OUT / name).read_bytes())
    desk.append(b"Subject: who am I\r\nMessage-ID: <nobody@x.example>\r\n\r\nno From at all\r\n")
    send(desk, mail(desk.partner, desk.support, "Site down", "Since this morning."))
    before = len(desk.servers.received)

    p = desk.run("once")
    assert p.stdout.startswith(f"fetched {len(automatic) + 2}, new threads 1, acks 1, notifications 1, relayed 0, "
                               f"quarantined 1")
    assert f"automatic {len(automatic)}" in p.stdout
    # One acknowledgement and one staff notification went out: nothing to any automatic sender.
    sent = desk.servers.received[before:]
    # (Mail to staff goes out one copy per staff member, each with its own reply key: issue 8.)
    assert sorted(r.rcpt_tos for r in sent) == sorted([(desk.partner,), *((a,) for a in desk.staff)])
    # One thread: the partner's. The automatic mail is listed, never a thread.
    assert [t["requester"] for t in threads(desk)] == [desk.partner]
    listed = json.loads(desk.run("automatic", "list", "--json").stdout)
    assert len(listed) == len(automatic) and {r["filed_with"] for r in listed} == {""}
    assert "bounce" in desk.run("automatic", "list", "--kind", "bounce").stdout
    # On the server: the automatic mail moved to its folder, the unattributable one to quarantine,
    # the request kept in the inbox (flagged done).
    folders = desk.servers.folders(desk.support)
    assert "Partnerdesk/Automatic" in folders and "Partnerdesk-Quarantine" in folders
    assert len(desk.servers.fetch_all(desk.support, "Partnerdesk/Automatic")) == len(automatic)
    assert len(desk.servers.fetch_all(desk.support, "Partnerdesk-Quarantine")) == 1
    [kept] = desk.servers.fetch_all(desk.support)
    assert parsed(kept)["Subject"] == "Site down"
    # A second cycle finds nothing new and sends nothing.
    assert desk.run("once").stdout.startswith("fetched 0, new threads 0, acks 0")


@pytest.fixture(scope="module")
def sieve_servers():
    root = Path(tempfile.mkdtemp(prefix="partnerdesk-sieve-daemon-"))  # not under pytest's basetemp
    try:
        with MailServers(root, sieve=True) as ms:
            yield ms
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _wait(predicate, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_a_vacation_responder_and_the_daemon_stop_after_one_ack_and_one_recorded_auto_reply(sieve_servers, tmp_path):
    ms = sieve_servers
    d = Desk(servers=ms, dir=tmp_path, n=900, support="support900@example.test",
             staff=["staff900@example.test"], escalation=["esc900@example.test"], lead="lead900@example.test",
             partner="antonio900@shop900.example.test", colleague="giulia900@shop900.example.test",
             stranger="stranger900@example.test")
    for a in [d.support, *d.staff, *d.escalation, d.lead, d.stranger, d.partner, d.colleague]:
        ms.add_user(a)
    ms.set_vacation(d.partner, "I am away until Monday; Giulia covers for me.", subject="Away until Monday")
    _roster(d)

    daemon = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--config", str(d.config), "run"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=d.dir,
                              env=dict(os.environ, PD_TEST_PASSWORD="pw"))
    try:
        # The partner writes; the daemon acknowledges (Auto-Submitted: Pigeonhole stays silent) and tells staff.
        request = mail(f"Antonio <{d.partner}>", d.support, "Views broken after upgrade", "All views are empty.")
        send(d, request)
        [note] = _wait(lambda: ms.fetch_all(d.staff[0]), "the staff notification")
        # Staff answer from a mail client; the relay is a person's mail, so the vacation responder answers it.
        answer = mail(d.staff[0], d.support, "Re: " + parsed(note)["Subject"], "Clear the cache and retry.",
                      In_Reply_To=parsed(note)["Message-ID"])
        send(d, answer)

        def auto_replies():
            [t] = threads(d)
            return [e for e in t["events"] if e["kind"] == "auto-reply"]

        [recorded] = _wait(auto_replies, "the vacation reply, recorded in the thread")
        assert recorded["by"] == d.partner and "Auto-Submitted" in recorded["detail"]
        # Several more cycles: each probe from a stranger is acknowledged only by a cycle after the last.
        for i in range(3):
            send(d, mail(d.stranger, d.support, f"Probe {i}", "Are you there?"))
            _wait(lambda: len(ms.fetch_all(d.stranger)) == i + 1, f"the daemon's cycle {i}")
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err

    # The exchange ended: the partner got one acknowledgement and the relayed answer, nothing else;
    # support got exactly one vacation reply, recorded in the thread and filed aside, never answered.
    kinds = [parsed(r)["X-Partnerdesk-Kind"] for r in ms.fetch_all(d.partner)]
    assert sorted(kinds) == ["ack", "relay", "welcome"]  # (the welcome mailing went out at the import)
    [thread] = [t for t in threads(d) if t["requester"] == d.partner]
    assert [e["kind"] for e in thread["events"]].count("auto-reply") == 1
    assert thread["state"] == "waiting_on_partner"  # the auto-reply is no partner answer
    vacation = ms.fetch_all(d.support, "Partnerdesk/Automatic")
    assert len(vacation) == 1 and email.message_from_bytes(vacation[0])["Subject"] == "Away until Monday"
    assert [r["filed_with"] for r in json.loads(d.run("automatic", "list", "--json").stdout)] == [thread["id"]]
    acks = json.loads(d.run("outbox", "list", "--json").stdout)
    assert [e["rcpt_to"] for e in acks if e["kind"] == "ack"].count([d.partner]) == 1

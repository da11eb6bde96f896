"""Scheduled mailings end to end on a real Dovecot + SMTP (tests/conftest.py `desk`).

partnerdesk runs as a user runs it (``python run.py --config ... [--now T] once``);
results are read back from the contacts' IMAP mailboxes.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import signal
import subprocess
import sys
import time

import icalendar
import pytest

from mailbox.ical import reply
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

CALLS = """
[calls]
rrule = "FREQ=MONTHLY;INTERVAL=3;BYDAY=2TU"
first = 2027-01-12T14:00:00
dial_in = "https://meet.example.test/soa"
"""
INVITES_DUE = "2026-12-29T14:30:00-05:00"  # 14 days before Tuesday, January 12, 2027, 2 PM ET


def parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def inbox(desk, address):
    return [parsed(r) for r in desk.servers.fetch_all(address)]


def people(desk, tag, n):
    addrs = [f"{tag}{desk.n}x{i}@example.test" for i in range(n)]
    for a in addrs:
        desk.servers.add_user(a)
    return addrs


def ledger(desk) -> dict:
    """Every ledger entry by key, archived ones too (the JSON keeps only what planning lists)."""
    from store.tinystore import open_store

    with open_store(desk.dir / "store" / "partnerdesk.json", readonly=True) as s:
        return {e["key"]: e for e in s.ledger_all()}


def store_json(desk):
    path = desk.dir / "store" / "partnerdesk.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def test_invitations_land_with_a_calendar_entry_and_rsvps_are_recorded_not_threaded(desk):
    desk.write_config(CALLS)
    a, b = people(desk, "inv", 2)
    desk.run("partners", "import", str(desk.roster([
        f"acme,Acme,standard,2027-09-30,Ann Acme,{a},primary,",
        f"solo,Solo Shop,solo,2027-09-30,Sol O,{b},primary;billing,2026-06-01",
    ])), now="2026-12-29T10:00:00-05:00")
    desk.run("once", now=INVITES_DUE)
    for addr in (a, b):
        got = inbox(desk, addr)
        kinds = sorted(m["X-Partnerdesk-Kind"] for m in got)
        assert kinds == ["call-invite", "welcome"], kinds
        inv = next(m for m in got if m["X-Partnerdesk-Kind"] == "call-invite")
        assert inv["Auto-Submitted"] == "auto-generated" and "unsubscribe" in inv["List-Unsubscribe"]
        [part] = [p for p in inv.walk() if p.get_content_type() == "text/calendar"]
        assert part.get_param("method") == "REQUEST"
        cal = icalendar.Calendar.from_ical(part.get_content())
        [ev] = cal.walk("VEVENT")
        assert str(ev["uid"]).startswith("call-2027-01-12@") and int(ev["sequence"]) == 0
        assert ev.decoded("dtstart").isoformat() == "2027-01-12T14:00:00-05:00"
        assert str(ev["organizer"]).lower() == f"mailto:{desk.support}"
        assert str(ev["attendee"]).lower() == f"mailto:{addr}"
        assert cal.walk("VTIMEZONE")[0]["tzid"] == "America/New_York"
    # Ann accepts from her calendar client: the REPLY goes to the support inbox.
    inv = next(m for m in inbox(desk, a) if m["X-Partnerdesk-Kind"] == "call-invite")
    ics = next(p for p in inv.walk() if p.get_content_type() == "text/calendar").get_content()
    answer = email.message.EmailMessage()
    answer["From"], answer["To"] = f"Ann Acme <{a}>", desk.support
    answer["Subject"], answer["Message-ID"] = "Accepted: State of Open Atrium", f"<rsvp{desk.n}@example.test>"
    answer.set_content("Ann Acme has accepted this invitation.")
    answer.add_alternative(reply(ics, a, "ACCEPTED"), subtype="calendar", params={"method": "REPLY"})
    desk.append(answer.as_bytes())
    desk.run("once", now="2026-12-30T10:00:00-05:00")
    out = desk.run("mailings", "rsvps", "call-2027-01-12").stdout
    assert a in out and "ACCEPTED" in out
    assert json.loads(desk.run("threads", "list", "--json").stdout) == []
    # Nothing went out twice, and staff were not notified about the RSVP.
    assert len(inbox(desk, a)) == 2 and inbox(desk, desk.staff[0]) == []


def test_mailing_killed_halfway_and_restarted_sends_each_recipient_exactly_one(desk):
    desk.write_config(CALLS.replace("[calls]", "[mailings]\nenabled = [\"calls\"]\n[calls]"))
    # 0.25 s between mails: the kill lands between two sends, after the first few are recorded.
    cfg = desk.config.read_text().replace('security = "none"\n\n[store]',
                                          'security = "none"\nrate_per_minute = 240\nconnections = 1\n\n[store]')
    if "rate_per_minute" not in cfg:  # [smtp] is followed by another table in this config layout
        cfg = cfg.replace("[store]", "rate_per_minute = 240\nconnections = 1\n\n[store]", 1)
    desk.config.write_text(cfg)
    addrs = people(desk, "kill", 8)
    desk.run("partners", "import", str(desk.roster(
        [f"p{i},Partner {i},standard,2027-09-30,Person {i},{addr},primary," for i, addr in enumerate(addrs)])),
        now="2026-12-29T10:00:00-05:00")
    cmd = [sys.executable, str(ROOT / "run.py"), "--config", str(desk.config), "--now", INVITES_DUE, "once"]
    proc = subprocess.Popen(cmd, cwd=desk.dir, env=dict(os.environ, PD_TEST_PASSWORD="pw"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    journal = desk.dir / "store" / "partnerdesk.json.journal"  # send results land here first
    while time.monotonic() < deadline:
        sent = [e for e in store_json(desk).get("outbox", {}).values() if e.get("status") == "sent"]
        journaled = journal.read_text().count('"status":"sent"') if journal.exists() else 0
        if len(sent) + journaled >= 3 or proc.poll() is not None:
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"`once` ended (exit {proc.returncode}) before the kill; it should still be sending"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    delivered_before = sum(len(desk.servers.fetch_all(x)) for x in addrs)
    assert 3 <= delivered_before < len(addrs), "the kill should land in the middle of the mailing"
    desk.run("once", now=INVITES_DUE)
    desk.run("once", now="2026-12-29T16:00:00-05:00")
    for addr in addrs:
        got = inbox(desk, addr)
        assert [m["X-Partnerdesk-Kind"] for m in got] == ["call-invite"], addr


def test_solo_notice_says_2000_and_renewal_mid_series_stops_the_old_series(desk):
    desk.write_config('[mailings]\nenabled = ["renewals"]\n')
    solo, std_billing, std_primary = people(desk, "ren", 3)
    desk.run("partners", "import", str(desk.roster([
        f"cook,Cook Shop,solo,2027-05-01,Mark Cook,{solo},primary;billing;technical,",
        f"big,Big Agency,standard,2027-05-01,Bea Boss,{std_primary},primary,",
        f"big,Big Agency,standard,2027-05-01,Bill Ing,{std_billing},billing,",
    ])), now="2027-01-01T09:00:00-05:00")
    desk.run("once", now="2027-03-02T10:30:00-05:00")  # 60 days before May 1
    [notice] = inbox(desk, solo)
    text = notice.get_body(("plain",)).get_content()
    assert "$2,000" in text and "$4,000" not in text and "$2,000" in notice["Subject"]
    assert notice["List-Unsubscribe"] is None and notice["Auto-Submitted"] == "auto-generated"
    [big] = inbox(desk, std_billing)
    assert "$4,000" in big.get_body(("plain",)).get_content()
    assert inbox(desk, std_primary) == []  # the billing contact, not the primary
    # Big Agency pays mid-series: its old series stops; Cook Shop's goes on.
    out = desk.run("partners", "renew", "big", "--until", "2028-05-01", now="2027-03-10T09:00:00-05:00").stdout
    assert "stopped" in out
    desk.run("once", now="2027-04-01T10:30:00-05:00")  # 30 days before
    desk.run("once", now="2027-04-24T10:30:00-05:00")  # 7 days before
    assert len(inbox(desk, std_billing)) == 1
    assert len(inbox(desk, solo)) == 3
    stopped = [r for k, r in ledger(desk).items() if "big/2027-05-01" in k and r["status"] == "skipped"]
    assert len(stopped) == 4 and all("renewal recorded" in r["reason"] for r in stopped)
    # Big Agency in the new term's window: its 60-day notice (March 2, 2028) to the billing contact, and only
    # that (Cook Shop, which never paid, still gets its overdue lapse notice in the same plan).
    plan = desk.run("mailings", "plan", "--from", "2028-02-01", "--to", "2028-03-05").stdout.splitlines()
    [step] = [line for line in plan if std_billing in line or std_primary in line]
    assert step.startswith("Thursday, March 2, 2028") and std_billing in step and " renewal " in step
    assert "60 days before the renewal date (Monday, May 1, 2028)" in step and "SKIP" not in step


def test_downtime_sends_only_the_latest_notice_and_a_bounce_is_reported_to_staff_once(desk):
    desk.write_config('[mailings]\nenabled = ["renewals"]\n')
    [ok] = people(desk, "down", 1)
    gone = f"gone{desk.n}@example.test"  # no such mailbox: the server answers 550
    desk.run("partners", "import", str(desk.roster([
        f"a,A Shop,standard,2027-05-01,Al,{ok},primary;billing,",
        f"b,B Shop,standard,2027-05-01,Gone,{gone},primary;billing,",
    ])), now="2027-01-01T09:00:00-05:00")
    # Down from before the 60-day notice until after the 7-day one: one notice, the 7-day one.
    desk.run("once", now="2027-04-25T09:00:00-05:00")
    desk.run("once", now="2027-04-25T09:10:00-05:00")
    [only] = inbox(desk, ok)
    # The 7-day notice (due April 24) goes out on the 25th and says what is true then.
    assert "in 6 days" in only.get_body(("plain",)).get_content()
    reports = inbox(desk, desk.staff[0])
    assert len(reports) == 1 and gone in reports[0].get_body(("plain",)).get_content()
    assert reports[0]["X-Partnerdesk-Kind"] == "mailing-failure"
    skipped = [r for r in ledger(desk).values() if r["status"] == "skipped"]
    assert {r["offset"] for r in skipped} == {60, 30} and all("superseded" in r["reason"] for r in skipped)

"""The escalation ladder, commands by mail and the dry run, end to end on real servers.

Times are deterministic: the partner's mail is APPENDed to the support INBOX with an
explicit INTERNALDATE after a first ``once`` on the empty mailbox (which records the
history cut-off), and every ``once`` runs with ``--now``. The week is in the past
(Monday 1 December 2025): Dovecot replaces a future INTERNALDATE with the current time.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import json
import re
from datetime import datetime
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import pytest

pytestmark = pytest.mark.integration
ET = ZoneInfo("America/New_York")
NO_DIGEST = "\n[digest]\nenabled = false\n"


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """December 2025: day 1 is a Monday."""
    return datetime(2025, 12, day, hour, minute, tzinfo=ET)


def iso(day: int, hour: int, minute: int = 0) -> str:
    return at(day, hour, minute).isoformat()


def msg(frm: str, to: str, subject: str, body: str, *, reply_to: EmailMessage | None = None) -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = frm, to, subject
    m["Date"] = email.utils.format_datetime(datetime.now(ET))
    m["Message-ID"] = email.utils.make_msgid(domain=frm.rpartition("@")[2])
    if reply_to is not None:
        m["In-Reply-To"] = reply_to["Message-ID"]
        m["References"] = f"{reply_to.get('References', '')} {reply_to['Message-ID']}".strip()
    m.set_content(body)
    return m.as_bytes()


def parsed(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def body(m: EmailMessage) -> str:
    return m.get_body(preferencelist=("plain",)).get_content()


def kinds(desk, address: str) -> list[str]:
    return [str(parsed(r)["X-Partnerdesk-Kind"]) for r in desk.servers.fetch_all(address)]


def start(desk, extra: str = NO_DIGEST) -> None:
    desk.write_config(extra)
    n = desk.n
    desk.run("partners", "import", str(desk.roster([
        f"shop{n},Nuvole {n},standard,2027-03-31,Antonio,{desk.partner},primary;technical,2026-06-12"])))
    # First start, Monday 1 December 2025 08:00 ET, on the empty mailbox: the history cut-off.
    assert desk.run("once", now=iso(1, 8)).stdout.startswith("fetched 0")


def request(desk, when: datetime, text: str = "Upgrade to beta 4 breaks our spaces.") -> None:
    desk.append(msg(f"Antonio <{desk.partner}>", desk.support, "Spaces broken", text), when=when)


def thread(desk, tid: str = "OA-1") -> dict:
    return json.loads(desk.run("threads", "show", tid, "--json").stdout)


def escalations_to_partner(desk) -> list:
    return [r for r in desk.servers.received if desk.partner in r.rcpt_tos
            and parsed(r.data)["X-Partnerdesk-Kind"] in ("escalation", "digest", "command", "command-error")]


def test_ladder_fires_each_stage_once_to_the_right_people(desk):
    start(desk)
    request(desk, at(1, 10))
    out = desk.run("once", now=iso(1, 10, 1)).stdout
    assert "new threads 1, acks 1, notifications 1" in out
    assert thread(desk)["promise"]["due"] == "Tuesday, December 2, 10:00 AM ET"

    # warning at 75 % of one business day (6 h) = Monday 16:00; breach Tue 10:00; second level Tue 14:00.
    for now, expect in [(iso(1, 15, 59), 0), (iso(1, 16), 1), (iso(1, 16, 30), 0), (iso(2, 9, 59), 0),
                        (iso(2, 10, 0), 1), (iso(2, 13, 59), 0), (iso(2, 14, 0), 1),
                        (iso(3, 14, 0), 0)]:
        out = desk.run("once", now=now).stdout
        assert (f"escalations {expect}" in out) if expect else ("escalations" not in out), (now, out)

    for staff in desk.staff:
        assert kinds(desk, staff) == ["notify", "escalation"]
    warning = parsed(desk.servers.fetch_all(desk.staff[0])[1])
    assert warning["X-Partnerdesk-Stage"] == "warning" and "[OA-1]" in warning["Subject"]
    # Reply goes to the support address with this staff member's reply key: support+KEY@...
    local, _, domain = desk.support.partition("@")
    assert re.fullmatch(rf"{local}\+1k[a-z2-7]{{24}}@{domain}", email.utils.parseaddr(warning["Reply-To"])[1])
    text = body(warning)
    for needle in (f"Nuvole {desk.n}", desk.partner, "6h of business time", "Tuesday, December 2, 10:00 AM ET",
                   "Upgrade to beta 4 breaks our spaces."):
        assert needle in text, needle

    [breach_raw] = desk.servers.fetch_all(desk.escalation[0])
    breach = parsed(breach_raw)
    assert breach["X-Partnerdesk-Stage"] == "breach" and "8h of business time" in body(breach)
    assert "warning (Monday, December 1, 4:00 PM ET)" in body(breach)  # who was already told
    [second_raw] = desk.servers.fetch_all(desk.lead)
    second = parsed(second_raw)
    assert second["X-Partnerdesk-Stage"] == "second-level"
    assert desk.escalation[0] in body(second) and "12h of business time" in body(second)
    assert escalations_to_partner(desk) == []

    listing = desk.run("threads", "list", now=iso(3, 14, 0)).stdout
    assert "second-level" in listing and "Tuesday, December 2, 10:00 AM ET !" in listing
    t = thread(desk)
    assert [e["detail"].split(" ")[0] for e in t["events"] if e["kind"] == "stage"] == [
        "warning", "breach", "second-level"]


def test_staff_answer_to_the_warning_lands_in_the_thread_and_stops_the_ladder(desk):
    start(desk)
    request(desk, at(1, 10))
    desk.run("once", now=iso(1, 10, 1))
    desk.run("once", now=iso(1, 16))
    warning = parsed(desk.servers.fetch_all(desk.staff[1])[1])
    assert warning["X-Partnerdesk-Kind"] == "escalation"

    # Staff press Reply on the escalation mail: it reaches the partner and ends the ladder.
    desk.append(msg(desk.staff[1], str(warning["Reply-To"]), "Re: " + str(warning["Subject"]),
                    "Run drush updb, then revert features.", reply_to=warning), when=at(1, 16, 10))
    assert "relayed 1" in desk.run("once", now=iso(1, 16, 11)).stdout
    relay = [parsed(r.data) for r in desk.servers.received if desk.partner in r.rcpt_tos][-1]
    assert relay["X-Partnerdesk-Kind"] == "relay" and "Run drush updb" in body(relay)
    assert thread(desk)["state"] == "waiting_on_partner"

    for now in (iso(2, 10, 0), iso(2, 14, 0), iso(4, 10, 0)):
        assert "escalations" not in desk.run("once", now=now).stdout
    assert desk.servers.fetch_all(desk.escalation[0]) == []
    assert desk.servers.fetch_all(desk.lead) == []


def test_commands_by_mail(desk):
    start(desk)
    request(desk, at(1, 10))
    desk.run("once", now=iso(1, 10, 1))
    note = parsed(desk.servers.fetch_all(desk.staff[0])[0])
    a, b = desk.staff

    def command(text: str, minute: int) -> str:
        desk.append(msg(a, desk.support, "Re: " + str(note["Subject"]), text, reply_to=note), when=at(1, 11, minute))
        return desk.run("once", now=iso(1, 11, minute + 1)).stdout

    command(f"#assign {b}", 0)
    assert thread(desk)["promise"]["assignee"] == b
    confirm = parsed(desk.servers.fetch_all(b)[-1])
    assert confirm["X-Partnerdesk-Kind"] == "command" and f"assigned to {b}" in body(confirm)

    command("#snooze until Friday", 2)
    error = parsed(desk.servers.fetch_all(a)[-1])
    assert error["X-Partnerdesk-Kind"] == "command-error"
    assert "unknown command" in body(error) and "#assign ADDRESS" in body(error) and "#wait" in body(error)
    assert thread(desk)["state"] == "new"

    command("#wait", 4)
    t = thread(desk)
    assert t["state"] == "waiting_on_partner" and t["due_at"] is None
    assert "waiting on the partner" in body(parsed(desk.servers.fetch_all(a)[-1]))

    partner_mail_before = len([r for r in desk.servers.received if desk.partner in r.rcpt_tos])
    command("#close\nSolved by beta 5.", 6)
    assert thread(desk)["state"] == "closed"
    to_partner = [parsed(r.data) for r in desk.servers.received if desk.partner in r.rcpt_tos]
    assert len(to_partner) == partner_mail_before + 1 and to_partner[-1]["X-Partnerdesk-Kind"] == "close"
    assert "Solved by beta 5." not in body(to_partner[-1])
    assert "is closed" in body(parsed(desk.servers.fetch_all(a)[-1]))

    # The partner's "#close" is just a follow-up: commands are for staff only. It reopens the thread.
    desk.append(msg(desk.partner, desk.support, "Re: " + str(to_partner[-1]["Subject"]), "#reopen please",
                    reply_to=to_partner[-1]), when=at(1, 12))
    desk.run("once", now=iso(1, 12, 1))
    t = thread(desk)
    assert t["state"] == "waiting_on_staff" and t["due_at"]
    kinds_seen = [e["kind"] for e in t["events"]]
    for k in ("assign", "command-error", "wait", "close", "follow-up"):
        assert k in kinds_seen
    # Stranger staff? No: a partner's #assign was a follow-up, not a command.
    assert escalations_to_partner(desk) == []


def test_digest_and_dry_run(desk):
    start(desk, extra="")
    request(desk, at(1, 10))
    out = desk.run("once", now=iso(1, 10, 1)).stdout
    assert "digests 1" in out  # the day's first tick within opening hours, one thread open
    digest = parsed(desk.servers.fetch_all(desk.staff[0])[-1])
    assert digest["X-Partnerdesk-Kind"] == "digest" and "OA-1" in body(digest)
    assert "digests" not in desk.run("once", now=iso(1, 11)).stdout  # once a day

    # What fires at 16:00? Ask without sending anything or changing the store.
    store = desk.dir / "store" / "partnerdesk.json"
    before = store.read_bytes()
    out = desk.run("once", "--dry-run", now=iso(1, 16)).stdout
    # One copy per staff member, each with its own reply key.
    assert "would send 2 mails;" in out and "OA-1-escalation.eml" in out
    assert store.read_bytes() == before
    assert kinds(desk, desk.staff[0]) == ["notify", "digest"]
    emls = sorted((desk.dir / "partnerdesk-dry-run").glob("*/outbox/*.eml"))
    assert len(emls) == 2
    raws = [eml.read_bytes() for eml in emls]
    assert all(b"X-Partnerdesk-Stage: warning" in raw for raw in raws)
    assert sorted(raw.split(b"\r\n")[1].split(b": ")[1].decode() for raw in raws) == sorted(desk.staff)
    # ... and the real run then does send them.
    assert "escalations 1" in desk.run("once", now=iso(1, 16)).stdout
    assert kinds(desk, desk.staff[0]) == ["notify", "digest", "escalation"]

"""Support intake end to end, on a real Dovecot and a real SMTP server on 127.0.0.1.

Every test drives partnerdesk as a user would (``python run.py --config ... once``)
and reads the results back from the mailboxes of the people involved.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import json
import re
import signal
import smtplib
import subprocess
import sys
import time
from datetime import datetime, timezone
from email.message import EmailMessage

import pytest

from tests.conftest import ROOT
from workflows.calendar import BusinessCalendar, format_due

pytestmark = pytest.mark.integration


def mail(frm: str, to: str, subject: str, body: str, *, msgid: str | None = None, cc: str | None = None,
         **headers: str) -> EmailMessage:
    m = EmailMessage()
    m["From"] = frm
    m["To"] = to
    if cc:
        m["Cc"] = cc
    m["Subject"] = subject
    m["Date"] = email.utils.format_datetime(datetime.now(timezone.utc))
    m["Message-ID"] = msgid or email.utils.make_msgid(domain=frm.rpartition("@")[2].strip(">"))
    for k, v in headers.items():
        m[k.replace("_", "-")] = v
    m.set_content(body)
    return m


def send(desk, m: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", desk.servers.smtp_port) as s:
        s.send_message(m)


def parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def text_of(m) -> str:
    return m.get_body(preferencelist=("plain",)).get_content()


INTAKE_KINDS = {"ack", "notify", "relay", None}  # None: mail a person wrote (a reply-all copy)


def box(servers, address: str) -> list[bytes]:
    """The intake's mail in a person's INBOX; scheduled mailings (welcome, digest…) are left out."""
    return [r for r in servers.fetch_all(address) if parsed(r)["X-Partnerdesk-Kind"] in INTAKE_KINDS]


def wait_box(servers, address: str, count: int, timeout: float = 5) -> list[bytes]:
    deadline = time.monotonic() + timeout
    while True:
        got = box(servers, address)
        if len(got) >= count or time.monotonic() > deadline:
            assert len(got) >= count, f"{address} has {len(got)} of {count} expected messages"
            return got
        time.sleep(0.1)


def threads(desk) -> list[dict]:
    return json.loads(desk.run("threads", "list", "--json").stdout)


def setup_desk(desk) -> None:
    n = desk.n
    roster = desk.roster([
        f"shop{n},Nuvole {n},standard,2027-03-31,Antonio,{desk.partner},primary;technical,2026-06-12",
        f"shop{n},Nuvole {n},standard,2027-03-31,Giulia,{desk.colleague},technical,",
    ])
    out = desk.run("partners", "import", str(roster)).stdout
    assert "imported 1 partner, 2 contacts" in out
    # First start on the (empty) mailbox: sets the history cut-off.
    assert desk.run("once").stdout.startswith("fetched 0")


def test_request_ack_notify_reply_relay(desk):
    setup_desk(desk)
    s = desk.servers
    request = mail(f"Antonio <{desk.partner}>", desk.support, "Spaces override lost",
                   "After features revert our spaces lose overrides.\nOA beta 4.")
    send(desk, request)

    summary = desk.run("once").stdout.strip()
    assert summary.startswith("fetched 1, new threads 1, acks 1, notifications 1, relayed 0, quarantined 0")

    # The acknowledgement, as the partner sees it.
    [ack_raw] = wait_box(s, desk.partner, 1)
    ack = parsed(ack_raw)
    assert ack["In-Reply-To"] == request["Message-ID"]
    assert request["Message-ID"] in ack["References"]
    assert "[OA-1]" in ack["Subject"]
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["X-Auto-Response-Suppress"] == "All"
    assert email.utils.parseaddr(ack["From"])[1] == desk.support

    [thread] = threads(desk)
    assert thread["id"] == "OA-1" and thread["partner_id"] == f"shop{desk.n}"
    assert thread["requester"] == desk.partner and thread["state"] == "new"
    # The clock starts at the server's receipt time (INTERNALDATE), promised in ET words.
    with s.imap(desk.support) as c:
        c.select_folder("INBOX", readonly=True)
        c.normalise_times = False
        [item] = c.fetch(c.search(["ALL"]), ["INTERNALDATE"]).values()
    expected_due = BusinessCalendar().due_at(item[b"INTERNALDATE"])
    assert datetime.fromisoformat(thread["due_at"]) == expected_due
    assert f"by {format_due(expected_due, BusinessCalendar())}" in text_of(ack).replace("\n", " ")
    assert thread["messages"][0] == request["Message-ID"] and ack["Message-ID"] in thread["messages"]

    # Staff are told, with the seat status; Reply goes back to the support address, with a reply key
    # of each one's own (support+KEY@...) that proves their reply.
    local, _, domain = desk.support.partition("@")
    keys = set()
    for staff in desk.staff:
        [note_raw] = wait_box(s, staff, 1)
        note = parsed(note_raw)
        reply_to = email.utils.parseaddr(note["Reply-To"])[1]
        assert re.fullmatch(rf"{local}\+1k[a-z2-7]{{24}}@{domain}", reply_to), reply_to
        assert note["To"] == staff and reply_to.partition("+")[2].partition("@")[0] in note["Message-ID"]
        keys.add(reply_to)
        assert "[OA-1]" in note["Subject"]
        body = text_of(note)
        assert "holds a seat" in body and "After features revert" in body
        assert note["Message-ID"] in thread["messages"]

    assert len(keys) == 2
    # Nothing twice.
    again = desk.run("once").stdout.strip()
    assert again.startswith("fetched 0, new threads 0, acks 0, notifications 0, relayed 0")
    assert len(box(s, desk.partner)) == 1

    # A staff member presses Reply in their mail client.
    note = parsed(box(s, desk.staff[0])[0])
    quoted = "\n".join("> " + line for line in text_of(note).splitlines())
    reply = mail(f"Young <{desk.staff[0]}>", str(note["Reply-To"]), "Re: " + note["Subject"],
                 f"Run drush cc all, then revert again.\n\nOn Monday, Open Atrium Support wrote:\n{quoted}\n",
                 In_Reply_To=note["Message-ID"], References=note["Message-ID"])
    send(desk, reply)
    assert "relayed 1" in desk.run("once").stdout

    relay = parsed(wait_box(s, desk.partner, 2)[1])
    name, addr = email.utils.parseaddr(relay["From"])
    assert addr == desk.support and name == "Young via Open Atrium Support"
    assert relay["In-Reply-To"] in (request["Message-ID"], ack["Message-ID"])
    assert request["Message-ID"] in relay["References"]
    body = text_of(relay)
    assert "Run drush cc all" in body and "> " not in body and "After features revert" not in body
    assert "Auto-Submitted" not in relay  # a person wrote it

    [thread] = threads(desk)
    assert thread["state"] == "waiting_on_partner" and thread["due_at"] is None
    assert thread["first_responder"] == desk.staff[0] and thread["first_response_at"]
    assert reply["Message-ID"] in thread["messages"] and relay["Message-ID"] in thread["messages"]

    # The partner answers the relay: back to staff, a new clock, no second ack.
    follow = mail(desk.partner, desk.support, "Re: " + relay["Subject"], "Still broken, sorry.",
                  In_Reply_To=relay["Message-ID"], References=relay["Message-ID"])
    send(desk, follow)
    out = desk.run("once").stdout
    assert "acks 0, notifications 1" in out
    [thread] = threads(desk)
    assert thread["state"] == "waiting_on_staff" and thread["due_at"]
    assert len(box(s, desk.partner)) == 2
    assert "Still broken" in text_of(parsed(wait_box(s, desk.staff[1], 2)[1]))


def test_reply_all_and_note_are_not_relayed(desk):
    setup_desk(desk)
    s = desk.servers
    send(desk, mail(desk.partner, desk.support, "Theme question", "How to override?"))
    desk.run("once")
    note = parsed(wait_box(s, desk.staff[0], 1)[0])

    internal = mail(desk.staff[0], desk.support, "Re: " + note["Subject"], "#note asking Young first",
                    In_Reply_To=note["Message-ID"])
    send(desk, internal)
    assert "relayed 0" in desk.run("once").stdout
    [thread] = threads(desk)
    assert thread["state"] == "new"  # a note does not stop the clock
    assert any(e["kind"] == "note" for e in json.loads(desk.run("threads", "show", "OA-1", "--json").stdout)["events"])

    # Reply-all: the partner is a direct recipient, so partnerdesk records it and sends nothing.
    answer = mail(desk.staff[0], desk.support, "Re: " + note["Subject"], "Use a subtheme.",
                  cc=desk.partner, In_Reply_To=note["Message-ID"])
    send(desk, answer)
    assert "relayed 0" in desk.run("once").stdout
    partner_box = box(s, desk.partner)
    assert len(partner_box) == 2  # the ack and the staff member's own reply-all copy, no relay
    [thread] = threads(desk)
    assert thread["state"] == "waiting_on_partner" and thread["first_responder"] == desk.staff[0]


def test_senders_seats_and_loops(desk):
    setup_desk(desk)
    s = desk.servers
    n = desk.n
    send(desk, mail(desk.colleague, desk.support, "No seat yet", "Question from a contact without training"))
    send(desk, mail(f"someone@shop{n}.example.test", desk.support, "Colleague", "Not on the roster"))
    s.add_user(f"someone@shop{n}.example.test")
    send(desk, mail(desk.stranger, desk.support, "Stranger", "Who are you?"))
    send(desk, mail("mailer-daemon@example.test", desk.support, "Undelivered Mail Returned to Sender",
                    "bounce", Auto_Submitted="auto-replied"))
    send(desk, mail(desk.partner, desk.support, "Weekly list", "digest", Precedence="bulk"))
    out = desk.run("once").stdout
    # The bounce and the partner's bulk mail are automatic: recorded, never threads (automatic list).
    assert "new threads 3" in out and "acks 3" in out and "automatic 2" in out
    by_requester = {t["requester"]: t for t in threads(desk)}
    assert by_requester[desk.colleague]["partner_id"] == f"shop{n}" and by_requester[desk.colleague]["due_at"] is None
    assert by_requester[f"someone@shop{n}.example.test"]["partner_id"] == f"shop{n}"
    assert by_requester[desk.stranger]["partner_id"] is None
    # No seat: a polite answer on how the channel works, no promise.
    info = " ".join(text_of(parsed(wait_box(s, desk.colleague, 1)[0])).split())
    assert "comes with completing an Open Atrium partner training" in info
    assert "we cannot promise a reply time" in info and "You will hear from us by" not in info
    assert "not recognise your address" in text_of(parsed(wait_box(s, desk.stranger, 1)[0]))
    # Automatic mail is never answered.
    assert box(s, desk.partner) == []
    # Staff see seat status.
    bodies = [text_of(parsed(r)) for r in wait_box(s, desk.staff[0], 3)]
    assert any("without a seat" in b for b in bodies) and any("unknown sender" in b for b in bodies)


def test_dedupe_seen_flag_history_and_bad_mail(desk):
    s = desk.servers
    n = desk.n
    desk.roster([f"shop{n},Shop,solo,2027-03-31,Antonio,{desk.partner},primary,2026-06-12"])
    desk.run("partners", "import", str(desk.dir / "roster.csv"))
    # Mail already in the mailbox on the first start is history: imported, never answered.
    desk.append(mail(desk.partner, desk.support, "Old question", "from last year").as_bytes(),
                when=datetime(2025, 5, 1, 12, 0, tzinfo=timezone.utc))
    out = desk.run("once").stdout
    assert "new threads 0" in out and "history 1" in out
    assert box(s, desk.partner) == []

    # One message delivered twice (To and Cc both reach the support box): one record.
    m = mail(desk.partner, desk.support, "Twice", "same mail", cc=desk.support.replace("@", "+cc@"))
    send(desk, m)
    # A person reading the mailbox first (\Seen) must not hide it from partnerdesk.
    with s.imap(desk.support) as c:
        c.select_folder("INBOX")
        c.add_flags(c.search(["ALL"]), [b"\\Seen"])
    # Hostile input: broken MIME, unknown charset, no From, a huge header: kept, and as nobody can be
    # answered or told apart, quarantined with the reason.
    bad = (b"Subject: =?klingon?q?=FF=FE?=\r\nContent-Type: multipart/mixed; boundary=\"x\"\r\n"
           b"X-Junk: " + b"a" * 5000 + b"\r\n\r\n--y\r\nContent-Type: text/plain; charset=klingon\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n!!!!\r\n")
    desk.append(bad)
    out = desk.run("once").stdout
    assert "fetched 3" in out and "duplicates 1" in out and "acks 1" in out and "quarantined 1" in out
    assert len(box(s, desk.partner)) == 1
    subjects = [t["subject"] for t in threads(desk)]
    assert subjects.count("Twice") == 1 and len(subjects) == 2
    assert len(s.fetch_all(desk.support, "Partnerdesk-Quarantine")) == 1
    # Taken-in mail is flagged done on the server, and nothing was deleted.
    with s.imap(desk.support) as c:
        c.select_folder("INBOX", readonly=True)
        flags = c.get_flags(c.search(["ALL"]))
        assert len(flags) == 3 and all(b"$PartnerdeskDone" in f for f in flags.values())


def test_a_changed_uidvalidity_rescans_the_folder_without_duplicates(desk):
    # partnerdesk reads a folder of its own; the mail server (a migration, a restore, a person) deletes
    # and recreates it with the same mail: a new UIDVALIDITY, and every UID means something else.
    s = desk.servers
    desk.config.write_text(desk.config.read_text().replace("poll_seconds = 1", 'poll_seconds = 1\nfolder = "Requests"'))
    with s.imap(desk.support) as c:
        c.create_folder("Requests")
    setup_desk(desk)
    for m in (mail(desk.partner, desk.support, "First", "one"), mail(desk.stranger, desk.support, "Second", "two")):
        desk.append(m.as_bytes(), folder="Requests")
    assert desk.run("once").stdout.startswith("fetched 2, new threads 2, acks 2")

    with s.imap(desk.support) as c:
        old_validity = c.select_folder("Requests", readonly=True)[b"UIDVALIDITY"]
        kept = c.fetch(c.search("ALL"), ["BODY.PEEK[]", "INTERNALDATE"])
    with s.imap(desk.support) as c:
        c.delete_folder("Requests")
        c.create_folder("Requests")
        # A request that arrived meanwhile lands first: UID 1, below where partnerdesk had got to.
        c.append("Requests", mail(desk.colleague, desk.support, "Third", "three").as_bytes())
        for uid in sorted(kept):
            c.append("Requests", kept[uid][b"BODY[]"], msg_time=kept[uid][b"INTERNALDATE"])
        assert c.folder_status("Requests", [b"UIDVALIDITY"])[b"UIDVALIDITY"] != old_validity

    out = desk.run("once").stdout
    assert out.startswith("fetched 3, new threads 1, acks 1, notifications 1") and "duplicates 2" in out, out
    assert sorted(t["subject"] for t in threads(desk)) == ["First", "Second", "Third"]
    for who in (desk.partner, desk.stranger, desk.colleague):  # one answer each, none twice
        assert len(box(s, who)) == 1, who
    assert len(box(s, desk.staff[0])) == 3
    assert desk.run("once").stdout.startswith("fetched 0, new threads 0, acks 0")
    with s.imap(desk.support) as c:  # the copies in the new folder are marked done too
        c.select_folder("Requests", readonly=True)
        flags = c.get_flags(c.search("ALL"))
        assert len(flags) == 3 and all(b"$PartnerdeskDone" in f for f in flags.values())


def test_config_errors_and_single_daemon(desk):
    bad = desk.dir / "bad.toml"
    bad.write_text('[support]\naddress = "support@example.test"\n[imap]\nhost = "x"\nsecurity = "ssl"\n')
    p = desk.run("once", check=False)
    assert p.returncode == 0
    p = subprocess.run([sys.executable, str(ROOT / "run.py"), "--config", str(bad), "once"], capture_output=True,
                       text=True)
    assert p.returncode == 2 and "bad.toml: [imap] security" in p.stderr and "Traceback" not in p.stderr

    env_missing = subprocess.run([sys.executable, str(ROOT / "run.py"), "--config", str(desk.config), "once"],
                                 capture_output=True, text=True, cwd=desk.dir)
    assert env_missing.returncode == 2 and "PD_TEST_PASSWORD" in env_missing.stderr

    # The daemon, woken by IDLE, takes in new mail; a second instance refuses to start.
    import os

    daemon = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--config", str(desk.config), "run"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=desk.dir,
                              env=dict(os.environ, PD_TEST_PASSWORD="pw"))
    try:
        time.sleep(1.5)
        second = desk.run("once", check=False)
        assert second.returncode == 3 and "already working on the store" in second.stderr
        send(desk, mail(desk.stranger, desk.support, "While running", "hello daemon"))
        wait_box(desk.servers, desk.stranger, 1, timeout=15)
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=20)
    assert daemon.returncode == 0, err
    assert "stopped" in err


def test_huge_and_headerless_mail_is_taken_in(desk):
    setup_desk(desk)
    s = desk.servers
    big = mail(desk.partner, desk.support, "Log attached", "see below\n" + "x" * 80 + "\n")
    big.add_attachment(b"\0" * (6 * 1024 * 1024), maintype="application", subtype="octet-stream", filename="db.sql")
    desk.append(big.as_bytes())
    desk.append(b"X-Nothing: here\r\n\r\n ")  # no From, no Message-ID, no Subject: quarantined, not answered
    desk.append(mail(desk.stranger, desk.support, "After the odd one", "still processed").as_bytes())
    out = desk.run("once")
    assert out.stdout.startswith("fetched 3, new threads 2, acks 2, notifications 2, relayed 0, quarantined 1")
    by_subject = {t["subject"]: t for t in threads(desk)}
    assert by_subject["Log attached"]["state"] == "new" and "(no subject)" not in by_subject
    assert "no usable sender" in out.stderr
    assert len(box(s, desk.partner)) == 1


def test_imap_quarantine_and_done_folder(desk):
    """The IMAP adapter moves mail aside (never deletes it) and can file taken-in mail in a folder."""
    from mailbox.imap import ImapSource
    from store.tinystore import Store
    from config.servers import ImapSettings

    s = desk.servers
    for i in range(3):
        desk.append(mail(desk.stranger, desk.support, f"m{i}", "x").as_bytes())
    settings = ImapSettings(host="127.0.0.1", port=s.imap_port, security="none", username=desk.support,
                            done_folder="Done", quarantine_folder="Quarantine")
    source = ImapSource(settings, "pw")
    store = Store(desk.dir / "s.json")
    try:
        raws = list(source.fetch_new(store))
        assert [r.uid for r in raws] == sorted(r.uid for r in raws) and len(raws) == 3
        assert all(r.received_at.tzinfo is not None for r in raws)
        source.quarantine(raws[0], "test")
        source.mark_done(raws[1])
    finally:
        source.close()
        store.close()
    assert len(s.fetch_all(desk.support, "Quarantine")) == 1
    assert len(s.fetch_all(desk.support, "Done")) == 1
    assert len(s.fetch_all(desk.support)) == 1


def wait_until(condition, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.02)


def test_sigterm_stops_the_daemon_in_the_middle_of_its_idle(desk):
    # The poll interval is a day: the daemon sits in IMAP IDLE for all of it. A SIGTERM must end the
    # IDLE and stop the daemon cleanly; waiting the IDLE out would outlast the test by far.
    import os

    s = desk.servers
    desk.config.write_text(desk.config.read_text().replace("poll_seconds = 1", "poll_seconds = 86400"))
    desk.run("once")
    daemon = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--config", str(desk.config), "run"],
                              cwd=desk.dir, env=dict(os.environ, PD_TEST_PASSWORD="pw"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: s.imap_commands(desk.support) == ["IDLE"], "the daemon in IDLE")
        daemon.send_signal(signal.SIGTERM)
        try:
            _, err = daemon.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("SIGTERM did not end the daemon's IDLE")
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    assert daemon.returncode == 0 and "stopped" in err, err
    # It ended the IDLE and logged out itself: its IMAP session is gone, not left waiting.
    wait_until(lambda: s.imap_commands(desk.support) == [], "the daemon's IMAP session to end")

"""The integration-test harness itself: real Dovecot + aiosmtpd on loopback."""

import asyncio
import shutil
import socket
import threading
import time
from email.message import EmailMessage

import aiosmtplib
import pytest

from tests.mailservers import MailServers, _alive_in_group

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("dovecot") is None, reason="run scripts/setup.sh"),
]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    with MailServers(tmp_path_factory.mktemp("mail")) as ms:
        yield ms


def _message(to, subject, sender="someone@partner.example"):
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg.set_content("hello\n")
    return msg


def _send(servers, msg, **kwargs):
    # start_tls=False: the server offers none, and aiosmtplib would try if offered.
    return asyncio.run(aiosmtplib.send(
        msg, hostname=servers.host, port=servers.smtp_port, start_tls=False, **kwargs))


def test_smtp_mail_lands_in_imap_inbox_before_250(servers):
    servers.add_user("partner@example.test")
    _send(servers, _message("partner@example.test", "first"))

    # No waiting: the SMTP server answers 250 only after Dovecot accepted.
    [raw] = servers.fetch_all("partner@example.test")
    assert b"Subject: first" in raw
    assert servers.received[-1].rcpt_tos == ("partner@example.test",)
    assert servers.folders("partner@example.test") == ["INBOX"]


def test_null_sender_and_smtp_auth(servers):
    servers.add_user("auth@example.test", "secret")
    _send(servers, _message("auth@example.test", "bounce"), sender="",
          username="auth@example.test", password="secret")
    [raw] = servers.wait_for("auth@example.test", 1)
    assert raw.startswith(b"Return-Path: <>")
    assert servers.received[-1].mail_from == ""


def test_unknown_local_user_is_refused(servers):
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        _send(servers, _message("nobody@example.test", "lost"))


def test_other_domains_are_captured_not_delivered(servers):
    before = len(servers.received)
    _send(servers, _message("buyer@partner.example", "reply", sender="support@example.test"))
    got = servers.wait_received(before + 1)
    assert got[-1].rcpt_tos == ("buyer@partner.example",)
    captured = sorted(servers.capture_dir.glob("*.eml"))
    assert b"Subject: reply" in captured[-1].read_bytes()


def test_idle_sees_a_delivery(servers):
    servers.add_user("idle@example.test")
    with servers.imap("idle@example.test") as client:
        client.select_folder("INBOX")
        client.idle()
        # Deliver from another thread while this one sits in IDLE.
        threading.Thread(target=servers.deliver, args=(
            "idle@example.test", b"Subject: ping\r\n\r\nping\r\n")).start()
        deadline = time.monotonic() + 3  # Dovecot batches IDLE news for ~0.5 s
        responses = []
        while time.monotonic() < deadline and not any(
                r[1:2] == (b"EXISTS",) for r in responses):
            responses += client.idle_check(timeout=0.5)
        client.idle_done()
    assert (1, b"EXISTS") in responses


def test_move_between_folders(servers):
    servers.add_user("move@example.test")
    servers.deliver("move@example.test", b"Subject: m\r\n\r\nm\r\n")
    with servers.imap("move@example.test") as client:
        assert b"MOVE" in client.capabilities()
        client.create_folder("Done")
        client.select_folder("INBOX")
        client.move(client.search("ALL"), "Done")
    assert servers.fetch_all("move@example.test") == []
    assert len(servers.fetch_all("move@example.test", "Done")) == 1


def test_stop_leaves_nothing_running_and_restart_keeps_mail(tmp_path):
    ms = MailServers(tmp_path).start()
    ms.add_user("keep@example.test")
    ms.deliver("keep@example.test", b"Subject: kept\r\n\r\nk\r\n")
    pgid, ports = ms._dovecot.pid, (ms.imap_port, ms.lmtp_port, ms.smtp_port)
    ms.stop()
    ms.stop()  # idempotent
    assert _alive_in_group(pgid) == []
    for port in ports:
        with pytest.raises(OSError):
            socket.create_connection((ms.host, port), timeout=1).close()

    with ms:  # starts again: same root, new ports
        pgid = ms._dovecot.pid
        assert len(ms.fetch_all("keep@example.test")) == 1
        with pytest.raises(RuntimeError):
            ms.start()  # would orphan the running Dovecot
    assert _alive_in_group(pgid) == []


def test_new_user_can_log_in_at_once(servers):
    # Dovecot re-reads a passwd-file at most once a second; per-user files avoid it.
    servers.add_user("first@example.test")
    for i in range(3):
        servers.folders("first@example.test")  # a lookup in this very second
        servers.add_user(f"new{i}@example.test")
        assert servers.folders(f"new{i}@example.test") == ["INBOX"]


def test_no_trace_headers_unless_asked(servers):
    # authserv_id=None (the default): the message arrives as the client sent it, plus Dovecot's own lines.
    servers.add_user("plain@example.test")
    _send(servers, _message("plain@example.test", "untouched"))
    [raw] = servers.fetch_all("plain@example.test")
    assert b"Authentication-Results" not in raw and b"by mx.mailservers.test" not in raw
    assert servers.received[-1].data.startswith(b"From: ")

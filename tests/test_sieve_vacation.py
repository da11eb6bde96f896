"""A real Sieve vacation responder (Dovecot's Pigeonhole) on a partner's mailbox, answering by SMTP
through the test SMTP server: what an out-of-office looks like when it reaches partnerdesk."""

from __future__ import annotations

import email
import shutil
import smtplib
import tempfile
from datetime import datetime, timezone
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailbox.parse import parse
from tests.mailservers import MailServers
from workflows.automatic import classify
from workflows.autoreply import automatic_reason

pytestmark = pytest.mark.integration

SUPPORT = "support@example.test"
PARTNER = "antonio@shop.example.test"


@pytest.fixture(scope="module")
def sieve_servers():
    root = Path(tempfile.mkdtemp(prefix="partnerdesk-sieve-"))  # not under pytest's basetemp (see conftest)
    try:
        with MailServers(root, sieve=True) as ms:
            for address in (SUPPORT, PARTNER, "colleague@example.test"):
                ms.add_user(address)
            ms.set_vacation(PARTNER, "I am away until Monday; Giulia covers for me.", subject="Away until Monday")
            yield ms
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _send(ms: MailServers, sender: str, subject: str, msgid: str, **headers: str) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"], msg["Message-ID"] = sender, PARTNER, subject, msgid
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("Hello Antonio, your request is in.\n")
    with smtplib.SMTP(ms.host, ms.smtp_port, timeout=30) as smtp:
        # The server answers 250 only after Dovecot delivered, and Sieve submits its reply during that
        # delivery: when this returns, any vacation reply is already in the sender's INBOX.
        smtp.send_message(msg, from_addr=sender, to_addrs=[PARTNER])


def test_one_vacation_reply_with_rfc3834_headers(sieve_servers):
    ms = sieve_servers
    ms.clear_received()
    _send(ms, SUPPORT, "Re: [OA-7] Views broken", "<oa-7.relay.1@example.test>")
    (reply_raw,) = ms.fetch_all(SUPPORT)
    reply = email.message_from_bytes(reply_raw)
    assert reply["Auto-Submitted"].startswith("auto-replied")  # RFC 3834 section 5
    assert reply["In-Reply-To"] == "<oa-7.relay.1@example.test>"
    assert "<oa-7.relay.1@example.test>" in reply["References"]
    assert reply["Subject"] == "Away until Monday"
    assert email.utils.parseaddr(reply["From"])[1] == PARTNER
    assert "Giulia covers for me" in reply.get_payload(decode=True).decode()
    # It went out through our SMTP server with the null sender, so nothing can bounce back to it.
    (sent,) = [r for r in ms.received if r.rcpt_tos == (SUPPORT,)]
    assert sent.mail_from == ""

    # What partnerdesk makes of it: an auto-reply, declared, about our relay; never answered.
    mail = parse(reply_raw, received_at=datetime.now(timezone.utc))
    verdict = classify(mail, person_known=True)
    assert verdict.kind == "auto-reply" and verdict.declared
    assert "<oa-7.relay.1@example.test>" in verdict.about_ids
    assert automatic_reason(mail, person_known=True)

    # A second mail from the same sender within :days gets no second reply.
    _send(ms, SUPPORT, "Re: [OA-7] Views broken", "<oa-7.relay.2@example.test>")
    assert len(ms.fetch_all(PARTNER)) == 2
    assert len(ms.fetch_all(SUPPORT)) == 1


def test_automatic_mail_gets_no_vacation_reply(sieve_servers):
    # Our acknowledgements say Auto-Submitted: auto-replied; Pigeonhole never answers those (no loop).
    ms = sieve_servers
    before = len(ms.fetch_all(PARTNER))
    _send(ms, "colleague@example.test", "Re: [OA-8] Received", "<oa-8.ack.1@example.test>",
          Auto_Submitted="auto-replied")
    assert len(ms.fetch_all(PARTNER)) == before + 1
    assert ms.fetch_all("colleague@example.test") == []
    # ...while the same sender's ordinary mail is answered, so the silence above was the header's doing.
    _send(ms, "colleague@example.test", "Question", "<q-1@example.test>")
    (reply,) = ms.fetch_all("colleague@example.test")
    assert email.message_from_bytes(reply)["In-Reply-To"] == "<q-1@example.test>"


def test_vacation_needs_a_sieve_enabled_server(tmp_path):
    with pytest.raises(RuntimeError, match="sieve=True"):
        MailServers(tmp_path).set_vacation(PARTNER)

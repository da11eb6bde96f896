"""Staff proof on real servers: forged mail by SMTP and IMAP APPEND, genuine replies from mutt.

The SMTP server stamps Authentication-Results as a receiving server would
(``auth=pass smtp.auth=USER`` for a login, ``none`` otherwise); Dovecot delivers
into the support INBOX (plus-addresses included), and every message is judged as
it is read back from there, exactly as intake will read it.
"""

from __future__ import annotations

import email.policy
import email.utils
import shutil
import smtplib
from email.message import EmailMessage

import pytest

from mailbox.parse import parse
from tests import mutt as mutt_client
from tests.forgeries import RECEIVED_AT, World, forgeries, genuine, verdict
from tests.mailservers import MailServers

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("dovecot") is None, reason="run scripts/setup.sh"),
]

WORLD = World()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    with MailServers(tmp_path_factory.mktemp("proof-mail"), authserv_id=WORLD.authserv_id) as ms:
        for address in (WORLD.support, *WORLD.staff, WORLD.removed, WORLD.outsider):
            ms.add_user(address)
        yield ms


def deliver(servers, scenario) -> bytes:
    """Send or APPEND a scenario's message; return it as the support INBOX holds it."""
    message_id = parse(scenario.raw, received_at=RECEIVED_AT).message_id
    sender = parse(scenario.raw, received_at=RECEIVED_AT).from_addr
    if scenario.route == "append":
        with servers.imap(WORLD.support) as imap:
            imap.append("INBOX", scenario.raw)
    else:
        with smtplib.SMTP(servers.host, servers.smtp_port, timeout=30) as smtp:
            if scenario.route == "smtp-auth":
                smtp.login(scenario.login, "pw")
            smtp.sendmail(sender, [scenario.rcpt or WORLD.support], scenario.raw)
    return fetch(servers, message_id)


def fetch(servers, message_id: str) -> bytes:
    with servers.imap(WORLD.support) as imap:
        imap.select_folder("INBOX", readonly=True)
        [uid] = imap.search(["HEADER", "Message-ID", message_id])
        return imap.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"]


@pytest.mark.parametrize("scenario", forgeries(WORLD), ids=lambda s: s.name)
def test_no_forgery_is_proven(servers, scenario):
    received = deliver(servers, scenario)
    result = verdict(WORLD, received)
    assert not result.proven, (scenario.name, result)


@pytest.mark.parametrize("scenario", genuine(WORLD), ids=lambda s: s.name)
def test_genuine_staff_mail_is_proven(servers, scenario):
    received = deliver(servers, scenario)
    result = verdict(WORLD, received)
    assert result.proven and result.method == scenario.proven_by, (scenario.name, result)


def test_the_smtp_server_stamps_what_it_saw(servers):
    [login] = [s for s in genuine(WORLD) if s.route == "smtp-auth"]
    stamped = deliver(servers, login)
    assert f"Authentication-Results: {WORLD.authserv_id};\r\n\tauth=pass smtp.auth={WORLD.young}".encode() in stamped
    [plain] = [s for s in forgeries(WORLD) if s.name.startswith("smtp-answer")]
    stamped = deliver(servers, plain)
    assert f"Authentication-Results: {WORLD.authserv_id};\r\n\tnone".encode() in stamped
    # Trace headers go on top: above everything the sender wrote.
    assert stamped.index(b"Received: from") < stamped.index(b"From: ")


def test_plus_addressed_mail_lands_in_the_support_inbox(servers):
    token = WORLD.token(WORLD.young)
    received = deliver(servers, next(s for s in genuine(WORLD) if s.rcpt))
    mail = parse(received, received_at=RECEIVED_AT)
    assert mail.to == (f"support+{token}@example.test",)
    # Dovecot records the address as sent, key included: a Bcc'd key would still be found.
    assert f"support+{token}@example.test" in mail.envelope_to
    assert servers.folders(WORLD.support) == ["INBOX"]


def notification(to: str, *, keyed_reply_to: bool = True) -> bytes:
    """What partnerdesk will send a staff member about OA-12 (phase 2 composes it)."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = f"Open Atrium Support <{WORLD.support}>"
    msg["To"] = to
    msg["Reply-To"] = f"Open Atrium Support <{WORLD.plus(WORLD.token(to)) if keyed_reply_to else WORLD.support}>"
    msg["Subject"] = "[OA-12] New request from Nuvole Web: Login broken"
    msg["Message-ID"] = WORLD.notification_id(to)
    msg["Date"] = email.utils.format_datetime(RECEIVED_AT)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content("Antonio De Marco (Nuvole Web, holds a seat) wrote:\n\nI cannot log in since this morning.\n")
    return msg.as_bytes()


def replies_in_support(servers) -> list[bytes]:
    return [m for m in servers.fetch_all(WORLD.support) if b"Reply typed in mutt" in m]


needs_mutt = pytest.mark.skipif(not mutt_client.available(), reason="mutt and tmux: run scripts/setup.sh")


@needs_mutt
@pytest.mark.parametrize("keyed_reply_to", [True, False], ids=["Reply-To key", "Message-ID key only"])
def test_mutt_reply_to_a_notification_is_proven_by_its_key(servers, tmp_path, keyed_reply_to):
    staff = WORLD.eric if keyed_reply_to else WORLD.young  # a mailbox of its own per case
    servers.deliver(staff, notification(staff, keyed_reply_to=keyed_reply_to))
    before = len(replies_in_support(servers))
    # Sent without SMTP login, so only the key can prove it (the login is tried in the next test).
    with mutt_client.Mutt(tmp_path, servers, staff, name="Staff Member", smtp_login=False) as client:
        compose = client.reply(f"Reply typed in mutt ({keyed_reply_to}).\nSecond line.")
    plus = WORLD.plus(WORLD.token(staff))
    assert (plus if keyed_reply_to else WORLD.support) in compose

    [raw] = replies_in_support(servers)[before:]
    mail = parse(raw, received_at=RECEIVED_AT)
    assert mail.to == ((plus,) if keyed_reply_to else (WORLD.support,))
    assert mail.in_reply_to == (WORLD.notification_id(staff),)
    assert mail.reply_text.startswith(f"Reply typed in mutt ({keyed_reply_to}).\nSecond line.")
    result = verdict(WORLD, raw)
    assert result.proven and result.method == "reply-key", result
    assert result.how == ("reply key (To)" if keyed_reply_to else "reply key (In-Reply-To/References)")
    # Another staff member could not use it, nor could it close another thread.
    assert not verdict(WORLD, raw.replace(staff.encode(), WORLD.removed.encode()), staff=WORLD.staff).proven
    assert not verdict(WORLD, raw, thread=WORLD.other_thread, authres=False, dkim_=False).proven


@needs_mutt
def test_mutt_with_smtp_login_is_also_proven_by_authentication_results(servers, tmp_path):
    # Pressing Reply on the same kind of mail, logged in to send: both proofs hold; the key comes first.
    address = "young2@staff.example.test"
    servers.add_user(address)
    world_staff = WORLD.staff | {address}
    servers.deliver(address, notification(address))
    before = len(replies_in_support(servers))
    with mutt_client.Mutt(tmp_path, servers, address, name="Young Two") as client:
        client.reply("Reply typed in mutt, logged in.")
    [raw] = replies_in_support(servers)[before:]
    assert verdict(WORLD, raw, staff=world_staff).method == "reply-key"
    no_key = verdict(WORLD, raw, staff=world_staff, thread=WORLD.other_thread)
    assert no_key.proven and no_key.how == f"Authentication-Results from {WORLD.authserv_id} (auth=pass by {address})"

"""OAuth2 mail logins on real servers: Dovecot's oauth2 passdb and the test SMTP server both ask
the local provider's introspection endpoint whether a bearer token is good."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from email.message import EmailMessage

import aiosmtplib
import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from mailbox.imap import ImapSource
from mailbox.oauth2_sasl import imap_login, smtp_login
from mailbox.smtp import SmtpSender
from tests.oauth2_helpers import (Clock, _provider_defaults, account, logged_in, oauth_servers,  # noqa: F401
                                  provider)
from config.servers import ImapSettings, SmtpSettings
from workflows.errors import LoginRequired
from workflows.outbox import OutboxEntry

pytestmark = pytest.mark.integration


def imap(ms) -> IMAPClient:
    return IMAPClient(ms.host, port=ms.imap_port, ssl=False, timeout=30)


def raw_mail(frm: str, to: str, subject: str) -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"], m["Message-ID"] = frm, to, subject, f"<{subject.replace(' ', '.')}@example.test>"
    m.set_content("hello\n")
    return m.as_bytes()


class NoCursor:
    def cursor(self, folder):
        return None


@pytest.mark.parametrize("mechanism, used", [("xoauth2", "XOAUTH2"), ("oauthbearer", "OAUTHBEARER"),
                                             ("auto", "OAUTHBEARER")])  # Dovecot offers both: the standard wins
def test_imap_login_with_a_token_from_the_provider(provider, oauth_servers, tmp_path, mechanism, used):
    user = account(oauth_servers)
    ts = logged_in(provider, tmp_path, user)
    with imap(oauth_servers) as c:
        assert imap_login(c, user, ts, mechanism) == used
        assert c.select_folder("INBOX")[b"EXISTS"] == 0
    assert f"method={used}" in oauth_servers._dovecot_log()


def test_servers_refuse_a_token_issued_to_another_user(provider, oauth_servers):
    user, other = account(oauth_servers), account(oauth_servers)
    token = provider.issue(other, "desk")["access_token"]
    with imap(oauth_servers) as c, pytest.raises(LoginError):
        c.oauth2_login(user, token)
    assert oauth_servers._token_valid_for(other, token) and not oauth_servers._token_valid_for(user, token)


def test_imap_source_fetches_with_oauth2_and_refreshes_a_refused_token(provider, oauth_servers, tmp_path):
    user = account(oauth_servers)
    ts = logged_in(provider, tmp_path, user)
    oauth_servers.deliver(user, raw_mail("partner@shop.example.test", user, "first request"))
    s = ImapSettings(host=oauth_servers.host, port=oauth_servers.imap_port, security="none", username=user)
    src = ImapSource(s, None, authenticator=lambda c: imap_login(c, user, ts))
    try:
        assert b"Subject: first request" in [m.data for m in src.fetch_new(NoCursor())][0]
        src.close()
        # The provider considers every token so far expired, our clock does not: the refusal is
        # answered by one refresh, and the next connection goes through.
        provider.expire_access_tokens()
        grants = provider.stats.grants.count("refresh_token")
        assert len(list(src.fetch_new(NoCursor()))) == 1
        assert provider.stats.grants.count("refresh_token") == grants + 1
    finally:
        src.close()


def test_access_token_expiring_mid_run_is_refreshed_with_nothing_lost(provider, oauth_servers, tmp_path):
    user = account(oauth_servers)
    clock = Clock()
    ts = logged_in(provider, tmp_path, user, clock)
    refused = []
    real_rejected = ts.rejected
    ts.rejected = lambda token: refused.append(token) or real_rejected(token)  # type: ignore[method-assign]
    s = ImapSettings(host=oauth_servers.host, port=oauth_servers.imap_port, security="none", username=user)
    src = ImapSource(s, None, authenticator=lambda c: imap_login(c, user, ts))
    try:
        oauth_servers.deliver(user, raw_mail("a@shop.example.test", user, "before expiry"))
        assert len(list(src.fetch_new(NoCursor()))) == 1
        first = ts.access_token()
        # An hour later the connection was dropped (the server's idle timeout) and the token is
        # past its expiry: the reconnect uses a token refreshed ahead of time, no refusal needed.
        src.close()
        clock.advance(minutes=56)
        provider.expire_access_tokens()
        oauth_servers.deliver(user, raw_mail("b@shop.example.test", user, "after expiry"))
        assert len(list(src.fetch_new(NoCursor()))) == 2
        assert ts.access_token() != first and refused == []  # refreshed ahead, never refused
    finally:
        src.close()


def test_revoked_login_reaches_the_imap_caller_as_login_required(provider, oauth_servers, tmp_path):
    user = account(oauth_servers)
    ts = logged_in(provider, tmp_path, user)
    provider.revoke_user(user)
    s = ImapSettings(host=oauth_servers.host, port=oauth_servers.imap_port, security="none", username=user)
    src = ImapSource(s, None, authenticator=lambda c: imap_login(c, user, ts))
    with pytest.raises(LoginRequired) as e:
        src.connect()
    assert user in str(e.value) and "auth login" in str(e.value)
    assert src.client is None


def _entry(key: str, frm: str, to: str) -> OutboxEntry:
    return OutboxEntry(key=key, kind="ack", message_id=f"<{key}@example.test>", mail_from=frm, rcpt_to=(to,),
                       raw=raw_mail(frm, to, key).decode(), created_at=datetime.now(timezone.utc))


def test_smtp_sender_sends_by_xoauth2_into_dovecot(provider, oauth_servers, tmp_path):
    user, partner = account(oauth_servers), account(oauth_servers)
    ts = logged_in(provider, tmp_path, user)
    s = SmtpSettings(host=oauth_servers.host, port=oauth_servers.smtp_port, security="none", username=user,
                     rate_per_minute=0)
    sender = SmtpSender(s, None, authenticator=lambda c: smtp_login(c, user, ts, "xoauth2"))
    results = sender.send([_entry("ack-1", user, partner), _entry("ack-2", user, partner)])
    assert [r.status for r in results] == ["sent", "sent"]
    assert {r.auth for r in oauth_servers.received if partner in r.rcpt_tos} == {f"XOAUTH2 {user}"}
    assert len(oauth_servers.wait_for(partner, 2)) == 2


def test_smtp_oauthbearer_and_a_refused_token_refreshed_once(provider, oauth_servers, tmp_path):
    user = account(oauth_servers)
    ts = logged_in(provider, tmp_path, user)
    token = ts.access_token()
    provider.expire_access_tokens()

    async def go():
        client = aiosmtplib.SMTP(hostname=oauth_servers.host, port=oauth_servers.smtp_port, start_tls=False)
        await client.connect()
        try:
            return await smtp_login(client, user, ts)
        finally:
            await client.quit()

    assert asyncio.run(go()) == "OAUTHBEARER"  # offered, so chosen
    assert ts.access_token() != token and provider.is_active(ts.access_token())


def test_smtp_with_a_revoked_login_keeps_the_mail_queued(provider, oauth_servers, tmp_path):
    user, partner = account(oauth_servers), account(oauth_servers)
    ts = logged_in(provider, tmp_path, user)
    provider.revoke_user(user)
    provider.expire_access_tokens()
    s = SmtpSettings(host=oauth_servers.host, port=oauth_servers.smtp_port, security="none", username=user)
    sender = SmtpSender(s, None, authenticator=lambda c: smtp_login(c, user, ts))
    [result] = sender.send([_entry("ack-9", user, partner)])
    assert result.status == "held"  # the outbox keeps it, its retry window paused, until the login
    assert user in result.detail and "auth login" in result.detail
    assert not any(partner in r.rcpt_tos for r in oauth_servers.received)


def test_passwords_still_work_beside_oauth2(oauth_servers):
    user = account(oauth_servers)
    oauth_servers.deliver(user, raw_mail("x@shop.example.test", user, "by password"))
    assert len(oauth_servers.fetch_all(user)) == 1  # LOGIN with the password; LMTP delivery too


def test_a_server_without_oauth2_is_told_apart_and_no_token_is_spent(provider, servers, tmp_path):
    # `servers` (conftest) is the password-only pair.
    user = account(servers)
    ts = logged_in(provider, tmp_path, user)
    grants = len(provider.stats.grants)
    with imap(servers) as c, pytest.raises(LoginError, match="offers no OAuth2 login"):
        imap_login(c, user, ts)

    async def go():
        client = aiosmtplib.SMTP(hostname=servers.host, port=servers.smtp_port, start_tls=False)
        await client.connect()
        try:
            await smtp_login(client, user, ts)
        finally:
            await client.quit()

    with pytest.raises(aiosmtplib.SMTPException, match="offers no OAuth2 login"):
        asyncio.run(go())
    assert len(provider.stats.grants) == grants

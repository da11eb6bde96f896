"""SASL XOAUTH2 / OAUTHBEARER logins for IMAP and SMTP, through the mail libraries' own API.

IMAP: imapclient's ``oauth2_login`` (XOAUTH2) and ``oauthbearer_login`` (RFC 7628).
SMTP: aiosmtplib's ``auth_xoauth2``; it has no OAUTHBEARER method, so that exchange runs
through its public ``execute_command`` (RFC 4954 AUTH with an initial response).

OAUTHBEARER is the standard and is used where the server offers it; XOAUTH2 otherwise
(Microsoft 365 offers only XOAUTH2). A refused token is refreshed once (it may have been
revoked early, or the provider's and server's clocks disagree) and the login tried again on
the same connection; a second refusal is the server's answer and goes to the caller.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Awaitable

import aiosmtplib
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from .oauth2 import TokenSource

XOAUTH2, OAUTHBEARER = "XOAUTH2", "OAUTHBEARER"


def choose_mechanism(configured: str, offered: set[str]) -> str | None:
    """``configured``: "auto" | "xoauth2" | "oauthbearer"; ``offered``: the server's AUTH= names.
    None: the server offers neither (no token is spent on a login that cannot work)."""
    if configured != "auto":
        return configured.upper()  # the config knows better (a server that does not advertise it)
    for mech in (OAUTHBEARER, XOAUTH2):
        if mech in offered:
            return mech
    return None


def _none_offered(protocol: str, offered: set[str]) -> str:
    return (f"the {protocol} server offers no OAuth2 login (AUTH=XOAUTH2 or AUTH=OAUTHBEARER; it offers "
            f"{', '.join(sorted(offered)) or 'none'}): check the server and security settings, or set "
            f"[oauth2] mechanism if it supports one without saying so")


def _gs2_user(user: str) -> str:
    # RFC 5801 saslname: "," and "=" are escaped.
    return user.replace("=", "=3D").replace(",", "=2C")


# -- IMAP ---------------------------------------------------------------------------------------

def _imap_offered(client: IMAPClient) -> set[str]:
    names = set()
    for cap in client.capabilities():
        text = cap.decode() if isinstance(cap, bytes) else str(cap)
        if text.upper().startswith("AUTH="):
            names.add(text[5:].upper())
    return names


def _imap_auth(client: IMAPClient, mechanism: str, user: str, token: str) -> None:
    if mechanism == OAUTHBEARER:
        client.oauthbearer_login(user, token)
    else:
        client.oauth2_login(user, token)


def imap_login(client: IMAPClient, user: str, tokens: TokenSource, mechanism: str = "auto") -> str:
    """Log ``client`` in as ``user``; returns the mechanism used. Raises LoginError if the server
    refuses a freshly refreshed token too, LoginRequired / Transient from the token source."""
    offered = _imap_offered(client)
    mech = choose_mechanism(mechanism, offered)
    if mech is None:
        raise LoginError(_none_offered("IMAP", offered))
    token = tokens.access_token()
    try:
        _imap_auth(client, mech, user, token)
    except LoginError:
        token = tokens.rejected(token)
        try:
            _imap_auth(client, mech, user, token)
        except LoginError as e:
            raise LoginError(f"the IMAP server refused a freshly refreshed OAuth2 token ({mech}) for {user} ({e}): "
                             f"check that IMAP is enabled for this mailbox and that [oauth2] scopes grant IMAP "
                             f"access") from e
    return mech


# -- SMTP ---------------------------------------------------------------------------------------

async def _oauthbearer(client: aiosmtplib.SMTP, user: str, token: str) -> None:
    blob = f"n,a={_gs2_user(user)},\x01auth=Bearer {token}\x01\x01".encode()
    resp = await client.execute_command(b"AUTH", b"OAUTHBEARER", base64.b64encode(blob))
    if resp.code == 334:
        # RFC 7628 3.2.3: the server sent its error as a challenge; answer with %x01 for the final reply.
        resp = await client.execute_command(base64.b64encode(b"\x01"))
    if resp.code != 235:
        raise aiosmtplib.SMTPAuthenticationError(resp.code, resp.message)


async def _smtp_auth(client: aiosmtplib.SMTP, mechanism: str, user: str, token: str) -> None:
    if mechanism == OAUTHBEARER:
        await _oauthbearer(client, user, token)
    else:
        await client.auth_xoauth2(user, token)


async def smtp_login(client: aiosmtplib.SMTP, user: str, tokens: TokenSource, mechanism: str = "auto") -> str:
    """Log a connected ``client`` in as ``user``; returns the mechanism used.

    The token source blocks (file lock, HTTP), so it runs in a thread: the other SMTP
    connections of the batch keep sending meanwhile.
    """
    if client.last_ehlo_response is None:
        await client.ehlo()
    offered = {m.upper() for m in client.server_auth_methods}
    mech = choose_mechanism(mechanism, offered)
    if mech is None:
        raise aiosmtplib.SMTPException(_none_offered("SMTP", offered))
    token = await asyncio.to_thread(tokens.access_token)
    try:
        await _smtp_auth(client, mech, user, token)
    except aiosmtplib.SMTPAuthenticationError:
        token = await asyncio.to_thread(tokens.rejected, token)
        await _smtp_auth(client, mech, user, token)
    return mech


# -- what the mail adapters are handed (ImapSource / SmtpSender ``authenticator``) -----------------

class _Authenticator:
    """``prepare()`` before connecting (a lapsed login is known without bothering the server), then
    the login on the connected client."""

    def __init__(self, tokens: TokenSource, mechanism: str = "auto") -> None:
        self.tokens = tokens
        self.mechanism = mechanism

    def prepare(self) -> None:
        self.tokens.access_token()  # LoginRequired / Transient now, before any connection


class ImapAuthenticator(_Authenticator):
    def __call__(self, client: IMAPClient) -> str:
        return imap_login(client, self.tokens.account, self.tokens, self.mechanism)


class SmtpAuthenticator(_Authenticator):
    def __call__(self, client: aiosmtplib.SMTP) -> Awaitable[str]:
        return smtp_login(client, self.tokens.account, self.tokens, self.mechanism)


def imap_authenticator(tokens: TokenSource, mechanism: str = "auto") -> ImapAuthenticator:
    return ImapAuthenticator(tokens, mechanism)


def smtp_authenticator(tokens: TokenSource, mechanism: str = "auto") -> SmtpAuthenticator:
    return SmtpAuthenticator(tokens, mechanism)

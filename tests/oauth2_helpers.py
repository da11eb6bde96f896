"""Shared pieces of the OAuth2 tests: a provider, mail servers that ask it about tokens, a clock."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from config.oauth2 import OAuth2Settings, parse_oauth2
from mailbox.oauth2 import TokenSource
from tests.mailservers import MailServers
from tests.oauth_provider import OAuthProvider

_ids = itertools.count(1)


class Clock:
    """Our side's clock, moved by the tests instead of sleeping."""

    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture(scope="module")
def provider() -> Iterator[OAuthProvider]:
    with OAuthProvider() as op:
        op.add_client("desk")  # a public client (device and loopback logins)
        yield op


@pytest.fixture(scope="module")
def oauth_servers(provider: OAuthProvider) -> Iterator[MailServers]:
    root = Path(tempfile.mkdtemp(prefix="partnerdesk-oauth-mail-"))
    try:
        with MailServers(root, oauth2_introspection_url=provider.introspect_url) as ms:
            yield ms
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def _provider_defaults(request: Any) -> Iterator[None]:
    # Tests change the provider's behaviour; each starts from the defaults.
    yield
    if "provider" in request.fixturenames:
        request.getfixturevalue("provider").reset()


def account(ms: MailServers) -> str:
    address = f"support{next(_ids)}@example.test"
    ms.add_user(address)
    return address


def settings(op: OAuthProvider, tmp_path: Path, **extra: Any) -> OAuth2Settings:
    table = {"provider": "generic", "client_id": "desk", "token_url": op.token_url, "device_url": op.device_url,
             "authorize_url": op.authorize_url, "scopes": ["mail"], **extra}
    return parse_oauth2(table, source=str(tmp_path / "partnerdesk.toml"))


def logged_in(op: OAuthProvider, tmp_path: Path, user: str, clock: Clock | None = None, **extra: Any) -> TokenSource:
    """A token source whose file holds a fresh login of ``user`` (as an admin tool would hand over)."""
    ts = TokenSource(settings(op, tmp_path, **extra), user, clock=clock or Clock())
    ts.store_login(op.issue(user, "desk"))
    return ts

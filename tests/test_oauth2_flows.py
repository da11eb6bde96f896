"""The one-time logins against the local provider, ending in a token Dovecot accepts."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import requests
from imapclient import IMAPClient

from mailbox.oauth2 import TokenFile, TokenSource
from mailbox.oauth2_flows import device_login, login, loopback_login, store_refresh_token
from mailbox.oauth2_sasl import imap_login
from tests.oauth2_helpers import (Clock, _provider_defaults, account, logged_in, oauth_servers,  # noqa: F401
                                  provider, settings)
from workflows.errors import ConfigError, LoginRequired

pytestmark = pytest.mark.integration


def can_fetch(ms, user: str, ts: TokenSource) -> bool:
    with IMAPClient(ms.host, port=ms.imap_port, ssl=False, timeout=30) as c:
        imap_login(c, user, ts)
        return b"EXISTS" in c.select_folder("INBOX")


class Person:
    """Approves the device code on "another device" after the first poll said pending."""

    def __init__(self, op, user: str, answer: str = "approve", after_polls: int = 1) -> None:
        self.op, self.user, self.answer, self.after = op, user, answer, after_polls
        self.prompt = None
        self.sleeps: list[float] = []

    def show(self, prompt) -> None:
        self.prompt = prompt

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if len(self.sleeps) == self.after + 1:
            if self.answer == "approve":
                self.op.approve(self.prompt.user_code, self.user)
            elif self.answer == "deny":
                self.op.deny(self.prompt.user_code)


def test_device_login_waits_for_the_person_then_works_at_dovecot(provider, oauth_servers, tmp_path):
    user = account(oauth_servers)
    ts = TokenSource(settings(provider, tmp_path), user)
    person = Person(provider, user, after_polls=2)
    rec = device_login(ts, show=person.show, sleep=person.sleep)
    assert person.prompt.verification_uri == provider.url + "/device/verify" and person.prompt.user_code
    assert len(person.sleeps) == 3  # pending, pending, granted
    assert rec.refresh_token in provider.live_refresh_tokens(user)
    assert TokenFile(ts.s.token_file).read().refresh_token == rec.refresh_token
    assert can_fetch(oauth_servers, user, ts)


def test_device_login_slows_down_when_asked(provider, tmp_path):
    provider.device_interval, provider.slow_down_polls = 7, 1
    ts = TokenSource(settings(provider, tmp_path), "slow@example.test")
    person = Person(provider, "slow@example.test", after_polls=0)
    device_login(ts, show=person.show, sleep=person.sleep)
    assert person.sleeps == [7, 12]  # RFC 8628 3.5: five seconds more after slow_down


@pytest.mark.parametrize("answer, message", [("deny", "declined"), ("never", "nobody approved the code in time")])
def test_device_login_declined_or_never_approved(provider, tmp_path, answer, message):
    ts = TokenSource(settings(provider, tmp_path), "nobody@example.test")
    person = Person(provider, "nobody@example.test", answer=answer)
    clock = iter(range(0, 10**6, 300))  # five minutes per poll: the 10-minute code runs out
    with pytest.raises(LoginRequired, match=message):
        device_login(ts, show=person.show, sleep=person.sleep, monotonic=lambda: next(clock))
    assert not ts.file.path.exists()


def _browser(op, user: str):
    """A person's browser: opens the address, the provider logs them in and redirects back."""
    def show(url: str) -> None:
        op.authorizing_user = user
        threading.Thread(target=requests.get, args=(url,), kwargs={"timeout": 30}, daemon=True).start()
    return show


def test_loopback_login_with_pkce_then_works_at_dovecot(provider, oauth_servers, tmp_path):
    user = account(oauth_servers)
    ts = TokenSource(settings(provider, tmp_path), user)
    rec = loopback_login(ts, show=_browser(provider, user), timeout=30)
    asked = provider.last_authorize
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
    assert asked["redirect_uri"].startswith("http://127.0.0.1:") and asked["state"]
    assert rec.refresh_token in provider.live_refresh_tokens(user)
    assert can_fetch(oauth_servers, user, ts)


def test_loopback_login_sends_the_presets_extra_parameters(provider, tmp_path):
    ts = TokenSource(settings(provider, tmp_path), "g@example.test")
    ts.s = dataclasses.replace(ts.s, authorize_params=(("access_type", "offline"), ("prompt", "consent")))
    loopback_login(ts, show=_browser(provider, "g@example.test"), timeout=30)
    assert provider.last_authorize["access_type"] == "offline" and provider.last_authorize["prompt"] == "consent"


def test_loopback_login_declined_or_from_another_request(provider, tmp_path):
    ts = TokenSource(settings(provider, tmp_path), "d@example.test")
    provider.deny_authorization = True
    with pytest.raises(LoginRequired, match="declined"):
        loopback_login(ts, show=_browser(provider, "d@example.test"), timeout=30)
    # A pasted address whose state is not ours: its code is never exchanged.
    provider.deny_authorization = False
    with pytest.raises(LoginRequired, match="another login request"):
        loopback_login(ts, show=lambda url: None, pasted=lambda: "http://127.0.0.1:1/?code=stolen&state=other")
    assert not ts.file.path.exists()


def test_loopback_login_by_pasting_the_address(provider, tmp_path):
    ts = TokenSource(settings(provider, tmp_path), "p@example.test")
    provider.authorizing_user = "p@example.test"
    seen = {}

    def show(url: str) -> None:  # the person opens it elsewhere; the browser ends on a dead page
        seen["back"] = requests.get(url, allow_redirects=False, timeout=30).headers["Location"]

    rec = loopback_login(ts, show=show, pasted=lambda: seen["back"] + "\n")
    assert rec.refresh_token in provider.live_refresh_tokens("p@example.test")


def test_refresh_token_from_elsewhere_is_checked_then_kept_rotated(provider, oauth_servers, tmp_path):
    user = account(oauth_servers)
    given = provider.issue(user, "desk")["refresh_token"]
    ts = TokenSource(settings(provider, tmp_path), user)
    rec = store_refresh_token(ts, given + "\n")
    assert rec.refresh_token != given and provider.live_refresh_tokens(user) == [rec.refresh_token]
    assert can_fetch(oauth_servers, user, ts)


def test_a_bad_refresh_token_from_elsewhere_leaves_the_working_login(provider, tmp_path):
    ts = logged_in(provider, tmp_path, "keep@example.test")
    kept = ts.file.read().refresh_token
    with pytest.raises(LoginRequired, match="invalid_grant"):
        store_refresh_token(ts, "rt-typo")
    with pytest.raises(LoginRequired, match="empty or has spaces"):
        store_refresh_token(ts, "two words")
    assert ts.file.read().refresh_token == kept


def test_app_only_login_with_client_credentials(provider, oauth_servers, tmp_path):
    user = account(oauth_servers)
    provider.add_client("daemon-app", secret="s3cret", app_user=user)
    s = settings(provider, tmp_path, client_id="daemon-app", client_secret_env="X", flow="client_credentials")
    ts = TokenSource(s, user, client_secret="s3cret")
    rec = login(ts, show=lambda text: None)
    assert rec.refresh_token is None and rec.access_token
    assert can_fetch(oauth_servers, user, ts)
    # No refresh token to lose: an expired app-only token is simply fetched again.
    provider.expire_access_tokens()
    assert can_fetch(oauth_servers, user, ts)
    assert provider.stats.grants.count("client_credentials") == 2


def test_a_login_without_a_refresh_token_is_refused_at_once(provider, tmp_path):
    provider.offline_access = False  # e.g. offline_access missing from the scopes
    ts = TokenSource(settings(provider, tmp_path), "short@example.test")
    with pytest.raises(ConfigError, match="no refresh token"):
        device_login(ts, show=lambda p: provider.approve(p.user_code, "short@example.test"), sleep=lambda s: None)
    assert not ts.file.path.exists()

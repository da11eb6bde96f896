"""The token source against a real (local) OAuth2 token endpoint: refresh, rotation, errors, locking."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import itertools
import textwrap
from datetime import timedelta

import pytest

from mailbox.oauth2 import TokenFile, TokenSource, read_client_secret
from tests.conftest import ROOT
from tests.oauth2_helpers import Clock, _provider_defaults, logged_in, provider, settings  # noqa: F401
from workflows.errors import ConfigError, LoginRequired, Transient

_ids = itertools.count(1)

pytestmark = pytest.mark.integration  # a real HTTP server on 127.0.0.1



@pytest.fixture
def user():
    # The provider lives for the module: every test logs in a user of its own.
    return f"support{next(_ids)}@example.test"


def on_disk(ts: TokenSource):
    return TokenFile(ts.s.token_file).read()


def test_token_file_is_private_and_holds_the_login(provider, tmp_path, user):
    ts = logged_in(provider, tmp_path, user)
    path = ts.file.path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(ts.file.lock_path.stat().st_mode) == 0o600
    rec = on_disk(ts)
    assert (rec.provider, rec.account, rec.client_id) == ("generic", user, "desk")
    assert rec.refresh_token in provider.live_refresh_tokens(user)
    assert "refresh_token=" not in repr(rec) and rec.refresh_token not in repr(rec)  # never in logs by accident
    assert {p.name for p in path.parent.iterdir()} == {path.name, ts.file.lock_path.name}  # no temp file left


def test_a_fresh_access_token_is_used_without_asking_the_provider(provider, tmp_path, user):
    ts = logged_in(provider, tmp_path, user)
    before = len(provider.stats.grants)
    first = ts.access_token()
    assert ts.access_token() == first and provider.is_active(first)
    assert len(provider.stats.grants) == before


def test_refreshed_five_minutes_ahead_of_expiry_and_the_rotation_is_on_disk_first(provider, tmp_path, user):
    clock = Clock()
    ts = logged_in(provider, tmp_path, user, clock)
    old = ts.access_token()
    old_refresh = on_disk(ts).refresh_token
    clock.advance(seconds=3600 - 299)
    new = ts.access_token()
    assert new != old and provider.is_active(new)
    rec = on_disk(ts)
    assert rec.access_token == new and rec.refresh_token != old_refresh
    assert provider.live_refresh_tokens(user) == [rec.refresh_token]  # the rotated one, and only it
    assert rec.refreshed_at == clock.now and rec.logged_in_at < clock.now  # the login's start is kept
    # Another process starting now reads the rotated token and goes on with it.
    other = TokenSource(ts.s, user, clock=clock)
    clock.advance(hours=1)
    assert provider.is_active(other.access_token())
    assert provider.stats.reuse_detected == 0


def test_tokens_shorter_than_the_margin_are_refreshed_halfway_not_at_every_use(provider, tmp_path, user):
    provider.access_lifetime = 120
    clock = Clock()
    ts = logged_in(provider, tmp_path, user, clock)
    grants = len(provider.stats.grants)
    first = ts.access_token()
    clock.advance(seconds=59)
    assert ts.access_token() == first and len(provider.stats.grants) == grants
    clock.advance(seconds=2)
    assert ts.access_token() != first and len(provider.stats.grants) == grants + 1
    fresh_at = clock.now
    clock.advance(seconds=59)
    assert ts.access_token() == on_disk(ts).access_token and on_disk(ts).refreshed_at == fresh_at


def test_a_refused_access_token_is_replaced_once(provider, tmp_path, user):
    ts = logged_in(provider, tmp_path, user)
    token = ts.access_token()
    provider.expire_access_tokens()  # the server's view: expired early (revoked, or its clock ahead)
    fresh = ts.rejected(token)
    assert fresh != token and provider.is_active(fresh)
    # Asking again about the same refused token does not refresh twice: the file already has another.
    grants = len(provider.stats.grants)
    assert ts.rejected(token) == fresh and len(provider.stats.grants) == grants


def test_revoked_login_names_provider_account_and_command(provider, tmp_path, user):
    clock = Clock()
    ts = logged_in(provider, tmp_path, user, clock)
    provider.revoke_user(user)
    clock.advance(hours=2)
    with pytest.raises(LoginRequired) as e:
        ts.access_token()
    msg = str(e.value)
    assert user in msg and "generic" in msg and "invalid_grant" in msg
    assert f"python3 run.py --config {tmp_path / 'partnerdesk.toml'} auth login" in msg
    assert (e.value.provider, e.value.account) == ("generic", user) and e.value.command.endswith("auth login")


def test_no_login_yet_is_login_required(provider, tmp_path, user):
    ts = TokenSource(settings(provider, tmp_path), user)
    with pytest.raises(LoginRequired, match="no login yet.*auth login"):
        ts.access_token()
    assert ts.state() is None


def test_a_login_for_another_account_or_app_is_not_used(provider, tmp_path, user):
    logged_in(provider, tmp_path, user)
    with pytest.raises(LoginRequired, match=f"holds the login of {user}"):
        TokenSource(settings(provider, tmp_path), "other@example.test").access_token()
    provider.add_client("other-app")
    with pytest.raises(LoginRequired, match="for app desk"):
        TokenSource(settings(provider, tmp_path, client_id="other-app"), user).access_token()


def test_token_endpoint_outage_is_transient_and_keeps_the_login(provider, tmp_path, user):
    clock = Clock()
    ts = logged_in(provider, tmp_path, user, clock)
    kept = on_disk(ts).refresh_token
    clock.advance(hours=2)
    provider.fail_next(503)
    with pytest.raises(Transient, match="HTTP 503.*login is kept"):
        ts.access_token()
    provider.fail_next(429, body="slow down")
    with pytest.raises(Transient):
        ts.access_token()
    assert on_disk(ts).refresh_token == kept
    assert provider.is_active(ts.access_token())  # back: the kept refresh token still works


def test_unreachable_token_endpoint_is_transient(provider, tmp_path, user):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/token"
    ts = TokenSource(settings(provider, tmp_path, token_url=dead), user)
    ts.store_login({"access_token": "at", "refresh_token": "rt", "expires_in": 0})
    with pytest.raises(Transient, match="cannot reach the generic token endpoint"):
        ts.access_token()


def test_a_refused_app_is_a_config_error_at_a_login_and_login_required_after(provider, tmp_path, user, monkeypatch):
    provider.add_client("confidential", secret="right")
    s = settings(provider, tmp_path, client_id="confidential", client_secret_env="PD_OAUTH_SECRET")
    monkeypatch.setenv("PD_OAUTH_SECRET", "wrong")
    ts = TokenSource(s, user, client_secret=lambda: read_client_secret(s))
    # A person logging in with a wrong secret: their config is wrong.
    with pytest.raises(ConfigError, match=r"\[oauth2\]: generic refused the app .*invalid_client"):
        ts.call_endpoint("the refresh token", lambda c: c.refresh_token(s.token_url, refresh_token="rt"))
    # A login that worked, then the app's secret expired: the daemon must not stop over it.
    ts.store_login({"access_token": "at", "refresh_token": "rt", "expires_in": 0})
    with pytest.raises(LoginRequired, match=r"generic refused the app .*invalid_client.*secret may have expired"):
        ts.access_token()
    assert "invalid_client" in ts.state().refused
    monkeypatch.delenv("PD_OAUTH_SECRET")
    with pytest.raises(ConfigError, match="PD_OAUTH_SECRET is not set"):
        read_client_secret(s)


def test_provider_clock_apart_from_ours_does_not_matter(provider, tmp_path, user):
    # expires_in is relative: a provider two hours ahead must not make a fresh token look expired.
    provider.clock_offset, provider.send_expires_at = 7200, True
    clock = Clock()
    ts = logged_in(provider, tmp_path, user, clock)
    assert (on_disk(ts).expires_at - clock.now).total_seconds() == 3600
    # A provider that sends only an absolute expiry, two hours behind: that expiry is already past
    # on our clock, so the token is used until a server refuses it instead of refreshing on every call.
    provider.clock_offset, provider.send_expires_in = -7200, False
    ts = logged_in(provider, tmp_path, user, clock)
    grants = len(provider.stats.grants)
    assert ts.access_token() == ts.access_token() and len(provider.stats.grants) == grants
    assert on_disk(ts).expires_at is None


def test_declared_refresh_token_lifetime_feeds_the_warning(provider, tmp_path, user):
    from service.logins import login_outlook

    provider.refresh_token_lifetime = 3 * 86400
    clock = Clock()
    ts = logged_in(provider, tmp_path, user, clock)
    st = ts.state()
    assert st.refresh_token_expires_at == clock.now + timedelta(days=3)
    assert not login_outlook(st, (), clock.now).warn
    assert login_outlook(st, (), clock.now + timedelta(days=2)).warn


def test_unwritable_folder_fails_before_the_refresh_token_is_spent(provider, tmp_path, user):
    clock = Clock()
    ts = logged_in(provider, tmp_path, user, clock)
    kept = on_disk(ts).refresh_token
    clock.advance(hours=2)
    folder = ts.file.path.parent
    real_reserve = ts.file.reserve

    def full_disk():
        raise OSError(28, "No space left on device")

    ts.file.reserve = full_disk  # type: ignore[method-assign]
    with pytest.raises(ConfigError, match="No space left"):
        ts.access_token()
    assert kept in provider.live_refresh_tokens(user)  # nothing was asked of the provider
    ts.file.reserve = real_reserve  # type: ignore[method-assign]
    assert provider.is_active(ts.access_token())
    assert folder.exists()


def test_tokens_never_reach_the_log(provider, tmp_path, user, caplog):
    caplog.set_level(logging.DEBUG)
    clock = Clock()
    ts = logged_in(provider, tmp_path, user, clock)
    first = ts.access_token()
    clock.advance(hours=2)
    second = ts.access_token()
    ts.rejected(second)
    rec = on_disk(ts)
    assert "refreshed the OAuth2 access token" in caplog.text
    for secret in (first, second, rec.access_token, rec.refresh_token):
        assert secret not in caplog.text


CONCURRENT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from config.oauth2 import parse_oauth2
    from mailbox.oauth2 import TokenSource
    table, source, user, rounds = json.loads(sys.argv[2])
    ts = TokenSource(parse_oauth2(table, source=source), user)
    for _ in range(rounds):
        # Force a refresh each round, unless the other process just did one.
        ts.rejected(ts.access_token())
    print("ok")
""")


def test_two_processes_refreshing_at_once_never_lose_a_rotation(provider, tmp_path, user):
    # Strict rotation with reuse detection: if either process ever refreshed with a token the
    # other had already spent, the provider would revoke the login and that process would fail.
    provider.refresh_delay = 0.05  # both processes are inside a refresh at the same time
    ts = logged_in(provider, tmp_path, user)
    table = {"provider": "generic", "client_id": "desk", "token_url": provider.token_url, "scopes": ["mail"]}
    arg = json.dumps([table, str(tmp_path / "partnerdesk.toml"), user, 8])
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, str(ROOT), arg], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and out.strip() == "ok", err
    assert provider.stats.reuse_detected == 0
    assert provider.live_refresh_tokens(user) == [on_disk(ts).refresh_token]
    assert provider.stats.grants.count("refresh_token") >= 8  # they really refreshed, many times
    assert os.stat(ts.file.path).st_mode & 0o077 == 0


def test_a_token_file_copied_in_readable_by_others_is_made_private(provider, tmp_path, user):
    ts = logged_in(provider, tmp_path, user)
    os.chmod(ts.file.path, 0o644)
    assert ts.state().account == user
    assert stat.S_IMODE(ts.file.path.stat().st_mode) == 0o600


def test_a_damaged_token_file_asks_for_a_login(provider, tmp_path, user):
    ts = logged_in(provider, tmp_path, user)
    ts.file.path.write_text("{not json")
    with pytest.raises(LoginRequired, match="cannot be read"):
        TokenSource(ts.s, user).access_token()

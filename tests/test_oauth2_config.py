"""The [oauth2] table and the provider presets, as data; and the pure login-lifetime rules."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from config.oauth2 import PRESETS, parse_oauth2
from workflows.errors import ConfigError
from workflows.login_lifetime import AGE, IDLE, Limit, LoginFacts, outlook

SRC = "/etc/partnerdesk/partnerdesk.toml"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


def parse(**table):
    return parse_oauth2(table, source=SRC)


# -- presets, checked against the providers' documentation (see config/oauth2.py) ---------------

def test_microsoft_preset_is_exchange_online_with_a_refresh_token():
    s = parse(provider="microsoft", client_id="app")
    assert s.token_url == "https://login.microsoftonline.com/organizations/oauth2/v2.0/token"
    assert s.device_url == "https://login.microsoftonline.com/organizations/oauth2/v2.0/devicecode"
    assert s.authorize_url == "https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize"
    # Outlook resource URLs (graph.microsoft.com scopes do not work for IMAP/SMTP), and offline_access
    # for the refresh token.
    assert s.scopes == ("https://outlook.office.com/IMAP.AccessAsUser.All", "https://outlook.office.com/SMTP.Send",
                        "offline_access")
    assert s.flow == "device" and not s.confidential
    assert [(lim.kind, lim.days) for lim in s.limits] == [(IDLE, 90)]


def test_microsoft_tenant_goes_into_every_endpoint():
    s = parse(provider="microsoft", client_id="app", tenant="contoso.onmicrosoft.com")
    for url in (s.token_url, s.device_url, s.authorize_url):
        assert url.startswith("https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/")


def test_microsoft_app_only_uses_the_default_scope_and_needs_a_tenant_and_secret():
    s = parse(provider="microsoft", client_id="app", tenant="contoso.example", flow="client_credentials",
              client_secret_env="PD_SECRET")
    assert s.scopes == ("https://outlook.office365.com/.default",)
    with pytest.raises(ConfigError, match=r"\[oauth2\] tenant: .*not \"organizations\""):
        parse(provider="microsoft", client_id="app", flow="client_credentials", client_secret_env="PD_SECRET")
    with pytest.raises(ConfigError, match=r"\[oauth2\] flow: client_credentials needs the app's secret"):
        parse(provider="microsoft", client_id="app", tenant="contoso.example", flow="client_credentials")


def test_google_preset_is_loopback_with_offline_access_and_needs_the_desktop_secret():
    s = parse(provider="google", client_id="app.apps.googleusercontent.com", client_secret_env="PD_SECRET")
    assert s.token_url == "https://oauth2.googleapis.com/token"
    assert s.authorize_url == "https://accounts.google.com/o/oauth2/v2/auth"
    assert s.scopes == ("https://mail.google.com/",)
    assert s.flow == "loopback" and s.device_url is None
    assert dict(s.authorize_params) == {"access_type": "offline", "prompt": "consent"}
    assert [(lim.kind, lim.days) for lim in s.limits] == [(IDLE, 182)]
    with pytest.raises(ConfigError, match=r"\[oauth2\] client_secret_env: google's token endpoint requires"):
        parse(provider="google", client_id="app")


def test_google_testing_apps_lapse_after_seven_days():
    s = parse(provider="google", client_id="app", client_secret_file="secret.txt", publishing_status="testing")
    assert (AGE, 7) in [(lim.kind, lim.days) for lim in s.limits]
    assert s.client_secret_file == "/etc/partnerdesk/secret.txt"  # relative to the config file


def test_google_has_no_device_flow_nor_client_credentials_for_mail():
    with pytest.raises(ConfigError, match="no device login for mail scopes"):
        parse(provider="google", client_id="app", client_secret_env="S", flow="device")
    with pytest.raises(ConfigError, match="no client-credentials grant"):
        parse(provider="google", client_id="app", client_secret_env="S", flow="client_credentials")


def test_generic_needs_a_token_url_and_scopes():
    with pytest.raises(ConfigError, match=r"\[oauth2\] token_url: required"):
        parse(provider="generic", client_id="app", scopes=["mail"])
    with pytest.raises(ConfigError, match=r"\[oauth2\] scopes: required"):
        parse(provider="generic", client_id="app", token_url="https://sso.example/token")
    s = parse(provider="generic", client_id="app", token_url="https://sso.example/token", scopes=["mail"])
    assert s.flow == "loopback" and s.limits == ()  # no device_url: the loopback flow
    s = parse(provider="generic", client_id="app", token_url="https://sso.example/token", scopes=["mail"],
              device_url="https://sso.example/device")
    assert s.flow == "device"


@pytest.mark.parametrize("url, ok", [
    ("https://sso.example/token", True),
    ("http://127.0.0.1:8080/token", True),
    ("http://localhost/token", True),
    ("http://[::1]:9/token", True),
    ("http://sso.example/token", False),  # a token in clear over a network
    ("ftp://sso.example/token", False),
    ("sso.example/token", False),
])
def test_endpoints_must_be_https_except_on_this_machine(url, ok):
    table = dict(provider="generic", client_id="app", token_url=url, scopes=["mail"])
    if ok:
        assert parse(**table).token_url == url
    else:
        with pytest.raises(ConfigError, match=r"\[oauth2\] token_url: .*https://"):
            parse(**table)


def test_errors_name_file_table_and_key():
    with pytest.raises(ConfigError, match=rf"^{SRC}: \[oauth2\] provider: 'yahoo' is not one of"):
        parse(provider="yahoo", client_id="app")
    with pytest.raises(ConfigError, match=r"\[oauth2\] client_id: missing"):
        parse(provider="microsoft")
    with pytest.raises(ConfigError, match=r"\[oauth2\] password: unknown key"):
        parse(provider="microsoft", client_id="app", password="x")
    with pytest.raises(ConfigError, match=r"not both"):
        parse(provider="microsoft", client_id="app", client_secret_env="A", client_secret_file="b")
    with pytest.raises(ConfigError, match=r"\[oauth2\] tenant: only for"):
        parse(provider="google", client_id="app", client_secret_env="S", tenant="x")
    with pytest.raises(ConfigError, match=r"\[oauth2\] mechanism: 'plain' is not one of"):
        parse(provider="microsoft", client_id="app", mechanism="plain")


def test_token_file_is_relative_to_the_config_and_the_login_command_names_it():
    s = parse(provider="microsoft", client_id="app")
    assert s.token_file == "/etc/partnerdesk/partnerdesk-data/oauth2-token.json"
    assert s.login_command == f"python3 run.py --config {SRC} auth login"
    assert parse(provider="microsoft", client_id="app", token_file="/var/lib/pd/t.json").token_file == \
        "/var/lib/pd/t.json"


def test_every_preset_url_is_https():
    for p in PRESETS.values():
        for url in (p.authorize_url, p.token_url, p.device_url):
            assert url is None or url.startswith("https://"), (p.name, url)


# -- when a login stops working ----------------------------------------------------------------

MS = (Limit(kind=IDLE, days=90, warn_days=14, why="ms"),)
GOOGLE_TESTING = (Limit(kind=IDLE, days=182, warn_days=14, why="idle"), Limit(kind=AGE, days=7, warn_days=2, why="testing"))


@pytest.mark.parametrize("limits, facts, now, stops, cause, warn, lapsed", [
    # Microsoft: 90 days after the last refresh; the daemon's hourly refreshes keep pushing it.
    (MS, LoginFacts(logged_in_at=T0), T0, T0 + timedelta(days=90), "ms", False, False),
    (MS, LoginFacts(logged_in_at=T0, last_refresh_at=T0 + timedelta(days=200)), T0 + timedelta(days=200),
     T0 + timedelta(days=290), "ms", False, False),
    # The daemon was stopped: 80 days without a refresh is inside the 14-day warning window.
    (MS, LoginFacts(logged_in_at=T0), T0 + timedelta(days=80), T0 + timedelta(days=90), "ms", True, False),
    (MS, LoginFacts(logged_in_at=T0), T0 + timedelta(days=91), T0 + timedelta(days=90), "ms", True, True),
    # Google "Testing": 7 days after the login however often it is refreshed; warn 2 days ahead.
    (GOOGLE_TESTING, LoginFacts(logged_in_at=T0, last_refresh_at=T0 + timedelta(days=4)), T0 + timedelta(days=4),
     T0 + timedelta(days=7), "testing", False, False),
    (GOOGLE_TESTING, LoginFacts(logged_in_at=T0, last_refresh_at=T0 + timedelta(days=5, hours=1)),
     T0 + timedelta(days=5, hours=1), T0 + timedelta(days=7), "testing", True, False),
    # What the provider itself said beats the guesses, when it comes first.
    (MS, LoginFacts(logged_in_at=T0, refresh_token_expires_at=T0 + timedelta(days=10)), T0 + timedelta(days=6),
     T0 + timedelta(days=10), "the provider said the refresh token ends then", False, False),
    (MS, LoginFacts(logged_in_at=T0, refresh_token_expires_at=T0 + timedelta(days=10)), T0 + timedelta(days=7),
     T0 + timedelta(days=10), "the provider said the refresh token ends then", True, False),
    # A short declared lifetime (Keycloak's 30-minute idle) warns only in its second half.
    ((), LoginFacts(logged_in_at=T0, refresh_token_expires_at=T0 + timedelta(minutes=30)), T0 + timedelta(minutes=10),
     T0 + timedelta(minutes=30), "the provider said the refresh token ends then", False, False),
    ((), LoginFacts(logged_in_at=T0), T0 + timedelta(days=999), None, "", False, False),
])
def test_login_outlook(limits, facts, now, stops, cause, warn, lapsed):
    o = outlook(facts, limits, now)
    assert (o.stops_at, o.cause, o.warn, o.lapsed) == (stops, cause, warn, lapsed)


def test_oauth2_modules_do_no_work_at_import_time():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    code = (f"import sys; sys.path.insert(0, {str(root)!r}); import config.oauth2, mailbox.oauth2, "
            "mailbox.oauth2_flows, mailbox.oauth2_sasl, threading; print(threading.active_count())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root.parent)
    assert out.stdout.strip() == "1" and out.stderr == ""


@pytest.mark.parametrize("configured, offered, chosen", [
    ("auto", {"PLAIN", "XOAUTH2", "OAUTHBEARER"}, "OAUTHBEARER"),  # the standard, where offered
    ("auto", {"PLAIN", "XOAUTH2"}, "XOAUTH2"),  # Microsoft 365
    ("auto", {"PLAIN", "LOGIN"}, None),  # nothing to try: no token is spent
    ("xoauth2", {"OAUTHBEARER"}, "XOAUTH2"),
    ("oauthbearer", set(), "OAUTHBEARER"),
])
def test_sasl_mechanism_choice(configured, offered, chosen):
    from mailbox.oauth2_sasl import choose_mechanism

    assert choose_mechanism(configured, offered) == chosen

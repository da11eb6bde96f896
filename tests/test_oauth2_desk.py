"""partnerdesk logging in by OAuth2, end to end: `run.py` as a user runs it, against a real Dovecot
(oauth2 passdb) and the test SMTP server, both checking the tokens at the local provider's
introspection endpoint; the provider's token endpoint refreshes, rotates, expires and revokes.

Times: the first `once` on the empty mailbox records the history cut-off; partner mail is APPENDed
with an explicit INTERNALDATE in the past (December 2025; Dovecot replaces future dates), and the
rules run with --now. Token lifetimes are real time whatever --now says.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.conftest import ROOT, Desk
from tests.oauth2_helpers import _provider_defaults, oauth_servers, provider  # noqa: F401
from tests.test_escalation_integration import at, iso, msg, parsed

pytestmark = pytest.mark.integration
_ids = iter(range(1, 10**6))


@dataclass
class OAuthDesk(Desk):
    token_url: str = ""
    device_url: str = ""
    mechanism: str = "auto"

    def write_config(self, extra: str | None = None) -> None:
        if extra is not None:
            self.extra_config = extra
        s = self.servers
        self.config.write_text(f"""
[support]
address = "{self.support}"
staff = [{", ".join(f'"{a}"' for a in self.staff)}]
escalation = ["{self.escalation[0]}"]
program_lead = "{self.lead}"

[imap]
host = "127.0.0.1"
port = {s.imap_port}
security = "none"
username = "{self.support}"
auth = "oauth2"
poll_seconds = 1

[smtp]
host = "127.0.0.1"
port = {s.smtp_port}
security = "none"
username = "{self.support}"
auth = "oauth2"

[oauth2]
provider = "generic"
client_id = "desk"
token_url = "{self.token_url}"
device_url = "{self.device_url}"
scopes = ["mail"]
mechanism = "{self.mechanism}"

[store]
path = "store/partnerdesk.json"

[digest]
enabled = false
{self.extra_config}
""")

    def token_file(self) -> Path:
        return self.dir / "partnerdesk-data" / "oauth2-token.json"

    def login_with(self, refresh_token: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, str(ROOT / "run.py"), "--config", str(self.config), "auth", "login",
               "--refresh-token-stdin"]
        p = subprocess.run(cmd, input=refresh_token + "\n", capture_output=True, text=True, timeout=60, cwd=self.dir)
        assert p.returncode == 0, p.stderr
        return p

    def daemon(self, now: str | None = None) -> subprocess.Popen:
        cmd = [sys.executable, str(ROOT / "run.py"), "--config", str(self.config)]
        cmd += (["--now", now] if now else []) + ["run"]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=self.dir,
                                env=dict(os.environ))

    def outbox(self) -> list[dict]:
        return json.loads(self.run("outbox", "list", "--json").stdout)


@pytest.fixture
def desk(oauth_servers, provider, tmp_path):  # noqa: F811
    n = 1000 + next(_ids)
    d = OAuthDesk(servers=oauth_servers, dir=tmp_path, n=n, support=f"support{n}@example.test",
                  staff=[f"staff{n}a@example.test", f"staff{n}b@example.test"], escalation=[f"esc{n}@example.test"],
                  lead=f"lead{n}@example.test", partner=f"antonio{n}@shop{n}.example.test",
                  colleague=f"giulia{n}@shop{n}.example.test", stranger=f"stranger{n}@example.test",
                  token_url=provider.token_url, device_url=provider.device_url)
    for a in [d.support, *d.staff, *d.escalation, d.lead, d.stranger, d.partner, d.colleague]:
        oauth_servers.add_user(a)
    return d


def start(desk: OAuthDesk, provider) -> None:  # noqa: F811
    """An admin tool's refresh token stored, the roster imported, the first start on the empty mailbox."""
    out = desk.login_with(provider.issue(desk.support, "desk")["refresh_token"]).stdout
    assert f"IMAP 127.0.0.1:{desk.servers.imap_port}: logged in as {desk.support}" in out
    assert f"SMTP 127.0.0.1:{desk.servers.smtp_port}: logged in as {desk.support}" in out
    n = desk.n
    desk.run("partners", "import", str(desk.roster([
        f"shop{n},Nuvole {n},standard,2027-03-31,Antonio,{desk.partner},primary;technical,2025-06-12"])))
    assert desk.run("once", now=iso(1, 8)).stdout.startswith("fetched 0")


def request(desk: OAuthDesk, when: datetime, subject: str = "Spaces broken") -> None:
    desk.append(msg(f"Antonio <{desk.partner}>", desk.support, subject, "Upgrade to beta 4 breaks our spaces."),
                when=when)


def kinds(desk: OAuthDesk, address: str) -> list[str]:
    return [str(parsed(r)["X-Partnerdesk-Kind"]) for r in desk.servers.fetch_all(address)]


def stop(daemon: subprocess.Popen) -> str:
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
    _out, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    assert "Traceback" not in err
    return err


def wait_until(check, timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise TimeoutError(what)


def dovecot_logins(ms, user: str) -> list[str]:
    return [line for line in ms._dovecot_log().splitlines() if f"user=<{user}>" in line and "Login:" in line]


# -- once and run fetch and send by OAuth2 ------------------------------------------------------------------

@pytest.mark.parametrize("mechanism, used", [("auto", "OAUTHBEARER"), ("xoauth2", "XOAUTH2")])
def test_once_fetches_and_sends_by_oauth2(desk, provider, mechanism, used):  # noqa: F811
    desk.mechanism = mechanism
    desk.write_config()
    start(desk, provider)
    request(desk, at(1, 10))
    out = desk.run("once", now=iso(1, 10, 5)).stdout
    # the ack and the notification: one copy per staff member, each with its own reply key
    assert out.startswith("fetched 1, new threads 1, acks 1, notifications 1") and "sent 3" in out
    assert kinds(desk, desk.partner) == ["welcome", "ack"]
    assert {r.auth for r in desk.servers.received if desk.partner in r.rcpt_tos} == {f"{used} {desk.support}"}
    assert any(f"method={used}" in line for line in dovecot_logins(desk.servers, desk.support))
    assert desk.run("once", now=iso(1, 10, 6)).stdout.startswith("fetched 0")  # nothing twice
    # The token file: private, and never printed.
    token = json.loads(desk.token_file().read_text())
    assert desk.token_file().stat().st_mode & 0o077 == 0
    status = desk.run("auth", "status").stdout
    assert token["refresh_token"] not in status and token["access_token"] not in status


def test_the_daemon_refreshes_ahead_and_after_a_refusal_with_nothing_lost(desk, provider):  # noqa: F811
    start(desk, provider)
    request(desk, at(1, 10), "first")
    daemon = desk.daemon(now=iso(1, 10, 5))
    try:
        wait_until(lambda: kinds(desk, desk.partner).count("ack") == 1, what="the first ack")
        refreshes = provider.stats.grants.count("refresh_token")
        # The access token expires while the daemon runs (the server's view: an hour passed; ours has
        # not seen it yet). The IMAP connection is dropped: the reconnect is refused once, the token
        # refreshed, the login tried again; SMTP uses the new token.
        provider.expire_access_tokens()
        subprocess.run(["doveadm", "-c", str(desk.servers._conf), "kick", desk.support], check=True,
                       capture_output=True, timeout=20)
        request(desk, at(1, 11), "second")
        wait_until(lambda: kinds(desk, desk.partner).count("ack") == 2, what="the second ack")
        assert daemon.poll() is None
    finally:
        err = stop(daemon)
    assert provider.stats.grants.count("refresh_token") > refreshes
    assert provider.stats.reuse_detected == 0
    assert provider.live_refresh_tokens(desk.support) == [json.loads(desk.token_file().read_text())["refresh_token"]]
    assert "login required" not in err and "cannot be used" not in err
    outbox = desk.outbox()
    assert {e["status"] for e in outbox} == {"sent"}
    assert sorted(e["kind"] for e in outbox) == ["ack", "ack"] + ["notify"] * 4 + ["welcome"]
    assert [t["subject"] for t in json.loads(desk.run("threads", "list", "--json").stdout)] == ["first", "second"]


# -- a revoked login: the clear error, and the desk goes on deciding ------------------------------------------

def test_a_revoked_login_says_what_to_run_and_the_desk_goes_on_deciding(desk, provider):  # noqa: F811
    start(desk, provider)
    request(desk, at(1, 10))
    assert "acks 1" in desk.run("once", now=iso(1, 10, 5)).stdout
    provider.revoke_user(desk.support)  # consent withdrawn, or an admin revoked the sessions
    # Tuesday 10:30: the reply was due at 10:00; the breach escalation is decided and held.
    p = desk.run("once", now=iso(2, 10, 30), check=False)
    assert p.returncode == 77, p.stderr
    assert (f"login required: the OAuth2 login of {desk.support} at generic cannot be used: generic refused the "
            f"refresh token (invalid_grant") in p.stderr
    assert f"To log in, run: python3 run.py --config {desk.config} auth login" in p.stderr
    # Held: the breach escalation, one copy to each of three people (each with its own reply key), and
    # (issue 13) the alarm to staff that no mail was taken in for 24 hours.
    assert "before the failure:" in p.stderr and "escalations 1" in p.stderr and "held 4" in p.stderr
    assert "ALERT: no mail has been taken in since" in p.stderr
    held = [e for e in desk.outbox() if e["kind"] == "escalation"]
    assert len(held) == 3
    assert all(h["status"] == "pending" and h["attempts"] == 0 and h["held_since"] for h in held)
    asked = provider.stats.token_requests
    # Four days later, still not renewed: the mail is still held (not failed), and no process asked the
    # provider again with the refused token (the refusal is kept in the token file).
    p = desk.run("once", now=iso(6, 12), check=False)
    assert p.returncode == 77 and "held since" in p.stderr
    assert {e["status"] for e in desk.outbox() if e["kind"] == "escalation"} == {"pending"}
    assert provider.stats.token_requests == asked
    st = json.loads(desk.run("auth", "status", "--json", check=False).stdout)
    assert st["usable"] is False and "invalid_grant" in st["refused"]

    # The daemon on the lapsed login: it keeps cycling (a new partner's welcome is decided and held)
    # and says every poll what to run; then someone logs in and everything held goes out.
    daemon = desk.daemon(now=iso(7, 10))
    try:
        n = desk.n
        desk.run("partners", "import", str(desk.roster([
            f"shop{n},Nuvole {n},standard,2027-03-31,Antonio,{desk.partner},primary;technical,2025-06-12",
            f"new{n},Newcomer {n},solo,2027-05-01,Nora,{desk.colleague},primary;billing;technical,"])))
        wait_until(lambda: any(e["kind"] == "welcome" for e in desk.outbox()), what="the welcome queued")
        assert daemon.poll() is None
        assert not desk.servers.fetch_all(desk.colleague) and not desk.servers.fetch_all(desk.escalation[0])
        desk.login_with(provider.issue(desk.support, "desk")["refresh_token"])
        wait_until(lambda: desk.servers.fetch_all(desk.colleague) and desk.servers.fetch_all(desk.escalation[0]),
                   what="the held mail sent after the new login")
    finally:
        err = stop(daemon)
    assert err.count(f"the OAuth2 login of {desk.support} at generic cannot be used") >= 2  # every poll
    assert kinds(desk, desk.escalation[0]) == ["escalation"] and kinds(desk, desk.colleague) == ["welcome"]
    assert {e["status"] for e in desk.outbox()} == {"sent"}


def test_once_and_run_stop_before_anything_when_nobody_has_logged_in(desk):
    for verb in ("once", "run"):
        p = desk.run(verb, check=False, timeout=30)
        assert p.returncode == 77
        assert "nobody has logged in yet" in p.stderr and "auth login" in p.stderr
    assert not (desk.dir / "store").exists()  # not even the store was opened
    assert desk.run("threads", "list").returncode == 0  # reading verbs need no login


# -- warnings ahead of a known lapse ---------------------------------------------------------------------

def test_every_cycle_warns_ahead_of_a_google_testing_apps_lapse(desk, provider):  # noqa: F811
    provider.add_client("google-app", secret="s3cret")
    desk.write_config()
    text = desk.config.read_text().replace('provider = "generic"', 'provider = "google"').replace(
        'client_id = "desk"', 'client_id = "google-app"\nclient_secret_env = "PD_GOOGLE_SECRET"\n'
                              'publishing_status = "testing"')
    desk.config.write_text(text)
    os.environ["PD_GOOGLE_SECRET"] = "s3cret"
    try:
        desk.login_with(provider.issue(desk.support, "google-app")["refresh_token"])
        # The person logged in five and a half days ago (the file says so); refreshes do not help.
        data = json.loads(desk.token_file().read_text())
        data["logged_in_at"] = (datetime.now(timezone.utc) - timedelta(days=5, hours=12)).isoformat()
        desk.token_file().write_text(json.dumps(data))
        for minute in (0, 1):
            p = desk.run("once", now=iso(1, 8, minute))
            assert (f"warning: the OAuth2 login of {desk.support} at google stops working around" in p.stderr), p.stderr
            assert 'Google apps in "Testing" publishing status' in p.stderr and "auth login" in p.stderr
        assert "lapses soon" in desk.run("auth", "status").stdout
    finally:
        del os.environ["PD_GOOGLE_SECRET"]


# -- auth login -------------------------------------------------------------------------------------------

def test_auth_login_by_device_code_then_status(desk, provider):  # noqa: F811
    cmd = [sys.executable, str(ROOT / "run.py"), "--config", str(desk.config), "auth", "login"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=desk.dir)
    try:
        line = p.stdout.readline()  # the provider's own instructions, printed at once
        assert "/device/verify" in line
        code = line.rstrip(". \n").rsplit(" ", 1)[1]
        provider.approve(code, desk.support)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert f"logged in: {desk.support} at generic" in out and "(OAUTHBEARER)" in out
    status = desk.run("auth", "status").stdout
    assert f"account        {desk.support}" in status and "state          usable" in status
    assert "scopes         mail" in status


def test_auth_login_as_the_wrong_account_is_refused_and_the_previous_login_kept(desk, provider):  # noqa: F811
    desk.login_with(provider.issue(desk.support, "desk")["refresh_token"])
    before = desk.token_file().read_bytes()
    someone = provider.issue(desk.staff[0], "desk")["refresh_token"]  # a browser logged in as oneself
    cmd = [sys.executable, str(ROOT / "run.py"), "--config", str(desk.config), "auth", "login",
           "--refresh-token-stdin"]
    p = subprocess.run(cmd, input=someone, capture_output=True, text=True, timeout=60, cwd=desk.dir)
    assert p.returncode == 77, p.stderr
    assert "refused the new login" in p.stderr and "the login that was there before is back" in p.stderr
    assert f"Log in as {desk.support} itself" in p.stderr
    assert desk.token_file().read_bytes() == before
    assert desk.run("auth", "status").returncode == 0


def test_auth_verbs_without_oauth2_are_a_config_error(tmp_path):
    cfg = tmp_path / "pd.toml"
    cfg.write_text('[support]\naddress = "s@example.test"\nstaff = ["t@example.test"]\n')
    p = subprocess.run([sys.executable, str(ROOT / "run.py"), "--config", str(cfg), "auth", "status"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "no server logs in by OAuth2" in p.stderr


@pytest.mark.parametrize("paste", [False, True])
def test_auth_login_by_loopback_redirect_listening_or_pasted(desk, provider, paste):  # noqa: F811
    import requests

    desk.config.write_text(desk.config.read_text().replace(
        f'device_url = "{provider.device_url}"', f'authorize_url = "{provider.authorize_url}"\nflow = "loopback"'))
    provider.authorizing_user = desk.support  # who "logs in" in the browser
    cmd = [sys.executable, str(ROOT / "run.py"), "--config", str(desk.config), "auth", "login"]
    p = subprocess.Popen(cmd + (["--paste"] if paste else []), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=desk.dir)
    try:
        assert f"log in as {desk.support}" in p.stdout.readline()
        url = p.stdout.readline().strip()
        assert url.startswith(provider.authorize_url) and "code_challenge_method=S256" in url
        if paste:  # the browser ends on a page that does not load: its address is pasted
            back = requests.get(url, allow_redirects=False, timeout=10).headers["Location"]
            out, err = p.communicate(back + "\n", timeout=60)
        else:  # the browser is sent back to partnerdesk listening on 127.0.0.1
            assert "partnerdesk received the login" in requests.get(url, timeout=10).text
            out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert f"logged in: {desk.support} at generic" in out and f"IMAP 127.0.0.1:{desk.servers.imap_port}" in out
    assert json.loads(desk.run("auth", "status", "--json").stdout)["usable"] is True

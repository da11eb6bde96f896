"""OAuth2 wired into the desk, without servers: the config switch, mail held while a login has lapsed
(its retry window paused), the login watch, and a cycle that goes on deciding when the login lapsed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from config.settings import load
from service.cycle import Desk, cycle
from service.logins import LoginWatch
from service.ports import LoginState, SendResult
from service.report import CycleReport
from tests.test_service import FakeSource, RecordingSender, raw_mail, service, store  # noqa: F401
from workflows.errors import ConfigError, LoginRequired, Transient
from workflows.login_lifetime import AGE, Limit
from workflows.outbox import HELD, RETRY_FOR, OutboxEntry, Status, held_problem, stuck_problem

T0 = datetime(2026, 12, 4, 17, 0, tzinfo=timezone.utc)  # a Friday evening
SRC = "/etc/partnerdesk/partnerdesk.toml"


def config(imap: dict | None = None, smtp: dict | None = None, oauth2: dict | None = None, **more) -> dict:
    data = {"support": {"address": "support@example.com", "staff": ["s@example.com"]},
            "imap": {"host": "imap.example.com", "username": "support@example.com", "auth": "oauth2", **(imap or {})},
            "smtp": {"host": "smtp.example.com", "username": "support@example.com", "auth": "oauth2", **(smtp or {})},
            **more}
    if oauth2 is not False:
        data["oauth2"] = {"provider": "microsoft", "client_id": "app", **(oauth2 or {})}
    return data


# -- the config switch ------------------------------------------------------------------------------------

def test_auth_oauth2_reads_the_oauth2_table_for_the_servers_account():
    s = load(config(), SRC)
    assert s.imap.oauth2 and s.smtp.oauth2 and s.imap.password is None
    assert s.oauth2.provider == "microsoft" and s.oauth2.account == "support@example.com"
    assert s.oauth2.token_file == "/etc/partnerdesk/partnerdesk-data/oauth2-token.json"
    # SMTP through a relay by password, IMAP by OAuth2: allowed, one login to watch.
    s = load(config(smtp={"auth": "password", "username": "relay", "password_env": "RELAY_PW"}), SRC)
    assert s.imap.oauth2 and not s.smtp.oauth2 and s.oauth2.account == "support@example.com"


def test_password_logins_are_unchanged():
    s = load(config(imap={"auth": "password", "password_env": "PW"}, smtp={"auth": "password", "password": "x"},
                    oauth2=False), SRC)
    assert s.imap.auth == s.smtp.auth == "password" and s.oauth2 is None
    data = config(oauth2=False)
    for t in ("imap", "smtp"):
        del data[t]["auth"]
        data[t]["password_env"] = "PW"
    assert load(data, SRC).imap.auth == "password"  # the default


@pytest.mark.parametrize("data, message", [
    (config(imap={"auth": "kerberos"}), r"\[imap\] auth: 'kerberos': use one of password, oauth2"),
    (config(imap={"password_env": "PW"}), r"\[imap\] password_env: auth = \"oauth2\" logs in with a token"),
    (config(smtp={"username": ""}), r"\[smtp\] username: auth = \"oauth2\" needs the mailbox"),
    (config(oauth2=False), r"\[oauth2\]: \[imap\] auth = \"oauth2\" needs this table"),
    (config(imap={"auth": "password", "password": "x"}, smtp={"auth": "password", "password": "x"}),
     r"\[oauth2\]: no server uses it"),
    (config(smtp={"username": "other@example.com"}), r"\[smtp\] username: must be the same mailbox as \[imap\]"),
    (config(oauth2={"provider": "yahoo"}), r"\[oauth2\] provider: 'yahoo' is not one of"),
    (config(oauth2={"client_id": 5}), r"\[oauth2\] client_id: must be a string"),
    (config(oauth2={"colour": "blue"}), r"\[oauth2\] colour: unknown key"),
])
def test_config_errors_name_file_table_and_key(data, message):
    with pytest.raises(ConfigError, match=rf"^{SRC}: {message}"):
        load(data, SRC)


# -- mail held while the login has lapsed -----------------------------------------------------------------

def entry() -> OutboxEntry:
    return OutboxEntry(key="k", kind="ack", message_id="<m@x>", mail_from="s@x", rcpt_to=("p@y",), raw="x",
                       created_at=T0)


def test_held_mail_is_not_tried_and_never_fails_however_long_the_login_stays_lapsed():
    e = entry()
    for hours in range(0, 24 * 10, 6):  # ten days over a long weekend and beyond
        e = e.after_send(HELD, "SMTP login: the OAuth2 login ... auth login", T0 + timedelta(hours=hours))
    assert e.status is Status.PENDING and e.attempts == 0 and e.held_since == T0
    assert e.due(T0 + timedelta(days=10))  # due at every drain: the first one after `auth login` sends it
    e = e.after_send("sent", "", T0 + timedelta(days=10))
    assert e.status is Status.SENT and e.held_since is None and e.attempts == 1


def test_the_retry_window_pauses_while_held_and_counts_the_failing_time_in_full():
    e = entry().after_send("transient", "451 try later", T0)  # the server failing: the window starts
    e = e.after_send("transient", "451 try later", T0 + timedelta(days=1))
    e = e.after_send(HELD, "login lapsed", T0 + timedelta(days=1, hours=1))
    e = e.after_send(HELD, "login lapsed", T0 + timedelta(days=4))
    # Logged in again after 5 days held: one day of failing so far, two left.
    back = T0 + timedelta(days=6, hours=1)
    e = e.after_send("transient", "451 try later", back)
    assert e.status is Status.PENDING and e.first_failed_at == T0 + timedelta(days=5)
    assert e.after_send("transient", "451", e.first_failed_at + RETRY_FOR - timedelta(minutes=1)).status \
        is Status.PENDING
    assert e.after_send("transient", "451", e.first_failed_at + RETRY_FOR).status is Status.FAILED
    # Without the pause the same mail would have failed on day 3 of the lapse.
    assert entry().after_send("transient", "451", T0).after_send("transient", "451", back).status is Status.FAILED


def test_held_mail_is_said_once_as_held_not_as_stuck_and_survives_the_store():
    held = entry().after_send("transient", "451", T0).after_send(HELD, "login lapsed", T0 + timedelta(hours=2))
    assert stuck_problem([held], T0 + timedelta(hours=3)) is None
    line = held_problem([held, entry()])
    assert line.startswith("1 mail(s) held since") and "retry window is paused" in line
    assert OutboxEntry.from_dict(held.to_dict()) == held
    old = {k: v for k, v in held.to_dict().items() if k != "held_since"}  # written before this version
    assert OutboxEntry.from_dict(old).held_since is None
    assert held.put_back(T0).held_since is None


def test_the_outbox_counts_held_mail_and_says_so(store):  # noqa: F811
    svc, report = service(store), CycleReport()
    svc.take_in(raw_mail(1), T0, report)
    svc.outbox.drain(RecordingSender(HELD), T0, report)
    assert report.counts["held"] == 2 and report.counts["send_retry"] == 0
    assert "held 2" in report.summary()
    svc.outbox.drain(RecordingSender(HELD), T0 + timedelta(minutes=1), report)
    assert sum("held since" in p for p in report.problems) == 1  # said once per cycle
    sender = RecordingSender()
    svc.outbox.drain(sender, T0 + timedelta(days=5), report)
    assert len(sender.sent) == 2 and {e.status for e in store.outbox()} == {Status.SENT}


# -- the login watch -------------------------------------------------------------------------------------

class FakeLogin:
    def __init__(self, state: LoginState | None) -> None:
        self.current = state

    def state(self) -> LoginState | None:
        if isinstance(self.current, Exception):
            raise self.current
        return self.current


def login_state(**kw) -> LoginState:
    return LoginState(**{"provider": "google", "account": "support@example.com", "scopes": ("https://mail.google.com/",),
                         "token_file": "/t.json", "logged_in_at": T0, **kw})


TESTING = (Limit(kind=AGE, days=7, warn_days=2, why='Google apps in "Testing" lapse 7 days after the login'),)


def watch(state, limits=TESTING, now=T0, needs_file=True) -> LoginWatch:
    return LoginWatch(FakeLogin(state), provider="google", account="support@example.com",
                      command="python3 run.py --config F auth login", limits=limits, clock=lambda: now,
                      needs_file=needs_file)


def test_the_watch_warns_ahead_of_a_known_lapse_every_cycle():
    for days, warned in ((4, False), (5, True), (6, True)):
        report = CycleReport()
        assert watch(login_state(refreshed_at=T0 + timedelta(days=days)), now=T0 + timedelta(days=days)) \
            .check(report) is None
        assert bool(report.problems) is warned
    assert "stops working around 2026-12-11" in report.problems[0] and "auth login" in report.problems[0]
    report = CycleReport()
    watch(login_state(), now=T0 + timedelta(days=8)).check(report)
    assert "has probably lapsed" in report.problems[0]


def test_the_watch_names_provider_account_and_command_when_the_login_is_unusable():
    refused = watch(login_state(refused="google refused the refresh token (invalid_grant: Token has been "
                                        "expired or revoked.)", refused_at=T0)).check(CycleReport())
    assert isinstance(refused, LoginRequired)
    assert str(refused).startswith("the OAuth2 login of support@example.com at google cannot be used: google "
                                   "refused the refresh token (invalid_grant")
    assert str(refused).endswith("To log in, run: python3 run.py --config F auth login")
    assert "nobody has logged in yet" in str(watch(None).check(CycleReport()))
    assert watch(None, needs_file=False).check(CycleReport()) is None  # app-only: asks when it needs one
    damaged = LoginRequired("the token file /t.json cannot be read")
    assert watch(damaged).check(CycleReport()) is damaged


# -- the cycle -------------------------------------------------------------------------------------------

class LapsedSource(FakeSource):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def fetch_new(self, store):  # noqa: F811
        raise self.error
        yield


def desk(store, source, sender, login=None, ticked=None) -> Desk:  # noqa: F811
    svc = service(store)
    d = Desk(store=store, outbox=svc.outbox, intake=svc, source=source, sender=sender, now=lambda: T0, login=login)
    d.extra_ticks.append(lambda now, report: ticked.append(now) if ticked is not None else None)
    return d


def test_a_lapsed_imap_login_skips_only_the_intake_and_comes_last(store):  # noqa: F811
    svc = service(store)
    svc.take_in(raw_mail(1), T0, CycleReport())  # queued before the login lapsed
    ticked: list = []
    lapsed = LoginRequired("the OAuth2 login of support@example.com at google cannot be used: ...")
    sender = RecordingSender(HELD)
    with pytest.raises(LoginRequired) as e:
        cycle(desk(store, LapsedSource(lapsed), sender, ticked=ticked))
    assert e.value is lapsed and ticked == [T0]  # the ticks ran
    assert e.value.report.counts["held"] == 2  # the drain ran: mail held, not failed
    assert {x.status for x in store.outbox()} == {Status.PENDING}


def test_a_login_refused_at_sending_only_still_ends_the_cycle_with_login_required(store):  # noqa: F811
    # IMAP by password works; the SMTP login was refused: the watch sees it in the token file.
    refused = watch(login_state(refused="google refused the refresh token (invalid_grant)"))

    class Source(FakeSource):
        def fetch_new(self, store):  # noqa: F811
            yield raw_mail(2)

    with pytest.raises(LoginRequired, match="invalid_grant") as e:
        cycle(desk(store, Source(), RecordingSender(HELD), login=refused))
    assert e.value.report.counts["fetched"] == 1 and e.value.report.counts["held"] == 2


def test_an_outage_and_a_lapsed_login_together_say_both(store):  # noqa: F811
    refused = watch(login_state(refused="invalid_grant"))
    with pytest.raises(LoginRequired) as e:
        cycle(desk(store, LapsedSource(Transient("cannot reach IMAP server")), RecordingSender(), login=refused))
    assert "cannot reach IMAP server" in e.value.report.problems


class EmptySource(FakeSource):
    def fetch_new(self, store):  # noqa: F811
        return iter(())


def test_a_working_login_adds_nothing(store):  # noqa: F811
    report = cycle(desk(store, EmptySource(), RecordingSender(), login=watch(login_state(), limits=())))
    assert report.problems == []


def test_sender_result_for_a_lapsed_login_is_held():
    from mailbox.smtp import classify_error

    f = classify_error(LoginRequired("the OAuth2 login of a at b cannot be used: x. To log in, run: y"),
                       connecting=True, oauth2=True)
    assert (f.status, f.session) == (HELD, True) and "To log in, run: y" in f.detail
    assert SendResult(key="k", status=f.status).status == "held"

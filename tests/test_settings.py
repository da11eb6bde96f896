"""config.settings: the config is checked before anything connects, and every error names file and key."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from workflows.errors import ConfigError
from config.settings import load

ROOT = Path(__file__).resolve().parent.parent
SRC = "/etc/partnerdesk/partnerdesk.toml"
SUPPORT = {"address": "support@openatrium.example"}


def cfg(**tables) -> dict:
    return {"support": dict(SUPPORT), **tables}


def servers(imap: dict | None = None, smtp: dict | None = None) -> dict:
    return {"imap": {"host": "imap.example", **(imap or {})}, "smtp": {"host": "smtp.example", **(smtp or {})}}


def error(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        load(data, SRC)
    msg = str(info.value)
    assert msg.startswith(f"{SRC}: "), msg  # every error names the file first
    return msg


# -- the minimal config -------------------------------------------------------------------------------------------
def test_minimal_config_defaults():
    s = load({"support": {"address": " Support@OpenAtrium.example "}}, SRC)
    assert s.source == SRC
    assert s.support_address == "support@openatrium.example"
    assert s.support_name == "Open Atrium Support"
    assert s.staff == frozenset() and s.escalation == ()
    assert s.imap is None and s.smtp is None  # local spool
    assert s.store_path == "partnerdesk-data/partnerdesk.json"
    assert s.acks_per_hour == 3 and s.history_before is None and s.secret is None


def test_full_config():
    data = cfg(
        **servers({"username": "support", "password_env": "IMAP_PW", "folder": "Support", "idle": False,
                   "poll_seconds": 30, "timeout": 10},
                  {"username": "support", "password_file": "/run/secrets/smtp", "connections": 4,
                   "rate_per_minute": 60, "security": "starttls"}),
        store={"path": "/var/lib/partnerdesk/pd.json"},
        intake={"acks_per_hour": 5, "history_before": datetime(2026, 11, 1, tzinfo=timezone(timedelta(hours=-5)))},
        sla={"opens": "08:00", "closes": "18:00"},
    )
    data["support"].update(name="OA Support", staff=["Young@OpenAtrium.example"],
                           escalation=["eric@openatrium.example"])
    s = load(data, SRC)
    assert s.staff == frozenset({"young@openatrium.example"})
    assert s.escalation == ("eric@openatrium.example",)
    assert s.imap.folder == "Support" and s.imap.idle is False and s.imap.poll_seconds == 30
    assert s.imap.password_env == "IMAP_PW" and s.imap.password is None and s.imap.timeout == 10.0
    assert s.smtp.password_file == "/run/secrets/smtp" and s.smtp.connections == 4 and s.smtp.port == 587
    assert s.store_path == "/var/lib/partnerdesk/pd.json"
    assert s.acks_per_hour == 5 and s.history_before.utcoffset() == timedelta(hours=-5)
    assert s.calendar.opens.hour == 8 and s.calendar.closes.hour == 18


@pytest.mark.parametrize("security, imap_port, smtp_port", [("tls", 993, 465), ("starttls", 143, 587),
                                                            ("none", 143, 25)])
def test_default_ports_per_security(security, imap_port, smtp_port):
    s = load(cfg(**servers({"security": security}, {"security": security})), SRC)
    assert (s.imap.port, s.smtp.port) == (imap_port, smtp_port)
    assert s.imap.security == s.smtp.security == security


def test_security_defaults_to_tls_and_port_can_be_set():
    s = load(cfg(**servers({"port": 1993}, {})), SRC)
    assert s.imap.security == "tls" and s.imap.port == 1993 and s.smtp.port == 465
    assert s.imap.verify_tls is True


def test_history_before_as_string_with_offset():
    s = load(cfg(intake={"history_before": "2026-11-01T00:00:00-05:00"}), SRC)
    assert s.history_before == datetime(2026, 11, 1, 5, tzinfo=timezone.utc)


# -- errors name the file and the key -----------------------------------------------------------------------------
@pytest.mark.parametrize("data, key, problem", [
    ({"support": {**SUPPORT, "adress": "x"}}, "[support] adress", "unknown key"),
    (cfg(**servers({"folders": "x"})), "[imap] folders", "unknown key"),
    (cfg(store={"path": "x", "backup": True}), "[store] backup", "unknown key"),
    (cfg(mailserver={}), "[mailserver]", "unknown table"),
    ({}, "[support]", "required"),
    ({"support": "support@openatrium.example"}, "[support]", "must be a table"),
    ({"support": {"name": "x"}}, "[support] address", "missing"),
    (cfg(sla=5), "[sla]", "must be a table"),
    (cfg(mailings=["x"]), "[mailings]", "must be a table"),
])
def test_structure_errors(data, key, problem):
    msg = error(data)
    assert f"{SRC}: {key}:" in msg and problem in msg


@pytest.mark.parametrize("data, key", [
    (cfg(**servers({"port": "993"})), "[imap] port"),
    (cfg(**servers({}, {"port": 25.0})), "[smtp] port"),
    (cfg(**servers({"verify_tls": "yes"})), "[imap] verify_tls"),
    (cfg(**servers({"idle": 1})), "[imap] idle"),
    (cfg(**servers({}, {"timeout": "30s"})), "[smtp] timeout"),
    (cfg(**servers({"host": 5})), "[imap] host"),
    (cfg(intake={"acks_per_hour": True}), "[intake] acks_per_hour"),
    (cfg(intake={"acks_per_hour": "3"}), "[intake] acks_per_hour"),
    (cfg(store={"path": 5}), "[store] path"),
    ({"support": {**SUPPORT, "staff": "young@openatrium.example"}}, "[support] staff"),
    ({"support": {**SUPPORT, "name": 5}}, "[support] name"),
    ({"support": {"address": 5}}, "[support] address"),
])
def test_wrong_type(data, key):
    msg = error(data)
    assert f"{SRC}: {key}: must be" in msg


@pytest.mark.parametrize("support, key", [
    ({"address": "support"}, "[support] address"),
    ({"address": "support@"}, "[support] address"),
    ({"address": "Support <support@openatrium.example>"}, "[support] address"),
    ({**SUPPORT, "staff": ["young@openatrium.example", "not an address"]}, "[support] staff"),
    ({**SUPPORT, "staff": [5]}, "[support] staff"),
    ({**SUPPORT, "escalation": ["eric at openatrium"]}, "[support] escalation"),
])
def test_bad_address(support, key):
    msg = error({"support": support})
    assert f"{SRC}: {key}:" in msg and "is not a mail address" in msg


@pytest.mark.parametrize("staff", [["support@openatrium.example"],
                                   ["young@openatrium.example", "SUPPORT@openatrium.example"]])
def test_support_address_listed_as_staff(staff):
    msg = error({"support": {**SUPPORT, "staff": staff}})
    assert f"{SRC}: [support] staff:" in msg and "support address" in msg


@pytest.mark.parametrize("table", ["imap", "smtp"])
@pytest.mark.parametrize("security", ["ssl", "TLS", "", "starttls "])
def test_security_must_be_known(table, security):
    data = cfg(**servers())
    data[table]["security"] = security
    msg = error(data)
    assert f"{SRC}: [{table}] security:" in msg and "none, starttls, tls" in msg


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_port_range(port):
    assert f"{SRC}: [imap] port:" in error(cfg(**servers({"port": port})))


@pytest.mark.parametrize("secrets", [{"password": "a", "password_env": "B"},
                                     {"password_env": "B", "password_file": "f"},
                                     {"password": "a", "password_file": "f"}])
@pytest.mark.parametrize("table", ["imap", "smtp"])
def test_only_one_password_source(table, secrets):
    data = cfg(**servers())
    data[table].update(username="u", **secrets)
    msg = error(data)
    assert f"{SRC}: [{table}] password" in msg and "only one of" in msg


@pytest.mark.parametrize("table", ["imap", "smtp"])
def test_username_without_password(table):
    data = cfg(**servers())
    data[table]["username"] = "support"
    msg = error(data)
    assert f"{SRC}: [{table}] password:" in msg and "username is set" in msg


def test_password_without_username_is_fine():
    s = load(cfg(**servers({"password_env": "X"}, {})), SRC)
    assert s.imap.username == "" and s.imap.password_env == "X"


@pytest.mark.parametrize("given, named", [("imap", "[smtp]"), ("smtp", "[imap]")])
def test_only_one_of_imap_and_smtp(given, named):
    msg = error(cfg(**{given: {"host": "mail.example"}}))
    assert f"{SRC}: {named}:" in msg and "both [imap] and [smtp]" in msg


@pytest.mark.parametrize("sla, key", [
    ({"opens": "25:00"}, "opens"),
    ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
    ({"opens": "18:00", "closes": "09:00"}, "closes"),
    ({"workdays": ["mon", "funday"]}, "workdays"),
    ({"holidays": "XX"}, "holidays"),
    ({"lunch": "12:00"}, "lunch"),
])
def test_bad_sla_value(sla, key):
    msg = error(cfg(sla=sla))
    assert msg.startswith(f"{SRC}: [sla]") and key in msg


@pytest.mark.parametrize("value", ["2026-11-01T00:00:00", datetime(2026, 11, 1)])
def test_history_before_without_offset(value):
    msg = error(cfg(intake={"history_before": value}))
    assert f"{SRC}: [intake] history_before:" in msg and "UTC offset" in msg


def test_history_before_not_a_date():
    msg = error(cfg(intake={"history_before": "last tuesday"}))
    assert f"{SRC}: [intake] history_before:" in msg and "ISO-8601" in msg


def test_acks_per_hour_at_least_one():
    assert f"{SRC}: [intake] acks_per_hour:" in error(cfg(intake={"acks_per_hour": 0}))


# -- through the CLI ----------------------------------------------------------------------------------------------
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens here once the socket is closed


def run_once(config: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", "--config", str(config), "once"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=env)


@pytest.mark.parametrize("toml, named", [
    ('[support]\naddress = "support"\n', "[support] address"),
    ('[support]\naddress = "support@openatrium.example"\n[imap]\nhost = "h"\nsecurity = "ssl"\n'
     '[smtp]\nhost = "h"\n', "[imap] security"),
    ('[support]\naddress = "support@openatrium.example"\n[sla]\nopens = "9 o\'clock"\n', "[sla]"),
    ('[support]\naddress = "support@openatrium.example"\n[intake]\nhistory_before = 2026-11-01T00:00:00\n',
     "[intake] history_before"),
    ('[support\naddress = 1\n', "not valid TOML"),
])
def test_cli_bad_config_exits_2_without_traceback(tmp_path, toml, named):
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    r = run_once(config)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("config error:"), r.stderr
    assert str(config) in r.stderr and named in r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout == ""
    assert list(tmp_path.iterdir()) == [config]  # no store, no spool: nothing was touched


def test_cli_missing_config_file(tmp_path):
    r = run_once(tmp_path / "nope.toml")
    assert r.returncode == 2 and r.stderr.startswith("config error:") and "no such config file" in r.stderr


def server_config(tmp_path: Path, port: int) -> Path:
    config = tmp_path / "pd.toml"
    config.write_text(
        '[support]\naddress = "support@openatrium.example"\nstaff = ["young@devseed.example"]\n'
        '[store]\npath = "data/pd.json"\n'
        f'[imap]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\nusername = "support"\n'
        'password_env = "PARTNERDESK_TEST_UNSET_PW"\ntimeout = 5\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n')
    return config


def test_cli_unset_password_env_is_a_config_error_before_connecting(tmp_path):
    config = server_config(tmp_path, closed_port())
    env = {k: v for k, v in os.environ.items() if k != "PARTNERDESK_TEST_UNSET_PW"}
    r = run_once(config, env)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("config error:")
    assert f"{config}: [imap] password_env:" in r.stderr and "PARTNERDESK_TEST_UNSET_PW" in r.stderr
    assert "is not set" in r.stderr
    assert "Connection refused" not in r.stderr and "cannot reach" not in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "data").exists()  # failed before even opening the store


def test_cli_with_the_password_set_does_try_to_connect(tmp_path):
    # The control for the test above: with the variable set, the same config gets as far as the
    # (closed) port, and that is a different error.
    config = server_config(tmp_path, closed_port())
    r = run_once(config, {**os.environ, "PARTNERDESK_TEST_UNSET_PW": "secret"})
    assert r.returncode != 2
    assert "config error" not in r.stderr
    assert "127.0.0.1" in r.stderr and "Traceback" not in r.stderr


def test_trust_defaults_and_values():
    t = load(cfg(), "x.toml").trust
    assert (t.plus_addresses, t.recipient_delimiter, t.authserv_ids, t.verify_dkim, t.dns_servers) == (
        True, "+", frozenset(), False, ())
    t = load(cfg(trust={"authserv_ids": ["MX.Google.com."], "verify_dkim": True,
                        "dns_servers": ["127.0.0.1", "[::1]:5353"], "recipient_delimiter": "-"}), "x.toml").trust
    assert t.authserv_ids == frozenset({"mx.google.com"}) and t.verify_dkim
    assert t.dns_servers == ("127.0.0.1:53", "::1:5353") and t.recipient_delimiter == "-"
    assert load(cfg(trust={"recipient_delimiter": "-"}), "x.toml").intake().recipient_delimiter == "-"


@pytest.mark.parametrize("trust, key, problem", [
    ({"authserv_ids": ["mx google"]}, "[trust] authserv_ids", "not a host name"),
    ({"dns_servers": ["ns.example.org"]}, "[trust] dns_servers", "IP address"),
    ({"recipient_delimiter": "ab"}, "[trust] recipient_delimiter", "one character"),
    ({"verify_dkim": "yes"}, "[trust] verify_dkim", "true or false"),
    ({"verifydkim": True}, "[trust] verifydkim", "unknown key"),
])
def test_trust_errors_name_the_key(trust, key, problem):
    message = error(cfg(trust=trust))
    assert f"{SRC}: {key}" in message and problem in message, message


def test_a_support_address_too_long_for_reply_keys_is_refused_unless_plus_addresses_are_off():
    long = {"address": "a" * 40 + "@example.com", "staff": ["s@example.com"]}
    assert "at most 29" in error({"support": long})
    assert load({"support": long, "trust": {"plus_addresses": False}}, "x.toml").trust.plus_addresses is False

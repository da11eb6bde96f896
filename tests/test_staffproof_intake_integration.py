"""Staff proof end to end: partnerdesk (`run.py once`) on a real Dovecot and SMTP server.

The whole forgery corpus (tests/forgeries.py) goes in by plain SMTP, SMTP logged in as someone else,
and IMAP APPEND, written against the desk's real thread, acknowledgement and secret: none is relayed,
none runs a command, none is the answer, and the clock and the ladder go on. Then real replies from
mutt in tmux: to a notification, to an escalation, and to the unverified-mail notice; each reaches the
partner with no extra step. The SMTP server stamps Authentication-Results like a receiving server,
and partnerdesk's own DKIM check asks a DNS server on 127.0.0.1 (`[trust] dns_servers`).
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import json
import shutil
import smtplib
import tempfile
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests import mutt as mutt_client
from tests.conftest import Desk
from tests.forgeries import World, forgeries, genuine
from tests.loopdns import LoopbackDns
from tests.mailservers import MailServers

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("dovecot") is None, reason="run scripts/setup.sh")]
needs_mutt = pytest.mark.skipif(not mutt_client.available(), reason="mutt and tmux: run scripts/setup.sh")

BASE = World()  # addresses and DKIM keys; the secret and the ack come from the running desk
PARTNER, PARTNER2 = "antonio@nuvole.example.test", "andrea@nuvole.example.test"
ESC, LEAD = "esc@staff.example.test", "lead@staff.example.test"


def parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def kind(raw: bytes) -> str:
    return str(parsed(raw)["X-Partnerdesk-Kind"] or "")


def text(m: email.message.EmailMessage) -> str:
    return m.get_body(preferencelist=("plain",)).get_content()


@pytest.fixture(scope="module")
def env():
    root = Path(tempfile.mkdtemp(prefix="partnerdesk-proof-"))
    dns = LoopbackDns({k.dns_name.decode(): k.record for k in (BASE.staff_dkim, BASE.evil_dkim)})
    try:
        with dns, MailServers(root / "mail", authserv_id=BASE.authserv_id) as servers:
            for a in (BASE.support, *BASE.staff, BASE.removed, BASE.outsider, PARTNER, PARTNER2, ESC, LEAD):
                servers.add_user(a)
            (root / "desk").mkdir()
            desk = Desk(servers=servers, dir=root / "desk", n=0, support=BASE.support, staff=sorted(BASE.staff),
                        escalation=[ESC], lead=LEAD, partner=PARTNER, colleague=PARTNER2, stranger=BASE.outsider,
                        extra_config=f"""
[intake]
history_before = 2020-01-01T00:00:00+00:00

[trust]
authserv_ids = ["{BASE.authserv_id}"]
verify_dkim = true
dns_servers = ["127.0.0.1:{dns.port}"]
dns_timeout = 2
""")
            roster = desk.roster([
                f"nuvole,Nuvole,standard,2027-03-31,Antonio,{PARTNER},primary,2026-06-12",
                f"nuvole,Nuvole,standard,2027-03-31,Andrea,{PARTNER2},technical,2026-06-12",
            ])
            desk.run("partners", "import", str(roster))
            for who, subject in ((PARTNER, "Login broken"), (PARTNER2, "Drush make fails")):
                send(servers, request(who, subject))
            assert "new threads 2" in desk.run("once").stdout
            secret = json.loads((desk.dir / "store" / "partnerdesk.json").read_text())["meta"]["secret"]["value"]
            [ack] = [parsed(r) for r in servers.fetch_all(PARTNER) if kind(r) == "ack"]
            world = World(secret=secret.encode(), support=BASE.support, staff=BASE.staff, removed=BASE.removed,
                          partner=PARTNER, outsider=BASE.outsider, thread=1, other_thread=2,
                          authserv_id=BASE.authserv_id, staff_dkim=BASE.staff_dkim, evil_dkim=BASE.evil_dkim,
                          ack=str(ack["Message-ID"]))
            yield desk, world
    finally:
        shutil.rmtree(root, ignore_errors=True)


def request(frm: str, subject: str) -> EmailMessage:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = frm, BASE.support, subject
    m["Message-ID"] = email.utils.make_msgid(domain="nuvole.example.test")
    m["Date"] = email.utils.format_datetime(datetime.now().astimezone())
    m.set_content(f"{subject} since this morning.")
    return m


def send(servers, m: EmailMessage) -> None:
    with smtplib.SMTP(servers.host, servers.smtp_port, timeout=30) as s:
        s.send_message(m)


def deliver(servers, scenario, sender: str) -> None:
    if scenario.route == "append":
        with servers.imap(BASE.support) as imap:
            imap.append("INBOX", scenario.raw)
        return
    with smtplib.SMTP(servers.host, servers.smtp_port, timeout=30) as s:
        if scenario.route == "smtp-auth":
            s.login(scenario.login, "pw")
        s.sendmail(sender, [scenario.rcpt or BASE.support], scenario.raw)


def show(desk, tid: str) -> dict:
    return json.loads(desk.run("threads", "show", tid, "--json").stdout)


def to_partner(servers, address=PARTNER) -> list[email.message.EmailMessage]:
    return [parsed(r) for r in servers.fetch_all(address) if kind(r) in ("relay", "close", "command")]


def keep_only(servers, address: str, wanted) -> email.message.EmailMessage:
    """The staff member files away everything but the one mail they answer (so mutt lists it first)."""
    with servers.imap(address) as c:
        c.select_folder("INBOX")
        msgs = c.fetch(c.search(["ALL"]), ["BODY.PEEK[]"])
        keep = [uid for uid, d in msgs.items() if wanted(parsed(d[b"BODY[]"]))]
        assert len(keep) == 1, [parsed(d[b"BODY[]"])["Subject"] for d in msgs.values()]
        c.delete_messages([uid for uid in msgs if uid not in keep])
        c.expunge()
        return parsed(msgs[keep[0]][b"BODY[]"])


def test_the_forgery_corpus_changes_nothing_and_the_ladder_goes_on(env):
    desk, w = env
    servers = desk.servers
    before = show(desk, "OA-1")
    corpus = forgeries(w)
    for scenario in corpus:
        deliver(servers, scenario, email.utils.parseaddr(parsed(scenario.raw)["From"])[1])
    out = desk.run("-v", "once").stdout
    # The key of someone removed from staff makes its bearer an outsider: a follow-up like any other.
    outside = [s for s in corpus if email.utils.parseaddr(parsed(s.raw)["From"])[1] not in w.staff]
    assert [s.name for s in outside] == ["the key of someone removed from staff"]
    assert f"fetched {len(corpus)}" in out, out
    assert f"unverified {len(corpus) - 1}" in out, out
    assert "relayed 0" in out

    after = show(desk, "OA-1")
    kinds = {str(parsed(s.raw)["Message-ID"]): [] for s in corpus}
    for e in after["events"]:
        if e["message_id"] in kinds:
            kinds[e["message_id"]].append(e["kind"])
    # 0 forged relays, 0 forged commands, 0 forged answers: each is kept as unverified, nothing else.
    assert sorted(k for ks in kinds.values() for k in ks) == sorted(["unverified"] * (len(corpus) - 1)
                                                                      + ["follow-up"])
    assert to_partner(servers) == [] and to_partner(servers, PARTNER2) == []
    assert [r for a in (*w.staff, ESC, LEAD) for r in servers.fetch_all(a) if kind(r).startswith("command")] == []
    for field in ("state", "due_at", "first_response_at", "first_responder"):
        assert after[field] == before[field], field
    assert after["promise"]["assignee"] == "" and after["promise"]["stage"] == before["promise"]["stage"]
    assert all(e["kind"] != "unverified" for e in show(desk, "OA-2")["events"])  # named only in forged keys
    # Only Young, whose address the forgeries claim, was told, once for the hour.
    notices = [parsed(r) for a in (*w.staff, w.removed, w.outsider, PARTNER)
               for r in servers.fetch_all(a) if kind(r) == "unverified-notice"]
    assert [str(n["To"]) for n in notices] == [w.young]

    # The ladder still runs: at the deadline the escalation goes out (to staff and the escalation list).
    assert "escalations 2" in desk.run("once", now=after["due_at"]).stdout  # OA-1 and OA-2
    assert [e["kind"] for e in show(desk, "OA-1")["events"]].count("stage") == 1
    assert sorted(str(parsed(r)["Subject"])[:7] for r in servers.fetch_all(ESC)) == ["[OA-1] ", "[OA-2] "]


def test_genuine_staff_mail_of_every_kind_is_proven(env):
    desk, w = env
    servers = desk.servers
    cases = [s for s in genuine(w) if s.route != "append"]  # the APPENDed key is covered by mutt below
    for s in cases:
        deliver(servers, s, w.young)
    out = desk.run("once").stdout
    assert f"relayed {len(cases)}" in out, out
    t = show(desk, "OA-1")
    proofs = {e["message_id"]: e.get("proof", "") for e in t["events"] if e["kind"] == "answer"}
    got = {proofs.get(str(parsed(s.raw)["Message-ID"]), "") for s in cases}
    assert got == {"reply key (To)", "reply key (In-Reply-To/References)",
                   f"Authentication-Results from {w.authserv_id} (auth=pass by {w.young})",
                   "DKIM d=staff.example.test"}, got
    shown = desk.run("threads", "show", "OA-1").stdout
    assert "proven by DKIM d=staff.example.test" in shown and "proven by reply key (To)" in shown


@needs_mutt
def test_mutt_replies_to_a_notification_an_escalation_and_the_notice(env, tmp_path):
    desk, w = env
    servers = desk.servers
    # Eric answers OA-2's notification by pressing Reply; no login, so only the key proves him.
    keep_only(servers, w.eric, lambda m: kind_of(m) == "notify" and "[OA-2]" in str(m["Subject"]))
    with mutt_client.Mutt(tmp_path, servers, w.eric, name="Eric", smtp_login=False) as client:
        client.reply("Please run drush make again with --no-cache.")
    assert "relayed 1" in desk.run("once").stdout
    [relay] = to_partner(servers, PARTNER2)
    assert "--no-cache" in text(relay) and str(relay["From"]).startswith("Eric via Open Atrium Support")

    # Young answers OA-1's escalation (the warning the first test saw fire) by pressing Reply.
    keep_only(servers, w.young, lambda m: kind_of(m) == "escalation" and "[OA-1]" in str(m["Subject"]))
    with mutt_client.Mutt(tmp_path, servers, w.young, name="Young", smtp_login=False) as client:
        client.reply("Escalation seen: fixed on our side now.")
    assert "relayed 1" in desk.run("once").stdout
    assert any("Escalation seen" in text(m) for m in to_partner(servers))

    # Eric writes from scratch (a new mail with the tag, no key): held, and he is told.
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = f"Eric <{w.eric}>", w.support, "[OA-2] one more thing"
    m["Message-ID"] = email.utils.make_msgid(domain="staff.example.test")
    m.set_content("Also clear the cache directory.")
    send(servers, m)
    out = desk.run("once").stdout
    assert "unverified 1" in out and "relayed 0" in out
    notice = keep_only(servers, w.eric, lambda n: kind_of(n) == "unverified-notice")
    assert "Also clear the cache directory." in text(notice)
    with mutt_client.Mutt(tmp_path, servers, w.eric, name="Eric", smtp_login=False) as client:
        client.reply("Yes, that was me.")
    assert "relayed 1" in desk.run("once").stdout
    last = to_partner(servers, PARTNER2)[-1]
    assert "Also clear the cache directory." in text(last) and "that was me" not in text(last)
    shown = desk.run("threads", "show", "OA-2").stdout
    assert "proven by reply key (To), confirming it by replying to the unverified-mail notice" in shown


def kind_of(m: email.message.EmailMessage) -> str:
    return str(m["X-Partnerdesk-Kind"] or "")

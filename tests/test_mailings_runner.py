"""Scheduled mailings wired as run.py wires them, on a real store file, with fake senders (no servers)."""

from __future__ import annotations

import email
import email.policy
import json
from contextlib import ExitStack
from dataclasses import replace
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

import run
from mailbox.compose import Composer
from mailbox.ical import reply
from config import settings as settings_mod
from config.mailings import read_mailings
from config.reader import Reader
from workflows.mailings.plan import preview
from service.mailings import MailingRunner, RunnerSettings
from workflows.model import Partner
from service.ports import RawMail, SendResult
from service.cycle import cycle
from service.outbox import Outbox
from service.roster import record_renewal
from service.report import CycleReport

SAMPLES = json.loads((Path(run.ROOT) / "templates" / "samples" / "mailings.json").read_text())
PARTNERS = [Partner.from_dict(p) for p in SAMPLES["partners"]]


def make_settings(tmp_path, **tables):
    data = {"support": {"address": "support@openatrium.example", "staff": ["young@openatrium.example"]},
            "store": {"path": str(tmp_path / "pd.json")}, **SAMPLES["config"], **tables}
    return settings_mod.load(data, "test.toml")


class FakeSender:
    def __init__(self, die_after=None, refuse=()):
        self.sent: list = []
        self.die_after = die_after
        self.refuse = set(refuse)

    def send(self, entries, on_result=None):
        results = []
        for e in entries:
            if self.die_after is not None and len(self.sent) >= self.die_after:
                raise KeyboardInterrupt("the process dies in the middle of the mailing")
            if set(e.rcpt_to) & self.refuse:
                r = SendResult(key=e.key, status="permanent", detail="550 5.1.1 No such user here")
            else:
                self.sent.append(e)
                r = SendResult(key=e.key, status="sent")
            results.append(r)
            if on_result:
                on_result(r)
        return results


@pytest.fixture
def wired(tmp_path):
    def make(now: str, **tables):
        stack = ExitStack()
        s = make_settings(tmp_path, **tables)
        app = run.Wiring(s, run.Clock(datetime.fromisoformat(now)), stack).desk(spool_root=tmp_path / "spool")
        runner = app.mailings
        return stack, app, runner
    return make


def seed(app, runner=None, welcome_at=None):
    with app.store.transaction():
        for p in PARTNERS:
            app.store.save_partner(p)
            if runner and welcome_at:
                app.store.request_welcome(p.id, welcome_at)


def msgs(entries):
    return [email.message_from_string(e.raw, policy=email.policy.default) for e in entries]


def test_one_cycle_queues_ledger_and_outbox_together_and_never_twice(wired):
    stack, app, runner = wired("2027-01-20T15:00:00+00:00")
    with stack:
        seed(app)
        app.sender = FakeSender()
        cycle(app)
        first = list(app.sender.sent)
        assert first, "renewal notices and a training announcement are due on 2027-01-20"
        ledger = {e["key"]: e for e in app.store.ledger_all()}
        for e in first:
            lk = e.key.removeprefix("mailing:")
            assert ledger[lk]["status"] == "queued" and ledger[lk]["outbox_key"] == e.key
        cycle(app)
        assert app.sender.sent == first


def test_a_mailing_killed_halfway_and_restarted_sends_each_recipient_exactly_once(wired):
    stack, app, runner = wired("2026-12-29T19:30:00+00:00")  # invitations for the January call are due
    with stack:
        seed(app)
        app.sender = FakeSender(die_after=2)
        with pytest.raises(KeyboardInterrupt):
            cycle(app)
        before = list(app.sender.sent)
        assert len(before) == 2
        app.sender = FakeSender()
        cycle(app)
        everyone = [e.rcpt_to[0] for e in before + app.sender.sent if e.kind == "call-invite"]
        assert sorted(everyone) == sorted(c.email for p in PARTNERS for c in p.contacts)


def test_every_template_renders_for_every_plan_with_honest_headers(tmp_path):
    cfg = read_mailings(Reader(SAMPLES["config"], "samples"))
    composer = Composer(support_address="support@openatrium.example", support_name="Open Atrium Support")

    class NoStore:
        pass

    outbox = Outbox(store=NoStore(), composer=composer, secret=b"k", support_address="support@openatrium.example")
    runner = MailingRunner(store=NoStore(), outbox=outbox, secret=b"k", settings=RunnerSettings(
        support_address="support@openatrium.example", support_name="Open Atrium Support", staff=frozenset(),
        config=cfg))
    now = datetime(2026, 12, 1, 15, tzinfo=timezone.utc)
    trained_long_ago = [replace(p, contacts=tuple(replace(c, trained_on=date(2025, 1, 1)) for c in p.contacts))
                        for p in PARTNERS]
    names = ["call-invite", "call-update", "call-cancel", "call-reminder", "renewal", "welcome",
             "training-announcement"]
    for p, old in zip(PARTNERS, trained_long_ago):
        for name in names + ["training-refresher"]:
            untrained = replace(p, contacts=tuple(replace(c, trained_on=None) for c in p.contacts))
            who = {"training-refresher": old, "training-announcement": untrained}.get(name, p)
            d = preview(name, who, cfg, now)
            _, mid, raw = runner.render(d, now)
            m = email.message_from_bytes(raw, policy=email.policy.default)
            assert m["Auto-Submitted"] == "auto-generated" and m["Message-ID"].endswith("@openatrium.example>")
            assert m["Date"] and m["From"].addresses[0].addr_spec == "support@openatrium.example"
            text = m.get_body(("plain",)).get_content()
            html = m.get_body(("html",)).get_content()
            assert "automated" in text and "<p style=" in html and "<style" not in html
            if name.startswith("call") or name.startswith("training"):
                assert m["List-Unsubscribe"].startswith("<mailto:support@openatrium.example?subject=unsubscribe%20")
            else:
                assert m["List-Unsubscribe"] is None
            if name in ("call-invite", "call-update", "call-cancel"):
                cal = [x for x in m.walk() if x.get_content_type() == "text/calendar"]
                assert cal and cal[0].get_param("method") == ("CANCEL" if name == "call-cancel" else "REQUEST")
            if name == "renewal":
                assert ("$2,000" if p.plan == "solo" else "$4,000") in text
            if name == "welcome":
                assert "&lt;a href=" in html  # the badge snippet is shown as code, not rendered
    # Partner-provided text is data: a name with template syntax comes out literally.
    evil = replace(PARTNERS[1], name="{{ 7*7 }} Shop")
    _, _, raw = runner.render(preview("welcome", evil, cfg, now), now)
    assert b"{{ 7*7 }} Shop" in raw.replace(b"=\r\n", b"")


def test_unsubscribe_request_and_calendar_reply_are_honoured_and_never_become_threads(wired, tmp_path):
    stack, app, runner = wired("2026-12-29T19:30:00+00:00")
    with stack:
        seed(app)
        app.sender = FakeSender()
        cycle(app)
        invite = next(e for e in app.sender.sent if e.rcpt_to == ("mark@gmail.com",))
        m = msgs([invite])[0]
        unsub = m["List-Unsubscribe"].split("subject=")[1].rstrip(">").replace("%20", " ")
        cal = next(p for p in m.walk() if p.get_content_type() == "text/calendar").get_content()
        answer = email.message.EmailMessage()
        answer["From"], answer["To"] = "Mark Cook <mark@gmail.com>", "support@openatrium.example"
        answer["Subject"], answer["Message-ID"] = "Accepted: State of Open Atrium", "<rsvp1@gmail.com>"
        answer.set_content("Mark has accepted.")
        answer.add_alternative(reply(cal, "mark@gmail.com", "ACCEPTED"), subtype="calendar",
                               params={"method": "REPLY"})
        stop = email.message.EmailMessage()
        stop["From"], stop["To"] = "mark@gmail.com", "support@openatrium.example"
        stop["Subject"], stop["Message-ID"] = unsub, "<unsub1@gmail.com>"
        stop.set_content("")
        now = datetime(2026, 12, 30, tzinfo=timezone.utc)
        r = CycleReport()
        for i, msg in enumerate((answer, stop)):
            assert app.intake.take_in(RawMail(source_key=f"t{i}", data=msg.as_bytes(), received_at=now), now, r) \
                in ("rsvp", "unsubscribed")
        assert app.store.threads() == []
        [rsvp] = runner.rsvps("call-2027-01-12")
        assert rsvp["attendee"] == "mark@gmail.com" and rsvp["partstat"] == "ACCEPTED"
        assert "calls:mark@gmail.com" in app.store.unsubscribed()
        # The reminder for the unsubscribed contact is skipped, with the reason recorded.
        _, skip = runner.plan(datetime(2027, 1, 11, 20, tzinfo=timezone.utc), only="calls")
        assert any(d.recipient == "mark@gmail.com" and "unsubscribed" in d.reason for d in skip)
        # A forged token is not honoured (it stays a mail for people).
        forged = unsub[:-4] + "0000"
        bad = email.message.EmailMessage()
        bad["From"], bad["Subject"], bad["Message-ID"] = "x@evil.example", forged, "<f@evil.example>"
        bad.set_content("")
        assert runner.intercept(app.intake.parse(bad.as_bytes(), received_at=now), now) is None


def test_permanent_failure_recorded_against_contact_reported_once_others_still_sent(wired):
    stack, app, runner = wired("2026-12-29T19:30:00+00:00")
    with stack:
        seed(app)
        app.sender = FakeSender(refuse={"billing@nuvole.example"})
        cycle(app)
        assert {e.rcpt_to[0] for e in app.sender.sent} >= {"mark@gmail.com", "antonio@nuvole.example"}
        cycle(app)
        cycle(app)
        reports = [e for e in app.sender.sent if e.kind == "mailing-failure"]
        assert len(reports) == 1 and reports[0].rcpt_to == ("young@openatrium.example",)
        assert "billing@nuvole.example" in msgs(reports)[0].get_body(("plain",)).get_content()
        assert runner.contact_failures()["billing@nuvole.example"]["count"] == 1


def test_renewal_recorded_mid_series_cancels_queued_and_stops_the_rest(wired):
    stack, app, runner = wired("2027-03-02T16:00:00+00:00")
    with stack:
        seed(app)
        report = CycleReport()
        runner.tick(datetime(2027, 3, 2, 16, tzinfo=timezone.utc), report, only="renewals")
        pending = [e for e in app.store.outbox("pending") if e.kind == "renewal"]
        assert {e.rcpt_to[0] for e in pending} == {"billing@nuvole.example", "mark@gmail.com"}
        p, stopped, cancelled = record_renewal(app.store, runner.s.config, "nuvole", date(2028, 3, 31),
                                               datetime(2027, 3, 3, tzinfo=timezone.utc))
        assert cancelled == 1 and {d.record["offset"] for d in stopped} == {7, 0, -14}
        app.sender = FakeSender()
        cycle(app)
        assert [e.rcpt_to for e in app.sender.sent if e.kind == "renewal"] == [("mark@gmail.com",)]
        send, _ = runner.plan(datetime(2027, 3, 25, 15, tzinfo=timezone.utc), only="renewals")
        assert all(d.partner_id != "nuvole" for d in send)


def test_cli_import_queues_a_welcome_and_plan_and_preview_work(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[support]\naddress = "support@openatrium.example"\n[store]\npath = "pd.json"\n'
                   '[calls]\nrrule = "FREQ=MONTHLY;INTERVAL=3;BYDAY=2TU"\nfirst = 2027-01-12T14:00:00\n')
    roster = Path(run.ROOT) / "templates" / "demo" / "roster.csv"
    assert run.main(["--config", str(cfg), "--now", "2026-12-01T09:00:00-05:00", "partners", "import",
                     str(roster)]) == 0
    assert run.main(["--config", str(cfg), "--now", "2026-12-01T09:00:00-05:00", "mailings", "send", "welcome",
                     "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("would send  welcome") == 6
    assert run.main(["--config", str(cfg), "mailings", "plan", "--from", "2026-12-01", "--to", "2027-01-31"]) == 0
    out = capsys.readouterr().out
    assert "call-invite" in out and "welcome" in out and "renewal" in out
    eml = tmp_path / "p.eml"
    assert run.main(["--config", str(cfg), "--now", "2026-12-01T09:00:00-05:00", "mailings", "preview",
                     "renewal", "--partner", "cookshop", "--out", str(eml)]) == 0
    assert "$2,000" in email.message_from_bytes(eml.read_bytes(), policy=email.policy.default) \
        .get_body(("plain",)).get_content()
    assert run.main(["--config", str(cfg), "--now", "2027-02-11T09:00:00-05:00", "partners", "trained", "sam@ndi.example", "--on", "2027-02-10"]) == 0
    assert run.main(["--config", str(cfg), "partners", "renew", "ndi", "--until", "2028-01-15"]) == 0
    assert run.main(["--config", str(cfg), "mailings", "rsvps"]) == 0
    assert run.main(["--config", str(cfg), "mailings", "list"]) == 0

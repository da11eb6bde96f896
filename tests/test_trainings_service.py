"""Trainings wired as run.py wires them, on a real store file (spool mail, a fake sender that can die):
exactly once across a crash, send-time checks, the CLI verbs, attendance sheets, and a store written by 0.1.0."""

from __future__ import annotations

import os
import shutil
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import run
from cli.trainings import read_attendance
from config import settings as settings_mod
from service.cycle import cycle
from service.ports import SendResult
from service.report import CycleReport
from service.trainings import Trainings
from workflows.errors import BadInput
from workflows.model import Contact, Partner
from workflows.trainings.model import Status

ET = ZoneInfo("America/New_York")
ROOT = Path(run.ROOT)
TID = "training-2027-03-08"
SHOP = Partner(id="shop", name="Shop", plan="standard", renews_on=datetime(2027, 9, 30).date(), contacts=(
    Contact(partner_id="shop", name="Ann", email="ann@shop.example", roles=frozenset({"primary"})),
    Contact(partner_id="shop", name="Bob", email="bob@shop.example"),
    Contact(partner_id="shop", name="Cy", email="cy@shop.example"),
))


def et(m, d, h=10, mi=0):
    return datetime(2027, m, d, h, mi, tzinfo=ET)


class Sender:
    def __init__(self, die_after=None):
        self.sent = []
        self.die_after = die_after

    def send(self, entries, on_result=None):
        out = []
        for e in entries:
            if self.die_after is not None and len(self.sent) >= self.die_after:
                raise KeyboardInterrupt("killed in the middle of sending")
            self.sent.append(e)
            r = SendResult(key=e.key, status="sent")
            out.append(r)
            if on_result:
                on_result(r)
        return out


@pytest.fixture
def wired(tmp_path):
    stacks = []

    def make(now: datetime, capacity: int = 2):
        """A fresh process: whatever the previous one held is let go first."""
        while stacks:
            stacks.pop().close()
        data = {"support": {"address": "support@oa.example", "staff": ["staff@oa.example"]},
                "store": {"path": str(tmp_path / "pd.json")}, "mailings": {"enabled": ["trainings"]},
                "trainings": {"rrule": "FREQ=MONTHLY;INTERVAL=4;BYDAY=2MO", "first": datetime(2027, 3, 8, 9),
                              "capacity": capacity, "remote": "https://meet.example/t"}}
        stack = ExitStack()
        stacks.append(stack)
        app = run.Wiring(settings_mod.load(data, "t.toml"), run.Clock(now), stack).desk(spool_root=tmp_path / "spool")
        return app

    yield make
    for s in stacks:
        s.close()


def drop(tmp_path, name, frm, body, when, in_reply_to=""):
    inbox = tmp_path / "spool" / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    head = f"From: {frm}\r\nTo: support@oa.example\r\nSubject: Re: training\r\nMessage-ID: <{name}@shop.example>\r\n"
    if in_reply_to:
        head += f"In-Reply-To: {in_reply_to}\r\n"
    (inbox / f"{name}.eml").write_text(head + "\r\n" + body + "\r\n")
    os.utime(inbox / f"{name}.eml", (when.timestamp(), when.timestamp()))


def sent_to(sender, kind):
    return [e for e in sender.sent if e.kind == kind]


def test_a_registration_mailing_killed_halfway_sends_each_mail_once(wired, tmp_path):
    app = wired(et(2, 6, 9, 30))
    with app.store.transaction():
        app.store.save_partner(SHOP)
    app.sender = Sender()
    cycle(app)
    ann = next(e for e in app.sender.sent if e.rcpt_to == ("ann@shop.example",))
    drop(tmp_path, "r1", "Ann <ann@shop.example>", "Please register me, bob@shop.example and cy@shop.example",
         et(2, 7), in_reply_to=ann.message_id)
    app = wired(et(2, 7, 10, 5))
    app.sender = Sender(die_after=2)
    with pytest.raises(KeyboardInterrupt):
        cycle(app)
    first = list(app.sender.sent)
    app = wired(et(2, 7, 10, 10))
    app.sender = Sender()
    cycle(app)
    cycle(app)
    every = [(e.kind, e.rcpt_to) for e in first + app.sender.sent]
    assert sorted(every) == sorted(set(every))  # nothing twice
    assert set(every) == {("training-confirmed", ("ann@shop.example",)), ("training-confirmed", ("bob@shop.example",)),
                          ("training-held", ("cy@shop.example",)), ("training-approval", ("staff@oa.example",)),
                          ("training-receipt", ("ann@shop.example",))}
    assert {r.address: r.status for r in app.store.registrations(TID)} == {
        "ann@shop.example": Status.CONFIRMED, "bob@shop.example": Status.CONFIRMED, "cy@shop.example": Status.HELD}


def test_use_cases_refuse_what_cannot_be_and_a_reminder_for_a_place_given_up_is_not_sent(wired):
    app = wired(et(3, 5, 9))
    with app.store.transaction():
        app.store.save_partner(SHOP)
    trainings = Trainings(store=app.store, config=app.mailings.s.config)
    [o] = trainings.register(TID, [("ann@shop.example", "")], by="cli", via="cli", now=et(3, 5, 9))
    assert o.ok and o.status == "confirmed"
    [o] = trainings.register(TID, [("nobody@else.example", "")], by="cli", via="cli", now=et(3, 5, 9))
    assert not o.ok and "not a contact" in o.text
    with pytest.raises(BadInput):
        trainings.register("training-2030-01-01", [("ann@shop.example", "")], by="cli", via="cli", now=et(3, 5, 9))
    with pytest.raises(BadInput):
        trainings.attended(TID, ["ann@shop.example"], by="cli", via="cli", now=et(3, 8, 12))  # before the last day
    app.mailings.tick(et(3, 6, 9, 1), CycleReport())  # confirmation and reminder queued, not yet sent
    pending = {e.kind for e in app.store.outbox("pending")}
    assert {"training-confirmed", "training-reminder"} <= pending
    trainings.cancel(TID, ["ann@shop.example"], by="ann@shop.example", via="reply", now=et(3, 6, 9, 2))
    app.sender = Sender()
    app.outbox.drain(app.sender, et(3, 6, 9, 3), CycleReport())
    assert "training-reminder" not in {e.kind for e in app.sender.sent}
    assert [e.detail for e in app.store.outbox("cancelled")][0].startswith("the registration of ann@shop.example")


def test_attendance_by_cli_and_csv_and_the_seat(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[support]\naddress = "support@oa.example"\nstaff = ["staff@oa.example"]\n[store]\npath = "pd.json"\n'
                   '[mailings]\nenabled = ["trainings"]\n[trainings]\nrrule = "FREQ=MONTHLY;INTERVAL=4;BYDAY=2MO"\n'
                   'first = 2027-03-08T09:00:00\n')
    roster = tmp_path / "r.csv"
    roster.write_text("partner_id,partner_name,plan,renews_on,contact_name,contact_email,roles,trained_on\n"
                      "shop,Shop,standard,2027-09-30,Ann,ann@shop.example,primary,\n"
                      "shop,Shop,standard,2027-09-30,Bob,bob@shop.example,,\n")

    def cli(now, *args):
        code = run.main(["--config", str(cfg), "--now", now, *args])
        return code, capsys.readouterr().out

    assert cli("2027-02-01T09:00:00-05:00", "partners", "import", str(roster))[0] == 0
    code, out = cli("2027-02-10T09:00:00-05:00", "trainings", "register", TID, "ann@shop.example", "bob@shop.example")
    assert code == 0 and out.count("confirmed") == 2
    sheet = tmp_path / "attendance.csv"
    sheet.write_text("name,email,attended\nAnn,ann@shop.example,yes\nBob,bob@shop.example,no\n,,\nZed,,yes\n")
    came, missed, problems = read_attendance(str(sheet))
    assert (came, missed) == (["ann@shop.example"], ["bob@shop.example"]) and problems == [f"{sheet}:5: no address in this row"]
    code, out = cli("2027-03-10T18:00:00-05:00", "trainings", "attended", TID, "--csv", str(sheet))
    assert "ann@shop.example: attended: now holds a seat" in out and "bob@shop.example: absent" in out
    code, out = cli("2027-03-10T18:00:00-05:00", "partners", "list")
    assert "2 contacts, 1 seat\n" in out
    code, out = cli("2027-03-10T18:01:00-05:00", "trainings", "show", TID)
    assert "attended (1)" in out and "absent (no-show) (1)" in out and "training-seat" in out  # the mail due now
    code, out = cli("2027-03-10T18:01:00-05:00", "trainings", "list")
    assert TID in out and "over" in out
    # A no-show's included place is free for the July course in the same term; Ann's is used.
    code, out = cli("2027-06-20T09:00:00-05:00", "trainings", "register", "training-2027-07-12", "bob@shop.example")
    assert "included place" in out and "confirmed" in out


def test_a_store_written_by_0_1_0_runs_trainings(tmp_path, capsys):
    fixture = ROOT / "tests" / "data" / "store-v1"
    for f in ("partnerdesk.json", "partnerdesk.json.journal", "partnerdesk.toml"):
        shutil.copy(fixture / f, tmp_path / f)
    cfg = str(tmp_path / "partnerdesk.toml")
    now = "2027-01-21T10:00:00-05:00"
    assert run.main(["--config", cfg, "--now", now, "trainings", "list"]) == 0
    out = capsys.readouterr().out
    assert "training-2027-03" in out  # today's [[trainings.dates]] entry, as it was written
    assert run.main(["--config", cfg, "--now", now, "trainings", "register", "training-2027-03", "sam@ndi.example"]) == 0
    assert run.main(["--config", cfg, "--now", now, "trainings", "show", "training-2027-03"]) == 0
    out = capsys.readouterr().out
    assert "sam@ndi.example" in out and "confirmed (1)" in out and "(2 days)" in out


def test_every_training_mail_renders_for_both_plans_with_honest_headers():
    import email
    import re
    import email.policy

    from config.mailings import read_mailings
    from config.reader import Reader
    from mailbox.compose import Composer
    from service.mailings import MailingRunner, RunnerSettings
    from service.outbox import Outbox
    from workflows.mailings.plan import KIND_GROUPS, preview

    cfg = read_mailings(Reader({"trainings": {"rrule": "FREQ=MONTHLY;INTERVAL=4;BYDAY=2MO",
                                              "first": datetime(2027, 3, 8, 9), "remote": "https://meet.example/t",
                                              "place": "Washington, DC"}}, "t.toml"))
    composer = Composer(support_address="support@oa.example", support_name="Open Atrium Support")
    outbox = Outbox(store=None, composer=composer, secret=b"k", support_address="support@oa.example")  # type: ignore[arg-type]
    runner = MailingRunner(store=None, outbox=outbox, secret=b"k", settings=RunnerSettings(  # type: ignore[arg-type]
        support_address="support@oa.example", support_name="Open Atrium Support", staff=frozenset(), config=cfg))
    solo = Partner(id="solo", name="{{ 7*7 }} Solo", plan="solo", renews_on=SHOP.renews_on,
                   contacts=(Contact(partner_id="solo", name="Mo", email="mo@solo.example"),))
    calendars = {"training-confirmed": "REQUEST", "training-promoted": "REQUEST", "training-update": "REQUEST",
                 "training-cancel": "CANCEL", "training-cancelled": "CANCEL"}
    for p in (SHOP, solo):
        for name in KIND_GROUPS["trainings"][2:]:
            d = preview(name, p, cfg, et(1, 20))
            _, _, raw = runner.render(d, et(1, 20))
            m = email.message_from_bytes(raw, policy=email.policy.default)
            body = m.get_body(("plain",)).get_content()
            assert m["Auto-Submitted"] == "auto-generated" and m["X-Partnerdesk-Kind"] == name
            assert m["List-Unsubscribe"] is None, name  # about a place they asked for: not a list
            assert "automat" in body and re.search(r"<p[ >]", m.get_body(("html",)).get_content())
            parts = [x for x in m.walk() if x.get_content_type() == "text/calendar"]
            if name in calendars:
                assert parts and parts[0].get_param("method") == calendars[name], name
            else:
                assert not parts, name
            if name in ("training-confirmed", "training-reminder", "training-promoted"):
                assert "https://meet.example/t" in body, name
            if p is solo and name == "training-approval":
                assert "1 included place per term" in body and "{{ 7*7 }} Solo" in body  # data, not template

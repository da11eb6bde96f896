"""What follows from automatic mail once it is wired in: the loop breaker before every automatic answer,
delivery states in the mailings (renewal notices to the primary contact too, other mailings skip a
bouncing contact), settling and roster updates, the upgrade's rule for 0.1.0 threads, mail with no
sender, and the new config keys. Real store, parser, composer and runner; fakes only for the servers."""

from __future__ import annotations

import email
import email.policy
from datetime import date, datetime, timedelta, timezone
from email.message import EmailMessage

import pytest

import run
from config.settings import load
from mailbox.parse import parse
from service.automatic import AutomaticMail
from service.ports import RawMail
from service.report import CycleReport
from service.roster import import_roster
from tests.test_mailings_runner import PARTNERS, make_settings
from tests.test_service import FakeSource, NOW, raw_mail, service, store  # noqa: F401 (fixture)
from workflows.delivery import DeliveryState
from workflows.errors import ConfigError
from workflows.filing import set_aside
from workflows.lifecycle import State
from workflows.loopbreaker import LoopPolicy
from workflows.model import Thread, ThreadEvent
from workflows.roster import parse_roster

UTC = timezone.utc


# -- the loop breaker -------------------------------------------------------------------------------------------
def test_the_global_breaker_stops_answering_strangers_tells_staff_once_and_closes_when_calm(store):
    svc = service(store)
    svc.automatic = AutomaticMail(store=store, outbox=svc.outbox, settings=svc.settings,
                                  loop=LoopPolicy(per_address_per_hour=3, global_per_hour=5, resume_at=2))
    report = CycleReport()
    for n in range(10):  # a storm of strangers, each writing once
        svc.take_in(raw_mail(n, frm=f"s{n}@storm.example"), NOW + timedelta(minutes=n), report)
    acks = [e for e in store.outbox() if e.kind == "ack"]
    assert len(acks) == 6  # the sixth answer trips it (more than 5 in an hour); then nobody unknown
    notices = [e for e in store.outbox() if e.kind == "loop-breaker"]
    assert len(notices) == 1 and notices[0].rcpt_to == ("s@x.example",)
    assert "stopped answering unknown senders" in email.message_from_string(notices[0].raw)["Subject"]
    assert report.counts["new_threads"] == 10 and report.counts["notifications"] == 10  # staff still told
    assert store.loop_breaker().tripped
    # Two hours later the hour is calm: answering again, and no second notice for the old trip.
    later = NOW + timedelta(hours=2)
    svc.take_in(raw_mail(50, frm="late@storm.example"), later, report)
    assert not store.loop_breaker().tripped
    assert len([e for e in store.outbox() if e.kind == "ack"]) == 7
    assert len([e for e in store.outbox() if e.kind == "loop-breaker"]) == 1


def test_a_tripped_breaker_still_answers_partners(store):
    from workflows.model import Contact, Partner

    with store.transaction():
        store.save_partner(Partner(id="p", name="P", plan="solo", renews_on=None, contacts=(
            Contact(partner_id="p", name="Pat", email="pat@p.example", trained_on=date(2026, 1, 1)),)))
    svc = service(store)
    svc.automatic = AutomaticMail(store=store, outbox=svc.outbox, settings=svc.settings,
                                  loop=LoopPolicy(global_per_hour=2, resume_at=1))
    for n in range(4):
        svc.take_in(raw_mail(n, frm=f"s{n}@storm.example"), NOW, CycleReport())
    assert store.loop_breaker().tripped
    svc.take_in(raw_mail(9, frm="pat@p.example"), NOW, CycleReport())
    assert any(e.kind == "ack" and e.rcpt_to == ("pat@p.example",) for e in store.outbox())


def test_the_per_address_limit_counts_every_kind_of_answer(store):
    svc = service(store)
    with store.transaction():
        for _ in range(3):
            store.remember_answer("x@elsewhere.example", NOW)  # three command replies, say
    svc.take_in(raw_mail(1, frm="x@elsewhere.example"), NOW, CycleReport())
    assert not [e for e in store.outbox() if e.kind == "ack"]
    [thread] = store.threads()
    assert [e.kind for e in store.outbox()] == ["notify"] and thread.state == State.NEW


def test_a_sender_asking_for_no_automatic_answers_is_work_without_an_ack(store):
    m = EmailMessage()
    m["From"], m["To"], m["Subject"], m["Message-ID"] = "pro@prospect.example", "support@openatrium.example", "Plans?", \
        "<p1@prospect.example>"
    m["X-Auto-Response-Suppress"] = "All"
    m.set_content("What does the standard plan include?")
    svc = service(store)
    assert svc.take_in(RawMail(source_key="spool:p1", data=m.as_bytes(), received_at=NOW), NOW,
                       CycleReport()) == "thread-new"
    assert [e.kind for e in store.outbox()] == ["notify"]


# -- mail that cannot be attributed -----------------------------------------------------------------------------
def test_mail_without_a_sender_is_quarantined_unless_it_is_automatic(store):
    svc, src, report = service(store), FakeSource(), CycleReport()
    nobody = RawMail(source_key="imap:INBOX:1:1", data=b"Subject: hi\r\n\r\nwho am I\r\n", received_at=NOW,
                     folder="INBOX", uidvalidity=1, uid=1)
    bounce = RawMail(source_key="imap:INBOX:1:2", received_at=NOW, folder="INBOX", uidvalidity=1, uid=2,
                     data=b"Return-Path: <>\r\nSubject: failure notice\r\nMessage-ID: <b@mx>\r\n\r\nsorry\r\n")
    svc.take_in_many([nobody, bounce], NOW, report, src)
    assert [k for k, _ in src.quarantined] == ["imap:INBOX:1:1"] and "no usable sender" in src.quarantined[0][1]
    assert store.threads() == [] and [r.kind for r in store.automatic_mail()] == ["bounce"]
    assert report.counts["quarantined"] == 1 and report.counts["automatic"] == 1


# -- delivery states in the mailings ----------------------------------------------------------------------------
@pytest.fixture
def desk(tmp_path):
    def make(now: str):
        from contextlib import ExitStack

        stack = ExitStack()
        app = run.Wiring(make_settings(tmp_path), run.Clock(datetime.fromisoformat(now)), stack).desk(
            spool_root=tmp_path / "spool")
        with app.store.transaction():
            for p in PARTNERS:
                app.store.save_partner(p)
        return stack, app

    return make


def _bounces(app, address: str, at: datetime) -> None:
    with app.store.transaction():
        app.store.save_delivery_state(DeliveryState(address=address, bouncing_since=at, failures=1, last_failure_at=at,
                                                    last_reason="5.1.1 User unknown", staff_told_at=at))


def test_renewal_notices_also_reach_the_primary_contact_while_billing_bounces_and_say_so(desk):
    stack, app = desk("2027-01-30T15:05:00+00:00")  # the 60-day notice for nuvole (renews 2027-03-31)
    with stack:
        _bounces(app, "billing@nuvole.example", datetime(2027, 1, 2, tzinfo=UTC))
        app.mailings.tick(datetime(2027, 1, 30, 15, 5, tzinfo=UTC), CycleReport(), only="renewals")
        notices = {e.rcpt_to[0]: e for e in app.store.outbox() if e.kind == "renewal"}
        assert {"billing@nuvole.example", "antonio@nuvole.example"} <= set(notices)
        primary = email.message_from_string(notices["antonio@nuvole.example"].raw, policy=email.policy.default)
        text = primary.get_body(("plain",)).get_content()
        assert "the billing address billing@nuvole.example bounces" in " ".join(text.split())
        billing = email.message_from_string(notices["billing@nuvole.example"].raw, policy=email.policy.default)
        assert "bounces" not in billing.get_body(("plain",)).get_content()


def test_other_mailings_skip_a_bouncing_contact_and_record_why(desk):
    stack, app = desk("2026-12-29T19:30:00+00:00")  # invitations for the January 12 call are due
    with stack:
        _bounces(app, "billing@nuvole.example", datetime(2026, 12, 1, tzinfo=UTC))
        app.mailings.tick(datetime(2026, 12, 29, 19, 30, tzinfo=UTC), CycleReport(), only="calls")
        invited = {e.rcpt_to[0] for e in app.store.outbox() if e.kind == "call-invite"}
        assert "antonio@nuvole.example" in invited and "billing@nuvole.example" not in invited
        [skip] = [e for e in app.store.ledger_all() if e["recipient"] == "billing@nuvole.example"]
        assert skip["status"] == "skipped" and "bounces since 2026-12-01" in skip["reason"]


def test_mail_that_drew_no_bounce_settles_a_contact_and_a_roster_change_clears_one(desk, tmp_path):
    stack, app = desk("2027-01-10T15:00:00+00:00")
    with stack:
        automatic = app.extra_ticks[0].__self__
        t0 = datetime(2027, 1, 2, tzinfo=UTC)
        sheet = "partner_id,partner_name,plan,renews_on,contact_name,contact_email,roles,trained_on\n"
        same = sheet + "ndi,National Democratic Institute,standard,2027-01-15,Sam Chen,sam@ndi.example,primary;technical,\n"
        import_roster(app.store, parse_roster(same), t0)
        _bounces(app, "mark@gmail.com", t0)
        _bounces(app, "sam@ndi.example", t0)
        from workflows.model import OutgoingMail

        out = OutgoingMail(key="k1", kind="ack", template="ack", to=("mark@gmail.com",), context={})
        with app.store.transaction():
            app.outbox.add(out, "<m1@x>", b"raw", t0 + timedelta(days=1))
            e = app.store.outbox_entry("k1")
            app.store.outbox_save(e.after_send("sent", "", t0 + timedelta(days=1)))
        automatic.tick(t0 + timedelta(days=2), CycleReport())  # accepted one day ago: not yet
        assert app.store.delivery_state("mark@gmail.com").bouncing
        automatic.tick(t0 + timedelta(days=5), CycleReport())
        assert not app.store.delivery_state("mark@gmail.com").bouncing
        assert app.store.delivery_state("sam@ndi.example").bouncing  # nothing went there: nothing proved
        # The same roster row again proves nothing; a changed row (the address fixed, a new name) clears.
        import_roster(app.store, parse_roster(same), t0)
        assert app.store.delivery_state("sam@ndi.example").bouncing
        fixed = same.replace("Sam Chen", "Samantha Chen")
        done = import_roster(app.store, parse_roster(fixed), t0)
        assert not app.store.delivery_state("sam@ndi.example").bouncing
        assert any("sam@ndi.example: delivery state cleared" in n for n in done.notes)


# -- the upgrade's rule for threads 0.1.0 opened ------------------------------------------------------------------
def _thread(*kinds: str, requester="auto@travel.example", sender_kind="unknown", state=State.NEW) -> Thread:
    at = datetime(2026, 11, 30, 15, tzinfo=UTC)
    return Thread(id="OA-5", number=5, partner_id=None, requester=requester, sender_kind=sender_kind, state=state,
                  subject="Out of office: your message", created_at=at, messages=("<m@x>",),
                  events=tuple(ThreadEvent(at=at, kind=k) for k in kinds))


@pytest.mark.parametrize("kinds,first,expect", [
    (("request",), {"subject": "Out of office: your message"}, "auto-reply"),  # 0.1.0 told nobody
    (("request",), {"subject": "help"}, "0.1.0-thread"),  # 0.1.0 judged it automatic by its headers
    (("request", "ack", "notify"), {"subject": "Undeliverable: Re: [OA-2] x"}, "bounce"),  # missed by 0.1.0
    (("request", "ack", "notify"), {"subject": "help pls"}, None),  # a stranger's real request
    (("request", "notify", "answer"), {"subject": "Out of office: your message"}, None),  # staff answered
    (("request", "notify", "follow-up", "notify"), {"subject": "Automatic reply: x"}, None),  # a conversation
])
def test_set_aside_takes_only_untouched_threads_of_automatic_mail(kinds, first, expect):
    found = set_aside(_thread(*kinds), first, sender_known=False)
    assert (found[1].kind if found else None) == expect
    if found:
        closed, record = found
        assert closed.state == State.CLOSED and closed.events[-1].kind == "set-aside" and record.filed_with == "OA-5"


def test_set_aside_leaves_staff_and_closed_threads():
    assert set_aside(_thread("request", sender_kind="staff"), {}, sender_known=True) is None
    assert set_aside(_thread("request", state=State.CLOSED), {}, sender_known=False) is None


# -- config ---------------------------------------------------------------------------------------------------------
BASE = {"support": {"address": "support@x.example", "staff": ["s@x.example"]}}


@pytest.mark.parametrize("tables,where", [
    ({"intake": {"answers_per_hour_all": 0}}, "[intake] answers_per_hour_all"),
    ({"intake": {"answers_per_hour_all": 10, "answers_resume_at": 10}}, "[intake] answers_resume_at"),
    ({"delivery": {"soft_limit": 0}}, "[delivery] soft_limit"),
    ({"delivery": {"settle_days": "3"}}, "[delivery] settle_days"),
    ({"delivery": {"bogus": 1}}, "[delivery] bogus"),
    ({"imap": {"host": "h", "automatic_folder": 3}, "smtp": {"host": "h"}}, "[imap] automatic_folder"),
])
def test_config_errors_name_the_table_and_key(tables, where):
    with pytest.raises(ConfigError) as e:
        load({**BASE, **tables}, "f.toml")
    assert str(e.value).startswith(f"f.toml: {where}:"), e.value


def test_config_defaults_and_values():
    s = load(BASE, "f.toml")
    assert (s.loop.global_per_hour, s.loop.resume_at, s.delivery.soft_limit) == (60, 30, 3)
    s = load({**BASE, "intake": {"acks_per_hour": 2, "answers_per_hour_all": 20},
              "delivery": {"soft_limit": 5, "soft_window_days": 7, "settle_days": 1}}, "f.toml")
    assert (s.loop.per_address_per_hour, s.loop.global_per_hour, s.loop.resume_at) == (2, 20, 10)
    assert (s.delivery.soft_limit, s.delivery.soft_window, s.delivery.settle_after) == \
        (5, timedelta(days=7), timedelta(days=1))
    imap = load({**BASE, "imap": {"host": "h"}, "smtp": {"host": "h"}}, "f.toml").imap
    assert imap.automatic_folder == "Partnerdesk/Automatic"



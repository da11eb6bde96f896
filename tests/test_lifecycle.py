"""The thread lifecycle table row by row, auto-close, the reopen window, the digest, the tick."""

from collections import Counter

import pytest

from tests.promise_helpers import CAL, LADDER, SETTINGS, et, mail, request, step
from workflows import lifecycle
from config.promise import read_digest, read_lifecycle
from config.reader import Reader
from workflows.autoclose import LifecycleConfig, autoclose, reopen_expired
from workflows.digest import DigestConfig, due_digest
from workflows.errors import ConfigError

ROWS = [  # (state, event) -> (next state, response clock); rows not in the table keep both
    ("new", "request", "new", "start"),
    ("new", "history", "closed", "stop"),
    ("new", "follow-up", "new", "keep"),
    ("new", "answer", "waiting_on_partner", "stop"),
    ("new", "close", "closed", "stop"),
    ("new", "wait", "waiting_on_partner", "stop"),
    ("new", "reopen", "new", "keep"),
    ("waiting_on_staff", "follow-up", "waiting_on_staff", "keep"),
    ("waiting_on_staff", "answer", "waiting_on_partner", "stop"),
    ("waiting_on_staff", "close", "closed", "stop"),
    ("waiting_on_staff", "wait", "waiting_on_partner", "stop"),
    ("waiting_on_partner", "follow-up", "waiting_on_staff", "start"),
    ("waiting_on_partner", "answer", "waiting_on_partner", "stop"),
    ("waiting_on_partner", "close", "closed", "stop"),
    ("waiting_on_partner", "wait", "waiting_on_partner", "keep"),
    ("closed", "follow-up", "waiting_on_staff", "start"),
    ("closed", "answer", "waiting_on_partner", "stop"),
    ("closed", "reopen", "waiting_on_staff", "start"),
    ("closed", "wait", "closed", "keep"),
    ("closed", "note", "closed", "keep"),
    ("new", "merge", "closed", "stop"),  # merged into an older thread (workflows/merging.py)
    ("waiting_on_staff", "merge", "closed", "stop"),
    ("waiting_on_partner", "merge", "closed", "stop"),
    ("closed", "merge", "closed", "keep"),
]


@pytest.mark.parametrize("state,event,expected,clock", ROWS)
def test_table_row(state, event, expected, clock):
    assert lifecycle.transition(state, event) == (expected, clock)
    assert lifecycle.next_state(state, event) == expected


def test_every_table_row_is_tested():
    assert set(lifecycle.TRANSITIONS.items()) <= {((s, e), (n, c)) for s, e, n, c in ROWS}


def test_clock_states():
    assert lifecycle.CLOCK_RUNNING == {"new", "waiting_on_staff"}


def test_unknown_states_and_events_are_our_bug_said_plainly():
    with pytest.raises(ValueError, match="unknown thread state 'open'"):
        lifecycle.next_state("open", "answer")
    with pytest.raises(ValueError, match="unknown thread event 'reply'"):
        lifecycle.next_state("new", "reply")


def test_apply_starts_a_clock_only_for_a_promised_requester_and_keeps_closing_time():
    from dataclasses import replace

    t = request(et(2026, 11, 30, 10))  # a partner contact with a seat
    assert t.promised and t.due_at == et(2026, 12, 1, 10) and t.clock_started_at == et(2026, 11, 30, 10)
    closed = lifecycle.apply(t, "close", et(2026, 11, 30, 11), CAL)
    assert (closed.state, closed.due_at, closed.clock_started_at, closed.closed_at) == (
        "closed", None, None, et(2026, 11, 30, 11))
    assert lifecycle.apply(closed, "close", et(2026, 12, 3), CAL).closed_at == et(2026, 11, 30, 11)
    reopened = lifecycle.apply(closed, "reopen", et(2026, 12, 1, 16), CAL)
    assert reopened.state == "waiting_on_staff" and reopened.closed_at is None
    assert reopened.due_at == et(2026, 12, 2, 16)
    no_seat = lifecycle.apply(replace(closed, seat=False), "reopen", et(2026, 12, 1, 16), CAL)
    assert no_seat.state == "waiting_on_staff" and no_seat.due_at is None and no_seat.clock_started_at is None
    kept = lifecycle.apply(reopened, "follow-up", et(2026, 12, 2, 9), CAL)
    assert kept.due_at == reopened.due_at  # waiting on staff already: the running clock keeps running


def answered(at):
    t = request(et(2026, 11, 2, 10))
    return step(t, mail("sam@oa.example", at, "Try this")).thread


def test_autoclose_after_ten_business_days_with_closing_mail():
    t = answered(et(2026, 11, 2, 12))  # Monday Nov 2, 12:00; Veterans Day (Wed 11th) does not count
    cfg = LifecycleConfig()
    assert autoclose(t, et(2026, 11, 17, 11, 59), CAL, cfg, SETTINGS)[0] is t  # 9 days 7 h 59 m
    closed, [m] = autoclose(t, et(2026, 11, 17, 12), CAL, cfg, SETTINGS)
    assert closed.state == "closed" and closed.events[-1].kind == "auto-close"
    assert m.kind == "close" and m.to == ("ann@acme.example",) and m.context["automatic_close"]
    assert m.key == f"autoclose:OA-1:{et(2026, 11, 2, 12).isoformat()}"
    assert autoclose(t, et(2026, 12, 30, 12), CAL, LifecycleConfig(autoclose_business_days=0), SETTINGS)[0] is t


def test_partner_reply_within_window_reopens_after_it_starts_new_thread():
    t = request(et(2026, 11, 2, 10))
    closed = step(t, mail("sam@oa.example", et(2026, 11, 2, 11), "#close")).thread
    d = step(closed, mail("ann@acme.example", et(2026, 12, 1, 10), "one more thing"))
    assert d.action == "thread-join" and d.thread.state == "waiting_on_staff"
    assert d.thread.due_at == et(2026, 12, 2, 10)
    d = step(closed, mail("ann@acme.example", et(2026, 12, 3, 10), "new problem"), next_number=7)
    assert d.action == "thread-new" and d.thread.id == "OA-7" and d.thread.previous == "OA-1"
    notify = next(o for o in d.outgoing if o.kind == "notify")
    assert notify.context["previous"] == "OA-1"
    assert reopen_expired(closed, et(2026, 12, 3, 10), 30) and not reopen_expired(closed, et(2026, 12, 1), 30)


def test_lifecycle_and_digest_config():
    assert read_lifecycle(Reader({"lifecycle": {"reopen_days": 7}}, "t.toml")).reopen_days == 7
    with pytest.raises(ConfigError, match=r"\[lifecycle\] autoclose_days: unknown key"):
        read_lifecycle(Reader({"lifecycle": {"autoclose_days": 3}}, "t.toml"))
    assert read_digest(Reader({"digest": {"to": ["escalation", "x@oa.example"]}}, "t.toml")).to == (
        "escalation", "x@oa.example")
    with pytest.raises(ConfigError, match=r"\[digest\] to"):
        read_digest(Reader({"digest": {"to": ["nobody"]}}, "t.toml"))


def test_digest_orders_by_due_and_names_breaches_and_strangers():
    a = request(et(2026, 11, 30, 14))  # due Tue 14:00
    b = step(None, mail("ann@acme.example", et(2026, 11, 30, 10)), next_number=2).thread  # due Tue 10:00
    c = step(None, mail("who@else.example", et(2026, 11, 30, 11)), next_number=3).thread  # unknown, no clock
    now = et(2026, 12, 1, 11)
    m = due_digest([a, b, c], now, CAL, DigestConfig(), LADDER)
    ctx = m.context
    assert [r["id"] for r in ctx["rows"]] == ["OA-2", "OA-1", "OA-3"]
    assert [r["id"] for r in ctx["breaches"]] == ["OA-2"]
    assert [r["id"] for r in ctx["no_seat"]] == ["OA-3"]
    assert m.key == "digest:2026-12-01" and m.to == ("kim@oa.example", "sam@oa.example")
    assert due_digest([a], et(2026, 12, 1, 8, 59), CAL, DigestConfig(), LADDER) is None  # before opening
    assert due_digest([a], et(2026, 12, 5, 10), CAL, DigestConfig(), LADDER) is None  # Saturday
    closed = step(a, mail("sam@oa.example", now, "#close quiet")).thread
    assert due_digest([closed], now, CAL, DigestConfig(), LADDER) is None  # nothing open, nothing sent


# -- the tick on a real store, and the send-time cancel --------------------------------------
class FakeComposer:
    def render(self, out, *, message_id, date):
        return f"Message-ID: {message_id}\r\nSubject: {out.subject}\r\n\r\n{out.kind}\r\n".encode()


class RecordingSender:
    def __init__(self):
        self.sent = []

    def send(self, entries, on_result=None):
        from service.ports import SendResult

        self.sent += entries
        return [SendResult(key=e.key, status="sent") for e in entries]


@pytest.fixture
def promise(tmp_path):
    from service.outbox import Outbox
    from service.promise import PromiseTicks
    from service.report import CycleReport
    from store.tinystore import Store

    store = Store(tmp_path / "s.json")
    outbox = Outbox(store=store, composer=FakeComposer(), secret=b"k", support_address=SETTINGS.support_address)
    ticks = PromiseTicks(store=store, outbox=outbox, settings=SETTINGS, ladder=LADDER, lifecycle=LifecycleConfig(),
                         digest=DigestConfig(enabled=False))
    outbox.cancel_checks.append(ticks.cancel_reason)
    yield store, outbox, ticks, CycleReport
    store.close()


def test_tick_queues_each_stage_once_and_cancels_after_an_answer(promise):
    store, svc, ticks, CycleReport = promise
    t = request(et(2026, 11, 30, 10))
    with store.transaction():
        store.save_thread(t)
    report = CycleReport()
    for _ in range(2):
        ticks.tick(et(2026, 11, 30, 16), report)
    assert report.counts["escalations"] == 1
    # One copy per staff member, each with a reply key of its own (service/outbox.py).
    entries = [e for e in store.outbox("pending") if e.kind == "escalation"]
    assert sorted(e.rcpt_to for e in entries) == [("kim@oa.example",), ("sam@oa.example",)]
    saved = store.thread("OA-1")
    assert saved.ladder.fired[0].stage == "warning"
    assert [e.kind for e in saved.events][-2:] == ["stage", "escalation"]

    # Staff answer before the queued mail goes out: it is cancelled at send time.
    with store.transaction():
        store.save_thread(step(saved, mail("sam@oa.example", et(2026, 11, 30, 16, 1), "Fixed")).thread)
    sender = RecordingSender()
    svc.drain(sender, et(2026, 11, 30, 16, 2), report)
    assert sender.sent == [] and report.counts["cancelled"] == 2
    assert all("was answered" in e.detail for e in store.outbox("cancelled"))
    ticks.tick(et(2026, 12, 1, 10), report)  # no breach for an answered thread
    assert report.counts["escalations"] == 1


def test_tick_autocloses_and_digest_once_a_day(promise):
    store, svc, ticks, CycleReport = promise
    with store.transaction():
        store.save_thread(answered(et(2026, 11, 2, 12)))
        store.save_thread(step(None, mail("ann@acme.example", et(2026, 11, 17, 10)), next_number=2).thread)
    ticks.digest = DigestConfig()
    report = CycleReport()
    ticks.tick(et(2026, 11, 17, 12), report)
    ticks.tick(et(2026, 11, 17, 13), report)
    assert report.counts["auto_closed"] == 1 and report.counts["digests"] == 1
    assert store.thread("OA-1").state == "closed"
    kinds = Counter(e.kind for e in store.outbox())
    assert kinds["close"] == 1 and kinds["digest"] == 2  # one copy per staff member

"""The thread lifecycle table row by row, auto-close, the reopen window, the digest, the tick."""

from collections import Counter

import pytest

from tests.promise_helpers import CAL, LADDER, SETTINGS, et, mail, request, step
from workflows import lifecycle
from workflows.autoclose import LifecycleConfig, autoclose, parse_lifecycle, reopen_expired
from workflows.digest import DigestConfig, due_digest, parse_digest

ROWS = [
    ("new", "request", "new"),
    ("new", "history", "closed"),
    ("new", "follow-up", "new"),
    ("new", "answer", "waiting_on_partner"),
    ("new", "close", "closed"),
    ("new", "wait", "waiting_on_partner"),
    ("new", "reopen", "new"),
    ("waiting_on_staff", "follow-up", "waiting_on_staff"),
    ("waiting_on_staff", "answer", "waiting_on_partner"),
    ("waiting_on_staff", "close", "closed"),
    ("waiting_on_staff", "wait", "waiting_on_partner"),
    ("waiting_on_partner", "follow-up", "waiting_on_staff"),
    ("waiting_on_partner", "answer", "waiting_on_partner"),
    ("waiting_on_partner", "close", "closed"),
    ("waiting_on_partner", "wait", "waiting_on_partner"),
    ("closed", "follow-up", "waiting_on_staff"),
    ("closed", "answer", "waiting_on_partner"),
    ("closed", "reopen", "waiting_on_staff"),
    ("closed", "wait", "closed"),
    ("closed", "note", "closed"),
]


@pytest.mark.parametrize("state,event,expected", ROWS)
def test_table_row(state, event, expected):
    assert lifecycle.next_state(state, event) == expected


def test_every_table_row_is_tested():
    assert set(lifecycle.TRANSITIONS.items()) <= {((s, e), n) for s, e, n in ROWS}


def test_clock_states():
    assert lifecycle.CLOCK_RUNNING == {"new", "waiting_on_staff"}


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
    assert d.action == "thread-new" and d.thread.id == "OA-7" and d.thread.extra["previous"] == "OA-1"
    notify = next(o for o in d.outgoing if o.kind == "notify")
    assert notify.context["previous"] == "OA-1"
    assert reopen_expired(closed, et(2026, 12, 3, 10), 30) and not reopen_expired(closed, et(2026, 12, 1), 30)


def test_lifecycle_and_digest_config():
    assert parse_lifecycle({"reopen_days": 7}).reopen_days == 7
    with pytest.raises(ValueError, match=r"\[lifecycle\] autoclose_days: unknown key"):
        parse_lifecycle({"autoclose_days": 3})
    assert parse_digest({"to": ["escalation", "x@oa.example"]}).to == ("escalation", "x@oa.example")
    with pytest.raises(ValueError, match=r"\[digest\] to"):
        parse_digest({"to": ["nobody"]})


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
        from workflows.ports import SendResult

        self.sent += entries
        return [SendResult(key=e["key"], status="sent") for e in entries]


@pytest.fixture
def promise(tmp_path):
    from store.tinystore import Store
    from workflows.service import CycleReport, IntakeService
    from workflows.ticks import PromiseTicks

    store = Store(tmp_path / "s.json")
    svc = IntakeService(store=store, settings=SETTINGS, parse=None, composer=FakeComposer(), secret=b"k")
    ticks = PromiseTicks(store=store, service=svc, settings=SETTINGS, ladder=LADDER, lifecycle=LifecycleConfig(),
                         digest=DigestConfig(enabled=False))
    yield store, svc, ticks, CycleReport
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
    [entry] = [e for e in store.outbox("pending") if e["kind"] == "escalation"]
    assert entry["rcpt_to"] == ["kim@oa.example", "sam@oa.example"]
    saved = store.thread("OA-1")
    assert saved.extra["ladder"]["fired"][0]["stage"] == "warning"
    assert [e.kind for e in saved.events][-2:] == ["stage", "escalation"]

    # Staff answer before the queued mail goes out: it is cancelled at send time.
    with store.transaction():
        store.save_thread(step(saved, mail("sam@oa.example", et(2026, 11, 30, 16, 1), "Fixed")).thread)
    sender = RecordingSender()
    svc.drain_outbox(sender, et(2026, 11, 30, 16, 2), report, ticks.cancel_reason)
    assert sender.sent == [] and report.counts["cancelled"] == 1
    assert "was answered" in store.outbox("cancelled")[0]["detail"]
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
    kinds = Counter(e["kind"] for e in store.outbox())
    assert kinds["close"] == 1 and kinds["digest"] == 1

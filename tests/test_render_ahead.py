"""service/render_ahead.py: a large mailing rendered in a forked child gives what rendering here gives,
in order; a failing mail comes back as a failure with its words; a child that stalls or dies is replaced
by rendering here; no child outlives the tick."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone

import pytest

from service.render_ahead import ForkedRenderer, RenderFailed, in_process

NOW = datetime(2026, 12, 29, 19, tzinfo=timezone.utc)


def render(d, now):
    if d == 13:
        raise ValueError(f"template broke on {d}")
    return (f"mail {d}", f"<{d}@x>", (b"%d " % d) * 2000, os.getpid())


def children() -> set[int]:
    me = os.getpid()
    out = set()
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            try:
                fields = open(f"/proc/{stat}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me and fields[0] != "Z":
                out.add(int(stat))
    return out


def plain(results):
    def what(g):
        if isinstance(g, Exception):
            return (g.kind if isinstance(g, RenderFailed) else type(g).__name__, str(g))
        return g[:3]
    return [(d, what(g)) for d, g in results]


def test_a_large_mailing_is_rendered_in_a_child_in_order_with_the_same_results():
    before = children()
    items = list(range(300))
    got = list(ForkedRenderer(min_mails=100)(render, items, NOW))
    assert plain(got) == plain(in_process(render, items, NOW))
    assert [d for d, _ in got] == items
    pids = {g[3] for _, g in got if not isinstance(g, Exception)}
    assert pids and os.getpid() not in pids  # rendered elsewhere
    failed = dict(got)[13]
    assert isinstance(failed, RenderFailed) and failed.kind == "ValueError" and str(failed) == "template broke on 13"
    assert "in render" in failed.trace  # where it happened, for the log
    assert children() == before


def test_a_small_mailing_is_rendered_here():
    got = list(ForkedRenderer(min_mails=100)(render, list(range(20)), NOW))
    assert {g[3] for d, g in got if d != 13} == {os.getpid()}


def test_a_child_that_stalls_is_killed_and_the_rest_is_rendered_here(caplog):
    parent = os.getpid()

    def stalls(d, now):
        if d == 150 and os.getpid() != parent:
            time.sleep(3600)  # a lock that a thread of the parent held at the fork, say
        return render(d, now)

    before = children()
    got = list(ForkedRenderer(min_mails=100, stall=1.0)(stalls, list(range(200)), NOW))
    assert [d for d, _ in got] == list(range(200))
    where = {d: g[3] for d, g in got if not isinstance(g, Exception)}
    assert where[149] != parent and where[150] == parent and where[199] == parent
    assert "made no progress" in caplog.text
    assert children() == before


def test_a_child_that_dies_is_replaced_by_rendering_here(caplog):
    parent = os.getpid()

    def dies(d, now):
        if d == 120 and os.getpid() != parent:
            os._exit(9)
        return render(d, now)

    got = list(ForkedRenderer(min_mails=100)(dies, list(range(200)), NOW))
    assert [d for d, _ in got] == list(range(200))
    assert {g[3] for d, g in got if d >= 120} == {parent}
    assert "ended early" in caplog.text


def test_a_caller_that_stops_early_leaves_no_child():
    before = children()
    ahead = ForkedRenderer(min_mails=100)(render, list(range(5000)), NOW)
    assert next(ahead)[0] == 0
    ahead.close()
    assert children() == before


@pytest.mark.parametrize("min_mails", [1, 10_000])
def test_the_runner_queues_the_same_mail_either_way(min_mails, tmp_path):
    """A real mailing (every contact of a roster invited to a call) through the runner, rendered forked or
    here: the same outbox, byte for byte."""
    from mail_kinds import SHAPES, mailing_config
    from mailbox.compose import Composer
    from service.mailings import MailingRunner, RunnerSettings
    from service.outbox import Outbox
    from store.tinystore import Store

    support = "support@openatrium.example"
    results = {}
    for mode in ("here", "forked"):
        store = Store(tmp_path / f"{mode}.json")
        try:
            with store.transaction():
                for p in SHAPES.values():
                    store.save_partner(p)
            outbox = Outbox(store=store, composer=Composer(support_address=support, support_name="Open Atrium Support"),
                            secret=b"k" * 32, support_address=support)
            runner = MailingRunner(store=store, outbox=outbox, secret=b"k" * 32, settings=RunnerSettings(
                support_address=support, support_name="Open Atrium Support", staff=frozenset(),
                config=mailing_config()))
            if mode == "forked":
                runner.render_ahead = ForkedRenderer(min_mails=min_mails)
            from service.report import CycleReport

            report = CycleReport()
            runner.tick(datetime(2027, 1, 4, 15, tzinfo=timezone.utc), report)
            results[mode] = sorted((e.key, store.outbox_body(e)) for e in store.outbox(bodies=False))
        finally:
            store.close()
    assert len(results["here"]) >= 5 and results["here"] == results["forked"]


def test_a_failed_fork_renders_the_mailing_here(monkeypatch, caplog):
    def no_fork():
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(os, "fork", no_fork)
    before = set(os.listdir("/proc/self/fd"))
    got = list(ForkedRenderer(min_mails=10)(render, list(range(50)), NOW))
    assert [d for d, _ in got] == list(range(50))
    assert {g[3] for d, g in got if d != 13} == {os.getpid()}
    assert "could not start a rendering process" in caplog.text
    assert set(os.listdir("/proc/self/fd")) == before  # the pipe is closed again


def test_a_child_left_hanging_dies_with_its_parent(tmp_path):
    """The daemon killed while its child waits on a lock: the child goes too (it holds a copy of the
    daemon lock's descriptor, so a restart would otherwise find the store locked)."""
    import signal
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(__import__('pathlib').Path(__file__).resolve().parent.parent)!r})
        from service.render_ahead import ForkedRenderer
        parent = os.getpid()
        def hangs(d, now):
            if os.getpid() != parent:
                print("child", os.getpid(), flush=True)
                time.sleep(3600)
            return d
        for _ in ForkedRenderer(min_mails=1, stall=3600)(hangs, [1, 2, 3], None):
            pass
    """))
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        child = int(line.split()[1])
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.path.exists(f"/proc/{child}") and \
                open(f"/proc/{child}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
            time.sleep(0.05)
        alive = os.path.exists(f"/proc/{child}") and open(f"/proc/{child}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
        if alive:
            os.kill(child, signal.SIGKILL)
        assert not alive
    finally:
        if p.poll() is None:
            p.kill()

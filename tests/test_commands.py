"""Commands by mail: parsing, what each does, confirmations, errors, staff only."""

import pytest

from tests.promise_helpers import et, mail, request, step
from workflows.commands import COMMANDS, parse_command


@pytest.mark.parametrize("text,name,arg", [
    ("#note checking", "note", "checking"),
    ("\n  #close\nthanks all", "close", ""),
    ("#close quiet", "close", "quiet"),
    ("#CLOSE Quiet", "close", "Quiet"),
    ("#reopen", "reopen", ""),
    ("#assign kim@oa.example", "assign", "kim@oa.example"),
    ("#assign: me", "assign", "me"),
    ("#wait", "wait", ""),
    ("#frobnicate now", "unknown", "now"),
])
def test_parse(text, name, arg):
    c = parse_command(text)
    assert c is not None and (c.name, c.arg) == (name, arg)


@pytest.mark.parametrize("text", ["Hi Ann, try this", "# heading", "#1 first do this", "", "see #close below"])
def test_not_a_command(text):
    assert parse_command(text) is None


def staff(thread, text, at=None, frm="sam@oa.example"):
    return step(thread, mail(frm, at or et(2026, 11, 30, 11), text))


def test_close_mails_partner_and_confirms():
    t = request(et(2026, 11, 30, 10))
    d = staff(t, "#close\nFixed by the upgrade.")
    assert d.thread.state == "closed" and d.thread.due_at is None
    kinds = {o.kind: o for o in d.outgoing}
    assert set(kinds) == {"command", "close"}
    assert kinds["command"].to == ("sam@oa.example",) and "is closed" in kinds["command"].context["result"]
    assert kinds["close"].to == ("ann@acme.example",) and not kinds["close"].context["automatic_close"]
    assert d.thread.events[-1].kind == "close" and "Fixed by the upgrade." in d.thread.events[-1].detail


def test_close_quiet_tells_nobody_but_staff():
    d = staff(request(et(2026, 11, 30, 10)), "#close quiet")
    assert d.thread.state == "closed" and [o.kind for o in d.outgoing] == ["command"]


def test_wait_stops_clock_and_reopen_restarts_it():
    t = request(et(2026, 11, 30, 10))
    d = staff(t, "#wait")
    assert d.thread.state == "waiting_on_partner" and d.thread.due_at is None
    d = staff(d.thread, "#close quiet", at=et(2026, 11, 30, 12))
    d = staff(d.thread, "#reopen", at=et(2026, 12, 1, 10))
    assert d.thread.state == "waiting_on_staff" and d.thread.due_at == et(2026, 12, 2, 10)
    assert "due Wednesday, December 2, 10:00 AM ET" in d.outgoing[0].context["result"]


def test_assign_confirms_to_both_and_rejects_non_staff():
    t = request(et(2026, 11, 30, 10))
    d = staff(t, "#assign kim@oa.example")
    assert d.thread.assignee == "kim@oa.example"
    assert d.outgoing[0].to == ("sam@oa.example", "kim@oa.example")
    d = staff(t, "#assign me")
    assert d.thread.assignee == "sam@oa.example"
    d = staff(t, "#assign ann@acme.example")
    assert d.action == "command-error" and not d.thread.assignee
    assert "not a staff address" in d.outgoing[0].context["problem"]


def test_unknown_command_gets_error_naming_valid_ones_and_changes_nothing():
    t = request(et(2026, 11, 30, 10))
    d = staff(t, "#snooze 2 days")
    assert d.action == "command-error" and d.thread.state == "new" and d.thread.due_at == t.due_at
    [err] = d.outgoing
    assert err.kind == "command-error" and err.to == ("sam@oa.example",)
    assert err.context["valid"] == list(COMMANDS.values())
    assert all(o.to != ("ann@acme.example",) for o in d.outgoing)


def test_commands_only_from_staff():
    t = request(et(2026, 11, 30, 10))
    d = step(t, mail("ann@acme.example", et(2026, 11, 30, 11), "#close"))
    assert d.action == "thread-join" and d.thread.state == "new"


def test_note_keeps_clock_and_only_confirms_to_the_writer():
    t = request(et(2026, 11, 30, 10))
    d = staff(t, "#note the devs are on it")
    assert d.action == "note" and d.thread.due_at == t.due_at
    [confirm] = d.outgoing
    assert confirm.to == ("sam@oa.example",) and "NOT sent to the partner" in confirm.context["result"]


def test_no_op_commands_say_so():
    t = request(et(2026, 11, 30, 10))
    d = staff(t, "#reopen")
    assert d.thread.state == "new" and "not closed" in d.outgoing[0].context["result"]
    d = staff(t, "#close loudly")
    assert d.action == "command-error"

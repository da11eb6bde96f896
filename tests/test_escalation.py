"""The escalation ladder over timelines: which stage fires at which instant, to whom, once."""

from dataclasses import replace

import pytest

from tests.promise_helpers import CAL, LADDER, SUPPORT, et, mail, request, step
from workflows import escalation as esc
from config.settings import load
from workflows.errors import ConfigError


def fire(thread, now, config=LADDER, **kw):
    """Run the ladder at ``now`` and remember what fired, as the tick does."""
    mails = esc.due_escalations(thread, now, config, CAL, partner_name="Acme Web", request_text="Please help", **kw)
    for m in mails:
        for overtaken in m.context.get("covers", ()):
            thread = esc.record_fired(thread, overtaken, now, m.to)
        thread = esc.record_fired(thread, m.context["stage"], now, m.to)
    return thread, [(m.context["stage"], m.to) for m in mails], mails


# Request Monday 30 Nov 2026 10:00 ET: due Tue 10:00; warning at 75 % = 6 business hours = Mon 16:00;
# second level 4 business hours after the breach = Tue 14:00.
LADDER_TABLE = [
    (et(2026, 11, 30, 15, 59), []),
    (et(2026, 11, 30, 16, 0), [("warning", ("kim@oa.example", "sam@oa.example"))]),
    (et(2026, 11, 30, 16, 30), []),
    (et(2026, 12, 1, 9, 59), []),
    (et(2026, 12, 1, 10, 0), [("breach", ("boss@oa.example",))]),
    (et(2026, 12, 1, 13, 59), []),
    (et(2026, 12, 1, 14, 0), [("second-level", ("lead@oa.example",))]),
    (et(2026, 12, 2, 14, 0), []),
]


def test_default_ladder_fires_each_stage_once_at_the_right_instant():
    t = request(et(2026, 11, 30, 10))
    for now, expected in LADDER_TABLE:
        t, fired, _ = fire(t, now)
        assert fired == expected, now
    assert esc.current_stage(t) == "second-level"
    assert esc.next_stage(t, LADDER, CAL) is None


def test_mail_names_everything_and_never_goes_to_the_partner():
    t = request(et(2026, 11, 30, 10))
    t, _, _ = fire(t, et(2026, 11, 30, 16))
    _, _, [m] = fire(t, et(2026, 12, 1, 10), blocked=frozenset({"ann@acme.example", "bob@acme.example"}))
    c = m.context
    assert m.key == f"esc:OA-1:{t.clock_started_at.isoformat()}:breach"
    assert m.subject == "[OA-1] Reply overdue: Upgrade fails" and m.reply_to_support and m.automatic
    assert c["partner_name"] == "Acme Web" and c["requester"] == "ann@acme.example"
    assert c["waited"] == "8h" and c["due"] == "Tuesday, December 1, 10:00 AM ET"
    assert c["already_told"] == ["warning (Monday, November 30, 4:00 PM ET): kim@oa.example, sam@oa.example"]
    assert c["request_text"] == "Please help"
    assert "second-level" in c["next_stage"]
    # Even a ladder configured to mail the partner does not.
    bad = replace(LADDER, stages=(esc.Stage(name="x", percent=10, to=("ann@acme.example", "bob@acme.example",
                                                                        "staff")),))
    _, fired, _ = fire(request(et(2026, 11, 30, 10)), et(2026, 11, 30, 11),
                       config=bad, blocked=frozenset({"bob@acme.example"}))
    assert fired == [("x", ("kim@oa.example", "sam@oa.example"))]


def test_assignee_gets_escalations_first():
    t = request(et(2026, 11, 30, 10))
    d = step(t, mail("sam@oa.example", et(2026, 11, 30, 11), "#assign kim@oa.example"))
    t = d.thread
    _, fired, _ = fire(t, et(2026, 11, 30, 16))
    assert fired == [("warning", ("kim@oa.example",))]
    t, _, _ = fire(t, et(2026, 11, 30, 16))
    _, fired, _ = fire(t, et(2026, 12, 1, 10))
    assert fired == [("breach", ("kim@oa.example", "boss@oa.example"))]


def test_staff_answer_ends_the_ladder_and_a_follow_up_starts_a_new_one():
    t = request(et(2026, 11, 30, 10))
    t, _, _ = fire(t, et(2026, 11, 30, 16))
    t = step(t, mail("sam@oa.example", et(2026, 11, 30, 17, 30), "Here is the fix")).thread
    assert fire(t, et(2026, 12, 1, 10))[1] == []  # no breach: answered
    t = step(t, mail("ann@acme.example", et(2026, 12, 3, 10), "Still broken")).thread
    assert esc.current_stage(t) == "-"
    t, fired, mails = fire(t, et(2026, 12, 3, 16))
    assert [f[0] for f in fired] == ["warning"] and mails[0].context["clock"] == "next response"
    assert mails[0].key.endswith(f":{t.clock_started_at.isoformat()}:warning")


def test_note_does_not_stop_the_ladder():
    t = request(et(2026, 11, 30, 10))
    t = step(t, mail("sam@oa.example", et(2026, 11, 30, 11), "#note looking")).thread
    assert [f[0] for f in fire(t, et(2026, 11, 30, 16))[1]] == ["warning"]


def test_stage_due_at_night_waits_for_the_opening_unless_urgent():
    t = request(et(2026, 11, 30, 10))
    # Nobody ran the ladder on Monday; at 20:00 the warning is due but the office is closed.
    assert fire(t, et(2026, 11, 30, 20))[1] == []
    assert [f[0] for f in fire(t, et(2026, 12, 1, 9))[1]] == ["warning"]
    urgent = replace(LADDER, stages=(esc.Stage(name="page", percent=100, plus_hours=4, urgent=True,
                                               to=("program_lead",)),))
    # Due Tue 10:00; urgent: 4 wall-clock hours later = 14:00 ... and at night it still goes.
    t2 = request(et(2026, 11, 30, 16))  # due Tue 16:00; page at 20:00 Tuesday night
    assert fire(t2, et(2026, 12, 1, 19, 59), config=urgent)[1] == []
    assert fire(t2, et(2026, 12, 1, 20, 0), config=urgent)[1] == [("page", ("lead@oa.example",))]


def test_over_a_weekend_and_holiday():
    # Wednesday before Thanksgiving 15:00: due Friday 15:00 (Thursday is a holiday).
    t = request(et(2026, 11, 25, 15))
    assert fire(t, et(2026, 11, 27, 12, 59))[1] == []
    assert [f[0] for f in fire(t, et(2026, 11, 27, 13))[1]] == ["warning"]  # 2 h Wed + 4 h Fri
    t, _, _ = fire(t, et(2026, 11, 27, 13))
    t, fired, _ = fire(t, et(2026, 11, 27, 15))
    assert [f[0] for f in fired] == ["breach"]
    # second level: 4 business hours after Friday 15:00 = Monday 11:00
    assert fire(t, et(2026, 11, 30, 10, 59))[1] == []
    assert [f[0] for f in fire(t, et(2026, 11, 30, 11))[1]] == ["second-level"]


def test_missed_stages_fire_once_as_one_mail_for_the_latest():
    # Down from before the warning until after the second level: one mail, not "due soon" + "overdue".
    t = request(et(2026, 11, 30, 10))
    t, fired, mails = fire(t, et(2026, 12, 2, 10))
    assert [f[0] for f in fired] == ["second-level"]
    [mail] = mails
    assert mail.context["covers"] == ["warning", "breach"]
    # Everyone the overtaken stages name is told (warning: assignee/staff, breach: escalation list).
    assert {"boss@oa.example", "lead@oa.example"} <= set(mail.to)
    assert esc.fired_stages(t) == ["warning", "breach", "second-level"]
    assert fire(t, et(2026, 12, 2, 11))[1] == []


def test_urgent_hours_are_real_hours_across_dst():
    stage = esc.Stage(name="night", percent=100, plus_hours=48, urgent=True)
    # Breach Friday 12 March 2027 16:00 EST; 48 real hours later is Sunday 17:00 EDT (clocks jump Sunday 2 AM).
    start = et(2027, 3, 11, 16)  # due one business day later: Friday 16:00
    fires = stage.fires_at(start, CAL)
    assert fires == et(2027, 3, 14, 17)
    from datetime import timezone as _tz

    real = fires.astimezone(_tz.utc) - et(2027, 3, 12, 16).astimezone(_tz.utc)
    assert real.total_seconds() == 48 * 3600


def toml(extra: dict) -> dict:
    return {"support": {"address": SUPPORT, "staff": ["sam@oa.example"], "escalation": ["boss@oa.example"],
                        "program_lead": "lead@oa.example"}} | extra


def test_config_parsing():
    s = load(toml({}), "t.toml")
    assert s.ladder == esc.DEFAULT_STAGES and s.program_lead == "lead@oa.example"
    s = load(toml({"escalation": {"stages": [{"name": "heads-up", "percent": 50, "to": ["staff"]},
                                             {"name": "page", "plus_hours": 2, "urgent": True,
                                              "to": ["program_lead", "cto@oa.example"]}]}}), "t.toml")
    assert [x.name for x in s.ladder] == ["heads-up", "page"] and s.ladder[1].urgent
    assert s.ladder[1].fires_at(et(2026, 11, 30, 10), CAL) == et(2026, 12, 1, 12)


@pytest.mark.parametrize("table,message", [
    ({"stages": [{"name": "Bad Name", "to": ["staff"]}]}, "stages[1] name"),
    ({"stages": [{"name": "a", "percent": -1, "to": ["staff"]}]}, "stages[1] percent"),
    ({"stages": [{"name": "a", "to": ["nobody"]}]}, "neither a role"),
    ({"stages": [{"name": "a", "to": ["staff"]}, {"name": "a", "to": ["staff"]}]}, "used twice"),
    ({"stages": [{"name": "a", "to": ["staff"], "when": 3}]}, "stages[1] when: unknown key"),
    ({"ladder": []}, "[escalation] ladder: unknown key"),
])
def test_config_errors_name_the_key(table, message):
    with pytest.raises(ConfigError) as e:
        load(toml({"escalation": table}), "t.toml")
    assert "t.toml" in str(e.value) and message in str(e.value)


def test_configured_role_without_people_is_an_error():
    data = {"support": {"address": SUPPORT}, "escalation": {"stages": [{"name": "a", "to": ["program_lead"]}]}}
    with pytest.raises(ConfigError, match="program_lead is not set"):
        load(data, "t.toml")

"""The roster's lifecycle: import --sync, export -> import round trip, deactivate, remove-contact, duplicate
addresses (in the sheet and against the store), lapsed partners (held mailings, staff flags)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from workflows.mailings.plan import due_mailings, simulate
from workflows.mailings.types import CallsConfig, MailingsConfig, TrainingDate, TrainingsConfig
from workflows.model import Contact, Partner
from workflows.roster import COLUMNS, export_csv, lapse_note, lapsed_since, parse_roster, plan_import

ROOT = Path(__file__).resolve().parent.parent
HEADER = ",".join(COLUMNS)
SHEET = f"""{HEADER}
nuvole,Nuvole Web,standard,2027-03-31,Antonio De Marco,antonio@nuvole.example,primary;technical,2026-06-12
nuvole,Nuvole Web,standard,2027-03-31,Claudia Rossi,billing@nuvole.example,billing,
cookshop,"Mark's Site Kitchen, LLC",solo,2027-05-01,Mark Cook,mark@gmail.com,primary|billing|technical,
ndi,National Democratic Institute,standard,2027-09-30,,,,
"""
TODAY = date(2027, 1, 21)


# -- the sheet ----------------------------------------------------------------------------------------------
def test_a_row_with_several_faults_reports_every_one():
    r = parse_roster(f"{HEADER}\n-bad id,,gold,2027-13-01,X,nope,boss,yes\n")
    [rej] = r.rejected
    for fault in ("partner_id '-bad id'", "partner_name is empty", "plan 'gold'", "renews_on '2027-13-01'",
                  "contact_email 'nope'", "roles boss unknown", "trained_on 'yes'"):
        assert fault in rej.reason, (fault, rej.reason)


def test_a_semicolon_separated_sheet_is_read_and_said_so():
    text = SHEET.replace(",", ";").replace("primary;technical", '"primary;technical"')
    text = text.replace('"Mark\'s Site Kitchen; LLC"', "Mark's Site Kitchen LLC").replace("primary|billing|technical",
                                                                                        "primary|billing")
    r = parse_roster(text)
    assert r.rejected == () and len(r.partners) == 3
    assert "semicolon-separated" in r.notes[0]
    nuvole = next(p for p in r.partners if p.id == "nuvole")
    assert nuvole.contacts[0].roles == frozenset({"primary", "technical"})


def test_an_unquoted_semicolon_in_a_semicolon_sheet_gets_a_hint():
    r = parse_roster(f"{HEADER.replace(',', ';')}\nacme;Acme;standard;;Ann;ann@acme.example;primary;billing;\n")
    [rej] = r.rejected
    assert "more field(s) than the header" in rej.reason and "quote" in rej.reason


def test_a_tab_separated_sheet_gets_a_hint():
    [rej] = parse_roster(HEADER.replace(",", "\t") + "\n").rejected
    assert "tab-separated" in rej.reason


def test_a_duplicate_address_names_both_rows():
    r = parse_roster(f"{HEADER}\na,A,standard,,X,x@shared.example,primary,\nb,B,standard,,X,X@shared.example,,\n")
    assert [(x.line, x.reason) for x in r.rejected] == [(3, "x@shared.example is already a contact of partner a "
                                                            "(line 2)")]


def test_a_partner_without_contacts_is_one_row_with_empty_contact_columns():
    r = parse_roster(SHEET)
    assert r.rejected == ()
    assert next(p for p in r.partners if p.id == "ndi").contacts == ()


# -- against the store --------------------------------------------------------------------------------------
def stored() -> list[Partner]:
    return list(parse_roster(SHEET).partners)


def test_an_address_of_another_partner_in_the_store_is_rejected_naming_it():
    sheet = parse_roster(f"{HEADER}\nother,Other,solo,,Mark,mark@gmail.com,primary,\nother,Other,solo,,O,o@o.example,,\n")
    plan = plan_import(stored(), sheet, sync=False, today=TODAY)
    [rej] = plan.rejected
    assert rej.line == 2 and "mark@gmail.com is already a contact of partner cookshop in the roster" in rej.reason
    [new] = plan.save
    assert [c.email for c in new.contacts] == ["o@o.example"]  # the other row still counts


def test_sync_removes_missing_contacts_deactivates_missing_partners_and_moves_addresses():
    sheet = parse_roster(f"{HEADER}\nnuvole,Nuvole Web,standard,2027-03-31,Antonio,antonio@nuvole.example,primary,\n"
                         f"ndi,NDI,standard,2027-09-30,Mark,mark@gmail.com,primary,\n")
    plan = plan_import(stored(), sheet, sync=True, today=TODAY)
    after = {p.id: p for p in plan.save}
    assert [c.email for c in after["nuvole"].contacts] == ["antonio@nuvole.example"]
    assert after["nuvole"].contacts[0].trained_on == date(2026, 6, 12)  # a recorded training is kept
    assert plan.deactivated == ("cookshop",) and after["cookshop"].deactivated_on == TODAY
    assert after["cookshop"].contacts == ()  # mark@gmail.com moved to ndi: one address, one partner
    assert [c.email for c in after["ndi"].contacts] == ["mark@gmail.com"]
    assert {(pid, c.email) for pid, c in plan.removed} == {("nuvole", "billing@nuvole.example"),
                                                           ("cookshop", "mark@gmail.com")}
    assert any(line.startswith("x cookshop: deactivated") for line in plan.changes)


def test_export_then_import_is_a_no_op_plain_and_sync():
    roster = stored()
    roster[0] = replace(roster[0], deactivated_on=date(2027, 6, 1))  # a planned deactivation survives too
    again = parse_roster(export_csv(roster))
    assert again.rejected == ()
    for sync in (False, True):
        plan = plan_import(roster, again, sync=sync, today=TODAY)
        assert plan.empty and plan.unchanged == len(roster), plan.changes
    assert export_csv(roster) == export_csv(list(again.partners))


# -- lapse ---------------------------------------------------------------------------------------------------
P = Partner(id="acme", name="Acme", plan="standard", renews_on=date(2027, 3, 31),
            contacts=(Contact(partner_id="acme", name="Ann", email="ann@acme.example", roles=frozenset({"primary"})),))


def test_lapsed_after_the_grace_period_without_a_payment():
    assert lapsed_since(P, date(2027, 4, 30), 30) is None  # renewal + 30 days: still in grace
    assert lapsed_since(P, date(2027, 5, 1), 30) == date(2027, 5, 1)
    assert "partners renew acme" in lapse_note(P, date(2027, 5, 1), 30)
    assert lapsed_since(replace(P, renews_on=date(2028, 3, 31)), date(2027, 5, 1), 30) is None  # renewed


CFG = MailingsConfig(calls=CallsConfig(rrule="FREQ=MONTHLY;INTERVAL=3;BYDAY=2TU",
                                       first=datetime(2027, 1, 12, 19, 0, tzinfo=timezone.utc)),
                     trainings=TrainingsConfig(dates=(TrainingDate(id="t-2027-09", start=datetime(
                         2027, 9, 8, 13, 0, tzinfo=timezone.utc)),)))


def test_a_lapsed_partner_gets_no_invitation_or_training_mail_but_the_plan_says_why():
    steps = simulate([P], {}, CFG, datetime(2027, 6, 1, tzinfo=timezone.utc), datetime(2027, 9, 1, tzinfo=timezone.utc))
    invites = [s for s in steps if s.due.mailing in ("call-invite", "call-reminder", "training-announcement")]
    assert invites and not any(s.sent for s in invites)
    # (An invitation held until its call has passed is then skipped for good: a second, recorded decision.)
    invites = [s for s in invites if s.due.held]
    assert len(invites) == 3
    assert all("lapsed on 2027-05-01" in s.due.reason and "held until `partners renew acme`" in s.due.reason
               for s in invites)
    assert len({s.due.key for s in invites}) == len(invites)  # each skip shown once, not at every tick
    # Held, not recorded: the same call invites the partner once it renews, while still timely.
    send, skip = due_mailings([replace(P, renews_on=date(2028, 3, 31))], {}, CFG,
                              datetime(2027, 7, 1, tzinfo=timezone.utc))
    assert any(d.mailing == "call-invite" for d in send)
    assert all(s.held for s in due_mailings([P], {}, CFG, datetime(2027, 7, 1, tzinfo=timezone.utc))[1]
               if "lapsed" in s.reason)


def test_renewal_notices_still_go_to_a_lapsed_partner():
    steps = simulate([P], {}, CFG, datetime(2027, 3, 1, tzinfo=timezone.utc), datetime(2027, 6, 1, tzinfo=timezone.utc))
    assert [s.due.why.split(" (")[0] for s in steps if s.due.mailing == "renewal" and s.sent][-1] == \
        "renewal notice 14 days after the renewal date"


def test_a_deactivated_partner_gets_nothing_from_its_day_on():
    gone = replace(P, deactivated_on=date(2027, 3, 1))
    assert gone.active_on(date(2027, 2, 28)) and not gone.active_on(date(2027, 3, 1))
    send, skip = due_mailings([gone], {}, CFG, datetime(2027, 3, 31, 15, tzinfo=timezone.utc))
    assert send == [] and skip == []


# -- the CLI, as a user runs it ------------------------------------------------------------------------------
@pytest.fixture
def cli(tmp_path):
    cfg = tmp_path / "partnerdesk.toml"
    cfg.write_text('[support]\naddress = "support@openatrium.example"\nstaff = ["young@devseed.example"]\n'
                   '[store]\npath = "data/partnerdesk.json"\n'
                   '[calls]\nrrule = "FREQ=MONTHLY;INTERVAL=3;BYDAY=2TU"\nfirst = 2027-01-12T14:00:00\n')

    def run(*args: str, now: str = "2027-01-21T10:00:00-05:00") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "run.py"), "--config", str(cfg), "--now", now, *args],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)

    run.dir = tmp_path
    return run


def roster(cli) -> dict:
    return {p["id"]: p for p in json.loads(cli("partners", "list", "--json").stdout)}


def test_cli_export_import_round_trip_is_a_no_op(cli):
    (cli.dir / "r.csv").write_text(SHEET)
    assert cli("partners", "import", "r.csv").returncode == 0
    assert cli("partners", "trained", "billing@nuvole.example", "--on", "2027-01-10").returncode == 0
    assert cli("partners", "deactivate", "ndi", "--on", "2027-06-01").returncode == 0
    before = roster(cli)
    r = cli("partners", "export", "out.csv")
    assert r.returncode == 0 and r.stdout == "wrote 3 partners, 3 contacts to out.csv\n"
    for args in (("partners", "import", "out.csv"), ("partners", "import", "--sync", "--yes", "out.csv")):
        r = cli(*args)
        assert r.returncode == 0, r.stderr
        assert "no changes: the roster already says what the sheet says" in r.stdout
        assert roster(cli) == before
    assert cli("partners", "export", "-").stdout == (cli.dir / "out.csv").read_text()


def test_cli_sync_prints_first_and_applies_only_with_yes(cli):
    (cli.dir / "r.csv").write_text(SHEET)
    cli("partners", "import", "r.csv")
    (cli.dir / "less.csv").write_text("\n".join(SHEET.splitlines()[:2]) + "\n")
    r = cli("partners", "import", "--sync", "less.csv")
    assert r.returncode == 0
    assert "- nuvole: contact billing@nuvole.example removed" in r.stdout
    assert "x cookshop: deactivated from 2027-01-21" in r.stdout and "x ndi: deactivated" in r.stdout
    assert "run it again with --yes" in r.stdout
    assert len(roster(cli)["nuvole"]["contacts"]) == 2  # nothing changed yet
    r = cli("partners", "import", "--sync", "--yes", "less.csv")
    assert r.returncode == 0 and "1 contact removed; 2 partners deactivated" in r.stdout
    after = roster(cli)
    assert [c["email"] for c in after["nuvole"]["contacts"]] == ["antonio@nuvole.example"]
    assert after["cookshop"]["active"] is False and after["cookshop"]["contacts"]  # kept, not deleted


def test_cli_sync_refuses_a_sheet_with_rejected_rows(cli):
    (cli.dir / "r.csv").write_text(SHEET)
    cli("partners", "import", "r.csv")
    (cli.dir / "bad.csv").write_text(SHEET + "acme,Acme,gold,,A,a@acme.example,,\n")
    r = cli("partners", "import", "--sync", "--yes", "bad.csv")
    assert r.returncode == 2 and "bad.csv:6: plan 'gold'" in r.stderr and "--sync changed nothing" in r.stderr
    assert r.stdout == ""


def test_cli_duplicate_against_the_store_exits_2_naming_both(cli):
    (cli.dir / "r.csv").write_text(SHEET)
    cli("partners", "import", "r.csv")
    (cli.dir / "dup.csv").write_text(f"{HEADER}\nother,Other,solo,,Mark,MARK@gmail.com,primary,\n")
    r = cli("partners", "import", "dup.csv")
    assert r.returncode == 2
    assert "dup.csv:2: mark@gmail.com is already a contact of partner cookshop in the roster" in r.stderr
    assert "other" not in roster(cli)


def test_cli_remove_contact_keeps_its_threads(cli):
    (cli.dir / "r.csv").write_text(SHEET)
    cli("partners", "import", "r.csv")
    inbox = cli.dir / "data" / "spool" / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "a.eml").write_text("From: Mark <mark@gmail.com>\r\nTo: support@openatrium.example\r\n"
                                 "Subject: help\r\nMessage-ID: <a@gmail.com>\r\n\r\nHi\r\n")
    assert cli("once").returncode == 0
    r = cli("partners", "remove-contact", "Mark@gmail.com")
    assert r.returncode == 0 and "removed from cookshop (0 contacts left)" in r.stdout
    assert roster(cli)["cookshop"]["contacts"] == []
    threads = json.loads(cli("threads", "list", "--json").stdout)
    assert [(t["requester"], t["partner_id"]) for t in threads] == [("mark@gmail.com", "cookshop")]
    r = cli("partners", "remove-contact", "mark@gmail.com")
    assert r.returncode == 2 and "not a contact of any partner" in r.stderr


def test_cli_deactivate_and_reactivate(cli):
    (cli.dir / "r.csv").write_text(SHEET)
    cli("partners", "import", "r.csv")
    r = cli("partners", "deactivate", "cookshop")
    assert r.returncode == 0 and "out of the program from today" in r.stdout
    assert "deactivated from 2027-01-21" in cli("partners", "list").stdout
    plan = cli("mailings", "plan", "--from", "2027-03-01", "--to", "2027-05-31").stdout
    assert "mark@gmail.com" not in plan
    assert cli("partners", "reactivate", "cookshop").returncode == 0
    assert "mark@gmail.com" in cli("mailings", "plan", "--from", "2027-03-01", "--to", "2027-05-31").stdout
    assert cli("partners", "deactivate", "nobody").returncode == 2


def test_cli_lapsed_partner_is_skipped_by_mailings_plan_with_the_reason_and_flagged(cli):
    (cli.dir / "r.csv").write_text(SHEET)
    cli("partners", "import", "r.csv")
    now = "2027-06-01T10:00:00-04:00"  # nuvole renewed until 2027-03-31: lapsed on 2027-05-01
    assert cli("partners", "renew", "cookshop", "--until", "2028-05-01", now=now).returncode == 0
    listing = cli("partners", "list", now=now).stdout
    assert "LAPSED since 2027-05-01" in [line for line in listing.splitlines() if line.startswith("nuvole")][0]
    plan = cli("mailings", "plan", "--from", "2027-06-01", "--to", "2027-07-31", now=now).stdout
    nuvole = [line for line in plan.splitlines() if "antonio@nuvole.example" in line and "call-invite" in line]
    assert nuvole and all("SKIP" in line and "Nuvole Web lapsed on 2027-05-01" in line for line in nuvole)
    assert any("mark@gmail.com" in line and "call-invite" in line and "SKIP" not in line
               for line in plan.splitlines())
    # Support goes on, with a flag for staff.
    inbox = cli.dir / "data" / "spool" / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "a.eml").write_text("From: Antonio <antonio@nuvole.example>\r\nTo: support@openatrium.example\r\n"
                                 "Subject: help\r\nMessage-ID: <a@nuvole.example>\r\n\r\nHi\r\n")
    assert cli("once", now=now).returncode == 0
    outbox = cli.dir / "data" / "spool" / "outbox"
    [note] = [p.read_text() for p in outbox.glob("*notify.eml")]
    assert "Standing: LAPSED since 2027-05-01" in note
    assert len(list(outbox.glob("*-ack.eml"))) == 1  # the partner still gets the acknowledgement
    r = cli("partners", "renew", "nuvole", "--until", "2028-03-31", now=now)
    assert r.returncode == 0
    plan = cli("mailings", "plan", "--from", "2027-06-01", "--to", "2027-07-31", now=now).stdout
    assert any("antonio@nuvole.example" in line and "call-invite" in line and "SKIP" not in line
               for line in plan.splitlines())


def test_a_deactivated_partners_people_write_as_strangers_from_its_day_on():
    from workflows.senders import Roster, classify

    trained = replace(P, contacts=(replace(P.contacts[0], trained_on=date(2026, 6, 1)),),
                      deactivated_on=date(2027, 3, 1))
    before = classify("ann@acme.example", Roster.build([trained], date(2027, 2, 28)), frozenset())
    after = classify("ann@acme.example", Roster.build([trained], date(2027, 3, 1)), frozenset())
    colleague = classify("bob@acme.example", Roster.build([trained], date(2027, 3, 1)), frozenset())
    assert (before.kind, before.seat) == ("partner", True)
    assert (after.kind, after.seat, colleague.kind) == ("unknown", False, "unknown")

"""workflows.roster (CSV -> partners, with rejections by line) and the `partners` CLI verbs."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from workflows.model import Contact, Partner
from workflows.roster import COLUMNS, merge, parse_roster

ROOT = Path(__file__).resolve().parent.parent
HEADER = ",".join(COLUMNS)

GOOD = f"""{HEADER}
nuvole,Nuvole Web,standard,2027-03-31,Antonio De Marco,Antonio@Nuvole.example,primary;technical,2026-06-12
nuvole,Nuvole Web,standard,2027-03-31,Andrea Pescetti,andrea@nuvole.example,technical,2026-10-09
nuvole,Nuvole Web,standard,,Claudia Rossi,billing@nuvole.example,billing,
cookshop,Mark's Site Kitchen,solo,2027-05-01,Mark Cook,mark@gmail.com,primary|billing|Technical,2026-06-12
"""


def csv(*rows: str, header: str = HEADER) -> str:
    return "\n".join((header, *rows)) + "\n"


def row(pid="acme", name="Acme", plan="standard", renews="2027-01-01", cname="Ann", email="ann@acme.example",
        roles="primary", trained="") -> str:
    return ",".join((pid, name, plan, renews, cname, email, roles, trained))


# -- good rows ----------------------------------------------------------------------------------------------------
def test_good_rows_grouped_by_partner():
    r = parse_roster(GOOD)
    assert r.rows == 4 and r.rejected == ()
    by_id = {p.id: p for p in r.partners}
    assert list(by_id) == ["nuvole", "cookshop"]  # sheet order
    nuvole = by_id["nuvole"]
    assert nuvole.name == "Nuvole Web" and nuvole.plan == "standard" and nuvole.yearly_fee == 4000
    assert nuvole.renews_on == date(2027, 3, 31)
    assert [c.email for c in nuvole.contacts] == ["antonio@nuvole.example", "andrea@nuvole.example",
                                                 "billing@nuvole.example"]  # lower-cased
    assert all(c.partner_id == "nuvole" for c in nuvole.contacts)
    antonio = nuvole.contacts[0]
    assert antonio.name == "Antonio De Marco"
    assert antonio.roles == frozenset({"primary", "technical"})
    assert antonio.trained_on == date(2026, 6, 12)
    cook = by_id["cookshop"]
    assert cook.plan == "solo" and cook.yearly_fee == 2000
    assert cook.contacts[0].roles == frozenset({"primary", "billing", "technical"})  # "|" and any case


def test_seat_iff_trained_on():
    contacts = {c.email: c for p in parse_roster(GOOD).partners for c in p.contacts}
    assert contacts["antonio@nuvole.example"].has_seat
    assert contacts["andrea@nuvole.example"].has_seat
    assert not contacts["billing@nuvole.example"].has_seat
    assert contacts["billing@nuvole.example"].trained_on is None


@pytest.mark.parametrize("plan, expected", [("standard", "standard"), ("Standard", "standard"),
                                            ("SOLO", "solo"), (" solo ", "solo")])
def test_plan_is_case_insensitive(plan, expected):
    r = parse_roster(csv(row(plan=plan)))
    assert r.rejected == ()
    assert r.partners[0].plan == expected


def test_whitespace_around_values_and_header_names():
    header = " " + HEADER.replace(",", " , ")
    r = parse_roster(csv(" acme , Acme , solo , , Ann ,  ann@acme.example , primary ; billing , 2026-01-02 ",
                         header=header))
    assert r.rejected == ()
    [p] = r.partners
    assert p.id == "acme" and p.name == "Acme" and p.renews_on is None
    assert p.contacts[0].email == "ann@acme.example"
    assert p.contacts[0].roles == frozenset({"primary", "billing"})


def test_empty_roles_are_allowed():
    r = parse_roster(csv(row(roles="")))
    assert r.rejected == () and r.partners[0].contacts[0].roles == frozenset()


def test_bom_is_ignored():
    r = parse_roster("\ufeff" + GOOD)
    assert r.rejected == () and len(r.partners) == 2
    assert r.partners[0].id == "nuvole"


def test_windows_line_ends_and_quoted_fields():
    text = (HEADER + "\r\n" + 'acme,"Acme, Inc.",standard,,"Cook, Ann",ann@acme.example,primary,\r\n')
    r = parse_roster(text)
    assert r.rejected == ()
    assert r.partners[0].name == "Acme, Inc." and r.partners[0].contacts[0].name == "Cook, Ann"


# -- bad rows -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, reason", [
    (row(email="not-an-address"), "contact_email 'not-an-address' is not an address"),
    (row(email="ann@localhost"), "is not an address"),
    (row(email="ann smith@acme.example"), "is not an address"),
    (row(email="<ann@acme.example>"), "is not an address"),
    (row(email=""), "is not an address"),
    (row(renews="31/03/2027"), "renews_on '31/03/2027' is not a date"),
    (row(trained="2026-13-01"), "trained_on '2026-13-01' is not a date"),
    (row(trained="yes"), "trained_on 'yes' is not a date"),
    (row(roles="primary;owner"), "roles owner unknown"),
    (row(plan="gold"), "plan 'gold' must be one of standard, solo"),
    (row(plan=""), "plan '' must be one of"),
    (row(pid=""), "partner_id '' must be"),
    (row(pid="acme inc"), "partner_id 'acme inc' must be"),
    (row(name=""), "partner_name is empty"),
])
def test_bad_row_rejected_with_line_and_reason(bad, reason):
    r = parse_roster(csv(row(pid="good", email="g@good.example"), bad, row(pid="after", email="z@after.example")))
    assert r.rows == 3
    assert [(x.line, reason in x.reason) for x in r.rejected] == [(3, True)], r.rejected
    assert [p.id for p in r.partners] == ["good", "after"]  # one bad row does not stop the rest


def test_duplicate_contact_rejected():
    r = parse_roster(csv(row(email="ann@acme.example"), row(cname="Ann again", email="ANN@acme.example")))
    assert [(x.line, x.reason) for x in r.rejected] == [(3, "ann@acme.example is listed twice for partner acme (line 2)")]
    assert len(r.partners[0].contacts) == 1 and r.partners[0].contacts[0].name == "Ann"


@pytest.mark.parametrize("second", [row(plan="solo", email="bob@acme.example"),
                                    row(renews="2028-01-01", email="bob@acme.example")])
def test_conflicting_plan_or_renewal_rows_rejected(second):
    r = parse_roster(csv(row(), second))
    assert len(r.rejected) == 1
    assert r.rejected[0].line == 3 and "one partner, one plan" in r.rejected[0].reason
    assert r.partners[0].plan == "standard" and r.partners[0].renews_on == date(2027, 1, 1)
    assert [c.email for c in r.partners[0].contacts] == ["ann@acme.example"]


def test_renewal_given_on_a_later_row_only():
    r = parse_roster(csv(row(renews=""), row(renews="2027-06-30", email="bob@acme.example")))
    assert r.rejected == ()
    assert r.partners[0].renews_on == date(2027, 6, 30)


def test_line_numbers_count_blank_lines():
    text = HEADER + "\n" + row() + "\n\n\n" + row(plan="gold", email="x@acme.example") + "\n"
    r = parse_roster(text)
    assert [x.line for x in r.rejected] == [5]


@pytest.mark.parametrize("header, missing", [
    ("partner_id,partner_name,plan,renews_on,contact_name,contact_email,roles", "trained_on"),
    ("id,name,plan,renews_on,contact_name,email,roles,trained_on", "partner_id, partner_name, contact_email"),
    ("", "partner_id"),
])
def test_missing_header_columns(header, missing):
    r = parse_roster(csv(row(), header=header) if header else "")
    assert r.partners == () and r.rows == 0
    [rej] = r.rejected
    assert rej.line == 1
    assert f"header lacks column(s) {missing}" in rej.reason
    assert HEADER in rej.reason  # says what is expected


# -- merge --------------------------------------------------------------------------------------------------------
def contact(email, name="X", trained=None, roles=()):
    return Contact(partner_id="acme", name=name, email=email, roles=frozenset(roles), trained_on=trained)


def partner(*contacts, plan="standard", active=True):
    return Partner(id="acme", name="Acme", plan=plan, renews_on=None, contacts=contacts, active=active)


def test_merge_without_existing_is_the_sheet():
    incoming = partner(contact("a@acme.example"))
    assert merge(None, incoming) is incoming


def test_merge_keeps_an_earlier_training_date():
    existing = partner(contact("a@acme.example", trained=date(2026, 6, 12)))
    incoming = partner(contact("a@acme.example", name="Ann New", roles=("billing",)))
    merged = merge(existing, incoming)
    [c] = merged.contacts
    assert c.trained_on == date(2026, 6, 12) and c.has_seat
    assert c.name == "Ann New" and c.roles == frozenset({"billing"})  # the sheet wins for the rest


def test_merge_takes_a_newer_training_date_from_the_sheet():
    existing = partner(contact("a@acme.example", trained=date(2025, 1, 1)))
    merged = merge(existing, partner(contact("a@acme.example", trained=date(2026, 6, 12))))
    assert merged.contacts[0].trained_on == date(2026, 6, 12)


def test_merge_keeps_contacts_not_in_the_sheet_and_takes_partner_fields_from_it():
    existing = partner(contact("old@acme.example", trained=date(2025, 1, 1)), contact("a@acme.example"), plan="solo",
                       active=False)
    merged = merge(existing, partner(contact("a@acme.example"), contact("new@acme.example")))
    assert [c.email for c in merged.contacts] == ["old@acme.example", "a@acme.example", "new@acme.example"]
    assert merged.contacts[0].has_seat
    assert merged.plan == "standard"
    assert merged.active  # re-importing a partner makes it active


# -- the CLI ------------------------------------------------------------------------------------------------------
@pytest.fixture
def cli(tmp_path):
    cfg = tmp_path / "partnerdesk.toml"
    cfg.write_text('[support]\naddress = "support@openatrium.example"\n\n[store]\npath = "data/partnerdesk.json"\n')

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "run.py", "--config", str(cfg), *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    run.store = tmp_path / "data" / "partnerdesk.json"
    return run


def test_cli_import_prints_counts_and_rejections(cli, tmp_path):
    sheet = tmp_path / "roster.csv"
    sheet.write_text("\ufeff" + GOOD + row(plan="gold") + "\n" + row(email="nope") + "\n", encoding="utf-8")
    r = cli("partners", "import", str(sheet))
    assert r.returncode == 2, r.stderr  # rows were rejected: the exit code says so
    lines = r.stdout.splitlines()
    assert lines[0] == "imported 2 partners, 4 contacts from 6 rows; rejected 2"
    assert lines[-1] == "welcome mail for nuvole, cookshop goes out at the next cycle"
    errors = r.stderr.splitlines()
    assert errors[0] == f"{sheet}:6: plan 'gold' must be one of standard, solo"
    assert errors[1] == f"{sheet}:7: contact_email 'nope' is not an address"
    assert errors[2].startswith("error: 2 of 6 rows rejected")
    assert len(errors) == 3
    assert len(json.loads(cli("partners", "list", "--json").stdout)) == 2  # the good rows are in
    assert cli.store.exists()


def test_cli_list_json_shows_plan_and_fee(cli, tmp_path):
    sheet = tmp_path / "roster.csv"
    sheet.write_text(GOOD)
    assert cli("partners", "import", str(sheet)).returncode == 0
    r = cli("partners", "list", "--json")
    assert r.returncode == 0, r.stderr
    data = {p["id"]: p for p in json.loads(r.stdout)}
    assert data["nuvole"]["plan"] == "standard" and data["nuvole"]["yearly_fee"] == 4000
    assert data["cookshop"]["plan"] == "solo" and data["cookshop"]["yearly_fee"] == 2000
    seats = {c["email"]: c["seat"] for c in data["nuvole"]["contacts"]}
    assert seats == {"antonio@nuvole.example": True, "andrea@nuvole.example": True, "billing@nuvole.example": False}


def test_cli_reimport_keeps_training_and_contacts(cli, tmp_path):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text(GOOD)
    second.write_text(csv(row(pid="nuvole", name="Nuvole Web", renews="2027-03-31",
                              cname="Antonio", email="antonio@nuvole.example", trained="")))
    assert cli("partners", "import", str(first)).returncode == 0
    r = cli("partners", "import", str(second))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("imported 1 partner, 1 contact from 1 row; rejected 0\n"
                               "  ~ nuvole: contact antonio@nuvole.example: name Antonio De Marco -> Antonio, "
                               "roles primary;technical -> primary\n")
    data = {p["id"]: p for p in json.loads(cli("partners", "list", "--json").stdout)}
    contacts = {c["email"]: c for c in data["nuvole"]["contacts"]}
    assert len(contacts) == 3
    assert contacts["antonio@nuvole.example"]["trained_on"] == "2026-06-12"
    assert contacts["antonio@nuvole.example"]["name"] == "Antonio"


def test_cli_a_wrong_header_exits_2(cli, tmp_path):
    sheet = tmp_path / "bad.csv"
    sheet.write_text("id,name\n1,2\n")
    r = cli("partners", "import", str(sheet))
    assert r.returncode == 2
    assert r.stderr.startswith(f"{sheet}:1: header lacks column(s)") and r.stdout == ""
    assert not cli.store.exists()


def test_cli_missing_or_non_utf8_file(cli, tmp_path):
    r = cli("partners", "import", str(tmp_path / "nope.csv"))
    assert r.returncode == 2 and "cannot read" in r.stderr and "Traceback" not in r.stderr
    latin = tmp_path / "latin.csv"
    latin.write_bytes(csv(row(cname="Jürgen")).encode("latin-1"))
    r = cli("partners", "import", str(latin))
    assert r.returncode == 2 and "not UTF-8" in r.stderr and "Traceback" not in r.stderr


def test_one_address_cannot_belong_to_two_partners():
    from workflows.roster import parse_roster as _parse

    text = ("partner_id,partner_name,plan,renews_on,contact_name,contact_email,roles,trained_on\n"
            "a,A,standard,2027-01-01,X,x@shared.example,primary,\n"
            "b,B,standard,2027-01-01,X,x@shared.example,primary,\n")
    result = _parse(text)
    assert [p.id for p in result.partners] == ["a"]
    assert result.rejected[0].line == 3 and "already a contact of partner a" in result.rejected[0].reason


def test_reimport_never_moves_a_recorded_renewal_back():
    from datetime import date as _date

    from workflows.model import Partner as _Partner
    from workflows.roster import merge as _merge

    paid = _Partner(id="a", name="A", plan="standard", renews_on=_date(2028, 3, 31))
    sheet = _Partner(id="a", name="A", plan="standard", renews_on=_date(2027, 3, 31))
    assert _merge(paid, sheet).renews_on == _date(2028, 3, 31)
    later = _Partner(id="a", name="A", plan="standard", renews_on=_date(2029, 3, 31))
    assert _merge(paid, later).renews_on == _date(2029, 3, 31)  # a newer sheet still wins

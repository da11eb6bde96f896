"""The status report: its figures (pure), and the page in a real headless Chromium, numbers against the store.

The integration part plays five weeks of the program through run.py in spool mode (tests/report_scenario.py),
writes the report with `report --out`, and opens it in Debian's Chromium: it loads with no error and no
request beyond the file, its key numbers (``data-figure``) equal what the store holds, the overdue thread
comes first and is marked, partner text stays text, it prints; screenshots at desktop and phone width.
"""

from __future__ import annotations

import csv
import io
import shutil
from dataclasses import replace
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from chromium import Chromium, needs_chromium
from workflows.calendar import BusinessCalendar
from workflows.lifecycle import State
from workflows.model import Partner, Thread, ThreadEvent
from workflows.outbox import OutboxEntry, Status
from workflows.report import figures, lapsed, mailing_rows

CAL = BusinessCalendar()
UTC = timezone.utc


def et(s: str) -> datetime:
    return datetime.fromisoformat(s + "-05:00")


def thread(n: int, at: str, *, answered: str | None = None, seat: bool = True, state: State = State.NEW,
           partner: str = "acme") -> Thread:
    asked = et(at)
    t = Thread(id=f"OA-{n}", number=n, partner_id=partner, requester="ann@acme.example", sender_kind="partner",
               seat=seat, subject=f"s{n}", state=state, created_at=asked,
               events=(ThreadEvent(at=asked, kind="request"),))
    if seat and state in (State.NEW, State.WAITING_ON_STAFF):
        t = replace(t, clock_started_at=CAL.clock_start(asked), due_at=CAL.due_at(asked))
    if answered:
        t = replace(t, state=State.WAITING_ON_PARTNER, due_at=None, clock_started_at=None,
                    first_response_at=et(answered))
    return t


def test_first_response_figures_on_business_time():
    now = et("2026-12-10T12:00:00")
    threads = [
        thread(1, "2026-11-27T16:00:00", answered="2026-11-30T15:00:00"),  # Fri 4 PM -> Mon 3 PM: 7h, within
        thread(2, "2026-11-30T10:00:00", answered="2026-12-01T11:00:00"),  # 9h: an hour late
        thread(3, "2026-12-09T10:00:00"),  # unanswered, due Dec 10 10:00: missed by now
        thread(4, "2026-12-10T10:00:00"),  # unanswered, not due yet: pending
        thread(5, "2026-12-01T10:00:00", seat=False),  # no promise: not counted
        thread(6, "2026-12-02T10:00:00", state=State.CLOSED),  # closed without an answer: not counted
    ]
    r = figures(threads=threads, partners=[], ledger=[], entries=[], delivery={}, now=now, cal=CAL)
    assert (r.overall.within, r.overall.missed, r.overall.pending, r.overall.answered) == (1, 2, 1, 2)
    assert r.overall.share_text == "33 %" and r.overall.median_text == "8h"
    assert [(m.label, m.within, m.missed, m.pending) for m in r.by_month] == [("2026-11", 1, 1, 0),
                                                                             ("2026-12", 0, 1, 1)]
    # Open threads: the overdue one first and marked, then by due time; those without a running clock
    # (waiting on the partner, no promise) after them.
    assert [(t.id, t.overdue) for t in r.open_threads] == [("OA-3", True), ("OA-4", False), ("OA-1", False),
                                                           ("OA-2", False), ("OA-5", False)]


def test_lapsed_is_a_passed_renewal_date_without_payment():
    p = Partner(id="x", name="X", plan="standard", renews_on=date(2026, 11, 30))
    assert lapsed(p, date(2026, 12, 1)) and not lapsed(p, date(2026, 11, 30))
    assert not lapsed(replace(p, renews_on=date(2027, 11, 30)), date(2026, 12, 1))  # a payment moved it
    assert not lapsed(replace(p, active=False), date(2026, 12, 1))
    # The roster's rule: the grace period ([renewals] grace_days) first, and only while in the program.
    assert not lapsed(p, date(2026, 12, 30), 30) and lapsed(p, date(2026, 12, 31), 30)
    assert not lapsed(replace(p, deactivated_on=date(2026, 12, 15)), date(2026, 12, 31), 30)
    r = figures(threads=[], partners=[p, replace(p, id="y", deactivated_on=date(2027, 1, 1))], ledger=[], entries=[],
                delivery={}, now=et("2026-12-31T10:00:00"), cal=CAL, grace_days=30)
    assert (r.roster["partners"], r.roster["lapsed"]) == (2, 2)  # y leaves later: still in the program today
    r = figures(threads=[], partners=[p, replace(p, id="y", deactivated_on=date(2026, 12, 31))], ledger=[],
                entries=[], delivery={}, now=et("2026-12-31T10:00:00"), cal=CAL, grace_days=31)
    assert (r.roster["partners"], r.roster["lapsed"]) == (1, 0)
    r = figures(threads=[], partners=[p], ledger=[], entries=[], delivery={}, now=et("2026-12-01T10:00:00"), cal=CAL,
                is_lapsed=lambda partner, today: False)  # the rule is one function, swappable
    assert r.roster["lapsed"] == 0


def test_mailings_sent_skipped_and_bounced_join_the_ledger_and_the_outbox():
    def entry(key: str, status: Status) -> OutboxEntry:
        return OutboxEntry(key=key, kind="call-invite", message_id=f"<{key}>", mail_from="", rcpt_to=("a@x",), raw="",
                           created_at=datetime(2026, 12, 1, tzinfo=UTC), status=status)

    ledger = [{"mailing": "call-invite", "status": "queued", "outbox_key": "mailing:a"},
              {"mailing": "call-invite", "status": "queued", "outbox_key": "mailing:b"},
              {"mailing": "call-invite", "status": "queued", "outbox_key": "mailing:c"},
              {"mailing": "renewal", "status": "skipped", "outbox_key": None}]
    rows = mailing_rows(ledger, [entry("mailing:a", Status.SENT), entry("mailing:b", Status.SENT),
                                 entry("mailing:c", Status.FAILED)], frozenset({"<mailing:b>"}))
    assert [(m.mailing, m.sent, m.failed, m.skipped, m.bounced) for m in rows] == [
        ("call-invite", 2, 1, 0, 2), ("renewal", 0, 0, 1, 0)]


GRACE_DAYS = 30  # [renewals] grace_days: the scenario keeps the default


# -- the page, in Chromium ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def program(tmp_path_factory):
    import report_scenario

    folder = tmp_path_factory.mktemp("report")
    config = report_scenario.build(folder)
    yield folder, config
    shutil.rmtree(folder, ignore_errors=True)


def expected_from_store(folder: Path, now: datetime) -> dict[str, str]:
    """The key numbers counted straight from the store file, without the report's code."""
    from store.tinystore import Store

    store = Store(str(folder / "data" / "pd.json"), readonly=True)
    try:
        threads = store.threads()
        today = now.astimezone(CAL.tz()).date()
        partners = [p for p in store.partners() if p.active and (p.deactivated_on is None or today < p.deactivated_on)]
        entries = {e.key: e for e in store.outbox()}
        queued = [r for r in store.ledger_all() if r["status"] == "queued"]
        bounced_ids = {m for r in store.automatic_mail() if r.kind == "bounce" and r.failures for m in r.about}
        return {
            "open": str(sum(t.state != State.CLOSED for t in threads)),
            "overdue": str(sum(t.state in (State.NEW, State.WAITING_ON_STAFF) and t.due_at is not None
                               and t.due_at <= now for t in threads)),
            "escalations": str(sum(e.kind == "stage" for t in threads for e in t.events)),
            "mailings-sent": str(sum(entries[r["outbox_key"]].status == Status.SENT for r in queued)),
            "mailings-skipped": str(sum(r["status"] == "skipped" for r in store.ledger_all())),
            "mailings-bounced": str(sum(entries[r["outbox_key"]].message_id in bounced_ids
                                        or entries[r["outbox_key"]].status == Status.FAILED for r in queued)),
            "roster-partners": str(len(partners)),
            "roster-contacts": str(sum(len(p.contacts) for p in partners)),
            "roster-seats": str(sum(c.trained_on is not None for p in partners for c in p.contacts)),
            "roster-lapsed": str(sum(p.renews_on is not None and (today - p.renews_on).days > GRACE_DAYS
                                     for p in partners)),
            "roster-bouncing": str(sum(d.bouncing for d in store.delivery_states().values())),
        }
    finally:
        store.close()


def figures_in(page) -> dict[str, str]:
    return page.evaluate("Object.fromEntries([...document.querySelectorAll('[data-figure]')]"
                         ".map(e => [e.dataset.figure, e.textContent.trim()]))")


@pytest.mark.integration
@needs_chromium
def test_the_report_in_chromium_shows_the_store_s_numbers(program, tmp_path):
    import report_scenario

    folder, config = program
    out = tmp_path / "site"
    assert "wrote" in report_scenario.run(config, report_scenario.REPORT_AT, "report", "--out", str(out))
    page_file = out / "index.html"
    html = page_file.read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html.replace(
        "https://openatrium.example/renew", "")
    now = datetime.fromisoformat(report_scenario.REPORT_AT)
    want = expected_from_store(folder, now)
    with Chromium() as browser:
        page = browser.page(width=1280, height=900)
        page.open(page_file.as_uri())
        assert page.errors == []
        assert page.requests == [page_file.as_uri()]  # nothing else: no CDN, no font, no image
        got = figures_in(page)
        for key, value in want.items():
            assert got[key] == value, f"{key}: page {got[key]!r}, store {value!r}"
        # The scenario's own facts: two first replies answered (one in time), one request still unanswered
        # and overdue with its ladder fired, a lapsed partner with a bouncing contact.
        assert (got["open"], got["overdue"], got["first-response-share"]) == ("2", "1", "33 %")
        assert want["escalations"] == "2" and want["mailings-bounced"] == "1" and want["roster-lapsed"] == "1"
        rows = page.evaluate("[...document.querySelectorAll('#open tbody tr')].map(r => [r.dataset.thread, "
                             "r.className, r.cells[1].textContent.trim()])")
        assert rows[0][0] == "OA-4" and rows[0][1] == "overdue" and rows[0][2].startswith("OVERDUE")
        assert [r[0] for r in rows] == ["OA-4", "OA-3"]
        assert page.evaluate("document.querySelector('[data-partner=oldco] b').textContent") == "Old & Co <Web>"
        assert page.evaluate("document.querySelector('[data-partner=oldco]').textContent").count("LAPSED") == 1
        months = page.evaluate("[...document.querySelectorAll('[data-table=by-month] tbody tr')]"
                               ".map(r => [...r.cells].map(c => c.textContent.trim()))")
        assert months == [["2026-12", "2", "1", "1", "0", "50 %", "11h"], ["2027-01", "1", "0", "1", "0", "0 %", "-"]]
        assert page.evaluate("document.querySelectorAll('svg').length") >= 4  # the charts are there
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280
        shot = page.screenshot(tmp_path / "report-desktop.png")
        assert shot.stat().st_size > 20_000
        page.resize(390, 800, mobile=True)
        page.open(page_file.as_uri())
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # wide tables scroll inside
        page.screenshot(tmp_path / "report-phone.png")
        page.emulate(media="print")
        assert page.evaluate("getComputedStyle(document.querySelector('header')).backgroundColor") == \
            "rgb(255, 255, 255)"  # printable: no dark band of ink
        pdf = page.pdf(tmp_path / "report.pdf")
        assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 10_000
    keep = Path(__file__).resolve().parent.parent / "partnerdesk-test-screenshots"
    if keep.is_dir():  # for a person to look at: mkdir partnerdesk-test-screenshots before the run
        for name in ("report-desktop.png", "report-phone.png", "report.pdf"):
            shutil.copyfile(tmp_path / name, keep / name)


@pytest.mark.integration
def test_each_cycle_refreshes_the_report_when_report_dir_is_set(program):
    folder, _ = program
    page = folder / "site" / "index.html"  # [report] dir = "site", relative to the config file
    assert page.exists() and not list(page.parent.glob(".report-*"))  # written whole, no temp file left
    assert 'data-figure="generated">Thursday, January 7, 2027, 9:30 AM ET<' in page.read_text()  # the last once


@pytest.mark.integration
def test_threads_list_filters_and_csv(program):
    import report_scenario

    _, config = program
    at = report_scenario.REPORT_AT

    def ids(*args: str) -> list[str]:
        out = report_scenario.run(config, at, "threads", "list", *args)
        return [line.split()[0] for line in out.splitlines()[1:]]

    assert ids("--overdue") == ["OA-4"]
    assert ids("--state", "closed") == ["OA-1", "OA-2"]
    assert ids("--partner", "cookshop") == ["OA-2"]
    assert ids("--partner", "nuvole", "--state", "new") == ["OA-3", "OA-4"]
    rows = list(csv.DictReader(io.StringIO(report_scenario.run(config, at, "threads", "list", "--csv"))))
    assert [r["id"] for r in rows] == ["OA-1", "OA-2", "OA-3", "OA-4"]
    oa4 = rows[3]
    assert oa4["overdue"] == "yes" and oa4["due_at"].startswith("2027-01-06T") and oa4["ladder"] == "second-level"
    assert rows[1]["subject"] == "Spaces <b>missing</b> after upgrade" and rows[1]["first_response_at"]
    over = list(csv.DictReader(io.StringIO(report_scenario.run(config, at, "threads", "list", "--overdue", "--csv"))))
    assert [r["id"] for r in over] == ["OA-4"]
    import subprocess
    import sys
    bad = subprocess.run([sys.executable, str(report_scenario.ROOT / "run.py"), "--config", str(config),
                          "threads", "list", "--partner", "nosuch"], capture_output=True, text=True)
    assert bad.returncode == 2 and "no partner nosuch" in bad.stderr

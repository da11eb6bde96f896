"""The automatic-mail corpus (tests/data/automatic/, written by tests/automatic_corpus/generate.py),
parsed by mailbox.parse and judged by workflows.automatic: every sample classified right, bounces
with their failed addresses, and a figure over the whole corpus."""

from __future__ import annotations

import email
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from flufl.bounce import all_failures

from mailbox.parse import parse
from tests.automatic_corpus.generate import OUT, render
from workflows.automatic import classify
from workflows.autoreply import automatic_reason
from workflows.delivery import failed_recipients

EXPECTED = json.loads((OUT / "expected.json").read_text())
SAMPLES = EXPECTED["samples"]
ROSTER = set(EXPECTED["roster"])
NOW = datetime(2026, 11, 30, 15, 30, tzinfo=timezone.utc)


def _mail(name: str):
    return parse((OUT / name).read_bytes(), received_at=NOW)


def test_the_checked_in_corpus_is_what_the_generator_writes():
    files = render()
    on_disk = {p.name for p in OUT.iterdir() if p.suffix in (".eml", ".json")}
    assert on_disk == set(files), "run: python3 -m tests.automatic_corpus.generate"
    changed = [name for name, data in files.items() if (OUT / name).read_bytes() != data]
    assert not changed, f"stale corpus files {changed}: run python3 -m tests.automatic_corpus.generate"


def test_the_corpus_covers_what_the_issue_names():
    systems = " ".join(s["system"] for s in SAMPLES.values()).lower()
    for name in ("postfix", "exim", "sendmail", "qmail", "exchange", "microsoft 365", "gmail", "yahoo",
                 "amazon ses", "virus", "arf", "mdn", "calendar", "sieve", "lotus", "zimbra"):
        assert name in systems, name
    kinds = {s["kind"] for s in SAMPLES.values()}
    assert kinds == {"bounce", "feedback", "read-receipt", "calendar-reply", "auto-reply", "bulk", "none"}
    assert sum(1 for s in SAMPLES.values() if s["kind"] == "none") >= 10  # the false-positive guard
    languages = ("Automatische Antwort", "Réponse automatique", "Respuesta automática", "Risposta automatica",
                 "Resposta automática", "Automatisch antwoord", "Automatic reply")
    subjects = " ".join(_mail(n).subject for n in SAMPLES)
    assert all(word in subjects for word in languages)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_is_classified_right(name):
    want = SAMPLES[name]
    verdict = classify(_mail(name), person_known=want["person_known"])
    assert verdict.kind == want["kind"], verdict.reason
    assert verdict.reason
    assert {f.address: f.permanent for f in verdict.failures} == want["failed"], verdict.reason
    assert set(want["about"]) <= set(verdict.about_ids)
    if "gave_up" in want:
        assert all(f.gave_up == want["gave_up"] for f in verdict.failures), verdict.failures


@pytest.mark.parametrize("name", sorted(n for n, s in SAMPLES.items() if s["kind"] == "none"))
def test_human_mail_stays_work_whoever_sent_it(name):
    # The guard holds for a stranger too: nothing a person wrote becomes automatic by its words alone.
    mail = _mail(name)
    assert not classify(mail, person_known=True).automatic
    assert not classify(mail, person_known=False).automatic


@pytest.mark.parametrize("name", sorted(SAMPLES))
@pytest.mark.parametrize("known", [False, True])
def test_everything_we_never_answer_today_is_automatic_or_unanswerable(name, known):
    # The intake can switch from workflows.autoreply to workflows.automatic without answering anything
    # it does not answer today.
    mail = _mail(name)
    if automatic_reason(mail, person_known=known):
        verdict = classify(mail, person_known=known)
        assert verdict.automatic or verdict.no_auto_answer, name


@pytest.mark.parametrize("name", sorted(n for n, s in SAMPLES.items() if s["kind"] == "bounce" and s["failed"]
                                        and _mail(n).report and _mail(n).report.format == "dsn"))
def test_standard_reports_agree_with_flufl_bounce(name):
    # Our reading of RFC 3464 fields adds status and diagnostic; the addresses are the library's.
    temporary, permanent = all_failures(email.message_from_bytes((OUT / name).read_bytes()))
    found = {a.decode().lower() for a in temporary | permanent}
    assert found == {f.address for f in _mail(name).report.failed}


def test_permanent_bounces_to_roster_addresses_name_the_right_contact():
    """The issue's bar: at least 95 % of permanent bounces of mail to roster addresses mark the right
    contact. From the report alone, and with what our outbox knows about the mail reported on."""
    permanent = {n: s for n, s in SAMPLES.items()
                 if s["kind"] == "bounce" and set(s["sent_to"]) & ROSTER
                 and (any(s["failed"].values()) or not s["failed"])
                 and "virus" not in s["system"] and "success" not in n}
    assert len(permanent) >= 20
    from_report = with_outbox = 0
    for name, want in permanent.items():
        verdict = classify(_mail(name), person_known=False)
        expected = {a for a, p in want["failed"].items() if p} or set(want["sent_to"][:1])
        if {f.address for f in verdict.failures if f.permanent} == expected:
            from_report += 1
        found = failed_recipients(verdict, sent_to=tuple(want["sent_to"]))
        if {f.address for f in found if f.permanent} == expected & ROSTER:
            with_outbox += 1
    share_report, share_outbox = from_report / len(permanent), with_outbox / len(permanent)
    print(f"\npermanent bounces to roster addresses: {len(permanent)}; right contact from the report alone "
          f"{from_report} ({share_report:.0%}), with the outbox's recipients {with_outbox} ({share_outbox:.0%})")
    assert share_report >= 0.9
    assert share_outbox >= 0.95


def test_corpus_files_are_small_and_ours():
    for path in Path(OUT).glob("*.eml"):
        data = path.read_bytes()
        assert len(data) < 20_000
        assert b"openatrium.example" in data  # every sample is about our own (made-up) mail setup

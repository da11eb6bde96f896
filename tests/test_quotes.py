"""Relayed answers lose the quoted history and its attribution line, in every client style and language.

The corpus (tests/data/replies/, made by its make_corpus.py from tests/reply_styles.py) is staff replies to
a notification partnerdesk wrote: Gmail, Apple Mail, Outlook (web and desktop), Thunderbird and Android, in
English, German, French, Spanish, Italian, Portuguese, Dutch, Russian, Japanese and Chinese, plus a
language no pattern knows (Turkish), in plain text and as HTML only. Each must come down to the answer alone,
by its plain part, by its HTML part alone, and through the real program to the partner.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mailbox.parse import html_to_text, parse, strip_quoted
from mailbox.quotes import html_cut, strip_text

import reply_styles

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "replies"
EXPECTED: dict[str, str] = json.loads((CORPUS / "expected.json").read_text())
NOW = __import__("datetime").datetime(2026, 12, 1, 16, tzinfo=__import__("datetime").timezone.utc)
# Words of the quoted notification and of every client's attribution: none may reach the partner.
HISTORY = ("New request in OA-", "Reply to this mail to answer", "Reply due", "Features revert fails", "----- message",
           "support@openatrium.example", "Open Atrium Support", "wrote", "schrieb", "écrit", "escribió", "scritto",
           "escreveu", "schreef", "geschreven", "написал", "пишет", "のメール", "写道", "yazdı", "Original message",
           "From:", "Von:", "De", "Da:", "Van:", "От:", "差出人", "发件人", "Sent from my")


def _parts(raw: bytes) -> tuple[str | None, str | None]:
    m = email.message_from_bytes(raw, policy=email.policy.default)
    plain, markup = m.get_body(("plain",)), m.get_body(("html",))
    return (plain.get_content() if plain else None), (markup.get_content() if markup else None)


def assert_clean(answer: str, got: str, where: str) -> None:
    assert got.strip() == answer.strip(), f"{where}:\n{got}"
    for word in HISTORY:
        assert word not in got.replace(answer, ""), f"{where}: {word!r} left in\n{got}"


def test_the_corpus_covers_every_language_and_client():
    assert len(EXPECTED) == len(reply_styles.cases()) >= 40
    langs = {name.rsplit("-", 1)[1].removesuffix(".eml") for name in EXPECTED}
    assert {"en", "de", "fr", "es", "it", "pt", "nl", "ru", "ja", "zh"} <= langs
    assert {"gmail-ru.eml", "apple-ru.eml", "android-ru.eml", "outlook-ru.eml", "thunderbird-ru.eml"} <= set(EXPECTED)
    assert 'пользователь "Open Atrium Support"' in _parts((CORPUS / "android-ru.eml").read_bytes())[0]


def test_the_committed_corpus_is_what_the_styles_make():
    sys.path.insert(0, str(CORPUS))
    try:
        import make_corpus
    finally:
        sys.path.remove(str(CORPUS))
    made = make_corpus.corpus()
    assert sorted(made) == sorted(p.name for p in CORPUS.iterdir() if p.suffix in (".eml", ".json"))
    def meaning(data: bytes) -> object:  # MIME boundaries are random; the rest must match
        if not data.startswith(b"From:"):
            return data
        m = email.message_from_bytes(data, policy=email.policy.default)
        return [(k, str(v)) for k, v in m.items() if k != "Content-Type"] + [_parts(data)]

    for name, data in made.items():
        assert meaning((CORPUS / name).read_bytes()) == meaning(data), \
            f"{name} is stale: run python3 tests/data/replies/make_corpus.py"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_parsed_reply_is_the_answer_alone(name):
    raw = (CORPUS / name).read_bytes()
    m = parse(raw, received_at=NOW)
    assert_clean(EXPECTED[name], m.reply_text, name)
    assert "Reply to this mail" in m.text or "Reply to this mail" in html_to_text(m.text)  # the full text is kept


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if "html-only" not in n))
def test_the_plain_part_alone_is_cut_by_the_language_patterns(name):
    plain, _ = _parts((CORPUS / name).read_bytes())
    assert plain is not None
    assert_clean(EXPECTED[name], strip_text(plain), name)


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if _parts((CORPUS / n).read_bytes())[1]))
def test_the_html_part_alone_is_cut_at_its_quote_marker(name):
    _, markup = _parts((CORPUS / name).read_bytes())
    before, marker = html_cut(markup)
    assert marker, f"{name}: no quote marker found"
    got = strip_quoted(html_to_text(markup), markup, text_from_html=True)
    assert_clean(EXPECTED[name], got, name)


def test_an_html_marker_finds_the_quote_in_the_plain_part_when_no_pattern_knows_the_language():
    # Swedish Gmail: the attribution "tis 1 dec. 2026 kl. 10:00 skrev …:" is not among our languages.
    note = (CORPUS / "notification.eml").read_bytes()
    attr = "tis 1 dec. 2026 kl. 10:00 skrev Open Atrium Support <support@openatrium.example>:"
    plain, markup = reply_styles.gmail("en", "Reply to this mail to answer the partner", "s", "Hej! Klart.",
                                       attribution=attr)
    plain = plain.replace("> ", "")  # and a client that does not even mark the quote with ">"
    assert strip_text(plain) != "Hej! Klart."  # the patterns alone would leave it in
    assert strip_quoted(plain, markup) == "Hej! Klart."
    assert note


def test_what_is_not_a_quote_stays():
    text = ("Try this:\n\n  drush fra -y\n  drush cc all\n\nFrom: the log you sent, line 3 is the culprit.\n"
            "A call any time this week works.\n\nYoung")
    assert strip_text(text) == text  # a "From:" in prose is no Outlook block; the indentation stays
    inline = "> is it safe to revert?\nYes, on a staging copy first.\n\nYoung"
    assert strip_text(inline) == inline  # an inline quote the staff member answered below stays
    assert strip_text("Thanks, done.\n-- \nYoung Hahn\nOpen Atrium") == "Thanks, done."
    assert strip_text("> only quoted\n> text\n") == "> only quoted\n> text"


@pytest.mark.integration
def test_the_partner_never_receives_the_quoted_history(tmp_path):
    """The real program in spool mode: a request, our notification, and a staff reply to that notification in
    every style and language; each relay to the partner holds the answer and nothing of the history."""
    (tmp_path / "roster.csv").write_text(
        "partner_id,partner_name,plan,renews_on,contact_name,contact_email,roles,trained_on\n"
        "nuvole,Nuvole Web,standard,2027-03-31,Antonio De Marco,antonio@nuvole.example,primary,2026-06-12\n")
    (tmp_path / "pd.toml").write_text('[support]\naddress = "support@openatrium.example"\n'
                                      'staff = ["young@openatrium.example"]\n[store]\npath = "data/pd.json"\n'
                                      '[mailings]\nenabled = []\n')

    def run(*args: str) -> str:
        out = subprocess.run([sys.executable, str(ROOT / "run.py"), "--config", str(tmp_path / "pd.toml"),
                              "--now", "2026-12-01T10:00:00-05:00", *args], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout

    run("partners", "import", str(tmp_path / "roster.csv"))
    inbox = tmp_path / "data" / "spool" / "inbox"
    inbox.mkdir(parents=True)
    outbox = tmp_path / "data" / "spool" / "outbox"
    (inbox / "000-request.eml").write_bytes(
        b"From: Antonio De Marco <antonio@nuvole.example>\r\nTo: support@openatrium.example\r\n"
        b"Subject: Features revert fails\r\nMessage-ID: <req-1@nuvole.example>\r\n"
        b"Date: Tue, 01 Dec 2026 09:30:00 -0500\r\n\r\nFeatures revert fails on the dashboard.\r\n")
    run("once")
    note = next(p for p in outbox.glob("*.eml") if "notify" in p.name).read_bytes()
    seen = set(outbox.glob("*.eml"))
    cases = reply_styles.cases()
    for i, (style, lang) in enumerate(cases):
        (inbox / f"{i + 1:03d}-{style}-{lang}.eml").write_bytes(
            reply_styles.reply(style, lang, note, message_id=f"<answer-{i}@openatrium.example>"))
    summary = run("once")
    assert f"relayed {len(cases)}" in summary, summary
    relays = [p for p in set(outbox.glob("*.eml")) - seen if "relay" in p.name]
    assert len(relays) == len(cases)
    got: dict[str, int] = {}
    for path in relays:
        m = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert m["To"].addresses[0].addr_spec == "antonio@nuvole.example"
        text = m.get_body(("plain",)).get_content().replace("\r\n", "\n")
        shown = html_cut(m.get_body(("html",)).get_content())[0]  # the page as shown (its title is the subject)
        answer = next(a for a in reply_styles.ANSWERS.values() if a.splitlines()[0] in text)
        got[answer] = got.get(answer, 0) + 1
        body = re.split(r"\r?\n--\r?\n", text)[0]  # above the relay's own signature line
        assert_clean(answer, body, path.name)
        for word in ("New request in OA-", "Reply to this mail to answer", "Reply due", "Features revert fails",
                     "----- message"):
            assert word not in shown, f"{path.name}: {word!r} in the HTML part"
    want: dict[str, int] = {}
    for _, lang in cases:
        want[reply_styles.ANSWERS[lang]] = want.get(reply_styles.ANSWERS[lang], 0) + 1
    assert got == want
    shutil.rmtree(tmp_path / "data", ignore_errors=True)

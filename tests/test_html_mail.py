"""The HTML alternative of every kind of mail, opened in a real headless Chromium at phone and desktop widths.

Each mail is made by the real rules (tests/mail_kinds.py) and rendered by the real composer. In the
browser: it loads with no error and asks for nothing (no remote CSS, font or image), carries no <style>
element (mail clients strip it: every style is inline), names the program at the top, fits a 375 px phone
without sideways scrolling, has at most one call to action (and has it where the mail has one), and every
link is absolute https or mailto and well formed. A screenshot of each kind at each width, and of a few in
Chromium's forced dark mode (what mail apps do to light mail), lands in tmp (and in
./partnerdesk-test-screenshots/ when that folder exists).
"""

from __future__ import annotations

import email
import email.policy
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from chromium import Chromium, needs_chromium
from mail_kinds import partner_mails, staff_mails

pytestmark = [pytest.mark.integration, needs_chromium]

WITH_ACTION = {"renewal 60 days before": "Renew the partnership", "renewal on the day": "Renew the partnership",
               "renewal lapsed": "Renew the partnership", "call-invite": "Add to calendar",
               "call-update": "Add to calendar", "call-reminder": "Join the call",
               "training-announcement": "Reply to take a place", "training-refresher": "Reply to take a place",
               "welcome": "See your partner profile"}


def html_of(raw: bytes) -> str:
    return email.message_from_bytes(raw, policy=email.policy.default).get_body(("html",)).get_content()


def kinds() -> dict[str, bytes]:
    """One mail of each kind: the partner's first contact of a standard partner, then what only others get."""
    out: dict[str, bytes] = {}
    for r in partner_mails("billing contact") + partner_mails("solo plan") + staff_mails():
        out.setdefault(r.kind, r.raw)
    return out


KINDS = kinds()


@pytest.fixture(scope="module")
def browser():
    with Chromium() as b:
        yield b


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mail-shots")
    yield folder
    keep = Path(__file__).resolve().parent.parent / "partnerdesk-test-screenshots"
    if keep.is_dir():
        for f in folder.glob("*.png"):
            shutil.copyfile(f, keep / f.name)


def test_every_kind_of_mail_is_here():
    assert set(WITH_ACTION) <= set(KINDS)
    assert {"ack", "channel_info", "relay", "close", "staff_notification", "escalation", "digest", "bounce_notice",
            "command_ok", "command_error", "mailing_failure", "call-cancel", "health_alert",
            "health_all_clear"} <= set(KINDS)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_html_mail_in_chromium(kind, browser, shots, tmp_path):
    html = html_of(KINDS[kind])
    assert "<style" not in html.lower() and "<script" not in html.lower() and "<link" not in html.lower()
    path = tmp_path / "mail.html"
    path.write_text(html, encoding="utf-8")
    slug = re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-")
    for width, height, mobile in ((375, 740, True), (1024, 800, False)):
        page = browser.page(width=width, height=height, mobile=mobile)
        page.open(path.as_uri())
        assert page.errors == [], kind
        assert page.requests == [path.as_uri()], f"{kind} asks for more than itself"
        assert page.evaluate("document.documentElement.scrollWidth") <= width, f"{kind} scrolls sideways at {width}"
        top = page.evaluate("document.querySelector('td').textContent.trim()")
        assert top == "Open Atrium Partners Program"
        assert page.evaluate("getComputedStyle(document.querySelector('td.card, td')).fontSize") >= "15px"
        links = page.evaluate("[...document.querySelectorAll('a')].map(a => [a.getAttribute('href'), "
                              "a.textContent.trim(), a.getBoundingClientRect().width])")
        for href, text, shown in links:
            parts = urlsplit(href)
            assert parts.scheme in ("https", "mailto"), f"{kind}: {href}"
            assert (parts.netloc and "." in parts.netloc) if parts.scheme == "https" else \
                re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]+", parts.path), f"{kind}: broken link {href}"
            assert text and shown > 0, f"{kind}: an empty or hidden link {href}"
        buttons = page.evaluate("[...document.querySelectorAll('a')].filter(a => "
                                "getComputedStyle(a).backgroundColor !== 'rgba(0, 0, 0, 0)').map(a => a.textContent)")
        if kind in WITH_ACTION:
            assert buttons == [WITH_ACTION[kind]], kind
        else:
            assert buttons == [], kind
        page.screenshot(shots / f"mail-{slug}-{width}.png")
        page.send("Page.close")


@pytest.mark.parametrize("kind", ["call-invite", "renewal 60 days before", "relay", "staff_notification"])
def test_readable_when_a_mail_app_darkens_it(kind, browser, shots, tmp_path):
    path = tmp_path / "mail.html"
    path.write_text(html_of(KINDS[kind]), encoding="utf-8")
    page = browser.page(width=375, height=740, mobile=True)
    page.emulate(dark=True, auto_dark=True)
    page.open(path.as_uri())
    # Every text block sets its own background and colour: darkened, each pair stays a pair.
    pairs = page.evaluate("""[...document.querySelectorAll('p, li, td, pre, h3, div.quote')].filter(e =>
        e.textContent.trim()).map(e => { const s = getComputedStyle(e); return [s.color, s.backgroundColor]; })""")
    assert pairs
    unset = page.evaluate("""[...document.querySelectorAll('td, pre, div.quote, table.details')].filter(e =>
        !e.getAttribute('style') || !/background/.test(e.getAttribute('style'))).length""")
    assert unset == 0
    page.screenshot(shots / f"mail-dark-{re.sub(r'[^a-z0-9]+', '-', kind)}.png")
    page.send("Page.close")


def test_partner_text_stays_text_in_the_browser(browser, tmp_path):
    html = html_of(KINDS["staff_notification"])  # the request held "<script>alert(1)</script>" and a URL with &
    path = tmp_path / "mail.html"
    path.write_text(html, encoding="utf-8")
    page = browser.page()
    page.open(path.as_uri())
    assert page.evaluate("document.querySelectorAll('script').length") == 0
    assert "<script>alert(1)</script>" in page.evaluate("document.body.textContent")
    assert page.evaluate("[...document.querySelectorAll('a')].map(a => a.href)").count(
        "https://nuvole.example/log?id=1&x=2") == 1

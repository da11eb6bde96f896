"""mailbox.reports on real parsing and the real flufl.bounce: report fields, and the traps found."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from mailbox import reports
from mailbox.parse import parse
from tests.automatic_corpus.shapes import DATE, SUPPORT, dsn, dsn_status, message, our_headers, our_id, plain

NOW = datetime(2026, 11, 30, 15, 30, tzinfo=timezone.utc)
A = "antonio@nuvole.example"


def p(raw: bytes):
    return parse(raw, received_at=NOW)


def _dsn(*recipients: dict[str, str], subject: str = "Undelivered Mail Returned to Sender") -> bytes:
    return dsn(boundary="t.b", head=f"Return-Path: <>\nFrom: MAILER-DAEMON@mx.example\nTo: {SUPPORT}\n"
                                    f"Subject: {subject}\nDate: {DATE}\nMessage-ID: <t@mx.example>\n",
               notice="The mail system\n", status=dsn_status("mx.example", list(recipients)),
               original=our_headers(12, A))


def test_dsn_fields_per_recipient():
    m = p(_dsn(dict(original=f"rfc822;{A}", final="rfc822;antonio@mail.nuvole.example", action="failed",
                    status="5.1.1", diag="smtp; 550 5.1.1 <antonio@nuvole.example>: User unknown"),
               dict(final="rfc822;andrea@nuvole.example", action="delayed", status="4.4.1",
                    diag="X-Postfix; connect to host: Connection timed out")))
    r = m.report
    assert r.format == "dsn" and r.actions == ("failed", "delayed")
    by = {f.address: f for f in r.failed}
    assert set(by) == {A, "andrea@nuvole.example"}  # the Original-Recipient, the address we wrote to
    assert by[A].gave_up and by[A].status == "5.1.1" and "User unknown" in by[A].diagnostic
    assert not by["andrea@nuvole.example"].gave_up and by["andrea@nuvole.example"].status == "4.4.1"
    assert r.about_ids == (our_id(12),)


def test_a_success_report_names_no_failure_and_asks_no_heuristic():
    # Postfix's success notice has a Notification part with "<address>: delivery via ...": the
    # library's Postfix detector would read that address as a failure if it were asked.
    m = p(_dsn(dict(final=f"rfc822;{A}", action="relayed", status="2.0.0"), subject="Successful Mail Delivery Report"))
    assert m.report.format == "dsn" and m.report.failed == () and m.report.actions == ("relayed",)
    assert m.report.delivered == (A,)  # evidence that mail reaches the address (workflows.delivery)


def test_non_standard_bounce_goes_through_flufl_bounce():
    raw = plain(f"Return-Path: <>\nFrom: MAILER-DAEMON@mx.lisboa.example\nTo: {SUPPORT}\nSubject: failure notice\n"
                f"Date: {DATE}\nMessage-ID: <q@mx>\n",
                "Hi. This is the qmail-send program at mx.lisboa.example.\n"
                "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
                "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
                "<joao@lisboa.example>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n"
                "--- Below this line is a copy of the message.\n\n" + our_headers(41, "joao@lisboa.example"),
                "text/plain")
    r = p(raw).report
    assert r.format == "heuristic"
    assert [(f.address, f.gave_up, f.status) for f in r.failed] == [("joao@lisboa.example", True, "5.1.1")]
    assert "no mailbox here" in r.failed[0].diagnostic
    assert r.about_ids == (our_id(41),)  # from the headers quoted inline below the notice


def test_utf8_header_does_not_crash_the_detectors():
    # flufl.bounce 6.0's Sina detector calls .lower() on the From header; compat32 gives a Header
    # object for raw UTF-8 bytes, and the whole scan raised. We hand it a str-only copy instead.
    raw = ("Return-Path: <>\r\nFrom: Système de messagerie <MAILER-DAEMON@mx.lyon-web.example>\r\n"
           f"To: {SUPPORT}\r\nSubject: failure notice\r\nMessage-ID: <u@mx>\r\n\r\n"
           "Hi. This is the qmail-send program at mx.lyon-web.example.\r\n"
           "I'm afraid I wasn't able to deliver your message to the following addresses.\r\n\r\n"
           "<claire@lyon-web.example>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n").encode()
    m = p(raw)
    assert [f.address for f in m.report.failed] == ["claire@lyon-web.example"]
    assert not [d for d in m.defects if "detectors failed" in d]


def test_a_detector_crash_is_a_defect_not_a_lost_message(monkeypatch):
    def boom(msg):
        raise RuntimeError("detector bug")

    monkeypatch.setattr(reports, "all_failures", boom)
    m = p(plain(f"Return-Path: <>\nFrom: MAILER-DAEMON@mx.example\nTo: {SUPPORT}\nSubject: failure notice\n",
                "something\n"))
    assert m.report is None and any("bounce detectors failed (RuntimeError" in d for d in m.defects)


def test_person_mail_is_not_run_through_the_detectors(monkeypatch):
    calls = []
    monkeypatch.setattr(reports, "all_failures", lambda msg: calls.append(msg) or (frozenset(), frozenset()))
    p(plain(f"From: {A}\nTo: {SUPPORT}\nSubject: Views broken\nReturn-Path: <{A}>\n", "Hi. This is the owner.\n"))
    assert calls == []
    p(plain(f"From: {A}\nTo: {SUPPORT}\nSubject: Undeliverable: x\n", "x\n"))  # a delivery-ish subject: looked at
    assert len(calls) == 1


def test_huge_mail_skips_the_heuristic_detectors(monkeypatch):
    monkeypatch.setattr(reports, "HEURISTIC_MAX_BYTES", 1000)
    m = p(plain(f"Return-Path: <>\nFrom: MAILER-DAEMON@mx.example\nTo: {SUPPORT}\nSubject: failure notice\n",
                "x" * 2000 + "\n"))
    assert m.report is None and any("too large for the non-standard bounce detectors" in d for d in m.defects)


def test_broken_delivery_status_part_is_still_a_report():
    raw = message(f"Return-Path: <>\nFrom: MAILER-DAEMON@mx.example\nTo: {SUPPORT}\nSubject: x\nMIME-Version: 1.0\n"
                  'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n',
                  "--b\nContent-Type: text/plain\n\nfailed\n--b\nContent-Type: message/delivery-status\n"
                  "Content-Transfer-Encoding: base64\n\n!!!not base64!!!\n--b--\n")
    m = p(raw)
    assert m.report is not None and m.report.format == "dsn" and m.report.failed == ()


def test_feedback_and_read_receipt_fields():
    arf = message(f"From: fbl@isp.example\nTo: {SUPPORT}\nSubject: complaint\nMIME-Version: 1.0\n"
                  'Content-Type: multipart/report; report-type=feedback-report; boundary="a"\n',
                  "--a\nContent-Type: text/plain\n\nabuse report\n--a\nContent-Type: message/feedback-report\n\n"
                  "Feedback-Type: Abuse\nVersion: 1\nOriginal-Rcpt-To: <Mark@Cookshop.example>\n"
                  "Original-Rcpt-To: <ana@rio.example>\n--a\nContent-Type: text/rfc822-headers\n\n"
                  + our_headers(81, "mark@cookshop.example") + "--a--\n")
    r = p(arf).report
    assert (r.format, r.feedback_type, r.reporters) == ("arf", "abuse", ("mark@cookshop.example", "ana@rio.example"))
    assert r.about_ids == (our_id(81),)
    mdn = message(f"From: {A}\nTo: {SUPPORT}\nSubject: Read: x\nMIME-Version: 1.0\n"
                  'Content-Type: multipart/report; report-type=disposition-notification; boundary="m"\n',
                  "--m\nContent-Type: text/plain\n\nread\n--m\nContent-Type: message/disposition-notification\n\n"
                  f"Final-Recipient: rfc822;{A}\nOriginal-Message-ID: {our_id(12)}\n"
                  "Disposition: manual-action/MDN-sent-manually; displayed\n--m--\n")
    r = p(mdn).report
    assert (r.format, r.reporters, r.about_ids) == ("mdn", (A,), (our_id(12),))
    assert r.disposition == "manual-action/mdn-sent-manually; displayed"


def test_marker_headers_keep_values():
    m = p(plain(f"From: {A}\nTo: {SUPPORT}\nSubject: x\nX-Autoreply: yes\nX-Auto-Response-Suppress: DR, OOF\n"
                "Feedback-ID: 1:2:3\nX-Mailer: Vacation 1.2\n", "x\n"))
    assert ("X-Autoreply", "yes") in m.auto_headers and ("X-Auto-Response-Suppress", "DR, OOF") in m.auto_headers
    assert ("Feedback-ID", "1:2:3") in m.auto_headers and ("X-Mailer", "Vacation 1.2") in m.auto_headers


@pytest.mark.parametrize("raw_subject,expected", [
    (b"Subject: R\xc3\xa9ponse automatique : x", "Réponse automatique : x"),  # raw UTF-8 (RFC 6532)
    (b"Subject: R\xe9ponse", "Réponse"),  # raw Latin-1 from a sloppy mailer
    (b"Subject: =?utf-8?q?Risposta_automatica=3A?= x", "Risposta automatica: x"),
])
def test_eight_bit_subjects_are_read_as_text(raw_subject, expected):
    # Before, compat32's "unknown-8bit" Header became replacement characters and no subject rule matched.
    assert p(raw_subject + b"\r\nFrom: a@b.example\r\n\r\nx").subject == expected


def test_plain_mail_has_no_report():
    m = p(plain(f"From: {A}\nTo: {SUPPORT}\nSubject: help\n", "hello\n"))
    assert m.report is None and m.auto_headers == ()

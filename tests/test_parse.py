"""mailbox.parse on real-world and hostile mail: never raises except BadInput, records what was odd."""

from __future__ import annotations

import base64
import random
from datetime import datetime, timezone

import pytest

from mailbox import parse as parse_mod
from mailbox.parse import MAX_TEXT, decode_header, html_to_text, parse, strip_quoted
from workflows.errors import BadInput
from workflows.model import InboundMail

NOW = datetime(2026, 11, 30, 15, 0, tzinfo=timezone.utc)

PLAIN = (
    b"From: Antonio De Marco <Antonio@Nuvole.example>\r\n"
    b"To: Open Atrium Support <support@openatrium.example>\r\n"
    b"Cc: andrea@nuvole.example, not-an-address\r\n"
    b"Subject: Features revert fails on OA 2.6\r\n"
    b"Date: Mon, 30 Nov 2026 09:58:00 -0500\r\n"
    b"Message-ID: <CAF1234@mail.nuvole.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Hi,\r\n\r\ndrush features-revert-all fails with a PDO exception.\r\n\r\nAntonio\r\n"
)


def p(raw: bytes) -> InboundMail:
    return parse(raw, received_at=NOW)


def mail(headers: str, body: bytes = b"hello\n") -> bytes:
    head = headers.strip("\n").replace("\n", "\r\n").encode("ascii")
    return head + b"\r\n\r\n" + body


# -- the ordinary case ----------------------------------------------------------------------------------------
def test_plain_mail_fields():
    m = p(PLAIN)
    assert m.message_id == "<CAF1234@mail.nuvole.example>"
    assert m.from_addr == "antonio@nuvole.example"  # lower-cased
    assert m.from_name == "Antonio De Marco"
    assert m.to == ("support@openatrium.example",)
    assert m.cc == ("andrea@nuvole.example",)  # the junk "address" is dropped
    assert m.subject == "Features revert fails on OA 2.6"
    assert m.date_header == datetime(2026, 11, 30, 14, 58, tzinfo=timezone.utc)
    assert m.received_at == NOW
    assert "PDO exception" in m.text and "\r" not in m.text
    assert m.size == len(PLAIN)
    assert m.content_type == "text/plain"
    assert m.return_path is None and m.auto_submitted == "" and m.precedence == ""
    assert m.defects == ()


def test_envelope_recipients_keep_their_plus_detail():
    # Where a reply key still is when the support address was Bcc'd (workflows/replykeys.py).
    m = p(mail("""
Delivered-To: Support+12kabc@openatrium.example
X-Original-To: support+12kabc@openatrium.example
Envelope-To: <support@openatrium.example>
From: young@devseed.example
To: antonio@nuvole.example
"""))
    assert m.envelope_to == ("support+12kabc@openatrium.example", "support@openatrium.example")
    assert p(PLAIN).envelope_to == ()


# -- missing or broken headers ----------------------------------------------------------------------------------
def test_missing_message_id_is_derived_and_stable():
    raw = mail("From: a@b.example\nSubject: no id")
    m1, m2 = p(raw), p(bytes(raw))
    assert m1.message_id == m2.message_id
    assert m1.message_id.startswith("<") and m1.message_id.endswith("@missing-id.partnerdesk>")
    assert any("Message-ID" in d for d in m1.defects)
    other = p(mail("From: a@b.example\nSubject: no id either"))
    assert other.message_id != m1.message_id


def test_message_id_with_junk_around_it_is_extracted():
    m = p(mail("From: a@b.example\nMessage-ID: junk <x1@host.example> trailing"))
    assert m.message_id == "<x1@host.example>"


def test_missing_from():
    m = p(mail("To: support@openatrium.example\nSubject: who am I"))
    assert m.from_addr == "" and m.from_name == ""
    assert any("From" in d for d in m.defects)


def test_unusable_from():
    m = p(mail("From: just a name\nSubject: x"))
    assert m.from_addr == ""
    assert any("From" in d for d in m.defects)


def test_unreadable_date_is_a_defect_not_an_error():
    m = p(mail("From: a@b.example\nDate: the day after tomorrow"))
    assert m.date_header is None
    assert "unreadable Date header" in m.defects


def test_date_without_zone_is_taken_as_utc():
    m = p(mail("From: a@b.example\nDate: Mon, 30 Nov 2026 10:00:00 -0000"))
    assert m.date_header is not None and m.date_header.utcoffset().total_seconds() == 0


# -- RFC 2047 ---------------------------------------------------------------------------------------------------
def test_rfc2047_subject_and_from_name():
    m = p(mail("From: =?utf-8?Q?Andr=C3=A9_M=C3=BCller?= <andre@x.example>\n"
               "Subject: =?utf-8?B?w4ljaGVjIGR1IGTDqXBsb2llbWVudA==?= =?iso-8859-1?Q?_=E0_Paris?="))
    assert m.from_name == "André Müller"
    assert m.subject == "Échec du déploiement à Paris"


def test_rfc2047_unknown_charset_is_decoded_leniently():
    m = p(mail("From: a@b.example\nSubject: =?klingon?Q?qapla=21?= done"))
    assert "qapla!" in m.subject and "done" in m.subject


@pytest.mark.parametrize("subject, kept", [
    ("=?utf-8?B?####?= after", "after"),  # bad base64
    ("=?utf-8?Q?unterminated", "unterminated"),  # no closing ?=
    ("=?utf-8?X?unknown-encoding?=", "unknown-encoding"),
    ("=?utf-8?Q?caf=C3?= tail", "tail"),  # truncated UTF-8 sequence
    ("=??Q?no-charset?=", "no-charset"),
    ("=?utf-8*fr?Q?lang=20tag?=", "lang"),
])
def test_rfc2047_broken_encoded_words_never_raise(subject, kept):
    m = p(mail(f"From: a@b.example\nSubject: {subject}"))
    assert kept in m.subject
    assert "\n" not in m.subject and "\r" not in m.subject


def test_decode_header_direct():
    assert decode_header(None) == ""
    assert decode_header("=?utf-8?Q?a=0Ab?=") == "a b"  # an encoded newline cannot survive
    assert decode_header("  plain  ") == "plain"


# -- bodies and charsets --------------------------------------------------------------------------------------
def test_undeclared_8bit_body_is_read_as_utf8():
    m = p(mail("From: a@b.example\nSubject: x", "Grüße aus Köln\n".encode("utf-8")))
    assert m.text == "Grüße aus Köln\n"


def test_declared_utf8_but_latin1_bytes():
    raw = mail("From: a@b.example\nContent-Type: text/plain; charset=utf-8",
               "café naïve\n".encode("latin-1"))
    m = p(raw)
    assert m.text == "café naïve\n"  # every byte still becomes a character, nothing raises


def test_unknown_charset_klingon():
    m = p(mail("From: a@b.example\nContent-Type: text/plain; charset=klingon", b"nuqneH caf\xc3\xa9\n"))
    assert m.text == "nuqneH café\n"
    assert any("klingon" in d for d in m.defects)


def test_wrong_non_utf8_charset_is_a_defect():
    m = p(mail("From: a@b.example\nContent-Type: text/plain; charset=us-ascii", b"plain\n"))
    assert m.text == "plain\n" and m.defects == ("no Message-ID; one was derived from the content",)
    m = p(mail("From: a@b.example\nContent-Type: text/plain; charset=shift_jis", b"\x81\xff\x80 bad\n"))
    assert "bad" in m.text
    assert any("shift_jis" in d for d in m.defects)


def test_good_base64_body():
    body = base64.encodebytes("Grüße, das ist gut\n".encode())
    m = p(mail("From: a@b.example\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64",
               body))
    assert m.text == "Grüße, das ist gut\n"


def test_broken_base64_body_is_parsed_and_recorded():
    m = p(mail("From: a@b.example\nMessage-ID: <b64@x>\nContent-Type: text/plain; charset=utf-8\n"
               "Content-Transfer-Encoding: base64", b"!!!this is not base64@@@\n"))
    assert isinstance(m.text, str)
    assert any("Base64" in d for d in m.defects), m.defects


def test_quoted_printable_body():
    m = p(mail("From: a@b.example\nContent-Type: text/plain; charset=utf-8\n"
               "Content-Transfer-Encoding: quoted-printable", b"caf=C3=A9 soft=\r\nbreak\r\n"))
    assert m.text == "café softbreak\n"


# -- MIME structure ---------------------------------------------------------------------------------------------
def test_multipart_alternative_prefers_plain():
    raw = mail('From: a@b.example\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="B"',
               b"--B\r\nContent-Type: text/html\r\n\r\n<p>html version</p>\r\n"
               b"--B\r\nContent-Type: text/plain\r\n\r\nplain version\r\n--B--\r\n")
    m = p(raw)
    assert m.text.strip() == "plain version"
    assert m.content_type == "multipart/alternative"


def test_multipart_without_closing_boundary():
    raw = mail('From: a@b.example\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="XX"',
               b"--XX\r\nContent-Type: text/plain\r\n\r\nthe body survives\r\n"
               b"--XX\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0x")
    m = p(raw)
    assert m.text.strip() == "the body survives"
    assert "CloseBoundaryNotFoundDefect" in m.defects


def test_multipart_without_boundary_parameter():
    m = p(mail("From: a@b.example\nContent-Type: multipart/mixed", b"just text\n"))
    assert isinstance(m, InboundMail)
    assert m.defects  # something odd was recorded


def test_html_only_mail_text_extracted_script_and_style_dropped():
    html = (b"<html><head><style>p { color: red }</style><script>var secret = 1;</script></head>"
            b"<body><p>Hello &amp; welcome</p><div>second line</div>"
            b"<SCRIPT type='text/javascript'>alert('x')</SCRIPT><ul><li>item</li></ul></body></html>")
    m = p(mail("From: a@b.example\nContent-Type: text/html; charset=utf-8", html))
    assert "Hello & welcome" in m.text
    assert "second line" in m.text and "item" in m.text
    assert "color" not in m.text and "secret" not in m.text and "alert" not in m.text
    assert "<" not in m.text
    assert m.text.index("Hello") < m.text.index("second line")
    assert "\n" in m.text  # block elements break lines


def test_html_to_text_on_broken_markup_never_raises():
    assert "x" in html_to_text("<p>x<div <<<< </scr")
    assert html_to_text("<script>unterminated") == ""


def test_attachments_are_skipped():
    raw = mail('From: a@b.example\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="M"',
               b"--M\r\nContent-Type: text/plain; name=log.txt\r\nContent-Disposition: attachment; filename=log.txt"
               b"\r\n\r\nATTACHED LOG LINE\r\n"
               b"--M\r\nContent-Type: text/plain\r\n\r\nsee the attached log\r\n--M--\r\n")
    m = p(raw)
    assert m.text.strip() == "see the attached log"
    assert "ATTACHED" not in m.text


def test_only_an_attachment_gives_empty_text():
    raw = mail('From: a@b.example\nContent-Type: multipart/mixed; boundary="M"',
               b"--M\r\nContent-Type: text/plain\r\nContent-Disposition: ATTACHMENT; filename=x.txt\r\n\r\n"
               b"secret\r\n--M--\r\n")
    m = p(raw)
    assert m.text == "" and m.reply_text == ""


def test_huge_body_is_cut_with_a_defect():
    body = ("x" * 99 + "\n").encode() * (MAX_TEXT // 100 + 500)
    raw = mail("From: a@b.example\nMessage-ID: <huge@x>\nSubject: big", body)
    m = p(raw)
    assert len(m.text) == MAX_TEXT and m.text == body.decode()[:MAX_TEXT]
    assert any(f"cut at {MAX_TEXT}" in d for d in m.defects)
    assert m.message_id == "<huge@x>" and m.subject == "big" and m.size == len(raw)  # still parsed
    assert len(m.reply_text) <= MAX_TEXT


def test_body_at_exactly_max_text_is_not_cut(monkeypatch):
    monkeypatch.setattr(parse_mod, "MAX_TEXT", 50)
    m = p(mail("From: a@b.example\nMessage-ID: <m@x>", b"y" * 50))
    assert m.text == "y" * 50 and not any("cut" in d for d in m.defects)
    m = p(mail("From: a@b.example\nMessage-ID: <m@x>", b"y" * 51))
    assert m.text == "y" * 50 and any("cut at 50" in d for d in m.defects)


def test_calendar_parts_captured():
    ics = (b"BEGIN:VCALENDAR\r\nMETHOD:REPLY\r\nBEGIN:VEVENT\r\nUID:call-2026-12@openatrium.example\r\n"
           b"ATTENDEE;PARTSTAT=ACCEPTED:mailto:antonio@nuvole.example\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    raw = mail('From: a@b.example\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="C"',
               b"--C\r\nContent-Type: text/plain\r\n\r\nAccepted: partner call\r\n"
               b"--C\r\nContent-Type: text/calendar; method=REPLY; charset=utf-8\r\n\r\n" + ics + b"--C--\r\n")
    m = p(raw)
    assert len(m.calendar_parts) == 1
    assert "PARTSTAT=ACCEPTED" in m.calendar_parts[0]
    assert "call-2026-12@openatrium.example" in m.calendar_parts[0]
    assert m.text.strip() == "Accepted: partner call"


# -- header injection -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("subject", [
    "=?utf-8?Q?hi=0D=0ABcc:_evil@x.example?=",
    "=?utf-8?B?" + base64.b64encode(b"hi\r\nBcc: evil@x.example").decode() + "?=",
    "hi\r\n Bcc: evil@x.example",  # a folded line: legal, but unfolded it must not keep the break
])
def test_header_injection_line_breaks_do_not_survive(subject):
    m = p(("From: a@b.example\r\nSubject: " + subject + "\r\n\r\nbody\r\n").encode())
    assert "\r" not in m.subject and "\n" not in m.subject
    assert m.subject.startswith("hi") and "evil@x.example" in m.subject  # kept as text, on one line


def test_from_name_with_encoded_newline_is_no_trusted_sender():
    # A name smuggling a line break is hostile: no sender at all, and nothing multi-line survives.
    m = p(mail("From: =?utf-8?Q?Eve=0D=0ABcc=3A_x=40y?= <eve@x.example>"))
    assert m.from_addr == "" and "\n" not in m.from_name
    assert any("From" in d for d in m.defects)


@pytest.mark.parametrize("from_header", [
    "young@openatrium.example <attacker@evil.example>",  # lenient parsers pick the first address
    "young@openatrium.example, attacker@evil.example",  # two authors
    "attacker@evil.example (young@openatrium.example)",
])
def test_ambiguous_from_is_never_a_known_sender(from_header):
    m = p(mail(f"From: {from_header}"))
    assert m.from_addr in ("", "attacker@evil.example")
    assert m.from_addr != "young@openatrium.example"


def test_second_from_header_makes_the_sender_unknown():
    m = p(mail("From: young@openatrium.example\nFrom: attacker@evil.example"))
    assert m.from_addr == "" and any("From headers" in d for d in m.defects)


@pytest.mark.parametrize("from_header", [
    "=?utf-8?Q?young=40openatrium=2Eexample?= <attacker@evil.example>",
    '"=?utf-8?Q?young=40openatrium.example?=" <attacker@evil.example>',
    "=?utf-8?B?eW91bmdAb3BlbmF0cml1bS5leGFtcGxl?= <attacker@evil.example>",
])
def test_encoded_display_name_cannot_forge_the_address(from_header):
    # The address servers check (SPF/DMARC) is the one in angle brackets; a name that decodes to a
    # staff address must stay a name, or anyone could write as staff.
    m = p(mail(f"From: {from_header}\nTo: =?utf-8?Q?x=40y.example?= <support@openatrium.example>"))
    assert m.from_addr in ("attacker@evil.example", "")  # "": a quoted encoded word is itself a defect
    assert m.from_name in ("young@openatrium.example", "")
    assert m.to == ("support@openatrium.example",)


# -- automatic-mail headers ---------------------------------------------------------------------------------------
def test_auto_submitted_precedence_and_null_return_path():
    m = p(mail("From: mailer-daemon@x.example\nAuto-Submitted: Auto-Replied\nPrecedence: Bulk\nReturn-Path: <>\n"
               "X-Autoreply: yes\nX-Auto-Response-Suppress: OOF, AutoReply\nList-Id: <partners.lists.example>"))
    assert m.auto_submitted == "auto-replied"
    assert m.precedence == "bulk"
    assert m.return_path == ""  # a bounce: the null reverse path
    assert m.list_id == "<partners.lists.example>"
    assert "X-Autoreply" in m.other_auto_headers
    assert "X-Auto-Response-Suppress" in m.other_auto_headers


def test_return_path_address_and_absent():
    m = p(mail("From: a@b.example\nReturn-Path: <Bounce+123@Lists.Example>"))
    assert m.return_path == "bounce+123@lists.example"
    assert p(mail("From: a@b.example")).return_path is None


def test_auto_response_suppress_without_relevant_word_is_not_flagged():
    m = p(mail("From: a@b.example\nX-Auto-Response-Suppress: DR, RN"))
    assert m.other_auto_headers == ()


# -- threading headers --------------------------------------------------------------------------------------------
def test_references_and_in_reply_to_with_junk():
    m = p(mail("From: a@b.example\n"
               "In-Reply-To: Your message of Monday <a1@x.example> (was: something) <a2@y.example>\n"
               "References: <r1@x.example> garbage \"quoted <not an id\"\n <r2@x.example>,<a1@x.example>\n"
               "References: <r3@x.example> <r1@x.example>"))
    assert m.in_reply_to == ("<a1@x.example>", "<a2@y.example>")
    assert m.references == ("<r1@x.example>", "<r2@x.example>", "<a1@x.example>", "<r3@x.example>")  # deduped
    # nearest first: In-Reply-To, then References from the end
    assert m.thread_refs[:2] == ("<a1@x.example>", "<a2@y.example>")
    assert m.thread_refs.index("<r3@x.example>") < m.thread_refs.index("<r1@x.example>")


def test_ids_with_spaces_or_empty_are_not_ids():
    m = p(mail("From: a@b.example\nIn-Reply-To: <> < spaced id@x> <ok@x>"))
    assert m.in_reply_to == ("<ok@x>",)


# -- quoted replies -----------------------------------------------------------------------------------------------
OUTLOOK_REPLY = (
    "Thanks, that fixed it.\n\n"
    "-----Original Message-----\n"
    "From: Open Atrium Support <support@openatrium.example>\n"
    "Sent: Monday, November 30, 2026 10:00 AM\n"
    "To: Antonio\nSubject: RE: [OA-1] revert\n\nOLD SUPPORT TEXT\n"
)
OUTLOOK_NEW_STYLE = (
    "Thanks, that fixed it.\n\n"
    "________________________________\n"
    "From: Open Atrium Support <support@openatrium.example>\n"
    "Sent: Monday, November 30, 2026 10:00 AM\n\nOLD SUPPORT TEXT\n"
)
OUTLOOK_NO_RULE = (
    "Thanks, that fixed it.\n\n"
    "From: Open Atrium Support <support@openatrium.example>\n"
    "Date: Monday, November 30, 2026 10:00 AM\n\nOLD SUPPORT TEXT\n"
)
GMAIL_REPLY = (
    "Thanks, that fixed it.\n\n"
    "On Mon, Nov 30, 2026 at 10:00 AM Open Atrium Support <support@openatrium.example>\nwrote:\n\n"
    "> OLD SUPPORT TEXT\n> more\n"
)


@pytest.mark.parametrize("text", [OUTLOOK_REPLY, OUTLOOK_NEW_STYLE, OUTLOOK_NO_RULE, GMAIL_REPLY])
def test_strip_quoted(text):
    assert strip_quoted(text) == "Thanks, that fixed it."


def test_reply_text_of_a_parsed_mail_is_stripped():
    m = p(mail("From: a@b.example\nMessage-ID: <r@x>", GMAIL_REPLY.encode()))
    assert m.reply_text == "Thanks, that fixed it."
    assert "OLD SUPPORT TEXT" in m.text  # the full text is kept


def test_note_first_line_kept():
    text = "#note customer is on the old plan\ncheck billing first\n\n" + GMAIL_REPLY.split("\n\n", 1)[1]
    stripped = strip_quoted(text)
    assert stripped.splitlines()[0] == "#note customer is on the old plan"
    assert "check billing first" in stripped and "OLD SUPPORT TEXT" not in stripped


def test_strip_quoted_never_returns_empty_for_a_quote_only_mail():
    assert strip_quoted("> only quoted\n> text\n") == "> only quoted\n> text"
    assert strip_quoted("") == ""


# -- input that has no reading ------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", [b"", b"   \r\n\t ", None, "From: a@b.example\n\nstr, not bytes"])
def test_empty_or_non_bytes_raise_bad_input(raw):
    with pytest.raises(BadInput):
        parse(raw, received_at=NOW)  # type: ignore[arg-type]


def test_bytearray_accepted():
    assert p(bytearray(PLAIN)).message_id == "<CAF1234@mail.nuvole.example>"


def test_garbage_bytes_still_parse():
    m = p(bytes(range(256)) * 4)
    assert isinstance(m, InboundMail) and m.size == 1024


# -- fuzz: whatever comes in, an InboundMail or BadInput ----------------------------------------------------------
RICH = (
    b"From: =?utf-8?Q?Andr=C3=A9?= <andre@x.example>\r\n"
    b"To: support@openatrium.example\r\nCc: a@b.example\r\n"
    b"Subject: =?iso-8859-1?Q?caf=E9?= [OA-3]\r\n"
    b"Date: Mon, 30 Nov 2026 09:58:00 -0500\r\nMessage-ID: <fuzz@x.example>\r\n"
    b"In-Reply-To: <a@x>\r\nReferences: <r@x> <a@x>\r\nAuto-Submitted: no\r\nReturn-Path: <andre@x.example>\r\n"
    b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="OUT"\r\n\r\n'
    b'--OUT\r\nContent-Type: multipart/alternative; boundary="IN"\r\n\r\n'
    b"--IN\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"caf=C3=A9\r\n\r\nOn Mon, Nov 30, 2026 Support wrote:\r\n> old\r\n"
    b"--IN\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(b"<p>caf\xc3\xa9</p><script>x()</script>").replace(b"\n", b"\r\n")
    + b"--IN--\r\n"
    b"--OUT\r\nContent-Type: text/calendar; charset=utf-8\r\n\r\nBEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"
    b"--OUT\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nAAECAwQ=\r\n--OUT--\r\n"
)
_TOKENS = [b"\r\n", b"\n", b"=?", b"?=", b"=?utf-8?B?", b"=?klingon?Q?", b"<", b">", b"--OUT", b"--IN--", b"\x00",
           b"\xff\xfe", b"Content-Type: multipart/mixed; boundary=", b"charset=", b":", b"\r\n\r\n", b"=\r\n", b"\\"]


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 12)):
        op = rng.randrange(6)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:  # flip a byte
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:  # insert random bytes
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 20)))
        elif op == 2:  # insert a syntax token
            buf[pos:pos] = rng.choice(_TOKENS)
        elif op == 3 and buf:  # delete a span
            del buf[pos:pos + rng.randint(1, 60)]
        elif op == 4 and buf:  # duplicate a span
            end = min(len(buf), pos + rng.randint(1, 200))
            buf[pos:pos] = buf[pos:end]
        elif op == 5:  # truncate
            del buf[pos:]
    return bytes(buf)


def test_fuzz_parse_returns_mail_or_bad_input():
    rng = random.Random(20261130)
    assert p(RICH).calendar_parts  # the seed mail exercises every branch
    outcomes = {"mail": 0, "bad": 0}
    for i in range(300):
        raw = _mutate(rng, RICH)
        try:
            m = parse(raw, received_at=NOW)
        except BadInput:
            outcomes["bad"] += 1
            assert not raw.strip(), f"case {i}: BadInput for non-empty input"
            continue
        except Exception as e:  # pragma: no cover - the failure message is the point
            pytest.fail(f"case {i}: parse raised {type(e).__name__}: {e!r} for {raw[:200]!r}...")
        outcomes["mail"] += 1
        assert isinstance(m, InboundMail)
        assert m.message_id.startswith("<") and m.message_id.endswith(">")
        assert "\n" not in m.subject and "\r" not in m.subject
        assert len(m.text) <= MAX_TEXT and m.size == len(raw)
        assert all(isinstance(d, str) for d in m.defects)
    assert outcomes["mail"] >= 290

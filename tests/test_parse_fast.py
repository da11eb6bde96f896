"""The parser's fast paths read exactly what the strict readers read, and the header-only reading
agrees with the full one on everything it returns."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from mailbox import parse as parse_mod
from mailbox.parse import decode_header, parse

NOW = datetime(2026, 11, 30, 15, tzinfo=timezone.utc)

FROMS = [
    "Anna Rossi <anna@nuvole.example>", "anna@nuvole.example", "  Anna   Rossi   <Anna@Nuvole.Example>  ",
    "O'Brien <ob@x.example>", "Jean-Luc Picard <jl@ent.example>", "a.b <ab@x.example>", "x_y <xy@x.example>",
    '"Rossi, Anna" <anna@nuvole.example>', "young@devseed.example <evil@x.example>", "<anna@nuvole.example>",
    "Anna <anna@nuvole.example>, Bob <bob@x.example>", "=?utf-8?q?J=C3=BCrgen?= <j@x.example>",
    "Anna (work) <anna@nuvole.example>", "anna@nuvole", "Anna <anna@@nuvole.example>", "Anna <.anna@x.example>",
    "Anna <anna.@x.example>", "Anna <an..na@x.example>", ".Anna <anna@x.example>", "Anna. <anna@x.example>",
    "anna+tag@nuvole.example", "Anna <anna@sub.nuvole.example>", "Anna <anna@nuvole.example",
    "Anna anna@nuvole.example", "undisclosed-recipients:;", "Anna <anna@-x.example>",
]


def raw(frm: str, **headers: str) -> bytes:
    extra = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    return f"From: {frm}\r\nTo: support@x.example\r\nSubject: s\r\nMessage-ID: <m@x>\r\n{extra}\r\nbody\r\n".encode()


@pytest.mark.parametrize("frm", FROMS)
def test_the_fast_sender_path_reads_what_the_strict_parser_reads(frm, monkeypatch):
    fast = parse(raw(frm), received_at=NOW)
    monkeypatch.setattr(parse_mod, "_SIMPLE_FROM", re.compile(r"(?!)"))  # never matches: strict path only
    strict = parse(raw(frm), received_at=NOW)
    assert (fast.from_name, fast.from_addr, fast.defects) == (strict.from_name, strict.from_addr, strict.defects)


@pytest.mark.parametrize("value", ["plain", "  two  spaces  ", "a\r\n folded", "tab\there", "Re: [OA-1] x",
                                   "=?utf-8?q?x?=", "ünïcode"])
def test_plain_header_values_decode_as_the_full_decoder_does(value):
    full = parse_mod._clean(str(parse_mod.email.header.make_header(parse_mod.email.header.decode_header(value))))
    assert decode_header(value) == full


def test_the_header_only_reading_agrees_with_the_full_one_and_says_what_it_skipped():
    data = raw("Anna Rossi <anna@nuvole.example>", In_Reply_To="<p@x>", References="<o@x> <p@x>",
               Auto_Submitted="auto-replied", Date="Mon, 30 Nov 2026 10:00:00 -0500")
    full, head = parse(data, received_at=NOW), parse(data, received_at=NOW, bodies=False)
    for field in ("message_id", "raw_sha256", "from_addr", "from_name", "to", "subject", "date_header",
                  "in_reply_to", "references", "auto_submitted", "size", "content_type"):
        assert getattr(head, field) == getattr(full, field), field
    assert full.body_read and full.text.strip() == "body"
    # Auto-submitted: a machine's mail, whose body the bounce detectors read (mailbox/reports.py).
    assert not head.body_read and head.text == "" and head.body_hint
    plain = raw("Anna Rossi <anna@nuvole.example>", In_Reply_To="<p@x>")
    assert not parse(plain, received_at=NOW, bodies=False).body_hint


@pytest.mark.parametrize("body, hint", [("see you", False), ("unsubscribe calls.abc.0123456789abcdef", True),
                                        ("Content-Type: text/calendar; method=REPLY", True)])
def test_the_body_hint_says_when_only_a_full_reading_would_find_something(body, hint):
    data = raw("a@x.example").replace(b"body", body.encode())
    assert parse(data, received_at=NOW, bodies=False).body_hint is hint
    report = raw("a@x.example", Content_Type='multipart/report; boundary="b"')
    assert parse(report, received_at=NOW, bodies=False).body_hint
    # What the heuristic bounce detectors would be run on: mail a daemon sent, a bounce's subject.
    assert parse(raw("MAILER-DAEMON@mx.example"), received_at=NOW, bodies=False).body_hint


def _heads():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "templates" / "demo" / "inbox"
    yield from (p.read_bytes() for p in sorted(root.glob("*.eml")))
    yield raw("Anna <a@x.example>", Subject_2="x", X_Folded="one\r\n two\r\n\tthree")
    yield b"From someone Mon Nov 30\r\nFrom: a@x.example\r\nSubject: mbox\r\n\r\nb\r\n"
    yield b"From: a@x.example\r\nthis is no header\r\nSubject: s\r\n\r\nb\r\n"
    yield b" leading continuation\r\nFrom: a@x.example\r\n\r\nb\r\n"
    yield "From: Jürgen <j@x.example>\r\nSubject: Grüße\r\n\r\nb\r\n".encode("utf-8")
    yield b"From: a@x.example\nSubject: bare newlines\nTo: s@x.example\n\nb\n"
    yield b"From: a@x.example\r\nSubject: no body at all"


@pytest.mark.parametrize("data", list(_heads()))
def test_the_plain_header_reading_stores_what_the_feed_parser_stores(data, monkeypatch):
    fast = parse(data, received_at=NOW, bodies=False)
    monkeypatch.setattr(parse_mod, "_plain_head", lambda head: None)
    slow = parse(data, received_at=NOW, bodies=False)
    assert fast == slow

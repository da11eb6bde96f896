"""The hand-assembled MIME of mailbox/compose.py: what the standard library's reader makes of it."""

from __future__ import annotations

import email
import email.policy
from datetime import datetime, timedelta, timezone

import icalendar

from mailbox.compose import Composer
from mailbox.ical import build
from workflows.mailings.due import CalendarEvent
from workflows.model import Attachment, OutgoingMail

SUPPORT = "support@openatrium.example"
DATE = datetime(2026, 12, 29, 19, tzinfo=timezone.utc)
EVENT = CalendarEvent(method="REQUEST", uid="call-2027-01-12", sequence=0, start=DATE + timedelta(days=14),
                      end=DATE + timedelta(days=14, hours=1), summary="State of Open Atrium", description="d",
                      location="+1 202", attendee="ann@nuvole.example", attendee_name="Ann, \"A\"; B")


def out(**kw) -> OutgoingMail:
    base = dict(key="k", kind="call-invite", template="relay", to=("ann@nuvole.example",), thread_id=None,
                subject="s", body_text="hello\n", context={"staff_name": "S", "thread_id": "OA-1",
                                                           "support_name": "Open Atrium Support"})
    base.update(kw)
    return OutgoingMail(**base)


def test_files_and_a_calendar_make_a_mixed_message_with_the_alternatives_first():
    c = Composer(support_address=SUPPORT, support_name="Open Atrium Support")
    raw = c.render(out(calendar=EVENT, attachments=(Attachment(filename="Bericht für Köln.pdf",
                                                                  content_type="application/pdf", data=b"%PDF" * 500),)),
                   message_id="<m@x>", date=DATE)
    raw.decode("ascii")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert not msg.defects and all(not p.defects for p in msg.walk())
    assert msg.get_content_type() == "multipart/mixed"
    kinds = [p.get_content_type() for p in msg.walk()]
    assert kinds == ["multipart/mixed", "multipart/alternative", "text/plain", "text/html", "text/calendar",
                     "application/ics", "application/pdf"]
    files = {p.get_filename(): p.get_content() for p in msg.iter_attachments()}
    assert files["Bericht für Köln.pdf"] == b"%PDF" * 500
    cal = next(p for p in msg.walk() if p.get_content_type() == "text/calendar")
    assert cal.get_param("method") == "REQUEST"
    assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n").startswith("hello\n")


def test_a_long_subject_is_folded_only_past_the_hard_limit_and_reads_back_whole():
    c = Composer(support_address=SUPPORT, support_name="Open Atrium Support")
    subject = " ".join(f"word{i}" for i in range(300))
    raw = c.render(out(subject=subject), message_id="<m@x>", date=DATE)
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert str(email.message_from_bytes(raw, policy=email.policy.default)["Subject"]) == subject


def test_the_invitation_is_shared_but_the_attendee_is_each_recipients_own():
    a = build(EVENT, organizer=SUPPORT, organizer_name="Open Atrium Support", domain="openatrium.example", stamp=DATE)
    b = build(EVENT.__class__(**{**{f: getattr(EVENT, f) for f in EVENT.__dataclass_fields__},
                                 "attendee": "bo@ndi.example", "attendee_name": "Bo"}),
              organizer=SUPPORT, organizer_name="Open Atrium Support", domain="openatrium.example", stamp=DATE)
    for text, who, name in ((a, "ann@nuvole.example", 'Ann, "A"; B'), (b, "bo@ndi.example", "Bo")):
        ev = next(iter(icalendar.Calendar.from_ical(text).walk("VEVENT")))
        att = ev["attendee"]
        assert str(att) == f"mailto:{who}" and str(att.params["CN"]).replace("'", '"') in (name, name.replace('"', "'"))
        assert att.params["PARTSTAT"] == "NEEDS-ACTION" and att.params["RSVP"] == "TRUE"
        assert str(ev["uid"]) == "call-2027-01-12@openatrium.example"
        assert [c.name for c in ev.subcomponents] == ["VALARM"]
        assert text.index("ATTENDEE") < text.index("BEGIN:VALARM")


def test_quoted_printable_lines_stay_within_76_characters_and_read_back():
    """The C encoder can end a line with an encoded space past column 76 (RFC 2045's limit); such
    text goes through the standard library's other encoder, which breaks first."""
    import quopri

    from mailbox.compose import _encode_text

    for text in ["a" * 75 + " \nnext caf\u00e9", "b" * 74 + "\t\nx\u00e9", "x=y caf\u00e9 plain words " * 12 + "\n.\n=end \n"]:
        cte, body = _encode_text(text)
        assert cte == "quoted-printable"
        assert max(len(line) for line in body.split(b"\r\n")) <= 76
        assert quopri.decodestring(body.replace(b"\r\n", b"\n")).decode() == "\n".join(text.splitlines()) + "\n"


def test_quoted_printable_made_line_by_line_is_the_text_encoded_whole():
    import binascii
    import random

    from mailbox.compose import _encode_text

    rng = random.Random(2)
    alphabet = ["a", " ", "\t", "=", ".", "é", "From ", "\x00", "\x7f", "-", "漢", "a" * 1200]
    seen = set()
    for _ in range(3000):
        lines = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, rng.choice([5, 80, 300]))))
                 for _ in range(rng.randint(1, 6))]
        text = "\n".join(lines)
        cte, body = _encode_text(text)
        seen.add(cte)
        lines = text.encode().splitlines()
        if max(map(len, lines), default=0) <= 998 and text.isascii():
            assert cte == "7bit"
            continue
        sniff = b"\n".join(lines[:10]) + b"\n"  # the standard library's choice, as it was made before
        assert cte == ("base64" if len(binascii.b2a_qp(sniff, istext=True)) > len(binascii.b2a_base64(sniff))
                       else "quoted-printable"), text
        if cte == "quoted-printable":
            whole = binascii.b2a_qp(b"\n".join(text.encode().splitlines()) + b"\n", istext=True)
            if max(map(len, whole.split(b"\n"))) <= 76:  # else the standard library's other encoder, as before
                assert body == whole.replace(b"\n", b"\r\n"), text
    assert seen == {"7bit", "quoted-printable", "base64"}


def _attendee_line_through_an_event(attendee: str, name: str, partstat: str) -> str:
    """How the line was made before: a whole event around it, the event's own serialisation."""
    att = icalendar.vCalAddress(f"mailto:{attendee}")
    if name:
        att.params["cn"] = icalendar.vText(name)
    att.params["role"] = icalendar.vText("REQ-PARTICIPANT")
    att.params["partstat"] = icalendar.vText(partstat)
    att.params["rsvp"] = icalendar.vText("TRUE")
    ev = icalendar.Event()
    ev.add("attendee", att)
    text = ev.to_ical().decode("utf-8")
    return text[text.index("\r\n") + 2:text.rindex("END:VEVENT")]


def test_the_attendee_line_is_the_line_an_event_would_write_for_any_name():
    import random

    from mailbox.ical import _attendee_line

    rng = random.Random(5)
    alphabet = 'abcdefgh ,;:"\'\\^éüß漢字😀-.'
    for _ in range(2000):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 90)))
        # Quoted local parts may hold ; , and \\ (a calendar address is not escaped as text).
        address = "".join(rng.choice("abc.+-_;,\\") for _ in range(rng.randint(1, 70))) + "@nuvole.example"
        partstat = rng.choice(["NEEDS-ACTION", "ACCEPTED"])
        assert _attendee_line(address, name, partstat) == _attendee_line_through_an_event(address, name, partstat)


def test_the_attendee_line_made_by_hand_for_plain_names_is_the_line_an_event_would_write():
    import random

    from mailbox import ical

    rng = random.Random(11)
    words = ["Ana", "Rossi", "O", "Li", "Bartholomew", "Z", "MacAllister", "de", "la", "x" * 70]
    by_hand = 0
    for _ in range(3000):
        name = " ".join(rng.choice(words) for _ in range(rng.randint(0, 6)))
        local = "".join(rng.choice("abcXYZ019._+=-") for _ in range(rng.randint(1, 80)))
        address = f"{local}@{rng.choice(['nuvole.example', 'a.b.c.example', 'x-y.example'])}"
        partstat = rng.choice(["NEEDS-ACTION", "ACCEPTED", "TENTATIVE"])
        plain = bool(ical._PLAIN_ADDRESS.match(address) and (not name or ical._PLAIN_NAME.match(name)))
        by_hand += plain
        assert ical._attendee_line(address, name, partstat) == _attendee_line_through_an_event(address, name, partstat)
    assert by_hand > 2500  # the forms made by hand were tried, not only the fall-back


def test_html_made_block_by_block_is_the_page_css_inline_makes_of_the_whole(monkeypatch):
    """Every kind of mail for every roster shape, and hostile text: the HTML part made from separately
    inlined pieces (remembered across recipients) is byte for byte the page inlined whole."""
    import random

    from mail_kinds import SHAPES, partner_mails, staff_mails
    from mailbox.compose import TEMPLATES_DIR
    from mailbox.html_mail import HtmlMail

    checked = []
    fast = HtmlMail.render

    def both(self, text, **kw):
        got = fast(self, text, **kw)
        assert got == self.page(text, **kw), kw.get("kind")
        checked.append(kw.get("kind"))
        return got

    monkeypatch.setattr(HtmlMail, "render", both)
    for shape in SHAPES:
        partner_mails(shape)
    staff_mails()
    assert len(checked) > 100 and len(set(checked)) >= 19  # every kind, many times

    html = HtmlMail(TEMPLATES_DIR, program_name="Open Atrium Partners Program")
    pieces = ["Hello Ana,", "  When:  Tuesday https://x.example/a?b=c (60 minutes)\n  Join:  https://meet.example/soa",
              "- one\n- two https://a.example\n    continued", "Steps:\n- a\n- b", "Config:\n  $conf['x'] = 1;\n  <b>",
              "<?php print 'x'; ?>\n<div>", "----- Original message -----\nFrom: a@b.example\n\n> <script>x</script>",
              "-- \nAna Rossi\nNorthwind", "Plain & <b>bold</b> \"q\" ünï 漢字 😀 mail a.b@c.example.</td></tr>",
              "This is an automated message from Support (support@example.test).", "A line\nwith breaks\nkept"]
    rng = random.Random(7)
    for _ in range(150):
        text = "\n\n".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))
        kw = dict(kind=rng.choice(["ack", "relay", "renewal", "training-announcement", "welcome"]),
                  subject=rng.choice(["S <x>", "Hello & bye", "ü"]), calendar=None, support_address=SUPPORT,
                  support_name="Open <Atrium>", personal=rng.random() < 0.3,
                  context={"pay_url": "https://pay.example/x", "amount": "$4,000", "partner_name": "P & Q",
                           "training_url": rng.choice(["", "https://t.example"]), "training_id": "t1", "when": "Tue",
                           "profile_url": "https://p.example"})
        assert html.render(text, **kw) == html.page(text, **kw)


def test_paragraphs_and_preheaders_made_by_their_shape_are_the_pages_made_whole():
    """The recipients of a mailing differ in a name or a token: a paragraph is inlined once per shape
    (its plain words as marks) and the words put back. Whatever the words sit next to (links, marks of
    our own, markup, quotes, non-ASCII), the page is byte for byte the one inlined whole."""
    import random
    import re

    from mailbox.compose import TEMPLATES_DIR
    from mailbox.html_mail import HtmlMail

    html = HtmlMail(TEMPLATES_DIR, program_name="Open Atrium Partners Program")
    shaped = []
    by_shape = html._paragraph
    html._paragraph = lambda lines, title: shaped.append(made := by_shape(lines, title)) or made  # type: ignore[method-assign]
    tokens = ["Hello", "Ana", "Rossi", "O'Brien", "Zoë", "42", "x1", "a.b@c.example", "Ana@", "@example.com",
              "https://h.example/p?q=1", "https://h.example/p.", "xhttps://h.example", "support@example.test.",
              "&", "<b>", '"', "foo_bar", "-", ".", ",", "(", ")", "\ue000", "calls.YzBAcGFy.df5c9922", "漢字",
              "mailto:a@b.example", "&amp;", "- item"]
    rng = random.Random(11)

    def line() -> str:
        return "".join(rng.choice(tokens) + rng.choice(["", " ", " ", "  ", ": "]) for _ in range(rng.randint(1, 9)))

    shapes = [line() for _ in range(12)]
    for _ in range(400):
        # Lines of a few shapes, with other words each time: the shapes are remembered, the words are not.
        base = rng.choice(shapes)
        words = iter(rng.choice(["Ana", "Bob", "Kim", "Lee", "Q7", "x", "Zed99"]) for _ in range(999))
        para = re.sub(r"[A-Za-z0-9]+", lambda m: next(words) if rng.random() < 0.5 else m.group(0), base)
        text = "\n\n".join([rng.choice(["Hello Ana,", "Hello"]), para, line(), para])
        kw = dict(kind="ack", subject="S", calendar=None, support_address=SUPPORT, support_name="Support",
                  personal=rng.random() < 0.3, context={})
        assert html.render(text, **kw) == html.page(text, **kw), text
    # Made by shape most of the time, as it is where a shape would not say the same.
    assert sum(x is not None for x in shaped) > 300 and None in shaped

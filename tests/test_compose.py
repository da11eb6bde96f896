"""mailbox.compose: OutgoingMail -> RFC 5322 bytes that any server accepts and that say what was decided."""

from __future__ import annotations

import email
import email.policy
import email.utils
import hashlib
import re
from datetime import datetime, timezone

import pytest
from jinja2 import UndefinedError

from tests.promise_helpers import proven
from mailbox.compose import Composer, text_to_html
from mailbox.parse import html_to_text, parse
from workflows import intake
from workflows.model import Contact, OutgoingMail, Partner
from workflows.senders import Roster, classify

SUPPORT = "support@openatrium.example"
STAFF = "young@openatrium.example"
DATE = datetime(2026, 11, 30, 15, 0, tzinfo=timezone.utc)
NOW = DATE


@pytest.fixture
def composer() -> Composer:
    return Composer(support_address=SUPPORT, support_name="Open Atrium Support")


def relay(**kw) -> OutgoingMail:
    base = dict(
        key="relay:OA-1:<m@x>", kind="relay", template="relay", to=("antonio@nuvole.example",),
        thread_id="OA-1", subject="Re: [OA-1] Features revert fails", from_name="Young Hahn via Open Atrium Support",
        in_reply_to="<p2@nuvole.example>", references=("<p1@nuvole.example>", "<p2@nuvole.example>"),
        automatic=False, body_text="Run drush fra and clear the cache.\n",
        context={"staff_name": "Young Hahn", "thread_id": "OA-1", "support_name": "Open Atrium Support"},
    )
    base.update(kw)
    return OutgoingMail(**base)


def render(composer: Composer, out: OutgoingMail, mid: str = "<m1@openatrium.example>") -> bytes:
    return composer.render(out, message_id=mid, date=DATE)


def parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def parts(raw: bytes) -> tuple[str, str]:
    msg = parsed(raw)
    return (msg.get_body(preferencelist=("plain",)).get_content(),
            msg.get_body(preferencelist=("html",)).get_content())


def assert_wire_clean(raw: bytes) -> None:
    raw.decode("ascii")  # 7-bit only: storable as text, sendable without SMTPUTF8/8BITMIME
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF line ends only
    msg = parsed(raw)
    assert not msg.defects and all(not p.defects for p in msg.walk())


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


# -- the wire format ---------------------------------------------------------------------------------------------
def test_render_is_parseable_rfc5322(composer):
    raw = render(composer, relay())
    assert_wire_clean(raw)
    msg = parsed(raw)
    assert msg["From"].addresses[0].addr_spec == SUPPORT  # always the support address
    assert msg["From"].addresses[0].display_name == "Young Hahn via Open Atrium Support"
    assert msg["To"].addresses[0].addr_spec == "antonio@nuvole.example"
    assert str(msg["Subject"]) == "Re: [OA-1] Features revert fails"
    assert msg["Message-ID"] == "<m1@openatrium.example>"
    assert email.utils.parsedate_to_datetime(msg["Date"]) == DATE
    assert msg["X-Partnerdesk-Thread"] == "OA-1" and msg["X-Partnerdesk-Kind"] == "relay"
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


def test_our_own_parser_reads_it_back(composer):
    m = parse(render(composer, relay()), received_at=NOW)
    assert m.message_id == "<m1@openatrium.example>"
    assert m.from_addr == SUPPORT
    assert m.in_reply_to == ("<p2@nuvole.example>",)
    assert "Run drush fra" in m.text and m.defects == ()


def test_non_ascii_names_subject_and_body_stay_7bit(composer):
    out = relay(from_name="Jürgen Müller via Open Atrium Support", subject="Re: [OA-1] Échec: ça ne marche pas ✓",
                body_text="Grüße aus Köln — 日本語のテキスト\n" + "ä" * 3000 + "\n",
                context={"staff_name": "Jürgen", "thread_id": "OA-1", "support_name": "Open Atrium Support"})
    raw = render(composer, out)
    assert_wire_clean(raw)
    msg = parsed(raw)
    assert msg["From"].addresses[0].display_name == "Jürgen Müller via Open Atrium Support"
    assert str(msg["Subject"]) == "Re: [OA-1] Échec: ça ne marche pas ✓"
    text, html = parts(raw)
    assert "Grüße aus Köln — 日本語のテキスト" in text and "ä" * 3000 in text
    assert "日本語のテキスト" in html


def test_support_name_non_ascii(composer):
    c = Composer(support_address=SUPPORT, support_name="Ōpen Atrium Sûpport")
    raw = render(c, relay(from_name=""))
    assert_wire_clean(raw)
    msg = parsed(raw)
    assert msg["From"].addresses[0].display_name == "Ōpen Atrium Sûpport"
    assert msg["Reply-To"].addresses[0].display_name == "Ōpen Atrium Sûpport"


# -- headers as decided -------------------------------------------------------------------------------------------
def test_threading_headers(composer):
    refs = tuple(f"<r{i}@x.example>" for i in range(25)) + ("<r3@x.example>",)
    msg = parsed(render(composer, relay(in_reply_to="<r24@x.example>", references=refs)))
    assert msg["In-Reply-To"] == "<r24@x.example>"
    sent = msg["References"].split()
    assert sent == [f"<r{i}@x.example>" for i in range(5, 25)]  # deduped, the last 20 kept, order kept


def test_no_threading_headers_when_none_decided(composer):
    msg = parsed(render(composer, relay(in_reply_to=None, references=())))
    assert "In-Reply-To" not in msg and "References" not in msg


def test_reply_to_support(composer):
    msg = parsed(render(composer, relay()))
    assert msg["Reply-To"].addresses[0].addr_spec == SUPPORT
    assert "Reply-To" not in parsed(render(composer, relay(reply_to_support=False)))


def test_auto_submitted_only_on_automatic_mail(composer):
    assert "Auto-Submitted" not in parsed(render(composer, relay(automatic=False)))  # a person wrote it
    msg = parsed(render(composer, relay(automatic=True, auto_kind="auto-generated")))
    assert msg["Auto-Submitted"] == "auto-generated"
    assert parsed(render(composer, relay(automatic=True)))["Auto-Submitted"] == "auto-replied"


def test_extra_headers_and_no_thread_header_without_thread(composer):
    msg = parsed(render(composer, relay(thread_id=None, extra_headers=(("X-Auto-Response-Suppress", "All"),))))
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert "X-Partnerdesk-Thread" not in msg


@pytest.mark.parametrize("field", ["subject", "from_name", "extra"])
@pytest.mark.parametrize("evil", ["hi\r\nBcc: victim@evil.example", "hi\nBcc: victim@evil.example",
                                  "hi\rBcc: victim@evil.example", "hi\r\n\r\n<html>body injected"])
def test_crlf_in_header_values_cannot_inject(composer, field, evil):
    kw = {"subject": dict(subject=evil), "from_name": dict(from_name=evil),
          "extra": dict(extra_headers=(("X-Note", evil),))}[field]
    raw = render(composer, relay(**kw))
    assert_wire_clean(raw)
    msg = parsed(raw)
    assert "Bcc" not in msg
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert not re.search(rb"^Bcc:", head, re.MULTILINE | re.IGNORECASE)
    assert msg["To"].addresses[0].addr_spec == "antonio@nuvole.example"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


def test_crlf_in_recipient_is_refused_not_injected(composer):
    with pytest.raises(ValueError):
        render(composer, relay(to=("a@x.example\r\nBcc: victim@evil.example",)))


# -- the two alternatives -----------------------------------------------------------------------------------------
def words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


def says_the_same(html: str, text: str) -> bool:
    """Every word of the text part, in order, in the HTML part (which adds the program's name, a button, a footer)."""
    shown = iter(words(html_to_text(html)))
    return all(w in shown for w in words(text))


def test_text_and_html_agree(composer):
    out = relay(body_text="First paragraph,\nsecond line.\n\n\nSecond paragraph & more < less > \"quoted\".\n")
    text, html = parts(render(composer, out))
    assert says_the_same(html, text)
    assert html.count("<p") == 3  # two paragraphs of the body, one signature
    assert "<br>second line" in html  # a person's own line break stays in a relay


def test_html_escapes_partner_text(composer):
    out = relay(body_text='<script>alert("x")</script> <b>bold</b> & <img src=x onerror=alert(1)>\n')
    text, html = parts(render(composer, out))
    assert '<script>alert("x")</script>' in text  # the text part is the text, as written
    assert "<script>" not in html and "<img" not in html and "<b>" not in html
    assert '&lt;script&gt;alert("x")&lt;/script&gt;' in html or "&lt;script&gt;alert(&quot;x&quot;)" in html
    assert "&amp;" in html


def test_text_to_html_direct():
    html = text_to_html("a < b\n\nc & d\ne")
    assert re.search(r"<p[^>]*>a &lt; b</p>", html) and re.search(r"<p[^>]*>c &amp; d e</p>", html)
    assert html.startswith("<!DOCTYPE html>") and "<style" not in html  # a template's hard wrap is no <br>


@pytest.mark.parametrize("payload", ["{{ 7*7 }}", "{% for x in range(3) %}{{ x }}{% endfor %}",
                                     "{{ ''.__class__.__mro__[1].__subclasses__() }}", "{{ support_name }}"])
def test_partner_text_with_jinja_syntax_is_not_evaluated(composer, payload):
    # In every place partner-written text reaches a template: a relayed body, the subject and name in an ack.
    raw = render(composer, relay(body_text=f"before {payload} after\n"))
    text, html = parts(raw)
    assert f"before {payload} after" in text  # verbatim: nothing was evaluated
    assert "49" not in text and "Open Atrium Support after" not in text

    ack = OutgoingMail(key="ack:OA-2", kind="ack", template="ack", to=("a@x.example",), thread_id="OA-2",
                       subject="Re: [OA-2] x", context={
                           "thread_id": "OA-2", "name": payload, "subject": payload, "due": "Tuesday",
                           "partner_name": "", "known_partner": True, "late": False, "support_address": SUPPORT,
                           "support_name": "Open Atrium Support"})
    text, _ = parts(render(composer, ack))
    assert f"Hello {payload}," in text
    assert f'"{payload}"' in text


def test_missing_template_variable_raises(composer):
    with pytest.raises(UndefinedError, match="staff_name"):
        render(composer, relay(context={"thread_id": "OA-1", "support_name": "S"}))


def test_missing_variable_in_if_raises(tmp_path):
    (tmp_path / "t.txt.j2").write_text("{% if flag %}yes{% endif %}\n")
    c = Composer(support_address=SUPPORT, support_name="S", templates_dir=tmp_path)
    with pytest.raises(UndefinedError):
        c.render_text("t", {})
    assert c.render_text("t", {"flag": True}).strip() == "yes"


def test_missing_template_is_a_clear_error(composer):
    with pytest.raises(RuntimeError, match="no_such_kind.txt.j2"):
        render(composer, relay(template="no_such_kind"))


def test_sandbox_blocks_unsafe_template_code(tmp_path):
    from jinja2.exceptions import SecurityError

    (tmp_path / "evil.txt.j2").write_text("{{ x.__class__.__mro__[1].__subclasses__() }}\n")
    c = Composer(support_address=SUPPORT, support_name="S", templates_dir=tmp_path)
    with pytest.raises(SecurityError):
        c.render_text("evil", {"x": ""})


# -- the intake's templates with the contexts the intake really builds --------------------------------------------
ROSTER = Roster.build([
    Partner(id="nuvole", name="Nuvole Web", plan="standard", renews_on=None, contacts=(
        Contact(partner_id="nuvole", name="Antonio De Marco", email="antonio@nuvole.example",
                trained_on=datetime(2026, 6, 12).date()),
        Contact(partner_id="nuvole", name="Claudia Rossi", email="billing@nuvole.example"),
    )),
])
SETTINGS = intake.IntakeSettings(support_address=SUPPORT, staff=frozenset({STAFF}))


def inbound(frm: str, subject: str, body: str, **headers: str) -> bytes:
    extra = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    mid = f"<{hashlib.sha1(body.encode()).hexdigest()[:16]}@mail.example>"
    return (f"From: {frm}\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\nMessage-ID: {mid}\r\n"
            f"{extra}Content-Type: text/plain; charset=utf-8\r\n\r\n{body}").encode()


def decide(raw: bytes, **cand):
    mail = parse(raw, received_at=NOW)
    sender = classify(mail.from_addr, ROSTER, SETTINGS.staff)
    if sender.kind == "staff":  # a reply to our notification, proven by its reply key
        cand.setdefault("staff_proof", proven(mail.from_addr))
    return intake.decide(mail, sender, intake.Candidates(**cand), ROSTER, SETTINGS)


def check_rendered(composer: Composer, out: OutgoingMail) -> tuple[str, str]:
    raw = render(composer, out, mid=f"<{out.kind}.1@openatrium.example>")
    assert_wire_clean(raw)
    text, html = parts(raw)
    assert says_the_same(html, text)
    msg = parsed(raw)
    assert [a.addr_spec for a in msg["To"].addresses] == list(out.to)
    return text, html


def test_ack_and_staff_notification_for_a_seat_holder(composer):
    d = decide(inbound("Antonio De Marco <antonio@nuvole.example>", "Features revert <fails> {{ 7*7 }}",
                       "drush fra fails: <b>PDO</b> {{ 7*7 }}\n"))
    by_template = {o.template: o for o in d.outgoing}
    assert set(by_template) == {"ack", "staff_notification"}

    text, _ = check_rendered(composer, by_template["ack"])
    assert "Hello Antonio De Marco," in text
    assert '"Features revert <fails> {{ 7*7 }}"' in text
    assert d.thread.id in text and "49" not in text
    msg = parsed(render(composer, by_template["ack"]))
    assert msg["Auto-Submitted"] == "auto-replied" and msg["X-Auto-Response-Suppress"] == "All"

    text, html = check_rendered(composer, by_template["staff_notification"])
    assert "Nuvole Web (nuvole)" in text and "antonio@nuvole.example" in text
    assert "holds a seat" in text and "drush fra fails: <b>PDO</b> {{ 7*7 }}" in text
    assert "&lt;b&gt;PDO&lt;/b&gt;" in html
    assert parsed(render(composer, by_template["staff_notification"]))["Auto-Submitted"] == "auto-generated"


@pytest.mark.parametrize("frm, known", [("Claudia <billing@nuvole.example>", True),
                                        ("Stranger <who@elsewhere.example>", False)])
def test_channel_info_for_contacts_without_a_seat(composer, frm, known):
    d = decide(inbound(frm, "Can you help?", "Please help.\n"))
    info = [o for o in d.outgoing if o.template == "channel_info"]
    assert len(info) == 1
    text, _ = check_rendered(composer, info[0])
    assert "third-tier support channel" in text
    assert ("Nuvole Web" in text) == known
    assert ("We do not recognise your address" in text) == (not known)


def test_relay_of_a_staff_answer(composer):
    first = decide(inbound("Antonio De Marco <antonio@nuvole.example>", "Revert fails", "help\n"))
    thread = first.thread
    answer = inbound(f"Young Hahn <{STAFF}>", f"Re: [{thread.id}] Revert fails",
                     "Run drush fra. {{ 7*7 }} <script>x</script>\n\nOn Mon, Support wrote:\n> help\n")
    d = decide(answer, by_reference=thread)
    relays = [o for o in d.outgoing if o.template == "relay"]
    assert len(relays) == 1
    text, html = check_rendered(composer, relays[0])
    assert text.startswith("Run drush fra. {{ 7*7 }} <script>x</script>")
    assert "> help" not in text  # the quoted history is not relayed
    assert "Young Hahn, Open Atrium Support" in text
    assert "&lt;script&gt;" in html
    msg = parsed(render(composer, relays[0]))
    assert "Auto-Submitted" not in msg  # a person's answer: the partner may reply to it
    assert msg["In-Reply-To"] == thread.messages[0]
    assert msg["From"].addresses[0].display_name == "Young Hahn via Open Atrium Support"

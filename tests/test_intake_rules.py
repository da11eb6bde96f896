"""The intake rules on plain data: who is writing, which thread, what to send. No servers, no disk."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from workflows import msgids
from workflows.autoreply import automatic_reason
from tests.promise_helpers import proven
from workflows.intake import Candidates, IntakeSettings, choose_thread, decide
from workflows.model import Contact, InboundMail, Partner, Thread
from workflows.senders import Roster, classify

NY = ZoneInfo("America/New_York")
SECRET = b"s3cret"
SUPPORT = "support@openatrium.example"
STAFF = frozenset({"young@devseed.example", "eric@devseed.example"})
SETTINGS = IntakeSettings(support_address=SUPPORT, staff=STAFF)

PARTNERS = [
    Partner(id="nuvole", name="Nuvole", plan="standard", renews_on=date(2027, 3, 31), contacts=(
        Contact(partner_id="nuvole", name="Antonio", email="antonio@nuvole.example", trained_on=date(2026, 6, 1)),
        Contact(partner_id="nuvole", name="Claudia", email="claudia@nuvole.example"),
    )),
    Partner(id="mark", name="Mark's", plan="solo", renews_on=None, contacts=(
        Contact(partner_id="mark", name="Mark", email="mark@gmail.com", trained_on=date(2026, 6, 1)),
    )),
    Partner(id="a", name="Agency", plan="standard", renews_on=None, contacts=(
        Contact(partner_id="a", name="X", email="x@shared.example"),)),
    Partner(id="b", name="Client", plan="standard", renews_on=None, contacts=(
        Contact(partner_id="b", name="Y", email="y@shared.example"),)),
]
ROSTER = Roster.build(PARTNERS)


def inbound(**kw) -> InboundMail:
    base = dict(message_id="<req1@nuvole.example>", raw_sha256="0" * 64,
                received_at=datetime(2026, 11, 30, 10, 0, tzinfo=NY), from_addr="antonio@nuvole.example",
                from_name="Antonio", to=(SUPPORT,), subject="Spaces broken", text="Help", reply_text="Help")
    base.update(kw)
    return InboundMail(**base)


def thread(**kw) -> Thread:
    base = dict(id="OA-7", number=7, partner_id="nuvole", requester="antonio@nuvole.example", sender_kind="partner",
                seat=True, subject="Spaces broken", state="new", created_at=datetime(2026, 11, 30, 10, tzinfo=NY),
                messages=("<req1@nuvole.example>",), partner_messages=("<req1@nuvole.example>",))
    base.update(kw)
    return Thread(**base)


# -- who is writing ------------------------------------------------------------------
@pytest.mark.parametrize("address, kind, partner, seat", [
    ("antonio@nuvole.example", "partner", "nuvole", True),
    ("Antonio@Nuvole.Example", "partner", "nuvole", True),
    ("claudia@nuvole.example", "partner", "nuvole", False),  # on the roster, no training
    ("giulia@nuvole.example", "partner", "nuvole", False),  # partner's domain, not on the roster
    ("mark@gmail.com", "partner", "mark", True),  # exact address works on a public provider...
    ("someone@gmail.com", "unknown", None, False),  # ...but the domain proves nothing
    ("z@shared.example", "unknown", None, False),  # a domain two partners share proves nothing
    ("young@devseed.example", "staff", None, False),
    ("nobody@elsewhere.example", "unknown", None, False),
])
def test_classify(address, kind, partner, seat):
    s = classify(address, ROSTER, STAFF)
    assert (s.kind, s.partner_id, s.seat) == (kind, partner, seat)


# -- which thread -------------------------------------------------------------------
def test_reference_wins_over_tag():
    t7, t9 = thread(), thread(id="OA-9", number=9)
    sender = classify("antonio@nuvole.example", ROSTER, STAFF)
    chosen, _ = choose_thread(inbound(), sender, Candidates(by_reference=t7, by_tag=t9))
    assert chosen is t7


@pytest.mark.parametrize("address, joins", [
    ("antonio@nuvole.example", True),  # the requester
    ("giulia@nuvole.example", True),  # same partner (by domain)
    ("young@devseed.example", True),  # staff
    ("someone@gmail.com", False),  # a stranger typing [OA-7] does not get into the thread
    ("y@shared.example", False),
])
def test_subject_tag_alone_needs_a_sender_who_belongs(address, joins):
    sender = classify(address, ROSTER, STAFF)
    chosen, why = choose_thread(inbound(from_addr=address, subject="Re: [OA-7] x"), sender, Candidates(by_tag=thread()))
    assert (chosen is not None) == joins, why


def test_message_ids_name_their_thread_and_cannot_be_forged():
    mid = msgids.make_message_id(SECRET, thread_number=12, kind="ack", key="k1", domain="openatrium.example")
    assert mid == msgids.make_message_id(SECRET, thread_number=12, kind="ack", key="k1", domain="openatrium.example")
    assert mid != msgids.make_message_id(SECRET, thread_number=12, kind="ack", key="k2", domain="openatrium.example")
    assert msgids.thread_of_message_id(SECRET, mid) == "OA-12"
    assert msgids.thread_of_message_id(b"other", mid) is None
    forged = mid.replace("oa-12.", "oa-13.")
    assert msgids.thread_of_message_id(SECRET, forged) is None
    assert msgids.thread_of_message_id(SECRET, "<random@example.com>") is None


def test_subject_helpers():
    assert msgids.tagged_thread("Re: [oa-42] hi") == "OA-42"
    assert msgids.with_tag("Re: [OA-3] x", "OA-3") == "Re: [OA-3] x"
    assert msgids.reply_subject("Help", "OA-3") == "Re: [OA-3] Help"
    assert msgids.reply_subject("", "OA-3") == "Re: [OA-3] (no subject)"


# -- automatic mail -----------------------------------------------------------------------
@pytest.mark.parametrize("kw, automatic", [
    ({}, False),
    ({"auto_submitted": "no"}, False),
    ({"auto_submitted": "auto-replied"}, True),
    ({"auto_submitted": "auto-generated; owner-email=x@y"}, True),
    ({"precedence": "bulk"}, True),
    ({"precedence": "list"}, True),
    ({"precedence": "junk"}, True),
    ({"return_path": ""}, True),
    ({"return_path": "antonio@nuvole.example"}, False),
    ({"from_addr": "MAILER-DAEMON@x.example".lower()}, True),
    ({"from_addr": "postmaster@x.example"}, True),
    ({"from_addr": "owner-list@x.example"}, True),
    ({"list_id": "<drupal.lists.example>"}, True),
    ({"other_auto_headers": ("X-Autoreply",)}, True),
    ({"from_addr": ""}, True),
    ({"content_type": "multipart/report"}, True),
])
def test_automatic_reason(kw, automatic):
    assert (automatic_reason(inbound(**kw)) is not None) == automatic


# -- what is decided -------------------------------------------------------------------------
def _decide(mail, *, cand=None, history=False, settings=SETTINGS):
    """As the service decides; staff mail comes proven by its reply key unless ``cand`` says otherwise."""
    sender = classify(mail.from_addr, ROSTER, settings.staff)
    cand = cand or Candidates(next_number=7)
    if sender.kind == "staff" and cand.staff_proof is None:
        cand = replace(cand, staff_proof=proven(mail.from_addr))
    return decide(mail, sender, cand, ROSTER, settings, history=history)


def test_new_request_from_a_seat_holder_is_acked_and_staff_told():
    d = _decide(inbound())
    assert d.action == "thread-new" and d.thread.id == "OA-7" and d.thread.state == "new"
    assert d.thread.due_at == datetime(2026, 12, 1, 10, 0, tzinfo=NY)
    ack, note = d.outgoing
    assert ack.kind == "ack" and ack.to == ("antonio@nuvole.example",) and ack.in_reply_to == "<req1@nuvole.example>"
    assert ack.subject == "Re: [OA-7] Spaces broken" and ack.context["due"] == "Tuesday, December 1, 10:00 AM ET"
    assert ("X-Auto-Response-Suppress", "All") in ack.extra_headers and ack.auto_kind == "auto-replied"
    assert note.kind == "notify" and set(note.to) == STAFF and note.reply_to_support
    assert note.context["seat"] == "holds a seat" and note.context["due"] == ack.context["due"]


@pytest.mark.parametrize("received, due_text", [
    (datetime(2026, 11, 25, 10, 0, tzinfo=NY), "Friday, November 27, 10:00 AM ET"),  # Thanksgiving skipped
    (datetime(2027, 1, 15, 16, 0, tzinfo=NY), "Tuesday, January 19, 4:00 PM ET"),  # MLK Day skipped
    (datetime(2026, 12, 5, 11, 0, tzinfo=NY), "Tuesday, December 8, 9:00 AM ET"),  # Saturday
])
def test_ack_promises_the_business_day_deadline(received, due_text):
    assert _decide(inbound(received_at=received)).outgoing[0].context["due"] == due_text


def test_no_seat_gets_channel_information_and_no_promise():
    d = _decide(inbound(from_addr="claudia@nuvole.example"))
    assert d.thread.due_at is None and d.thread.seat is False
    assert d.outgoing[0].template == "channel_info" and d.outgoing[0].context["known_partner"] is True
    d = _decide(inbound(from_addr="someone@gmail.com"))
    assert d.outgoing[0].template == "channel_info" and d.outgoing[0].context["known_partner"] is False
    assert "unknown sender" in d.outgoing[1].context["seat"]


def test_automatic_and_rate_limited_mail_is_not_acked():
    d = _decide(inbound(auto_submitted="auto-replied"))
    assert [o.kind for o in d.outgoing] == ["notify"] and "Auto-Submitted" in d.reason
    d = _decide(inbound(), cand=Candidates(next_number=7, recent_acks=3))
    assert [o.kind for o in d.outgoing] == ["notify"] and "already sent" in d.reason
    d = _decide(inbound(), cand=Candidates(next_number=7, recent_acks=2))
    assert [o.kind for o in d.outgoing] == ["ack", "notify"]


def test_our_own_mail_coming_back_is_skipped():
    assert _decide(inbound(), cand=Candidates(own_message=True)).action == "skip"
    assert _decide(inbound(from_addr=SUPPORT)).action == "skip"


def test_history_is_recorded_without_acting():
    d = _decide(inbound(), history=True)
    assert d.action == "history" and d.outgoing == () and d.thread.due_at is None and d.thread.state == "closed"


def test_follow_up_while_waiting_keeps_the_clock_and_sends_no_ack():
    t = thread(due_at=datetime(2026, 12, 1, 10, tzinfo=NY))
    m = inbound(message_id="<req2@nuvole.example>", in_reply_to=("<req1@nuvole.example>",),
                received_at=datetime(2026, 11, 30, 15, tzinfo=NY))
    d = _decide(m, cand=Candidates(by_reference=t))
    assert d.action == "thread-join" and d.thread.state == "new" and d.thread.due_at == t.due_at
    assert [o.kind for o in d.outgoing] == ["notify"] and d.outgoing[0].context["event"] == "follow-up"
    assert d.thread.messages[-1] == "<req2@nuvole.example>"


def test_follow_up_after_an_answer_starts_a_new_clock():
    t = thread(state="waiting_on_partner", first_response_at=datetime(2026, 11, 30, 11, tzinfo=NY))
    m = inbound(message_id="<req3@nuvole.example>", received_at=datetime(2026, 12, 4, 16, tzinfo=NY))  # Friday
    d = _decide(m, cand=Candidates(by_reference=t))
    assert d.thread.state == "waiting_on_staff" and d.thread.due_at == datetime(2026, 12, 7, 16, tzinfo=NY)
    assert [o.kind for o in d.outgoing] == ["notify"]


def staff_reply(**kw):
    base = dict(message_id="<r1@devseed.example>", from_addr="young@devseed.example", from_name="Young Hahn",
                to=(SUPPORT,), subject="Re: [OA-7] New: Spaces broken", in_reply_to=("<oa-7.notify@x>",),
                text="Try drush cc all.\n\nOn Mon, X wrote:\n> Help", reply_text="Try drush cc all.",
                received_at=datetime(2026, 11, 30, 12, tzinfo=NY))
    base.update(kw)
    return inbound(**base)


def test_staff_answer_is_relayed_in_the_partners_thread():
    t = thread(partner_messages=("<req1@nuvole.example>", "<oa-7.ack@x>"))
    d = _decide(staff_reply(), cand=Candidates(by_reference=t))
    assert d.action == "answer" and d.thread.state == "waiting_on_partner" and d.thread.due_at is None
    assert d.thread.first_response_at == datetime(2026, 11, 30, 12, tzinfo=NY)
    assert d.thread.first_responder == "young@devseed.example"
    [relay] = d.outgoing
    assert relay.to == ("antonio@nuvole.example",) and relay.from_name == "Young Hahn via Open Atrium Support"
    assert relay.in_reply_to == "<oa-7.ack@x>" and relay.references == t.partner_messages
    assert relay.body_text == "Try drush cc all.\n" and relay.automatic is False


def test_second_answer_keeps_the_first_response_time():
    t = thread(state="waiting_on_partner", first_response_at=datetime(2026, 11, 30, 11, tzinfo=NY),
               first_responder="eric@devseed.example")
    d = _decide(staff_reply(), cand=Candidates(by_reference=t))
    assert d.thread.first_responder == "eric@devseed.example"


def test_reply_all_is_recorded_not_sent_twice():
    d = _decide(staff_reply(cc=("antonio@nuvole.example",)), cand=Candidates(by_reference=thread()))
    assert d.action == "answer" and d.outgoing == () and d.thread.state == "waiting_on_partner"


def test_note_stays_internal_and_keeps_the_clock():
    t = thread(due_at=datetime(2026, 12, 1, 10, tzinfo=NY))
    d = _decide(staff_reply(reply_text="#note ask Young", text="#note ask Young"), cand=Candidates(by_reference=t))
    assert d.action == "note" and d.thread.state == "new" and d.thread.due_at == t.due_at
    [confirm] = d.outgoing  # to the writer alone, saying the partner did not get it
    assert confirm.to == ("young@devseed.example",) and "NOT sent to the partner" in confirm.context["result"]


def test_staff_mail_outside_a_thread_is_recorded_without_ack():
    d = _decide(staff_reply(in_reply_to=(), subject="Heads-up"))
    assert d.action == "thread-new" and d.outgoing == ()


def test_mail_that_reaches_us_after_its_deadline_is_not_promised_the_past():
    received = datetime(2026, 11, 23, 10, tzinfo=NY)  # rescued from Junk a week later
    d = _decide(inbound(received_at=received), cand=Candidates(next_number=7, now=datetime(2026, 12, 1, 9, tzinfo=NY)))
    ack = d.outgoing[0]
    assert ack.context["late"] is True and d.thread.due_at == datetime(2026, 11, 24, 10, tzinfo=NY)
    assert _decide(inbound(), cand=Candidates(next_number=7, now=datetime(2026, 11, 30, 10, 5, tzinfo=NY))
                   ).outgoing[0].context["late"] is False


def test_staff_out_of_office_is_recorded_not_relayed():
    t = thread(due_at=datetime(2026, 12, 1, 10, tzinfo=NY))
    d = _decide(staff_reply(auto_submitted="auto-replied", reply_text="I am away until Dec 14"),
                cand=Candidates(by_reference=t))
    assert d.action == "auto-reply" and d.outgoing == () and d.thread.state == "new"
    assert d.thread.due_at == t.due_at and d.thread.first_response_at is None
    # X-Auto-Response-Suppress alone is set by some clients on mail a person wrote: still an answer.
    d = _decide(staff_reply(other_auto_headers=("X-Auto-Response-Suppress",)), cand=Candidates(by_reference=t))
    assert d.action == "answer"


def test_escalation_people_are_recognised_as_staff_but_not_notified():
    s = replace(SETTINGS, team=frozenset({"lead@devseed.example"}))
    sender = classify("lead@devseed.example", ROSTER, s.recognised_staff)
    assert sender.kind == "staff"
    d = decide(inbound(), classify("antonio@nuvole.example", ROSTER, s.recognised_staff), Candidates(next_number=1),
               ROSTER, s)
    assert "lead@devseed.example" not in d.outgoing[1].to


def test_attachments_travel_with_the_notification_and_the_relay():
    from workflows.model import Attachment

    shot = (Attachment(filename="shot.png", content_type="image/png", data=b"\x89PNG"),)
    d = _decide(inbound(attachments=shot))
    assert d.outgoing[1].kind == "notify" and d.outgoing[1].attachments == shot
    assert d.outgoing[0].attachments == ()  # the ack does not echo files back
    d = _decide(staff_reply(attachments=shot), cand=Candidates(by_reference=thread()))
    assert d.outgoing[0].kind == "relay" and d.outgoing[0].attachments == shot

"""workflows.automatic, table by table, on InboundMail values built by hand (no parsing)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from workflows.automatic import address_is_bad, classify
from workflows.automatic_subjects import auto_reply_subject, bounce_subject, delay_subject, read_receipt_subject, \
    scanner_subject
from workflows.model import FailedRecipient, InboundMail, MailReport

NOW = datetime(2026, 11, 30, 15, 0, tzinfo=timezone.utc)


def mail(**kw) -> InboundMail:
    base = dict(message_id="<m@x.example>", raw_sha256="0" * 64, received_at=NOW, from_addr="someone@shop.example",
                subject="Views broken after update", text="hello")
    base.update(kw)
    return InboundMail(**base)


@pytest.mark.parametrize("subject", [
    "Automatic reply: Re: [OA-12] Views broken", "AutoReply: x", "Auto: x", "Out of Office: x",
    "Out of Office AutoReply: x", "Out of office", "Out of the office - back Dec 7", "Auto Response",
    "Antonio De Marco is out of the office.", "[AUTO GENERATED] Ticket #1 received", "[Auto-Reply] x",
    "Automatische Antwort: x", "Abwesenheitsnotiz: x", "Nicht im Büro: x", "Abwesenheitsnotiz",
    "Réponse automatique : x", "Absent du bureau: x", "Message d'absence : x",
    "Respuesta automática: x", "Fuera de la oficina: x", "Risposta automatica: x", "Fuori sede",
    "Fuori ufficio: x", "Resposta automática: x", "Ausência temporária: x", "Fora do escritório: x",
    "Automatisch antwoord: x", "Afwezig", "Niet aanwezig: x", "Autosvar: x",
])
def test_auto_reply_subjects(subject):
    assert auto_reply_subject(subject)


@pytest.mark.parametrize("subject", [
    "Out of office last week, now the site is down", "Re: Automatic reply: x", "Fwd: Out of Office: x",
    "Abwesenheit nächste Woche – wer übernimmt?", "Fuera de la oficina la próxima semana, ¿quién atiende?",
    "Automatic replies from our site are broken", "Views broken after update", "Absences module fails",
])
def test_subjects_a_person_writes_are_not_auto_replies(subject):
    assert not auto_reply_subject(subject)


@pytest.mark.parametrize("subject", [
    "Undeliverable: Re: x", "Undelivered Mail Returned to Sender", "Delivery Status Notification (Failure)",
    "Mail delivery failed: returning message to sender", "Returned mail: see transcript for details",
    "failure notice", "Warning: message 1v4aAa delayed 24 hours", "Unzustellbar: x", "Non remis : x",
    "No se puede entregar: x", "Non recapitabile: x", "Não entregue: x", "Onbestelbaar: x",
    "[VIRUS] Message blocked: x", "VIRUS (Eicar-Test-Signature) IN MAIL FROM YOU", "Virus alert: x",
])
def test_bounce_subjects(subject):
    assert bounce_subject(subject)


@pytest.mark.parametrize("subject", [
    "Mail delivery failed when our site sends", "Fwd: Undeliverable: x", "Re: failure notice",
    "Warning: site down after update", "Delivery of the new theme", "Our antivirus flags the module",
])
def test_subjects_about_delivery_a_person_writes(subject):
    assert not bounce_subject(subject)


def test_scanner_delay_and_read_receipt_subjects():
    assert scanner_subject("[VIRUS] x") and not scanner_subject("Virus scanner module question")
    assert delay_subject("Delivery Status Notification (Delay)") and not delay_subject("Delivery delay question")
    assert read_receipt_subject("Read: x") and read_receipt_subject("Gelesen: x") and read_receipt_subject("Lu : x")
    assert not read_receipt_subject("Read this first: x") and not read_receipt_subject("Reading list")


@pytest.mark.parametrize("status,diagnostic,bad", [
    ("5.1.1", "", True), ("5.1.10", "RESOLVER.ADR.RecipientNotFound", True), ("5.2.1", "disabled", True),
    ("5.2.2", "mailbox full", True), ("5.2.3", "message too big", False), ("5.4.4", "no route", True),
    ("5.4.1", "access denied", True), ("5.0.0", "", True), ("5.7.1", "rejected as spam", False),
    ("5.7.1", "Recipient address rejected: no such user", True), ("5.6.0", "content", False),
    ("5.3.4", "too big", False), ("4.4.7", "expired", False), ("4.2.2", "user unknown", False),
    ("5.5.0", "Requested action not taken: mailbox unavailable", True), ("", "", True), ("2.0.0", "", False),
])
def test_address_is_bad(status, diagnostic, bad):
    assert address_is_bad(status, diagnostic) is bad


def _report(*failed: FailedRecipient, fmt: str = "dsn") -> MailReport:
    return MailReport(format=fmt, failed=failed, actions=("failed",))


def test_dsn_bounce_with_permanent_and_soft_failures():
    v = classify(mail(from_addr="mailer-daemon@mx.example", return_path="", report=_report(
        FailedRecipient(address="a@x.example", gave_up=True, status="5.1.1", diagnostic="User unknown"),
        FailedRecipient(address="b@x.example", gave_up=True, status="4.4.7", diagnostic="expired"),
        FailedRecipient(address="c@x.example", gave_up=False, status="4.4.1"))))
    assert v.kind == "bounce" and v.declared and v.permanent is True
    assert [(f.address, f.permanent, f.gave_up) for f in v.failures] == [
        ("a@x.example", True, True), ("b@x.example", False, True), ("c@x.example", False, False)]
    assert "a@x.example failed for good (5.1.1)" in v.reason


def test_a_success_report_is_a_bounce_without_failures_that_names_who_got_it():
    v = classify(mail(return_path="", report=MailReport(format="dsn", actions=("relayed",), delivered=("a@x.example",))))
    assert v.kind == "bounce" and v.failures == () and v.permanent is None and v.delivered == ("a@x.example",)
    assert "no failure reported (relayed)" in v.reason


def test_heuristic_bounce_is_believed_only_with_a_machine_sign():
    report = _report(FailedRecipient(address="billing@nuvole.example", gave_up=True), fmt="heuristic")
    pasted = mail(from_addr="andrea@nuvole.example", subject="Fwd: returned mail", report=report)
    assert classify(pasted, person_known=True).kind == "none"
    assert classify(pasted, person_known=False).kind == "none"
    assert classify(mail(from_addr="mailer-daemon@mx.example", report=report)).kind == "bounce"
    assert classify(mail(return_path="", from_addr="gw@mx.example", report=report)).permanent is True
    stranger = mail(from_addr="gw@mx.example", subject="Undeliverable: x", report=report)
    assert classify(stranger).kind == "bounce" and not classify(stranger).declared


def test_delay_subject_turns_a_heuristic_failure_into_a_delay():
    report = _report(FailedRecipient(address="a@x.example", gave_up=True, status="4.3.0"), fmt="heuristic")
    v = classify(mail(return_path="", subject="Warning: message 1abc delayed 24 hours", report=report))
    assert [(f.gave_up, f.permanent) for f in v.failures] == [(False, False)]


def test_scanner_notice_never_blames_the_address():
    report = _report(FailedRecipient(address="a@x.example", gave_up=True, status="5.7.0"))
    v = classify(mail(return_path="", subject="VIRUS (Eicar) IN MAIL FROM YOU", report=report))
    assert v.kind == "bounce" and v.permanent is False and "scanner" in v.reason


@pytest.mark.parametrize("fields,kind", [
    (dict(auto_submitted="auto-replied"), "auto-reply"),
    (dict(auto_submitted="auto-generated", subject="Undeliverable: x", from_addr="postmaster@x.example"), "bounce"),
    (dict(auto_submitted="no"), "none"),
    (dict(precedence="bulk"), "bulk"),
    (dict(precedence="list"), "bulk"),
    (dict(precedence="auto_reply"), "auto-reply"),
    (dict(precedence="bulk", auto_submitted="auto-replied"), "auto-reply"),  # Gmail vacation
    (dict(return_path=""), "auto-reply"),
    (dict(return_path="", subject="Returned mail: User unknown"), "bounce"),
    (dict(auto_headers=(("X-Autoreply", "yes"),)), "auto-reply"),
    (dict(auto_headers=(("X-Autogenerated", "Reply"),)), "auto-reply"),
    (dict(auto_headers=(("X-Autogenerated", "Forward"),)), "none"),  # a person's mail, forwarded
    (dict(auto_headers=(("X-MS-Exchange-Inbox-Rules-Loop", "a@x.example"),)), "none"),  # a rule's forward
    (dict(auto_headers=(("X-MS-Exchange-Inbox-Rules-Loop", "a@x.example"), ("X-Auto-Response-Suppress", "All"))),
     "auto-reply"),
    (dict(auto_headers=(("Delivered-To", "Autoresponder"),)), "auto-reply"),
    (dict(auto_headers=(("Delivered-To", "support@openatrium.example"),)), "none"),
    (dict(auto_headers=(("X-Mailer", "Microsoft Outlook 16.0"),)), "none"),
    (dict(auto_headers=(("X-Mailer", "vacation 1.2.7"),)), "auto-reply"),
    (dict(auto_headers=(("Feedback-ID", "1:2:esp"),)), "bulk"),
    (dict(auto_headers=(("List-Unsubscribe", "<mailto:u@x>"),)), "bulk"),
    (dict(auto_headers=(("X-Cron-Env", "<SHELL=/bin/sh>"),)), "bulk"),
])
def test_declared_signs_count_for_everyone(fields, kind):
    for known in (False, True):
        assert classify(mail(**fields), person_known=known).kind == kind, (fields, known)


@pytest.mark.parametrize("fields,stranger,known", [
    (dict(subject="Automatic reply: Re: x"), "auto-reply", "none"),  # a known person needs a second sign
    (dict(subject="Automatic reply: Re: x", in_reply_to=("<oa-1@o>",)), "auto-reply", "auto-reply"),
    (dict(subject="Automatic reply: Re: x", auto_headers=(("X-Auto-Response-Suppress", "All"),)), "auto-reply",
     "auto-reply"),
    (dict(subject="Out of office"), "auto-reply", "none"),
    (dict(subject="Gelesen: x", in_reply_to=("<oa-1@o>",)), "read-receipt", "read-receipt"),
    (dict(subject="Undeliverable: x"), "bounce", "none"),
    (dict(from_addr="mailer-daemon@mx.example"), "bounce", "bounce"),
    (dict(from_addr="noreply@saas.example"), "bulk", "none"),
    (dict(from_addr="owner-list@lists.example"), "bulk", "none"),
    (dict(list_id="<dev.lists.example>"), "bulk", "none"),
    (dict(auto_headers=(("X-Loop", "help@desk.example"),)), "auto-reply", "none"),
    (dict(content_type="multipart/report"), "bounce", "bounce"),
])
def test_inferred_signs_count_only_for_strangers(fields, stranger, known):
    assert classify(mail(**fields), person_known=False).kind == stranger
    assert classify(mail(**fields), person_known=True).kind == known


def test_suppress_header_alone_stops_answers_but_keeps_the_work():
    v = classify(mail(auto_headers=(("X-Auto-Response-Suppress", "All"),)))
    assert v.kind == "none" and v.no_auto_answer == "X-Auto-Response-Suppress: All"
    assert not classify(mail(auto_headers=(("X-Auto-Response-Suppress", "DR, RN"),))).no_auto_answer


def test_reports_feedback_read_receipt_and_calendar():
    arf = classify(mail(report=MailReport(format="arf", feedback_type="abuse", reporters=("m@x.example",),
                                          about_ids=("<oa-1@o>",))))
    assert (arf.kind, arf.feedback_type, arf.reporters, arf.about_ids) == ("feedback", "abuse", ("m@x.example",),
                                                                           ("<oa-1@o>",))
    mdn = classify(mail(report=MailReport(format="mdn", disposition="displayed")), person_known=True)
    assert mdn.kind == "read-receipt" and mdn.declared
    reply = classify(mail(calendar_parts=("BEGIN:VCALENDAR\r\nMETHOD:REPLY\r\nEND:VCALENDAR\r\n",)), person_known=True)
    assert reply.kind == "calendar-reply"
    request = classify(mail(calendar_parts=("BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n",)))
    assert request.kind == "none"


def test_every_verdict_has_a_reason_and_a_known_kind():
    from workflows.automatic import KINDS

    for fields in ({}, {"return_path": ""}, {"subject": "Afwezig"}, {"precedence": "junk"}):
        v = classify(mail(**fields))
        assert v.kind in KINDS and v.reason


def test_a_gateway_bounce_signed_post_master_is_a_bounce():
    """Verizon's SMS gateway (vtext.com): from post_master@, a reply subject, a plain-text body, no report,
    no null sender (the shape of sisimai/set-of-emails lhost-verizon-02, written anew here)."""
    m = mail(from_addr="post_master@vtext.example", subject="Re:Test message", in_reply_to=("<q1@ours.example>",),
             text="Error: Invalid user address\n\nError message below:\n550 - Requested action not taken: "
                  "no such user here\n\nMessage details:\n  RCPT TO: 5550100@vtext.example\n")
    for known in (False, True):
        v = classify(m, person_known=known)
        assert v.kind == "bounce" and "post_master@vtext.example" in v.reason, (known, v)


def test_list_servers_without_list_id_are_bulk_for_anyone():
    """fml and ezmlm/Yahoo Groups mark their mail with their own headers, not List-Id (the shape of
    sisimai/set-of-emails lhost-fml-02, written anew here): list traffic, whoever the sender is."""
    for name, value in (("X-MLServer", "fml [fml 4.0]"), ("Mailing-List", "contact list-help@x.example"),
                        ("X-ML-Name", "members")):
        m = mail(from_addr="list-admin@lists.example", subject="Re: hello",
                 auto_headers=((name, value),), text="You are not member (post from you@x.example)\n")
        for known in (False, True):
            v = classify(m, person_known=known)
            assert v.kind == "bulk" and name in v.reason, (name, known, v)
    assert classify(mail(from_addr="ann@x.example", subject="Re: hello"), person_known=True).kind == "none"


def test_a_complaint_notice_without_a_feedback_report_is_feedback_from_strangers_only():
    """Hotmail's complaint notices carry the mail complained about but no RFC 5965 part (the shape of
    sisimai/set-of-emails arf-22)."""
    m = mail(from_addr="staff@hotmail.example", subject="complaint about message from 192.0.2.222",
             text="This is an email abuse report for an email message received from IP 192.0.2.222\n")
    v = classify(m)
    assert v.kind == "feedback" and "complaint" in v.reason
    assert classify(m, person_known=True).kind == "none"  # a contact writing about a complaint: work

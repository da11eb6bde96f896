"""Feedback reports, read receipts, calendar replies, auto-replies, bulk mail, and human mail. Written by us."""

from __future__ import annotations

from email.header import Header

from tests.automatic_corpus.shapes import DATE, SUPPORT, Sample, message, our_headers, our_id, our_mail, parts, plain

ORIG_SUBJECT = "Re: [OA-12] Features revert fails on OA 2.6"


def reports() -> list[Sample]:
    out = []
    m = "mark@cookshop.example"
    arf = parts("arf_a1b2",
                "Content-Type: text/plain; charset=us-ascii\n\nThis is an email abuse report for an email message "
                "received from IP 198.51.100.7 on Mon, 30 Nov 2026 10:02:11 -0500.\n",
                "Content-Type: message/feedback-report\n\nFeedback-Type: abuse\nUser-Agent: ExampleFBL/1.0\n"
                f"Version: 1\nOriginal-Mail-From: <{SUPPORT}>\nOriginal-Rcpt-To: <{m}>\n"
                "Arrival-Date: Mon, 30 Nov 2026 10:02:15 -0500\nSource-IP: 198.51.100.7\n"
                "Reported-Domain: openatrium.example\n",
                "Content-Type: message/rfc822\n\n" + our_mail(81, m, "invitation"))
    out.append(Sample(name="feedback-arf-abuse", system="ARF (ISP feedback loop)", kind="feedback",
                      about=(our_id(81, "invitation"),),
                      raw=message("Return-Path: <fbl-bounces@fbl.cookshop-isp.example>\n"
                                  "From: Feedback Loop <fbl@fbl.cookshop-isp.example>\n"
                                  f"To: {SUPPORT}\nSubject: Abuse report: Invitation: State of Open Atrium\n"
                                  f"Date: {DATE}\nMessage-ID: <fbl-81@fbl.cookshop-isp.example>\nMIME-Version: 1.0\n"
                                  'Content-Type: multipart/report; report-type=feedback-report;\n boundary="arf_a1b2"\n',
                                  arf)))
    ana = "ana@rio.example"
    arf2 = parts("arf_c3d4",
                 "Content-Type: text/plain\n\nA user of our service reported this message as not wanted.\n",
                 "Content-Type: message/feedback-report\n\nFeedback-Type: abuse\nVersion: 1\n"
                 f"Original-Rcpt-To: {ana}\nReported-Domain: openatrium.example\n",
                 "Content-Type: text/rfc822-headers\n\n" + our_headers(82, ana, "renewal"))
    out.append(Sample(name="feedback-arf-headers-only", system="ARF (headers only)", kind="feedback",
                      about=(our_id(82, "renewal"),),
                      raw=message(f"From: complaints@mail.rio.example\nTo: {SUPPORT}\nSubject: FW: complaint\n"
                                  f"Date: {DATE}\nMessage-ID: <c-82@mail.rio.example>\nMIME-Version: 1.0\n"
                                  'Content-Type: multipart/report; report-type="feedback-report"; boundary="arf_c3d4"\n',
                                  arf2)))
    a = "antonio@nuvole.example"
    mdn = parts("mdn_tb_1",
                f"Content-Type: text/plain; charset=UTF-8\n\nThis is a Return Receipt for the mail that you sent to {a}.\n\n"
                "Note: This Return Receipt only acknowledges that the message was displayed on the recipient's "
                "computer.\n",
                "Content-Type: message/disposition-notification; name=\"MDNPart2.txt\"\n\n"
                f"Reporting-UA: mail.nuvole.example; Thunderbird 128.5.0\nFinal-Recipient: rfc822;{a}\n"
                f"Original-Message-ID: {our_id(12)}\nDisposition: manual-action/MDN-sent-manually; displayed\n",
                "Content-Type: text/rfc822-headers; name=\"MDNPart3.txt\"\n\n" + our_headers(12, a))
    out.append(Sample(name="read-receipt-thunderbird", system="Thunderbird MDN", kind="read-receipt",
                      about=(our_id(12),), person_known=True,
                      raw=message(f"From: Antonio De Marco <{a}>\nTo: {SUPPORT}\n"
                                  f"Subject: Return Receipt (displayed) - {ORIG_SUBJECT}\nDate: {DATE}\n"
                                  f"Message-ID: <mdn-1@mail.nuvole.example>\nIn-Reply-To: {our_id(12)}\n"
                                  "MIME-Version: 1.0\nContent-Type: multipart/report; "
                                  'report-type=disposition-notification;\n boundary="mdn_tb_1"\n', mdn)))
    c = "claire@lyon-web.example"
    mdn2 = parts("mdn_ol_2",
                 f"Content-Type: text/plain; charset=utf-8\n\nYour message\n\n  To: {c}\n  Subject: {ORIG_SUBJECT}\n\n"
                 "was read on Monday, November 30, 2026 4:20:00 PM (UTC+01:00) Brussels, Copenhagen, Madrid, Paris.\n",
                 "Content-Type: message/disposition-notification\n\n"
                 f"Final-Recipient: rfc822;{c}\nOriginal-Message-ID: {our_id(13)}\n"
                 "Disposition: automatic-action/MDN-sent-automatically; displayed\n")
    out.append(Sample(name="read-receipt-outlook", system="Outlook MDN", kind="read-receipt", about=(our_id(13),),
                      person_known=True,
                      raw=message(f"From: Claire Martin <{c}>\nTo: {SUPPORT}\nSubject: Read: {ORIG_SUBJECT}\n"
                                  f"Date: {DATE}\nMessage-ID: <mdn-2@lyon-web.example>\n"
                                  "MIME-Version: 1.0\nContent-Type: multipart/report; "
                                  'report-type=disposition-notification;\n boundary="mdn_ol_2"\n', mdn2)))
    h = "hans@kraut.example"
    out.append(Sample(name="read-receipt-text-german", system="Outlook read receipt (text only, German)",
                      kind="read-receipt", about=(our_id(14),), person_known=True,
                      raw=plain(f"From: Hans Weber <{h}>\nTo: {SUPPORT}\nSubject: Gelesen: {ORIG_SUBJECT}\n"
                                f"Date: {DATE}\nMessage-ID: <rr-3@kraut.example>\nIn-Reply-To: {our_id(14)}\n"
                                f"References: {our_id(14)}\n",
                                f"Ihre Nachricht\n\n  An: {h}\n  Betreff: {ORIG_SUBJECT}\n\n"
                                "wurde am Montag, 30. November 2026 16:20:00 (UTC+01:00) gelesen.\n")))
    return out


def _ics(partstat: str, attendee: str, comment: str = "") -> str:
    extra = f"COMMENT:{comment}\n" if comment else ""
    return ("BEGIN:VCALENDAR\nPRODID:-//Example//Calendar//EN\nVERSION:2.0\nMETHOD:REPLY\nBEGIN:VEVENT\n"
            "UID:call-2027-01-12@openatrium.example\nDTSTAMP:20261130T151500Z\nSEQUENCE:0\n"
            f"ORGANIZER:mailto:{SUPPORT}\nATTENDEE;PARTSTAT={partstat}:mailto:{attendee}\n{extra}"
            "SUMMARY:State of Open Atrium\nDTSTART:20270112T190000Z\nDTEND:20270112T200000Z\nEND:VEVENT\n"
            "END:VCALENDAR\n")


def calendar() -> list[Sample]:
    out = []
    g = "giulia@atrium-it.example"
    inv = our_id(91, "invitation")
    body = parts("cal_1", "Content-Type: text/plain; charset=utf-8\n\nAccepted.\n",
                 "Content-Type: text/calendar; charset=utf-8; method=REPLY\n\n" + _ics("ACCEPTED", g))
    out.append(Sample(name="calendar-accepted", system="Google Calendar reply", kind="calendar-reply", about=(inv,),
                      person_known=True,
                      raw=message(f"From: Giulia Rossi <{g}>\nTo: {SUPPORT}\n"
                                  "Subject: Accepted: State of Open Atrium @ Tue Jan 12, 2027 2pm - 3pm (EST)\n"
                                  f"Date: {DATE}\nMessage-ID: <cal-1@atrium-it.example>\nIn-Reply-To: {inv}\n"
                                  'MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="cal_1"\n', body)))
    p = "pieter@amsterdam.example"
    body2 = parts("cal_2", "Content-Type: text/plain; charset=utf-8\n\nI am out of the office until January 15.\n",
                  "Content-Type: text/calendar; charset=utf-8; method=REPLY\n\n"
                  + _ics("DECLINED", p, "Automatically declined: out of the office"))
    out.append(Sample(name="calendar-auto-declined", system="Exchange auto-decline while out of office",
                      kind="calendar-reply", about=(inv,), person_known=True,
                      raw=message(f"From: Pieter de Vries <{p}>\nTo: {SUPPORT}\nSubject: Declined: State of Open Atrium\n"
                                  f"Date: {DATE}\nMessage-ID: <cal-2@amsterdam.example>\nIn-Reply-To: {inv}\n"
                                  "Auto-Submitted: auto-generated\nX-Auto-Response-Suppress: All\n"
                                  'MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="cal_2"\n', body2)))
    room = "room-4@lisboa.example"
    body3 = parts("cal_3", "Content-Type: text/plain\n\nYour meeting request was accepted.\n",
                  "Content-Type: text/calendar; method=REPLY\n\n" + _ics("ACCEPTED", room))
    out.append(Sample(name="calendar-resource-auto-accept", system="Exchange resource mailbox", kind="calendar-reply",
                      about=(inv,),
                      raw=message(f"From: Room 4 <{room}>\nTo: {SUPPORT}\nSubject: Accepted: State of Open Atrium\n"
                                  f"Date: {DATE}\nMessage-ID: <cal-3@lisboa.example>\nIn-Reply-To: {inv}\n"
                                  'MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="cal_3"\n', body3)))
    return out


def _reply(frm: str, subject: str, extra: str = "", *, n: int = 12, raw_utf8: bool = False) -> str:
    # Mail clients encode non-ASCII headers (RFC 2047); a few send raw UTF-8 (RFC 6532): both occur.
    frm, shown = (frm, subject) if raw_utf8 else (encode_header(frm), encode_header(subject))
    return (f"From: {frm}\nTo: {SUPPORT}\nSubject: {shown}\nDate: {DATE}\n"
            f"Message-ID: <auto-{abs(hash_(subject + frm)) % 10**8}@mail.example>\n"
            f"In-Reply-To: {our_id(n)}\nReferences: {our_id(n)}\n{extra}")


def encode_header(text: str) -> str:
    if text.isascii():
        return text
    name, _, address = text.rpartition(" <")
    if address and name:
        return f"{Header(name, 'utf-8').encode()} <{address}"
    return Header(text, "utf-8").encode()


def hash_(text: str) -> int:
    # A stable number for the Message-ID (the built-in hash() changes between runs).
    return sum((i + 1) * ord(ch) for i, ch in enumerate(text))


def auto_replies() -> list[Sample]:
    s: list[Sample] = []

    def add(name: str, system: str, head: str, body: str, *, known: bool, about=(our_id(12),)) -> None:
        s.append(Sample(name=name, system=system, kind="auto-reply", person_known=known, about=about,
                        raw=plain(head, body)))

    add("auto-reply-gmail-vacation", "Gmail vacation responder",
        _reply("Antonio De Marco <antonio@nuvole.example>", "Away until December 7",
               "Auto-Submitted: auto-replied\nPrecedence: bulk\nX-Autoreply: yes\n"),
        "I am away until December 7 with limited access to mail.\n", known=True)
    add("auto-reply-outlook-en", "Exchange / Outlook out-of-office (English)",
        _reply("Claire Martin <claire@lyon-web.example>", f"Automatic reply: {ORIG_SUBJECT}",
               "Auto-Submitted: auto-generated\nX-Auto-Response-Suppress: All\nThread-Topic: Features revert fails\n"
               "X-MS-Exchange-Inbox-Rules-Loop: claire@lyon-web.example\n"),
        "I am out of the office until Monday. For urgent matters call +33 4 00 00 00 00.\n", known=True)
    add("auto-reply-outlook-en-no-rfc3834", "Outlook out-of-office without RFC 3834 headers",
        _reply("Stranger <info@unknown-shop.example>", f"Automatic reply: {ORIG_SUBJECT}",
               "X-Auto-Response-Suppress: All\n"),
        "Thanks for your mail. We are closed until January 4.\n", known=False)
    add("auto-reply-outlook-de", "Outlook out-of-office (German)",
        _reply("Hans Weber <hans@kraut.example>", f"Automatische Antwort: {ORIG_SUBJECT}",
               "X-Auto-Response-Suppress: All\n"),
        "Ich bin bis zum 7. Dezember nicht im Büro. In dringenden Fällen wenden Sie sich an Lena.\n", known=True)
    add("auto-reply-lotus-de", "Lotus Notes absence note (German)",
        _reply("Lena Braun <lena@kraut.example>", f"Abwesenheitsnotiz: {ORIG_SUBJECT}"),
        "Ich bin ab 30.11.2026 nicht im Büro und kehre am 04.12.2026 zurück.\n", known=False)
    add("auto-reply-lotus-en", "Lotus Notes out of office (English)",
        _reply("Mark Cook <mark@cookshop.example>", "Mark Cook is out of the office."),
        "I will be out of the office starting 30/11/2026 and will not return until 07/12/2026.\n", known=False)
    add("auto-reply-outlook-fr", "Outlook out-of-office (French)",
        _reply("Claire Martin <claire@lyon-web.example>", f"Réponse automatique : {ORIG_SUBJECT}",
               "X-Auto-Response-Suppress: All\n", raw_utf8=True),
        "Je suis absente du bureau jusqu'au 7 décembre.\n", known=True)
    add("auto-reply-outlook-es", "Outlook out-of-office (Spanish)",
        _reply("Lucía García <lucia@madrid-dev.example>", f"Respuesta automática: {ORIG_SUBJECT}",
               "X-Auto-Response-Suppress: All\n"),
        "Estoy fuera de la oficina hasta el 7 de diciembre.\n", known=True)
    add("auto-reply-outlook-it", "Outlook out-of-office (Italian)",
        _reply("Giulia Rossi <giulia@atrium-it.example>", f"Risposta automatica: {ORIG_SUBJECT}",
               "X-Auto-Response-Suppress: All\n"),
        "Sono fuori sede fino al 7 dicembre.\n", known=True)
    add("auto-reply-fuori-sede", "Italian absence note (whole subject)",
        _reply("Ufficio <ufficio@atrium-it.example>", "Fuori sede"), "Rientro il 7 dicembre.\n", known=False)
    add("auto-reply-outlook-pt", "Outlook out-of-office (Portuguese)",
        _reply("João Silva <joao@lisboa.example>", f"Resposta automática: {ORIG_SUBJECT}",
               "X-Auto-Response-Suppress: All\n"),
        "Estou fora do escritório até 7 de dezembro.\n", known=True)
    add("auto-reply-ausencia-pt", "Portuguese absence note",
        _reply("Ana Souza <ana@rio.example>", f"Ausência temporária: {ORIG_SUBJECT}"),
        "Estarei ausente até 7 de dezembro.\n", known=False)
    add("auto-reply-outlook-nl", "Outlook out-of-office (Dutch)",
        _reply("Pieter de Vries <pieter@amsterdam.example>", f"Automatisch antwoord: {ORIG_SUBJECT}",
               "X-Auto-Response-Suppress: All\n"),
        "Ik ben afwezig tot 7 december.\n", known=True)
    add("auto-reply-afwezig", "Dutch absence note (whole subject)",
        _reply("Kantoor <kantoor@amsterdam.example>", "Afwezig"), "Wij zijn gesloten tot 4 januari.\n", known=False)
    add("auto-reply-zimbra", "Zimbra vacation",
        _reply("Andrea Rossi <andrea@nuvole.example>", f"Re: {ORIG_SUBJECT}", "Auto-Submitted: auto-replied (zimbra; vacation)\n"),
        "On holiday until the 7th.\n", known=True)
    add("auto-reply-sieve-vacation", "Dovecot Sieve vacation (Pigeonhole)",
        _reply("Joao Silva <joao@lisboa.example>", "Auto: Features revert fails on OA 2.6",
               "Auto-Submitted: auto-replied (vacation)\nPrecedence: bulk\nX-Auto-Response-Suppress: All\n"),
        "I am on vacation.\n", known=True)
    add("auto-reply-cpanel", "cPanel autoresponder",
        _reply("Sales <sales@cookshop.example>", "Thanks for contacting Mark's Site Kitchen",
               "X-Autorespond: Thanks for contacting Mark's Site Kitchen\nPrecedence: auto_reply\n"
               "X-Precedence: auto_reply\n"),
        "We got your message and will answer within two days.\n", known=False)
    add("auto-reply-qmail-autoresponder", "qmail autoresponder",
        _reply("Info <info@lisboa.example>", "Re: Features revert fails on OA 2.6", "Delivered-To: Autoresponder\n"),
        "Obrigado pela sua mensagem.\n", known=False)
    add("auto-reply-firstclass", "FirstClass",
        _reply("Office <office@nordic.example>", "Vacation notice", "X-FC-MachineGenerated: true\n"),
        "We are away.\n", known=False)
    add("auto-reply-mailtraq", "Mailtraq",
        _reply("Desk <desk@mailtraq-user.example>", "Your message", "X-POST-MessageClass: 9; Autoresponder\n"),
        "Your message has been received.\n", known=False)
    add("auto-reply-communigate", "CommuniGate Pro",
        _reply("Team <team@cgp-user.example>", "Re: Features revert fails on OA 2.6", "X-Autogenerated: Reply\n"),
        "Thank you, we will be back on Monday.\n", known=False)
    add("auto-reply-kana", "KANA Response",
        _reply("Customer Care <care@bigcorp.example>", "We received your message",
               "X-Mailer: KANA Response 12.0\n"),
        "This is an automated acknowledgement.\n", known=False)
    add("auto-reply-helpdesk-tag", "a partner's helpdesk acknowledgement, no RFC 3834 header",
        _reply("Helpdesk <help@partner-helpdesk.example>", "[AUTO GENERATED] Ticket #4411 received",
               "X-Loop: help@partner-helpdesk.example\n"),
        "Your ticket #4411 has been created.\n", known=False)
    add("auto-reply-x-autoreply", "generic X-Autoreply",
        _reply("Studio <studio@design.example>", "Re: Features revert fails on OA 2.6", "X-Autoreply: yes\n"),
        "Studio closed for the holidays.\n", known=False)
    return s


def bulk() -> list[Sample]:
    return [
        Sample(name="bulk-newsletter", system="ESP newsletter", kind="bulk", about=(),
               raw=plain("From: Drupal Digest <news@digest.example>\nTo: support@openatrium.example\n"
                         "Subject: This week in Drupal\nDate: " + DATE + "\nMessage-ID: <nl-1@digest.example>\n"
                         "List-Unsubscribe: <mailto:unsub@digest.example?subject=unsubscribe>\n"
                         "List-Unsubscribe-Post: List-Unsubscribe=One-Click\nFeedback-ID: 42:digest:esp\n"
                         "Precedence: bulk\n", "Ten modules you should know.\n")),
        Sample(name="bulk-noreply-notification", system="no-reply notification", kind="bulk", about=(),
               raw=plain("From: Code Host <noreply@codehost.example>\nTo: support@openatrium.example\n"
                         "Subject: A new sign-in to your account\nDate: " + DATE + "\n"
                         "Message-ID: <n-2@codehost.example>\n", "We noticed a new sign-in.\n")),
        Sample(name="bulk-list-post", system="mailing list post", kind="bulk", about=(),
               raw=plain("From: Somebody <somebody@elsewhere.example>\nTo: dev@lists.example\n"
                         "Cc: support@openatrium.example\nSubject: [dev] Release plans\nDate: " + DATE + "\n"
                         "Message-ID: <l-3@elsewhere.example>\nList-Id: Developers <dev.lists.example>\n",
                         "What do we ship next?\n")),
    ]


def human() -> list[Sample]:
    """Mail people wrote, that must stay work: the false-positive guard."""
    a, g, h, l = "antonio@nuvole.example", "giulia@atrium-it.example", "hans@kraut.example", "lucia@madrid-dev.example"

    def person(name: str, frm: str, subject: str, body: str, *, known: bool, extra: str = "") -> Sample:
        head = (f"From: {frm}\nTo: {SUPPORT}\nSubject: {subject}\nDate: {DATE}\n"
                f"Message-ID: <human-{hash_(name)}@mail.example>\n{extra}")
        return Sample(name=name, system="a person", kind="none", person_known=known, raw=plain(head, body))

    forwarded = ("Hi, our renewal notice never reached billing. This is what came back:\n\n"
                 "---------- Forwarded message ----------\nFrom: Mail Delivery System <MAILER-DAEMON@mx.nuvole.example>\n"
                 "Subject: Undelivered Mail Returned to Sender\n\n"
                 "This is the mail system at host mx.nuvole.example.\n\n"
                 "I'm sorry to have to inform you that your message could not\nbe delivered to one or more recipients.\n\n"
                 "<billing@nuvole.example>: host mail.nuvole.example[192.0.2.10] said: 550 5.1.1\n"
                 "    <billing@nuvole.example>: Recipient address rejected: User unknown\n\n"
                 "Final-Recipient: rfc822; billing@nuvole.example\nAction: failed\nStatus: 5.1.1\n\n"
                 "Can you send it to me instead?\nAndrea\n")
    return [
        person("human-was-out-of-office", f"Antonio De Marco <{a}>", "Site down since this morning",
               "Hi,\n\nI was out of office last week, now the site is down: every page gives a 500.\n\nAntonio\n",
               known=True),
        person("human-out-of-office-in-subject", "Prospect <owner@newshop.example>",
               "Out of office last week, now the site is down",
               "Hello, we are thinking of joining the program. Our site broke while I was away.\n", known=False),
        person("human-forwarded-bounce", "Andrea Rossi <andrea@nuvole.example>", "Fwd: Undelivered Mail Returned to Sender",
               forwarded, known=True),
        person("human-forwarded-bounce-unknown", "Andrea Rossi <andrea.rossi@gmail.example>",
               "Fwd: Undeliverable: Your Open Atrium partnership renews", forwarded, known=False),
        person("human-mail-delivery-question", f"Giulia Rossi <{g}>", "Mail delivery failed when our site sends",
               "Hi, since the update our Open Atrium site cannot send mail. The log says:\n\n"
               "postfix/smtp[1234]: 4F2A1C0123: to=<user@customer.example>, relay=none, delay=0.1, "
               "status=bounced (Host or domain name not found)\n\nWhat should we check?\nGiulia\n", known=True),
        person("human-mail-delivery-question-unknown", "Web Agency <dev@agency.example>",
               "Mail delivery failed when our site sends",
               "Hello, Open Atrium cannot send mail since the update: 550 5.1.1 User unknown for every "
               "recipient <user@customer.example>. Any idea?\n", known=False),
        person("human-reply-to-auto-reply", f"Antonio De Marco <{a}>", f"Re: Automatic reply: {ORIG_SUBJECT}",
               "Sorry, that was my out-of-office. I am back: any news on this?\n", known=True,
               extra=f"In-Reply-To: {our_id(12)}\n"),
        person("human-absence-question-de", f"Hans Weber <{h}>", "Abwesenheit nächste Woche – wer übernimmt?",
               "Hallo, ich bin nächste Woche nicht da. Wer kümmert sich um unser Ticket?\n", known=True),
        person("human-fuera-de-la-oficina", f"Lucía García <{l}>",
               "Fuera de la oficina la próxima semana, ¿quién atiende?",
               "Hola, la próxima semana estaré fuera. ¿Puede alguien revisar el problema del caché?\n", known=True),
        person("human-read-this-first", "Consultant <consultant@freelance.example>", "Read this first: upgrade fails",
               "The upgrade to 2.7 fails at the database step.\n", known=False),
        person("human-outlook-suppress-header", "New Prospect <prospect@company.example>", "Question about plans",
               "Is the solo plan right for a two-person shop?\n", known=False,
               extra="X-Auto-Response-Suppress: All\nX-Mailer: Microsoft Outlook 16.0\nThread-Topic: Question about plans\n"),
        person("human-warning-subject", "Admin <admin@shop.example>", "Warning: site down after update",
               "Our site shows a white screen since the update.\n", known=False),
        Sample(name="human-calendar-invitation", system="a person's meeting invitation", kind="none",
               person_known=True,
               raw=message(f"From: Antonio De Marco <{a}>\nTo: {SUPPORT}\nSubject: Invitation: migration call\n"
                           f"Date: {DATE}\nMessage-ID: <inv-1@nuvole.example>\nMIME-Version: 1.0\n"
                           'Content-Type: multipart/alternative; boundary="inv_1"\n',
                           parts("inv_1", "Content-Type: text/plain\n\nCan we talk about the migration?\n",
                                 "Content-Type: text/calendar; method=REQUEST\n\n"
                                 + _ics("NEEDS-ACTION", SUPPORT).replace("METHOD:REPLY", "METHOD:REQUEST")))),
    ]


def other_samples() -> list[Sample]:
    return reports() + calendar() + auto_replies() + bulk() + human()

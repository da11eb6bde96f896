"""Bounce samples, in the shapes of the mail systems partners' mail goes through. Written by us."""

from __future__ import annotations

from tests.automatic_corpus.shapes import DATE, SUPPORT, Sample, dsn, dsn_status, message, our_headers, our_id, \
    our_mail, parts, plain


def _postfix_head(host: str, subject: str = "Undelivered Mail Returned to Sender", queue: str = "4F2A1C0123") -> str:
    return (f"Return-Path: <>\nReceived: from {host} by mx.openatrium.example; {DATE}\n"
            f"Date: {DATE}\nFrom: MAILER-DAEMON@{host} (Mail Delivery System)\nSubject: {subject}\n"
            f"To: {SUPPORT}\nAuto-Submitted: auto-replied\nMessage-Id: <20261130151500.{queue}@{host}>\n")


def _postfix_notice(host: str, address: str, said: str) -> str:
    return (f"This is the mail system at host {host}.\n\n"
            "I'm sorry to have to inform you that your message could not\n"
            "be delivered to one or more recipients. It's attached below.\n\n"
            "For further assistance, please send mail to postmaster.\n\n"
            "If you do so, please include this problem report. You can\n"
            "delete your own text from the attached returned message.\n\n"
            "                   The mail system\n\n"
            f"<{address}>: {said}\n")


def postfix() -> list[Sample]:
    out = []
    a = "antonio@nuvole.example"
    out.append(Sample(
        name="bounce-postfix-user-unknown", system="Postfix (DSN)", kind="bounce", failed={a: True},
        about=(our_id(12),), sent_to=(a,), gave_up=True,
        raw=dsn(boundary="4F2A1C0123.1764515700/mx.nuvole.example", head=_postfix_head("mx.nuvole.example"),
                notice_head="Content-Description: Notification\nContent-Type: text/plain; charset=us-ascii\n",
                notice=_postfix_notice("mx.nuvole.example", a, "host mail.nuvole.example[192.0.2.10] said: 550 5.1.1\n"
                                       f"    <{a}>: Recipient address rejected: User unknown in\n"
                                       "    virtual mailbox table (in reply to RCPT TO command)"),
                status=dsn_status("mx.nuvole.example", [dict(
                    original=f"rfc822;{a}", final=f"rfc822;{a}", action="failed", status="5.1.1",
                    remote="mail.nuvole.example",
                    diag=f"smtp; 550 5.1.1 <{a}>: Recipient address rejected: User unknown in virtual mailbox table")]),
                original=our_headers(12, a))))
    g = "giulia@atrium-it.example"
    out.append(Sample(
        name="bounce-postfix-domain-not-found", system="Postfix (DSN)", kind="bounce", failed={g: True},
        about=(our_id(14),), sent_to=(g,), gave_up=True,
        raw=dsn(boundary="9C1D2E3F44.1764515800/smtp.openatrium.example",
                head=_postfix_head("smtp.openatrium.example"),
                notice_head="Content-Description: Notification\nContent-Type: text/plain; charset=us-ascii\n",
                notice=_postfix_notice("smtp.openatrium.example", g,
                                       "Host or domain name not found. Name service error for\n"
                                       "    name=atrium-it.example type=MX: Host not found"),
                status=dsn_status("smtp.openatrium.example", [dict(
                    final=f"rfc822; {g}", action="failed", status="5.4.4",
                    diag="X-Postfix; Host or domain name not found. Name service error for "
                         "name=atrium-it.example type=MX: Host not found")]),
                original=our_mail(14, g), original_type="full")))
    d = "antonio@nuvole.example"
    out.append(Sample(
        name="bounce-postfix-delayed", system="Postfix (DSN, delay)", kind="bounce", failed={d: False},
        about=(our_id(15),), sent_to=(d,), gave_up=False,
        raw=dsn(boundary="1A2B3C4D5E.1764530000/smtp.openatrium.example",
                head=_postfix_head("smtp.openatrium.example", "Delayed Mail (still being retried)"),
                notice_head="Content-Description: Notification\nContent-Type: text/plain; charset=us-ascii\n",
                notice=("This is the mail system at host smtp.openatrium.example.\n\n"
                        "####################################################################\n"
                        "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n"
                        "####################################################################\n\n"
                        "Your message could not be delivered for more than 4 hour(s).\n"
                        "It will be retried until it is 5 day(s) old.\n\n"
                        "                   The mail system\n\n"
                        f"<{d}>: connect to mail.nuvole.example[192.0.2.10]:25: Connection timed out\n"),
                status=dsn_status("smtp.openatrium.example", [dict(
                    original=f"rfc822;{d}", final=f"rfc822;{d}", action="delayed", status="4.4.1",
                    diag="X-Postfix; connect to mail.nuvole.example[192.0.2.10]:25: Connection timed out")]),
                original=our_headers(15, d))))
    p = "pieter@amsterdam.example"
    # Postfix before DSN support (and look-alikes): multipart/mixed, a Notification part, no machine fields.
    legacy_head = _postfix_head("mail.amsterdam.example").replace("Auto-Submitted: auto-replied\n", "")
    out.append(Sample(
        name="bounce-postfix-legacy", system="Postfix (pre-DSN)", kind="bounce", failed={p: True},
        about=(our_id(16),), sent_to=(p,), gave_up=True,
        raw=message(legacy_head + 'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="B0UND.legacy"\n',
                    parts("B0UND.legacy",
                          "Content-Description: Notification\nContent-Type: text/plain\n\n"
                          "This is the Postfix program at host mail.amsterdam.example.\n\n"
                          "I'm sorry to have to inform you that the message returned\n"
                          "below could not be delivered to one or more destinations.\n\n"
                          "\t\t\tThe Postfix program\n\n"
                          f"<{p}>: unknown user: \"pieter\"\n",
                          "Content-Description: Undelivered Message\nContent-Type: message/rfc822\n\n"
                          + our_mail(16, p)))))
    w = "andrea@nuvole.example"
    out.append(Sample(
        name="bounce-postfix-policy-words", system="Postfix (DSN, 5.7.1 with an unknown user)", kind="bounce",
        failed={w: True}, about=(our_id(17, "relay"),), sent_to=(w,), gave_up=True,
        raw=dsn(boundary="77AA88BB99.1764516000/mx.nuvole.example",
                head=_postfix_head("mx.nuvole.example", queue="77AA88BB99"),
                notice_head="Content-Description: Notification\nContent-Type: text/plain; charset=us-ascii\n",
                notice=_postfix_notice("mx.nuvole.example", w, "host mail.nuvole.example[192.0.2.10] said: 554 5.7.1\n"
                                       f"    <{w}>: Recipient address rejected: no such user here"),
                status=dsn_status("mx.nuvole.example", [dict(
                    final=f"rfc822;{w}", action="failed", status="5.7.1", remote="mail.nuvole.example",
                    diag=f"smtp; 554 5.7.1 <{w}>: Recipient address rejected: no such user here")]),
                original=our_headers(17, w, "relay"))))
    s = "antonio@nuvole.example"
    out.append(Sample(
        name="bounce-postfix-success-notice", system="Postfix (DSN, NOTIFY=SUCCESS)", kind="bounce", failed={},
        about=(our_id(18),), sent_to=(s,),
        raw=dsn(boundary="5E6F7A8B9C.1764516100/mx.nuvole.example",
                head=_postfix_head("mx.nuvole.example", "Successful Mail Delivery Report"),
                notice_head="Content-Description: Notification\nContent-Type: text/plain; charset=us-ascii\n",
                notice=("This is the mail system at host mx.nuvole.example.\n\n"
                        "Your message was successfully delivered to the destination(s)\n"
                        "listed below. If the message was delivered to mailbox you will\n"
                        "receive no further notifications. Otherwise you may still receive\n"
                        "notifications of mail delivery errors from other systems.\n\n"
                        "                   The mail system\n\n"
                        f"<{s}>: delivery via mail.nuvole.example[192.0.2.10]:25: 250 2.0.0 Ok: queued\n"),
                status=dsn_status("mx.nuvole.example", [dict(
                    original=f"rfc822;{s}", final=f"rfc822;{s}", action="relayed", status="2.0.0",
                    remote="mail.nuvole.example", diag="smtp; 250 2.0.0 Ok: queued as 9F8E7D")]),
                original=our_headers(18, s))))
    return out


def exim() -> list[Sample]:
    out = []
    h = "hans@kraut.example"
    head = ("Return-path: <>\nEnvelope-to: support@openatrium.example\nDelivery-date: " + DATE + "\n"
            "Received: from Debian-exim by mx.kraut.example with local (Exim 4.96)\n"
            "\tid 1v4bQx-000Abc-2D\n\tfor support@openatrium.example; " + DATE + "\n"
            "X-Failed-Recipients: " + h + "\nAuto-Submitted: auto-replied\n"
            "From: Mail Delivery System <Mailer-Daemon@mx.kraut.example>\nTo: support@openatrium.example\n"
            "Content-Type: text/plain; charset=us-ascii\n"
            "Subject: Mail delivery failed: returning message to sender\n"
            "Message-Id: <E1v4bQx-000Abc-2D@mx.kraut.example>\nDate: " + DATE + "\n")
    body = ("This message was created automatically by mail delivery software.\n\n"
            "A message that you sent could not be delivered to one or more of its\n"
            "recipients. This is a permanent error. The following address(es) failed:\n\n"
            f"  {h}\n    host mail.kraut.example [192.0.2.20]\n"
            f"    SMTP error from remote mail server after RCPT TO:<{h}>:\n"
            "    550 5.1.1 <hans@kraut.example>: Recipient address rejected: User unknown\n\n"
            "------ This is a copy of the message, including all the headers. ------\n\n"
            "Return-path: <support@openatrium.example>\n" + our_mail(21, h))
    out.append(Sample(name="bounce-exim-user-unknown", system="Exim", kind="bounce", failed={h: True},
                      about=(our_id(21),), sent_to=(h,), gave_up=True, raw=message(head, body)))
    warn_head = (head.replace("X-Failed-Recipients: " + h + "\n", "")
                 .replace("Subject: Mail delivery failed: returning message to sender",
                          "Subject: Warning: message 1v4aAa-000Xyz-1B delayed 24 hours"))
    warn = ("This message was created automatically by mail delivery software.\n"
            "A message that you sent has not yet been delivered to one or more of its\n"
            "recipients after more than 24 hours on the queue on mx.openatrium.example.\n\n"
            "The message identifier is:     1v4aAa-000Xyz-1B\n"
            "The subject of the message is: Re: [OA-22] Features revert fails on OA 2.6\n"
            "The date of the message is:    Sun, 29 Nov 2026 10:02:11 -0500\n\n"
            "The address to which the message has not yet been delivered is:\n\n"
            "  lena@kraut.example\n"
            "    Delay reason: SMTP error from remote mail server after RCPT TO:<lena@kraut.example>:\n"
            "    451 4.3.0 <lena@kraut.example>: Temporary lookup failure\n\n"
            "No action is required on your part. Delivery attempts will continue for\n"
            "some time, and this warning may be repeated at intervals if the message\n"
            "remains undelivered. Eventually the mail delivery software will give up,\n"
            "and when that happens, the message will be returned to you.\n")
    out.append(Sample(name="bounce-exim-delay-warning", system="Exim (delay warning)", kind="bounce",
                      failed={"lena@kraut.example": False}, sent_to=("lena@kraut.example",), gave_up=False,
                      raw=message(warn_head, warn)))
    full = "giulia@atrium-it.example"
    full_head = head.replace(h, full).replace("mx.kraut.example", "mx.atrium-it.example")
    full_body = ("This message was created automatically by mail delivery software.\n\n"
                 "A message that you sent could not be delivered to one or more of its\n"
                 "recipients. This is a permanent error. The following address(es) failed:\n\n"
                 f"  {full}\n    mailbox is full: retry timeout exceeded\n\n"
                 "------ This is a copy of the message, including all the headers. ------\n\n"
                 + our_mail(23, full, "relay"))
    out.append(Sample(name="bounce-exim-mailbox-full", system="Exim (quota)", kind="bounce", failed={full: True},
                      about=(our_id(23, "relay"),), sent_to=(full,), gave_up=True,
                      raw=message(full_head, full_body)))
    return out


def sendmail() -> list[Sample]:
    m = "mark@cookshop.example"
    head = ("Return-Path: <>\nReceived: from localhost (localhost) by mail.cookshop.example (8.17.1/8.17.1)"
            " id 5AUFFe8K012345; " + DATE + "\nDate: " + DATE + "\n"
            "From: Mail Delivery Subsystem <MAILER-DAEMON@mail.cookshop.example>\n"
            "Message-Id: <202611301515.5AUFFe8K012345@mail.cookshop.example>\nTo: <support@openatrium.example>\n"
            "Subject: Returned mail: see transcript for details\nAuto-Submitted: auto-generated (failure)\n")
    notice = ("The original message was received at Mon, 30 Nov 2026 10:15:00 -0500\n"
              "from smtp.openatrium.example [198.51.100.7]\n\n"
              "   ----- The following addresses had permanent fatal errors -----\n"
              f"<{m}>\n    (reason: 550 5.1.1 <{m}>... User unknown)\n\n"
              "   ----- Transcript of session follows -----\n"
              f"... while talking to mail.cookshop.example.:\n>>> RCPT To:<{m}>\n<<< 550 5.1.1 <{m}>... User unknown\n"
              "550 5.1.1 <mark@cookshop.example>... User unknown\n")
    fail = Sample(name="bounce-sendmail-user-unknown", system="Sendmail", kind="bounce", failed={m: True},
                  about=(our_id(31),), sent_to=(m,), gave_up=True,
                  raw=dsn(boundary="5AUFFe8K012345.1764515700/mail.cookshop.example", head=head, notice=notice,
                          status=dsn_status("mail.cookshop.example", [dict(
                              original=f"rfc822;{m}", final=f"RFC822; <{m.replace('mark', 'Mark')}>",
                              action="failed", status="5.1.1", remote="mail.cookshop.example",
                              diag=f"SMTP; 550 5.1.1 <{m}>... User unknown")]),
                          original=our_mail(31, m), original_type="full"))
    warn_head = head.replace("Returned mail: see transcript for details",
                             "Warning: could not send message for past 4 hours").replace("(failure)", "(warning-timeout)")
    warn_notice = ("    **********************************************\n"
                   "    **      THIS IS A WARNING MESSAGE ONLY      **\n"
                   "    **  YOU DO NOT NEED TO RESEND YOUR MESSAGE  **\n"
                   "    **********************************************\n\n"
                   "The original message was received at Mon, 30 Nov 2026 06:02:11 -0500\n\n"
                   "   ----- Transcript of session follows -----\n"
                   f"<{m}>... Deferred: Connection timed out with mail.cookshop.example.\n"
                   "Warning: message still undelivered after 4 hours\n"
                   "Will keep trying until message is 5 days old\n")
    warn = Sample(name="bounce-sendmail-warning", system="Sendmail (delay warning)", kind="bounce",
                  failed={m: False}, about=(our_id(32),), sent_to=(m,), gave_up=False,
                  raw=dsn(boundary="5AUAAe8K099999.1764500000/mail.cookshop.example", head=warn_head,
                          notice=warn_notice,
                          status=dsn_status("mail.cookshop.example", [dict(
                              final=f"RFC822; {m}", action="delayed", status="4.4.7", remote="mail.cookshop.example",
                              diag="SMTP; 451 4.4.1 reply: read error from mail.cookshop.example.")]),
                          original=our_headers(32, m)))
    return [fail, warn]


def qmail() -> list[Sample]:
    j = "joao@lisboa.example"
    head = ("Return-Path: <>\nDate: " + DATE + "\nFrom: MAILER-DAEMON@mx.lisboa.example\n"
            f"To: {SUPPORT}\nSubject: failure notice\nMessage-ID: <1764515700.4242@mx.lisboa.example>\n")
    body = ("Hi. This is the qmail-send program at mx.lisboa.example.\n"
            "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
            "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
            f"<{j}>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n"
            "--- Below this line is a copy of the message.\n\n"
            "Return-Path: <support@openatrium.example>\n" + our_mail(41, j))
    return [Sample(name="bounce-qmail-no-mailbox", system="qmail (QSBMF)", kind="bounce", failed={j: True},
                   about=(our_id(41),), sent_to=(j,), gave_up=True, raw=plain(head, body, "text/plain"))]


def _m365_head(subject: str, domain: str) -> str:
    return ("Return-Path: <>\nFrom: Microsoft Outlook\n <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@"
            f"{domain}>\nTo: <{SUPPORT}>\nDate: {DATE}\nSubject: {subject}\n"
            f"Message-ID: <7c1e8f3a-2b44-4d5e-9f00-1a2b3c4d5e6f@AM0PR01MB1234.eurprd01.prod.{domain}>\n"
            "X-MS-Exchange-Message-Is-Ndr:\nContent-Language: en-US\nX-MS-PublicTrafficType: Email\n")


def _m365(boundary: str, head: str, text: str, html: str, status: str, original: str) -> bytes:
    alt = (f'Content-Type: multipart/alternative; boundary="{boundary}.alt"\n\n'
           + parts(f"{boundary}.alt", "Content-Type: text/plain; charset=us-ascii\n\n" + text,
                   "Content-Type: text/html; charset=us-ascii\n\n" + html))
    body = parts(boundary, alt, status, "Content-Type: message/rfc822\n\n" + original)
    return message(head + f'MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status;\n'
                          f' boundary="{boundary}"\n', body)


def exchange() -> list[Sample]:
    out = []
    c = "claire@lyon-web.example"
    text = (f"Your message to {c} couldn't be delivered.\n\n"
            "claire wasn't found at lyon-web.example.\n\nsupport    Office 365    claire\n"
            "Action Required                 Recipient\n\nUnknown To address\n\n"
            "How to Fix It\nThe address may be misspelled or may not exist.\n")
    out.append(Sample(
        name="bounce-m365-recipient-not-found", system="Microsoft 365", kind="bounce", failed={c: True},
        about=(our_id(51),), sent_to=(c,), gave_up=True,
        raw=_m365("b1_ndr_m365", _m365_head("Undeliverable: Re: [OA-51] Features revert fails on OA 2.6",
                                             "lyon-web.example"),
                  text, "<html><body><p>Your message to <b>" + c + "</b> couldn't be delivered.</p></body></html>",
                  dsn_status("AM0PR01MB1234.eurprd01.prod.lyon-web.example", [dict(
                      final=f"rfc822;{c}", action="failed", status="5.1.10", remote="AM0PR01MB1234.eurprd01",
                      diag=f"smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient {c} not found by SMTP "
                           "address lookup")]),
                  our_mail(51, c))))
    ex = "lucia@madrid-dev.example"
    out.append(Sample(
        name="bounce-m365-expired", system="Microsoft 365 (4.4.7 expired)", kind="bounce", failed={ex: False},
        about=(our_id(52),), sent_to=(ex,), gave_up=True,
        raw=_m365("b2_ndr_m365", _m365_head("Undeliverable: Re: [OA-52] Upgrade to 2.7", "openatrium.example"),
                  f"Delivery has failed to these recipients or groups:\n\n{ex}\n"
                  "The message couldn't be delivered within the time limit. Microsoft 365 tried\n"
                  "for 24 hours and the destination server didn't respond.\n",
                  "<html><body><p>Delivery has failed to these recipients or groups.</p></body></html>",
                  dsn_status("DB9PR02MB5678.eurprd02.prod.openatrium.example", [dict(
                      final=f"rfc822;{ex}", action="failed", status="4.4.7",
                      diag="smtp;400 4.4.7 Message delayed")]),
                  our_mail(52, ex))))
    sp = "ana@rio.example"
    out.append(Sample(
        name="bounce-m365-rejected-as-spam", system="Microsoft 365 (5.7.1 policy)", kind="bounce",
        failed={sp: False}, about=(our_id(53, "renewal"),), sent_to=(sp,), gave_up=True,
        raw=_m365("b3_ndr_m365", _m365_head("Undeliverable: Your Open Atrium partnership renews on January 31, 2027",
                                             "openatrium.example"),
                  f"Your message to {sp} couldn't be delivered.\n\n"
                  "The recipient's email system rejected it as spam (content filtering).\n",
                  "<html><body><p>Rejected by the recipient's content filter.</p></body></html>",
                  dsn_status("CH2PR03MB9012.namprd03.prod.openatrium.example", [dict(
                      final=f"rfc822;{sp}", action="failed", status="5.7.1", remote="mx.rio.example",
                      diag="smtp;550 5.7.1 Message rejected as spam by Content Filtering")]),
                  our_mail(53, sp, "renewal"))))
    dis = "andrea@nuvole.example"
    out.append(Sample(
        name="bounce-exchange-mailbox-disabled", system="Exchange Server 2019", kind="bounce", failed={dis: True},
        about=(our_id(54),), sent_to=(dis,), gave_up=True,
        raw=_m365("b4_ndr_ex2019", _m365_head("Undeliverable: Re: [OA-54] Views missing after update",
                                               "nuvole.example"),
                  f"Delivery has failed to these recipients or groups:\n\n{dis}\n"
                  "The email address you entered couldn't be found or the mailbox is disabled.\n",
                  "<html><body>Delivery has failed.</body></html>",
                  dsn_status("EX01.nuvole.example", [dict(
                      final=f"rfc822;{dis}", action="failed", status="5.2.1", remote="EX01.nuvole.example",
                      diag="smtp;550 5.2.1 mailbox disabled")]),
                  our_mail(54, dis))))
    dbeb = "pieter@amsterdam.example"
    out.append(Sample(
        name="bounce-m365-access-denied", system="Microsoft 365 (5.4.1 directory edge blocking)", kind="bounce",
        failed={dbeb: True}, about=(our_id(55),), sent_to=(dbeb,), gave_up=True,
        raw=_m365("b5_ndr_m365", _m365_head("Undeliverable: Re: [OA-55] Login loop", "amsterdam.example"),
                  f"Your message to {dbeb} couldn't be delivered.\n",
                  "<html><body>Not delivered.</body></html>",
                  dsn_status("VI1PR04MB3456.eurprd04.prod.amsterdam.example", [dict(
                      final=f"rfc822;{dbeb}", action="failed", status="5.4.1",
                      diag="smtp;550 5.4.1 Recipient address rejected: Access denied. AS(201806281)")]),
                  our_mail(55, dbeb))))
    # Exchange 2003 and gateways that imitate it: text only, no report fields.
    old = "lucia@madrid-dev.example"
    out.append(Sample(
        name="bounce-exchange-2003-text", system="Exchange 2003 (text)", kind="bounce", failed={old: True},
        about=(), sent_to=(old,), gave_up=True,
        raw=plain("Return-Path: <>\nFrom: System Administrator <postmaster@madrid-dev.example>\n"
                  f"To: {SUPPORT}\nSubject: Undeliverable: Re: [OA-56] Search returns nothing\nDate: {DATE}\n"
                  "Message-ID: <ex2003-56@madrid-dev.example>\n",
                  "Your message\n\n  To:      lucia@madrid-dev.example\n"
                  "  Subject: Re: [OA-56] Search returns nothing\n  Sent:    Mon, 30 Nov 2026 10:02:11 -0500\n\n"
                  "did not reach the following recipient(s):\n\n"
                  f"{old} on Mon, 30 Nov 2026 10:15:00 -0500\n"
                  "    The e-mail account does not exist at the organization this message was sent to.\n"
                  "    <mail.madrid-dev.example #5.1.1>\n", "text/plain; charset=us-ascii")))
    return out


def gmail_yahoo_ses() -> list[Sample]:
    out = []
    a = "ana@rio.example"
    head = ("Return-Path: <>\nReceived: by mail-sor-f69.google.com with SMTP id ab12; " + DATE + "\n"
            "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\n"
            f"To: {SUPPORT}\nAuto-Submitted: auto-replied\nSubject: Delivery Status Notification (Failure)\n"
            "Message-ID: <5f0a1b2c.0a1b2c3d.4e5f.ab12@mx.google.com>\nDate: " + DATE + "\n")
    out.append(Sample(
        name="bounce-gmail-address-not-found", system="Gmail", kind="bounce", failed={a: True},
        about=(our_id(61),), sent_to=(a,), gave_up=True,
        raw=dsn(boundary="000000000000a1b2c3d4e5f60718", head=head,
                notice=(f"** Address not found **\n\nYour message wasn't delivered to {a} because the address "
                        "couldn't be found, or is unable to receive mail.\n\nThe response from the remote server "
                        "was:\n550 5.1.1 The email account that you tried to reach does not exist.\n"),
                status=dsn_status("googlemail.com", [dict(
                    final=f"rfc822; {a}", action="failed", status="5.1.1", remote="mx.rio.example. (192.0.2.50)",
                    diag="smtp; 550-5.1.1 The email account that you tried to reach does not exist.",
                    last=DATE)]),
                original=our_headers(61, a))))
    dl = "hans@kraut.example"
    out.append(Sample(
        name="bounce-gmail-delay", system="Gmail (delay)", kind="bounce", failed={dl: False},
        about=(our_id(62),), sent_to=(dl,), gave_up=False,
        raw=dsn(boundary="000000000000b2c3d4e5f6071829",
                head=head.replace("(Failure)", "(Delay)").replace("ab12@", "cd34@"),
                notice=("** Delivery incomplete **\n\nThere was a temporary problem delivering your message to "
                        f"{dl}. Gmail will retry for 46 more hours. You'll be notified if the delivery fails "
                        "permanently.\n"),
                status=dsn_status("googlemail.com", [dict(
                    final=f"rfc822; {dl}", action="delayed", status="4.7.0",
                    diag="smtp; 421 4.7.0 Try again later, closing connection.")]),
                original=our_headers(62, dl))))
    b = "billing@nuvole.example"
    yahoo_head = ("Return-Path: <>\nFrom: MAILER-DAEMON@yahoo.com\n"
                  f"To: {SUPPORT}\nSubject: Failure Notice\nDate: {DATE}\n"
                  "Message-ID: <1764515700.12345.yahoo@mta1001.mail.bf1.yahoo.com>\n")
    out.append(Sample(
        name="bounce-yahoo-classic", system="Yahoo (text)", kind="bounce", failed={b: True},
        about=(our_id(63, "renewal"),), sent_to=(b,), gave_up=True,
        raw=plain(yahoo_head,
                  "Sorry, we were unable to deliver your message to the following address.\n\n"
                  f"<{b}>:\nRemote host said: 550 5.1.1 <{b}>: Recipient address rejected: User unknown "
                  "[RCPT_TO]\n\n--- Below this line is a copy of the message.\n\n" + our_mail(63, b, "renewal"),
                  "text/plain; charset=us-ascii")))
    lena = "lena@kraut.example"
    ses_head = ("Return-Path: <>\nFrom: MAILER-DAEMON@amazonses.com\n"
                f"To: {SUPPORT}\nSubject: Delivery Status Notification (Failure)\nDate: {DATE}\n"
                "Message-ID: <01000193a1b2c3d4-5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9-000000@email.amazonses.com>\n")
    out.append(Sample(
        name="bounce-amazon-ses", system="Amazon SES", kind="bounce", failed={lena: True},
        about=(our_id(64, "invitation"),), sent_to=(lena,), gave_up=True,
        raw=dsn(boundary="ses_bounce_a1b2c3", head=ses_head,
                notice=("An error occurred while trying to deliver the mail to the following recipients:\n"
                        f"{lena}\n"),
                status=dsn_status("a8-30.smtp-out.amazonses.com", [dict(
                    final=f"rfc822; {lena}", action="failed", status="5.1.1", remote="mx.kraut.example",
                    diag="smtp; 550 5.1.1 user unknown")]),
                original=our_mail(64, lena, "invitation"), original_type="full")))
    return out


def odd_shapes() -> list[Sample]:
    out = []
    # A forwarding address that no longer works: the roster address is the Original-Recipient.
    b, final = "billing@nuvole.example", "accounts@nuvole-mail.example"
    out.append(Sample(
        name="bounce-dsn-forwarded-address", system="Postfix (DSN, alias expanded)", kind="bounce",
        failed={b: True}, about=(our_id(71, "renewal"),), sent_to=(b,), gave_up=True,
        raw=dsn(boundary="A1A1A1A1A1.1764516200/mx.nuvole.example",
                head=_postfix_head("mx.nuvole.example", queue="A1A1A1A1A1"),
                notice=_postfix_notice("mx.nuvole.example", final, "host mx.nuvole-mail.example said: 550 5.1.1 "
                                       "mailbox unavailable"),
                status=dsn_status("mx.nuvole.example", [dict(
                    original=f"rfc822;{b}", final=f"rfc822;{final}", action="failed", status="5.1.1",
                    diag="smtp; 550 5.1.1 mailbox unavailable")]),
                original=our_headers(71, b, "renewal"))))
    # One DSN, two recipients: one failed, one delivered.
    f, ok = "andrea@nuvole.example", "antonio@nuvole.example"
    out.append(Sample(
        name="bounce-dsn-one-of-two", system="Sendmail (DSN, two recipients)", kind="bounce", failed={f: True},
        about=(our_id(72, "invitation"),), sent_to=(f, ok), gave_up=True,
        raw=dsn(boundary="TWO.1764516300/mail.nuvole.example",
                head=("Return-Path: <>\nFrom: Mail Delivery Subsystem <MAILER-DAEMON@mail.nuvole.example>\n"
                      f"To: {SUPPORT}\nSubject: Returned mail: User unknown\nDate: {DATE}\n"
                      "Message-Id: <202611301516.two@mail.nuvole.example>\n"),
                notice="   ----- The following addresses had permanent fatal errors -----\n"
                       f"<{f}>\n    (reason: 550 5.1.1 User unknown)\n",
                status=dsn_status("mail.nuvole.example", [
                    dict(final=f"RFC822; {f}", action="failed", status="5.1.1", diag="SMTP; 550 5.1.1 User unknown"),
                    dict(final=f"RFC822; {ok}", action="delivered", status="2.0.0")]),
                original=our_headers(72, f"{f}, {ok}", "invitation"))))
    # A gateway notice in no format a detector knows: only our outbox can tell who it was for.
    g = "giulia@atrium-it.example"
    out.append(Sample(
        name="bounce-gateway-returned-mail", system="mail gateway (unknown text)", kind="bounce", failed={},
        about=(), sent_to=(g,),
        raw=plain(f"Return-Path: <postmaster@gw.atrium-it.example>\nFrom: Mail Gateway <postmaster@gw.atrium-it.example>\n"
                  f"To: {SUPPORT}\nSubject: Returned Mail: Re: [OA-73] Cache clear hangs\nDate: {DATE}\n"
                  "Message-ID: <gw-73-1764515700@gw.atrium-it.example>\n",
                  "Your mail could not be handed over to its recipient.\n\n"
                  "Recipient: giulia (local user)\nReason: mailbox unavailable\n\n"
                  "Please contact the administrator of atrium-it.example.\n")))
    # Amavis telling the sender it stopped a "virus" (a DSN whose cause is the content, not the address).
    m = "mark@cookshop.example"
    out.append(Sample(
        name="bounce-virus-amavis", system="amavis (virus, DSN)", kind="bounce", failed={m: False},
        about=(our_id(74, "relay"),), sent_to=(m,), gave_up=True,
        raw=dsn(boundary="----------=_1764515700-1234-0", head=(
            "Return-Path: <>\nFrom: Content-filter at mail.cookshop.example <postmaster@mail.cookshop.example>\n"
            f"To: <{SUPPORT}>\nSubject: VIRUS (Eicar-Test-Signature) IN MAIL FROM YOU\nDate: {DATE}\n"
            "Message-ID: <VSa1b2c3d4e5@mail.cookshop.example>\nAuto-Submitted: auto-replied\n"),
            notice=("Our content checker found\n    virus: Eicar-Test-Signature\n\n"
                    f"in an email to you from:\n  {SUPPORT}\n\nOur internal reference code for your message is "
                    "12345-01\n"),
            status=dsn_status("mail.cookshop.example", [dict(
                original=f"rfc822;{m}", final=f"rfc822;{m}", action="failed", status="5.7.0",
                diag="smtp; 554 5.7.0 Reject, id=12345-01 - INFECTED: Eicar-Test-Signature")]),
            original=our_headers(74, m, "relay"))))
    # InterScan-style scanner notice (a format flufl.bounce knows, without report fields).
    j = "joao@lisboa.example"
    out.append(Sample(
        name="bounce-virus-interscan", system="InterScan VirusWall (text)", kind="bounce", failed={j: False},
        sent_to=(j,), gave_up=True,
        raw=plain(f"Return-Path: <>\nFrom: viruswall@lisboa.example\nTo: {SUPPORT}\n"
                  f"Subject: Virus alert: message not delivered\nDate: {DATE}\n"
                  "Message-ID: <isvw-1764515700@lisboa.example>\n",
                  "****** Message from InterScan E-Mail VirusWall NT ******\n\n"
                  "The attachment report.pdf contained a virus and the message was not delivered.\n"
                  f"RCPT TO:<{j}>\n\n***************** End of message ***************\n")))
    # A gateway's virus notice in plain words, from an ordinary-looking sender.
    c = "claire@lyon-web.example"
    out.append(Sample(
        name="bounce-virus-gateway-notice", system="mail gateway (virus notice)", kind="bounce", failed={},
        sent_to=(c,),
        raw=plain(f"Return-Path: <mailguard@lyon-web.example>\nFrom: MailGuard <mailguard@lyon-web.example>\n"
                  f"To: {SUPPORT}\nSubject: [VIRUS] Message blocked: Re: [OA-75] Theme broken\nDate: {DATE}\n"
                  "Message-ID: <mg-75@lyon-web.example>\n",
                  "A message you sent was blocked because an attachment looked dangerous.\n")))
    return out


def _daemon_dsn(name: str, system: str, *, daemon: str, subject: str, notice: str, address: str, status: str,
                diag: str, n: int, kind: str = "ack", action: str = "failed", permanent: bool = True,
                original_recipient: bool = False) -> Sample:
    host = daemon.partition("@")[2]
    head = (f"Return-Path: <>\nFrom: Mail Delivery Subsystem <{daemon}>\nTo: {SUPPORT}\nSubject: {subject}\n"
            f"Date: {DATE}\nMessage-ID: <{name}.{n}@{host}>\nAuto-Submitted: auto-replied\n")
    rcpt = dict(final=f"rfc822;{address}", action=action, status=status, diag=diag)
    if original_recipient:
        rcpt["original"] = f"rfc822;{address}"
    return Sample(name=name, system=system, kind="bounce", failed={address: permanent}, about=(our_id(n, kind),),
                  sent_to=(address,), gave_up=action == "failed",
                  raw=dsn(boundary=f"{name}-{n}-boundary", head=head, notice=notice,
                          status=dsn_status(host, [rcpt]), original=our_headers(n, address, kind)))


def providers() -> list[Sample]:
    return [
        _daemon_dsn("bounce-yahoo-dsn", "Yahoo (DSN, 5.0.0)", daemon="MAILER-DAEMON@yahoo.com",
                    subject="Failure Notice", notice="Sorry, we were unable to deliver your message to the "
                    "following address.\n\n<ana@rio.example>:\n554: delivery error: dd This user doesn't have "
                    "an account\n", address="ana@rio.example", status="5.0.0",
                    diag="smtp; 554 delivery error: dd This user doesn't have an account", n=101),
        _daemon_dsn("bounce-outlook-com-unavailable", "Outlook.com (5.5.0)", daemon="postmaster@outlook.example",
                    subject="Undeliverable: Re: [OA-102] Cron fails", notice="Delivery has failed to these "
                    "recipients or groups:\n\nmark@cookshop.example\n", address="mark@cookshop.example",
                    status="5.5.0", diag="smtp;550 5.5.0 Requested action not taken: mailbox unavailable", n=102),
        _daemon_dsn("bounce-icloud-no-user", "iCloud", daemon="MAILER-DAEMON@icloud.example",
                    subject="Delivery Status Notification (Failure)", notice="Your message could not be "
                    "delivered to hans@kraut.example.\n", address="hans@kraut.example", status="5.1.1",
                    diag="smtp; 550 5.1.1 <hans@kraut.example>: user does not exist", n=103, kind="renewal"),
        _daemon_dsn("bounce-gmail-disabled", "Gmail (5.2.1 disabled)", daemon="mailer-daemon@googlemail.com",
                    subject="Delivery Status Notification (Failure)", notice="** Address not found **\n\n"
                    "The email account that you tried to reach is disabled.\n", address="joao@lisboa.example",
                    status="5.2.1", diag="smtp; 550-5.2.1 The email account that you tried to reach is disabled.",
                    n=104, kind="invitation"),
        _daemon_dsn("bounce-courier-dsn", "Courier MTA", daemon="MAILER-DAEMON@mail.amsterdam.example",
                    subject="Delivery Status Notification (Failure)", notice="This is a delivery status "
                    "notification from mail.amsterdam.example, running the Courier mail server.\n\n"
                    "The original message was received on Mon, 30 Nov 2026 10:02:11 -0500\n\n"
                    "<pieter@amsterdam.example>: 550 User unknown\n", address="pieter@amsterdam.example",
                    status="5.0.0", diag="smtp; 550 User unknown", n=105, original_recipient=True),
        _daemon_dsn("bounce-exchange-2010-recip-not-found", "Exchange 2010", daemon="postmaster@lyon-web.example",
                    subject="Undeliverable: Re: [OA-106] Solr index empty",
                    notice="Delivery has failed to these recipients or groups:\n\nclaire@lyon-web.example\n"
                    "The e-mail address you entered couldn't be found.\n", address="claire@lyon-web.example",
                    status="5.1.1", diag="smtp;550 5.1.1 RESOLVER.ADR.RecipNotFound; not found", n=106),
        _daemon_dsn("bounce-postfix-quota", "Postfix (5.2.2 over quota)", daemon="MAILER-DAEMON@mx.madrid-dev.example",
                    subject="Undelivered Mail Returned to Sender",
                    notice="<lucia@madrid-dev.example>: host mail.madrid-dev.example said: 552 5.2.2 Mailbox full\n",
                    address="lucia@madrid-dev.example", status="5.2.2", diag="smtp; 552 5.2.2 Mailbox full",
                    n=107, kind="relay", original_recipient=True),
        _daemon_dsn("bounce-outlook-com-throttled", "Outlook.com (4.7.650 throttled, delay)",
                    daemon="postmaster@outlook.example", subject="Delivery delayed: Re: [OA-108] Login loop",
                    notice="Delivery is delayed to these recipients or groups:\n\ngiulia@atrium-it.example\n",
                    address="giulia@atrium-it.example", status="4.7.650", action="delayed", permanent=False,
                    diag="smtp;451 4.7.650 The mail server has been temporarily rate limited", n=108),
        Sample(name="bounce-qmail-remote-said", system="qmail (remote host said)", kind="bounce",
               failed={"andrea@nuvole.example": True}, sent_to=("andrea@nuvole.example",), gave_up=True,
               about=(our_id(109, "relay"),),
               raw=plain(f"Return-Path: <>\nFrom: MAILER-DAEMON@smtp.nuvole-relay.example\nTo: {SUPPORT}\n"
                         f"Subject: failure notice\nDate: {DATE}\nMessage-ID: <q-109@smtp.nuvole-relay.example>\n",
                         "Hi. This is the qmail-send program at smtp.nuvole-relay.example.\n"
                         "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
                         "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
                         "<andrea@nuvole.example>:\n192.0.2.10 does not like recipient.\n"
                         "Remote host said: 550 5.1.1 <andrea@nuvole.example>: Recipient address rejected\n"
                         "Giving up on 192.0.2.10.\n\n--- Below this line is a copy of the message.\n\n"
                         + our_mail(109, "andrea@nuvole.example", "relay"), "text/plain")),
    ]


def bounce_samples() -> list[Sample]:
    return postfix() + exim() + sendmail() + qmail() + exchange() + gmail_yahoo_ses() + odd_shapes() + providers()

"""Which Authentication-Results headers count: those our own server added, never a sender's.

Each layout is how a real receiving setup writes its trace headers (top = newest),
with the sender's own headers (forged ones included) below.
"""

import pytest

from mailbox.authresults import read, received_clauses

SENDER = [
    "From: Young <young@devseed.example>",
    "To: support@openatrium.example",
    "Subject: Re: [OA-12] Login broken",
    "Message-ID: <r1@devseed.example>",
]
FORGED = "Authentication-Results: {id}; dmarc=pass header.from=devseed.example; dkim=pass header.d=devseed.example"


def raw(*headers, sender=SENDER):
    return ("\r\n".join([*headers, *sender]) + "\r\n\r\nHello\r\n").encode()


def methods(reading):
    return [(r.authserv_id, r.method, r.result) for r in reading.results]


LMTP = ("Received: from mx.openatrium.example ([10.0.0.2])\r\n\tby imap.openatrium.example with LMTP id AbC\r\n"
        "\t(envelope-from <young@devseed.example>)\r\n\tfor <support@openatrium.example>; Tue, 1 Dec 2026 10:00:02 -0500")
HANDOVER = ("Received: from mail.devseed.example (mail.devseed.example [192.0.2.7])\r\n"
            "\tby mx.openatrium.example (Postfix) with ESMTPS id 4Qx1;\r\n\tTue, 1 Dec 2026 10:00:01 -0500")
OURS = "Authentication-Results: mx.openatrium.example;\r\n\tdmarc=fail header.from=devseed.example"

GMAIL = [
    "Delivered-To: support@openatrium.example",
    "Received: by 2002:a05:6a10:9b0c:b0:4ae:4b5e:6e2 with SMTP id i12csp1234567pxb;\r\n"
    "        Tue, 1 Dec 2026 07:00:02 -0800 (PST)",
    "X-Received: by 2002:a17:90a:1234:b0:2a0:1234:5678 with SMTP id x1mr1;\r\n        Tue, 1 Dec 2026 07:00:02 -0800",
    "ARC-Seal: i=1; a=rsa-sha256; t=1; cv=none; d=google.com; s=arc-20160816; b=abc",
    "ARC-Authentication-Results: i=1; mx.google.com; dmarc=pass header.from=devseed.example",
    "Return-Path: <young@devseed.example>",
    "Received: from mail.devseed.example (mail.devseed.example. [192.0.2.7])\r\n"
    "        by mx.google.com with ESMTPS id a1si123.2026.12.01.07.00.01\r\n"
    "        for <support@openatrium.example>\r\n"
    "        (version=TLS1_3 cipher=TLS_AES_256_GCM_SHA384 bits=256/256);\r\n"
    "        Tue, 1 Dec 2026 07:00:01 -0800 (PST)",
    "Received-SPF: pass (google.com: domain of young@devseed.example designates 192.0.2.7 as permitted sender)",
    "Authentication-Results: mx.google.com;\r\n       dkim=pass header.i=@devseed.example header.s=s1;\r\n"
    "       spf=pass smtp.mailfrom=young@devseed.example;\r\n"
    "       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=devseed.example",
]


@pytest.mark.parametrize("case, message, ids, relays, expected", [
    ("above the hand-over (rspamd, our test server)",
     raw(LMTP, OURS, HANDOVER, FORGED.format(id="mx.openatrium.example")),
     ["mx.openatrium.example"], [], [("mx.openatrium.example", "dmarc", "fail")]),
    ("several of ours above the hand-over all count",
     raw(LMTP, "Authentication-Results: mx.openatrium.example; dkim=none",
         "Authentication-Results: mx.openatrium.example; spf=pass smtp.mailfrom=devseed.example", HANDOVER),
     ["mx.openatrium.example"], [], [("mx.openatrium.example", "dkim", "none"),
                                     ("mx.openatrium.example", "spf", "pass")]),
    ("below the hand-over (Postfix + OpenDMARC): only the topmost, never the forgery under it",
     raw(LMTP, HANDOVER, OURS, FORGED.format(id="mx.openatrium.example")),
     ["mx.openatrium.example"], [], [("mx.openatrium.example", "dmarc", "fail")]),
    ("Gmail: its own header under its Received line; internal hops passed over",
     raw(*GMAIL), ["mx.google.com"], [],
     [("mx.google.com", "dkim", "pass"), ("mx.google.com", "spf", "pass"), ("mx.google.com", "dmarc", "pass")]),
    ("Gmail with a sender's forgery under Gmail's header",
     raw(*GMAIL[:-1], "Authentication-Results: mx.google.com; dmarc=fail header.from=devseed.example",
         FORGED.format(id="mx.google.com")), ["mx.google.com"], [], [("mx.google.com", "dmarc", "fail")]),
    ("below the hand-over, the search stops at the sender's own Received line",
     raw(LMTP, HANDOVER, "Received: from laptop (laptop [10.1.1.1]) by smtp.devseed.example with ESMTPSA; d",
         FORGED.format(id="mx.openatrium.example")), ["mx.openatrium.example"], [], []),
    ("a forgery with an authserv-id we do not trust",
     raw(LMTP, HANDOVER, FORGED.format(id="mx.evil.example")), ["mx.openatrium.example"], [], []),
    ("untrusted id above the hand-over (another filter of ours) is not taken either",
     raw(LMTP, FORGED.format(id="filter.example"), HANDOVER), ["mx.openatrium.example"], [], []),
    ("the sender's own Received lines are below ours and change nothing",
     raw(LMTP, OURS, HANDOVER, FORGED.format(id="mx.openatrium.example"),
         "Received: from laptop by mx.openatrium.example with ESMTPSA; Tue, 1 Dec 2026 09:59:00 -0500"),
     ["mx.openatrium.example"], [], [("mx.openatrium.example", "dmarc", "fail")]),
    ("HELO naming our own server does not make the hand-over look internal",
     raw(LMTP, OURS, "Received: from mx.openatrium.example (evil.example [203.0.113.9])\r\n"
                     "\tby mx.openatrium.example with ESMTP id 1; Tue, 1 Dec 2026 10:00:01 -0500",
         FORGED.format(id="mx.openatrium.example"),
         "Received: from mail.devseed.example by mx.openatrium.example with ESMTPS; Tue, 1 Dec 2026 10:00 -0500"),
     ["mx.openatrium.example"], [], [("mx.openatrium.example", "dmarc", "fail")]),
    ("several servers of ours by SMTP: the border's header between the two Received lines",
     raw("Received: from mx.openatrium.example (mx.openatrium.example [10.0.0.2])\r\n"
         "\tby mbox.openatrium.example with ESMTP id 2; Tue, 1 Dec 2026 10:00:02 -0500",
         OURS, HANDOVER, FORGED.format(id="mx.openatrium.example")),
     ["mx.openatrium.example"], ["openatrium.example"], [("mx.openatrium.example", "dmarc", "fail")]),
    ("IMAP APPEND: no trace of our servers at all, forged header on top",
     raw(FORGED.format(id="mx.openatrium.example")), ["mx.openatrium.example"], [], []),
    ("the topmost Received from another host is not by our servers",
     raw(FORGED.format(id="mx.openatrium.example"),
         "Received: from a (a [192.0.2.1]) by smtp.evil.example with ESMTP; Tue, 1 Dec 2026 10:00 -0500"),
     ["mx.openatrium.example"], [], []),
    ("a relay named apart from the authserv-id",
     raw(LMTP, "Authentication-Results: spamfilter.internal; dmarc=pass header.from=devseed.example",
         HANDOVER), ["spamfilter.internal"], ["mx.openatrium.example"],
     [("spamfilter.internal", "dmarc", "pass")]),
    ("... and without naming it, nothing is trusted",
     raw(LMTP, "Authentication-Results: spamfilter.internal; dmarc=pass header.from=devseed.example",
         HANDOVER), ["spamfilter.internal"], [], []),
    ("authserv-id with a version, in capitals",
     raw(LMTP, "Authentication-Results: MX.OpenAtrium.example 1; auth=pass smtp.auth=young@devseed.example",
         HANDOVER), ["mx.openatrium.example"], [], [("mx.openatrium.example", "auth", "pass")]),
    ("nothing trusted at all", raw(LMTP, OURS, HANDOVER), [], [], []),
])
def test_which_headers_count(case, message, ids, relays, expected):
    assert methods(read(message, authserv_ids=ids, trusted_relays=relays)) == expected, case


def test_properties_are_kept_for_the_rules():
    [dkim, spf, dmarc] = read(raw(*GMAIL), authserv_ids=["mx.google.com"]).results
    assert dkim.prop("header.i") == "@devseed.example"
    assert spf.prop("smtp.mailfrom") == "young@devseed.example"
    assert dmarc.prop("header.from") == "devseed.example"


def test_notes_say_what_was_set_aside():
    r = read(raw(LMTP, OURS, HANDOVER, FORGED.format(id="mx.openatrium.example")),
             authserv_ids=["mx.openatrium.example"])
    assert "1 other Authentication-Results header(s) ignored" in r.notes
    assert "APPEND" in read(raw(FORGED.format(id="x")), authserv_ids=["x"]).notes[0]
    assert "smtp.evil.example" in read(raw("Received: from a by smtp.evil.example with ESMTP; d"),
                                       authserv_ids=["x"]).notes[0]
    r = read(raw(LMTP, "Authentication-Results: mx.openatrium.example; none", HANDOVER),
             authserv_ids=["mx.openatrium.example"])
    assert r.results == () and "checked nothing" in r.notes[0]


def test_an_unreadable_header_is_noted_not_raised():
    r = read(raw(LMTP, "Authentication-Results: mx.openatrium.example; ;;; ===", HANDOVER),
             authserv_ids=["mx.openatrium.example"])
    assert r.results == () and any("unreadable" in n for n in r.notes)


@pytest.mark.parametrize("value, expected", [
    ("from a.example (b.example [192.0.2.1]) by MX.Example.org. with ESMTPS id 1; Tue, 1 Dec 2026",
     {"from": "a.example", "by": "mx.example.org", "with": "esmtps"}),
    ("by 2002:a05:6a10:9b0c with SMTP id i12; Tue, 1 Dec 2026", {"by": "2002:a05:6a10:9b0c", "with": "smtp"}),
    ("from [127.0.0.1] ([127.0.0.1]) by vm with LMTP id x (envelope-from <a@b>) for <c@d>; date",
     {"from": "127.0.0.1", "by": "vm", "with": "lmtp"}),
    ("from x (comment (nested) by fake) by real.example with SMTP; date",
     {"from": "x", "by": "real.example", "with": "smtp"}),
])
def test_received_clauses(value, expected):
    assert received_clauses(value) == expected

#!/usr/bin/env python3
"""Writes archive.mbox: a small synthetic mailbox of a support inbox with the threading failure modes
of real mail (see README.md beside it). Deterministic; run it again after changing MESSAGES."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUPPORT = "support@openatrium.example"
ANTONIO = "Antonio De Marco <antonio@nuvole.example>"  # partner contact with a seat
GIULIA = "Giulia <giulia@nuvole.example>"  # the same partner, no seat
YOUNG = "Young <young@devseed.example>"  # staff
STRANGER = "Mallory <mallory@elsewhere.example>"
START = datetime(2026, 11, 30, 14, 0, tzinfo=timezone.utc)  # Monday, 09:00 in New York

# (Message-ID, From, To, Subject, extra headers): in arrival order. "a0", the first mail of A, is missing.
MESSAGES = [
    # A: a partner wrote to a staff member directly; a colleague answered all and copied support; the
    # partner answered the original too; support never saw the original.
    ("a1@nuvole.example", GIULIA, f"{YOUNG}, {SUPPORT}", "Re: Spaces override lost",
     "In-Reply-To: <a0@nuvole.example>\nReferences: <a0@nuvole.example>"),
    ("a2@devseed.example", YOUNG, f"{GIULIA}, {ANTONIO}, {SUPPORT}", "Re: Spaces override lost",
     "In-Reply-To: <a1@nuvole.example>\nReferences: <a0@nuvole.example> <a1@nuvole.example>"),
    ("a3@nuvole.example", ANTONIO, f"{YOUNG}, {SUPPORT}", "Re: Spaces override lost",
     "In-Reply-To: <a0@nuvole.example>\nReferences: <a0@nuvole.example>"),
    ("a4@nuvole.example", ANTONIO, SUPPORT, "Re: Spaces override lost",  # Emacs style, no References
     "In-Reply-To: <a0@nuvole.example> (message from Antonio De Marco on Mon, 30 Nov 2026\n 09:00:00 -0500)"),
    # A stranger quoting the same first message: kept out of the partner's thread.
    ("s1@elsewhere.example", STRANGER, SUPPORT, "Re: Spaces override lost",
     "In-Reply-To: <a0@nuvole.example>\nReferences: <a0@nuvole.example>"),
    # B: missing In-Reply-To, References cut mid-id, a bare id from a web form.
    ("b0@nuvole.example", ANTONIO, SUPPORT, "Drush make fails", ""),
    ("b1@devseed.example", YOUNG, SUPPORT, "Re: [OA-3] Drush make fails",
     "In-Reply-To: <b0@nuvole.example>\nReferences: <b0@nuvole.example>"),
    ("b2@nuvole.example", ANTONIO, SUPPORT, "Re: [OA-3] Drush make fails",
     "References: <b0@nuvole.example>\n <b1@devseed.example>"),
    ("b3@devseed.example", YOUNG, SUPPORT, "Re: [OA-3] Drush make fails",
     "In-Reply-To: <b2@nuvole.example>\nReferences: <b0@nuvole.example> <b1@devseed.example>\n <b2@nuvole.example>"),
    ("b4@nuvole.example", GIULIA, SUPPORT, "Re: Drush make fails",  # shortened: the first and the last
     "References: <b0@nuvole.example> <b3@devseed.example>"),
    ("b5@nuvole.example", ANTONIO, SUPPORT, "Re: Drush make fails",  # cut by a gateway in the middle of an id
     "References: <b0@nuvole.example> <b3@devseed.example> <b4@nuv"),
    ("b6@nuvole.example", GIULIA, SUPPORT, "Re: Drush make fails", "In-Reply-To: b5@nuvole.example"),
    # C and D: MH writes the author's address before the id; read as an id, it would join C and D.
    ("c0@nuvole.example", ANTONIO, SUPPORT, "Feature export question", ""),
    ("c1@nuvole.example", GIULIA, SUPPORT, "Re: Feature export question",
     'In-Reply-To: Message from Antonio De Marco <antonio@nuvole.example>\n of "Mon, 30 Nov 2026 11:00:00 -0500." <c0@nuvole.example>'),
    ("d0@nuvole.example", ANTONIO, SUPPORT, "Calendar sync broken", ""),
    ("d1@nuvole.example", GIULIA, SUPPORT, "Re: Calendar sync broken",
     'In-Reply-To: Message from Antonio De Marco <antonio@nuvole.example>\n of "Mon, 30 Nov 2026 12:00:00 -0500." <d0@nuvole.example>'),
    # E: a client that names its own message; F: two messages naming each other (a cycle).
    ("e0@nuvole.example", ANTONIO, SUPPORT, "Self-referencing client", "References: <e0@nuvole.example>"),
    ("f1@nuvole.example", ANTONIO, SUPPORT, "Cycle one", "In-Reply-To: <f2@nuvole.example>"),
    ("f2@nuvole.example", ANTONIO, SUPPORT, "Cycle two", "In-Reply-To: <f1@nuvole.example>"),
    # H: two requests opened apart, then a reply naming both: one conversation, merged.
    ("h0@nuvole.example", ANTONIO, SUPPORT, "VPN access for staging", ""),
    ("i0@nuvole.example", GIULIA, SUPPORT, "Staging credentials", ""),
    ("h1@nuvole.example", ANTONIO, SUPPORT, "Re: VPN access for staging",
     "In-Reply-To: <i0@nuvole.example>\nReferences: <h0@nuvole.example> <i0@nuvole.example>"),
    # L: mailing-list traffic (List-Id) that answers A's first message: never merged into A.
    ("l1@lists.example", "Bob <bob@lists.example>", "dev@lists.example", "Re: Spaces override lost",
     "In-Reply-To: <a0@nuvole.example>\nReferences: <a0@nuvole.example>\nList-Id: Dev <dev.lists.example>\nPrecedence: list"),
    ("l2@lists.example", "Carol <carol@lists.example>", "dev@lists.example", "Re: Spaces override lost",
     "In-Reply-To: <l1@lists.example>\nReferences: <a0@nuvole.example> <l1@lists.example>\nList-Id: Dev <dev.lists.example>"),
    ("l3@lists.example", "Dan <dan@lists.example>", "dev@lists.example", "Re: Spaces override lost",
     "In-Reply-To: <a0@nuvole.example>\nReferences: <a0@nuvole.example> <l1@lists.example>\nList-Id: Dev <dev.lists.example>"),
]


def main() -> None:
    out = []
    for n, (mid, frm, to, subject, extra) in enumerate(MESSAGES):
        date = format_datetime(START + timedelta(minutes=10 * n))
        head = f"From: {frm}\nTo: {to}\nSubject: {subject}\nDate: {date}\nMessage-ID: <{mid}>\n"
        head += (extra + "\n") if extra else ""
        out.append(f"From {mid} Mon Nov 30 14:00:00 2026\n{head}MIME-Version: 1.0\n"
                   f"Content-Type: text/plain; charset=utf-8\n\nMessage {mid}.\n\n")
    (HERE / "archive.mbox").write_text("".join(out))


if __name__ == "__main__":
    main()

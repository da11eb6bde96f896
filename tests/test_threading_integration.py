"""Threading by the reference graph on real servers (issue 14): Dovecot IMAP/LMTP and SMTP on 127.0.0.1,
partnerdesk run as a user runs it (``run.py once``), results read back from the people's mailboxes."""

from __future__ import annotations

import email.utils
import json

import pytest

from tests.test_intake_integration import mail, parsed, send, setup_desk, text_of, threads

pytestmark = pytest.mark.integration


def outbox(desk) -> list[dict]:
    return json.loads(desk.run("outbox", "list", "--json").stdout)


def kinds(desk, address: str, kind: str) -> list:
    return [parsed(r) for r in desk.servers.fetch_all(address) if parsed(r)["X-Partnerdesk-Kind"] == kind]


def test_a_reply_all_chain_whose_first_mail_support_never_saw_is_one_thread_with_one_ack(desk):
    setup_desk(desk)
    staff = desk.staff[0]
    # The partner writes to a staff member directly: support never gets this one.
    first = mail(f"Antonio <{desk.partner}>", staff, "Spaces override lost", "After a revert our overrides are gone.")
    send(desk, first)
    root = first["Message-ID"]
    # A colleague answers all and copies support.
    colleague = mail(f"Giulia <{desk.colleague}>", f"{staff}, {desk.partner}", "Re: Spaces override lost",
                     "Same here since Tuesday.", cc=desk.support, In_Reply_To=root, References=root)
    send(desk, colleague)
    assert "new threads 1, acks 1" in desk.run("once").stdout
    # The staff member answers all, from their own mail client (the chain still never saw support's ids).
    staff_reply = mail(f"Young <{staff}>", f"{desk.colleague}, {desk.partner}", "Re: Spaces override lost",
                       "Looking into it.", cc=desk.support, In_Reply_To=colleague["Message-ID"],
                       References=f"{root} {colleague['Message-ID']}")
    send(desk, staff_reply)
    # The partner answers the original too, in a later cycle, with an Emacs-style In-Reply-To.
    again = mail(f"Antonio <{desk.partner}>", f"{staff}, {desk.support}", "Re: Spaces override lost",
                 "It also happens on a fresh install.",
                 In_Reply_To=f"{root} (message from Antonio on a Monday)")
    send(desk, again)
    summary = desk.run("once").stdout
    assert "new threads 0, acks 0" in summary, summary

    [thread] = threads(desk)
    for m in (colleague, staff_reply, again):
        assert m["Message-ID"] in thread["messages"]
    acks = [e for e in outbox(desk) if e["kind"] == "ack"]
    assert len(acks) == 1  # one acknowledgement for the whole conversation
    assert len(kinds(desk, desk.colleague, "ack")) == 1 and not kinds(desk, desk.partner, "ack")
    # The partner's follow-up reached staff as a follow-up of the same thread.
    follow = [m for m in kinds(desk, staff, "notify") if "Follow-up" in m["Subject"]]
    assert follow and thread["id"] in follow[-1]["Subject"]

    # A stranger quoting the same first message does not get into the partner's thread.
    send(desk, mail(f"Mallory <{desk.stranger}>", desk.support, "Re: Spaces override lost", "Me too!",
                    In_Reply_To=root, References=root))
    assert "new threads 1" in desk.run("once").stdout
    assert len(threads(desk)) == 2


def test_a_message_naming_two_open_threads_merges_them(desk):
    setup_desk(desk)
    a = mail(f"Antonio <{desk.partner}>", desk.support, "VPN access for staging", "We need VPN access.")
    send(desk, a)
    desk.run("once")
    b = mail(f"Giulia <{desk.colleague}>", desk.support, "Staging credentials", "Who has the staging password?")
    send(desk, b)
    desk.run("once")
    assert [t["id"] for t in threads(desk)] == ["OA-1", "OA-2"]
    due_before = {t["id"]: t["due_at"] for t in threads(desk)}

    # Antonio answers Giulia's mail, which also names his own request: one conversation.
    send(desk, mail(f"Antonio <{desk.partner}>", desk.support, "Re: Staging credentials",
                    "Both are the same problem: the VPN gives the credentials.",
                    In_Reply_To=b["Message-ID"], References=f"{a['Message-ID']} {b['Message-ID']}"))
    summary = desk.run("once").stdout
    assert "acks 0" in summary, summary

    by_id = {t["id"]: t for t in threads(desk)}
    survivor, merged = by_id["OA-1"], by_id["OA-2"]
    assert merged["state"] == "closed" and merged["merged_into"] == "OA-1"
    assert a["Message-ID"] in survivor["messages"] and b["Message-ID"] in survivor["messages"]
    assert {e["kind"] for e in survivor["events"]} >= {"request", "merge", "follow-up"}
    # One clock: the earliest due time of the two stands (OA-1's, opened first by the seat holder).
    assert survivor["due_at"] == min(d for d in due_before.values() if d)
    assert len([e for e in outbox(desk) if e["kind"] == "ack"]) == 2  # one each, before; none for the merge

    # Staff are told which thread the other became.
    for staff in desk.staff:
        [notice] = kinds(desk, staff, "merge-notice")
        assert "[OA-1]" in notice["Subject"] and "OA-2" in notice["Subject"]
        assert "OA-2 (\"Staging credentials\") is now part of OA-1" in " ".join(text_of(notice).split())
        assert email.utils.parseaddr(notice["Reply-To"])[1] == desk.support

    # `threads show` of the merged id shows the survivor.
    shown = desk.run("threads", "show", "OA-2").stdout
    assert shown.startswith("OA-2 was merged into OA-1; showing OA-1\nOA-1  VPN access for staging")
    shown_json = json.loads(desk.run("threads", "show", "OA-2", "--json").stdout)
    assert shown_json["id"] == "OA-1" and shown_json["requested"] == "OA-2"

    # Mail that still names the merged thread (its tag) is filed in the survivor.
    send(desk, mail(f"Giulia <{desk.colleague}>", desk.support, "Re: [OA-2] Staging credentials", "Thanks!"))
    desk.run("once")
    assert len(threads(desk)) == 2 and len(threads(desk)[0]["messages"]) > len(survivor["messages"])

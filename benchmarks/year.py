#!/usr/bin/env python3
"""A simulated year of the program, in one process: what the store weighs at the end, and what a write costs.

    python3 benchmarks/year.py [--requests 2000] [--partners 300] [--days 365]

Day by day (the rules' clock moves over a year; nothing waits for real time), partner contacts write
requests and follow-ups, staff answer by mail (relayed), some threads are closed by command and the
rest close themselves after ten business days waiting on the partner; the scheduled mailings (calls,
renewals, trainings, welcome) go out when due. About five messages per request and ten sent mails
per request (for 2,000 requests: ~10,000 messages in, ~20,000 mails out). The real store, intake,
ticks and outbox run; mail goes to a sender that takes everything. It prints the hot store (the JSON
file rewritten at every durable write), the archive and the stored copies of sent mail, each month,
and the time one durable write takes at the start and at the end.
"""

from __future__ import annotations

import argparse
import collections
import random
import re
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import date, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

STAFF = ["young@devseed.example", "eric@devseed.example"]


class Clock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def now(self) -> datetime:
        return self.t


class Source:
    def __init__(self) -> None:
        self.queue: list = []

    def fetch_new(self, store):
        out, self.queue = self.queue, []
        return out

    def mark_done(self, raw) -> None:
        pass

    def quarantine(self, raw, reason) -> None:
        pass


class Sender:
    """Takes everything; remembers, per staff member and thread, the Reply-To and Message-ID of the last
    mail to them, so that staff answer as their mail client's Reply does (to support+KEY@: the proof
    that the answer is theirs, docs/staff-proof.md)."""

    def __init__(self) -> None:
        self.count = 0
        self.reply_to: dict[tuple[str, str], tuple[str, str]] = {}  # (staff, OA-n) -> (Reply-To, Message-ID)

    def send(self, entries, on_result=None):
        from service.ports import SendResult

        out = []
        for e in entries:
            head = e.raw.split("\r\n\r\n", 1)[0]
            fields = dict(re.findall(r"(?mi)^(Reply-To|Message-ID|X-Partnerdesk-Thread):[ \t]*(.*?)\r?$", head))
            fields = {k.lower(): v for k, v in fields.items()}
            if "x-partnerdesk-thread" in fields and "reply-to" in fields and len(e.rcpt_to) == 1:
                address = re.search(r"<([^>]+)>", fields["reply-to"])
                self.reply_to[(e.rcpt_to[0].lower(), fields["x-partnerdesk-thread"])] = (
                    address.group(1) if address else fields["reply-to"], fields.get("message-id", ""))
            self.count += 1
            out.append(SendResult(key=e.key, status="sent"))
            if on_result:
                on_result(out[-1])
        return out


def mail(frm: str, subject: str, body: str, n: int, at: datetime, refs: str = "",
         to: str = "support@openatrium.example") -> bytes:
    head = (f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <y{n}@mail.example>\r\nDate: {format_datetime(at)}\r\n")
    if refs:
        head += f"In-Reply-To: {refs}\r\nReferences: {refs}\r\n"
    return (head + "\r\n" + body + "\r\n").encode()


def hot_write_seconds(store, repeat: int = 5) -> float:
    best = 1e9
    for _ in range(repeat):
        t = time.perf_counter()
        with store.transaction():
            store.set_digest_day(store.digest_day() or "")
            store.set_cursor("bench", 1, int(time.time()))
        best = min(best, time.perf_counter() - t)
    return best


def decision_write_seconds(store, repeat: int = 5) -> float:
    """A write that changes what a decision changes (an open thread and a message of it, the cursor): the
    tables a write changes are encoded again, the others are written as the last write left them."""
    from workflows.lifecycle import State

    thread = next(t for t in store.threads() if t.state != State.CLOSED and t.messages)
    mid = thread.messages[-1]
    best = 1e9
    for _ in range(repeat):
        t = time.perf_counter()
        with store.transaction():
            store.save_thread(thread)
            store.record_message(mid, **(store.message(mid) or {}))
            store.set_cursor("bench", 1, int(time.time()))
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--partners", type=int, default=300)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    import run
    from config.settings import load
    from service.cycle import cycle
    from service.ports import RawMail

    rng = random.Random(args.seed)
    d = Path(tempfile.mkdtemp(prefix="partnerdesk-year-"))
    start = datetime(2027, 1, 4, 14, tzinfo=timezone.utc)  # a Monday, 9 AM ET
    s = load({"support": {"address": "support@openatrium.example", "staff": STAFF, "escalation": [STAFF[1]]},
              "store": {"path": str(d / "store" / "partnerdesk.json")},
              "calls": {"rrule": "FREQ=MONTHLY;INTERVAL=3;BYDAY=2TU", "first": datetime(2027, 1, 12, 14),
                        "dial_in": "+1 202 555 0100"},
              "trainings": {"dates": [{"id": f"training-2027-{m:02d}", "start": datetime(2027, m, 8, 9),
                                       "place": "online"} for m in (3, 7, 11)]},
              "renewals": {"pay_url": "https://openatrium.com/pay"},
              "mailings": {"enabled": ["calls", "renewals", "trainings", "welcome"]}}, "year")
    clock = Clock(start)
    contacts = []
    with ExitStack() as stack:
        w = run.Wiring(s, clock, stack)  # type: ignore[arg-type]
        desk = w.desk(spool_root=d / "spool")
        desk.source, desk.sender = Source(), Sender()
        rows = ["partner_id,partner_name,plan,renews_on,contact_name,contact_email,roles,trained_on"]
        for p in range(args.partners):
            renews = (start.date() + timedelta(days=30 + rng.randrange(330))).isoformat()
            for c in range(3):
                addr = f"c{c}@p{p}.example"
                contacts.append(addr)
                roles = "primary;billing" if c == 0 else "technical"
                trained = "2026-06-12" if c < 2 else ""
                rows.append(f"p{p},Partner {p},{'solo' if p % 5 == 0 else 'standard'},{renews},Person {p}.{c},"
                            f"{addr},{roles},{trained}")
        (d / "roster.csv").write_text("\n".join(rows) + "\n")
        from service.roster import import_roster
        from workflows.roster import parse_roster

        import_roster(desk.store, parse_roster((d / "roster.csv").read_text()), clock.now())
        store = desk.store
        first_write = hot_write_seconds(store)
        n_msg = n_req = unproven = 0
        # Each request's life, in business days after it: staff answer (relayed), the partner writes
        # back in half the cases, staff answer again, and a third are closed by #close; the rest close
        # themselves after ten business days waiting on the partner.
        script: dict[int, list[tuple[str, str, str]]] = {}  # day -> [(kind, from, subject)]
        per_day = args.requests / (args.days * 5 / 7)
        t_run = time.perf_counter()
        print(f"{'month':<8} {'requests':>8} {'messages':>8} {'sent':>7} {'hot JSON':>9} {'archive':>8} {'mail':>8}")
        carry = 0.0
        for day in range(args.days):
            today = start + timedelta(days=day)
            todays = list(script.pop(day, []))
            if today.weekday() < 5:
                carry += per_day
                while carry >= 1 and n_req < args.requests:
                    carry -= 1
                    n_req += 1
                    who = rng.choice(contacts)
                    todays.append(("req", who, f"Question {n_req} about Spaces"))
                    tag = f"[OA-{n_req}]"  # the thread this request will open (numbers are handed out in order)
                    later = day + 1 + rng.randrange(2)
                    staff = rng.choice(STAFF)
                    script.setdefault(later, []).append(("answer", staff, f"Re: {tag} Question"))
                    if rng.random() < 0.5:
                        script.setdefault(later + 1 + rng.randrange(3), []).append(("follow-up", who, f"Re: {tag} Question"))
                        script.setdefault(later + 5, []).append(("answer", staff, f"Re: {tag} Question"))
                    if rng.random() < 0.35:
                        script.setdefault(later + 7, []).append(("close", staff, f"Re: {tag} Question"))
            raws = []
            for i, (kind, frm, subject) in enumerate(todays):
                n_msg += 1
                at = today + timedelta(minutes=5 * i)
                body = "#close" if kind == "close" else "Thank you, here is what we found. " * 20
                to, refs = "support@openatrium.example", ""
                if kind in ("answer", "close"):  # Reply on the last mail this staff member got about the thread
                    got = desk.sender.reply_to.get((frm, subject.split("]")[0].removeprefix("Re: [")))
                    if got is None:
                        unproven += 1
                    else:
                        to, refs = got
                raws.append(RawMail(source_key=f"y:{n_msg}", data=mail(frm, subject, body, n_msg, at, refs, to),
                                    received_at=at))
            desk.source.queue = raws
            clock.t = today + timedelta(hours=8)
            cycle(desk)
            if (day + 1) % 30 == 0 or day == args.days - 1:
                base = Path(s.store_path)
                print(f"{(day + 1) // 30:<8} {n_req:>8,} {n_msg:>8,} {desk.sender.count:>7,} "
                      f"{common.tree_size(base) / 1e6:>7.2f}MB {common.tree_size(base.with_name(base.name + '.archive')) / 1e6:>6.1f}MB "
                      f"{common.tree_size(base.with_name(base.name + '.mail')) / 1e6:>6.1f}MB")
        last_write = hot_write_seconds(store)
        base = Path(s.store_path)
        hot = common.tree_size(base)
        print(f"\nafter {args.days} days: {n_req:,} requests, {n_msg:,} messages in, {desk.sender.count:,} mails sent "
              f"({time.perf_counter() - t_run:.0f} s); {unproven} staff answers had no mail to reply to (held unproven)")
        states = collections.Counter(t.state for t in store.threads())
        print("threads by state: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
        print(f"hot store (rewritten at every durable write): {hot / 1e6:.2f} MB; archive "
              f"{common.tree_size(base.with_name(base.name + '.archive')) / 1e6:.1f} MB; stored copies of sent mail "
              f"{common.tree_size(base.with_name(base.name + '.mail')) / 1e6:.1f} MB (kept {s.keep_sent_mail_days} days)")
        import json
        tables = json.loads(base.read_text())
        print("hot store by table: " + ", ".join(f"{k} {len(json.dumps(v)) / 1e3:.0f} kB ({len(v)})"
                                                for k, v in sorted(tables.items(), key=lambda kv: -len(json.dumps(kv[1])))[:6]))
        print(f"one durable write (a cursor): {first_write * 1000:.1f} ms at the start, {last_write * 1000:.1f} ms after "
              f"the year = {last_write / first_write:.2f}x; a decision's (a thread, a message, a cursor) after the year: "
              f"{decision_write_seconds(store) * 1000:.1f} ms")
    common.remove(d)


if __name__ == "__main__":
    main()

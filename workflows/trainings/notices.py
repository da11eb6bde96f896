"""The mail a registration's changes call for, and the mail around a course: pure, keyed in the ledger.

Every change of a registration (workflows/trainings/model.py) is one event; the mail it calls for is
keyed by (kind, "<training>/<address>/<event index>", recipient), so it goes out once whatever restarts
happen. Only the latest change of a registration is mailed: an earlier one not yet sent when a later
one happened (a confirmation overtaken by a cancellation while the daemon was down) is skipped, with
the reason recorded.

| change                          | mail                                                              |
|---------------------------------|-------------------------------------------------------------------|
| confirmed                       | training-confirmed (iTIP REQUEST, accepted, joining details)     |
| waitlisted                      | training-waitlisted (place in line)                               |
| held                            | training-held to the person, training-approval to each staff member |
| held -> confirmed / waitlisted  | training-confirmed / -waitlisted, also to whoever asked for it    |
| held -> declined                | training-declined, also to whoever asked for it (iTIP CANCEL if they had the entry) |
| waitlisted -> confirmed         | training-promoted (iTIP REQUEST)                                  |
| -> cancelled                    | training-cancelled (iTIP CANCEL if they had the entry)            |

A writer who registered (or cancelled) colleagues gets a training-receipt listing what became of each.
Around a course: training-reminder to confirmed people ``reminder_days_before`` the start; when the
course moves, training-update to everyone whose calendar holds it and everyone registered (a higher
SEQUENCE); when it leaves the config, training-cancel; when it ends, training-attendance to staff; and
once a person's attendance is recorded, one training-seat mail (their first seat in the channel).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any, Mapping, Sequence

from ..calendar import BusinessCalendar
from ..mailings.due import Due, format_when, ledger_key, stamp
from ..mailings.types import MailingsConfig, TrainingDate
from ..model import Partner
from . import schedule
from .model import ENDED, Registration, RegEvent, Seat, Status, TrainingInputs
from .seats import AUTOMATIC, position

LOOKBACK = timedelta(days=45)  # a course over longer ago than this is history: no mail decided for it
STAFF_VIA = ("staff-mail", "cli")


def _change_kinds(prev: RegEvent | None, e: RegEvent) -> str:
    """The registrant's mail for the change ``prev`` -> ``e`` ("" when it calls for none)."""
    if e.status is Status.CONFIRMED:
        return "training-promoted" if prev is not None and prev.status is Status.WAITLISTED else "training-confirmed"
    return {Status.WAITLISTED: "training-waitlisted", Status.HELD: "training-held",
            Status.DECLINED: "training-declined", Status.CANCELLED: "training-cancelled"}.get(e.status, "")


def _ctx(t: TrainingDate, mc: MailingsConfig, *, name: str, partner_name: str, registered: bool,
         **extra: Any) -> dict[str, Any]:
    tz = mc.timezone
    return {"name": name, "partner_name": partner_name, "title": t.title, "training_id": t.id,
            "when": schedule.span_words(t, tz), "starts": format_when(t.start, mc.tz()),
            "days": schedule.days_of(t, tz), "place": t.place, "remote": t.remote if registered else "",
            "has_remote": bool(t.remote), **extra}


def _record(t: TrainingDate, sequence: int, method: str = "", **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"training_id": t.id, "start": t.start.isoformat(), "end": t.ends.isoformat(),
                           "place": t.place, "sequence": sequence, **extra}
    if method:
        rec["method"] = method
    return rec


def _seat_words(r: Registration, p: Partner | None, mc: MailingsConfig) -> str:
    if r.seat is Seat.REFRESHER:
        return "a refresher place (it uses none of your included places)"
    if r.seat is Seat.EXTRA:
        return "an extra place, beyond the included ones, approved by our staff"
    n = mc.trainings.included(p.plan) if p else 0
    who = p.name if p else "your partnership"
    return f"one of the {n} training place{'s' if n != 1 else ''} included in {who}'s partnership this term"


class _Planner:
    """One pass over the registrations, the ledger and the calendar; ``send``/``skip`` collect the result."""

    def __init__(self, partners: Sequence[Partner], ledger: Mapping[str, Mapping[str, Any]], mc: MailingsConfig,
                 now: datetime, inputs: TrainingInputs) -> None:
        self.partners = {p.id: p for p in partners}
        self.ledger = ledger
        self.mc = mc
        self.now = now
        self.inputs = inputs
        self.regs = inputs.registrations
        self.trainings = schedule.known(mc.trainings, now)
        self.cal = dict(schedule.calendar_state(ledger))  # updated as iTIP mail is planned in this pass
        self.send: list[Due] = []
        self.skip: list[Due] = []
        self.staff = set(inputs.staff)

    def course(self, tid: str) -> TrainingDate | None:
        return self.trainings.get(tid) or schedule.find(self.mc.trainings, tid)

    def partner_name(self, pid: str) -> str:
        p = self.partners.get(pid)
        return p.name if p else pid

    def offer(self, d: Due, skip_reason: str = "") -> bool:
        if d.key in self.ledger:
            return False
        if skip_reason:
            self.skip.append(d.skipped(skip_reason))
            return False
        self.send.append(d)
        if d.event is not None:
            self.cal[(d.record["training_id"], d.recipient)] = {**d.record, "recipient": d.recipient}
        return True

    # -- one registration's changes ------------------------------------------------------------------------
    def registration(self, r: Registration) -> None:
        t = self.course(r.training_id)
        last = len(r.events) - 1
        for i, e in enumerate(r.events):
            prev = r.events[i - 1] if i else None
            kind = _change_kinds(prev, e)
            if not kind:
                continue
            occ = f"{r.training_id}/{r.address}/{i}"
            to = [(kind, r.address)]
            if prev is not None and prev.status is Status.HELD and "@" in r.registered_by \
                    and r.registered_by != r.address and r.registered_by not in self.staff:
                to.append((kind, r.registered_by))  # the colleague who asked is told which way staff decided
            if kind == "training-held":
                to += [("training-approval", a) for a in sorted(self.staff)]
            to = [(m, a) for m, a in to if ledger_key(m, occ, a) not in self.ledger]
            if not to:
                continue
            if i < last:
                why = f"superseded by a later change ({r.events[-1].status}) before it was sent"
            elif t is None:
                why = "the course is no longer in the calendar"
            elif t.start <= self.now:
                why = "the course has already started"
            else:
                why = ""
            for mailing, addr in to:
                if t is None:  # nothing to describe: recorded as a skip only
                    self.skip.append(Due(mailing=mailing, occurrence=occ, recipient=addr, partner_id=r.partner_id,
                                         due_at=e.at, why=f"{r.address} {e.status}", template="", subject="",
                                         record={"training_id": r.training_id}, reason=why))
                else:
                    self.offer(self.change_mail(r, i, prev, e, t, mailing, addr), why)

    def change_mail(self, r: Registration, i: int, prev: RegEvent | None, e: RegEvent, t: TrainingDate,
                    mailing: str, to: str) -> Due:
        p = self.partners.get(r.partner_id)
        occ = f"{r.training_id}/{r.address}/{i}"
        partner_name = self.partner_name(r.partner_id)
        for_self = to == r.address
        approval = mailing == "training-approval"
        registered = e.status is Status.CONFIRMED and for_self
        last = self.cal.get((t.id, to))
        method = ""
        if for_self and e.status is Status.CONFIRMED:
            method = "REQUEST"
        elif for_self and e.status in ENDED and schedule.holds_entry(last):
            method = "CANCEL"
        seq = schedule.next_sequence(last) if method else int((last or {}).get("sequence", 0))
        event = schedule.event(t, self.mc, method=method, sequence=seq, email=to, name=r.name,
                               registered=registered) if method else None
        decided_by_staff = prev is not None and prev.status is Status.HELD and e.via in STAFF_VIA
        ctx = _ctx(t, self.mc, name=r.name if for_self else "", partner_name=partner_name, registered=registered,
                   registrant=f"{r.name} ({r.address})" if r.name else r.address, registrant_address=r.address,
                   for_self=for_self,
                   seat=_seat_words(r, p, self.mc), note=e.note, by=e.by, via=e.via,
                   approved=decided_by_staff and e.status is not Status.DECLINED,
                   freed=prev is not None and prev.status is Status.HELD and e.by == AUTOMATIC,
                   position=position(r, self.regs) if e.status is Status.WAITLISTED else 0,
                   capacity=t.capacity, reason=e.note if e.status is Status.DECLINED else "")
        subjects = {
            "training-confirmed": f"Your place: {t.title}, {ctx['starts']}",
            "training-promoted": f"A place opened up: {t.title}, {ctx['starts']}",
            "training-waitlisted": f"Waitlist: {t.title}, {ctx['starts']}",
            "training-held": f"Registration received, pending: {t.title}, {ctx['starts']}",
            "training-approval": f"Approve an extra training place? {partner_name}: {r.address} for {t.id}",
            "training-declined": f"No extra place: {t.title}, {ctx['starts']}",
            "training-cancelled": f"Cancelled: your registration for {t.title}, {ctx['starts']}",
        }
        if approval:
            ctx.update(self.approval_context(r, p, t))
        subject = subjects[mailing]
        if not for_self and not approval:
            subject += f" ({r.name or r.address})"
        return Due(mailing=mailing, occurrence=occ, recipient=to, partner_id=r.partner_id, due_at=e.at,
                   template=mailing.replace("-", "_"), subject=subject,
                   why=f"{r.address} {e.status}" + (f": {e.note}" if e.note else ""), context=ctx, event=event,
                   record=_record(t, seq, method, registration=r.key),
                   in_reply_to=e.message_id if e.message_id and to == e.by else "")

    def approval_context(self, r: Registration, p: Partner | None, t: TrainingDate) -> dict[str, Any]:
        others = sorted(f"{x.address} ({x.status}, {x.seat})" for x in self.regs
                        if x.partner_id == r.partner_id and x.key != r.key and x.status is not Status.CANCELLED)
        return {"included": self.mc.trainings.included(p.plan) if p else 0, "plan": p.plan if p else "?",
                "asked_by": r.registered_by or r.address, "others": others,
                "support_address": self.inputs.support_address}

    # -- receipts to whoever registered colleagues ----------------------------------------------------------
    def receipts(self) -> None:
        groups: dict[tuple[str, str, str], list[tuple[Registration, RegEvent]]] = {}
        for r in self.regs:
            for e in r.events:
                if e.message_id and e.by and e.by not in self.staff and e.by != AUTOMATIC and e.via == "reply":
                    groups.setdefault((r.training_id, e.message_id, e.by), []).append((r, e))
        for (tid, mid, writer), items in sorted(groups.items()):
            if all(r.address == writer for r, _ in items):
                continue  # they only registered themselves: their own mail says it all
            occ = f"{tid}/{mid.strip('<>').replace('|', '_')}"
            if ledger_key("training-receipt", occ, writer) in self.ledger:
                continue
            t = self.course(tid)
            if t is None or t.start <= self.now:
                continue
            pid = items[0][0].partner_id
            rows = [{"who": "you" if r.address == writer else (f"{r.name} <{r.address}>" if r.name else r.address),
                     "status": str(e.status), "note": e.note} for r, e in items]
            self.offer(Due(mailing="training-receipt", occurrence=occ, recipient=writer, partner_id=pid,
                           due_at=items[0][1].at, template="training_receipt", in_reply_to=mid,
                           subject=f"Your registrations: {t.title}, {format_when(t.start, self.mc.tz())}",
                           why=f"{writer} registered or cancelled {len(rows)} people",
                           context=_ctx(t, self.mc, name="", partner_name=self.partner_name(pid), registered=False,
                                        rows=rows),
                           record=_record(t, int((self.cal.get((tid, writer)) or {}).get("sequence", 0)))))

    # -- reminders -----------------------------------------------------------------------------------------
    def reminders(self) -> None:
        days = self.mc.trainings.reminder_days_before
        if not days:
            return
        for r in self.regs:
            t = self.trainings.get(r.training_id)
            if r.status is not Status.CONFIRMED or t is None:
                continue
            remind_at = t.start - timedelta(days=days)
            key = ledger_key("training-reminder", f"{t.id}@{stamp(t.start)}", r.address)
            if remind_at > self.now or key in self.ledger or t.start < self.now - LOOKBACK:
                continue
            placed = r.last.at if r.last else r.requested_at
            why = ("the course has already started" if t.start <= self.now else
                   "confirmed after the reminder was due: the confirmation itself has the details"
                   if placed >= remind_at else "")
            seq = int((self.cal.get((t.id, r.address)) or {}).get("sequence", 0))
            self.offer(Due(mailing="training-reminder", occurrence=f"{t.id}@{stamp(t.start)}", recipient=r.address,
                           partner_id=r.partner_id, due_at=remind_at, template="training_reminder",
                           subject=f"Reminder: {t.title}, {format_when(t.start, self.mc.tz())}",
                           why=f"reminder {days} days before the course", record=_record(t, seq),
                           context=_ctx(t, self.mc, name=r.name, partner_name=self.partner_name(r.partner_id),
                                        registered=True, seat=_seat_words(r, self.partners.get(r.partner_id), self.mc))),
                       why)

    # -- a course moved, left the calendar, or came back --------------------------------------------------
    def calendar_changes(self) -> None:
        told: dict[tuple[str, str], Mapping[str, Any]] = {}
        changes: dict[tuple[str, str], int] = {}
        for rec in self.ledger.values():
            if rec.get("status") != "queued" or "training_id" not in rec or "start" not in rec:
                continue
            pair = (rec["training_id"], rec["recipient"])
            if pair not in told or (rec.get("at", ""), rec.get("sequence", 0)) > (told[pair].get("at", ""),
                                                                                   told[pair].get("sequence", 0)):
                told[pair] = rec
            if rec.get("mailing") in ("training-update", "training-cancel"):
                changes[pair] = changes.get(pair, 0) + 1
        live = {(r.training_id, r.address): r for r in self.regs if r.live}
        for pair in sorted(set(told) | set(live)):
            tid, email = pair
            last_told, reg = told.get(pair), live.get(pair)
            cal = self.cal.get(pair)
            holder = schedule.holds_entry(cal)
            restorable = cal is not None and cal.get("method") == "CANCEL" and cal.get("reason") == schedule.REMOVED
            if last_told is None or not (holder or reg or restorable):
                continue
            seen: Mapping[str, Any] = cal if holder and cal is not None else last_told  # their calendar, or what they were told
            t = self.course(tid)
            n = changes.get(pair, 0) + 1
            removal_told = last_told.get("mailing") == "training-cancel"
            if t is None:
                start = datetime.fromisoformat(seen["start"])
                if removal_told or start <= self.now:
                    continue
                gone = TrainingDate(id=tid, start=start, end=datetime.fromisoformat(seen.get("end", seen["start"])),
                                    title=self.mc.trainings.title, place=seen.get("place", ""))
                self.course_mail("training-cancel", gone, email, reg, f"{tid}#c{n}", holder,
                                 "the course was removed from the calendar", removed=True)
                continue
            if t.start <= self.now:
                continue
            if removal_told:
                self.course_mail("training-update", t, email, reg, f"{t.id}@{stamp(t.start)}#u{n}",
                                 restorable or holder, "the course is back in the calendar", restored=True)
                continue
            was = (datetime.fromisoformat(seen["start"]), datetime.fromisoformat(seen.get("end", seen["start"])),
                   seen.get("place", ""))
            if was == (t.start, t.ends, t.place):
                continue
            self.course_mail("training-update", t, email, reg, f"{t.id}@{stamp(t.start)}#u{n}", holder,
                             f"the course changed (was {format_when(was[0], self.mc.tz())})",
                             was=format_when(was[0], self.mc.tz()), place_was=was[2] if was[2] != t.place else "")

    def course_mail(self, mailing: str, t: TrainingDate, email: str, reg: Registration | None, occ: str,
                    calendar: bool, why: str, **extra: Any) -> None:
        registered = reg is not None and reg.status is Status.CONFIRMED
        method = ("CANCEL" if mailing == "training-cancel" else "REQUEST") if calendar else ""
        last = self.cal.get((t.id, email))
        seq = schedule.next_sequence(last) if method else int((last or {}).get("sequence", 0))
        name = reg.name if reg else ""
        pid = reg.partner_id if reg else ""
        if not pid:
            pid = next((p.id for p in self.partners.values() if any(c.email == email for c in p.contacts)), "")
        when = format_when(t.start, self.mc.tz())
        subject = (f"Cancelled: {t.title}, {when}" if mailing == "training-cancel" else
                   f"Back on: {t.title}, {when}" if extra.get("restored") else f"Changed: {t.title}, now {when}")
        extra_rec = {"reason": schedule.REMOVED} if mailing == "training-cancel" else {}
        self.offer(Due(mailing=mailing, occurrence=occ, recipient=email, partner_id=pid, due_at=self.now,
                       template=mailing.replace("-", "_"), subject=subject, why=why,
                       context=_ctx(t, self.mc, name=name, partner_name=self.partner_name(pid), registered=registered,
                                    status=str(reg.status) if reg else "",
                                    **{"was": "", "place_was": "", "restored": False, "removed": False, **extra}),
                       event=schedule.event(t, self.mc, method=method, sequence=seq, email=email, name=name,
                                            registered=registered) if method else None,
                       record=_record(t, seq, method, **extra_rec)))

    # -- when a course ends: the attendance sheet; once attended: the seat ------------------------------------
    def attendance_sheets(self) -> None:
        for t in self.trainings.values():
            if not (self.now - LOOKBACK <= t.ends <= self.now):
                continue
            people = sorted((r for r in self.regs if r.training_id == t.id
                             and r.status in (Status.CONFIRMED, Status.ATTENDED, Status.ABSENT)),
                            key=lambda r: (r.partner_id, r.address))
            if not people:
                continue
            open_ = [r for r in people if r.status is Status.CONFIRMED]
            rows = [{"address": r.address, "name": r.name, "partner": self.partner_name(r.partner_id),
                     "seat": str(r.seat), "status": str(r.status)} for r in people]
            for s in sorted(self.staff):
                self.offer(Due(mailing="training-attendance", occurrence=t.id, recipient=s, partner_id="",
                               due_at=t.ends, template="training_attendance",
                               subject=f"Who attended {t.id}? {t.title}, {format_when(t.start, self.mc.tz())}",
                               why=f"the course ended; {len(open_)} of {len(people)} not marked yet",
                               context=_ctx(t, self.mc, name="", partner_name="", registered=False, rows=rows,
                                            support_address=self.inputs.support_address),
                               record={"training_id": t.id}),
                           "" if open_ else "attendance is already recorded for everyone")

    def seat_mail(self) -> None:
        for r in self.regs:
            if r.status is not Status.ATTENDED or r.trained_before is not None:
                continue
            key = ledger_key("training-seat", "seat", r.address)
            if key in self.ledger:
                continue
            t = self.course(r.training_id)
            title = t.title if t else self.mc.trainings.title
            self.offer(Due(mailing="training-seat", occurrence="seat", recipient=r.address, partner_id=r.partner_id,
                           due_at=r.last.at if r.last else self.now, template="training_seat",
                           subject="You now hold a seat in the Open Atrium partner support channel",
                           why=f"attended {r.training_id}: the first seat in the support channel",
                           context={"name": r.name, "partner_name": self.partner_name(r.partner_id), "title": title,
                                    "training_id": r.training_id, "promise": self.inputs.promise,
                                    "attended_on": r.attended_on.isoformat() if r.attended_on else "",
                                    "address": r.address},
                           record={"training_id": r.training_id}))


def due(partners: Sequence[Partner], ledger: Mapping[str, Mapping[str, Any]], mc: MailingsConfig, now: datetime,
        inputs: TrainingInputs) -> tuple[list[Due], list[Due]]:
    """(to send, to skip): every training mail due at ``now`` besides announcements and refreshers."""
    p = _Planner(partners, ledger, mc, now, inputs)
    for r in sorted(inputs.registrations, key=lambda r: (r.requested_at, r.key)):
        p.registration(r)
    p.receipts()
    p.calendar_changes()
    p.reminders()
    p.attendance_sheets()
    p.seat_mail()
    return p.send, p.skip


def times(mc: MailingsConfig, regs: Sequence[Registration], start: datetime, end: datetime) -> set[datetime]:
    """Moments in [start, end) when training mail may fall due (for `mailings plan`)."""
    out = set()
    days = mc.trainings.reminder_days_before
    for t in schedule.training_dates(mc.trainings, start - timedelta(days=30), end + timedelta(days=60)):
        for moment in (t.start - timedelta(days=mc.trainings.announce_days_before),
                       t.start - timedelta(days=days) if days else None, t.ends):
            if moment is not None and start <= moment < end:
                out.add(moment)
    return out


def promise_words(cal: BusinessCalendar) -> str:
    """The reply-time promise in words, from the [sla] calendar: what a seat holder is promised."""
    span = "24 hours on business days" if cal.response_hours is None else \
        f"{cal.response_hours:g} business hours"
    days = sorted(cal.workdays)
    names = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    week = f"{names[days[0]]} to {names[days[-1]]}" if days == list(range(days[0], days[-1] + 1)) else \
        ", ".join(names[d] for d in days)
    clock = f"{format_clock(cal.opens)} to {format_clock(cal.closes)}"
    zone = "US Eastern time" if cal.timezone == "America/New_York" else cal.timezone
    off = f", {cal.holiday_country} federal holidays excepted" if cal.holiday_country == "US" else \
        f", {cal.holiday_country} public holidays excepted" if cal.holiday_country else ""
    return f"a reply within {span} ({week}, {clock} {zone}{off})"


def format_clock(t: time) -> str:
    """9:00 AM, 5:00 PM."""
    return f"{(t.hour % 12) or 12}:{t.minute:02d} {'AM' if t.hour < 12 else 'PM'}"

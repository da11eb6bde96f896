"""The batch intake `run.py` uses: IntakeService.take_in_many, fed by service.cycle.cycle() in batches of 50.

What it must keep (README, "Nothing lost, nothing twice"): one durable store write per batch;
nothing marked done on the server before the write that records it; a batch in which anything
fails is rolled back and taken one message at a time, so the bad message is quarantined alone
(in the store and on the server) and the rest are taken in once.

Real TinyDB store on disk, fake mail source that notes what the store file held each time it was
asked to mark a message done or to quarantine it.
"""

from __future__ import annotations

import hashlib

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import run
import store.atomic as atomic
from mailbox.compose import Composer
from mailbox.parse import parse
from store.tinystore import Store
from tests.test_service import NOW, SUPPORT, RecordingSender, raw_mail
from workflows.intake import IntakeSettings
from service.cycle import Desk, cycle
from service.intake import IntakeService
from service.outbox import Outbox
from service.ports import RawMail
from service.report import CycleReport


def on_disk(path: Path) -> dict:
    return json.loads(path.read_bytes()) if path.exists() else {}


def recorded_sources(disk: dict) -> set[str]:
    """Source keys of the mail the store file records as taken in."""
    return {r["source"] for r in disk.get("raw", {}).values()}


class WitnessSource:
    """A mail source that records, for each mark_done and quarantine, what the store file held then."""

    def __init__(self, store_path: Path, raws: list[RawMail] = ()) -> None:
        self.path = store_path
        self.raws = list(raws)
        self.done: list[str] = []
        self.quarantined: list[str] = []
        self.disk_at_done: dict[str, dict] = {}
        self.disk_at_quarantine: dict[str, dict] = {}

    def fetch_new(self, store):
        cur = store.cursor("INBOX")
        yield from (r for r in self.raws if cur is None or r.uid > cur["last_uid"])

    def mark_done(self, raw: RawMail) -> None:
        self.done.append(raw.source_key)
        self.disk_at_done[raw.source_key] = on_disk(self.path)

    def quarantine(self, raw: RawMail, reason: str) -> None:
        self.quarantined.append(raw.source_key)
        self.disk_at_quarantine[raw.source_key] = on_disk(self.path)


class Fragile(Composer):
    """Our bug, for one message only: its acknowledgement cannot be rendered."""

    def render(self, out, *, message_id, date):
        if "boom" in out.subject:
            raise ZeroDivisionError("template bug")
        return super().render(out, message_id=message_id, date=date)


@pytest.fixture
def path(tmp_path) -> Path:
    return tmp_path / "store.json"


@pytest.fixture
def store(path):
    s = Store(path)
    yield s
    s.close()


def service(store, history_cutoff: datetime | None = None) -> IntakeService:
    outbox = Outbox(store=store, composer=Fragile(support_address=SUPPORT, support_name="Support"), secret=b"k",
                    support_address=SUPPORT)
    return IntakeService(store=store, settings=IntakeSettings(support_address=SUPPORT, staff=frozenset({"s@x.example"})),
                         parse=parse, outbox=outbox, secret=b"k", history_cutoff=history_cutoff)


def count_writes(monkeypatch, path: Path) -> list[int]:
    """Appends one item per atomic write of the store file."""
    writes: list[int] = []
    real = atomic.os.replace

    def replace(src, dst, *a, **kw):
        if Path(dst) == path:
            writes.append(1)
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(atomic.os, "replace", replace)
    return writes


def mails(n: int, *, boom: int | None = None) -> list[RawMail]:
    return [raw_mail(i, frm=f"u{i}@elsewhere.example", subject="boom" if i == boom else None)
            for i in range(1, n + 1)]


def test_a_batch_is_one_durable_write_and_nothing_is_marked_done_before_it(store, path, monkeypatch):
    raws = mails(5)
    src, report = WitnessSource(path), CycleReport()
    writes = count_writes(monkeypatch, path)
    service(store).take_in_many(raws, NOW, report, src)
    assert len(writes) == 1
    assert src.done == [r.source_key for r in raws]
    for key, disk in src.disk_at_done.items():  # by the first mark_done, the whole batch was on disk
        assert recorded_sources(disk) == {r.source_key for r in raws}, key
    assert report.counts["new_threads"] == 5 and len(store.outbox("pending")) == 10


def test_a_failing_batch_is_rolled_back_and_taken_one_at_a_time(store, path):
    raws = mails(5, boom=3)  # message 3 hits a bug of ours half-way through the batch
    bad = raws[2].source_key
    src, report = WitnessSource(path), CycleReport()
    service(store).take_in_many(raws, NOW, report, src)

    # The bad one alone is quarantined: recorded as our bug (with the traceback), moved aside on the server.
    [q] = store.quarantined()
    assert q["source"] == bad and q["kind"] == "bug" and "ZeroDivisionError" in q["reason"]
    assert src.quarantined == [bad] and bad in src.disk_at_quarantine[bad].get("quarantine", {})
    # The rest are taken in once each: nothing of the failed batch attempt survived its rollback
    # (no thread number used up, no mail queued twice, nothing taken for a duplicate).
    good = [r for r in raws if r.source_key != bad]
    assert [(t.id, t.subject) for t in store.threads()] == [
        ("OA-1", "Question 1"), ("OA-2", "Question 2"), ("OA-3", "Question 4"), ("OA-4", "Question 5")]
    acks = sorted(tuple(e.rcpt_to) for e in store.outbox() if e.kind == "ack")
    assert acks == [(f"u{i}@elsewhere.example",) for i in (1, 2, 4, 5)]
    assert len([e for e in store.outbox() if e.kind == "notify"]) == 4
    assert (report.counts["fetched"], report.counts["new_threads"], report.counts["quarantined"],
            report.counts["duplicates"]) == (5, 4, 1, 0)
    # Each good one marked done, and only once the store file recorded it.
    assert src.done == [r.source_key for r in good]
    for r in good:
        assert r.source_key in recorded_sources(src.disk_at_done[r.source_key])
    assert store.cursor("INBOX")["last_uid"] == 5


def test_unreadable_mail_in_a_batch_is_quarantined_and_the_rest_taken_in(store, path):
    raws = mails(3)
    empty = RawMail(source_key="imap:INBOX:1:4", data=b"  \r\n", received_at=NOW, folder="INBOX", uidvalidity=1,
                    uid=4)
    src, report = WitnessSource(path), CycleReport()
    service(store).take_in_many([raws[0], empty, *raws[1:]], NOW, report, src)
    [q] = store.quarantined()
    assert q["source"] == empty.source_key and q["kind"] == "bad-input"
    assert src.quarantined == [empty.source_key]
    assert empty.source_key in src.disk_at_quarantine[empty.source_key].get("quarantine", {})
    assert src.done == [r.source_key for r in raws] and len(store.threads()) == 3
    for r in raws:
        assert r.source_key in recorded_sources(src.disk_at_done[r.source_key])


def test_nothing_is_marked_done_when_the_batch_cannot_be_written(store, path, monkeypatch):
    raws = mails(4)
    src = WitnessSource(path)
    real = atomic.os.replace

    def disk_full(src_, dst, *a, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        service(store).take_in_many(raws, NOW, CycleReport(), src)
    assert src.done == [] and src.quarantined == []  # the server still holds all of it, untouched
    assert store.threads() == [] and store.outbox() == []
    # Once the disk has room again, the same mail is taken in, each message once.
    monkeypatch.setattr(atomic.os, "replace", real)
    report = CycleReport()
    service(store).take_in_many(raws, NOW, report, src)
    assert src.done == [r.source_key for r in raws] and report.counts["new_threads"] == 4


def test_the_cycle_takes_history_in_batches_of_500_per_store_write(store, path, monkeypatch):
    # History mail (received before the cut-off) causes no outgoing mail: every store write counted
    # here is an intake write. History goes 500 to a write (service.intake.HISTORY_BATCH; other mail 50:
    # tests/test_store_archive.py and the intake tests).
    from service.intake import HISTORY_BATCH

    assert HISTORY_BATCH == 500
    raws = mails(1100)
    writes = count_writes(monkeypatch, path)
    writes_when_done: list[int] = []

    class Source(WitnessSource):  # the raw records of history move to the archive: count the writes instead
        def mark_done(self, raw: RawMail) -> None:
            self.done.append(raw.source_key)
            writes_when_done.append(len(writes))

    src = Source(path, raws)
    svc = service(store, history_cutoff=NOW + timedelta(hours=1))
    app = Desk(store=store, outbox=svc.outbox, intake=svc, source=src, sender=RecordingSender(), now=run.Clock(NOW).now)
    report = cycle(app)
    assert report.counts["history"] == 1100 and len(writes) == 3
    assert src.done == [r.source_key for r in raws]
    # Marked done only after the write of its own batch: the first, the second, then the third write.
    assert writes_when_done == [1] * 500 + [2] * 500 + [3] * 100
    assert all(store.seen_raw(hashlib.sha256(r.data).hexdigest()) for r in raws)
    assert cycle(app).counts["fetched"] == 0  # nothing twice

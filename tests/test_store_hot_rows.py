"""The hot store's own economies: compact ledger rows (store/ledger_rows.py), the JSON of unchanged
tables written again as it was (store/atomic.json_pieces), and what a contact's delivery state needs of
sent rows that left for the archive (Store.first_accepted_after)."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

from store.ledger_rows import SHAPE
from store.tinystore import Store, open_store
from workflows.delivery import DeliveryState
from workflows.model import Contact, Partner
from workflows.outbox import OutboxEntry, Status

T0 = datetime(2027, 3, 30, 19, tzinfo=timezone.utc)


def _record(key: str, rnd: random.Random) -> dict:
    mailing, occurrence, recipient = key.split("|")
    r = {"mailing": mailing, "occurrence": occurrence, "recipient": recipient, "partner_id": f"p{rnd.randrange(9)}",
         "status": rnd.choice(["queued", "skipped"]), "reason": rnd.choice(["", "unsubscribed", "bounces"]),
         "why": "invitation 14 days before the call", "due_at": "2027-03-30T14:00:00-04:00",
         "at": T0.isoformat(), "outbox_key": "mailing:" + key, "call_id": occurrence, "sequence": 0}
    odd = rnd.randrange(8)
    if odd == 0:
        r["recipient"] = recipient.upper()  # not what the key says: kept
    elif odd == 1:
        r["outbox_key"] = None  # a skip
    elif odd == 2:
        del r["mailing"]  # an entry without a field the key could give: still without it
    elif odd == 3:
        r["places"] = ["Washington", {"online": True}]  # values no tuple can stand for
    elif odd == 4:
        r = {"~": "a field of that name", **r}  # kept whole
    elif odd == 5:
        r = dict(reversed(list(r.items())))  # another order
    return r


def test_ledger_entries_read_back_exactly_as_recorded_in_any_process(tmp_path: Path):
    rnd = random.Random(5)
    path = tmp_path / "s.json"
    want: dict[str, dict] = {}
    with open_store(path) as s:
        for round_ in range(6):
            with s.transaction():
                for i in range(40):
                    key = f"call-invite|call-{round_ % 2}|c{rnd.randrange(120)}@x.example"
                    if rnd.random() < 0.8 or key not in want:
                        rec = _record(key, rnd)
                        s.record_ledger(key, rec)
                        want[key] = {**want.get(key, {}), **rec}  # recorded again: merged, as TinyDB's upsert
                    else:  # an update: fields merged into what is there
                        s.record_ledger(key, {"status": "cancelled"})
                        want[key] = {**want[key], "status": "cancelled"}
            for key, rec in want.items():
                assert list(s.ledger(key).items()) == list(rec.items()), key
        keys = sorted(want)
        with s.transaction():
            s.archive_ledger(keys[::3])
    with open_store(path, readonly=True) as other:
        view = other.ledger_view()
        assert set(view) == set(keys) - set(keys[::3])
        for key, rec in want.items():
            assert list(other.ledger(key).items()) == list(rec.items()), key
            assert list(view[key].items()) == list(rec.items()) and key in view
        assert {e["key"]: {k: v for k, v in e.items() if k != "key"} for e in other.ledger_all()} == want
        assert "c999@x.example" not in "".join(view) and "call-invite|call-0|c999@x.example" not in view
    data = json.loads(path.read_text())
    used = {row[SHAPE] for row in data["ledger"].values()}
    assert "" in used  # the records with a field named "~", kept whole
    assert set(data["ledger_shapes"]) >= used - {""}


def test_a_mailing_s_hot_rows_are_small_and_its_shapes_leave_with_them(tmp_path: Path):
    path = tmp_path / "s.json"
    with open_store(path) as s:
        with s.transaction():
            for i in range(500):
                key = f"call-invite|call-2027-04-13|c{i}@partners.example"
                s.record_ledger(key, {"mailing": "call-invite", "occurrence": "call-2027-04-13",
                                      "recipient": f"c{i}@partners.example", "partner_id": f"p{i // 3}",
                                      "status": "queued", "reason": "", "why": "invitation 14 days before the call",
                                      "due_at": "2027-03-30T14:00:00-04:00", "at": T0.isoformat(),
                                      "outbox_key": "mailing:" + key, "call_id": "call-2027-04-13", "sequence": 0,
                                      "method": "REQUEST"})
        data = json.loads(path.read_text())
        whole = sum(len(json.dumps({k: s.ledger(k)})) for k in data["ledger"])
        compact = len(json.dumps(data["ledger"])) + len(json.dumps(data["ledger_shapes"]))
        assert compact * 4 < whole, (compact, whole)
        assert len(data["ledger_shapes"]) == 1
        with s.transaction():
            s.archive_ledger(list(data["ledger"]))
        data = json.loads(path.read_text())
        assert data["ledger"] == {} and data["ledger_shapes"] == {}
        assert s.ledger("call-invite|call-2027-04-13|c7@partners.example")["recipient"] == "c7@partners.example"


def _partner(i: int, name: str = "") -> Partner:
    return Partner(id=f"p{i}", name=name or f"Partner {i}", plan="standard", renews_on=None,
                   contacts=(Contact(partner_id=f"p{i}", name="Ann", email=f"ann{i}@x.example"),))


def test_tables_written_again_unchanged_are_what_a_fresh_dump_writes_whatever_changed_them(tmp_path: Path):
    """The JSON kept of a table is never stale: changed here, by another process, by a commit's moves to
    the archive, or by a rollback, the file is always the dump of what the store holds."""
    rnd = random.Random(7)
    path = tmp_path / "s.json"
    a, b = Store(path), Store(path)
    model: dict[str, str] = {}
    try:
        for step in range(120):
            s = rnd.choice([a, a, b])
            op = rnd.randrange(6)
            try:
                with s.transaction():
                    if op <= 1:
                        i = rnd.randrange(30)
                        name = f"N{step}"
                        s.save_partner(_partner(i, name))
                        model[f"p{i}"] = name
                    elif op == 2:
                        s.set_meta(f"m{rnd.randrange(3)}", step)
                    elif op == 3:
                        s.record_ledger(f"x|y|c{step}@x.example", {"status": "queued", "at": str(step)})
                    elif op == 4:  # a rollback after a change
                        s.save_partner(_partner(99, "never"))
                        raise RuntimeError("rolled back")
                    else:  # finished rows leave for the archive at a big enough commit
                        for j in range(rnd.choice([3, 250])):
                            e = OutboxEntry(key=f"k{step}-{j}", kind="ack", message_id=f"<{step}.{j}@x>",
                                            mail_from="s@x", rcpt_to=("a@x.example",), raw="r\r\n",
                                            created_at=T0, status=Status.SENT, sent_at=T0)
                            s.outbox_add(e)
            except RuntimeError:
                pass
            text = path.read_text() if path.exists() else "{}"
            data = json.loads(text)
            assert text == json.dumps(data, ensure_ascii=True, separators=(",", ":"))
            assert {k: d["name"] for k, d in data.get("partners", {}).items()} == model, step
            for other in (a, b):
                assert {p.id: p.name for p in other.partners()} == model, step
    finally:
        a.close()
        b.close()


def test_a_contact_clears_on_mail_accepted_after_the_failure_even_once_that_mail_is_archived(tmp_path: Path):
    path = tmp_path / "s.json"
    failed_at = T0 - timedelta(days=30)
    with open_store(path) as s:
        with s.transaction():
            s.save_delivery_state(DeliveryState(address="eric@x.example", bouncing_since=failed_at, failures=1,
                                                last_failure_at=failed_at, last_reason="550 no such user"))
        sent = [T0 - timedelta(days=40), T0 - timedelta(days=20), T0 - timedelta(days=10), T0]
        with s.transaction():
            for n, at in enumerate(sent):
                s.outbox_add(OutboxEntry(key=f"d{n}", kind="digest", message_id=f"<d{n}@x>", mail_from="s@x",
                                         rcpt_to=("Eric@x.example",), raw="r\r\n", created_at=at,
                                         status=Status.SENT, sent_at=at))
        since = {"eric@x.example": failed_at}
        assert s.first_accepted_after(since) == {"eric@x.example": sent[1]}  # not the latest, nor one before
        with s.transaction():  # enough finished rows for a commit to move them all to the archive
            for n in range(250):
                s.outbox_add(OutboxEntry(key=f"z{n}", kind="ack", message_id=f"<z{n}@x>", mail_from="s@x",
                                         rcpt_to=("z@x.example",), raw="r\r\n", created_at=T0,
                                         status=Status.SENT, sent_at=T0))
        data = json.loads(path.read_text())
        assert not any(k.startswith("d") for k in data["outbox"]), "the rows did not leave the hot store"
        assert data["accepted"] == {"eric@x.example": {"sent_at": sent[1].isoformat()}}
        assert s.first_accepted_after(since) == {"eric@x.example": sent[1]}
        assert s.first_accepted_after({"eric@x.example": sent[1]}) == {}  # the later ones went with the rows
        with s.transaction():  # once the address is clear, nothing is kept for it
            s.save_delivery_state(DeliveryState(address="eric@x.example"))
            for n in range(250):
                s.outbox_add(OutboxEntry(key=f"y{n}", kind="ack", message_id=f"<y{n}@x>", mail_from="s@x",
                                         rcpt_to=("z@x.example",), raw="r\r\n", created_at=T0,
                                         status=Status.SENT, sent_at=T0))
        assert json.loads(path.read_text()).get("accepted") == {}

"""Make tests/data/store-v2 with the code of commit bd192e4 (schema 2, before issue 11's store layout).

    git archive bd192e4 | tar -x -C /tmp/pd-v2
    python3 tests/data/store-v2/make_store.py /tmp/pd-v2 /tmp/fx2

It starts from the 0.1.0 fixture (tests/data/store-v1), lets the schema-2 code migrate it and run
cycles on it (spool mode), so the result holds every table in the schema-2 layout: open and closed
threads, a thread imported as history, sent mail with rendered bodies in the JSON, a pending entry
whose send result is only in the journal (a process killed mid-send), a failed entry, the ledger.
Then it records what that code prints and decides (expected/). It needs the old code, so it is kept
as a record of how the fixture was made, not rerun by the tests.
"""
import email.message
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

OLD, D = Path(sys.argv[1]), Path(sys.argv[2])
HERE = Path(__file__).resolve().parent
V1 = HERE.parent / "store-v1"
shutil.rmtree(D, ignore_errors=True)
D.mkdir(parents=True)
for f in ("partnerdesk.json", "partnerdesk.json.journal"):
    shutil.copy(V1 / f, D / f)
(D / "partnerdesk.toml").write_text((V1 / "partnerdesk.toml").read_text()
                                    + "[intake]\nhistory_before = 2026-11-01T00:00:00-05:00\n")
inbox = D / "spool" / "inbox"
inbox.mkdir(parents=True)


def run(*args, now):
    p = subprocess.run([sys.executable, str(OLD / "run.py"), "--config", str(D / "partnerdesk.toml"), "--now", now,
                        *args], capture_output=True, text=True, cwd=D)
    assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p.stdout


def drop(name, frm, subject, body, at, **headers):
    m = email.message.EmailMessage()
    m["From"] = frm
    m["To"] = "support@openatrium.example"
    m["Subject"] = subject
    m["Message-ID"] = f"<{name}@v2.example>"
    for k, v in headers.items():
        m[k.replace("_", "-")] = v
    m.set_content(body)
    p = inbox / f"{name}.eml"
    p.write_bytes(m.as_bytes())
    ts = datetime.fromisoformat(at).timestamp()
    os.utime(p, (ts, ts))


# History (before [intake] history_before), a follow-up on OA-1, a new request, a stranger.
drop("hist1", "Antonio De Marco <antonio@nuvole.example>", "Old question about Panels", "From October.",
     "2026-10-15T10:00:00-04:00")
drop("v2a", "Antonio De Marco <antonio@nuvole.example>", "Re: [OA-1] still lost", "Any news?",
     "2027-01-21T09:00:00-05:00")
drop("v2b", "Andrea Pescetti <andrea@nuvole.example>", "Drush make fails", "Since the upgrade.",
     "2027-01-21T09:01:00-05:00")
drop("v2c", "Someone <someone@elsewhere.example>", "Hello", "Who are you?", "2027-01-21T09:02:00-05:00")
print(run("once", now="2027-01-21T10:00:00-05:00"))

sys.path.insert(0, str(OLD))
from store.tinystore import Store  # noqa: E402  (the old code's)
from workflows.outbox import Status  # noqa: E402

st = Store(D / "partnerdesk.json")
sent = st.outbox(Status.SENT)
# One mail left pending whose result only reached the journal (killed between journal and fold) ...
a = sent[-1]
with st.transaction():
    st.outbox_save(a.__class__.from_dict({**a.to_dict(), "status": "pending", "sent_at": None, "attempts": 0}))
st.journal_progress(a)
# ... one pending and due (it goes out at the next cycle), and one that failed for good.
b, c = sent[-2], sent[-3]
with st.transaction():
    st.outbox_save(b.__class__.from_dict({**b.to_dict(), "status": "pending", "sent_at": None, "attempts": 0}))
    st.outbox_save(c.__class__.from_dict({**c.to_dict(), "status": "failed", "sent_at": None, "attempts": 1,
                                          "detail": "550 5.1.1 no such user", "finished_at": c.created_at.isoformat()}))
st._db.close()
shutil.rmtree(D / "spool")
data = json.loads((D / "partnerdesk.json").read_text())
print({k: len(v) for k, v in data.items()}, data["meta"]["schema"])
print((D / "partnerdesk.json.journal").read_text())
for f in ("partnerdesk.json", "partnerdesk.json.journal", "partnerdesk.toml"):
    shutil.copy(D / f, HERE / f)

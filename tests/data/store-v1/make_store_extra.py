import os, subprocess, sys
from pathlib import Path
sys.path.insert(0, "/tmp/v1")
D = Path("/tmp/fx/desk")
(D / "data/spool/inbox/zz-empty.eml").write_bytes(b"   \r\n")
p = subprocess.run([sys.executable, "/tmp/v1/run.py", "--config", str(D / "partnerdesk.toml"), "--now", "2027-01-20T11:00:00-05:00", "once"], capture_output=True, text=True, cwd=D)
print(p.stdout, p.stderr)
from store.tinystore import Store
st = Store(str(D / "data/partnerdesk.json"))
with st.transaction():
    st.set_cursor("INBOX", 1700000000, 42)
# an outbox entry left pending, and a journaled result not folded in (a process killed mid-send)
sent = [e for e in st.outbox("sent")]
e = dict(sent[-1]); key = e["key"]
with st.transaction():
    st.outbox_update(key, status="pending", sent_at=None)
st.journal_outbox_update(key, status="sent", sent_at="2027-01-20T11:00:05-05:00", attempts=1, detail="journaled")
st._db.close()
import json
data = json.loads((D / "data/partnerdesk.json").read_text())
print({k: len(v) for k, v in data.items()})
print(open(D / "data/partnerdesk.json.journal").read())

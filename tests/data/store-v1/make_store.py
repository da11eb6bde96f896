"""Make a store with the v1 code (commit 26e628c) exercising every table."""
import base64, email, email.policy, json, os, re, shutil, subprocess, sys, time
from pathlib import Path
V1 = Path("/tmp/v1"); D = Path("/tmp/fx/desk")
shutil.rmtree(D, ignore_errors=True); D.mkdir(parents=True)
(D / "partnerdesk.toml").write_text('''
[support]
address = "support@openatrium.example"
name = "Open Atrium Support"
staff = ["young@devseed.example", "eric@devseed.example"]
escalation = ["eric@devseed.example"]
program_lead = "ian@devseed.example"
[store]
path = "data/partnerdesk.json"
[calls]
rrule = "FREQ=MONTHLY;INTERVAL=3;BYDAY=2TU"
first = 2027-01-12T14:00:00
dial_in = "+1 202 555 0100, PIN 4242"
[[trainings.dates]]
id = "training-2027-03"
start = 2027-03-08T09:00:00
place = "Washington, DC and online"
[renewals]
pay_url = "https://openatrium.com/partners/pay"
''')
shutil.copy(V1 / "templates/demo/roster.csv", D / "roster.csv")
spool = D / "data/spool/inbox"
def run(*a, now):
    p = subprocess.run([sys.executable, str(V1 / "run.py"), "--config", str(D / "partnerdesk.toml"), "--now", now, *a],
                       capture_output=True, text=True, cwd=D)
    print("$", *a, now, "->", p.returncode); print(p.stdout[-1500:], p.stderr[-1500:])
    return p
def drop(name, raw, at):
    spool.mkdir(parents=True, exist_ok=True)
    p = spool / name; p.write_bytes(raw if isinstance(raw, bytes) else raw.encode())
    ts = at; os.utime(p, (ts, ts))
from datetime import datetime, timezone
def T(s): return datetime.fromisoformat(s).timestamp()
run("partners", "import", "roster.csv", now="2026-11-20T09:00:00-05:00")
for f in sorted((V1 / "templates/demo/inbox").glob("*.eml")):
    drop(f.name, f.read_bytes(), T("2026-11-30T10:00:00-05:00"))
run("once", now="2026-11-30T10:05:00-05:00")
out = D / "data/spool/outbox"
notes = sorted(out.glob("*notify.eml"))
def reply(note_path, frm, body, name, at):
    n = email.message_from_bytes(note_path.read_bytes()[note_path.read_bytes().index(b"\r\n\r\n")+4:] if False else re.sub(rb"^X-Envelope-[^\n]*\n", b"", note_path.read_bytes(), flags=re.M), policy=email.policy.default)
    m = email.message.EmailMessage()
    m["From"] = frm; m["To"] = "support@openatrium.example"; m["Subject"] = "Re: " + str(n["Subject"])
    m["Message-ID"] = f"<{name}@devseed.example>"; m["In-Reply-To"] = n["Message-ID"]; m["References"] = n["Message-ID"]
    m["Date"] = "Mon, 30 Nov 2026 11:00:00 -0500"; m.set_content(body)
    drop(name + ".eml", m.as_bytes(), at)
print([p.name for p in notes])
# OA-1 (antonio): assign, then escalate over time; OA-2: answer; OA-3: close
reply(notes[0], "Young Hahn <young@devseed.example>", "#assign me\n", "assign1", T("2026-11-30T10:30:00-05:00"))
reply(notes[1], "Eric <eric@devseed.example>", "Here is the answer.\n\nEric\n", "answer2", T("2026-11-30T10:31:00-05:00"))
reply(notes[2], "Eric <eric@devseed.example>", "#close\n", "close3", T("2026-11-30T10:32:00-05:00"))
run("once", now="2026-11-30T10:40:00-05:00")
run("once", now="2026-12-01T16:00:00-05:00")  # ladder fires on OA-1 (warning, breach, second level)
run("once", now="2026-12-02T09:30:00-05:00")
# call invitations for 2027-01-12 go out 14 days before: 2026-12-29 14:00
run("once", now="2026-12-29T14:05:00-05:00")
inv = sorted(out.glob("*call-invite*.eml"))
print("invites", [p.name for p in inv])
raw0 = re.sub(rb"^X-Envelope-[^\n]*\n", b"", inv[0].read_bytes(), flags=re.M)
msg0 = email.message_from_bytes(raw0, policy=email.policy.default)
to0 = str(msg0["To"]); mid0 = str(msg0["Message-ID"])
tok = re.search(r"unsubscribe ([a-z]+\.[A-Za-z0-9_-]+\.[0-9a-f]{16})", msg0.get_body(("plain",)).get_content()).group(1)
m = email.message.EmailMessage(); m["From"] = to0; m["To"] = "support@openatrium.example"; m["Subject"] = f"unsubscribe {tok}"
m["Message-ID"] = "<unsub1@x.example>"; m.set_content("unsubscribe " + tok); drop("unsub.eml", m.as_bytes(), T("2026-12-29T15:00:00-05:00"))
# RSVP from the second invitee
raw1 = re.sub(rb"^X-Envelope-[^\n]*\n", b"", inv[1].read_bytes(), flags=re.M)
msg1 = email.message_from_bytes(raw1, policy=email.policy.default); to1 = str(msg1["To"])
uid = re.search(r"UID:(\S+)", raw1.decode()).group(1)
ics = f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nMETHOD:REPLY\r\nPRODID:-//x//x//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20261229T200000Z\r\nSEQUENCE:0\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:{to1}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
m = email.message.EmailMessage(); m["From"] = to1; m["To"] = "support@openatrium.example"; m["Subject"] = "Accepted: call"
m["Message-ID"] = "<rsvp1@x.example>"; m.set_content("Accepted"); m.add_alternative(ics, subtype="calendar", params={"method": "REPLY"})
drop("rsvp.eml", m.as_bytes(), T("2026-12-29T15:01:00-05:00"))
# a DSN about the third invitation -> contact failure
raw2 = re.sub(rb"^X-Envelope-[^\n]*\n", b"", inv[2].read_bytes(), flags=re.M)
msg2 = email.message_from_bytes(raw2, policy=email.policy.default); to2 = str(msg2["To"]); mid2 = str(msg2["Message-ID"])
dsn = f"""From: MAILER-DAEMON@mx.example\r\nTo: support@openatrium.example\r\nSubject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn1@mx.example>\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered to {to2}.\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\nFinal-Recipient: rfc822; {to2}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {mid2}\r\nSubject: x\r\n\r\n--B--\r\n"""
drop("dsn.eml", dsn, T("2026-12-29T15:02:00-05:00"))
run("once", now="2026-12-29T15:10:00-05:00")
run("partners", "renew", "ndi", "--until", "2028-01-15", now="2026-12-30T10:00:00-05:00")
run("partners", "trained", "sam@ndi.example", "--on", "2026-12-15", now="2026-12-30T10:01:00-05:00")
# a partner writes to closed OA-3 more than 30 days later -> new thread with previous
notes3 = [p for p in sorted(out.glob("*.eml")) if b"OA-3" in p.read_bytes() and b"close" in p.name.encode()]
print("close mails", [p.name for p in notes3])
if notes3:
    rawc = re.sub(rb"^X-Envelope-[^\n]*\n", b"", notes3[0].read_bytes(), flags=re.M)
    mc = email.message_from_bytes(rawc, policy=email.policy.default)
    m = email.message.EmailMessage(); m["From"] = str(mc["To"]); m["To"] = "support@openatrium.example"
    m["Subject"] = "Re: " + str(mc["Subject"]); m["Message-ID"] = "<late1@x.example>"; m["In-Reply-To"] = mc["Message-ID"]
    m.set_content("It broke again."); drop("late.eml", m.as_bytes(), T("2027-01-20T10:00:00-05:00"))
    run("once", now="2027-01-20T10:05:00-05:00")
# leave one unapplied journal line, as a process killed mid-send would
sys.path.insert(0, str(V1))
from store.tinystore import Store
st = Store(str(D / "data/partnerdesk.json"))
pend = st.outbox("pending"); print("pending", len(pend))
st.close()
run("threads", "list", now="2027-01-20T10:06:00-05:00")

"""Make tests/data/store-v4 with the code of commit 6cfee71 (schema 4: hot ledger rows whole).

    git worktree add /tmp/pd-v4 6cfee71
    python3 tests/data/store-v4/make_store.py /tmp/pd-v4 /tmp/fx4
    PD_CODE=/tmp/pd-v4 PD_RECORD=1 python3 -m pytest tests/test_store_v4_migration.py -k prints

It starts from the schema-2 fixture (tests/data/store-v2), lets the schema-4 code migrate it and run
two cycles on it (spool mode) on 2027-03-30, when the invitations to the call of April 13 are due: the
ledger then holds hot entries of a mailing (queued, and skipped for a contact who bounces) beside
archived ones, a renewal notice's, and welcome mails. It needs the old code, so it is kept as a record
of how the fixture was made, not rerun by the tests.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

OLD, D = Path(sys.argv[1]), Path(sys.argv[2])
HERE = Path(__file__).resolve().parent
V2 = HERE.parent / "store-v2"
shutil.rmtree(D, ignore_errors=True)
D.mkdir(parents=True)
for f in ("partnerdesk.json", "partnerdesk.json.journal", "partnerdesk.toml"):
    shutil.copy(V2 / f, D / f)


def run(*args, now):
    p = subprocess.run([sys.executable, str(OLD / "run.py"), "--config", str(D / "partnerdesk.toml"), "--now", now,
                        *args], capture_output=True, text=True, cwd=D)
    assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p.stdout


print(run("once", now="2027-01-22T10:00:00-05:00"))
print(run("once", now="2027-03-30T15:00:00-04:00"))
shutil.rmtree(D / "spool", ignore_errors=True)
data = json.loads((D / "partnerdesk.json").read_text())
print({k: len(v) for k, v in data.items()}, data["meta"]["schema"])
assert data["meta"]["schema"]["value"] == 4 and data["ledger"], "not a schema-4 store with a hot ledger"
for f in ("partnerdesk.json", "partnerdesk.toml"):
    shutil.copy(D / f, HERE / f)
for side in (".archive", ".mail"):
    shutil.rmtree(HERE / f"partnerdesk.json{side}", ignore_errors=True)
    if (D / f"partnerdesk.json{side}").exists():
        shutil.copytree(D / f"partnerdesk.json{side}", HERE / f"partnerdesk.json{side}")

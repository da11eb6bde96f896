"""Writes the automatic-mail corpus into tests/data/automatic/: the .eml files and expected.json.

    python3 -m tests.automatic_corpus.generate

The samples are defined in bounces.py (delivery failures of every common mail
system) and others.py (reports, calendar replies, auto-replies, bulk mail and
human mail that must stay work). tests/test_automatic_corpus.py checks that the
checked-in files are exactly what this writes.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.automatic_corpus.bounces import bounce_samples
from tests.automatic_corpus.others import other_samples
from tests.automatic_corpus.shapes import ROSTER, Sample

OUT = Path(__file__).resolve().parent.parent / "data" / "automatic"


def samples() -> list[Sample]:
    found = bounce_samples() + other_samples()
    names = [s.name for s in found]
    assert len(names) == len(set(names)), "sample names must be unique"
    return found


def expected(found: list[Sample]) -> dict:
    return {
        "roster": list(ROSTER),
        "samples": {
            f"{s.name}.eml": {"kind": s.kind, "failed": s.failed, "about": list(s.about),
                              "person_known": s.person_known, "sent_to": list(s.sent_to), "system": s.system,
                              **({"gave_up": s.gave_up} if s.gave_up is not None else {})}
            for s in found
        },
    }


def render() -> dict[str, bytes]:
    found = samples()
    files = {f"{s.name}.eml": s.raw for s in found}
    files["expected.json"] = (json.dumps(expected(found), indent=1, sort_keys=True, ensure_ascii=False)
                              + "\n").encode()
    return files


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.eml"):
        old.unlink()
    files = render()
    for name, data in files.items():
        (OUT / name).write_bytes(data)
    print(f"wrote {len(files) - 1} samples and expected.json to {OUT}")


if __name__ == "__main__":
    main()

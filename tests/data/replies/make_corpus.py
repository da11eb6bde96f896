#!/usr/bin/env python3
"""Writes the committed reply corpus: a staff notification partnerdesk wrote, and a staff reply to it in
every client style and language of tests/reply_styles.py, with the answer each should come down to.

    python3 tests/data/replies/make_corpus.py      # from the checkout; tests/test_quotes.py checks it is current
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent.parent), str(HERE.parent.parent)]

import mail_kinds  # noqa: E402
import reply_styles  # noqa: E402


def corpus() -> dict[str, bytes]:
    note = next(r for r in mail_kinds.staff_mails() if r.kind == "staff_notification").raw
    files = {"notification.eml": note}
    expected = {}
    for i, (style, lang) in enumerate(reply_styles.cases(), 1):
        name = f"{style}-{lang}.eml"
        files[name] = reply_styles.reply(style, lang, note, message_id=f"<reply-{i}@openatrium.example>")
        expected[name] = reply_styles.ANSWERS[lang]
    files["expected.json"] = (json.dumps(expected, indent=1, ensure_ascii=False) + "\n").encode()
    return files


if __name__ == "__main__":
    for name, data in corpus().items():
        (HERE / name).write_bytes(data)
    print(f"wrote {len(corpus())} files to {HERE}")

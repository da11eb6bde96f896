"""Read many files out of a git repository (a mirrored corpus) in one `git cat-file --batch` process."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git(git_dir: Path, *args: str) -> list[str]:
    out = subprocess.run(["git", "-C", str(git_dir), *args], capture_output=True, text=True, check=True).stdout
    return [line for line in out.split("\n") if line]


def read_blobs(git_dir: Path, specs: list[str]) -> list[tuple[str, bytes]]:
    """(spec, bytes) for each ``REV:PATH`` in ``specs`` that exists, in order."""
    proc = subprocess.Popen(["git", "-C", str(git_dir), "cat-file", "--batch"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    out = []
    for spec in specs:
        proc.stdin.write(f"{spec}\n".encode())
        proc.stdin.flush()
        head = proc.stdout.readline().split()
        if len(head) < 3 or head[1] == b"missing":
            continue
        data = proc.stdout.read(int(head[2]))
        proc.stdout.read(1)
        out.append((spec, data))
    proc.stdin.close()
    proc.wait()
    return out

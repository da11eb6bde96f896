"""A progress bar for long work (first start, history import, large roster imports), drawn with tqdm on
stderr only when a person watches: stdout and stderr are both a terminal. Piped, redirected, under
systemd or cron, nothing is drawn and the output stays exactly the same."""

from __future__ import annotations

import contextlib
import shutil
import sys
from typing import Any, Iterator


class Silent:
    """The bar when nobody watches: every call does nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_total(self, total: int | None) -> None:
        pass


class Bar:
    """Drawn once the amount of work is known and worth a bar (``threshold`` items or more)."""

    def __init__(self, what: str, unit: str, threshold: int) -> None:
        self.what, self.unit, self.threshold = what, unit, threshold
        self.bar: Any = None

    def set_total(self, total: int | None) -> None:
        if self.bar is not None or (total is not None and total < self.threshold):
            return
        from tqdm import tqdm

        # The terminal's width (80 when it reports none, as a bare pty does).
        self.bar = tqdm(total=total, desc=self.what, unit=self.unit, file=sys.stderr, leave=False,
                        ncols=shutil.get_terminal_size().columns)

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.refresh()  # the last step drawn (tqdm skips frames closer than its interval), then cleared
            self.bar.close()


def watched() -> bool:
    return sys.stdout.isatty() and sys.stderr.isatty()


@contextlib.contextmanager
def progress(total: int | None, what: str, *, threshold: int = 0, unit: str = "row") -> Iterator[Bar | Silent]:
    """``with progress(n, "importing rows") as bar: ... bar.update()``. ``total`` None: the work tells
    the bar its size later (``set_total``). Silent below ``threshold`` items (a bar that flashes for a
    tenth of a second helps nobody) and when nobody watches."""
    if not watched():
        yield Silent()
        return
    bar = Bar(what, unit, threshold)
    if total is not None:
        bar.set_total(total)
    try:
        yield bar
    finally:
        bar.close()

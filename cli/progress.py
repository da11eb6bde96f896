"""A progress bar for long work (first start, history import, large roster imports), drawn with tqdm on
stderr only when a person watches: stdout and stderr are both a terminal. Piped, redirected, under
systemd or cron, nothing is drawn and the output stays exactly the same."""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator


class Silent:
    """The bar when nobody watches: every call does nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_total(self, total: int | None) -> None:
        pass


class Bar:
    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def set_total(self, total: int | None) -> None:
        self.bar.total = total
        self.bar.refresh()


def watched() -> bool:
    return sys.stdout.isatty() and sys.stderr.isatty()


@contextlib.contextmanager
def progress(total: int | None, what: str, *, threshold: int = 0, unit: str = "row") -> Iterator[Bar | Silent]:
    """``with progress(n, "importing rows") as bar: ... bar.update()``; silent below ``threshold`` items
    (a bar that flashes for a tenth of a second helps nobody) and when nobody watches."""
    if not watched() or (total is not None and total < threshold):
        yield Silent()
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=what, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True) as bar:
        yield Bar(bar)

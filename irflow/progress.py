"""Progress of a long step: a tqdm bar on a terminal, plain periodic lines in a log file.

Under Snakemake a step's stderr is its log file, where a carriage-return bar becomes one unreadable
line; there the same progress is written as plain lines (``encode: 12000/30000 psg (40%), 350
psg/s, ETA 51s``) at most every ``every`` seconds, plus a last line when the work ends, so a job
that failed or was killed shows in its last lines how far it got. tqdm is the well-kept library
for the terminal case; the plain reporter is twenty lines, not worth another dependency.
"""

from __future__ import annotations

import logging
import os
import sys
import time

log = logging.getLogger("irflow")

#: seconds between plain progress lines (IRFLOW_PROGRESS_EVERY overrides, e.g. for tests)
DEFAULT_EVERY = 30.0


def progress(total: int | None, what: str, unit: str = "it", *, initial: int = 0, disable: bool = False):
    """A bar (terminal) or a plain line reporter (log file) with ``update(n)`` and ``close()``."""
    if not disable and sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=what, unit=unit, file=sys.stderr, mininterval=1.0)
    every = float(os.environ.get("IRFLOW_PROGRESS_EVERY", DEFAULT_EVERY))
    return PlainProgress(total, what, unit, initial=initial, every=every, disable=disable)


class PlainProgress:
    """Plain ``what: done/total unit (pct), rate unit/s, ETA`` lines through the irflow logger."""

    def __init__(self, total: int | None, what: str, unit: str, *, initial: int = 0, every: float = DEFAULT_EVERY,
                 disable: bool = False):
        self.total, self.what, self.unit, self.every, self.disable = total, what, unit, every, disable
        self.n = self._start_n = initial
        self._t0 = self._last = time.monotonic()
        if not disable:
            log.info("%s: started (%s %s)", what, total if total is not None else "?", unit)

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if not self.disable and now - self._last >= self.every:
            self._last = now
            log.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self._t0, 1e-9)
        rate = (self.n - self._start_n) / elapsed
        if self.total:
            eta = (self.total - self.n) / rate if rate > 0 else float("inf")
            eta_s = f"ETA {eta:.0f}s" if eta != float("inf") else "ETA ?"
            return (f"{self.what}: {self.n}/{self.total} {self.unit} ({100 * self.n / self.total:.0f}%), "
                    f"{rate:.1f} {self.unit}/s, {eta_s}")
        return f"{self.what}: {self.n} {self.unit}, {rate:.1f} {self.unit}/s"

    def close(self) -> None:
        if not self.disable:
            log.info("%s (done in %.0fs)", self.line(), time.monotonic() - self._t0)
            self.disable = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""Progress of long computations on stderr, fed with (done, total) pair counts.

The rate counts only this run's pairs: the first report (which every runner makes before any
work, with the pairs a resumed store already holds) is the baseline, and no rate or ETA is shown
until a second has passed, so the first updates are never absurd. On a terminal the line is
redrawn in place (`\\r`) at most twice a second; in a log (stderr not a terminal) a plain line is
written every few seconds instead, and one at the end.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

TTY_INTERVAL = 0.5  # seconds between redraws on a terminal
LOG_INTERVAL = 5.0  # seconds between lines in a log
MIN_RATE_SECONDS = 1.0  # no rate before this much time has passed


class Progress:
    """A callable `progress(done, total)`; `close()` ends the line."""

    def __init__(self, label: str, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic,
                 tty: bool | None = None):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.tty = _isatty(self.stream) if tty is None else tty
        self.start: tuple[float, int] | None = None  # (time, pairs done) of the first report
        self.last_shown = -float("inf")
        self.last: tuple[int, int] | None = None
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if self.start is None:
            self.start = (now, done)
        self.last = (done, total)
        interval = TTY_INTERVAL if self.tty else LOG_INTERVAL
        if now - self.last_shown >= interval or (done >= total and not self.tty):
            self._show(now, done, total)

    def text(self, now: float, done: int, total: int) -> str:
        t0, d0 = self.start
        pct = 100.0 * done / total if total else 100.0
        text = f"{self.label}: {done:,}/{total:,} pairs ({pct:.0f}%)"
        elapsed = now - t0
        if elapsed >= MIN_RATE_SECONDS and done > d0:
            rate = (done - d0) / elapsed
            text += f", {_count(rate)} pairs/s in this run"
            if done < total:
                text += f", ETA {_duration((total - done) / rate)}"
        return text

    def _show(self, now: float, done: int, total: int) -> None:
        self.last_shown = now
        line = self.text(now, done, total)
        try:
            if self.tty:
                self.stream.write("\r" + line + "\x1b[K")
            else:
                self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr must not stop the computation
            return
        self.drawn = True

    def close(self) -> None:
        if self.last is not None and self.start is not None and not self.tty and self.last[0] < self.last[1]:
            self._show(self.clock(), *self.last)  # where an interrupted run stopped
        if self.tty and self.drawn:
            try:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
            except (OSError, ValueError):
                pass


def progress_bar(label: str, quiet: bool):
    """(update, close) for a computation's progress; (None, no-op) when quiet."""
    if quiet:
        return None, lambda: None
    p = Progress(label)
    return p, p.close


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _count(x: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= size:
            return f"{x / size:.3g}{unit}"
    return f"{x:.3g}"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"

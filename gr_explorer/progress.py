"""One typed progress event for every stage, and cancellation between chunks of work.

Why one shape: the CLI's bars, the app's status box and a script's logger all
follow the same run; each stage (load, generate, extract, probe, metrics, train)
reports `ProgressEvent(stage, done, total, model, detail)` and checks
`should_stop` between its chunks, so a cancel takes effect within one batch or
probe chunk. Work that has no natural chunk of a second or so (a solver's
iterations, the modules of one forward pass, the query chunks of a k-NN
search) calls `Reporter.tick(0, ...)`, a *pulse*: no unit finished, still
working; it honours a cancel at once and reports at most every PULSE_S seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from .errors import GRExplorerError

#: a pulse (`tick(0, ...)`) reaches the progress callback at most this often (it always checks for a cancel)
PULSE_S = 0.5


@dataclass(frozen=True)
class ProgressEvent:
    """`done` of `total` units of `stage` finished for `model` ('' when not model-specific)."""

    stage: str
    done: int
    total: int
    model: str = ""
    detail: str = ""


Progress = Callable[[ProgressEvent], None]
ShouldStop = Callable[[], bool]


class Cancelled(GRExplorerError):
    """Raised between chunks when `should_stop()` said so; the caller decides what to keep."""

    def __init__(self, message: str = "Cancelled."):
        super().__init__(message)


class Reporter:
    """Binds a stage and model to the caller's callbacks: `tick()` reports and then honours a cancel."""

    def __init__(self, progress: Progress | None, should_stop: ShouldStop | None, stage: str, total: int, model: str = ""):
        self.progress, self.should_stop = progress, should_stop
        self.stage, self.total, self.model = stage, int(total), model
        self.done = 0
        self._emitted = float("-inf")

    def tick(self, n: int = 1, detail: str = "") -> None:
        """Count `n` finished units; stop here if asked (not after the last unit: that work is done and kept).

        `tick(0, detail)` is a pulse from inside a long unit: reported at most every PULSE_S seconds, and a
        cancel is honoured at once."""
        if n == 0:
            if time.monotonic() - self._emitted >= PULSE_S:
                self.emit(detail)
            self.check()
            return
        self.done += n
        self.emit(detail)
        if self.done < self.total:
            self.check()

    def emit(self, detail: str = "") -> None:
        self._emitted = time.monotonic()
        if self.progress is not None:
            self.progress(ProgressEvent(self.stage, self.done, self.total, self.model, detail))

    def check(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise Cancelled()


def seconds_left(done: int, total: int, elapsed: float, since_last: float = 0.0) -> float | None:
    """Time left in a stage at its measured rate: `elapsed` seconds from the stage's start to its last finished
    unit gave `done` of `total` units, and `since_last` seconds have passed since. None before the first unit
    (no rate yet) and once all are done."""
    if done <= 0 or done >= total:
        return None
    return max(0.0, elapsed / done * (total - done) - since_last)


def duration_text(seconds: float) -> str:
    """'40 s', '3.5 min', '1.2 h': a duration as the app and the CLI say it (two significant figures)."""
    if seconds < 90:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min" if seconds < 600 else f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"

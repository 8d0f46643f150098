"""One typed progress event for every stage, and cancellation between chunks of work.

Why one shape: the CLI's bars, the app's status box and a script's logger all
follow the same run; each stage (load, extract, probe, metrics) reports
`ProgressEvent(stage, done, total, model, detail)` and checks `should_stop`
between its chunks, so a cancel takes effect within one batch or probe chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .errors import GRExplorerError

STAGES = ("load", "extract", "probe", "metrics", "embed")


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

    def tick(self, n: int = 1, detail: str = "") -> None:
        """Count `n` finished units; stop here if asked (not after the last unit: that work is done and kept)."""
        self.done += n
        self.emit(detail)
        if self.done < self.total:
            self.check()

    def emit(self, detail: str = "") -> None:
        if self.progress is not None:
            self.progress(ProgressEvent(self.stage, self.done, self.total, self.model, detail))

    def check(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise Cancelled()

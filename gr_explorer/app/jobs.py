"""Long work off the script thread: a Job runs one library call in a background thread.

Why a thread: a Streamlit script is interrupted whenever the user touches a
widget. If the sweep ran in the script itself, any click (or a page switch)
would kill it half-way. A Job keeps running; the page script only *follows*
it (polls its progress a few times per second and redraws), and a rerun simply
re-attaches. Cancel sets an event that the library polls (`should_stop`) and
that the progress callback checks, so a run stops at the next batch.

A Job never calls Streamlit: it only records progress under a lock, so
following it from any rerun (or not at all) is safe. One Job per page and
session lives in st.session_state; sessions never share Jobs.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import streamlit as st

from ..errors import GRExplorerError
from ..progress import Cancelled, ProgressEvent
from ..run import SweepCancelled

log = logging.getLogger("gr_explorer.app")


class JobCancelled(Cancelled):
    """Raised inside the worker when the user pressed Cancel."""

    def __init__(self):
        super().__init__("Cancelled.")


@dataclass
class StageInfo:
    name: str
    started: float
    updated: float
    done: int = 0
    total: int = 0
    message: str = ""


@dataclass
class Snapshot:
    running: bool
    cancel_requested: bool
    elapsed: float
    stages: list[StageInfo]
    log: list[str]
    series: list[float]
    result: Any = None
    error: BaseException | None = None


@dataclass
class Job:
    """`work(job)` runs in a thread; it reports through `job.progress(...)` and polls `job.should_stop()`."""

    title: str
    work: Callable[["Job"], Any]
    meta: dict = field(default_factory=dict)
    #: progress() raises JobCancelled once Cancel was pressed (False: the work polls should_stop itself)
    raise_on_stop: bool = True
    #: after Cancel, how long the page waits for a stopping point before letting the work finish unseen (None: wait)
    detach_after: float | None = 3.0
    #: wall-clock seconds the job may run (the server's limit, app/limits.py); past it, it stops like a Cancel
    time_limit: float | None = None

    def __post_init__(self):
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stages: list[StageInfo] = []
        self._log: list[str] = []
        self._series: list[float] = []
        self.started = time.perf_counter()
        self.finished: float | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.collected = False
        self.cancel_time: float | None = None
        self.detached = False
        self.timed_out = False  # stopped by `time_limit`, not by the user
        self._thread = threading.Thread(target=self._run, name=f"gr-explorer job: {self.title}", daemon=True)

    # -- worker side ------------------------------------------------------------
    def start(self) -> "Job":
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.result = self.work(self)
        except BaseException as e:  # noqa: BLE001 -- everything is reported to the page, never lost
            if not isinstance(e, GRExplorerError):
                log.error("job %r failed:\n%s", self.title, traceback.format_exc())
            self.error = e
        finally:
            self.finished = time.perf_counter()

    def progress(self, event: ProgressEvent) -> None:
        """The library's progress callback (one ProgressEvent); raises JobCancelled after Cancel."""
        stage, done, total = event.stage, event.done, event.total
        message = f"{event.model}: {event.detail}" if event.model and event.detail else (event.model or event.detail)
        now = time.perf_counter()
        with self._lock:
            if not self._stages or self._stages[-1].name != stage:
                self._stages.append(StageInfo(stage, now, now))
            s = self._stages[-1]
            s.updated, s.done, s.total, s.message = now, int(done), int(total), str(message)
            if stage == "load" and message and not message.startswith("loading") and message not in self._log:
                self._log.append(message)
        if self.raise_on_stop and self.should_stop():
            raise JobCancelled()

    def add_point(self, value: float) -> None:
        """A point of a live series (the training loss)."""
        with self._lock:
            self._series.append(float(value))

    def should_stop(self) -> bool:
        """True after Cancel, or once the job has run past its time limit (which then counts as a Cancel)."""
        if (not self._stop.is_set() and self.time_limit is not None
                and time.perf_counter() - self.started > self.time_limit):
            self.timed_out = True
            self.cancel()
        return self._stop.is_set()

    # -- page side --------------------------------------------------------------
    def cancel(self) -> None:
        if not self._stop.is_set():
            self.cancel_time = time.perf_counter()
        self._stop.set()

    @property
    def running(self) -> bool:
        return self.finished is None

    def snapshot(self) -> Snapshot:
        with self._lock:
            stages = [StageInfo(**vars(s)) for s in self._stages]
            log_lines, series = list(self._log), list(self._series)
        end = self.finished if self.finished is not None else time.perf_counter()
        return Snapshot(self.running, self._stop.is_set(), end - self.started, stages, log_lines, series,
                        self.result, self.error)

    def wait(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()


STAGE_TITLES = {"load": "Load", "extract": "Extract features", "probe": "Fit probes", "train": "Train"}


def _stage_line(s: StageInfo, current: bool) -> str:
    title = STAGE_TITLES.get(s.name, s.name.capitalize())
    secs = s.updated - s.started
    count = f" {s.done}/{s.total}" if s.total and s.name != "load" else ""
    mark = ":material/progress_activity:" if current else ":material/check_circle:"
    msg = f" · {s.message}" if s.message else ""
    return f"{mark} **{title}**{count}{msg} ({secs:.1f} s)"


def follow(job: Job, *, key: str, on_series: Callable[[Any, list[float]], None] | None = None,
           poll: float = 0.5, cancel_label: str = "Cancel",
           cancel_help: str = "Stop after the current batch. Features extracted so far stay cached.") -> Snapshot:
    """Draw `job`'s progress and block (polling) until it ends; returns the final snapshot.

    The page script stays responsive: any widget interaction interrupts this
    loop (Streamlit reruns the script) while the Job goes on; the rerun calls
    `follow` again. `on_series(placeholder, values)` redraws a live series.
    """
    cancel_slot = st.empty()
    cancel_slot.button(cancel_label, key=f"{key}:cancel", on_click=job.cancel, icon=":material/stop_circle:",
                       help=cancel_help)
    status = st.status(job.title, expanded=True)
    with status:
        lines = st.empty()
        bar = st.empty()
        chart = st.empty() if on_series is not None else None
    shown_points, shown = -1, (None, None, None)
    while True:
        snap = job.snapshot()
        label = f"{job.title} · {snap.elapsed:.0f} s"
        if snap.cancel_requested and snap.running:
            label = f"Cancelling {job.title.lower()} · {snap.elapsed:.0f} s"
        text = [*(f":material/info: {m}" for m in snap.log[-3:])]
        text += [_stage_line(s, current=(i == len(snap.stages) - 1 and snap.running)) for i, s in enumerate(snap.stages)]
        cur = snap.stages[-1] if snap.stages else None
        if cur is not None and cur.total:
            progress = (min(1.0, cur.done / cur.total), f"{STAGE_TITLES.get(cur.name, cur.name)}: {cur.done}/{cur.total}")
        elif cur is not None:
            progress = (0.0, f"{STAGE_TITLES.get(cur.name, cur.name)}: {cur.message or 'starting ...'}")
        else:
            progress = (0.0, "starting ...")
        state = (label, "  \n".join(text) or "Starting ...", progress)
        # Only what changed goes to the browser: every message costs the server and the browser CPU time
        # that the job (on the same cores) would otherwise have.
        if state[0] != shown[0]:
            status.update(label=label, state="running", expanded=True)
        if state[1] != shown[1]:
            lines.markdown(state[1])
        if state[2] != shown[2]:
            bar.progress(progress[0], text=progress[1])
        shown = state
        if chart is not None and len(snap.series) != shown_points:
            shown_points = len(snap.series)
            on_series(chart, snap.series)
        if not snap.running:
            break
        job.should_stop()  # the time limit also runs out while the job is inside a step that does not poll
        if (job.cancel_time is not None and job.detach_after is not None
                and time.perf_counter() - job.cancel_time > job.detach_after):
            # The library is inside a step that cannot be interrupted (one batched probe fit):
            # let it finish in the background and drop its result; the page is free now.
            job.detached = True
            snap.error = JobCancelled()
            break
        job.wait(poll)  # returns as soon as the job ends: no poll interval is added to a run
    cancel_slot.empty()
    if snap.error is None:
        status.update(label=f"{job.title}: done in {snap.elapsed:.1f} s", state="complete", expanded=False)
    elif is_cancel(snap.error):
        status.update(label=f"{job.title}: cancelled after {snap.elapsed:.1f} s", state="error", expanded=False)
    else:
        status.update(label=f"{job.title}: failed after {snap.elapsed:.1f} s", state="error", expanded=False)
    return snap


def is_cancel(e: BaseException | None) -> bool:
    return isinstance(e, (JobCancelled, SweepCancelled))

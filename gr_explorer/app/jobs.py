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

A Job belongs to its browser session and ends with it: Streamlit's own Stop
(and a closed tab, which stops the session's script) interrupts `follow`,
which cancels the job; and a job nobody follows (its page was left) checks
its owner (`owner_alive`) whenever the library polls it, and cancels itself
once the session has been gone for OWNER_GRACE_S (a brief reconnect keeps it).
Why end them rather than list them for other sessions: the server's cores and
memory are shared, a run no one can see is pure cost, and another user must
never be able to stop (or watch) someone else's work. When a job ends, its
memory goes back to the operating system (`release_memory`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import streamlit as st
from streamlit.runtime.scriptrunner import RerunException

from ..errors import GRExplorerError
from ..progress import Cancelled, ProgressEvent, duration_text, seconds_left
from ..run import SweepCancelled

log = logging.getLogger("gr_explorer.app")
#: a job whose session has been disconnected this long cancels itself (a reconnect within it keeps the job)
OWNER_GRACE_S = 10.0
#: how often a job asks whether its session is still there (the library polls should_stop far more often)
OWNER_CHECK_S = 1.0


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
    counted: float = 0.0  # when `done` last changed (pulses update `updated` only)

    def seconds_left(self, now: float) -> float | None:
        """The stage's time left at its measured rate (None before its first unit, or when done)."""
        return seconds_left(self.done, self.total, self.counted - self.started, now - self.counted)


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
    records: list = field(default_factory=list)  # what the work recorded for the page (e.g. live probe steps)


@dataclass
class Job:
    """`work(job)` runs in a thread; it reports through `job.progress(...)` and polls `job.should_stop()`."""

    title: str
    work: Callable[["Job"], Any]
    meta: dict = field(default_factory=dict)
    #: progress() raises JobCancelled once Cancel was pressed (False: the work polls should_stop itself)
    raise_on_stop: bool = True
    #: is the browser session that started the job still there? (None: not asked, e.g. under AppTest)
    owner_alive: Callable[[], bool] | None = None
    #: wall-clock seconds the job may run (the server's limit, app/limits.py); past it, it stops like a Cancel
    time_limit: float | None = None

    def __post_init__(self):
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stages: list[StageInfo] = []
        self._log: list[str] = []
        self._series: list[float] = []
        self._records: list = []
        self.started = time.perf_counter()
        self.finished: float | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.collected = False
        self.cancel_time: float | None = None
        self.cancel_reason = ""
        self._owner_checked = 0.0
        self._owner_gone: float | None = None
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
            self.error = _without_frames(e)
        finally:
            self.finished = time.perf_counter()
            release_memory()

    def progress(self, event: ProgressEvent) -> None:
        """The library's progress callback (one ProgressEvent); raises JobCancelled after Cancel."""
        stage, done, total = event.stage, event.done, event.total
        message = f"{event.model}: {event.detail}" if event.model and event.detail else (event.model or event.detail)
        now = time.perf_counter()
        with self._lock:
            if not self._stages or self._stages[-1].name != stage or done < self._stages[-1].done:
                self._stages.append(StageInfo(stage, now, now, counted=now))
            s = self._stages[-1]
            if int(done) != s.done:
                s.counted = now
            s.updated, s.done, s.total, s.message = now, int(done), int(total), str(message)
            if stage == "load" and message and not message.startswith("loading") and message not in self._log:
                self._log.append(message)
        if self.raise_on_stop and self.should_stop():
            raise JobCancelled()

    def add_point(self, value: float) -> None:
        """A point of a live series (the training loss)."""
        with self._lock:
            self._series.append(float(value))

    def add_record(self, record: Any) -> None:
        """A result the page draws while the job runs (e.g. one live probe step)."""
        with self._lock:
            self._records.append(record)

    def should_stop(self) -> bool:
        """Cancel was pressed, the job has run past its time limit, or the session that owns the job has been gone for
        OWNER_GRACE_S (each then counts as a Cancel)."""
        if (not self._stop.is_set() and self.time_limit is not None
                and time.perf_counter() - self.started > self.time_limit):
            self.timed_out = True
            self.cancel("the server's time limit")
        if not self._stop.is_set() and self.owner_alive is not None:
            now = time.monotonic()
            if now - self._owner_checked >= OWNER_CHECK_S:
                self._owner_checked = now
                if self.owner_alive():
                    self._owner_gone = None
                elif self._owner_gone is None:
                    self._owner_gone = now
                elif now - self._owner_gone >= OWNER_GRACE_S:
                    log.info("job %r: its browser session is gone; cancelling it", self.title)
                    self.cancel("its browser session ended")
        return self._stop.is_set()

    # -- page side --------------------------------------------------------------
    def cancel(self, reason: str = "cancelled by the user") -> None:
        if not self._stop.is_set():
            self.cancel_time = time.perf_counter()
            self.cancel_reason = reason
        self._stop.set()

    @property
    def running(self) -> bool:
        return self.finished is None

    def snapshot(self) -> Snapshot:
        with self._lock:
            stages = [StageInfo(**vars(s)) for s in self._stages]
            log_lines, series, records = list(self._log), list(self._series), list(self._records)
        end = self.finished if self.finished is not None else time.perf_counter()
        return Snapshot(self.running, self._stop.is_set(), end - self.started, stages, log_lines, series,
                        self.result, self.error, records)

    def wait(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()


def _without_frames(e: BaseException) -> BaseException:
    """The error without its traceback and chained errors: their frames hold the run's tensors (features,
    probe state) and would keep them in memory for as long as the page keeps the error."""
    e.__traceback__ = e.__context__ = e.__cause__ = None
    return e


_libc = ctypes.CDLL(ctypes.util.find_library("c")) if ctypes.util.find_library("c") else None


def release_memory() -> None:
    """Collect garbage and hand freed heap memory back to the operating system (glibc's malloc_trim).

    Why: glibc keeps the memory a job freed (features, probe matrices) in the server process's heap, so
    after a cancelled run the server would keep its peak size; trimming returns it (Linux; elsewhere a no-op)."""
    gc.collect()
    if _libc is not None and hasattr(_libc, "malloc_trim"):
        _libc.malloc_trim(0)


STAGE_TITLES = {"load": "Load", "generate": "Generate images", "extract": "Extract features", "probe": "Fit probes",
                "metrics": "Diagnostics", "train": "Train"}


def _stage_line(s: StageInfo, current: bool, now: float) -> str:
    title = STAGE_TITLES.get(s.name, s.name.capitalize())
    secs = (now if current else s.updated) - s.started
    count = f" {s.done}/{s.total}" if s.total and s.name != "load" else ""
    mark = ":material/progress_activity:" if current else ":material/check_circle:"
    msg = f" · {s.message}" if s.message else ""
    left = s.seconds_left(now) if current else None
    eta = f", about {duration_text(left)} left at this rate" if left is not None else ""
    return f"{mark} **{title}**{count}{msg} ({secs:.0f} s{eta})"


def follow(job: Job, *, key: str, on_series: Callable[[Any, list[float]], None] | None = None,
           on_records: Callable[[Any, list], None] | None = None, poll: float = 0.5, cancel_label: str = "Cancel",
           cancel_help: str = "Stop now: every stage checks within a second or so. Features extracted so far "
                              "stay cached.") -> Snapshot:
    """Draw `job`'s progress and block (polling) until it ends; returns the final snapshot.

    The page script stays responsive: any widget interaction interrupts this
    loop (Streamlit reruns the script) while the Job goes on; the rerun calls
    `follow` again. Anything else that ends the script here (Streamlit's Stop,
    the browser tab closing, the server shutting down) cancels the job.
    `on_series(placeholder, values)` redraws a live series; `on_records(placeholder, records)` redraws, below the
    status box, what the job recorded so far, whenever a record arrives.
    """
    cancel_slot = st.empty()
    cancel_slot.button(cancel_label, key=f"{key}:cancel", on_click=job.cancel, icon=":material/stop_circle:",
                       help=cancel_help)
    status = st.status(job.title, expanded=True)
    with status:
        lines = st.empty()
        bar = st.empty()
        chart = st.empty() if on_series is not None else None
    shown = st.empty() if on_records is not None else None
    try:
        snap = _follow_until_done(job, status, lines, bar, chart, on_series, poll, shown, on_records)
    except RerunException:
        raise  # a widget was touched: the job goes on, and the rerun follows it again
    except BaseException:
        job.cancel("the page was stopped")
        raise
    cancel_slot.empty()
    if snap.error is None:
        status.update(label=f"{job.title}: done in {snap.elapsed:.1f} s", state="complete", expanded=False)
    elif is_cancel(snap.error):
        after = f", {job.finished - job.cancel_time:.1f} s after Cancel" if job.cancel_time is not None else ""
        status.update(label=f"{job.title}: cancelled after {snap.elapsed:.1f} s{after}", state="error", expanded=False)
    else:
        status.update(label=f"{job.title}: failed after {snap.elapsed:.1f} s", state="error", expanded=False)
    return snap


def _follow_until_done(job: Job, status, lines, bar, chart, on_series, poll: float, record_slot=None,
                       on_records=None) -> Snapshot:
    shown_points, shown_records, shown = -1, 0, (None, None, None)
    while True:
        snap = job.snapshot()
        now = time.perf_counter()
        label = f"{job.title} · {snap.elapsed:.0f} s"
        if snap.cancel_requested and snap.running:
            label = f"Cancelling {job.title.lower()} · {snap.elapsed:.0f} s (stopping at the next check)"
        text = [*(f":material/info: {m}" for m in snap.log[-3:])]
        text += [_stage_line(s, i == len(snap.stages) - 1 and snap.running, now) for i, s in enumerate(snap.stages)]
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
        if record_slot is not None and len(snap.records) != shown_records:
            shown_records = len(snap.records)
            on_records(record_slot, snap.records)
        if not snap.running:
            return snap
        job.should_stop()  # the time limit also runs out while the job is inside a step that does not poll
        job.wait(poll)  # returns as soon as the job ends: no poll interval is added to a run


def is_cancel(e: BaseException | None) -> bool:
    """A cancel from any stage: the page's Cancel (JobCancelled), a sweep's (SweepCancelled, with its finished rows),
    or a stage that stopped on should_stop (progress.Cancelled, e.g. while a dataset was generated)."""
    return isinstance(e, (JobCancelled, SweepCancelled, Cancelled))

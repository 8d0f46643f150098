"""Run a sweep from a page and keep what the library returned: the run bar, the job, the result, the downloads.

A page keeps the library's own `SweepResult` (in st.session_state, so it
survives reruns): tables, summary, search, diagnostics, the features Compare's
CKA reads, the models' cards and the run config. A cancelled sweep keeps
`SweepResult.partial` of the rows it finished. The config the app runs names
models and folders as the user sees them (relative to the data roots), so its
JSON is what the user downloads. The gain wording is the library's (verdict.py).
"""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from ..config import SweepConfig
from ..errors import GRExplorerError, NotCached, ResourceError
from ..export import figure_bytes, find_browser
from ..names import PROBES, label_of
from ..progress import ProgressEvent
from ..run import MEMORY_COLUMNS, SweepResult, run_sweep
from ..samples import NOT_ENOUGH
from ..summary import enough_data, unless_short
from ..verdict import difference_text, gain_text, training_text
from . import resources
from .jobs import Job, Snapshot, follow, is_cancel
from .limits import limits
from .roots import data_roots
from .state import session_alive
from .widgets import show_error

CLI = "gr-explorer sweep --config run.json"


def start_sweep(config: SweepConfig, title: str, cached_only: bool = False) -> Job:
    """Run `config` with the library's run_sweep in a background Job (models and dataset from the shared caches);
    `cached_only`: only if every feature is in the cache (a shared link), else NotCached and nothing computed.

    The server's limits (limits.py) are checked first (ResourceError: nothing starts), the dataset's size once it
    is loaded, each model's size before it is built; features go to the app's capped cache under the data root,
    and the job stops at its time limit."""
    caps = limits()
    caps.check_sweep(config)
    cache = caps.cache(data_roots())

    def work(job: Job) -> SweepResult:
        job.progress(ProgressEvent("load", 0, 1, "", f"loading dataset {config.dataset}"))
        dataset = resources.get_dataset(config, progress=job.progress, should_stop=job.should_stop)
        caps.check_dataset(config, dataset.n_train, dataset.n_test)
        models = []
        for spec in config.models:
            job.progress(ProgressEvent("load", 0, 1, "", f"loading model {spec}"))
            models.append(resources.get_model(config, spec))
        return run_sweep(config, models=models, dataset=dataset, cache=cache, progress=job.progress,
                         should_stop=job.should_stop, cached_only=cached_only)

    return Job(title, work, meta={"config": config}, owner_alive=session_alive(), time_limit=caps.job_seconds).start()


def record_from(job: Job, snap: Snapshot) -> tuple[SweepResult | None, BaseException | None]:
    """(result, error) from a finished sweep Job; a cancelled sweep keeps its finished rows."""
    error = snap.error
    if job.timed_out and (error is None or is_cancel(error)):  # stopped by the server's time limit, not the user
        error = ResourceError(limits().time_text())
    if snap.error is None:
        return snap.result, error
    partial = getattr(snap.error, "partial", None)
    if is_cancel(snap.error) and isinstance(partial, pd.DataFrame) and len(partial):
        return SweepResult.partial(job.meta["config"], partial, snap.elapsed), error
    return None, error


def show_outcome(error: BaseException | None, took: str = "") -> None:
    """How the last run ended, when not with results alone; `took`: its timing ('after 12.3 s, 0.8 s after Cancel'),
    kept across the rerun that redraws the page (the progress box that said it is gone by then)."""
    if error is None:
        return
    if isinstance(error, NotCached):
        st.info("This link's settings are restored; their features are not in this server's cache yet, so nothing "
                "ran. Press **Run** to compute them.", icon=":material/link:")
        return
    if is_cancel(error):
        st.warning(f"Run cancelled{' ' + took if took else ''}. Features that were fully extracted are cached, so "
                   "running again resumes from them.", icon=":material/stop_circle:")
    else:
        show_error(error)


def run_notes(record: SweepResult, current_config_json: str | None) -> bool:
    """What the user must know before reading the results: a cancelled run, settings changed since, no results.

    Returns whether there are results to show (both result views start here)."""
    if record.cancelled:
        st.warning("This run was cancelled: only the results finished before the cancel are shown.")
    notes = getattr(record, "notes", None) or []  # clamped values, too little data (samples.py)
    if notes:
        st.warning("  \n".join(f"- {n}" for n in notes), icon=":material/report:")
    if current_config_json is not None and json.loads(current_config_json) != json.loads(record.config.to_json()):
        st.info("The settings have changed since this run; press **Run** to update the results.",
                icon=":material/sync_problem:")
    if record.table.empty:
        st.info("No results yet.")
        return False
    return True


def run_stats(record: SweepResult) -> None:
    """How the run went: size, time, and how much came from the feature cache."""
    bits = [f"{len(record.table)} results in {record.seconds:.1f} s"]
    if record.dataset is not None:
        bits.append(f"{record.dataset.n_train} train / {record.dataset.n_test} test images")
    stats = record.cache_stats().values()
    cached = sum(c["cached"] for c in stats)
    cuts = sum(c["cuts"] for c in stats)
    batches = sum(c["batches"] for c in stats)
    if cuts and cached == cuts:
        bits.append(f"features of all {cuts} cuts from the cache (no forward pass)")
    elif cached:
        bits.append(f"{cached}/{cuts} cuts from the cache, {batches} forward batches")
    elif cuts:
        bits.append(f"{batches} forward batches for {cuts} cuts (models and baselines)")
    st.caption(" · ".join(bits))


def config_summary(config: SweepConfig) -> str:
    """One line saying what Run will do."""
    tasks = ", ".join(config.tasks) if config.tasks else "all tasks"
    cuts = "all cuts" if config.cuts is None else f"{len(config.cuts)} cuts"
    n = f"{config.n_train or 'all'} train / {config.n_test or 'all'} test images"
    probes = " + ".join(config.probes) + (" probe" if len(config.probes) == 1 else " probes")
    bits = [", ".join(config.models), f"{config.dataset} ({tasks})", cuts, probes]
    if config.baselines:
        bits.append("baselines: " + ", ".join(config.baselines))
    if config.combine:
        bits.append("combined cuts: " + ", ".join(config.combine))
    if config.shots or config.fractions:
        amounts = [f"{s}/class" if s != "all" else "all" for s in config.shots] + [f"{f:g}" for f in config.fractions]
        bits.append(f"few-shot: {', '.join(amounts)} x {config.tries} tries")
    if config.metrics:
        bits.append("diagnostics")
    return " · ".join([*bits, n, f"device {config.device}"])


def sweep_flow(page: str, key: str, config: SweepConfig | None, *, title: str, button: str, show, empty_hint: str,
               linked: SweepConfig | None = None) -> None:
    """Run bar, the running job's progress, its outcome, and the last results (Explore and Compare share this).

    `linked`: the config a shared link asked to run; it runs at once if the settings drawn are the link's and every
    feature is cached. Session state: `<page>:job` (the Job), `<page>:run` (the last run record), `<page>:error`.
    """
    ss = st.session_state
    job_key, run_key, err_key = f"{page}:job", f"{page}:run", f"{page}:error"
    job = ss.get(job_key)
    busy = job is not None and job.running
    c1, c2 = st.columns([3, 8], vertical_alignment="center")
    clicked = c1.button(button, type="primary", key=f"{key}_run", disabled=config is None or busy, width="stretch",
                        icon=":material/play_arrow:",
                        help="Extract features at every cut in one pass per batch, then fit the probes.")
    c2.caption(config_summary(config) if config is not None else "Complete the settings in the sidebar.")
    if clicked and config is not None and not busy:
        ss.pop(err_key, None)
        ss.pop(f"{err_key}:took", None)
        try:
            ss[job_key] = job = start_sweep(config, title)
        except GRExplorerError as e:  # beyond the server's limits: refused before anything runs
            ss[err_key] = e
    elif linked is not None and config == linked and job is None:
        try:
            ss[job_key] = job = start_sweep(config, title, cached_only=True)
        except GRExplorerError as e:
            ss[err_key] = e
    if job is not None and not job.collected:
        snap = follow(job, key=f"{key}_job")
        job.collected = True
        record, error = record_from(job, snap)
        if record is not None:
            ss[run_key] = record
        ss[err_key] = error
        after = f", {job.finished - job.cancel_time:.1f} s after Cancel" if job.cancel_time is not None else ""
        ss[f"{err_key}:took"] = f"after {snap.elapsed:.1f} s{after}"
        st.rerun()  # draw the page afresh: Run enabled again, the new results in place of the progress
    show_outcome(ss.get(err_key), ss.get(f"{err_key}:took", ""))
    record = ss.get(run_key)
    if record is not None:
        show(record, f"{key}_result", config.to_json() if config is not None else None)
    elif ss.get(err_key) is None:
        st.info(empty_hint, icon=":material/arrow_back:")


# ----------------------------------------------------------------------------------------------
# the guillotine-gain rule, as every table shows it (the wording is verdict.py's)


def gain_cell(r) -> str:
    """'+12.3 pts [+8.1, +16.4]' when the gain is clear, else 'no clear gain (...)' / 'borderline (...)' with its
    numbers; then, next to a random-init twin, '; of which training: ...' (the model's gain minus the twin's)."""
    text = gain_text(r.gain, r.gain_ci_low, r.gain_ci_high, r.clear_gain, verdict=_get(r, "gain_verdict"))
    training = training_text(_get(r, "gain_over_random_init_gain"), _get(r, "gain_over_random_init_gain_ci_low"),
                             _get(r, "gain_over_random_init_gain_ci_high"), _get(r, "gain_over_random_init_gain_verdict"))
    return f"{text}; {training}" if training else text


def choice_cell(r) -> str:
    """The best cut's interval once the choice of cut is resampled too, and how often that cut is chosen."""
    p = _get(r, "p_chosen")
    if pd.isna(p):
        return ""
    return f"[{r.best_choice_ci_low:.3f}, {r.best_choice_ci_high:.3f}]; this cut chosen in {100 * p:.0f}% of resamples"


def random_cell(r) -> str:
    """The twin's best-cut accuracy; with N draws their mean ± sd."""
    if pd.isna(r.random_init_accuracy):
        return ""
    n = _get(r, "random_init_draws")
    if pd.isna(n) or n < 2:
        return f"{r.random_init_accuracy:.3f}"
    return f"{r.random_init_accuracy:.3f} ± {r.random_init_accuracy_sd:.3f} ({n:.0f} draws)"


def over_random_cell(r) -> str:
    """The model's best cut vs its random-init twin's best cut (N draws: their mean), paired over the same test
    images."""
    if pd.isna(r.over_random_init):
        return ""
    return difference_text(r.over_random_init, r.over_random_init_ci_low, r.over_random_init_ci_high)


def _get(r, name: str):
    """A summary row's field, NaN when the summary predates it."""
    return getattr(r, name, float("nan"))


def acc_cell(acc: float, lo: float, hi: float) -> str:
    return f"{acc:.3f}" if pd.isna(lo) else f"{acc:.3f} [{lo:.3f}, {hi:.3f}]"


def summary_frame(summary: pd.DataFrame, *, by: str = "task") -> pd.DataFrame:
    """The library's summary as a compact table: one row per curve, every number with its interval."""
    s = summary[summary["baseline"].fillna("") == ""]
    ok = enough_data(s)
    out = pd.DataFrame({
        "model": s["model"], "task": s["task"], "probe": s["probe"],
        "best cut (validation)": unless_short(s["best_cut"], ok, NOT_ENOUGH),
        "accuracy there [95% CI]": unless_short([acc_cell(r.best_accuracy, r.best_ci_low, r.best_ci_high)
                                                 for r in s.itertuples()], ok),
        "last cut": unless_short([f"{r.last_cut}: {r.last_accuracy:.3f}" for r in s.itertuples()], ok),
        "guillotine gain": unless_short([gain_cell(r) for r in s.itertuples()], ok),
    })
    if "p_chosen" in s.columns and s["p_chosen"].notna().any():
        out.insert(list(out.columns).index("accuracy there [95% CI]") + 1, "with the choice of cut [95% CI]",
                   unless_short([choice_cell(r) for r in s.itertuples()], ok))
    if s["random_init_accuracy"].notna().any():
        out["random init"] = [random_cell(r) for r in s.itertuples()]
        out["model − random init, pts"] = unless_short([over_random_cell(r) for r in s.itertuples()], ok)
    if s["pixels_accuracy"].notna().any():
        out["raw pixels"] = [f"{v:.3f}" if pd.notna(v) else "" for v in s["pixels_accuracy"]]
    out["chance"] = [f"{v:.3f}" for v in s["chance"]]
    drop = [c for c, keep in (("model", by == "model" or s["model"].nunique() > 1), ("probe", s["probe"].nunique() > 1))
            if not keep]
    return out.drop(columns=drop).reset_index(drop=True)


def image_downloads(figure, key: str, stem: str, where=st, html: bool = True, what: str = "Figure") -> None:
    """PNG and SVG (1200 x 800, rendered on the server by export.py's kaleido and Chromium) and, with `html`, HTML of
    a figure; `figure` is a figure or a function that makes it (built only when a button is pressed). `what` names
    the buttons, so that two figures on one page never share a button's name."""
    make = figure if callable(figure) else (lambda: figure)
    c1, c2, c3 = where.columns(3)
    if find_browser() is None:
        c1.caption("PNG and SVG need Chrome or Chromium on the server; the HTML download (and its camera button) "
                   "saves a PNG in the browser.")
    else:
        c1.download_button(f"{what} (PNG)", data=lambda: figure_bytes(make(), "png"), file_name=f"{stem}.png",
                           mime="image/png", key=f"{key}:png", icon=":material/image:", on_click="ignore")
        c2.download_button(f"{what} (SVG)", data=lambda: figure_bytes(make(), "svg"), file_name=f"{stem}.svg",
                           mime="image/svg+xml", key=f"{key}:svg", icon=":material/draw:", on_click="ignore")
    if html:
        c3.download_button(f"{what} (HTML)", data=lambda: figure_bytes(make(), "html"), file_name=f"{stem}.html",
                           mime="text/html", key=f"{key}:fightml", icon=":material/monitoring:", on_click="ignore")


def downloads(record: SweepResult, figure_html, key: str, stem: str) -> None:
    table = record.table.drop(columns=MEMORY_COLUMNS, errors="ignore")
    c1, c2, c3 = st.columns(3)
    c1.download_button("Results (CSV)", data=table.to_csv(index=False), file_name=f"{stem}_results.csv",
                       mime="text/csv", key=f"{key}:csv", icon=":material/table:", on_click="ignore")
    c2.download_button("Run config (JSON)", data=record.config.to_json(), file_name="run.json", mime="application/json",
                       key=f"{key}:json", icon=":material/settings:", on_click="ignore",
                       help=f"Reproduces these numbers from a terminal: {CLI}")
    c3.download_button("Figure (HTML)", data=figure_html, file_name=f"{stem}_figure.html", mime="text/html",
                       key=f"{key}:html", icon=":material/monitoring:", on_click="ignore",
                       help="Interactive Plotly figure, self-contained (works offline).")
    st.caption("Reproduce from a terminal with the downloaded run config (file and image-folder paths in it are "
               "relative to the app's data folder):")
    st.code(CLI, language="bash")


def pick_view(record: SweepResult, key: str, *, all_tasks: bool = True) -> tuple[list[str], str]:
    """Task(s) and probe (head: linear, k-NN, attentive) to draw, one click each: a projected chart is readable with
    one task at a time."""
    summary = record.summary
    main = summary[summary["baseline"].fillna("") == ""]
    tasks = list(dict.fromkeys(main["task"]))
    probes = list(dict.fromkeys(main["probe"]))
    options = (["all tasks"] if all_tasks and len(tasks) > 1 else []) + tasks
    c1, c2 = st.columns([4, 1], vertical_alignment="center")
    shown = c1.segmented_control("Task shown", options, default=options[0], key=f"{key}:task", label_visibility="collapsed",
                                 help="One task at a time reads best on a projector.")
    probe = probes[0]
    if len(probes) > 1:
        probe = c2.radio("Head", probes, horizontal=True, key=f"{key}:probe", label_visibility="collapsed",
                         format_func=lambda p: label_of(PROBES, p), help="The probe head whose curves are drawn.")
    if shown is None:  # the selected pill clicked again
        shown = options[0]
    return (tasks if shown == "all tasks" else [shown]), probe


def view_of(table: pd.DataFrame, tasks: list[str], probe: str) -> pd.DataFrame:
    return table[table["task"].isin(tasks) & (table["probe"] == probe)]

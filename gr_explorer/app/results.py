"""Show a finished sweep: the library's figures and tables, and the downloads that reproduce it.

A *run record* (kept in st.session_state so it survives reruns) holds only
what the library returned: the tidy table, the run config JSON and timings.
"""

from __future__ import annotations

import json
import re
import time

import pandas as pd
import streamlit as st

from ..plots import accuracy_vs_depth, cut_task_heatmap
from ..config import SweepConfig
from ..progress import ProgressEvent
from ..run import SweepResult
from ..summary import guillotine_summary
from .jobs import Job, Snapshot, follow, is_cancel
from .widgets import show_error

CLI = "gr-explorer sweep --config run.json"


def start_sweep(config: SweepConfig, title: str) -> Job:
    """Run `config` with the library's run_sweep in a background Job (models/dataset from the shared caches)."""
    from ..run import run_sweep
    from . import resources

    def work(job: Job) -> SweepResult:
        job.progress(ProgressEvent("load", 0, 1, "", f"loading dataset {config.dataset}"))
        dataset = resources.get_dataset(config)
        models = []
        for spec in config.models:
            job.progress(ProgressEvent("load", 0, 1, "", f"loading model {spec}"))
            models.append(resources.get_model(spec, weights=config.weights, readout=config.readout, device=config.device))
        return run_sweep(config, models=models, dataset=dataset, progress=job.progress, should_stop=job.should_stop)

    return Job(title, work, meta={"config_json": config.to_json()}).start()


def record_from(job: Job, snap: Snapshot) -> tuple[dict | None, BaseException | None]:
    """(run record, error) from a finished sweep Job; a cancelled sweep keeps its finished rows."""
    config_json = job.meta["config_json"]
    if snap.error is None:
        res: SweepResult = snap.result
        cache = {m: {"cached": sum(len(f.cached_cuts) for f in views.values()), "cuts": sum(len(f.cuts) for f in views.values()),
                     "batches": sum(f.forward_batches for f in views.values())}
                 for m, views in res.features.items()}
        return {"table": res.table, "summary": res.summary, "search": res.search, "config_json": config_json,
                "seconds": res.seconds, "cache": cache,
                "dataset": {"n_train": res.dataset.n_train, "n_test": res.dataset.n_test}, "finished": time.time(),
                "cancelled": False}, None
    partial = getattr(snap.error, "partial", None)
    if is_cancel(snap.error) and isinstance(partial, pd.DataFrame) and len(partial):
        return {"table": partial, "config_json": config_json, "seconds": snap.elapsed, "cache": {}, "dataset": {},
                "finished": time.time(), "cancelled": True}, snap.error
    return None, snap.error


def show_outcome(error: BaseException | None) -> None:
    if error is None:
        return
    if is_cancel(error):
        st.warning("Run cancelled. Features that were fully extracted are cached, so running again resumes from them.",
                   icon=":material/stop_circle:")
    else:
        show_error(error)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:60] or "run"


def run_header(record: dict, current_config_json: str | None) -> None:
    bits = [f"{len(record['table'])} results in {record['seconds']:.1f} s"]
    if record["dataset"]:
        bits.append(f"{record['dataset']['n_train']} train / {record['dataset']['n_test']} test images")
    for m, c in record["cache"].items():
        if c["cached"] == c["cuts"]:
            text = f"features of {c['cuts']} cuts from the cache (no forward pass)"
        elif c["cached"]:
            text = f"{c['cached']}/{c['cuts']} cuts from the cache, {c['batches']} forward batches"
        else:
            text = f"{c['batches']} forward batches, {c['cuts']} cuts"
        bits.append(f"{m}: {text}" if len(record["cache"]) > 1 else text)
    st.caption(" · ".join(bits))
    if record.get("cancelled"):
        st.warning("This run was cancelled: only the results finished before the cancel are shown.")
    if current_config_json is not None and json.loads(current_config_json) != json.loads(record["config_json"]):
        st.info("The settings have changed since this run; press **Run** to update the results.",
                icon=":material/sync_problem:")


def config_summary(config: SweepConfig) -> str:
    """One line saying what Run will do."""
    tasks = ", ".join(config.tasks) if config.tasks else "all tasks"
    cuts = "all cuts" if config.cuts is None else f"{len(config.cuts)} cuts"
    n = f"{config.n_train or 'all'} train / {config.n_test or 'all'} test images"
    probes = " + ".join(config.probes) + (" probe" if len(config.probes) == 1 else " probes")
    return " · ".join([", ".join(config.models), f"{config.dataset} ({tasks})", cuts, probes, n, f"device {config.device}"])


def sweep_flow(page: str, key: str, config: SweepConfig | None, *, title: str, button: str, show, empty_hint: str) -> None:
    """Run bar, the running job's progress, its outcome, and the last results (Explore and Compare share this).

    Session state: `<page>:job` (the Job), `<page>:run` (the last run record), `<page>:error`.
    """
    ss = st.session_state
    job_key, run_key, err_key = f"{page}:job", f"{page}:run", f"{page}:error"
    job = ss.get(job_key)
    busy = job is not None and job.running and not job.detached
    c1, c2 = st.columns([1, 5], vertical_alignment="center")
    clicked = c1.button(button, type="primary", key=f"{key}_run", disabled=config is None or busy, width="stretch",
                        icon=":material/play_arrow:",
                        help="Extract features at every cut in one pass per batch, then fit the probes.")
    c2.caption(config_summary(config) if config is not None else "Complete the settings in the sidebar.")
    if clicked and config is not None and not busy:
        ss[job_key] = job = start_sweep(config, title)
        ss.pop(err_key, None)
    if job is not None and not job.collected:
        snap = follow(job, key=f"{key}_job")
        job.collected = True
        record, error = record_from(job, snap)
        if record is not None:
            ss[run_key] = record
        ss[err_key] = error
        st.rerun()  # draw the page afresh: Run enabled again, the new results in place of the progress
    show_outcome(ss.get(err_key))
    record = ss.get(run_key)
    if record is not None:
        show(record, f"{key}_result", config.to_json() if config is not None else None)
    elif ss.get(err_key) is None:
        st.info(empty_hint, icon=":material/arrow_back:")


def summary_metrics(table: pd.DataFrame) -> None:
    """Best cut and guillotine gain per task, as metric tiles (first probe only, one model)."""
    s = guillotine_summary(table)
    if s.empty:
        return
    s = s[s["probe"] == s["probe"].iloc[0]]
    cols = st.columns(min(len(s), 6))
    for i, row in enumerate(s.itertuples(index=False)):
        cols[i % len(cols)].metric(
            f"{row.task}: best cut", f"{row.best_cut}",
            f"{100 * row.gain:+.1f} pts vs {row.last_cut}" if row.clear_gain else "no clear gain",
            delta_color="normal" if row.clear_gain else "off",
            help=f"{row.probe} probe: {row.best_accuracy:.3f} at {row.best_cut} vs {row.last_accuracy:.3f} at the last "
                 f"cut {row.last_cut}. The guillotine gain is best minus last.")


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    s = guillotine_summary(table)
    return s.assign(gain_pts=(100 * s["gain"]).round(1)).drop(columns=["gain"])


def downloads(record: dict, figure_html, key: str, stem: str) -> None:
    c1, c2, c3 = st.columns(3)
    c1.download_button("Results (CSV)", data=record["table"].to_csv(index=False), file_name=f"{stem}_results.csv",
                       mime="text/csv", key=f"{key}:csv", icon=":material/table:", on_click="ignore")
    c2.download_button("Run config (JSON)", data=record["config_json"], file_name="run.json", mime="application/json",
                       key=f"{key}:json", icon=":material/settings:", on_click="ignore",
                       help=f"Reproduces these numbers from a terminal: {CLI}")
    c3.download_button("Figure (HTML)", data=figure_html, file_name=f"{stem}_figure.html", mime="text/html",
                       key=f"{key}:html", icon=":material/monitoring:", on_click="ignore",
                       help="Interactive Plotly figure, self-contained (works offline).")
    st.caption("Reproduce from a terminal with the downloaded run config:")
    st.code(CLI, language="bash")


def show_explore(record: dict, key: str, current_config_json: str | None) -> None:
    table: pd.DataFrame = record["table"]
    run_header(record, current_config_json)
    if table.empty:
        st.info("No results yet.")
        return
    summary_metrics(table)
    fig = accuracy_vs_depth(table)
    fig.update_layout(height=520)
    st.plotly_chart(fig, key=f"{key}:chart", width="stretch")
    st.caption("Each line is one task; the shaded bands are the backbone and the projector; a star marks the best "
               "cut and the label above it the guillotine gain (best minus last cut). Hover a point for its cut, "
               "dimension and accuracy.")
    tab_heat, tab_table, tab_summary = st.tabs(["Cut × task heatmap", "Results table", "Best cut per task"])
    with tab_heat:
        probes = list(dict.fromkeys(table["probe"]))
        probe = probes[0]
        if len(probes) > 1:
            probe = st.radio("Probe", probes, horizontal=True, key=f"{key}:heat_probe")
        model = table["model"].iloc[0]
        st.plotly_chart(cut_task_heatmap(table, model, probe), key=f"{key}:heatmap", width="stretch")
    with tab_table:
        st.dataframe(table, hide_index=True, key=f"{key}:table", width="stretch",
                     column_config={"accuracy": st.column_config.NumberColumn(format="%.4f"),
                                    "val_accuracy": st.column_config.NumberColumn(format="%.4f")})
    with tab_summary:
        st.dataframe(summary_table(table), hide_index=True, width="stretch")
    cfg = json.loads(record["config_json"])
    stem = _slug(f"{cfg['models'][0].split('/')[-1]}_{cfg['dataset'].split('/')[-1]}")
    downloads(record, lambda: fig.to_html(include_plotlyjs=True, full_html=True), key, stem)


def gain_cell(r) -> str:
    """'+12.3 pts [8.1, 16.4]' for a gain whose 95% interval excludes 0, else 'no clear gain'."""
    if not r.clear_gain:
        return "no clear gain"
    return f"{100 * r.gain:+.1f} pts [{100 * r.gain_ci_low:+.1f}, {100 * r.gain_ci_high:+.1f}]"


def best_cut_grid(table: pd.DataFrame) -> pd.DataFrame:
    """Models x tasks, each cell 'best cut (+gain pts)', from guillotine_summary (first probe)."""
    s = guillotine_summary(table)
    s = s[s["probe"] == s["probe"].iloc[0]]
    cell = [f"{r.best_cut} ({gain_cell(r)})" for r in s.itertuples()]
    grid = s.assign(cell=cell).pivot(index="model", columns="task", values="cell")
    return grid.reindex(index=list(dict.fromkeys(s["model"])), columns=list(dict.fromkeys(s["task"])))


def show_compare(record: dict, key: str, current_config_json: str | None) -> None:
    table: pd.DataFrame = record["table"]
    run_header(record, current_config_json)
    if table.empty:
        st.info("No results yet.")
        return
    st.subheader("Best cut (guillotine gain in points) per model and task")
    st.dataframe(best_cut_grid(table), width="stretch", key=f"{key}:grid")
    tasks = list(dict.fromkeys(table["task"]))
    figs = {}
    cols = st.columns(2) if len(tasks) > 1 else [st.container()]
    for i, task in enumerate(tasks):
        fig = accuracy_vs_depth(table[table["task"] == task], title=f"Task: {task}")
        fig.update_layout(height=430, legend=dict(orientation="h", yanchor="top", y=-0.25, title=None))
        figs[task] = fig
        with cols[i % len(cols)]:
            st.plotly_chart(fig, key=f"{key}:chart:{task}", width="stretch")
    st.caption("One chart per task, one line per model (and probe); x is each model's cut depth in forward order. "
               "Stars mark the best cut, labels the guillotine gain (best minus last cut).")
    with st.expander("Best cut and guillotine gain per model and task (table)", expanded=False):
        st.dataframe(summary_table(table), hide_index=True, width="stretch", key=f"{key}:summary",
                     column_config={"best_accuracy": st.column_config.NumberColumn(format="%.3f"),
                                    "last_accuracy": st.column_config.NumberColumn(format="%.3f"),
                                    "gain_pts": st.column_config.NumberColumn("gain (pts)", format="%+.1f")})
    with st.expander("Results table"):
        st.dataframe(table, hide_index=True, width="stretch", key=f"{key}:table")

    def html() -> str:
        parts = [f.to_html(include_plotlyjs=(i == 0), full_html=False) for i, f in enumerate(figs.values())]
        return ("<html><head><meta charset='utf-8'><title>gr-explorer comparison</title></head><body>" + "".join(parts)
                + "</body></html>")

    cfg = json.loads(record["config_json"])
    downloads(record, html, key, _slug(f"compare_{cfg['dataset'].split('/')[-1]}"))

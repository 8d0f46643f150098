"""Explore page: one model, one dataset, every cut -> accuracy vs depth, its baselines and its diagnostics."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ..config import SweepConfig
from ..diagnostics.figures import cka_heatmap, invariance_heatmap, metric_curves
from ..files import slug
from ..names import METRICS, SPECTRAL_METRICS, label_of
from ..plots import accuracy_vs_depth, cut_task_heatmap
from ..run import SweepResult
from . import results, widgets
from .figures import search_curve

#: The teaching demo's preset: the default run shows the random-init twin (about 2x the run without baselines);
#: raw pixels are one click away (1.4x alone, 2.1x with the twin: benchmarks/README.md, (e)).
EXPLORE_BASELINES = ("random-init",)
CHART_HEIGHT = 440


def settings() -> SweepConfig | None:
    """The sidebar: everything a sweep needs. Returns the config, or None (with the reason shown)."""
    st.header("Model")
    spec, weights = widgets.pick_model("ex")
    st.header("Data")
    dataset, tasks = widgets.pick_dataset("ex")
    st.header("Probing")
    probing = widgets.pick_probing("ex", baselines=EXPLORE_BASELINES)
    diagnostics = widgets.pick_diagnostics("ex")
    run = widgets.pick_run_settings("ex")
    if weights == "random" and "random-init" in probing["baselines"]:
        probing["baselines"].remove("random-init")
        st.caption("The model itself is a random init, so it has no random-init baseline.")
    cuts = None
    model = widgets.load_for_ui(spec, weights, run) if spec else None
    if model is not None:
        cuts = widgets.pick_cuts("ex", model)
    if model is None or not dataset or not tasks or cuts == []:
        return None
    if not probing["probes"]:
        st.warning("Pick at least one probe.")
        return None
    return widgets.sweep_config(models=[spec], dataset=dataset, tasks=tasks, cuts=cuts, weights=weights, **probing,
                                **diagnostics, **run)


def render() -> None:
    widgets.compact_page()
    st.title("Explore: where should you cut?")
    st.caption("Probe **every cut** of a self-supervised network (backbone stages, the pooled backbone output, each "
               "projector layer) and see which one transfers best to each task. **About** explains the plots.")
    with st.sidebar:
        config = settings()
    results.sweep_flow("explore", "ex", config, title="Sweep", button="Run", show=show_explore,
                       empty_hint="Pick a model, a dataset and its tasks in the sidebar, then press **Run**. The default "
                                  "(zoo:simclr on shapes, all cuts, linear probe, random-init baseline) takes about "
                                  "half a minute on a busy 2-core CPU.")


# ----------------------------------------------------------------------------------------------
# results


def show_explore(record: SweepResult, key: str, current_config_json: str | None) -> None:
    table: pd.DataFrame = record.table
    if not results.run_notes(record, current_config_json):
        return
    tasks, probe = results.pick_view(record, key)
    summary = record.summary
    view = results.view_of(table, tasks, probe)
    fig = accuracy_vs_depth(view, summary=summary, selector=False)
    fig.update_layout(height=CHART_HEIGHT, margin=dict(t=50, b=40, l=60, r=10))
    st.plotly_chart(fig, key=f"{key}:chart", width="stretch")
    st.caption("Each line is a task; its band is the 95% interval; ★ marks the best cut, chosen on validation images, "
               "and the number beside it the guillotine gain (best minus last cut) when its interval excludes 0. "
               "Dashed: the same network with random weights; ◆: a probe on the raw pixels; dotted: chance.")
    results.run_stats(record)
    # A static table wraps its cells: every column readable at 1280x720, no sideways scrolling on a projector.
    st.table(results.summary_frame(summary[summary["probe"] == probe]), hide_index=True, border="horizontal")
    if not record.metrics.empty:
        show_diagnostics(record, tasks, probe, key)
    tab_search, tab_heat, tab_table = st.tabs(["Probe validation", "Cut × task heatmap", "Results table"])
    with tab_search:
        show_search(record, tasks, probe, key)
    with tab_heat:
        model = record.models[0]
        st.plotly_chart(cut_task_heatmap(table[table["baseline"].fillna("") == ""], model, probe), key=f"{key}:heatmap",
                        width="stretch")
    with tab_table:
        st.dataframe(table.drop(columns=["correct", "baseline_for"], errors="ignore"), hide_index=True, key=f"{key}:table", width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.4f")
                                    for c in ("accuracy", "accuracy_ci_low", "accuracy_ci_high", "val_accuracy", "chance")})
    stem = slug(f"{record.models[0].split('/')[-1]}_{table['dataset'].iloc[0].split('/')[-1]}")
    results.downloads(record, lambda: accuracy_vs_depth(table, summary=summary).to_html(include_plotlyjs=True,
                                                                                       full_html=True), key, stem)


def show_search(record: SweepResult, tasks: list[str], probe: str, key: str) -> None:
    """The probe's hyper-parameter search at one cut: how the value used for the test score was chosen."""
    search = record.search
    if search.empty:
        st.info("No hyper-parameter search was recorded for this run.")
        return
    model = record.models[0]
    s = record.summary
    c1, c2 = st.columns(2)
    task = c1.selectbox("Task", tasks, key=f"{key}:search_task")
    best = s[(s["model"] == model) & (s["task"] == task) & (s["probe"] == probe)]
    cuts = list(dict.fromkeys(search[search["model"] == model].sort_values("depth")["cut"]))
    default = cuts.index(best["best_cut"].iloc[0]) if len(best) and best["best_cut"].iloc[0] in cuts else 0
    cut = c2.selectbox("Cut", cuts, index=default, key=f"{key}:search_cut",
                       help="Starts at the validation-selected best cut of this task.")
    st.plotly_chart(search_curve(search, cut, task, probe, model), key=f"{key}:search", width="stretch")
    st.caption("The probe is fitted on 80% of the train images for every value, scored on the other 20% (validation); "
               "the best value is refitted on all train images and only then scored on the test images.")


def metric_sentences(selection: pd.DataFrame, model: str, tasks: list[str], probe: str) -> list[str]:
    """Per task: which cut each label-free metric would have picked, and the test accuracy trusting it costs."""
    out = []
    sel = selection[(selection["model"] == model) & (selection["probe"] == probe) & (selection["augmentation"] == "")
                    & selection["metric"].isin(SPECTRAL_METRICS)]
    for task in tasks:
        rows = sel[sel["task"] == task]
        if rows.empty:
            continue
        parts = []
        for r in rows.itertuples():
            name = label_of(METRICS, r.metric)
            if r.metric_cut is None:
                parts.append(f"{name}: no cut")
            elif r.metric_cut == r.val_cut:
                parts.append(f"{name}: the same cut")
            elif abs(r.accuracy_lost) < 5e-4:
                parts.append(f"{name}: {r.metric_cut}, the same test accuracy")
            elif r.accuracy_lost > 0:
                parts.append(f"{name}: {r.metric_cut}, loses {100 * r.accuracy_lost:.1f} points")
            else:
                parts.append(f"{name}: {r.metric_cut}, {100 * -r.accuracy_lost:.1f} points higher (luck of the test sample)")
        out.append(f"**{task}**: validation picks **{rows['val_cut'].iloc[0]}**. Trusting a metric instead: "
                   + "; ".join(parts) + ".")
    return out


def show_diagnostics(record: SweepResult, tasks: list[str], probe: str, key: str) -> None:
    """Label-free metrics per cut under the accuracy of the same cuts, CKA, invariance, and what trusting them costs."""

    metrics, table = record.metrics, record.table
    model = record.models[0]
    m = metrics[metrics["model"] == model]
    st.subheader("Diagnostics: what the cuts look like without labels")
    names = [x for x in SPECTRAL_METRICS if x in set(m["metric"])]
    acc = results.view_of(table[table["model"] == model], tasks, probe)
    if names:
        fig = metric_curves(m, results=acc, metric_names=names, title="Test accuracy (top) and label-free metrics per cut",
                            height=200 + 110 * len(names))
        fig.update_layout(title=None, margin=dict(t=30, b=40, l=60, r=10), legend=dict(font=dict(size=12)))
        st.plotly_chart(fig, key=f"{key}:diag", width="stretch")
    sentences = metric_sentences(record.metric_selection, model, tasks, probe) if names else []
    if sentences:
        st.markdown("Would a metric have found the best cut without labels? (Spearman's ρ and its interval per "
                    "metric are in the table below.)  \n" + "  \n".join(sentences))
        with st.expander("Metric vs accuracy across cuts (table)"):
            sel = record.metric_selection
            st.dataframe(sel[(sel["model"] == model) & (sel["probe"] == probe) & sel["task"].isin(tasks)], hide_index=True,
                         width="stretch", key=f"{key}:selection")
    views = [(name, view) for name, view, present in (
        ("CKA between cuts", "cka", not record.cka.empty),
        ("Invariance per augmentation", "invariance", "invariance" in set(m["metric"]))) if present]
    for (name, view), tab in zip(views, st.tabs([n for n, _ in views]) if views else []):
        with tab:
            if view == "cka":
                fig = cka_heatmap(record.cka, model, title=f"{model}: linear CKA between cuts", height=520)
            else:
                fig = invariance_heatmap(m, model, title=f"{model}: invariance of each cut to each training augmentation "
                                                         "(1 = the features do not move)", height=420)
            st.plotly_chart(fig, key=f"{key}:{view}", width="stretch")

"""Explore page: one model, one dataset, every cut -> accuracy vs depth, its baselines and its diagnostics."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ..combine import combined_view
from ..config import SweepConfig
from ..diagnostics.figures import cka_heatmap, invariance_heatmap, metric_curves
from ..export import HTML_CONFIG
from ..files import slug
from ..names import METRICS, RANDOM_INIT, SPECTRAL_METRICS, label_of
from ..plots import accuracy_vs_depth, cut_task_heatmap
from ..run import MEMORY_COLUMNS, SweepResult
from ..shots import ALL, amount_text, best_view, shot_order
from ..verdict import BORDERLINE_IMAGES, clear, interval_text
from . import fields, results, share, widgets
from .embeddings import show_embedding
from .figures import search_curve
from .state import kept

#: The teaching demo's preset: the default run shows the random-init twin (about 2x the run without baselines);
#: raw pixels are one click away (1.4x alone, 2.1x with the twin: benchmarks/README.md, (e)).
EXPLORE_BASELINES = ("random-init",)
CHART_HEIGHT = 440
#: what the sidebar offers for few-shot curves (labelled images per class) and combined cuts
SHOT_CHOICES = (1, 2, 5, 10, 20, 50)
COMBINE_CHOICES = ("last2", "last4", "best2", "best4")


def settings() -> SweepConfig | None:
    """The sidebar: everything a sweep needs. Returns the config, or None (with the reason shown)."""
    st.header("Model")
    spec, weights = widgets.pick_model("ex")
    st.header("Data")
    dataset, tasks = widgets.pick_dataset("ex")
    st.header("Probing")
    probing = widgets.pick_probing("ex", baselines=EXPLORE_BASELINES)
    probing.update(pick_heads("ex"))
    diagnostics = widgets.pick_diagnostics("ex")
    run = widgets.pick_run_settings("ex")
    twins = [b for b in probing["baselines"] if b.partition(":")[0] == RANDOM_INIT]
    if weights == "random" and twins:
        probing["baselines"] = [b for b in probing["baselines"] if b not in twins]
        st.caption("The model itself is a random init, so it has no random-init baseline.")
    cuts, reading = None, {}
    model = widgets.load_for_ui(spec, weights, run) if spec else None
    if model is not None:
        reading = widgets.pick_readouts("ex", model)
        cuts = widgets.pick_cuts("ex", model, reading["cut_detail"])
    if model is None or not dataset or not tasks or cuts == []:
        return None
    if not probing["probes"]:
        st.warning("Pick at least one probe.")
        return None
    return widgets.sweep_config(models=[spec], dataset=dataset, tasks=tasks, cuts=cuts, weights=weights, **probing,
                                **diagnostics, **run, **reading)


def pick_heads(prefix: str) -> dict:
    """Combined cuts and few-shot curves, as SweepConfig keyword arguments (defaults from the declarations)."""
    defaults = SweepConfig.defaults()
    with st.expander("Combined cuts and few-shot curves"):
        combine = kept(st.multiselect, SweepConfig.spec("combine").widget_label, key=f"{prefix}_combine",
                       options=list(COMBINE_CHOICES), default=list(defaults["combine"]),
                       help=SweepConfig.spec("combine").help[:1].upper() + SweepConfig.spec("combine").help[1:] + ".")
        shots = kept(st.multiselect, SweepConfig.spec("shots").widget_label, key=f"{prefix}_shots",
                     options=list(SHOT_CHOICES), default=[s for s in defaults["shots"] if s != ALL],
                     help="Few-shot curves from the same features: each amount is drawn --tries times from the probe's "
                          "fit split; the best cut is chosen on validation in each draw.")
        tries = fields.number(SweepConfig, "tries", key=f"{prefix}_tries", step=1)
    return dict(combine=combine, shots=sorted(shots), tries=tries)


def pick_shots(record: SweepResult, key: str) -> str:
    """The amount of labels whose curves are drawn: a slider over the run's shots ('all': the ordinary sweep)."""
    if record.shots.empty:
        return ALL
    options = shot_order(record.shots["shots"])
    return st.select_slider("Labelled images", options=options, value=ALL, key=f"{key}:shots", format_func=amount_text,
                            help="Few-shot curves: the probes refitted on seeded draws of this many labelled images per "
                                 "class (the band: min-max over the draws); 'all labels' is the ordinary sweep.")


def render() -> None:
    widgets.compact_page()
    st.title("Explore: where should you cut?")
    st.caption("Probe **every cut** of a self-supervised network (backbone stages, the pooled backbone output, each "
               "projector layer) and see which one transfers best to each task. **About** explains the plots.")
    linked = share.restore("ex")
    with st.sidebar:
        config = settings()
    share.publish(config)
    results.sweep_flow("explore", "ex", config, title="Sweep", button="Run", show=show_explore, linked=linked,
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
    shot = pick_shots(record, key)
    summary = record.summary
    if shot == ALL:
        view = results.view_of(table, tasks, probe)

        def draw():
            return accuracy_vs_depth(view, summary=summary, selector=False, combined=record.combined_summary)
    else:
        view = results.view_of(record.shots[record.shots["shots"] == shot], tasks, probe)

        def draw():
            return accuracy_vs_depth(view, selector=False, title=f"{amount_text(shot)}: test accuracy at every cut, "
                                                                 "mean over the draws")
    fig = draw()
    fig.update_layout(height=CHART_HEIGHT, margin=dict(t=50, b=40, l=60, r=10))
    st.plotly_chart(fig, key=f"{key}:chart", width="stretch", config=HTML_CONFIG)
    results.image_downloads(draw, key=f"{key}:chart_img",
                            stem=slug(f"{record.models[0].split(':')[-1]}_accuracy_vs_depth"), html=False)
    if shot == ALL:
        st.caption("Each line is a task; its band is the 95% interval; ★ marks the best cut, chosen on validation "
                   "images, and the number beside it the guillotine gain (best minus last cut) when it is clear. "
                   "Dashed: the same network with random weights (with several draws, their mean and range); ◆: a "
                   "probe on the raw pixels; dotted: chance; ■ right of the curve: combined cuts with their 95% "
                   "intervals. The bars under the chart: how often each cut is the one chosen when the validation and "
                   "test images are resampled. A gain is **borderline** when its interval's bound sits within "
                   f"{BORDERLINE_IMAGES} test images' worth of 0, or when re-choosing the cut can undo it; **of which "
                   "training** is the model's gain minus its random-init twin's (a random network gains by cutting "
                   "too).")
    else:
        st.caption(f"{amount_text(shot)}: each line is the mean test accuracy over the draws, its band the lowest to "
                   "the highest draw; ★ marks the cut with the best mean validation accuracy (the table below gives "
                   "the cut validation chose in each draw). Dashed: random weights; dotted: chance.")
    results.run_stats(record)
    # A static table wraps its cells: every column readable at 1280x720, no sideways scrolling on a projector.
    st.table(results.summary_frame(summary[summary["probe"] == probe]), hide_index=True, border="horizontal")
    c = record.combined_summary
    if not c.empty and shot == ALL:
        st.table(combined_view(c[(c["probe"] == probe) & c["task"].isin(tasks)]), hide_index=True,
                 border="horizontal")
    b = record.shots_best
    if not b.empty:
        st.table(best_view(b[(b["probe"] == probe) & b["task"].isin(tasks)]), hide_index=True, border="horizontal")
    if not record.metrics.empty:
        show_diagnostics(record, tasks, probe, key)
    tab_embed, tab_search, tab_heat, tab_table = st.tabs(["Embedding per cut", "Probe validation", "Cut × task heatmap",
                                                          "Results table"])
    with tab_embed:
        show_embedding(record, key)
    with tab_search:
        show_search(record, tasks, probe, key)
    with tab_heat:
        model = record.models[0]
        st.plotly_chart(cut_task_heatmap(table[table["baseline"].fillna("") == ""], model, probe), key=f"{key}:heatmap",
                        width="stretch")
    with tab_table:
        st.dataframe(table.drop(columns=MEMORY_COLUMNS, errors="ignore"), hide_index=True, key=f"{key}:table", width="stretch",
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
            else:
                parts.append(f"{name}: {r.metric_cut}, {lost_text(r)}")
        out.append(f"**{task}**: validation picks **{rows['val_cut'].iloc[0]}**. Trusting a metric instead: "
                   + "; ".join(parts) + ".")
    return out


def lost_text(r) -> str:
    """The test points lost by trusting a metric's pick, with its paired interval: 'loses 1.2 points [-1.1, +3.6]
    (within noise: the interval contains 0)' or '3.0 points higher [+1.0, +5.0]'."""
    lo, hi = getattr(r, "accuracy_lost_ci_low", float("nan")), getattr(r, "accuracy_lost_ci_high", float("nan"))
    v = r.accuracy_lost
    value, _, ci = (interval_text(v, lo, hi) if v > 0 else interval_text(-v, -hi, -lo)).partition(" ")
    head = f"loses {value.lstrip('+')} points" if v > 0 else f"{value.lstrip('+')} points higher"
    if pd.isna(lo):
        return head + ("" if v > 0 else " (luck of the test sample)")
    return f"{head} {ci}" + ("" if clear(lo, hi) else " (within noise: the interval contains 0)")


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

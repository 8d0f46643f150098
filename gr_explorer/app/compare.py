"""Compare page: several models on one dataset; seeds of one design read as one mean curve; CKA between two models."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ..config import SweepConfig
from ..device import resolve_device
from ..diagnostics import cka_between_models
from ..files import slug
from ..plots import accuracy_vs_depth
from ..run import MEMORY_COLUMNS, SweepResult
from ..samples import NOT_ENOUGH
from ..seeds import seed_view
from ..verdict import gain_text, pts, seeds_gain_text
from . import results, widgets
from .figures import cka_by_depth, mark_seed_groups
from .state import kept

#: the zoo's projector-design variants of SimCLR: the demo comparison when shipped
PROJECTOR_VARIANTS = ("zoo:simclr_proj_none", "zoo:simclr_proj1", "zoo:simclr", "zoo:simclr_proj3_wide")
CHART_HEIGHT = 440


def default_models(specs: list[str]) -> list[str]:
    """The SimCLR projector variants when at least two are shipped, else the default model and two more zoo models."""
    variants = [s for s in PROJECTOR_VARIANTS if s in specs]
    if len(variants) >= 2:
        return variants
    zoo = [s for s in specs if s.startswith("zoo:")]
    first = widgets.default_model(specs)
    return ([first] if first else []) + [s for s in zoo if s != first][:2]


def pick_models() -> list[str]:
    models = widgets.catalogue()
    specs = list(models)
    chosen = kept(st.multiselect, "Models", key="cmp_models", options=specs, default=default_models(specs),
                  format_func=lambda s: models[s]["label"],
                  help="Shipped checkpoints (e.g. the projector-design variants, the objectives, or several seeds of "
                       "one recipe, which are averaged) and the models trained or uploaded in this session.")
    for s in chosen:
        if models[s]["description"]:
            st.caption(f"**{models[s]['label']}**: {models[s]['description']}")
    extra = kept(st.text_input, "Also timm models (comma-separated)", key="cmp_timm", value="",
                 placeholder="e.g. resnet18.a1_in1k, vit_small_patch16_224.dino")
    timm = [f"timm:{n.strip().removeprefix('timm:')}" for n in extra.split(",") if n.strip()]
    return list(dict.fromkeys([*chosen, *timm]))


def settings() -> SweepConfig | None:
    st.header("Models")
    specs = pick_models()
    st.header("Data")
    dataset, tasks = widgets.pick_dataset("cmp")
    st.header("Probing")
    probing = widgets.pick_probing("cmp")
    run = widgets.pick_run_settings("cmp")
    if not specs:
        st.warning("Pick at least one model.")
        return None
    ok = True
    for spec in specs:  # load now: a bad spec is reported here, next to the inputs, not after a long run
        ok &= widgets.load_for_ui(spec, None, run) is not None
    if not ok or not dataset or not tasks:
        return None
    if not probing["probes"]:
        st.warning("Pick at least one probe.")
        return None
    return widgets.sweep_config(models=specs, dataset=dataset, tasks=tasks, **probing, **run)


def render() -> None:
    widgets.compact_page()
    st.title("Compare models")
    st.caption("Several models on the same data: where does each keep the information a task needs, and how much does "
               "cutting off its projector gain? Seeds of one recipe are averaged. x is each model's cut depth in forward "
               "order.")
    with st.sidebar:
        config = settings()
    results.sweep_flow("compare", "cmp", config, title="Comparison", button="Run comparison", show=show_compare,
                       empty_hint="Pick two or more models in the sidebar and press **Run comparison**.")


# ----------------------------------------------------------------------------------------------
# results


def best_cut_grid(summary: pd.DataFrame, seed_rows: pd.DataFrame, groups: dict[str, list[str]], probe: str) -> pd.DataFrame:
    """Models (a seed group as one row) x tasks: 'best cut: gain', by the same rule as every other table."""
    s = summary[(summary["baseline"].fillna("") == "") & (summary["probe"] == probe)]
    grouped = {m for members in groups.values() for m in members}
    cells: dict[tuple[str, str], str] = {}
    order: list[str] = []
    for r in s.itertuples():
        if r.model in grouped:
            continue
        cells[(r.model, r.task)] = (f"{r.best_cut}: "
                                    f"{short_gain(r.gain, r.gain_ci_low, r.gain_ci_high, r.clear_gain, r.gain_verdict)}"
                                    if getattr(r, "enough_data", True) is not False else NOT_ENOUGH)
        order.append(r.model)
    for r in seed_rows[seed_rows["probe"] == probe].itertuples():
        cells[(r.design, r.task)] = (f"{seed_cuts(r.best_cuts)}: "
                                     f"{short_gain(r.gain_mean, r.gain_ci_low, r.gain_ci_high, r.clear_gain)}")
        order.append(r.design)
    tasks = list(dict.fromkeys(s["task"]))
    rows = list(dict.fromkeys(order))
    return pd.DataFrame([[cells.get((m, t), "") for t in tasks] for m in rows], index=pd.Index(rows, name="model"),
                        columns=tasks)


def short_gain(gain: float, lo: float, hi: float, clear: bool, verdict: str | None = None) -> str:
    """A grid cell: the gain and its interval when clear, else 'no clear gain' or 'borderline' (the numbers are in
    the table above)."""
    return gain_text(gain, lo, hi, clear, verdict=verdict, style="short")


def task_frame(summary: pd.DataFrame, seed_rows: pd.DataFrame, groups: dict[str, list[str]], task: str,
               probe: str) -> pd.DataFrame:
    """One task: a row per model (and per seed group), every number with its interval."""
    grouped = {m for members in groups.values() for m in members}
    s = summary[(summary["task"] == task) & (summary["probe"] == probe) & ~summary["model"].isin(grouped)]
    out = results.summary_frame(s, by="model").drop(columns=["task"], errors="ignore")
    rows = []
    for r in seed_rows[(seed_rows["task"] == task) & (seed_rows["probe"] == probe)].itertuples():
        rows.append({"model": r.design, "best cut (validation)": seed_cuts(r.best_cuts),
                     "accuracy there [95% CI]": f"{r.best_accuracy_mean:.3f} ± {r.best_accuracy_sd:.3f} (mean ± sd)",
                     "last cut": f"mean {r.last_accuracy_mean:.3f}", "guillotine gain": seed_gain_cell(r)})
    return pd.concat([out, pd.DataFrame(rows)], ignore_index=True).fillna("")


def seed_cuts(cuts: list[str]) -> str:
    """'layer4 (3/3 seeds)', or each cut with its count when the seeds disagree."""
    counts = pd.Series(cuts).value_counts()
    return ", ".join(f"{c} ({n}/{len(cuts)} seeds)" for c, n in counts.items())


def seed_gain_cell(r) -> str:
    """Mean over seeds of the gain with the t interval of the mean, and the sd; 'no clear gain' when it contains 0."""
    return seeds_gain_text(r.gain_mean, r.gain_sd, r.n_seeds, r.gain_ci_low, r.gain_ci_high, r.clear_gain)


def seed_frame(seed_rows: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "design": seed_rows["design"], "task": seed_rows["task"], "probe": seed_rows["probe"],
        "seeds": seed_rows["n_seeds"], "best cut per seed": [", ".join(c) for c in seed_rows["best_cuts"]],
        "best accuracy (mean ± sd)": [f"{m:.3f} ± {s:.3f}" for m, s in zip(seed_rows["best_accuracy_mean"],
                                                                          seed_rows["best_accuracy_sd"])],
        "gain, mean ± sd (pts)": [f"{pts(m)} ± {100 * s:.1f}" for m, s in zip(seed_rows["gain_mean"], seed_rows["gain_sd"])],
        "95% t interval of the mean": [f"[{pts(lo)}, {pts(hi)}]" for lo, hi in
                                       zip(seed_rows["gain_ci_low"], seed_rows["gain_ci_high"])],
        "verdict": ["clear gain" if c else "no clear gain" for c in seed_rows["clear_gain"]],
        "gain per seed (pts)": [", ".join(pts(g) for g in gs) for gs in seed_rows["gains"]],
    })


def show_compare(record: SweepResult, key: str, current_config_json: str | None) -> None:
    if not results.run_notes(record, current_config_json):
        return
    summary = record.summary
    view = seed_view(record.table, summary, {m: record.cards.get(m) for m in record.models})
    groups, agg, seed_rows = view.groups, view.table, view.seeds
    tasks, probe = results.pick_view(record, key, all_tasks=False)
    fig = accuracy_vs_depth(results.view_of(agg, tasks, probe), title=f"Task: {tasks[0]}", summary=view.summary,
                            selector=False)
    fig.update_layout(height=CHART_HEIGHT, margin=dict(t=50, b=40, l=60, r=10))
    mark_seed_groups(fig, groups)
    st.plotly_chart(fig, key=f"{key}:chart", width="stretch")
    st.caption("One line per model; x is each model's cut depth in forward order. ★ the best cut chosen on validation, "
               "the number beside it the guillotine gain when its interval excludes 0."
               + (f" Seed groups ({', '.join(groups)}): the line is the mean over seeds and the band spans them "
                  "(min to max); the star sits at the best mean validation accuracy." if groups else ""))
    results.run_stats(record)
    st.subheader(f"Best cut and guillotine gain per model, task {tasks[0]}")
    st.table(task_frame(summary, seed_rows, groups, tasks[0], probe), hide_index=True, border="horizontal")
    with st.expander("All tasks at a glance (best cut: guillotine gain, pts [95% CI])"):
        st.dataframe(best_cut_grid(summary, seed_rows, groups, probe), width="stretch", key=f"{key}:grid")
    if groups:
        st.markdown("**Seeds of one design** (mean ± sd over seeds of each seed's own validation-selected gain; "
                    "Student-t interval of the mean; the same table as `gr-explorer compare`):")
        st.table(seed_frame(seed_rows[seed_rows["probe"] == probe]), hide_index=True, border="horizontal")
    show_cka(record, key)
    with st.expander("Every model (and baseline): best cut, gain and references"):
        st.dataframe(results.summary_frame(summary, by="model"), hide_index=True, width="stretch", key=f"{key}:summary")
    with st.expander("Results table"):
        st.dataframe(record.table.drop(columns=MEMORY_COLUMNS, errors="ignore"), hide_index=True,
                     width="stretch", key=f"{key}:table")

    def html() -> str:
        figs = []
        for task in dict.fromkeys(agg["task"]):
            f = accuracy_vs_depth(agg[agg["task"] == task], title=f"Task: {task}", summary=view.summary, selector=False)
            figs.append(mark_seed_groups(f, groups))
        parts = [f.to_html(include_plotlyjs=(i == 0), full_html=False) for i, f in enumerate(figs)]
        return ("<html><head><meta charset='utf-8'><title>gr-explorer comparison</title></head><body>" + "".join(parts)
                + "</body></html>")

    results.downloads(record, html, key, slug(f"compare_{record.table['dataset'].iloc[0].split('/')[-1]}"))


def show_cka(record: SweepResult, key: str) -> None:
    """Linear CKA between two of the compared models at each depth, from the features the sweep extracted."""
    feats = record.base_features()
    names = [m for m in record.models if m in feats]
    if len(names) < 2:
        return
    st.subheader("How alike are two models, cut by cut?")
    c1, c2 = st.columns(2)
    a = c1.selectbox("Model A", names, index=0, key=f"{key}:cka_a")
    b = c2.selectbox("Model B", [n for n in names if n != a], index=0, key=f"{key}:cka_b")
    memo = st.session_state.setdefault(f"{key}:cka_pairs:{id(record)}", {})
    if (a, b) not in memo:
        (cuts_a, fa), (cuts_b, fb) = feats[a], feats[b]
        memo[(a, b)] = cka_between_models(a, cuts_a, fa, b, cuts_b, fb, pairing="depth", device=resolve_device("cpu"))
    st.plotly_chart(cka_by_depth(memo[(a, b)]), key=f"{key}:cka", width="stretch")
    st.caption("Linear CKA of the two models' train features at cuts of equal depth (same images): 1 means the same "
               "representation up to a rotation and a scale. Depth pairs the same place only when the architectures "
               "match.")

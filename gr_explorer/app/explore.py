"""Explore page: one model, one dataset, every cut -> accuracy vs depth."""

from __future__ import annotations

import streamlit as st

from ..errors import GRExplorerError
from ..config import SweepConfig
from . import results, widgets

def settings() -> SweepConfig | None:
    """The sidebar: everything a sweep needs. Returns the config, or None (with the reason shown)."""
    st.header("Model")
    spec, weights = widgets.pick_model("ex")
    st.header("Data")
    dataset, tasks = widgets.pick_dataset("ex")
    st.header("Probing")
    run = widgets.pick_run_settings("ex")
    cuts = None
    model = widgets.load_for_ui(spec, weights, run["readout"], run["device"]) if spec else None
    if model is not None:
        cuts = widgets.pick_cuts("ex", model)
    if model is None or not dataset or not tasks or cuts == []:
        return None
    if not run["probes"]:
        st.warning("Pick at least one probe.")
        return None
    try:
        return SweepConfig(models=[spec], dataset=dataset, tasks=tasks, cuts=cuts, weights=weights, **run)
    except GRExplorerError as e:
        widgets.show_error(e)
        return None


def render() -> None:
    st.title("Explore: where should you cut?")
    st.markdown("Probe **every cut** of a self-supervised network — backbone stages, the pooled backbone output and "
                "each projector layer — and see which one transfers best to each task. "
                "See **About** for how to read the plots.")
    with st.sidebar:
        config = settings()
    results.sweep_flow("explore", "ex", config, title="Sweep", button="Run", show=results.show_explore,
                       empty_hint="Pick a model, a dataset and its tasks in the sidebar, then press **Run**. The default "
                                  "(zoo:simclr on shapes, all cuts, linear probe) takes well under a minute on a CPU.")

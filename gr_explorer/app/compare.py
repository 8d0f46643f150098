"""Compare page: several models on one dataset, one accuracy-vs-depth chart per task."""

from __future__ import annotations

import streamlit as st

from ..errors import GRExplorerError
from ..config import SweepConfig
from . import results, widgets
from .state import kept

#: the zoo's projector-design variants of SimCLR: the demo comparison when shipped
PROJECTOR_VARIANTS = ("zoo:simclr_proj_none", "zoo:simclr_proj1", "zoo:simclr", "zoo:simclr_proj3_wide")


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
    default = default_models(specs)
    chosen = kept(st.multiselect, "Models", key="cmp_models", options=specs, default=default,
                  format_func=lambda s: models[s]["label"],
                  help="Shipped checkpoints (e.g. the projector-design or objective variants of the zoo) and the "
                       "models trained or uploaded in this session.")
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
    run = widgets.pick_run_settings("cmp")
    if not specs:
        st.warning("Pick at least one model.")
        return None
    ok = True
    for spec in specs:  # load now: a bad spec is reported here, next to the inputs, not after a long run
        ok &= widgets.load_for_ui(spec, None, run["readout"], run["device"]) is not None
    if not ok or not dataset or not tasks:
        return None
    if not run["probes"]:
        st.warning("Pick at least one probe.")
        return None
    try:
        return SweepConfig(models=specs, dataset=dataset, tasks=tasks, **run)
    except GRExplorerError as e:
        widgets.show_error(e)
        return None


def render() -> None:
    st.title("Compare models")
    st.markdown("Several models on the same data: where does each one keep the information a task needs, and how "
                "much does cutting off its projector gain? Every cut of every model is probed; the x axis is the "
                "cut depth of each model, in forward order.")
    with st.sidebar:
        config = settings()
    results.sweep_flow("compare", "cmp", config, title="Comparison", button="Run comparison", show=results.show_compare,
                       empty_hint="Pick two or more models in the sidebar and press **Run comparison**.")

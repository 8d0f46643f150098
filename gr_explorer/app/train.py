"""Train page: the what-if experiment. Change the objective, projector or augmentations, train, then probe.

The run is the library's `training.train(TrainConfig, progress, should_stop)`;
the checkpoint it writes is probed like a shipped one (`file:<path>`), appears
in Explore and Compare for this session, and can be downloaded.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from ..data import dataset_tasks
from ..errors import GRExplorerError
from ..progress import ProgressEvent
from ..files import slug
from ..uploads import checkpoint_archive, publish_trained
from . import resources, widgets
from .jobs import Job, follow, is_cancel
from .roots import data_roots
from .state import add_session_model, kept, preset, session_id, session_models

JOB, LAST, ERROR = "train:job", "train:last", "train:error"


def _objectives() -> dict:
    from ..training import OBJECTIVES

    return OBJECTIVES


TRAINED_FOLDER = "trained"


def out_name(name: str) -> str:
    """The checkpoint's file name, as the card and the shown command record it (no server folder)."""
    return f"{slug(name, default='model')}.safetensors"


def work_path(name: str) -> Path:
    """Where training writes: trained/.work/<session>/ in the data root; published under its digest when done."""
    return data_roots().folder(TRAINED_FOLDER) / ".work" / session_id() / out_name(name)


#: TrainConfig fields that are not part of a recipe (where and how this run is written and evaluated)
NOT_RECIPE = ("out", "description", "eval", "eval_n_train", "eval_n_test", "eval_seed", "eval_tasks", "device",
              "save_dtype", "time_budget")
DEFAULTS_RECIPE = "TrainConfig defaults"
#: widget key -> (TrainConfig field, how a card value becomes the widget value)
WIDGETS = {
    "tr_objective": ("objective", str), "tr_dataset": ("dataset", str), "tr_n_train": ("n_train", int),
    "tr_epochs": ("epochs", int), "tr_width": ("width", int), "tr_depths": ("depths", lambda v: ",".join(map(str, v))),
    "tr_projector": ("projector", str), "tr_norm": ("projector_norm", str), "tr_act": ("projector_act", str),
    "tr_crop": ("crop_scale", lambda v: float(v[0])), "tr_flip": ("flip_p", float), "tr_jitter": ("color_jitter", float),
    "tr_jitter_p": ("color_jitter_p", float), "tr_gray": ("gray_p", float), "tr_blur": ("blur_p", float),
    "tr_batch": ("batch_size", int), "tr_lr": ("lr", float), "tr_seed": ("seed", int), "tr_p": ("p", float),
}


def recipes() -> dict[str, dict]:
    """'TrainConfig defaults' plus the training config recorded in each zoo card: what-ifs start from a shipped model."""
    from ..models import read_card, zoo_dir

    out = {DEFAULTS_RECIPE: {}}
    for name in resources.zoo_entries():
        try:
            cfg = read_card(zoo_dir() / f"{name}.safetensors").get("config")
        except GRExplorerError:
            continue
        if isinstance(cfg, dict) and cfg.get("objective"):
            out[f"zoo:{name}"] = {k: v for k, v in cfg.items() if k not in NOT_RECIPE}
    return out


def apply_recipe(recipe: dict) -> None:
    """Put a recipe's values into the widgets (before they are drawn in this run)."""
    from ..training import TrainConfig

    full = {**TrainConfig().as_dict(), **recipe}
    for key, (field_name, convert) in WIDGETS.items():
        value = full.get(field_name)
        if value is None:
            continue
        preset(key, convert(value))
    if full.get("label_task") and full.get("dataset"):
        preset(f"tr_label_task::{full['dataset']}", full["label_task"])


def settings():
    """Widgets -> TrainConfig (or None with the reason shown)."""
    from ..training import TrainConfig

    ss = st.session_state
    defaults = TrainConfig()
    objectives = _objectives()
    st.header("Objective and data")
    options = recipes()
    names = list(options)
    start = "zoo:simclr" if "zoo:simclr" in options else names[0]
    recipe_name = kept(st.selectbox, "Start from the recipe of", key="tr_recipe", options=names, index=names.index(start),
                       help="The training settings recorded in a shipped model's card: change one thing and compare "
                            "the result with that model. Settings not shown here (e.g. the temperature) come from it too.")
    if ss.get("_tr_applied") != recipe_name:
        apply_recipe(options[recipe_name])
        ss["_tr_applied"] = recipe_name
    base = options[recipe_name]
    name = kept(st.text_input, "Model name", key="tr_name", value="my-simclr",
                help="The checkpoint's file name; the model shows up as 'trained: <name>' in Explore and Compare.")
    objective = kept(st.selectbox, "Objective", key="tr_objective", options=list(objectives),
                     index=list(objectives).index("simclr") if "simclr" in objectives else 0,
                     help="simclr / vicreg / byol / barlow: self-supervised. supervised: a classifier on a label "
                          "task. label_aligned: SimCLR whose positive pairs are (partly) two images of one class.")
    kinds = widgets.named_datasets()
    dataset = kept(st.selectbox, "Dataset", key="tr_dataset", options=kinds, index=kinds.index("shapes") if "shapes" in kinds else 0)
    label_task, p = None, defaults.p
    if objectives[objective].needs_labels:
        try:
            tasks = dataset_tasks(dataset)
        except GRExplorerError as e:
            widgets.show_error(e)
            return None
        label_task = kept(st.selectbox, "Label task", key=f"tr_label_task::{dataset}", options=tasks, index=0)
        if objective == "label_aligned":
            p = kept(st.slider, "Same-class positive pairs (p)", key="tr_p", min_value=0.0, max_value=1.0,
                     value=float(defaults.p), step=0.05,
                     help="0 = plain SimCLR pairs; 1 = every positive pair is two images of the same class.")
    n_train = kept(st.number_input, "Training images", key="tr_n_train", min_value=2, value=int(defaults.n_train or 8000),
                   step=1000)
    epochs = kept(st.number_input, "Epochs", key="tr_epochs", min_value=1, value=int(defaults.epochs), step=1)
    st.header("Network")
    widths = sorted({8, 16, 32, 64, int(ss.get("tr_width", defaults.width))})
    width = kept(st.select_slider, "Backbone width (SmallResNet)", key="tr_width", options=widths,
                 value=int(defaults.width))
    depths = kept(st.text_input, "Blocks per stage", key="tr_depths", value=",".join(map(str, defaults.depths)),
                  help="Comma-separated, one number per stage, e.g. 1,1,1,1.")
    projector = kept(st.text_input, "Projector", key="tr_projector", value=defaults.projector,
                     help="Widths joined by '-', the last is the output the loss sees, e.g. 512-512-128, 2048-128, "
                          "or 'none'. Deeper / wider projectors move the best cut further from the output.")
    norm = kept(st.selectbox, "Projector norm", key="tr_norm", options=["bn", "ln", "none"], index=0)
    act = kept(st.selectbox, "Projector activation", key="tr_act", options=["relu", "gelu"], index=0)
    st.header("Augmentations")
    crop_min = kept(st.slider, "Random crop: smallest area", key="tr_crop", min_value=0.05, max_value=1.0,
                    value=float(defaults.crop_scale[0]), step=0.05, help="1.0 switches cropping off.")
    flip = kept(st.slider, "Horizontal flip probability", key="tr_flip", min_value=0.0, max_value=1.0,
                value=float(defaults.flip_p), step=0.05, help="Teaches left/right invariance (the shapes `light` task).")
    jitter = kept(st.slider, "Colour jitter strength", key="tr_jitter", min_value=0.0, max_value=1.5,
                  value=float(defaults.color_jitter), step=0.1, help="0 = off; SimCLR uses 0.8. Removes colour.")
    jitter_p = kept(st.slider, "Colour jitter probability", key="tr_jitter_p", min_value=0.0, max_value=1.0,
                    value=float(defaults.color_jitter_p), step=0.05)
    gray = kept(st.slider, "Grayscale probability", key="tr_gray", min_value=0.0, max_value=1.0,
                value=float(defaults.gray_p), step=0.05)
    blur = kept(st.slider, "Blur probability", key="tr_blur", min_value=0.0, max_value=1.0,
                value=float(defaults.blur_p), step=0.05)
    with st.expander("Optimisation"):
        batch = kept(st.number_input, "Batch size", key="tr_batch", min_value=2, value=int(defaults.batch_size), step=32)
        lr = kept(st.number_input, "Learning rate", key="tr_lr", min_value=1e-6, value=float(defaults.lr), format="%.4g")
        max_steps = kept(st.number_input, "Max steps (0 = all epochs)", key="tr_max_steps", min_value=0, value=0, step=10)
        seed = kept(st.number_input, "Seed", key="tr_seed", min_value=0, value=int(defaults.seed), step=1)
        device = kept(st.selectbox, "Device", key="tr_device", options=widgets.devices(), index=0)
    try:
        depth_list = tuple(int(d) for d in depths.split(",") if d.strip())
    except ValueError:
        st.error(f"Blocks per stage {depths!r} is invalid. Valid: comma-separated integers, e.g. 1,1,1,1.")
        return None
    try:
        crop_max = float((base.get("crop_scale") or defaults.crop_scale)[1])
        chosen = dict(objective=objective, dataset=dataset, n_train=int(n_train), label_task=label_task, p=float(p),
                      width=int(width), depths=depth_list, projector=projector.strip() or "none",
                      projector_norm=norm, projector_act=act, crop_scale=(float(crop_min), max(crop_max, float(crop_min))),
                      flip_p=float(flip), color_jitter=float(jitter), color_jitter_p=float(jitter_p), gray_p=float(gray),
                      blur_p=float(blur), batch_size=int(batch), epochs=int(epochs), lr=float(lr),
                      max_steps=int(max_steps) or None, seed=int(seed), device=device, out=out_name(name))
        config = TrainConfig.from_dict({**base, **chosen})
        config.validate()
        from ..models import parse_projector_spec

        parse_projector_spec(config.projector)
    except GRExplorerError as e:
        widgets.show_error(e)
        return None
    return config


def start_training(config) -> Job:
    """Train `config` (its `out` a bare file name) in a Job; the checkpoint lands under trained/<digest>/."""
    from ..training import train
    from ..training.loop import plan

    total = 0
    try:
        total = plan(config, int(config.n_train))[2] if config.n_train else 0
    except GRExplorerError:
        pass

    def work(job: Job):
        job.progress(ProgressEvent("load", 0, 1, "", f"loading {config.dataset} and building the model"))

        def progress(step: int, epoch: int, loss: float) -> None:
            job.progress(ProgressEvent("train", step, max(total, step), "", f"epoch {epoch + 1}, loss {loss:.4f}"))
            job.add_point(loss)

        res = train(replace(config, out=str(work_path(config.out.removesuffix(".safetensors")))), progress=progress,
                    should_stop=job.should_stop)
        res.path = publish_trained(res.path, data_roots().folder(TRAINED_FOLDER), config.out)
        return res

    # Stop must not abort: train() polls should_stop after each step and still saves the checkpoint.
    return Job("Training", work, meta={"config": config}, raise_on_stop=False, detach_after=None).start()


def loss_figure(losses: list[float]) -> go.Figure:
    fig = go.Figure(go.Scatter(x=list(range(1, len(losses) + 1)), y=losses, mode="lines", name="loss",
                               hovertemplate="step %{x}<br>loss %{y:.4f}<extra></extra>"))
    fig.update_layout(title="Training loss", xaxis_title="step", yaxis_title="loss", template="plotly_white",
                      height=320, margin=dict(t=40, b=40, l=50, r=20))
    return fig


def _draw_series(slot, values: list[float]) -> None:
    if values:
        slot.plotly_chart(loss_figure(values), width="stretch")


def collect(job: Job, snap) -> None:
    ss = st.session_state
    if snap.error is not None and not is_cancel(snap.error):
        ss[ERROR] = snap.error
        return
    if job.detached or snap.result is None:
        ss[ERROR] = snap.error
        return
    res = snap.result
    spec = resources.visible_file_spec(res.path, data_roots())
    add_session_model(spec, label=f"trained: {res.path.stem} ({res.path.parent.name[:8]})",
                      description=str(res.card.get("description", "")), kind="trained", path=res.path)
    ss[LAST] = {"spec": spec, "path": str(res.path), "losses": list(res.losses), "steps": res.steps,
                "seconds": res.seconds, "stopped_early": res.stopped_early,
                "command": job.meta["config"].to_command(), "description": res.card.get("description", "")}
    ss[ERROR] = None


def use_in(page: str, spec: str) -> None:
    """Preselect a trained model on Explore / Compare."""
    if page == "explore":
        preset("ex_source", widgets.SOURCES[0])
        preset("ex_model", spec)
    else:
        chosen = list(st.session_state.get("_kept:cmp_models") or [])
        preset("cmp_models", list(dict.fromkeys([*chosen, spec])))


def show_last(last: dict) -> None:
    name = Path(last["path"]).stem
    state = "stopped early" if last["stopped_early"] else "finished"
    st.success(f"**trained: {name}** {state}: {last['steps']} steps in {last['seconds']:.1f} s. "
               "It is now in the model lists of Explore and Compare (this session only).", icon=":material/check_circle:")
    if last["losses"]:
        st.plotly_chart(loss_figure(last["losses"]), key="tr_loss_final", width="stretch")
    c1, c2, c3 = st.columns(3)
    if c1.button("Probe it in Explore", key="tr_to_explore", icon=":material/insights:", type="primary"):
        use_in("explore", last["spec"])
        st.switch_page(_page("explore"))
    if c2.button("Add it to Compare", key="tr_to_compare", icon=":material/stacked_line_chart:"):
        use_in("compare", last["spec"])
        st.switch_page(_page("compare"))
    c3.download_button("Download checkpoint (.zip)", data=lambda p=last["path"]: checkpoint_archive(p),
                       file_name=f"{name}.zip", mime="application/zip", key="tr_download", on_click="ignore",
                       icon=":material/download:", help="<name>.safetensors + <name>.json: load it with file:<path> "
                                                        "or drop it in pretrained/ to make it a zoo model.")
    st.caption("The same run from a terminal:")
    st.code(last["command"], language="bash")


def _page(name: str) -> str:
    return f"gr_explorer/app/pages/{name}.py"  # relative to streamlit_app.py


def trained_list() -> None:
    trained = {s: i for s, i in session_models().items() if i["kind"] == "trained"}
    if not trained:
        return
    st.subheader("Trained in this session")
    for spec, info in trained.items():
        c1, c2 = st.columns([4, 1])
        c1.markdown(f"**{info['label']}** — {info['description']}")
        if info.get("path") and Path(info["path"]).exists():
            c2.download_button("Download", data=lambda p=info["path"]: checkpoint_archive(p),
                               file_name=f"{Path(info['path']).stem}.zip", mime="application/zip",
                               key=f"tr_dl::{spec}", on_click="ignore", icon=":material/download:")


def render() -> None:
    ss = st.session_state
    st.title("Train: what if?")
    st.markdown("Train a small network with your own choice of objective, projector and augmentations (sidebar), "
                "then probe it in **Explore** or **Compare**. Start from a shipped model's recipe and change one thing: "
                "without colour jitter and grayscale, `color` should survive to the projector output; a deeper "
                "projector should move the best cut further from the output. A shipped recipe takes 2-3 minutes on "
                "2 CPU cores; fewer epochs or images are faster.")
    with st.sidebar:
        config = settings()
    job = ss.get(JOB)
    busy = job is not None and job.running and not job.detached
    c1, c2 = st.columns([1, 5], vertical_alignment="center")
    clicked = c1.button("Train", type="primary", key="tr_run", disabled=config is None or busy, width="stretch",
                        icon=":material/model_training:")
    if config is not None:
        c2.caption(plan_text(config) + " The same run from a terminal:")
        st.code(config.to_command(), language="bash", wrap_lines=True)
    else:
        c2.caption("Complete the settings in the sidebar.")
    if clicked and config is not None and not busy:
        ss[JOB] = job = start_training(config)
        ss[ERROR] = None
    if job is not None and not job.collected:
        snap = follow(job, key="tr_job", on_series=_draw_series, cancel_label="Stop",
                      cancel_help="End training after the current step; the checkpoint is still saved.")
        job.collected = True
        collect(job, snap)
        st.rerun()
    err = ss.get(ERROR)
    if err is not None:
        if is_cancel(err):
            st.warning("Training stopped.")
        else:
            widgets.show_error(err)
    last = ss.get(LAST)
    if last is not None:
        show_last(last)
    trained_list()


def plan_text(config) -> str:
    from ..training.loop import plan

    if not config.n_train:
        return ""
    try:
        bs, per_epoch, total = plan(config, int(config.n_train))
    except GRExplorerError:
        return ""
    return f"{total} steps of {bs} images ({per_epoch} per epoch)."

"""Train page: the what-if experiment. Change the objective, projector or augmentations, train, then probe.

The run is the library's `training.train(TrainConfig, progress, should_stop)`;
the checkpoint it writes is probed like a shipped one (`file:<path>`), appears
in Explore and Compare for this session, and can be downloaded. With live
probes on, every cut is probed every N epochs and the charts grow while it
trains (train_live.py). Designs can be queued: one job trains them one after
the other (the server's cores are shared, two trainings at once would each run
at half speed), each with its own live charts, side by side.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from ..data import dataset_tasks
from ..errors import GRExplorerError
from ..files import slug
from ..models import read_card, zoo_dir
from ..names import LABELLED_OBJECTIVES
from ..progress import ProgressEvent, duration_text
from ..training import TrainConfig, train
from ..training.live import read_probes
from ..training.loop import check_train_memory, plan, time_training
from ..uploads import checkpoint_archive, publish_trained
from . import fields, resources, train_live, widgets
from .jobs import Job, follow, is_cancel
from .limits import limits
from .roots import data_roots
from .state import add_session_model, kept, preset, session_alive, session_id, session_models

JOB, LAST, ERROR = "train:job", "train:last", "train:error"
#: designs queued while no training runs (Train runs them), and the designs the last job trained
QUEUE, DONE = "train:queue", "train:done"


TRAINED_FOLDER = "trained"


def out_name(name: str) -> str:
    """The checkpoint's file name, as the card and the shown command record it (no server folder)."""
    return f"{slug(name, default='model')}.safetensors"


def work_path(name: str) -> Path:
    """Where training writes: trained/.work/<session>/ in the data root; published under its digest when done."""
    return data_roots().folder(TRAINED_FOLDER) / ".work" / session_id() / out_name(name)


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

    out = {DEFAULTS_RECIPE: {}}
    for name in resources.zoo_entries():
        try:
            cfg = read_card(zoo_dir() / f"{name}.safetensors").get("config")
        except GRExplorerError:
            continue
        if isinstance(cfg, dict) and cfg.get("objective"):
            out[f"zoo:{name}"] = {k: v for k, v in cfg.items() if k not in TrainConfig.not_recipe()}
    return out


def apply_recipe(recipe: dict) -> None:
    """Put a recipe's values into the widgets (before they are drawn in this run)."""
    full = {**TrainConfig.defaults(), **recipe}
    for key, (field_name, convert) in WIDGETS.items():
        value = full.get(field_name)
        if value is None:
            continue
        preset(key, convert(value))
    if full.get("label_task") and full.get("dataset"):
        preset(f"tr_label_task::{full['dataset']}", full["label_task"])


def settings() -> TrainConfig | None:
    """Widgets -> TrainConfig (or None with the reason shown); every widget reads its declaration (app/fields.py)."""
    st.header("Objective and data")
    base = pick_recipe()
    name = kept(st.text_input, "Model name", key="tr_name", value="my-simclr",
                help="The checkpoint's file name; the model shows up as 'trained: <name>' in Explore and Compare.")
    chosen = {"out": out_name(name), **objective_and_data()}
    if chosen.get("dataset") is None:
        return None
    st.header("Network")
    chosen.update(network())
    st.header("Augmentations")
    chosen.update(augmentations(base))
    with st.expander("Optimisation"):
        chosen.update(optimisation())
    st.header("Live probes")
    chosen.update(live_probes())
    if chosen.get("depths") is None:
        return None
    try:
        config = TrainConfig.from_dict({**base, **chosen})
        check_train_memory(config)
        return config
    except GRExplorerError as e:
        widgets.show_error(e)
        return None


def pick_recipe() -> dict:
    """The recipe the widgets start from (applied to the widgets when it changes)."""
    ss = st.session_state
    options = recipes()
    names = list(options)
    start = "zoo:simclr" if "zoo:simclr" in options else names[0]
    recipe_name = kept(st.selectbox, "Start from the recipe of", key="tr_recipe", options=names, index=names.index(start),
                       help="The training settings recorded in a shipped model's card: change one thing and compare "
                            "the result with that model. Settings not shown here (e.g. the temperature) come from it too.")
    if ss.get("_tr_applied") != recipe_name:
        apply_recipe(options[recipe_name])
        ss["_tr_applied"] = recipe_name
    return options[recipe_name]


def objective_and_data() -> dict:
    objective = fields.choice(TrainConfig, "objective", key="tr_objective")
    kinds = widgets.named_datasets()
    dataset = fields.choice(TrainConfig, "dataset", key="tr_dataset", options=kinds)
    out = {"objective": objective, "dataset": dataset, "label_task": None}
    if objective in LABELLED_OBJECTIVES:
        try:
            tasks = dataset_tasks(dataset)
        except GRExplorerError as e:
            widgets.show_error(e)
            return {"dataset": None}
        out["label_task"] = kept(st.selectbox, "Label task", key=f"tr_label_task::{dataset}", options=tasks, index=0)
        if objective == "label_aligned":
            out["p"] = fields.slider(TrainConfig, "p", key="tr_p", step=0.05)
    most = limits().max_images  # the server's cap (limits.py); Train checks it again
    out["n_train"] = fields.number(TrainConfig, "n_train", key="tr_n_train", step=1000, hi=most,
                                   extra_help=f"At most {most:,} on this server.")
    out["epochs"] = fields.number(TrainConfig, "epochs", key="tr_epochs", step=1)
    return out


def network() -> dict:
    ss = st.session_state
    widths = sorted({8, 16, 32, 64, int(ss.get("tr_width", TrainConfig.spec("width").default))})
    width = kept(st.select_slider, TrainConfig.spec("width").widget_label, key="tr_width", options=widths,
                 value=int(TrainConfig.spec("width").default), help=TrainConfig.spec("width").help)
    depths = kept(st.text_input, TrainConfig.spec("depths").widget_label, key="tr_depths",
                  value=",".join(map(str, TrainConfig.spec("depths").default)),
                  help="Comma-separated, one number per stage, e.g. 1,1,1,1.")
    try:
        depth_list = tuple(int(d) for d in depths.split(",") if d.strip())
    except ValueError:
        st.error(f"Blocks per stage {depths!r} is invalid. Valid: comma-separated integers, e.g. 1,1,1,1.")
        depth_list = None
    projector = kept(st.text_input, TrainConfig.spec("projector").widget_label, key="tr_projector",
                     value=TrainConfig.spec("projector").default,
                     help="Widths joined by '-', the last is the output the loss sees, e.g. 512-512-128, 2048-128, "
                          "or 'none'. Deeper / wider projectors move the best cut further from the output.")
    return {"width": int(width), "depths": depth_list, "projector": projector.strip() or "none",
            "projector_norm": fields.choice(TrainConfig, "projector_norm", key="tr_norm"),
            "projector_act": fields.choice(TrainConfig, "projector_act", key="tr_act")}


def augmentations(base: dict) -> dict:
    crop_min = fields.slider(TrainConfig, "crop_scale", key="tr_crop", step=0.05, label="Random crop: smallest area",
                             value=TrainConfig.spec("crop_scale").default[0], extra_help="1.0 switches cropping off.")
    crop_max = float((base.get("crop_scale") or TrainConfig.spec("crop_scale").default)[1])
    return {"crop_scale": (crop_min, max(crop_max, crop_min)),
            "flip_p": fields.slider(TrainConfig, "flip_p", key="tr_flip", step=0.05,
                                    extra_help="Teaches left/right invariance (the shapes `light` task)."),
            "color_jitter": fields.slider(TrainConfig, "color_jitter", key="tr_jitter", step=0.1, hi=1.5,
                                          extra_help="Removes colour."),
            "color_jitter_p": fields.slider(TrainConfig, "color_jitter_p", key="tr_jitter_p", step=0.05),
            "gray_p": fields.slider(TrainConfig, "gray_p", key="tr_gray", step=0.05),
            "blur_p": fields.slider(TrainConfig, "blur_p", key="tr_blur", step=0.05)}


def optimisation() -> dict:
    max_steps = fields.number(TrainConfig, "max_steps", key="tr_max_steps", step=10, zero_means_none=True,
                              label="Max steps (0 = all epochs)")
    return {"batch_size": fields.number(TrainConfig, "batch_size", key="tr_batch", step=32),
            "lr": fields.number(TrainConfig, "lr", key="tr_lr"),
            "max_steps": max_steps,
            "seed": fields.number(TrainConfig, "seed", key="tr_seed", step=1),
            "device": fields.choice(TrainConfig, "device", key="tr_device", options=widgets.devices())}


def live_probes() -> dict:
    """Probe every cut while training (training/live.py); the widgets read TrainConfig's declarations."""
    every = fields.number(TrainConfig, "probe_every", key="tr_probe_every", step=1, zero_means_none=True,
                          label="Probe every N epochs (0 = off)",
                          extra_help="Each probe step sweeps every cut with linear probes on held-out images: the "
                                     "Train page then draws accuracy vs depth and the guillotine gain as they form.")
    if every is None:
        return {"probe_every": None}
    return {"probe_every": every,
            "probe_n_train": fields.number(TrainConfig, "probe_n_train", key="tr_probe_n_train", step=100),
            "probe_n_test": fields.number(TrainConfig, "probe_n_test", key="tr_probe_n_test", step=100)}


def design_label(config: TrainConfig, number: int) -> str:
    """How a queued design is named on the page and in the charts: its place in the queue and its model name."""
    return f"{number}: {config.out.removesuffix('.safetensors')}"


def _train_one(job: Job, config: TrainConfig, label: str) -> dict:
    total = 0
    try:
        total = plan(config, int(config.n_train))[2] if config.n_train else 0
    except GRExplorerError:
        pass
    job.progress(ProgressEvent("load", 0, 1, "", f"{label}: loading {config.dataset} and building the model"))

    def progress(step: int, epoch: int, loss: float) -> None:
        job.progress(ProgressEvent("train", step, max(total, step), "", f"{label}, epoch {epoch + 1}, loss {loss:.4f}"))
        job.add_point(loss)

    def on_probe(table, summary) -> None:
        job.add_record({"label": label, "table": table, "summary": summary})

    res = train(replace(config, out=str(work_path(config.out.removesuffix(".safetensors")))), progress=progress,
                should_stop=job.should_stop, on_probe=on_probe)
    res.path = publish_trained(res.path, data_roots().folder(TRAINED_FOLDER), config.out)
    return {"label": label, "config": config, "result": res}


def start_training(configs: list[TrainConfig]) -> Job:
    """Train the designs `configs` (each `out` a bare file name) one after the other in one Job; each checkpoint
    lands under trained/<digest>/. More designs can be queued while it runs (`queue_design`).

    The server's limits (limits.py) are checked first for every design (ResourceError: nothing starts); the job
    stops, and still saves, at its time limit."""
    caps = limits()
    for config in configs:
        caps.check_training(config)

    def work(job: Job) -> list[dict]:
        meta, i = job.meta, 0
        while not job.should_stop():
            with meta["lock"]:
                if i >= len(meta["queue"]):
                    meta["closed"] = True  # a design queued from now on waits for the next Train
                    break
                config = meta["queue"][i]
            meta["finished"].append(_train_one(job, config, design_label(config, i + 1)))
            i += 1
        return meta["finished"]

    # Stop must not abort: train() polls should_stop after each step and still saves the checkpoint (marked
    # incomplete); the designs queued after it are not started. A closed tab stops it the same way (jobs.py), and so
    # does the server's time limit (for the whole queue: one job).
    meta = {"config": configs[0], "queue": list(configs), "finished": [], "lock": threading.Lock(), "closed": False}
    title = "Training" if len(configs) == 1 else f"Training {len(configs)} designs, one after the other"
    return Job(title, work, meta=meta, raise_on_stop=False, owner_alive=session_alive(),
               time_limit=caps.job_seconds).start()


def queue_design(config: TrainConfig) -> bool:
    """Queue a design (a button's callback, so the page drawn next counts it): after the running job's designs when
    one runs, else for the next Train. True when the running job took it."""
    try:
        limits().check_training(config)
    except GRExplorerError as e:  # beyond the server's limits: refused before it is queued
        st.session_state[ERROR] = e
        return False
    job = st.session_state.get(JOB)
    if job is not None and job.running:
        with job.meta["lock"]:
            if not job.meta["closed"]:
                job.meta["queue"].append(config)
                return True
    st.session_state.setdefault(QUEUE, []).append(config)
    return False


def queued_labels(job: Job | None) -> list[str]:
    if job is None:
        return [design_label(c, i + 1) for i, c in enumerate(st.session_state.get(QUEUE) or [])]
    with job.meta["lock"]:
        return [design_label(c, i + 1) for i, c in enumerate(job.meta["queue"])]


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
    """Every design the job finished joins the session's models (also when a later one failed or was stopped)."""
    ss = st.session_state
    ss[DONE] = []
    for done in job.meta["finished"]:
        res = done["result"]
        spec = resources.visible_file_spec(res.path, data_roots())
        incomplete = "" if res.card.get("complete", True) else ", incomplete"
        add_session_model(spec, label=f"trained: {res.path.stem} ({res.path.parent.name[:8]}{incomplete})",
                          description=str(res.card.get("description", "")), kind="trained", path=res.path)
        ss[LAST] = {"spec": spec, "path": str(res.path), "losses": list(res.losses), "steps": res.steps,
                    "seconds": res.seconds, "stopped_early": res.stopped_early, "label": done["label"],
                    "time_limit": limits().time_text() if job.timed_out and res.stopped_early else "",
                    "command": done["config"].to_command(), "description": res.card.get("description", "")}
        ss[DONE].append(ss[LAST])
    ss[ERROR] = snap.error if snap.error is not None or snap.result is None else None


def use_in(page: str, spec: str) -> None:
    """Preselect a trained model on Explore / Compare."""
    if page == "explore":
        preset("ex_source", widgets.SOURCES[0])
        preset("ex_model", spec)
    else:
        chosen = list(st.session_state.get("_kept:cmp_models") or [])
        preset("cmp_models", list(dict.fromkeys([*chosen, spec])))


def show_live(done: list[dict]) -> None:
    """The finished designs' live probe charts, from the files next to their checkpoints."""
    designs = {d["label"]: tables for d in done if (tables := read_probes(d["path"])) is not None}
    if not designs:
        return
    st.subheader("Live probes")
    st.caption(train_live.CAPTION)
    task = None
    if len(designs) > 1:
        tasks = list(dict.fromkeys(t for _, s in designs.values() for t in s["task"]))
        task = kept(st.segmented_control, "Overlay the designs' gains on", key="tr_overlay_task", options=tasks,
                    default=tasks[0]) or tasks[0]
    train_live.draw_designs(designs, "tr_done", task)


def show_outcome(last: dict) -> None:
    name = Path(last["path"]).stem
    if last["stopped_early"]:
        st.warning(f"**trained: {name}** was stopped after {last['steps']} steps ({last['seconds']:.1f} s). Its "
                   "checkpoint is marked incomplete: it is in the model lists of Explore and Compare (this session "
                   "only), and Compare never averages it with finished runs of the recipe.", icon=":material/warning:")
    else:
        st.success(f"**trained: {name}** finished: {last['steps']} steps in {last['seconds']:.1f} s. "
                   "It is now in the model lists of Explore and Compare (this session only).",
                   icon=":material/check_circle:")
    if last.get("time_limit"):
        st.warning(last["time_limit"], icon=":material/timer_off:")


def show_last(last: dict) -> None:
    name = Path(last["path"]).stem
    show_outcome(last)
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
                "projector should move the best cut further from the output. The time it takes on this server is "
                "estimated under the button from a few steps timed here; fewer epochs or images are faster.")
    with st.sidebar:
        config = settings()
    job = ss.get(JOB)
    busy = job is not None and job.running
    pending = ss.setdefault(QUEUE, [])
    c1, c2, c3 = st.columns([1.1, 1.5, 3.4], vertical_alignment="center")
    label = {0: "Train", 1: "Train the queued design"}.get(len(pending), f"Train {len(pending)} designs")
    clicked = c1.button(label, type="primary", key="tr_run",
                        disabled=(config is None and not pending) or busy, width="stretch",
                        icon=":material/model_training:")
    c2.button("Add to queue", key="tr_queue", disabled=config is None, width="stretch",
              icon=":material/playlist_add:", on_click=queue_design, args=(config,),
              help="Train these settings after the designs before them (one after the other: the server's "
                   "cores are shared). Their live probe charts are drawn side by side.")
    if config is not None:
        c3.caption(plan_text(config) + " " + time_text(config) + " The same run from a terminal:")
        st.code(config.to_command(), language="bash", wrap_lines=True)
    else:
        c3.caption("Complete the settings in the sidebar.")
    if clicked and not busy and (pending or config is not None):
        ss[ERROR] = None
        try:
            ss[JOB] = job = start_training(list(pending) or [config])
            ss[QUEUE] = []
        except GRExplorerError as e:  # beyond the server's limits: refused before anything runs
            ss[ERROR] = e
    labels = queued_labels(job if busy else None)
    if labels:
        q1, q2 = st.columns([5, 1], vertical_alignment="center")
        q1.caption(("Training, one after the other: " if busy else "Queued (Train runs them one after the other): ")
                   + " · ".join(labels))
        if not busy and q2.button("Clear the queue", key="tr_clear_queue", icon=":material/clear_all:"):
            ss[QUEUE] = []
            st.rerun()
    if job is not None and not job.collected:
        snap = follow(job, key="tr_job", on_series=_draw_series, cancel_label="Stop",
                      cancel_help="End training after the current step; the checkpoint is still saved. Designs "
                                  "queued after it are not started.",
                      on_records=lambda slot, records: train_live.draw_live(slot, records, queued_labels(job)))
        job.collected = True
        collect(job, snap)
        st.rerun()
    err = ss.get(ERROR)
    if err is not None:
        if is_cancel(err):
            st.warning("Training stopped.")
        else:
            widgets.show_error(err)
    show_live(ss.get(DONE) or [])
    for done in (ss.get(DONE) or [])[:-1]:  # the queue's earlier designs; the last one comes with its buttons
        show_outcome(done)
    last = ss.get(LAST)
    if last is not None:
        show_last(last)
    trained_list()


#: settings that change how many steps a run takes or what it learns, not what one step costs (the step time is
#: measured once per combination of all the others)
STEP_FREE = ("n_train", "data_seed", "epochs", "max_steps", "time_budget", "seed", "out", "description", "save_dtype",
             "eval", "eval_n_train", "eval_n_test", "eval_seed", "eval_tasks", "lr", "weight_decay", "warmup_epochs",
             "temperature", "p", "barlow_lambda", "sim_coeff", "std_coeff", "cov_coeff", "byol_tau", "probe_every",
             "probe_n_train", "probe_n_test", "probe_tasks")


@st.cache_data(ttl=600, max_entries=32, show_spinner="Timing a few training steps on this server ...")
def _timing(step_settings: str):
    return time_training(TrainConfig.from_dict(json.loads(step_settings)))


def time_text(config) -> str:
    """The run's expected time from its steps, its images and this server's timings, measured now (cached 10
    minutes): set-up + making the training images + the steps."""
    if not config.n_train:
        return ""
    try:
        _, _, total = plan(config, int(config.n_train))
        timing = _timing(json.dumps({k: v for k, v in config.as_dict().items() if k not in STEP_FREE}, sort_keys=True))
    except GRExplorerError:
        return ""
    images = timing.per_image * int(config.n_train)
    return (f"About {duration_text(timing.seconds(total, int(config.n_train)))} on this server: "
            f"{timing.per_step:.2f} s per step, {duration_text(images + timing.setup)} to make the images and set up, "
            "timed here just now (the time grows when other runs share the server).")


def plan_text(config) -> str:
    if not config.n_train:
        return ""
    try:
        bs, per_epoch, total = plan(config, int(config.n_train))
    except GRExplorerError:
        return ""
    return f"{total} steps of {bs} images ({per_epoch} per epoch)."

"""Input widgets shared by the pages: model, dataset and tasks, cuts, probes, baselines, diagnostics, run settings.

Every picker returns plain values that go straight into the library's
SweepConfig / TrainConfig; every widget starts from `SweepConfig.defaults()`
(the CLI's defaults), so the app never restates a default. Nothing here
computes results.
"""

from __future__ import annotations

import logging

import streamlit as st
import torch

from ..config import SweepConfig
from ..data import dataset_tasks, list_datasets
from ..errors import GRExplorerError
from ..limits import check_sweep
from ..models import Model
from ..names import DERIVED_TASKS, METRICS, READOUTS, label_of
from ..uploads import discard, store_checkpoint_upload
from . import fields, resources
from .limits import limits
from .roots import data_roots
from .state import add_session_model, kept, session_models

log = logging.getLogger("gr_explorer.app")

DEFAULTS = SweepConfig.defaults()
DEFAULT_MODEL = "zoo:simclr"
IMAGEFOLDER = resources.IMAGEFOLDER
UPLOADS_FOLDER = "uploads"
SOURCES = ("Zoo & this session", "timm", "Upload")
#: less empty space above the page title, so that a chart fits a 1280x720 projector under the run bar
COMPACT_CSS = "<style>[data-testid='stMainBlockContainer']{padding-top:2.6rem;}</style>"


# ----------------------------------------------------------------------------------------------
# errors


def show_error(e: BaseException, context: str = "") -> None:
    """The library's message (GRExplorerError) or a short line for anything unexpected; never a traceback.

    Every message passes through the data roots' redaction: no server path reaches the browser.
    """
    prefix = f"{context}: " if context else ""
    roots = data_roots()
    if isinstance(e, GRExplorerError):
        st.error(roots.redact(f"{prefix}{e}"), icon=":material/error:")
        return
    log.error("unexpected error%s", f" ({context})" if context else "", exc_info=e)
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if len(text) > 300:
        text = text[:300].rsplit(" ", 1)[0] + " ..."
    st.error(roots.redact(f"{prefix}Unexpected error ({type(e).__name__}){': ' + text if text else ''}. "
                          "The app is still usable; the details are in the server log."), icon=":material/error:")


def sweep_config(**settings) -> SweepConfig | None:
    """The SweepConfig of the sidebar's values, checked as the user types: its rules, and that its images fit in
    this server's memory (limits.check_sweep). None, with the library's message shown, when it is refused."""
    try:
        config = SweepConfig(**settings)
        check_sweep(config)
        return config
    except GRExplorerError as e:
        show_error(e)
        return None


def guarded(render) -> None:
    """Run a page; an unexpected error becomes a short st.error instead of Streamlit's traceback box.

    Streamlit's own control flow (rerun, stop, switch_page) derives from BaseException and passes through.
    """
    try:
        render()
    except Exception as e:  # noqa: BLE001
        show_error(e)


def compact_page() -> None:
    st.markdown(COMPACT_CSS, unsafe_allow_html=True)


# ----------------------------------------------------------------------------------------------
# models


def catalogue() -> dict[str, dict]:
    """spec -> {label, description} for the shipped zoo and this session's trained / uploaded models."""
    out: dict[str, dict] = {}
    try:
        zoo = resources.zoo_entries()
    except Exception as e:  # noqa: BLE001 -- a broken zoo folder must not take the page down
        show_error(e, "Listing the zoo")
        zoo = {}
    for name, desc in zoo.items():
        out[f"zoo:{name}"] = {"label": f"zoo:{name}", "description": desc}
    for spec, info in session_models().items():
        out[spec] = {"label": info["label"], "description": info["description"]}
    return out


def default_model(specs: list[str]) -> str | None:
    """zoo:simclr when shipped, else the first zoo entry, else the first model of the session."""
    if DEFAULT_MODEL in specs:
        return DEFAULT_MODEL
    zoo = [s for s in specs if s.startswith("zoo:")]
    return (zoo or specs or [None])[0]


def _short(text: str, n: int = 70) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def accept_upload(files) -> str | None:
    """Store an upload under the data root, load it once to check it; a refused checkpoint is deleted.

    Returns the visible spec (`file:uploads/<digest>/<name>.safetensors`), or None with the reason shown.
    """
    roots = data_roots()
    try:
        path = store_checkpoint_upload([(f.name, f.getvalue()) for f in files], roots.folder(UPLOADS_FOLDER))
    except GRExplorerError as e:
        show_error(e)
        return None
    spec = resources.visible_file_spec(path, roots)
    try:
        resources.get_model(SweepConfig(models=[spec]), spec)
    except Exception as e:  # noqa: BLE001 -- refused: nothing of it stays on the server
        discard(path)
        session_models().pop(spec, None)
        show_error(e)
        return None
    add_session_model(spec, label=f"uploaded: {path.stem} ({path.parent.name[:8]})",
                      description=f"uploaded checkpoint {path.name}", kind="uploaded")
    return spec


def pick_model(prefix: str) -> tuple[str | None, str | None]:
    """Model source + model -> (spec, timm weights). Shows an error and returns (None, None) when unusable."""
    source = kept(st.radio, "Model source", key=f"{prefix}_source", options=list(SOURCES), horizontal=True,
                  help="A checkpoint shipped in pretrained/ (or trained / uploaded in this session), any timm model, "
                       "or your own checkpoint file.")
    if source == "timm":
        name = kept(st.text_input, "timm model name", key=f"{prefix}_timm", value="",
                    placeholder="e.g. resnet18.a1_in1k or vit_small_patch16_224.dino",
                    help="Any timm model with forward_intermediates(). Pretrained weights come from the Hugging Face "
                         "hub (or the server's cache when it is offline).")
        options = ["pretrained", "random"]
        default = DEFAULTS["weights"] or "pretrained"
        weights = kept(st.selectbox, "Weights", key=f"{prefix}_timm_weights", options=options,
                       index=options.index(default) if default in options else 0,
                       help="'random' probes an untrained network of the same architecture (seeded): a baseline.")
        name = name.strip().removeprefix("timm:")
        if not name:
            st.info("Type a timm model name.", icon=":material/keyboard:")
            return None, None
        return f"timm:{name}", (None if weights == "pretrained" else weights)
    if source == "Upload":
        files = st.file_uploader("Checkpoint files (.safetensors + .json card, together)", key=f"{prefix}_upload",
                                 type=["safetensors", "json", "pt", "pth"], accept_multiple_files=True,
                                 help="A gr-explorer checkpoint: <name>.safetensors plus its <name>.json card "
                                      "(what `gr-explorer train`, `gr-explorer convert` and the Train page write).")
        if not files:
            st.info("Upload a checkpoint: its weights file and its .json card together.", icon=":material/upload:")
            return None, None
        spec = accept_upload(files)
        return spec, None
    models = catalogue()
    specs = list(models)
    if not specs:
        st.warning("No shipped checkpoints were found in pretrained/ and none was trained in this session. "
                   "Pick a timm model, upload a checkpoint, or train one on the Train page.", icon=":material/warning:")
        return None, None
    default = default_model(specs)
    spec = kept(st.selectbox, "Model", key=f"{prefix}_model", options=specs, index=specs.index(default),
                format_func=lambda s: f"{models[s]['label']} — {_short(models[s]['description'])}"
                if models[s]["description"] else models[s]["label"])
    if models[spec]["description"]:
        st.caption(models[spec]["description"])
    return spec, None


def load_for_ui(spec: str, weights: str | None, run: dict) -> Model | None:
    """The (cached) model the sweep will use, for listing its cuts; shows the error and returns None when it cannot load."""
    try:
        config = SweepConfig(models=[spec], weights=weights, seed=run["seed"], device=run["device"])
        with st.spinner(f"Loading {spec} ..."):
            return resources.get_model(config, spec)
    except Exception as e:  # noqa: BLE001 -- shown to the user, the page keeps working
        show_error(e)
        return None


def pick_readouts(prefix: str, model: Model) -> dict:
    """How the model's cuts are read (SweepConfig's cut_detail, readout, readout_norm), offering only what this
    model has: sub-block cuts for pre-norm transformers, its token readouts (or CNN pooling), its final norm."""
    out = {"cut_detail": "block", "readout": None, "readout_norm": "off"}
    kinds = {model.cut_kind(c.name) for c in model.cuts}
    options = [r for k in sorted(kinds) for r in model.readouts_for(k) if r != "-"]
    options = list(dict.fromkeys(options))
    try:
        has_detail = len(model.cut_list("sub-block")) > len(model.cuts)
    except GRExplorerError:
        has_detail = False
    has_norm = any(model.norm_applies(c) for c in model.cuts)
    if not (options or has_detail or has_norm):
        return out
    with st.expander("Readouts and cuts inside blocks"):
        if has_detail:
            out["cut_detail"] = fields.choice(SweepConfig, "cut_detail", key=f"{prefix}_detail::{model.name}",
                                              format_func=lambda d: {"block": "block outputs",
                                                                     "sub-block": "inside blocks too"}[d],
                                              extra_help="Inside blocks: after attention and the MLP hidden "
                                                         "activation, from the same forward pass.")
        if options:
            own = model.own_readout()
            chosen = kept(st.multiselect, SweepConfig.spec("readout").widget_label, key=f"{prefix}_readouts::{model.name}",
                          options=options, default=[own] if own in options else options[:1],
                          format_func=lambda r: label_of(READOUTS, r),
                          help="Each readout is its own curve, all from the same forward pass. "
                               + "; ".join(f"{label_of(READOUTS, r)}: {READOUTS[r].help}" for r in options) + ".")
            out["readout"] = [r for r in options if r in chosen] or None
        if has_norm:
            out["readout_norm"] = fields.choice(SweepConfig, "readout_norm", key=f"{prefix}_norm::{model.name}",
                                                format_func=lambda n: {"off": "off", "on": "on",
                                                                       "both": "both (two curves)"}[n])
    return out


def pick_cuts(prefix: str, model: Model, detail: str = "block") -> list[str] | None:
    """All cuts (of the chosen detail) by default; None means all (that is what run.json records)."""
    cuts = model.cut_list(detail)
    names = [c.name for c in cuts]
    label = {c.name: f"{c.name} ({c.part}, dim {c.dim})" for c in cuts}
    key = f"{prefix}_cuts::{model.name}" + ("" if detail == "block" else f"::{detail}")
    n_kept = len(st.session_state.get(key, st.session_state.get("_kept:" + key, names)))
    with st.expander(f"Cuts: {'all ' + str(len(names)) if n_kept == len(names) else f'{n_kept} of {len(names)}'}"):
        chosen = kept(st.multiselect, f"Cuts ({len(names)} in forward order)", key=key,
                      options=names, default=names, format_func=lambda n: label[n],
                      help="Places to cut the network: backbone stages, the pooled backbone output, and each "
                           "projector layer. All of them come from one forward pass per batch.")
    if not chosen:
        st.warning("Pick at least one cut.")
        return []
    chosen = [n for n in names if n in chosen]
    return None if len(chosen) == len(names) else chosen


# ----------------------------------------------------------------------------------------------
# data


def named_datasets() -> list[str]:
    return [d for d in list_datasets() if not d.startswith(IMAGEFOLDER)]


def pick_dataset(prefix: str) -> tuple[str | None, list[str] | None]:
    """Dataset spec and its tasks (base tasks by default, derived invariance tasks on request)."""
    kinds = [*named_datasets(), IMAGEFOLDER]
    default = DEFAULTS["dataset"] if DEFAULTS["dataset"] in kinds else kinds[0]
    kind = kept(st.selectbox, "Dataset", key=f"{prefix}_dataset", options=kinds, index=kinds.index(default),
                format_func=lambda k: "imagefolder (your images: one folder per class)" if k == IMAGEFOLDER else k,
                help="shapes is procedural (no download); digits ships with scikit-learn; the torchvision sets are "
                     "read from the app's data folder (downloaded there when the server is online).")
    if kind == IMAGEFOLDER:
        found = resources.image_folders()
        folder = kept(st.text_input, "Image folder (inside the app's data folder)", key=f"{prefix}_folder", value="",
                      placeholder=f"e.g. {found[0]}" if found else "e.g. my_images",
                      help="A class-per-folder image directory (optional train/ and test/) inside the data folder "
                           "the server's admin configured. Paths outside it are refused.")
        if found:
            st.caption("In the data folder: " + ", ".join(found[:12]) + (" ..." if len(found) > 12 else ""))
        if not folder.strip():
            st.info("Type the name of a class-per-folder image directory.", icon=":material/folder:")
            return None, None
        roots = data_roots()
        try:  # inside the data roots, and there (checked as it is typed); named relative to its root everywhere
            spec = f"{IMAGEFOLDER}:{roots.relative(resources.image_folder(folder, roots))}"
        except GRExplorerError as e:
            show_error(e)
            return None, None
    else:
        spec = kind
    try:
        base = dataset_tasks(spec)
    except GRExplorerError as e:
        show_error(e)
        return None, None
    options = [*base, *DERIVED_TASKS]
    default_tasks = list(DEFAULTS["tasks"]) if DEFAULTS["tasks"] else base
    tasks = kept(st.multiselect, "Tasks", key=f"{prefix}_tasks::{kind}", options=options, default=default_tasks,
                 format_func=lambda t: f"{t} (derived: {DERIVED_TASKS[t].help})" if t in DERIVED_TASKS else t,
                 help="Each task is one label column. Derived tasks (hflip, rot90, grayscale, hue) transform half "
                      "of the images and ask whether it happened: invariances the SSL augmentations teach.")
    if not tasks:
        st.warning("Pick at least one task.")
        return spec, None
    return spec, [t for t in options if t in tasks]


def devices() -> list[str]:
    out = ["auto", "cpu"]
    if torch.cuda.is_available():
        out += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out.append("mps")
    return out


def pick_probing(prefix: str, *, baselines: tuple[str, ...] = DEFAULTS["baselines"]) -> dict:
    """Probes and baselines, as SweepConfig keyword arguments (`baselines`: this page's preset)."""
    probes = fields.choices(SweepConfig, "probes", key=f"{prefix}_probes",
                            extra_help="Changing probes reuses cached features.")
    chosen = fields.choices(SweepConfig, "baselines", key=f"{prefix}_baselines", default=baselines,
                            extra_help="The random-init twin is drawn dashed, raw pixels as a ◆ at the input; each "
                                       "task's chance level is always drawn (dotted). With several random-init draws "
                                       "the model stands next to their mean, the spread between draws in every "
                                       "interval (each draw costs as much as the model).")
    return dict(probes=probes, baselines=chosen)


def pick_diagnostics(prefix: str) -> dict:
    """The Diagnostics switch: sets SweepConfig.metrics (all label-free metrics when on)."""
    on = kept(st.toggle, "Label-free diagnostics", key=f"{prefix}_diagnostics", value=bool(DEFAULTS["metrics"]),
              help="Per cut: " + "; ".join(f"{e.label}: {e.help}" for e in METRICS.values())
                   + "; and whether each would have found the best cut without labels.")
    if not on:
        return dict(metrics=[])
    metrics = fields.choices(SweepConfig, "metrics", key=f"{prefix}_metrics", default=DEFAULTS["metrics"] or tuple(METRICS),
                             extra_help="Invariance costs one forward pass of up to 1,000 augmented images per "
                                        "augmentation.")
    return dict(metrics=metrics)


def pick_run_settings(prefix: str) -> dict:
    """Sample sizes, device and advanced options, as SweepConfig keyword arguments."""
    c1, c2 = st.columns(2)
    most = limits().max_images  # the server's cap (limits.py); the start of a run checks it again
    n_train = fields.number(SweepConfig, "n_train", key=f"{prefix}_n_train", where=c1, step=500, zero_means_none=True,
                            hi=most, extra_help=f"0 = the whole split. At most {most:,} on this server.")
    n_test = fields.number(SweepConfig, "n_test", key=f"{prefix}_n_test", where=c2, step=500, zero_means_none=True,
                           hi=most, extra_help=f"0 = the whole split. At most {most:,} on this server.")
    device = fields.choice(SweepConfig, "device", key=f"{prefix}_device", options=devices(),
                           extra_help="Extraction and probes run there.")
    with st.expander("Advanced"):
        seed = fields.number(SweepConfig, "seed", key=f"{prefix}_seed", step=1,
                             extra_help="For shapes it also picks which images are generated.")
        batch = fields.number(SweepConfig, "batch_size", key=f"{prefix}_batch", step=64)
        size = fields.number(SweepConfig, "image_size", key=f"{prefix}_image_size", step=16, zero_means_none=True,
                             label="Image size (0 = native)", extra_help="Shorter side + centre crop.")
    return dict(n_train=n_train, n_test=n_test, device=device, seed=seed, batch_size=batch, image_size=size)

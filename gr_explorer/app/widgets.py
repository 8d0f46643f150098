"""Input widgets shared by the pages: model, dataset and tasks, cuts, probe and run settings.

Every picker returns plain values that go straight into the library's
SweepConfig / TrainConfig; nothing here computes results.
"""

from __future__ import annotations

import logging

import streamlit as st
import torch

from ..data import DERIVED_TASKS, dataset_tasks, list_datasets
from ..errors import GRExplorerError
from ..models import READOUTS, Model
from ..probes import PROBES
from ..uploads import store_checkpoint_upload
from . import resources
from .state import add_session_model, kept, session_models

log = logging.getLogger("gr_explorer.app")

DEFAULT_MODEL = "zoo:simclr"
DEFAULT_N_TRAIN = 2000
DEFAULT_N_TEST = 1000
IMAGEFOLDER = "imagefolder"
SOURCES = ("Zoo & this session", "timm", "Upload")
DERIVED_HELP = {
    "hflip": "was the image flipped left-right?",
    "rot90": "was the image rotated by 90 degrees?",
    "grayscale": "was the image turned grey?",
    "hue": "was the hue shifted?",
}


# ----------------------------------------------------------------------------------------------
# errors


def show_error(e: BaseException, context: str = "") -> None:
    """The library's message verbatim (GRExplorerError), or a short line for anything unexpected; never a traceback."""
    prefix = f"{context}: " if context else ""
    if isinstance(e, GRExplorerError):
        st.error(f"{prefix}{e}", icon=":material/error:")
        return
    log.error("unexpected error%s", f" ({context})" if context else "", exc_info=e)
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if len(text) > 300:
        text = text[:300] + " ..."
    st.error(f"{prefix}Unexpected error ({type(e).__name__}){': ' + text if text else ''}. "
             "The app is still usable; the details are in the server log.", icon=":material/error:")


def guarded(render) -> None:
    """Run a page; an unexpected error becomes a short st.error instead of Streamlit's traceback box.

    Streamlit's own control flow (rerun, stop, switch_page) derives from BaseException and passes through.
    """
    try:
        render()
    except Exception as e:  # noqa: BLE001
        show_error(e)


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


def pick_model(prefix: str) -> tuple[str | None, str | None]:
    """Model source + model -> (spec, timm weights). Shows an error and returns (None, None) when unusable."""
    source = kept(st.radio, "Model source", key=f"{prefix}_source", options=list(SOURCES), horizontal=True,
                  help="A checkpoint shipped in pretrained/ (or trained / uploaded in this session), any timm model, "
                       "or your own checkpoint file.")
    if source == "timm":
        name = kept(st.text_input, "timm model name", key=f"{prefix}_timm", value="",
                    placeholder="e.g. resnet18.a1_in1k or vit_small_patch16_224.dino",
                    help="Any timm model with forward_intermediates(). Pretrained weights come from the Hugging Face "
                         "hub (or its local cache when offline).")
        weights = kept(st.selectbox, "Weights", key=f"{prefix}_timm_weights", options=["pretrained", "random"],
                       help="'random' probes an untrained network of the same architecture: a useful baseline.")
        name = name.strip().removeprefix("timm:")
        if not name:
            st.info("Type a timm model name.", icon=":material/keyboard:")
            return None, None
        return f"timm:{name}", (None if weights == "pretrained" else weights)
    if source == "Upload":
        files = st.file_uploader("Checkpoint files (.safetensors + .json card, together)", key=f"{prefix}_upload",
                                 type=["safetensors", "json", "pt", "pth"], accept_multiple_files=True,
                                 help="A gr-explorer checkpoint: <name>.safetensors plus its <name>.json card "
                                      "(what `gr-explorer train` and the Train page write).")
        if not files:
            st.info("Upload a checkpoint: its weights file and its .json card together.", icon=":material/upload:")
            return None, None
        try:
            path = store_checkpoint_upload([(f.name, f.getvalue()) for f in files])
        except GRExplorerError as e:
            show_error(e)
            return None, None
        spec = f"file:{path}"
        add_session_model(spec, label=f"uploaded: {path.stem}", description=f"uploaded checkpoint {path.name}",
                          kind="uploaded", path=path)
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


def load_for_ui(spec: str, weights: str | None, readout: str, device: str) -> Model | None:
    """The (cached) model for listing cuts; shows the library's error and returns None when it cannot load."""
    try:
        with st.spinner(f"Loading {spec} ..."):
            return resources.get_model(spec, weights=weights, readout=readout, device=device)
    except Exception as e:  # noqa: BLE001 -- shown to the user, the page keeps working
        show_error(e)
        return None


def pick_cuts(prefix: str, model: Model) -> list[str] | None:
    """All cuts by default; None means all (that is what run.json records)."""
    names = model.cut_names
    label = {c.name: f"{c.name} ({c.part}, dim {c.dim})" for c in model.cuts}
    key = f"{prefix}_cuts::{model.name}"
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
    kind = kept(st.selectbox, "Dataset", key=f"{prefix}_dataset", options=kinds, index=0,
                format_func=lambda k: "imagefolder (your images: one folder per class)" if k == IMAGEFOLDER else k,
                help="shapes is procedural (no download); digits ships with scikit-learn; the torchvision sets are "
                     "read from the data root or downloaded when online.")
    if kind == IMAGEFOLDER:
        folder = kept(st.text_input, "Image folder", key=f"{prefix}_folder", value="",
                      placeholder="/path/to/images (class-per-folder, optional train/ and test/)")
        if not folder.strip():
            st.info("Type the path of a class-per-folder image directory.", icon=":material/folder:")
            return None, None
        spec = f"{IMAGEFOLDER}:{folder.strip()}"
    else:
        spec = kind
    try:
        base = dataset_tasks(spec)
    except GRExplorerError as e:
        show_error(e)
        return None, None
    options = [*base, *DERIVED_TASKS]
    tasks = kept(st.multiselect, "Tasks", key=f"{prefix}_tasks::{kind}", options=options, default=base,
                 format_func=lambda t: f"{t} (derived: {DERIVED_HELP[t]})" if t in DERIVED_HELP else t,
                 help="Each task is one label column. Derived tasks (hflip, rot90, grayscale, hue) transform half "
                      "of the images and ask whether it happened: invariances the SSL augmentations teach. "
                      "Note that they change the images every task of the run sees.")
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


def pick_run_settings(prefix: str, *, n_train: int = DEFAULT_N_TRAIN, n_test: int = DEFAULT_N_TEST) -> dict:
    """Probes, sample sizes, device and advanced options, as SweepConfig keyword arguments."""
    probes = kept(st.multiselect, "Probes", key=f"{prefix}_probes", options=list(PROBES), default=["linear"],
                  help="linear: multinomial logistic regression (L2 strength picked on a validation split). "
                       "knn: cosine k-NN (k picked the same way). Changing probes reuses cached features.")
    c1, c2 = st.columns(2)
    ntr = kept(c1.number_input, "Train images", key=f"{prefix}_n_train", min_value=0, value=n_train, step=500,
               help="Stratified subsample of the train split for fitting probes (0 = the whole split).")
    nte = kept(c2.number_input, "Test images", key=f"{prefix}_n_test", min_value=0, value=n_test, step=500,
               help="Stratified subsample of the test split for scoring (0 = the whole split).")
    device = kept(st.selectbox, "Device", key=f"{prefix}_device", options=devices(), index=0,
                  help="auto: CUDA, then MPS, then CPU. Extraction and probes run there.")
    with st.expander("Advanced"):
        seed = kept(st.number_input, "Seed", key=f"{prefix}_seed", min_value=0, value=0, step=1,
                    help="Subsampling, validation split and (for shapes) which images are generated.")
        batch = kept(st.number_input, "Batch size", key=f"{prefix}_batch", min_value=1, value=256, step=64)
        readout = kept(st.selectbox, "ViT token readout", key=f"{prefix}_readout", options=list(READOUTS), index=0,
                       help="How ViT tokens become one vector per cut; ignored by CNNs.")
        size = kept(st.number_input, "Image size (0 = native)", key=f"{prefix}_image_size", min_value=0, value=0,
                    step=16, help="Resize images (shorter side + centre crop) before the model's own preprocessing.")
        root = kept(st.text_input, "Data root (torchvision datasets)", key=f"{prefix}_data_root", value="",
                    placeholder="default: $GR_EXPLORER_DATA or ~/.cache/gr_explorer/data")
    return dict(probes=list(probes), n_train=int(ntr) or None, n_test=int(nte) or None, device=device, seed=int(seed),
                batch_size=int(batch), readout=readout, image_size=int(size) or None, data_root=root.strip() or None)

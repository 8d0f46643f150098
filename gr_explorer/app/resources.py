"""The library's loaders behind Streamlit's caches, with every path kept inside the data roots.

The app loads exactly what `run_sweep` would load: the keyword arguments come
from the library (`run.dataset_args`, `run.model_args`), the app only maps
user-visible names to server paths and caches the result.

* Names the user sees: `zoo:<name>`, `timm:<name>`, `file:<path relative to a
  data root>` and `imagefolder:<path relative to a data root>`. Only here do
  they become server paths; models and datasets keep the visible name, so
  tables, charts and run.json never show a server path.
* Sharing: models are cached per (load arguments, device, file stamp) and
  datasets per load arguments, shared by all sessions and only read (a sweep
  runs models in eval mode under no_grad). Image folders are not cached (their
  files can change; the library fingerprints them at every load).
* A model that failed to load (e.g. offline) is remembered for a minute, so
  redrawing a page does not wait for the network again.
* Offline errors are rewritten in the app's words (no CLI flags); every
  message shown has its server paths made relative (widgets.show_error).
* Bounds: a model's parameters and FLOPs are measured on the meta device
  before it is built (models/budget.py, the server's limits.py; remembered per
  file stamp), and an image folder is read with `confine` = the data roots, so
  a symlink at any level that leads out of them is refused.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import streamlit as st

from ..config import SweepConfig
from ..data import Dataset, image_bytes, load_dataset
from ..device import resolve_device
from ..errors import DatasetError, GRExplorerError, OfflineError, ResourceError
from ..models import Model, list_zoo, load_model, zoo_dir
from ..models.budget import Budget, model_size
from ..progress import Progress, ShouldStop
from ..run import dataset_args, model_args
from .limits import CACHE_FOLDER, limits
from .roots import DataRoots, data_roots

IMAGEFOLDER = "imagefolder"
TORCHVISION_FOLDER = "torchvision"
FAILURE_TTL_S = 60.0
#: datasets larger than this are loaded for their run only, not kept in the shared cache: a big run's images go
#: back to the operating system when it ends (or is cancelled) instead of staying in the server for good
DATASET_CACHE_MAX_BYTES = 256 * 2**20
_failures: dict[tuple, tuple[float, BaseException]] = {}
_failures_lock = threading.Lock()
_sizes: dict[tuple, BaseException | None] = {}  # (server spec, file stamp, budget) -> refusal or None (within)
_sizes_lock = threading.Lock()


@st.cache_data(ttl=10, show_spinner=False)
def _zoo(folder: str) -> dict[str, str]:
    return list_zoo()


def zoo_entries() -> dict[str, str]:
    """{name: one-line description} of the shipped checkpoints (pretrained/ or $GR_EXPLORER_ZOO)."""
    return _zoo(str(zoo_dir()))


# ----------------------------------------------------------------------------------------------
# visible names -> server paths


def server_spec(spec: str, roots: DataRoots) -> str:
    """`file:<relative>` -> `file:<server path inside a root>`; other specs unchanged."""
    scheme, _, rest = spec.partition(":")
    if scheme == "file":
        return f"file:{roots.resolve(rest, 'checkpoint file')}"
    return spec


def visible_file_spec(path: str | os.PathLike, roots: DataRoots) -> str:
    """The name a checkpoint under a root is shown (and written to run.json) under."""
    return f"file:{roots.relative(path)}"


def _stamp(spec: str) -> str:
    """What identifies the file behind a zoo:/file: server spec, so a changed file is not served from the cache."""
    scheme, _, rest = spec.partition(":")
    path = zoo_dir() / f"{rest}.safetensors" if scheme == "zoo" else Path(rest) if scheme == "file" else None
    if path is None:
        return ""
    parts = []
    for p in (path, path.with_suffix(".json")):
        try:
            s = os.stat(p)
            parts.append(f"{s.st_size}:{s.st_mtime_ns}:{s.st_ino}")
        except OSError:
            parts.append("missing")
    return "|".join(parts)


# ----------------------------------------------------------------------------------------------
# models


def _frozen(args: dict) -> tuple:
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in args.items())


@st.cache_resource(max_entries=8, show_spinner=False)
def _model(frozen: tuple, device: str, stamp: str) -> Model:
    return load_model(**dict(frozen)).eval()


def get_model(config: SweepConfig, spec: str) -> Model:
    """Model `spec` of `config`, loaded as run_sweep loads it, named as the user sees it (shared: read-only!)."""
    roots = data_roots()
    args = model_args(config, spec)
    args["spec"] = server_spec(spec, roots)
    key = (_frozen(args), str(resolve_device(config.device)), _stamp(args["spec"]))
    check_size(args["spec"], key[2], limits().budget())
    with _failures_lock:
        failed = _failures.get(key)
    if failed is not None and time.monotonic() - failed[0] < FAILURE_TTL_S:
        raise failed[1]
    try:
        model = _model(*key)
    except OfflineError:
        e = OfflineError(offline_model_message(spec))
        now = time.monotonic()
        with _failures_lock:
            for k in [k for k, (t, _) in _failures.items() if now - t > FAILURE_TTL_S]:
                del _failures[k]
            _failures[key] = (now, e)
        raise e from None
    if args["spec"] != spec:  # file: specs: the visible name, never the server path
        return model.renamed(model.name.replace(args["spec"], spec))
    return model


def check_size(spec: str, stamp: str, budget: Budget) -> None:
    """ResourceError when the model behind a server spec is beyond the budget (measured once per file stamp)."""
    key = (spec, stamp, budget)
    with _sizes_lock:
        known = _sizes.get(key, False)
    if known is False:
        try:
            model_size(spec, budget)
            known = None
        except ResourceError as e:
            known = e
        except GRExplorerError:  # not measurable (a bad card, an unknown name): the loader says why
            known = None
        with _sizes_lock:
            _sizes[key] = known
    if known is not None:
        raise known


def offline_model_message(spec: str) -> str:
    return (f"The pretrained weights of {spec} are not on this server, and the server cannot reach the Hugging Face hub "
            f"to download them. Choose Weights: random to probe the same architecture untrained, pick a shipped model, "
            f"or upload a checkpoint (Model source: Upload).")


# ----------------------------------------------------------------------------------------------
# datasets


@st.cache_resource(max_entries=6, show_spinner=False)
def _dataset(frozen: tuple, _progress: Progress | None = None, _should_stop: ShouldStop | None = None) -> Dataset:
    return load_dataset(**dict(frozen), progress=_progress, should_stop=_should_stop)


def torchvision_root(roots: DataRoots) -> Path:
    """`torchvision/` in the first root that has one, else created in the writable root."""
    for root in roots.roots:
        if (root / TORCHVISION_FOLDER).is_dir():
            return root / TORCHVISION_FOLDER
    return roots.folder(TORCHVISION_FOLDER)


def get_dataset(config: SweepConfig, progress: Progress | None = None, should_stop: ShouldStop | None = None
                ) -> Dataset:
    """The dataset of a sweep config, loaded as run_sweep loads it, from inside the data roots only (shared
    between sessions up to DATASET_CACHE_MAX_BYTES; generating reports progress and stops when asked)."""
    roots = data_roots()
    args = dataset_args(config)
    spec = args["spec"]
    head, _, rest = spec.partition(":")
    try:
        if head.strip().lower() == IMAGEFOLDER:
            folder = image_folder(rest, roots)
            ds = load_dataset(**{**args, "spec": f"{IMAGEFOLDER}:{folder}"}, confine=roots.roots, progress=progress,
                              should_stop=should_stop)
            ds.name = spec  # this load is not shared: the visible name for tables and messages
            return ds
        args["data_root"] = str(torchvision_root(roots))
        if sum(image_bytes(spec, config.n_train, config.n_test, config.image_size)) > DATASET_CACHE_MAX_BYTES:
            return load_dataset(**args, progress=progress, should_stop=should_stop)
        return _dataset(_frozen(args), progress, should_stop)
    except OfflineError:
        raise OfflineError(offline_dataset_message(spec)) from None


def image_folder(typed: str, roots: DataRoots) -> Path:
    """The server folder of an image folder typed relative to the data roots: inside them (roots.resolve) and there."""
    folder = roots.resolve(typed, "image folder")
    if not folder.is_dir():
        raise DatasetError(f"There is no folder {typed.strip()!r} in the app's data folder. Valid: one of the image "
                           "folders the app lists.")
    return folder


def offline_dataset_message(spec: str) -> str:
    return (f"The {spec} images are not on this server, and the server cannot download them. Pick another dataset "
            f"(shapes and digits need no download), or ask the server's admin to put the {spec} files in the "
            f"'{TORCHVISION_FOLDER}' folder of the app's data folder.")


def image_folders(limit: int = 200) -> list[str]:
    """Candidate image folders (relative names): folders of each root, and their subfolders, that hold folders."""
    roots = data_roots()
    skip = {"uploads", "trained", TORCHVISION_FOLDER, CACHE_FOLDER}
    out: list[str] = []
    for root in roots.roots:
        try:
            top = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in skip)
        except OSError:
            continue
        for p in top:
            if any(c.is_dir() and not c.name.startswith(".") for c in p.iterdir()):
                out.append(p.name)
            if len(out) >= limit:
                return list(dict.fromkeys(out))
    return list(dict.fromkeys(out))

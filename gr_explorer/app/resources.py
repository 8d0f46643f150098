"""Heavy objects shared by all sessions through Streamlit's caches.

Sharing rules (several browser sessions use the same objects at once):

* Models are cached per (spec, weights, readout, device, file stamp). A sweep
  only runs them in eval mode under no_grad on that one device, which reads the
  weights and never changes them, so concurrent sessions can share one Model.
  Nothing in the app mutates a cached Model (training builds its own).
* Datasets are cached per full loading parameters; sweeps only read them.
  Image folders are not cached (their files can change under the same path;
  the library fingerprints them at every load).
* The zoo listing is cached for a few seconds only (new checkpoints appear).
* Features are cached on disk by the library (content-keyed, atomic writes).
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from ..data import Dataset, load_dataset
from ..device import resolve_device
from ..models import Model, list_zoo, load_model, zoo_dir
from ..config import SweepConfig


@st.cache_data(ttl=10, show_spinner=False)
def _zoo(folder: str) -> dict[str, str]:
    return list_zoo()


def zoo_entries() -> dict[str, str]:
    """{name: one-line description} of the shipped checkpoints (pretrained/ or $GR_EXPLORER_ZOO)."""
    return _zoo(str(zoo_dir()))


def _stamp(spec: str) -> str:
    """What identifies the file behind a zoo:/file: spec, so a changed file is not served from the cache."""
    scheme, _, rest = spec.partition(":")
    path = None
    if scheme == "zoo":
        path = zoo_dir() / f"{rest}.safetensors"
    elif scheme == "file":
        path = Path(rest).expanduser()
    if path is None:
        return ""
    parts = []
    for p in (path, path.with_suffix(".json")):
        try:
            s = os.stat(p)
            parts.append(f"{p.resolve()}:{s.st_size}:{s.st_mtime_ns}")
        except OSError:
            parts.append(f"{p}:missing")
    return "|".join(parts)


@st.cache_resource(max_entries=8, show_spinner=False)
def _model(spec: str, weights: str | None, readout: str, device: str, stamp: str) -> Model:
    return load_model(spec, weights=weights, readout=readout).eval()


def get_model(spec: str, *, weights: str | None = None, readout: str = "cls", device: str = "auto") -> Model:
    """A loaded model, shared between sessions (read-only!). Raises the library's errors uncached."""
    dev = str(resolve_device(device))
    return _model(spec, weights, readout, dev, _stamp(spec))


def _load(spec: str, tasks: tuple[str, ...] | None, n_train: int | None, n_test: int | None, seed: int,
          data_root: str | None, image_size: int | None) -> Dataset:
    return load_dataset(spec, tasks=list(tasks) if tasks is not None else None, n_train=n_train, n_test=n_test,
                        seed=seed, data_root=data_root, image_size=image_size)


_dataset = st.cache_resource(max_entries=6, show_spinner=False)(_load)


def get_dataset(config: SweepConfig) -> Dataset:
    """The dataset of a sweep config, loaded exactly as run_sweep loads it (shared between sessions, read-only)."""
    args = (config.dataset, tuple(config.tasks) if config.tasks is not None else None, config.n_train, config.n_test,
            config.seed, config.data_root, config.image_size)
    if config.dataset.strip().lower().startswith("imagefolder"):
        return _load(*args)
    return _dataset(*args)

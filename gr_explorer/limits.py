"""Will a run fit this machine? The memory and disk a sweep or a training needs, checked before any work.

Why: a size typed by mistake (999,999,999 train images) would otherwise allocate until the machine swaps or the
kernel kills the process, and a cancel could not give the memory back in time. The estimates count what grows
with the requested sizes and is not bounded elsewhere:

* memory: the dataset's images held in memory (data.image_bytes: uint8 pixels, plus the drawn parameters of
  generated shapes while they render; image folders are read batch by batch and hold none). The probes and the
  k-NN search are bounded by `memory_budget` (they stream beyond it) and features live on disk, memory-mapped;
* disk: the features every model writes to the feature cache, (train + test images) x the width of every
  column x the storage dtype, for each view (a derived task's view is extracted on its own); with the attentive
  probe, also its token features (at most attentive_tokens x the cut's width per image and cut, float16).

A run is refused when its estimate exceeds MEMORY_SHARE of the memory available now (psutil; a cgroup limit
counts when it is lower) or the free space of the cache's disk, with a message naming the setting, the
estimate, what the machine has, and the largest size that would fit.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

import psutil

from .config import SweepConfig
from .data import DERIVED_TASKS, image_bytes
from .errors import ConfigError, GRExplorerError
from .models import Model
from .models.readout import TOKEN_STORAGE

#: the share of the available memory (or free disk) a run may plan to use: the rest is for the process itself,
#: the model and the probes' working memory
MEMORY_SHARE = 0.8
#: bytes per value of the attentive probe's token features (stored as TOKEN_STORAGE)
TOKEN_BYTES = {"float16": 2, "float32": 4}[TOKEN_STORAGE]
#: cgroup v2 files of a container's memory limit and current use
CGROUP = Path("/sys/fs/cgroup")


def size_text(n: float) -> str:
    """Bytes as people read them: '3.1 TB', '512 MB'."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("B", "kB") or n >= 100 else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover - the loop returns


def available_memory() -> int:
    """Bytes of memory this process can still get: the system's available memory, or the container's when lower."""
    available = int(psutil.virtual_memory().available)
    try:
        limit = (CGROUP / "memory.max").read_text().strip()
        if limit != "max":
            available = min(available, int(limit) - int((CGROUP / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return max(0, available)


def check_memory(need: int, what: str, setting: str, per_image: float, error: type[GRExplorerError] = ConfigError,
                 available: int | None = None) -> None:
    """Refuse `need` bytes (for `what`) above MEMORY_SHARE of the available memory, saying how many images of
    `setting` (at `per_image` bytes each) would fit."""
    available = available_memory() if available is None else available
    if need <= MEMORY_SHARE * available:
        return
    fits = int(MEMORY_SHARE * available // per_image) if per_image > 0 else 0
    raise error(f"{setting} is too large for this machine: {what} would need about {size_text(need)} of memory, and "
                f"{size_text(available)} is available now (a run may plan on {MEMORY_SHARE:.0%} of it). Valid: at "
                f"most about {fits:,} images in all here, or a machine with more memory.")


def check_sweep(config: SweepConfig, available: int | None = None) -> None:
    """The sweep's images fit in memory (see the module docstring); ConfigError naming the setting otherwise."""
    n_train, n_test = image_bytes(config.dataset, config.n_train, config.n_test, config.image_size)
    if n_train + n_test == 0:
        return
    per_train, per_test = image_bytes(config.dataset, 1, 1, config.image_size)
    name = "n_train" if n_train >= n_test else "n_test"
    value = getattr(config, name)
    spec = SweepConfig.spec(name)
    setting = (f"{name}={value:,} ({spec.flag_name}, '{spec.widget_label}' in the app)" if value
               else f"{name}=all") + (f" at image_size={config.image_size:,}" if config.image_size else "")
    per = per_train if n_train >= n_test else per_test
    check_memory(n_train + n_test, f"the {config.dataset} images ({size_text(n_train)} train + {size_text(n_test)} "
                 "test)", setting, per, available=available)


def feature_bytes(model: Model, config: SweepConfig, n_images: int) -> int:
    """Bytes of one model's features on disk for `n_images` images: every column of every view of the sweep."""
    pixels = model.kind == "pixels"
    cuts = model.resolve_cuts(None if pixels else config.cuts, "block" if pixels else config.cut_detail)
    columns = model.columns(cuts, None if pixels else config.readout, "off" if pixels else config.readout_norm)
    width = sum(c.cut.dim * (2 if c.applied.pooling == "cls+mean" else 1) for c in columns)
    views = 1 + sum(1 for t in (config.tasks or ()) if t in DERIVED_TASKS)
    itemsize = 2 if config.feature_dtype == "float16" else 4
    tokens = 0  # the attentive probe's token features: at most attentive_tokens per image and cut, float16
    if "attentive" in config.probes and not pixels:
        tokens = sum(config.attentive_tokens * c.cut.dim for c in model.token_columns(cuts, config.attentive_tokens))
    return n_images * (width * itemsize + tokens * TOKEN_BYTES) * views


def check_disk(models: Sequence[Model], config: SweepConfig, n_images: int, folder: str | Path) -> None:
    """The features of `models` fit on the disk of `folder` (the feature cache); ConfigError otherwise."""
    need = sum(feature_bytes(m, config, n_images) for m in models)
    path = Path(folder)
    while not path.exists() and path != path.parent:
        path = path.parent
    free = shutil.disk_usage(path).free
    if need <= MEMORY_SHARE * free:
        return
    fits = int(MEMORY_SHARE * free / need * n_images)
    raise ConfigError(f"n_train={config.n_train} and n_test={config.n_test}: the features of "
                      f"{', '.join(m.name for m in models)} would need about {size_text(need)} in the feature cache, "
                      f"and its disk has {size_text(free)} free. Valid: at most about {fits:,} images in all, fewer "
                      "cuts, feature_dtype=float16, or a cache folder on a larger disk.")


__all__ = ["MEMORY_SHARE", "available_memory", "check_disk", "check_memory", "check_sweep", "feature_bytes",
           "size_text"]

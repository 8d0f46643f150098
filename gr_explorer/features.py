"""Feature extraction: ONE forward pass per batch captures every requested cut.

Features are pooled to one vector per image and cut, kept as float32 on the
CPU, and cached per cut under a content key of (weights, the view's pixels,
architecture and preprocessing, readout, pooling, precision), so an identical
second run does no forward pass and a run with more cuts only computes the new
ones. A derived task's view (see data.base) is extracted separately: the base
tasks' features never see its transform.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Sequence

import torch

from .cache import FeatureCache, content_key
from .data.base import BASE, Dataset
from .device import autocast, resolve_device
from .models import Cut, Model
from .progress import Progress, Reporter, ShouldStop


@dataclass
class Features:
    """Pooled features of one model on one view of a dataset: {cut: [N, dim]} for train and test."""

    cuts: list[Cut]
    train: dict[str, torch.Tensor]
    test: dict[str, torch.Tensor]
    key: str
    view: str = BASE
    cached_cuts: list[str] = field(default_factory=list)
    forward_batches: int = 0


def base_key(model: Model, dataset: Dataset, device: torch.device, view: str = BASE) -> str:
    return content_key({
        "weights": model.weights_hash(),
        "model": model.describe(),
        "dataset": dataset.fingerprint(view),
        "pooling": "gap",
        "precision": "bf16" if device.type == "cuda" else "fp32",
    })


def extract_features(model: Model, dataset: Dataset, cuts: Sequence[str] | None = None, *, view: str = BASE,
                     device: str | torch.device | None = None, batch_size: int = 256,
                     cache: FeatureCache | None | bool = None, progress: Progress | None = None,
                     should_stop: ShouldStop | None = None) -> Features:
    """Features at `cuts` (all when None) of one view. `cache=False` disables the disk cache.

    Reports ProgressEvent('extract', batches done, total, model) and stops between batches when
    `should_stop()` is true (raising progress.Cancelled; cuts already cached stay cached).
    """
    device = resolve_device(device)
    wanted = model.resolve_cuts(cuts)
    store = None if cache is False else (cache if isinstance(cache, FeatureCache) else FeatureCache())
    key = base_key(model, dataset, device, view)
    train, test, cached = {}, {}, []
    if store is not None:
        for c in wanted:
            hit = store.get(content_key({"base": key, "cut": c.name}))
            if hit is not None:
                train[c.name], test[c.name] = hit["train"], hit["test"]
                cached.append(c.name)
    missing = [c for c in wanted if c.name not in cached]
    total = -(-dataset.n_train // batch_size) - (-dataset.n_test // batch_size) if missing else 1
    report = Reporter(progress, should_stop, "extract", total, model.name)
    report.emit(f"{view} view" if view != BASE else "")
    if missing:
        names = [c.name for c in missing]
        tr = _run(model, dataset, "train", view, names, device, batch_size, report)
        te = _run(model, dataset, "test", view, names, device, batch_size, report)
        for c in missing:
            train[c.name], test[c.name] = tr[c.name], te[c.name]
            if store is not None:
                try:
                    store.put(content_key({"base": key, "cut": c.name}), {"train": tr[c.name], "test": te[c.name]},
                              meta={"model": model.name, "dataset": dataset.name, "view": view, "cut": c.name})
                except OSError as e:  # a read-only or full cache: the features are still returned, just not kept
                    warnings.warn(f"The feature cache {str(store.root)!r} could not be written ({e.strerror or e}); "
                                  "features are computed but not cached.", stacklevel=2)
                    store = None
    else:
        report.tick(1, "all cuts from the cache")
    order = [c.name for c in wanted]
    return Features(wanted, {n: train[n] for n in order}, {n: test[n] for n in order}, key, view, cached,
                    report.done if missing else 0)


@torch.no_grad()
def _run(model: Model, dataset: Dataset, split: str, view: str, names: list[str], device: torch.device,
         batch_size: int, report: Reporter) -> dict[str, torch.Tensor]:
    model.eval().to(device)
    n = dataset.n_train if split == "train" else dataset.n_test
    out: dict[str, torch.Tensor] = {}
    pin = device.type == "cuda"
    batches = dataset.batches(split, batch_size, view)
    nxt = _to_device(next(batches), device, pin)
    start = 0
    while nxt is not None:
        x = nxt
        nxt = next(batches, None)
        if nxt is not None:  # queue the next copy before computing on this batch
            nxt = _to_device(nxt, device, pin)
        with autocast(device):
            feats = model.forward_cuts(model.preprocessing(x), names)
        for name, f in feats.items():
            if name not in out:
                out[name] = torch.empty((n, f.shape[1]), dtype=torch.float32)
            out[name][start:start + f.shape[0]].copy_(f.float(), non_blocking=False)
        start += x.shape[0]
        report.tick(1, f"{split} batch")
    return out


def _to_device(batch: torch.Tensor, device: torch.device, pin: bool) -> torch.Tensor:
    if pin:
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)

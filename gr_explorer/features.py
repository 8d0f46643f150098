"""Feature extraction: ONE forward pass per batch captures every requested cut.

Features are pooled to one vector per image and cut, kept as float32 on the
CPU, and cached per cut under a content key of (weights, dataset and its
parameters, preprocessing, readout, precision), so an identical second run
does no forward pass and a run with more cuts only computes the new ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from .cache import FeatureCache, content_key
from .data.base import Dataset
from .device import autocast, resolve_device
from .models import Cut, Model

Progress = Callable[[str, int, int], None]


@dataclass
class Features:
    """Pooled features of one model on one dataset: {cut: [N, dim]} for train and test."""

    cuts: list[Cut]
    train: dict[str, torch.Tensor]
    test: dict[str, torch.Tensor]
    key: str
    cached_cuts: list[str] = field(default_factory=list)
    forward_batches: int = 0


def base_key(model: Model, dataset: Dataset, device: torch.device) -> str:
    return content_key({
        "weights": model.weights_hash(),
        "model": model.describe(),
        "dataset": dataset.fingerprint(),
        "pooling": "gap",
        "precision": "bf16" if device.type == "cuda" else "fp32",
    })


def extract_features(model: Model, dataset: Dataset, cuts: Sequence[str] | None = None, *,
                     device: str | torch.device | None = None, batch_size: int = 256,
                     cache: FeatureCache | None | bool = None, progress: Progress | None = None) -> Features:
    """Features at `cuts` (all when None). `cache=False` disables the disk cache."""
    device = resolve_device(device)
    wanted = model.resolve_cuts(cuts)
    store = None if cache is False else (cache if isinstance(cache, FeatureCache) else FeatureCache())
    key = base_key(model, dataset, device)
    train, test, cached = {}, {}, []
    if store is not None:
        for c in wanted:
            hit = store.get(content_key({"base": key, "cut": c.name}))
            if hit is not None:
                train[c.name], test[c.name] = hit["train"], hit["test"]
                cached.append(c.name)
    missing = [c for c in wanted if c.name not in cached]
    batches = 0
    if missing:
        names = [c.name for c in missing]
        total = -(-dataset.n_train // batch_size) - (-dataset.n_test // batch_size)
        done = [0]

        def tick():
            done[0] += 1
            if progress:
                progress("extract", done[0], total)

        tr = _run(model, dataset.train_images, names, device, batch_size, tick)
        te = _run(model, dataset.test_images, names, device, batch_size, tick)
        batches = done[0]
        for c in missing:
            train[c.name], test[c.name] = tr[c.name], te[c.name]
            if store is not None:
                store.put(content_key({"base": key, "cut": c.name}), {"train": tr[c.name], "test": te[c.name]},
                          meta={"model": model.name, "dataset": dataset.name, "cut": c.name})
    elif progress:
        progress("extract", 1, 1)
    order = [c.name for c in wanted]
    return Features(wanted, {n: train[n] for n in order}, {n: test[n] for n in order}, key, cached, batches)


@torch.no_grad()
def _run(model: Model, images: torch.Tensor, names: list[str], device: torch.device, batch_size: int, tick) -> dict[str, torch.Tensor]:
    model.eval().to(device)
    n = images.shape[0]
    out: dict[str, torch.Tensor] = {}
    pin = device.type == "cuda"
    nxt = _to_device(images[0:batch_size], device, pin)
    for start in range(0, n, batch_size):
        x = nxt
        if start + batch_size < n:  # queue the next copy before computing on this batch
            nxt = _to_device(images[start + batch_size:start + 2 * batch_size], device, pin)
        with autocast(device):
            feats = model.forward_cuts(model.preprocessing(x), names)
        for name, f in feats.items():
            if name not in out:
                out[name] = torch.empty((n, f.shape[1]), dtype=torch.float32)
            out[name][start:start + f.shape[0]].copy_(f.float(), non_blocking=False)
        tick()
    return out


def _to_device(batch: torch.Tensor, device: torch.device, pin: bool) -> torch.Tensor:
    if pin:
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)

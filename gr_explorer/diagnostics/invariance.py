"""Augmentation invariance per cut: how much does each training augmentation move a cut's features?

For each augmentation of the training recipe, applied alone with probability
1 at the strength of an `AugmentConfig` (default: its defaults) with the very
functions training uses (`augment`), a seeded subset of at most 1,000
images goes through ONE extra forward pass (all cuts at once) as augmented
copies; their clean features come from the sweep's extraction, so no clean
pass is repeated. Images are preprocessed as in training: `to_unit`, augment,
`normalize`.

Per cut and augmentation, on features standardised with the clean features'
mean and standard deviation (so that no single high-variance unit or the mean
direction dominates a cosine):

* invariance = (s_pos - s_neg) / (1 - s_neg), with s_pos the mean cosine between
  an image's clean and augmented features and s_neg the mean cosine between the
  augmented features of one image and the clean features of another: 1 = the
  augmentation does not move the features at all, 0 = an image's view is no
  closer to it than to a random other image;
* retrieval = fraction of augmented views whose nearest clean neighbour (cosine)
  is their own source image (chance 1 / n).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from ..augment import (
    AugmentConfig,
    color_jitter,
    hflip,
    random_blur,
    random_grayscale,
    random_resized_crop,
)
from ..device import autocast, resolve_device
from ..errors import DiagnosticError
from ..models import Column, Model
from .moments import float64_device

AUGMENTATIONS = ("crop", "flip", "color_jitter", "grayscale", "blur")
MAX_IMAGES = 1000


def augmented_view(name: str, x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """One augmentation alone, applied to every image (probability 1), float [B, 3, H, W] in [0, 1]."""
    if name == "crop":
        return random_resized_crop(x, cfg.crop_scale, cfg.crop_ratio, g)
    if name == "flip":
        return hflip(x, 1.0, g)
    if name == "color_jitter":
        return color_jitter(x, cfg.color_jitter, 1.0, g)
    if name == "grayscale":
        return random_grayscale(x, 1.0, g)
    if name == "blur":
        return random_blur(x, 1.0, cfg.blur_sigma, g)
    raise DiagnosticError(f"Unknown augmentation {name!r}. Valid: {', '.join(AUGMENTATIONS)}.")


def subset(n_total: int, n: int, seed: int) -> torch.Tensor:
    """Sorted indices of min(n, n_total) images, fixed by the seed."""
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_total, generator=g)[: min(n, n_total)].sort().values


def invariance_scores(clean: torch.Tensor, view: torch.Tensor, chunk: int = 1024) -> tuple[float, float]:
    """(invariance, retrieval accuracy) of row-aligned clean and augmented features [n, D]."""
    mu = clean.mean(0)
    sd = clean.std(0)
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))
    c = F.normalize((clean - mu) / sd, dim=1)
    v = F.normalize((view - mu) / sd, dim=1)
    n = c.shape[0]
    pos = (c * v).sum(1)
    s_pos = pos.mean()
    s_neg = (v.sum(0) @ c.sum(0) - pos.sum()) / (n * (n - 1))
    score = float((s_pos - s_neg) / (1 - s_neg)) if float(s_neg) < 1 else float("nan")
    hits = 0
    for s in range(0, n, chunk):
        hits += int(((v[s:s + chunk] @ c.T).argmax(1) == torch.arange(s, min(s + chunk, n), device=c.device)).sum())
    return score, hits / n


@dataclass
class InvarianceResult:
    rows: list[dict]  # {cut, augmentation, invariance, retrieval}
    indices: torch.Tensor  # the images used (rows of the train split)
    forward_batches: int = 0
    images_forwarded: int = 0
    augmentations: list[str] = field(default_factory=list)


@torch.no_grad()
def augmentation_invariance(model: Model, clean: Mapping[str, torch.Tensor], images: torch.Tensor, *,
                            augmentations: Sequence[str] = AUGMENTATIONS, config: AugmentConfig | None = None,
                            n_images: int = MAX_IMAGES, seed: int = 0, device: str | torch.device | None = None,
                            batch_size: int = 256, progress: Callable[[int, int, str], None] | None = None,
                            columns: Sequence[Column] | None = None) -> InvarianceResult:
    """Invariance and retrieval of every cut in `clean` under each augmentation.

    `clean` maps cut -> features of `images` (row i = image i), e.g. a sweep's
    `Features.train`; `images` are the uint8 [N, 3, H, W] images they came from.
    `columns`: how `clean` was read out (one per cut; Features.columns), when not the model's own readout.
    """
    cfg = config or AugmentConfig()
    for a in augmentations:
        if a not in AUGMENTATIONS:
            raise DiagnosticError(f"Unknown augmentation {a!r}. Valid: {', '.join(AUGMENTATIONS)}.")
    if (not torch.is_tensor(images) or images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3
            or images.shape[0] < 2):
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise DiagnosticError(f"Invariance needs the uint8 images [N, 3, H, W] (N >= 2) the features came from, got {shape}.")
    names = list(clean)
    model.resolve_cuts(names)  # a cut the model does not have fails here, naming it
    for name in names:
        if clean[name].shape[0] != images.shape[0]:
            raise DiagnosticError(f"Features of cut {name!r} have {clean[name].shape[0]} rows but {images.shape[0]} images were "
                                  "given. Valid: the train images the features were extracted from, in the same order.")
    if not 2 <= n_images <= MAX_IMAGES:
        raise DiagnosticError(f"n_images={n_images} is out of range. Valid: 2 .. {MAX_IMAGES} images (retrieval compares "
                              "every view with every clean image).")
    dev = resolve_device(device)
    fdev = float64_device(dev)
    idx = subset(images.shape[0], n_images, seed)
    model.eval().to(dev)
    pre = model.preprocessing
    result = InvarianceResult([], idx, augmentations=list(augmentations))
    n_batches = -(-len(idx) // batch_size)
    total = n_batches * len(augmentations)
    for k, aug in enumerate(augmentations):
        g = torch.Generator(device=dev).manual_seed(seed * 1_000_003 + zlib.crc32(aug.encode()))
        views: dict[str, list[torch.Tensor]] = {n: [] for n in names}
        for b in range(n_batches):
            x = images[idx[b * batch_size:(b + 1) * batch_size]].to(dev)
            x = pre.normalize(augmented_view(aug, pre.to_unit(x), cfg, g))
            with autocast(dev):
                if columns:
                    got = model.forward_readouts(x, columns)
                    out = {c.name: got[(c.cut.name, c.applied)] for c in columns}
                else:
                    out = model.forward_cuts(x, names)
            for n in names:
                views[n].append(out[n].float().cpu())
            result.forward_batches += 1
            result.images_forwarded += x.shape[0]
            if progress:
                progress(k * n_batches + b + 1, total, f"invariance: {aug} batch {b + 1}/{n_batches}")
        for n in names:
            c = clean[n][idx].to(fdev, torch.float64)
            v = torch.cat(views[n]).to(fdev, torch.float64)
            score, retrieval = invariance_scores(c, v)
            result.rows.append({"cut": n, "augmentation": aug, "invariance": score, "retrieval": retrieval})
    return result

"""Derived invariance tasks: was this image flipped / rotated / greyed / hue-shifted?

Why: SSL augmentations teach the network to ignore exactly these transforms,
so a probe for "was it transformed?" shows where along the network that
information is thrown away (the projector first, per Guillotine
Regularization).

How: for each requested derived task, independently, exactly floor(N/2)
images of each split (chosen by a generator seeded from the run seed, the task
name and the split) are *marked*; the task's label is the mark. Each derived
task is its own view of the images (see `Dataset.batches`): its transform is
applied to the marked images as they are read, so the base tasks always see
the untransformed images, and one derived task never sees another's
transform.

A derived task that cannot be told from the images is refused (`check`):
grayscale or hue on images that are already grey.
"""

from __future__ import annotations

import hashlib

import torch
from torchvision.transforms.v2 import functional as F

from ..errors import DatasetError
from ..names import DERIVED_TASKS

CLASSES = {
    "hflip": ["original", "flipped"],
    "rot90": ["original", "rotated"],
    "grayscale": ["colour", "grayscale"],
    "hue": ["original", "hue-shifted"],
}
HUE_SHIFT = 0.5


def half_mask(n: int, seed: int, task: str, split: str) -> torch.Tensor:
    """Boolean mask with exactly n // 2 True entries, fixed by (seed, task, split)."""
    key = int.from_bytes(hashlib.sha256(f"{seed}:{task}:{split}".encode()).digest()[:8], "little") >> 1
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(key))
    mask = torch.zeros(n, dtype=torch.bool)
    mask[perm[: n // 2]] = True
    return mask


def transform(task: str, images: torch.Tensor, name: str = "dataset") -> torch.Tensor:
    """The transform of one derived task on a uint8 batch [N, 3, H, W]."""

    if task == "hflip":
        return torch.flip(images, dims=[-1])
    if task == "rot90":
        h, w = images.shape[-2:]
        if h != w:
            raise DatasetError(
                f"Derived task 'rot90' needs square images, but {name!r} has {h}x{w} images. "
                f"Pass image_size (--image-size) to make them square, or drop 'rot90'. Valid derived tasks: {', '.join(DERIVED_TASKS)}."
            )
        return torch.rot90(images, k=1, dims=(-2, -1))
    if task == "grayscale":
        return F.rgb_to_grayscale(images, num_output_channels=3)
    if task == "hue":
        return F.adjust_hue(images, HUE_SHIFT)
    raise DatasetError(f"Unknown derived task {task!r}. Valid: {', '.join(DERIVED_TASKS)}.")


def marks(task: str, n: int, seed: int, split: str) -> torch.Tensor:
    """The 0/1 label column of a derived task: which images its view transforms."""
    return half_mask(n, seed, task, split).long()


def check(task: str, sample: torch.Tensor, name: str = "dataset") -> None:
    """Refuse a derived task that is meaningless for these images (uint8 sample [B, 3, H, W])."""
    transform(task, sample[:0], name)  # rot90: square images only
    if task in ("grayscale", "hue") and sample.numel() and bool((sample[:, 0] == sample[:, 1]).all() & (sample[:, 1] == sample[:, 2]).all()):
        others = [t for t in DERIVED_TASKS if t not in ("grayscale", "hue")]
        raise DatasetError(
            f"Derived task {task!r} is meaningless for {name!r}: its images are already greyscale, so a "
            f"{'greyed' if task == 'grayscale' else 'hue-shifted'} image looks exactly like the original. "
            f"Valid derived tasks for greyscale images: {', '.join(others)}."
        )

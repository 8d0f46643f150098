"""Derived invariance tasks: was this image flipped / rotated / greyed / hue-shifted?

Why: SSL augmentations teach the network to ignore exactly these transforms,
so a probe for "was it transformed?" shows where along the network that
information is thrown away (the projector first, per Guillotine
Regularization).

How: for each requested derived task, independently, exactly floor(N/2)
images of each split (chosen by a generator seeded from the run seed, the task
name and the split) are transformed in place with batched tensor ops, and a
two-class label column is added. Tasks compose in the order given, e.g.
['hflip', 'rot90'] flips some images and then rotates some (possibly the same)
images.

Caveat: the transforms change the images that EVERY task of the run sees.
`hue` alters the shapes `color` attribute, `grayscale` removes it, `hflip`
swaps the shapes `light` side (left/right), `rot90` turns it into up/down
and tips the upright shapes over. That is intended (it is the same image set for all probes) but the base
tasks are then measured on partly transformed images.
"""

from __future__ import annotations

import hashlib

import torch

from ..errors import DatasetError

DERIVED_TASKS = ("hflip", "rot90", "grayscale", "hue")
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
    from torchvision.transforms.v2 import functional as F

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


def apply(task: str, images: torch.Tensor, seed: int, split: str, name: str = "dataset") -> torch.Tensor:
    """Transform half of `images` in place; return the 0/1 label column."""
    mask = half_mask(images.shape[0], seed, task, split)
    if task == "rot90":  # check squareness even when the half is empty
        transform(task, images[:0], name)
    if mask.any():
        images[mask] = transform(task, images[mask], name)
    return mask.long()

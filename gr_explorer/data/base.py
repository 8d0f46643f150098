"""The dataset every loader returns: images per split plus one label column per task.

Derived invariance tasks (hflip, rot90, grayscale, hue) never alter the images
the base tasks see: each derived task is its own *view* of the images, its
transform applied to the marked half while a batch is read, so base-task
features are the same whether or not derived tasks were asked for, and each
view has its own content fingerprint for the feature cache.
"""

from __future__ import annotations

import os
from functools import cached_property

import numpy as np
import torch

from ..errors import DatasetError
from ..hashing import json_digest, large_tensor_digest, tensor_digest
from ..names import DERIVED_TASKS
from .invariance import transform

BASE = "base"


class Images:
    """One split's images: a length, a shape and batched access by index (uint8 [B, 3, H, W]).

    Images decoded from files as they are read (`streams`) also decode one image at a time (`decode_one`, what a
    DataLoader worker calls) and say which files failed (`failure`), so readers never reach into their internals.
    """

    #: decoded from files as they are read, by DataLoader workers (False: sliced from memory)
    streams = False

    def __len__(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def shape(self) -> tuple[int, int, int]:  # pragma: no cover - interface
        raise NotImplementedError

    dtype = torch.uint8

    def get(self, idx: slice | np.ndarray) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def fingerprint(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def decode_one(self, i: int) -> np.ndarray | Exception:  # pragma: no cover - streamed images only
        """Image i as an HWC uint8 array, or the exception decoding it raised (reported by file name later)."""
        raise NotImplementedError

    def failure(self, failed: list[tuple[int, str]]) -> DatasetError:  # pragma: no cover - streamed images only
        """The error naming the images (by index) that could not be decoded, and why."""
        raise NotImplementedError

    def materialize(self) -> torch.Tensor:
        return self.get(slice(0, len(self)))


class TensorImages(Images):
    """Images already decoded in memory."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor

    def __len__(self) -> int:
        return int(self.tensor.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return self.tensor.dtype

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.tensor.shape[1:])

    def get(self, idx):
        return self.tensor[idx]

    def materialize(self) -> torch.Tensor:
        return self.tensor

    @cached_property
    def _digest(self) -> str:
        return large_tensor_digest(self.tensor, length=32)

    def fingerprint(self) -> str:
        """Keyed on the pixels themselves, so two datasets with equal names but other pixels never share features."""
        return self._digest


def _as_images(x) -> Images:
    return x if isinstance(x, Images) else TensorImages(x)


class Dataset:
    """A fixed train/test split of RGB uint8 images with tasks.

    `params` records what determined the content (loader, seed, sizes, tasks):
    run.json and the cards show it. The feature cache keys on `fingerprint()`,
    which is computed from the content (pixels, or for streamed folders the
    file listing and the chosen files), never from the name alone.
    """

    def __init__(self, name: str, train_images: Images | torch.Tensor, test_images: Images | torch.Tensor,
                 train_labels: dict[str, torch.Tensor], test_labels: dict[str, torch.Tensor],
                 classes: dict[str, list[str]], params: dict | None = None):
        self.name = name
        self.splits = {"train": _as_images(train_images), "test": _as_images(test_images)}
        self.train_labels, self.test_labels = train_labels, test_labels
        self.classes = classes
        self.params = dict(params or {})

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, {self.n_train} train / {self.n_test} test, tasks {self.tasks})"

    @property
    def train_images(self) -> torch.Tensor:
        """All train images decoded (a streamed source decodes them all: meant for small data and training)."""
        return self.splits["train"].materialize()

    @property
    def test_images(self) -> torch.Tensor:
        return self.splits["test"].materialize()

    @property
    def tasks(self) -> list[str]:
        return list(self.train_labels)

    @property
    def n_train(self) -> int:
        return len(self.splits["train"])

    @property
    def n_test(self) -> int:
        return len(self.splits["test"])

    # -- views: the base images, and one transformed copy per derived task ---------------------
    @property
    def derived_tasks(self) -> list[str]:
        return [t for t in self.tasks if t in DERIVED_TASKS]

    @property
    def base_tasks(self) -> list[str]:
        return [t for t in self.tasks if t not in self.derived_tasks]

    @property
    def views(self) -> list[str]:
        """'base' (when a base task is asked for), then each derived task's own view."""
        return ([BASE] if self.base_tasks else []) + self.derived_tasks

    def view_tasks(self, view: str) -> list[str]:
        return self.base_tasks if view == BASE else [view]

    def view_labels(self, view: str, split: str) -> dict[str, torch.Tensor]:
        labels = self.train_labels if split == "train" else self.test_labels
        return {t: labels[t] for t in self.view_tasks(view)}

    def transform_view(self, view: str, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if not bool(mask.any()):
            return x
        x = x.clone()
        x[mask] = transform(view, x[mask], self.name)
        return x

    def fingerprint(self, view: str = BASE) -> str:
        """Content key of a view's pixels: the base images, plus the transform and its marks for a derived view."""
        parts = {"train": self.splits["train"].fingerprint(), "test": self.splits["test"].fingerprint()}
        if view != BASE:
            parts["view"] = view
            parts["marks"] = tensor_digest([self.train_labels[view], self.test_labels[view]], length=32)
        return json_digest(parts, length=32)

    def chance(self, task: str) -> float:
        """Majority-class test accuracy: what always guessing the most common test class scores."""
        y = self.test_labels[task]
        return float(torch.bincount(y).max()) / max(1, int(y.numel()))

    def validate(self) -> None:
        """Fail early, naming the dataset, when images or labels cannot be probed."""
        for split, labels in (("train", self.train_labels), ("test", self.test_labels)):
            imgs = self.splits[split]
            if imgs.dtype != torch.uint8 or len(imgs.shape) != 3 or imgs.shape[0] != 3:
                raise DatasetError(f"Dataset {self.name!r}: {split} images must be uint8 [N, 3, H, W], got {imgs.dtype} "
                                   f"{(len(imgs), *tuple(imgs.shape))}.")
            if len(imgs) == 0:
                raise DatasetError(f"Dataset {self.name!r}: the {split} split has no images.")
            for task, y in labels.items():
                if y.shape[0] != len(imgs):
                    raise DatasetError(f"Dataset {self.name!r}: task {task!r} has {y.shape[0]} {split} labels for {len(imgs)} images.")
        for task, y in self.train_labels.items():
            n = int(torch.unique(y).numel())
            if n < 2:
                raise DatasetError(
                    f"Dataset {self.name!r}: task {task!r} has only one class in the train split "
                    f"({self.classes.get(task, ['?'])[int(y[0])] if len(y) else '?'}); a probe needs at least two."
                )


def physical_memory() -> int | None:
    """Bytes of RAM of this machine (None where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def check_fits(what: str, n_images: int, side: int, valid: str) -> None:
    """DatasetError, before anything is allocated, when `n_images` uint8 RGB images of `side` px would take more than
    half of this machine's memory (they would otherwise end in a MemoryError after minutes of work)."""
    need, have = n_images * 3 * side * side, physical_memory()
    if have is not None and need > have // 2:
        most = have // 2 // (3 * side * side)
        raise DatasetError(f"{what}: {n_images:,} images of {side} x {side} px need {need / 2**30:,.1f} GiB in memory, "
                           f"more than half of this machine's {have / 2**30:,.1f} GiB. Valid: at most {most:,} images "
                           f"here ({valid}).")


def stratified_indices(labels: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Indices of a class-stratified random subset of size n (all, in order, when n is None or >= len)."""
    labels = np.asarray(labels)
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    if n <= 0:
        raise DatasetError(f"Sample size must be positive, got {n}.")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    # Largest-remainder allocation keeps class proportions and sums exactly to n.
    quota = counts / counts.sum() * n
    take = np.floor(quota).astype(int)
    rest = n - take.sum()
    order = np.argsort(-(quota - take), kind="stable")
    take[order[:rest]] += 1
    picked = []
    for c, k in zip(classes, take):
        idx = np.flatnonzero(labels == c)
        picked.append(rng.choice(idx, size=min(k, len(idx)), replace=False))
    return np.sort(np.concatenate(picked))

"""The in-memory dataset every loader returns: uint8 images plus one label column per task."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import DatasetError


@dataclass
class Dataset:
    """A fixed train/test split of RGB uint8 images [N, 3, H, W] with tasks.

    `params` holds everything that determined the content (loader name, seed,
    sizes, derived tasks ...): it is what the feature cache keys on and what
    run.json records, so two Datasets with equal params hold equal pixels.
    """

    name: str
    train_images: torch.Tensor
    test_images: torch.Tensor
    train_labels: dict[str, torch.Tensor]
    test_labels: dict[str, torch.Tensor]
    classes: dict[str, list[str]]
    params: dict = field(default_factory=dict)

    @property
    def tasks(self) -> list[str]:
        return list(self.train_labels)

    @property
    def n_train(self) -> int:
        return int(self.train_images.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.test_images.shape[0])

    def fingerprint(self) -> str:
        """Key of the pixels for the feature cache, derived from params (not from the pixels themselves).

        Which base tasks are kept does not change a pixel, so it is left out;
        derived tasks transform images, so they stay in, in order.
        """
        from .invariance import DERIVED_TASKS

        params = dict(self.params)
        params["tasks"] = [t for t in params.get("tasks", []) if t in DERIVED_TASKS]
        blob = json.dumps({"name": self.name, "params": params}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def validate(self) -> None:
        """Fail early, naming the dataset, when images or labels cannot be probed."""
        for split, imgs, labels in (("train", self.train_images, self.train_labels), ("test", self.test_images, self.test_labels)):
            if imgs.dtype != torch.uint8 or imgs.ndim != 4 or imgs.shape[1] != 3:
                raise DatasetError(f"Dataset {self.name!r}: {split} images must be uint8 [N, 3, H, W], got {imgs.dtype} {tuple(imgs.shape)}.")
            if imgs.shape[0] == 0:
                raise DatasetError(f"Dataset {self.name!r}: the {split} split has no images.")
            for task, y in labels.items():
                if y.shape[0] != imgs.shape[0]:
                    raise DatasetError(f"Dataset {self.name!r}: task {task!r} has {y.shape[0]} {split} labels for {imgs.shape[0]} images.")
        for task, y in self.train_labels.items():
            n = int(torch.unique(y).numel())
            if n < 2:
                raise DatasetError(
                    f"Dataset {self.name!r}: task {task!r} has only one class in the train split "
                    f"({self.classes.get(task, ['?'])[int(y[0])] if len(y) else '?'}); a probe needs at least two."
                )


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

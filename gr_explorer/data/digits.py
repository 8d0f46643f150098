"""scikit-learn's bundled 8x8 handwritten digits: a real dataset that needs no download.

The 80/20 train/test split is fixed (stratified, constant seed), so results
with different sampling seeds are always measured on the same test images.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits

from .base import stratified_indices

TASKS = ["digit"]
SPLIT_SEED = 20240601  # the split never depends on the user's seed
TEST_FRACTION = 0.2
SIDE, N_IMAGES = 8, 1797  # scikit-learn's bundled set


def fixed_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices of the fixed split."""
    test = stratified_indices(labels, int(round(TEST_FRACTION * len(labels))), SPLIT_SEED)
    train = np.setdiff1d(np.arange(len(labels)), test)
    return train, test


def load(*, n_train: int | None, n_test: int | None, seed: int, **_):
    bunch = load_digits()
    # Values are 0..16 ink counts; scale to 0..255 and repeat to RGB.
    pixels = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    y = bunch.target.astype(np.int64)
    train, test = fixed_split(y)
    out = []
    for idx, n in ((train, n_train), (test, n_test)):
        idx = idx[stratified_indices(y[idx], n, seed)]
        x = torch.from_numpy(np.repeat(pixels[idx][:, None], 3, axis=1))
        out.append((x, {"digit": torch.from_numpy(y[idx]).long()}))
    classes = {"digit": [str(d) for d in range(10)]}
    return out[0][0], out[1][0], out[0][1], out[1][1], classes, {}

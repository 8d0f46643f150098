"""`cifar10_mini`: 3,000 real CIFAR-10 photos shipped with gr-explorer, so real-image models can be explored offline.

300 images per class drawn (stratified, fixed seed) from the CIFAR-10 *test* split: 200 per class form this
dataset's train split (probes are fitted on them) and 100 its test split. The CIFAR-10 zoo models were
trained on CIFAR-10 *train* images only, so none of these images was seen in training. Stored as the
original lossless PNGs (32x32 RGB), decoded on load (~0.3 s).

Attribution: CIFAR-10, Alex Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009
(https://www.cs.toronto.edu/~kriz/cifar.html); copied from the PNG export in the public repository
cyizhuo/CIFAR-10-dataset (commit a828d74). CIFAR-10's own terms apply.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .base import stratified_indices

FILE = Path(__file__).resolve().parent / "files" / "cifar10_mini.npz"
TASKS = ["label"]
SIDE, SIZES = 32, (2000, 1000)  # train / test images in the file


def load(*, n_train: int | None, n_test: int | None, seed: int, **_):
    z = np.load(FILE)
    png, off, labels, split = z["png"], z["offsets"], z["labels"].astype(np.int64), z["split"]
    classes = [str(c) for c in z["classes"]]
    out = []
    for s, n in ((0, n_train), (1, n_test)):
        idx = np.flatnonzero(split == s)
        idx = idx[stratified_indices(labels[idx], n, seed)]
        x = np.stack([np.asarray(Image.open(io.BytesIO(png[off[i]:off[i + 1]].tobytes())).convert("RGB")) for i in idx])
        out.append((torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), {"label": torch.from_numpy(labels[idx])}))
    return out[0][0], out[1][0], out[0][1], out[1][1], {"label": classes}, {"source": "CIFAR-10 test split, 300/class"}

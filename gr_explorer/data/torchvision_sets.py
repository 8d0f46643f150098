"""CIFAR-10, CIFAR-100, STL-10 and Fashion-MNIST through torchvision, never hanging offline.

Why the extra layer: torchvision either finds the files or downloads them with
no timeout. Here files are looked for first, an archive the user placed by
hand is unpacked without touching the network, a download (only when allowed)
runs with a per-request timeout, and every failure becomes an OfflineError
that says which files to put where.
"""

from __future__ import annotations

import os
import pickle
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision.datasets as tvd
from torchvision.datasets.utils import extract_archive

from ..errors import DatasetError, OfflineError
from ..files import expand_user
from .base import stratified_indices

#: seconds one download socket operation may block before the source counts as unreachable (the app lowers it)
DOWNLOAD_TIMEOUT_S = float(os.environ.get("GR_EXPLORER_DOWNLOAD_TIMEOUT", "30"))
ENV_VAR = "GR_EXPLORER_DATA"


@dataclass(frozen=True)
class _Source:
    cls_name: str  # torchvision.datasets class
    split_arg: str  # "train" (bool) or "split" (str)
    folder: str  # where the usable files live, relative to the root
    archives: tuple[str, ...]  # what a user can place by hand, relative to the root
    url: str
    side: int  # image side in pixels
    sizes: tuple[int, int]  # images in the train and test splits
    tasks: tuple[str, ...] = ("label",)


SOURCES: dict[str, _Source] = {
    "cifar10": _Source("CIFAR10", "train", "cifar-10-batches-py", ("cifar-10-python.tar.gz",),
                       "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", 32, (50000, 10000)),
    "cifar100": _Source("CIFAR100", "train", "cifar-100-python", ("cifar-100-python.tar.gz",),
                        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", 32, (50000, 10000), ("label", "coarse")),
    "stl10": _Source("STL10", "split", "stl10_binary", ("stl10_binary.tar.gz",),
                     "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz", 96, (5000, 8000)),
    "fashion_mnist": _Source("FashionMNIST", "train", "FashionMNIST/raw",
                             tuple(f"FashionMNIST/raw/{f}" for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                                                     "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")),
                             "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", 28, (60000, 10000)),
}


def default_root(data_root: str | os.PathLike | None = None) -> Path:
    """data_root, else $GR_EXPLORER_DATA, else ~/.cache/gr_explorer/data."""
    root = data_root or os.environ.get(ENV_VAR) or "~/.cache/gr_explorer/data"
    return expand_user(root, "torchvision data folder (--data-root / $GR_EXPLORER_DATA)", DatasetError)


def _make(src: _Source, root: Path, train: bool, download: bool):
    cls = getattr(tvd, src.cls_name)
    split = {"train": train} if src.split_arg == "train" else {"split": "train" if train else "test"}
    return cls(str(root), download=download, **split)


def _download(src: _Source, root: Path, train: bool):
    """Fetch the archive(s) ourselves with a per-request timeout (no process-wide socket setting), then unpack.

    torchvision's own downloader has no timeout, and the only way to give it one is the process-wide
    socket default, which would change every other connection of the process (the app serves many).
    torchvision still checks the files' integrity when it opens them.
    """

    for archive in src.archives:
        dest = root / archive
        if dest.is_file():
            continue
        url = src.url if len(src.archives) == 1 else src.url.rstrip("/") + "/" + Path(archive).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as r, open(tmp, "wb") as f:  # noqa: S310 - fixed URLs
                shutil.copyfileobj(r, f, 1 << 20)
            tmp.replace(dest)
        finally:
            tmp.unlink(missing_ok=True)
    _unpack_local(src, root)
    return _make(src, root, train, download=False)


def _unpack_local(src: _Source, root: Path) -> bool:
    """Unpack archives the user placed by hand (no network); False when they are not all there."""

    paths = [root / a for a in src.archives]
    if not all(p.is_file() for p in paths):
        return False
    for p in paths:
        extract_archive(str(p), str(p.parent))
    return True


def _offline_message(name: str, src: _Source, root: Path, why: str) -> str:
    archives = ", ".join(str(root / a) for a in src.archives)
    return (
        f"Dataset {name!r} is not available in {root} and {why}. "
        f"Expected the extracted files in {root / src.folder}/ or the original archive(s) at {archives} "
        f"(from {src.url}). Download them on a machine with internet access and place them there, "
        f"or point to a folder that has them with --data-root / data_root= or ${ENV_VAR}."
    )


def open_split(name: str, root: Path, train: bool, download: bool):
    """The torchvision dataset object for one split, or OfflineError saying how to supply it."""
    src = SOURCES[name]
    try:
        return _make(src, root, train, download=False)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError):
        pass
    try:
        if _unpack_local(src, root):
            return _make(src, root, train, download=False)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as e:
        raise OfflineError(_offline_message(name, src, root, f"the archive found there could not be used ({e})")) from e
    if not download:
        raise OfflineError(_offline_message(name, src, root, "downloading is switched off (download=False)"))
    try:
        return _download(src, root, train)
    except Exception as e:  # URLError, timeouts, HTTP errors, checksum RuntimeErrors: all mean "not available"
        raise OfflineError(_offline_message(name, src, root, f"could not be downloaded ({type(e).__name__}: {e})")) from e


def _images_labels(name: str, ds) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [N, 3, H, W] numpy images and int labels, whatever layout torchvision uses."""
    data = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else np.asarray(ds.data)
    targets = getattr(ds, "targets", None)
    if targets is None:
        targets = ds.labels
    labels = np.asarray(targets.numpy() if isinstance(targets, torch.Tensor) else targets, dtype=np.int64)
    if data.ndim == 3:  # greyscale [N, H, W]
        data = np.repeat(data[:, None], 3, axis=1)
    elif data.shape[-1] == 3:  # CIFAR: [N, H, W, 3]
        data = data.transpose(0, 3, 1, 2)
    return data, labels


def _cifar100_coarse(root: Path, train: bool) -> tuple[np.ndarray, list[str]]:
    folder = root / SOURCES["cifar100"].folder
    with open(folder / ("train" if train else "test"), "rb") as f:
        coarse = np.asarray(pickle.load(f, encoding="latin1")["coarse_labels"], dtype=np.int64)
    with open(folder / "meta", "rb") as f:
        names = list(pickle.load(f, encoding="latin1")["coarse_label_names"])
    return coarse, names


def load(name: str, *, n_train: int | None, n_test: int | None, seed: int, data_root=None, download: bool = True, **_):
    """Both splits, subsampled (stratified on `label`) before they become tensors."""
    root = default_root(data_root)
    images, labels, classes = {}, {}, {}
    for split, train, n in (("train", True, n_train), ("test", False, n_test)):
        ds = open_split(name, root, train, download)
        x, y = _images_labels(name, ds)
        idx = stratified_indices(y, n, seed)
        images[split] = torch.from_numpy(np.ascontiguousarray(x[idx]))
        labels[split] = {"label": torch.from_numpy(y[idx]).long()}
        classes["label"] = [str(c) for c in ds.classes]
        if name == "cifar100":
            coarse, names = _cifar100_coarse(root, train)
            labels[split]["coarse"] = torch.from_numpy(coarse[idx]).long()
            classes["coarse"] = names
    return images["train"], images["test"], labels["train"], labels["test"], classes, {}

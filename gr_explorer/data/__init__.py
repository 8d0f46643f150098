"""Datasets by spec string: images plus one label column per task, with a fixed train/test split.

`load_dataset` is the single entry point: it resolves the spec, checks the
requested tasks before any pixel is read, lets the source load (and
subsample) its images, makes sizes uniform, adds derived invariance tasks,
records in `params` everything that determined the content, and validates.
"""

from __future__ import annotations

from ..errors import DatasetError, did_you_mean
from ..names import FINGERPRINTS
from ..progress import Progress, ShouldStop
from . import cifar10_mini, digits, imagefolder, invariance, shapes, torchvision_sets
from .base import Dataset, Images, stratified_indices
from .invariance import DERIVED_TASKS
from .resize import resize_batch

__all__ = ["Dataset", "DERIVED_TASKS", "dataset_tasks", "image_bytes", "list_datasets", "load_dataset",
           "stratified_indices"]

_NAMED = {
    "shapes": shapes.TASKS,
    "cifar10_mini": cifar10_mini.TASKS,
    "digits": digits.TASKS,
    **{name: list(src.tasks) for name, src in torchvision_sets.SOURCES.items()},
}
_IMAGEFOLDER = "imagefolder"


def list_datasets() -> list[str]:
    """Valid dataset specs (the image folder one with a placeholder path)."""
    return [*_NAMED, f"{_IMAGEFOLDER}:<path>"]


def _parse(spec: str) -> tuple[str, str | None]:
    """(kind, path): kind is a named dataset or 'imagefolder'."""
    if not isinstance(spec, str) or not spec.strip():
        raise DatasetError(f"A dataset spec must be a non-empty string, got {spec!r}. {did_you_mean('', list_datasets())}")
    s = spec.strip()
    head, sep, rest = s.partition(":")
    if head.lower() == _IMAGEFOLDER:
        if not rest.strip():
            raise DatasetError(f"Dataset spec {spec!r} needs a folder: imagefolder:<path>, e.g. imagefolder:./my_images.")
        return _IMAGEFOLDER, rest.strip()
    key = s.lower().replace("-", "_")
    loose = {n.replace("_", ""): n for n in _NAMED}
    if key in _NAMED:
        return key, None
    if key.replace("_", "") in loose:
        return loose[key.replace("_", "")], None
    raise DatasetError(f"Unknown dataset {spec!r}. {did_you_mean(s, list_datasets())}")


def dataset_tasks(spec: str) -> list[str]:
    """Base tasks of a spec, without loading any pixels (derived tasks not included)."""
    kind, _ = _parse(spec)
    return list(imagefolder.TASKS if kind == _IMAGEFOLDER else _NAMED[kind])


def image_bytes(spec: str, n_train: int | None = None, n_test: int | None = None, image_size: int | None = None
                ) -> tuple[int, int]:
    """(train, test) bytes the images of a dataset spec hold in memory once loaded, without reading a pixel.

    In-memory datasets hold uint8 [N, 3, side, side] per split (N capped by the split's size; generated `shapes`
    also hold each image's drawn parameters while rendering); image folders are read batch by batch, so 0."""
    kind, _ = _parse(spec)
    if kind == _IMAGEFOLDER:
        return 0, 0
    if kind == "shapes":
        per = shapes.BYTES_PER_IMAGE if image_size is None else shapes.BYTES_PER_IMAGE + 3 * image_size**2
        return (per * (shapes.DEFAULT_N_TRAIN if n_train is None else n_train),
                per * (shapes.DEFAULT_N_TEST if n_test is None else n_test))
    if kind == "digits":
        n_te = int(round(digits.TEST_FRACTION * digits.N_IMAGES))
        side, sizes = digits.SIDE, (digits.N_IMAGES - n_te, n_te)
    elif kind == "cifar10_mini":
        side, sizes = cifar10_mini.SIDE, cifar10_mini.SIZES
    else:
        src = torchvision_sets.SOURCES[kind]
        side, sizes = src.side, src.sizes
    per = 3 * (image_size or side) ** 2
    return tuple(per * (cap if n is None else min(n, cap)) for n, cap in zip((n_train, n_test), sizes))


def _resolve_tasks(spec: str, tasks, base: list[str]) -> list[str]:
    if tasks is None:
        return list(base)
    if isinstance(tasks, str):
        tasks = [tasks]
    valid = [*base, *DERIVED_TASKS]
    out: list[str] = []
    for t in tasks:
        if t not in valid:
            raise DatasetError(f"Unknown task {t!r} for dataset {spec!r}. {did_you_mean(str(t), valid)}")
        if t not in out:
            out.append(t)
    if not out:
        raise DatasetError(f"No tasks requested for dataset {spec!r}. {did_you_mean('', valid)}")
    return out


def _check_count(what: str, value, minimum: int, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DatasetError(f"{what} must be an integer >= {minimum}{' or None' if allow_none else ''}, got {value!r}.")


def load_dataset(
    spec: str,
    *,
    tasks: list[str] | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    data_root: str | None = None,
    download: bool = True,
    image_size: int | None = None,
    fingerprint: str = "stat",
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    confine: tuple | None = None,
) -> Dataset:
    """Load a dataset by spec: shapes, digits, cifar10, cifar100, stl10, fashion_mnist, imagefolder:<path>.

    tasks: base and/or derived tasks (None: all base tasks). n_train/n_test:
    stratified subsample on the first base task (shapes: generated at exactly
    that size). image_size: resize shorter side + centre crop. fingerprint: how an image folder's files are
    recognised in the feature cache, "stat" (path, size, mtime) or "content" (their bytes; see data.imagefolder);
    other datasets are always keyed on their pixels. `progress` / `should_stop`: the generated `shapes` report
    ProgressEvent('generate', ...) per chunk of images and stop there (progress.Cancelled) when asked. confine: for
    an image folder, the only folders its symlinks may lead into (the app's data roots; None: anywhere).
    """
    kind, path = _parse(spec)
    base = dataset_tasks(spec)
    wanted = _resolve_tasks(spec, tasks, base)
    _check_count("n_train", n_train, 1)
    _check_count("n_test", n_test, 1)
    _check_count("seed", seed, 0, allow_none=False)
    _check_count("image_size", image_size, 1)
    if fingerprint not in FINGERPRINTS:
        raise DatasetError(f"fingerprint={fingerprint!r} is not valid. Valid: {', '.join(FINGERPRINTS)}.")

    common = dict(n_train=n_train, n_test=n_test, seed=seed, image_size=image_size, data_root=data_root, download=download)
    if kind == _IMAGEFOLDER:
        name = f"{_IMAGEFOLDER}:{path}"
        raw = imagefolder.load(path, **common, fingerprint=fingerprint, confine=confine)
    elif kind == "shapes":
        name, raw = kind, shapes.load(**common, progress=progress, should_stop=should_stop)
    elif kind == "digits":
        name, raw = kind, digits.load(**common)
    elif kind == "cifar10_mini":
        name, raw = kind, cifar10_mini.load(**common)
    else:
        name, raw = kind, torchvision_sets.load(kind, **common)
    x_tr, x_te, y_tr, y_te, all_classes, extra = raw

    if image_size is not None and kind != _IMAGEFOLDER:  # image folders resize while decoding
        x_tr, x_te = resize_batch(x_tr, image_size), resize_batch(x_te, image_size)

    train_labels, test_labels, classes = {}, {}, {}
    for t in wanted:
        if t in DERIVED_TASKS:
            sample = x_tr.get(slice(0, min(64, len(x_tr)))) if isinstance(x_tr, Images) else x_tr[:1000]
            invariance.check(t, sample, name)
            train_labels[t] = invariance.marks(t, len(x_tr), seed, "train")
            test_labels[t] = invariance.marks(t, len(x_te), seed, "test")
            classes[t] = list(invariance.CLASSES[t])
        else:
            train_labels[t], test_labels[t], classes[t] = y_tr[t], y_te[t], list(all_classes[t])

    params = {"spec": name, "seed": seed, "n_train": n_train, "n_test": n_test, "image_size": image_size, "tasks": wanted, **extra}
    ds = Dataset(name=name, train_images=x_tr, test_images=x_te, train_labels=train_labels,
                 test_labels=test_labels, classes=classes, params=params)
    ds.validate()
    return ds

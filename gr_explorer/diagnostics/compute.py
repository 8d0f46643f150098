"""One entry point: the label-free diagnostics of one model's features as tidy tables.

    diag = compute_diagnostics(model, features, dataset.train_images, metrics=["rankme", "cka", "invariance"])
    diag.metrics   # model, cut, depth, part, dim, metric, value, augmentation
    diag.cka       # model_a, cut_a, depth_a, model_b, cut_b, depth_b, cka

Everything but invariance needs only the features a sweep already extracted
(train split); invariance also needs the model and the train images, and costs
one forward pass of at most 1,000 augmented images per augmentation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import pandas as pd
import torch

from ..augment import AugmentConfig
from ..errors import DiagnosticError, did_you_mean
from ..features import Features
from ..models import Model
from ..names import METRICS as ALL_METRICS
from ..progress import Cancelled, Progress, ProgressEvent, ShouldStop
from .cka import CKA_COLUMNS, cka_table
from .invariance import AUGMENTATIONS, MAX_IMAGES, augmentation_invariance
from .moments import DEFAULT_MEMORY_BUDGET, check_features, float64_device
from .spectral import SPECTRAL_METRICS, spectral_metrics

METRICS = tuple(ALL_METRICS)
#: What runs when no metric is named: everything that needs only the features.
DEFAULT_METRICS = SPECTRAL_METRICS + ("cka",)
METRIC_COLUMNS = ["model", "cut", "depth", "part", "dim", "metric", "value", "augmentation"]


@dataclass
class Diagnostics:
    metrics: pd.DataFrame  # tidy: one row per (cut, metric[, augmentation])
    cka: pd.DataFrame  # long: one row per ordered pair of cuts
    seconds: dict[str, float] = field(default_factory=dict)  # spectral, cka, invariance
    forward_batches: int = 0  # extra forward batches (invariance only)
    images_forwarded: int = 0


def validate_metrics(metrics: Sequence[str] | str | None) -> list[str]:
    """Metric names in canonical order; an unknown name raises, listing the valid ones."""
    if metrics is None:
        return list(DEFAULT_METRICS)
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise DiagnosticError(f"No diagnostic metric was asked for. Valid: {', '.join(METRICS)}.")
    for m in names:
        if m not in METRICS:
            raise DiagnosticError(f"Unknown diagnostic metric {m!r}. {did_you_mean(str(m), METRICS)}")
    return [m for m in METRICS if m in names]


def compute_diagnostics(model: Model | None, features: Features, dataset_images: torch.Tensor | None = None,
                        metrics: Sequence[str] | str | None = None, *, device: str | torch.device | None = None,
                        seed: int = 0, name: str | None = None, augment: AugmentConfig | None = None,
                        augmentations: Sequence[str] = AUGMENTATIONS, n_images: int = MAX_IMAGES, batch_size: int = 256,
                        memory_budget: int = DEFAULT_MEMORY_BUDGET, progress: Progress | None = None,
                        should_stop: ShouldStop | None = None) -> Diagnostics:
    """Label-free metrics of every cut in `features` (computed on `features.train`).

    model: needed for `invariance` (and gives the table's model name); None otherwise.
    dataset_images: the uint8 train images the features came from (invariance only).
    metrics: names from METRICS; None = DEFAULT_METRICS (all but invariance).
    augment: strengths for invariance (default AugmentConfig(); pass a card's to
    match a model's own training recipe). seed: which images invariance uses, and
    its augmentation draws. memory_budget: bytes for chunked float64 products.
    Reports ProgressEvent('metrics', ...) and stops between cuts / batches when
    `should_stop()` says so (progress.Cancelled).
    """
    wanted = validate_metrics(metrics)
    if not isinstance(features, Features):
        raise DiagnosticError(f"features must be a gr_explorer Features object (from extract_features or a sweep), "
                              f"got {type(features).__name__}.")
    if "invariance" in wanted and (model is None or dataset_images is None):
        missing = " and ".join(w for w, v in (("the model", model), ("the train images", dataset_images)) if v is None)
        raise DiagnosticError(f"The 'invariance' metric needs {missing} (one extra forward pass of augmented images). "
                              f"Pass them, or ask only for metrics that need features alone: {', '.join(DEFAULT_METRICS)}.")
    model_name = name or (model.name if model is not None else "model")
    n = check_features(features.train, "train features")
    fdev = float64_device(device)
    def report(done: int, total: int, detail: str) -> None:
        if progress is not None:
            progress(ProgressEvent("metrics", done, total, model_name, detail))
        if should_stop is not None and should_stop() and done < total:
            raise Cancelled()

    cuts = list(features.cuts)
    rows: list[tuple] = []
    seconds: dict[str, float] = {}

    def add(cut, metric, value, aug=""):
        rows.append((model_name, cut.name, cut.depth, cut.part, cut.dim, metric, float(value), aug))

    spectral = [m for m in wanted if m in SPECTRAL_METRICS]
    if spectral:
        t0 = time.perf_counter()
        for i, c in enumerate(cuts):
            for metric, value in spectral_metrics(features.train[c.name], fdev, spectral, memory_budget).items():
                add(c, metric, value)
            report(i + 1, len(cuts), f"spectrum of {c.name}")
        seconds["spectral"] = time.perf_counter() - t0
    cka = pd.DataFrame(columns=CKA_COLUMNS)
    if "cka" in wanted:
        t0 = time.perf_counter()
        report(0, 1, f"CKA between {len(cuts)} cuts ({n} images)")
        cka = cka_table(model_name, cuts, features.train, fdev, memory_budget)
        seconds["cka"] = time.perf_counter() - t0
    extra = (0, 0)
    if "invariance" in wanted:
        t0 = time.perf_counter()
        res = augmentation_invariance(model, features.train, dataset_images, augmentations=augmentations, config=augment,
                                      n_images=n_images, seed=seed, device=device, batch_size=batch_size,
                                      progress=report, columns=[c for c in features.columns if c.name in features.train])
        by_name = {c.name: c for c in cuts}
        for r in res.rows:
            add(by_name[r["cut"]], "invariance", r["invariance"], r["augmentation"])
            add(by_name[r["cut"]], "retrieval", r["retrieval"], r["augmentation"])
        extra = (res.forward_batches, res.images_forwarded)
        seconds["invariance"] = time.perf_counter() - t0
    table = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    return Diagnostics(table, cka, seconds, *extra)

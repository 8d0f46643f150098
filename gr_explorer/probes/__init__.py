"""Probes: readouts fitted on frozen features, for all cuts (and tasks) together.

    rows = run_probes(["linear", "knn"], train_feats, train_labels, test_feats, test_labels, device="cuda")

`train_feats`/`test_feats` map cut name -> FloatTensor [N, D_cut]; `train_labels`/
`test_labels` map task name -> LongTensor [N] of class ids 0..C_task-1. Each returned
`ProbeResult` is one (cut, task, probe): its test accuracy and per-test-image
correctness (kept for bootstrap intervals at no refit cost), the validation accuracy
of the chosen hyper-parameter and of every one tried (`search`), that hyper-parameter
(`C=0.1`, `k=20`), and whether the solver converged.

* linear: multinomial logistic regression (sklearn's objective) on standardised
  features; all cuts x tasks x C solved by one batched L-BFGS (see probes.linear).
* knn: cosine k-NN with exp(sim / T) weighted votes, several k from one search
  (see probes.knn).

Hyper-parameters are chosen on one stratified validation split of the train set
(`validation_split`, the same for every cut, task and probe for a given seed),
then the probe is refitted on all train data and scored on test.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch

from ..errors import ProbeError, did_you_mean
from ..progress import Progress, Reporter, ShouldStop
from .knn import DEFAULT_KS, DEFAULT_TEMPERATURE, KnnProbeResult, fit_knn_probes, format_k, knn_predict
from .linear import DEFAULT_GRID, DEFAULT_MEMORY_BUDGET, LinearProbeResult, fit_linear_probes, format_C, standardize
from .rows import all_finite, count_nonfinite_rows
from .solver import lbfgs_softmax
from .split import validation_split

PROBES: tuple[str, ...] = ("linear", "knn")


class ConvergenceWarning(UserWarning):
    """A linear probe stopped at its iteration limit before meeting the tolerance."""


@dataclass
class ProbeResult:
    """One fitted probe: a (cut, task, probe) with everything a table, an interval or a plot needs."""

    cut: str
    task: str
    probe: str
    accuracy: float  # test accuracy of the refitted probe
    val_accuracy: float  # validation accuracy of the chosen hyper-parameter
    hparam: str  # 'C=0.1' / 'k=20' (k as used: capped at the train-bank size)
    n_classes: int
    converged: bool = True
    n_iter: int = 0
    search: dict[float, float] = field(default_factory=dict)  # hyper-parameter value -> validation accuracy
    correct: torch.Tensor | None = field(default=None, compare=False, repr=False)  # bool [n_test]


def _validate(
    probes: Sequence[str],
    train_feats: Mapping[str, torch.Tensor],
    train_labels: Mapping[str, torch.Tensor],
    test_feats: Mapping[str, torch.Tensor],
    test_labels: Mapping[str, torch.Tensor],
    val_fraction: float,
) -> tuple[list[str], dict[str, int]]:
    if isinstance(probes, str):
        probes = [probes]
    probes = list(dict.fromkeys(probes))
    if not probes:
        raise ProbeError(f"No probe was asked for. Valid: {', '.join(PROBES)}.")
    for p in probes:
        if p not in PROBES:
            raise ProbeError(f"Unknown probe {p!r}. {did_you_mean(str(p), PROBES)}")
    for split, feats in (("train", train_feats), ("test", test_feats)):
        if not feats:
            raise ProbeError(f"The {split} feature dict is empty: there is no cut to probe. Valid: a dict cut name -> FloatTensor [N, D].")
    for split, labels in (("train", train_labels), ("test", test_labels)):
        if not labels:
            raise ProbeError(f"The {split} label dict is empty: there is no task to probe. Valid: a dict task name -> LongTensor [N].")
    if list(train_feats) != list(test_feats):
        missing = [c for c in train_feats if c not in test_feats]
        extra = [c for c in test_feats if c not in train_feats]
        raise ProbeError(
            f"Train and test features must have the same cuts in the same order; "
            f"missing from test: {missing}, only in test: {extra}. Valid cuts (train): {', '.join(train_feats)}."
        )
    if list(train_labels) != list(test_labels):
        missing = [t for t in train_labels if t not in test_labels]
        extra = [t for t in test_labels if t not in train_labels]
        raise ProbeError(
            f"Train and test labels must have the same tasks in the same order; "
            f"missing from test: {missing}, only in test: {extra}. Valid tasks (train): {', '.join(train_labels)}."
        )
    if not (isinstance(val_fraction, (int, float)) and 0.0 < float(val_fraction) < 1.0):
        raise ProbeError(f"val_fraction={val_fraction!r} is out of range. Valid: a number strictly between 0 and 1 (e.g. 0.2).")
    n = {}
    for split, feats, labels in (("train", train_feats, train_labels), ("test", test_feats, test_labels)):
        for cut, x in feats.items():
            if not isinstance(x, torch.Tensor) or x.ndim != 2:
                shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise ProbeError(f"Cut {cut!r}: {split} features must be a 2-D tensor [N, D], got {shape}. Valid: pool spatial maps to [N, D] first.")
            if x.shape[0] == 0 or x.shape[1] == 0:
                raise ProbeError(f"Cut {cut!r}: {split} features are empty {tuple(x.shape)}. Valid: N >= 1 samples and D >= 1 dims.")
            if x.is_complex() or x.dtype == torch.bool:
                raise ProbeError(f"Cut {cut!r}: {split} features have dtype {x.dtype}. Valid: a real floating dtype (float32, float16, bfloat16, float64).")
            if x.dtype.is_floating_point and not all_finite(x):  # row chunks: no N x D mask at a million images
                bad = count_nonfinite_rows(x)
                raise ProbeError(f"Cut {cut!r}: {split} features contain NaN or inf ({bad} of {x.shape[0]} samples). Valid: finite values only.")
        for task, y in labels.items():
            if not isinstance(y, torch.Tensor) or y.ndim != 1:
                shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
                raise ProbeError(f"Task {task!r}: {split} labels must be a 1-D tensor [N], got {shape}. Valid: LongTensor of class ids 0..C-1.")
            if y.dtype.is_floating_point or y.is_complex() or y.dtype == torch.bool:
                raise ProbeError(f"Task {task!r}: {split} labels have dtype {y.dtype}. Valid: an integer dtype (class ids 0..C-1).")
            if y.numel() and int(y.min()) < 0:
                raise ProbeError(f"Task {task!r}: {split} labels contain a negative class id ({int(y.min())}). Valid: class ids 0..C-1.")
        ns = {("cut", c): x.shape[0] for c, x in feats.items()}
        ns.update({("task", t): y.shape[0] for t, y in labels.items()})
        if len(set(ns.values())) != 1:
            ref_kind, ref_name = next(iter(ns))
            ref = ns[(ref_kind, ref_name)]
            bad = [(k, nm, v) for (k, nm), v in ns.items() if v != ref]
            k, nm, v = bad[0]
            raise ProbeError(
                f"Mismatched number of {split} samples: {k} {nm!r} has {v} but {ref_kind} {ref_name!r} has {ref}. "
                f"Valid: every {split} feature tensor and label tensor has the same N."
            )
        n[split] = next(iter(ns.values()))
    for cut in train_feats:
        d_tr, d_te = train_feats[cut].shape[1], test_feats[cut].shape[1]
        if d_tr != d_te:
            raise ProbeError(f"Cut {cut!r}: train features have D={d_tr} but test features D={d_te}. Valid: the same D in both splits.")
    n_classes = {}
    for task in train_labels:
        present = torch.unique(train_labels[task])
        if present.numel() < 2:
            only = int(present[0]) if present.numel() else "none"
            raise ProbeError(
                f"Task {task!r} has {present.numel()} class in the train split (class {only}); a probe needs at least 2. "
                f"Valid: tasks with >= 2 classes in train."
            )
        n_classes[task] = int(max(int(train_labels[task].max()), int(test_labels[task].max()) if test_labels[task].numel() else 0)) + 1
    if n["train"] < 3:
        raise ProbeError(f"The train split has {n['train']} samples; choosing hyper-parameters needs a validation split. Valid: N >= 3 train samples.")
    return probes, n_classes


def run_probes(
    probes: Sequence[str],
    train_feats: dict[str, torch.Tensor],
    train_labels: dict[str, torch.Tensor],
    test_feats: dict[str, torch.Tensor],
    test_labels: dict[str, torch.Tensor],
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    val_fraction: float = 0.2,
    linear_grid: Sequence[float] | None = None,
    knn_ks: Sequence[int] | None = None,
    knn_temperature: float = DEFAULT_TEMPERATURE,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    model: str = "",
    linear_max_iter: int = 1000,
    linear_tol: float = 1e-4,
    linear_memory_budget: int = DEFAULT_MEMORY_BUDGET,
    knn_chunk_size: int = 1024,
    knn_memory_budget: int | None = None,
) -> list[ProbeResult]:
    """Fit every probe for every (cut, task); one ProbeResult per (cut, task, probe).

    Results are ordered by cut (dict order), then task, then probe (order given).
    Reports ProgressEvent('probe', done, total, model) after every chunk of cuts and
    stops between chunks (progress.Cancelled) when `should_stop()` says so. A linear
    fit that hit its iteration limit is flagged `converged=False` and warned about. Both probes
    stream features that do not fit their memory budget in row chunks (`knn_memory_budget`
    defaults to the linear probe's).
    """
    probes, n_classes = _validate(probes, train_feats, train_labels, test_feats, test_labels, val_fraction)
    grid = _check_grid(linear_grid)
    ks = _check_ks(knn_ks)
    if not (isinstance(knn_temperature, (int, float)) and math.isfinite(knn_temperature) and knn_temperature > 0):
        raise ProbeError(f"knn_temperature={knn_temperature!r} is invalid. Valid: a positive number (default 0.07).")
    from ..device import resolve_device

    device = resolve_device(device)
    fit_idx, val_idx = validation_split(train_labels, val_fraction, seed)
    cuts, tasks = list(train_feats), list(train_labels)
    report = Reporter(progress, should_stop, "probe", len(cuts) * len(tasks) * len(probes), model)

    results: dict[tuple[str, str, str], ProbeResult] = {}
    for probe in probes:
        if probe == "linear":
            res = fit_linear_probes(
                train_feats, train_labels, test_feats, test_labels, fit_idx=fit_idx, val_idx=val_idx, grid=grid,
                n_classes=n_classes, device=device, max_iter=linear_max_iter, tol=linear_tol,
                memory_budget=linear_memory_budget, progress=report.tick,
            )
            for (cut, task), r in res.items():
                results[(cut, task, probe)] = ProbeResult(
                    cut, task, probe, r.accuracy, r.val_accuracy, format_C(r.C), n_classes[task], r.converged, r.n_iter,
                    dict(r.val_accuracies), r.correct)
            stuck = [f"{c}/{t}" for (c, t), r in res.items() if not r.converged]
            if stuck:
                warnings.warn(f"{model + ': ' if model else ''}the linear probe did not converge within {linear_max_iter} "
                              f"iterations for {len(stuck)} (cut, task) fit(s): {', '.join(stuck[:6])}"
                              f"{' ...' if len(stuck) > 6 else ''}. Their accuracies may be slightly low "
                              "(the converged column says which).", ConvergenceWarning, stacklevel=2)
        elif probe == "knn":
            res = fit_knn_probes(
                train_feats, train_labels, test_feats, test_labels, fit_idx=fit_idx, val_idx=val_idx, ks=ks,
                temperature=knn_temperature, n_classes=n_classes, device=device, chunk_size=knn_chunk_size,
                memory_budget=linear_memory_budget if knn_memory_budget is None else knn_memory_budget,
                progress=report.tick,
            )
            for (cut, task), r in res.items():
                results[(cut, task, probe)] = ProbeResult(
                    cut, task, probe, r.accuracy, r.val_accuracy, format_k(r.k_used), n_classes[task],
                    search={float(k): v for k, v in r.val_accuracies.items()}, correct=r.correct)
    return [results[(cut, task, probe)] for cut in cuts for task in tasks for probe in probes]


def _check_grid(grid) -> list[float] | None:
    if grid is None:
        return None
    try:
        vals = [float(c) for c in grid]
    except (TypeError, ValueError):
        raise ProbeError(f"linear_grid={grid!r} is not a list of numbers. Valid: positive C values, e.g. [0.01, 0.1, 1, 10].") from None
    if not vals or any(not math.isfinite(c) or c <= 0 for c in vals):
        raise ProbeError(f"linear_grid={grid!r} is invalid. Valid: a non-empty list of positive, finite C values, e.g. [0.01, 0.1, 1, 10].")
    return vals


def _check_ks(ks) -> list[int] | None:
    if ks is None:
        return None
    try:
        vals = [int(k) for k in ks]
    except (TypeError, ValueError):
        raise ProbeError(f"knn_ks={ks!r} is not a list of integers. Valid: positive k values, e.g. [5, 10, 20, 50].") from None
    if not vals or any(k < 1 for k in vals) or any(float(k) != float(kf) for k, kf in zip(vals, ks)):
        raise ProbeError(f"knn_ks={ks!r} is invalid. Valid: a non-empty list of positive integers, e.g. [5, 10, 20, 50].")
    return vals


__all__ = [
    "DEFAULT_GRID",
    "DEFAULT_KS",
    "PROBES",
    "ConvergenceWarning",
    "KnnProbeResult",
    "LinearProbeResult",
    "ProbeResult",
    "fit_knn_probes",
    "fit_linear_probes",
    "knn_predict",
    "lbfgs_softmax",
    "run_probes",
    "standardize",
    "validation_split",
]

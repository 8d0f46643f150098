"""Probes: heads fitted on frozen features, for all cuts (and tasks) together.

    rows = run_probes(["linear", "knn"], train_feats, train_labels, test_feats, test_labels, device="cuda")

`train_feats`/`test_feats` map cut name -> FloatTensor [N, D_cut]; `train_labels`/
`test_labels` map task name -> LongTensor [N] of class ids 0..C_task-1. Each returned
`ProbeResult` (probes.base) is one (cut, task, probe): its test accuracy and per-test-image
correctness (kept for bootstrap intervals at no refit cost), the validation accuracy
of the chosen hyper-parameter and of every one tried (`search`), that hyper-parameter
as numbers (`hparam`, `value`, `used`), and whether the solver converged.

* linear: multinomial logistic regression (sklearn's objective) on standardised
  features; all cuts x tasks x C solved by one batched L-BFGS (see probes.linear).
* knn: cosine k-NN with exp(sim / T) weighted votes, several k from one search
  (see probes.knn).
* attentive: multi-query cross-attention over a cut's tokens [N, T, C], trained
  with AdamW, batched over cuts, tasks and (lr, wd) (see probes.attentive).

Every head implements `probes.base.Head`. Hyper-parameters are chosen on one
stratified validation split of the train set (`validation_split`, the same for
every cut, task and probe for a given seed; or the `split` given), then the
probe is refitted on all train data (or the `refit_idx` rows) and scored on test.
"""

from __future__ import annotations

import math
import warnings
from typing import Mapping, Sequence

import torch

from ..device import resolve_device
from ..errors import ProbeError, did_you_mean
from ..names import PROBES
from ..progress import Progress, Reporter, ShouldStop
from .attentive import AttentiveHead, AttentiveProbeResult, fit_attentive_probes
from .base import Head, ProbeResult
from .knn import (
    DEFAULT_KS,
    DEFAULT_TEMPERATURE,
    KnnHead,
    KnnProbeResult,
    fit_knn_probes,
    knn_predict,
)
from .linear import (
    DEFAULT_GRID,
    DEFAULT_MEMORY_BUDGET,
    LinearHead,
    LinearProbeResult,
    fit_linear_probes,
    standardize,
)
from .rows import all_finite, count_nonfinite_rows
from .solver import lbfgs_softmax
from .split import validation_size, validation_split

#: the head class of every probe name (names.PROBES declares the names)
HEADS: dict[str, type[Head]] = {h.name: h for h in (LinearHead, KnnHead, AttentiveHead)}
assert set(HEADS) == set(PROBES), "names.PROBES and the implemented heads differ"


class ConvergenceWarning(UserWarning):
    """A linear probe stopped at its iteration limit before meeting the tolerance."""


def _check_probes(probes: Sequence[str]) -> list[str]:
    if isinstance(probes, str):
        probes = [probes]
    probes = list(dict.fromkeys(probes))
    if not probes:
        raise ProbeError(f"No probe was asked for. Valid: {', '.join(PROBES)}.")
    for p in probes:
        if p not in PROBES:
            raise ProbeError(f"Unknown probe {p!r}. {did_you_mean(str(p), PROBES)}")
    return probes


def _check_same_keys(kind: str, what: str, train: Mapping, test: Mapping) -> None:
    if not train or not test:
        split = "train" if not train else "test"
        valid = "a dict cut name -> FloatTensor [N, D]" if kind == "cut" else "a dict task name -> LongTensor [N]"
        raise ProbeError(f"The {split} {'feature' if kind == 'cut' else 'label'} dict is empty: there is no {kind} to "
                         f"probe. Valid: {valid}.")
    if list(train) != list(test):
        missing = [c for c in train if c not in test]
        extra = [c for c in test if c not in train]
        raise ProbeError(f"Train and test {what} must have the same {kind}s in the same order; missing from test: "
                         f"{missing}, only in test: {extra}. Valid {kind}s (train): {', '.join(train)}.")


def _check_features(split: str, feats: Mapping[str, torch.Tensor]) -> None:
    for cut, x in feats.items():
        if not isinstance(x, torch.Tensor) or x.ndim != 2:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ProbeError(f"Cut {cut!r}: {split} features must be a 2-D tensor [N, D], got {shape}. Valid: pool "
                             "spatial maps to [N, D] first.")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ProbeError(f"Cut {cut!r}: {split} features are empty {tuple(x.shape)}. Valid: N >= 1 samples and "
                             "D >= 1 dims.")
        if x.is_complex() or x.dtype == torch.bool:
            raise ProbeError(f"Cut {cut!r}: {split} features have dtype {x.dtype}. Valid: a real floating dtype "
                             "(float32, float16, bfloat16, float64).")
        if x.dtype.is_floating_point and not all_finite(x):  # row chunks: no N x D mask at a million images
            bad = count_nonfinite_rows(x)
            raise ProbeError(f"Cut {cut!r}: {split} features contain NaN or inf ({bad} of {x.shape[0]} samples). "
                             "Valid: finite values only.")


def _check_labels(split: str, labels: Mapping[str, torch.Tensor]) -> None:
    for task, y in labels.items():
        if not isinstance(y, torch.Tensor) or y.ndim != 1:
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ProbeError(f"Task {task!r}: {split} labels must be a 1-D tensor [N], got {shape}. Valid: LongTensor "
                             "of class ids 0..C-1.")
        if y.dtype.is_floating_point or y.is_complex() or y.dtype == torch.bool:
            raise ProbeError(f"Task {task!r}: {split} labels have dtype {y.dtype}. Valid: an integer dtype (class ids "
                             "0..C-1).")
        if y.numel() and int(y.min()) < 0:
            raise ProbeError(f"Task {task!r}: {split} labels contain a negative class id ({int(y.min())}). Valid: "
                             "class ids 0..C-1.")


def _count(split: str, feats: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor]) -> int:
    """The one N every feature and label tensor of a split shares."""
    ns = {("cut", c): x.shape[0] for c, x in feats.items()}
    ns.update({("task", t): y.shape[0] for t, y in labels.items()})
    (ref_kind, ref_name), ref = next(iter(ns.items()))
    for (kind, name), v in ns.items():
        if v != ref:
            raise ProbeError(f"Mismatched number of {split} samples: {kind} {name!r} has {v} but {ref_kind} "
                             f"{ref_name!r} has {ref}. Valid: every {split} feature tensor and label tensor has the "
                             "same N.")
    return ref


def _classes(train_labels: Mapping[str, torch.Tensor], test_labels: Mapping[str, torch.Tensor]) -> dict[str, int]:
    n_classes = {}
    for task, y in train_labels.items():
        present = torch.unique(y)
        if present.numel() < 2:
            only = int(present[0]) if present.numel() else "none"
            raise ProbeError(f"Task {task!r} has {present.numel()} class in the train split (class {only}); a probe "
                             "needs at least 2. Valid: tasks with >= 2 classes in train.")
        top = int(test_labels[task].max()) if test_labels[task].numel() else 0
        n_classes[task] = max(int(y.max()), top) + 1
    return n_classes


def _check_tokens(split: str, tokens: Mapping[str, torch.Tensor], feats: Mapping[str, torch.Tensor]) -> None:
    for cut, x in tokens.items():
        if cut not in feats:
            raise ProbeError(f"{split} tokens are given for {cut!r}, which is not a cut of the features. Valid: "
                             f"{', '.join(feats)}.")
        if not isinstance(x, torch.Tensor) or x.ndim != 3 or 0 in x.shape:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ProbeError(f"Cut {cut!r}: {split} tokens must be a non-empty 3-D tensor [N, T, C], got {shape}.")
        if x.shape[0] != feats[cut].shape[0]:
            raise ProbeError(f"Cut {cut!r}: {split} tokens have N={x.shape[0]} but its features N={feats[cut].shape[0]}. "
                             "Valid: the same images in both.")
        if x.dtype.is_floating_point and not all_finite(x.reshape(x.shape[0], -1)):
            raise ProbeError(f"Cut {cut!r}: {split} tokens contain NaN or inf. Valid: finite values only.")


def _check_split(split, refit_idx, n_train: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A given (fit, val) split and refit rows: in range, fit and val non-empty and disjoint."""
    if split is None and refit_idx is None:
        return None
    parts = {"refit_idx": refit_idx} if split is None else {"fit_idx": split[0], "val_idx": split[1],
                                                            "refit_idx": refit_idx}
    for name, idx in parts.items():
        if idx is None:
            continue
        if not isinstance(idx, torch.Tensor) or idx.ndim != 1 or idx.numel() == 0 or idx.dtype != torch.long:
            raise ProbeError(f"{name} must be a non-empty 1-D LongTensor of train rows.")
        if int(idx.min()) < 0 or int(idx.max()) >= n_train:
            raise ProbeError(f"{name} holds rows outside the {n_train} train rows. Valid: 0..{n_train - 1}.")
    if split is not None and len(set(split[0].tolist()) & set(split[1].tolist())):
        raise ProbeError("fit_idx and val_idx share rows; a validation row must never be fitted. Valid: disjoint rows.")
    return split


def _validate(probes, train_feats, train_labels, test_feats, test_labels, val_fraction) -> tuple[list[str], dict[str, int]]:
    """Every input checked once, here, naming the bad cut / task / split and what is valid."""
    probes = _check_probes(probes)
    _check_same_keys("cut", "features", train_feats, test_feats)
    _check_same_keys("task", "labels", train_labels, test_labels)
    if not (isinstance(val_fraction, (int, float)) and 0.0 < float(val_fraction) < 1.0):
        raise ProbeError(f"val_fraction={val_fraction!r} is out of range. Valid: a number strictly between 0 and 1 "
                         "(e.g. 0.2).")
    n = {}
    for split, feats, labels in (("train", train_feats, train_labels), ("test", test_feats, test_labels)):
        _check_features(split, feats)
        _check_labels(split, labels)
        n[split] = _count(split, feats, labels)
    for cut in train_feats:
        d_tr, d_te = train_feats[cut].shape[1], test_feats[cut].shape[1]
        if d_tr != d_te:
            raise ProbeError(f"Cut {cut!r}: train features have D={d_tr} but test features D={d_te}. Valid: the same D "
                             "in both splits.")
    n_classes = _classes(train_labels, test_labels)
    if n["train"] < 3:
        raise ProbeError(f"The train split has {n['train']} samples; choosing hyper-parameters needs a validation "
                         "split. Valid: N >= 3 train samples.")
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
    attentive: AttentiveHead | None = None,
    train_tokens: Mapping[str, torch.Tensor] | None = None,
    test_tokens: Mapping[str, torch.Tensor] | None = None,
    split: tuple[torch.Tensor, torch.Tensor] | None = None,
    refit_idx: torch.Tensor | None = None,
) -> list[ProbeResult]:
    """Fit every probe for every (cut, task); one ProbeResult per (cut, task, probe).

    Results are ordered by cut (dict order), then task, then probe (order given).
    Reports ProgressEvent('probe', done, total, model) when it starts, after every chunk of cuts,
    and as a pulse (progress.PULSE_S) from inside a chunk's solver iterations or k-NN search; it stops there
    (progress.Cancelled) as soon as `should_stop()` says so. A linear
    fit that hit its iteration limit is flagged `converged=False` and warned about. Both probes
    stream features that do not fit their memory budget in row chunks (`knn_memory_budget`
    defaults to the linear probe's).

    The attentive probe (`attentive`: its settings; default AttentiveHead()) reads `train_tokens` /
    `test_tokens` [N, T, C] of the cuts that have them and a cut's pooled features as one token otherwise.
    `split` (fit rows, validation rows) replaces the seeded validation split; `refit_idx` the rows the chosen
    setting is refitted on (None: all train rows; a few-shot draw: the draw).
    """
    probes, n_classes = _validate(probes, train_feats, train_labels, test_feats, test_labels, val_fraction)
    _check_tokens("train", train_tokens or {}, train_feats)
    _check_tokens("test", test_tokens or {}, test_feats)
    heads = {"linear": LinearHead(_check_grid(linear_grid), linear_max_iter, linear_tol, linear_memory_budget),
             "knn": KnnHead(_check_ks(knn_ks), _check_temperature(knn_temperature), knn_chunk_size,
                            linear_memory_budget if knn_memory_budget is None else knn_memory_budget),
             "attentive": attentive or AttentiveHead(seed=seed, memory_budget=linear_memory_budget)}
    device = resolve_device(device)
    n_train = next(iter(train_feats.values())).shape[0]
    fit_idx, val_idx = _check_split(split, refit_idx, n_train) or validation_split(train_labels, val_fraction, seed)
    cuts, tasks = list(train_feats), list(train_labels)
    report = Reporter(progress, should_stop, "probe", len(cuts) * len(tasks) * len(probes), model)
    report.emit(f"{' + '.join(probes)} on {len(cuts)} cut{'s' if len(cuts) != 1 else ''}")  # the stage has begun
    results: dict[tuple[str, str, str], ProbeResult] = {}
    for probe in probes:
        head = heads[probe]
        tr, te = train_feats, test_feats
        if head.inputs == "tokens":  # a cut without tokens (a vector) is one token
            tr = {c: (train_tokens or {}).get(c, x[:, None, :]) for c, x in train_feats.items()}
            te = {c: (test_tokens or {}).get(c, x[:, None, :]) for c, x in test_feats.items()}
        res = head.fit(tr, train_labels, te, test_labels, fit_idx=fit_idx, val_idx=val_idx, n_classes=n_classes,
                       device=device, tick=report.tick, refit_idx=refit_idx)
        results.update({(cut, task, probe): r for (cut, task), r in res.items()})
        stuck = head.unconverged(res)
        if stuck:
            warnings.warn(f"{model + ': ' if model else ''}{stuck}", ConvergenceWarning, stacklevel=2)
    return [results[(cut, task, probe)] for cut in cuts for task in tasks for probe in probes]


def _check_temperature(t) -> float:
    if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
        raise ProbeError(f"knn_temperature={t!r} is invalid. Valid: a positive number (default 0.07).")
    return float(t)


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
    "AttentiveHead",
    "AttentiveProbeResult",
    "DEFAULT_GRID",
    "DEFAULT_KS",
    "HEADS",
    "PROBES",
    "ConvergenceWarning",
    "Head",
    "KnnProbeResult",
    "LinearProbeResult",
    "ProbeResult",
    "fit_attentive_probes",
    "fit_knn_probes",
    "fit_linear_probes",
    "knn_predict",
    "lbfgs_softmax",
    "run_probes",
    "standardize",
    "validation_size",
    "validation_split",
]

"""Linear probes: multinomial logistic regression for many cuts, tasks and C at once.

Every (cut, task, C) is one *problem*:

    min_{W, b}  mean_n CE(softmax(x_n W + b), y_n) + 1 / (2 C n) * ||W||^2

on features standardised with the statistics of the data being fitted, the bias
unpenalised. This is scikit-learn's ``LogisticRegression(C=C)`` objective
divided by n, so the optimum (and hence accuracy) is the same.

Batching (the DINOv2 linear-evaluation idea: many heads on the same features):

* cuts: the parameters of all cuts of a chunk live in one tensor
  ``theta [G, 1 + D_max, Q, K]`` (row 0 is the bias); a smaller cut is padded
  with zero rows, which get zero gradient from the loss and stay exactly 0
  under L2, so its solution is unchanged. Features are packed as
  ``[G_b, N, 1 + D_b]`` blocks (column 0 is the constant 1): cuts whose D is at
  least ``pad_ratio`` x the block's largest D share one zero-padded tensor and
  one ``bmm``. Default: everything in one block on CUDA (``pad_ratio=0``), only
  equal D together on CPU (``pad_ratio=1``: no flops wasted on padding).
* tasks and C values: problem columns ``Q`` of ``theta``. Tasks with fewer
  classes than ``K = max classes`` get ``-inf`` logits on the missing classes,
  so all tasks go through one solver call (no per-task call).
* the solver: ``probes.solver.lbfgs_softmax``, a preconditioned L-BFGS in
  which every problem advances in lockstep with its own history and
  convergence flag.
* chunks: cuts are solved in chunks, one after the other, each under a memory
  budget (see ``chunk_bytes``); a chunk is the unit of progress reporting and
  of cancellation.

By default (``warm_start=False``) all (cut x task x C) problems of a chunk are
one solver call from zero; ``warm_start=True`` walks the grid from strong to
weak regularisation, one call per C, each problem starting at the previous C's
solution (fewer iterations per C, but more calls: slower on the benchmark, kept
for very wide grids or many tasks). The chosen C is then refitted on all train
data, warm-started at its validation-stage solution (re-expressed for the new
standardisation), and scored on test.
"""


from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from .base import Head, ProbeResult
from .solver import feature_eigen, lbfgs_softmax, predict

DEFAULT_GRID: tuple[float, ...] = tuple(float(c) for c in np.logspace(-3, 2, 6))  # 0.001 ... 100
DEFAULT_MEMORY_BUDGET = 2 * 2**30  # bytes per chunk of cuts solved together

# Memory model of one chunk, in elements of the solver dtype (see chunk_bytes).
#: live [N, Q, K] activation tensors per block during one function evaluation (logits, softmax, gradient ...)
ACTIVATION_COPIES = 4
#: parameter-sized [G, 1 + D, Q, K] tensors besides the L-BFGS history: iterate, gradient, trial point, direction ...
PARAM_COPIES = 12


# ----------------------------------------------------------------------------------------------
# features


def standardize(train: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(x - mean) / std with mean/std (population, ddof=0) of `train`; zero-std columns become 0.

    Returns float32 tensors (`train` first, then `others` in order) on `train`'s device.
    """
    mean, inv = _stats(train)
    return tuple(((t.to(torch.float32) - mean) * inv) for t in (train, *others))


def _stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Column mean and 1/std (0 where std == 0), computed in float64, returned in float32."""
    x64 = x.to(torch.float64)
    mean = x64.mean(0)
    var = (x64 - mean).square_().mean(0)
    std = var.sqrt()
    # A column constant up to float rounding counts as constant.
    const = std <= 1e-7 * mean.abs().clamp_min(1e-30) + 1e-12
    inv = torch.where(const, torch.zeros_like(std), 1.0 / torch.where(const, torch.ones_like(std), std))
    return mean.to(torch.float32), inv.to(torch.float32)


def _pack(
    feats: Sequence[torch.Tensor],
    stats: Sequence[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Standardise each cut with its stats and pack into [G, N, 1 + D_max]: column 0 is the
    constant 1 of the bias, then the features, zero-padded on the right for smaller cuts."""
    n = feats[0].shape[0]
    d_max = max(x.shape[1] for x in feats)
    out = torch.zeros((len(feats), n, 1 + d_max), dtype=dtype, device=device)
    out[:, :, 0] = 1.0
    for g, (x, (mean, inv)) in enumerate(zip(feats, stats)):
        d = x.shape[1]
        out[g, :, 1 : 1 + d] = (x.to(device=device, dtype=torch.float32) - mean.to(device)) * inv.to(device)
    return out


# ----------------------------------------------------------------------------------------------
# the probe


@dataclass
class LinearProbeResult:
    """One (cut, task): chosen C, validation accuracy per C tried, test accuracy and per-image correctness after refit."""

    C: float
    val_accuracy: float
    accuracy: float
    val_accuracies: dict[float, float] = field(default_factory=dict)
    n_iter: int = 0
    converged: bool = True
    correct: torch.Tensor | None = None  # bool [n_test]


def _plan(dims: Mapping[str, int], bytes_for: Callable[[list[list[int]]], int], budget: int, pad_ratio: float,
          block_per_chunk: bool) -> list[list[list[str]]]:
    """Chunks (solved one after the other, each under `budget` bytes) of blocks (cuts packed in one
    zero-padded tensor: a cut joins the current block if its D >= pad_ratio x the block's largest D).
    Cuts are taken largest D first. `block_per_chunk`: never put two blocks in one chunk (on the CPU
    blocks do not share matmuls, so smaller chunks cost nothing and report progress more often)."""
    names = sorted(dims, key=lambda c: -dims[c])
    chunks: list[list[list[str]]] = []
    for name in names:
        d = dims[name]
        if chunks:
            cur = chunks[-1]
            same_block = d >= pad_ratio * dims[cur[-1][0]]
            if same_block or not block_per_chunk:
                trial = [b[:] for b in cur]
                if same_block:
                    trial[-1].append(name)
                else:
                    trial.append([name])
                shape = [[dims[b[0]]] * len(b) for b in trial]
                if bytes_for(shape) <= budget:
                    chunks[-1] = trial
                    continue
        chunks.append([[name]])
    return chunks


def chunk_bytes(blocks: list[list[int]], *, n_fit: int, n_val: int, n_train: int, n_test: int, n_grid: int,
                n_tasks: int, n_classes: int, history: int, warm_start: bool, precondition: bool, itemsize: int) -> int:
    """Peak bytes of one chunk: `blocks` lists the D of each cut, block by block (cuts of a block share max D).

    Stage 1 (choose C) holds the packed fit and validation features, the activations and the L-BFGS state
    for tasks x C problem columns, and the per-C solutions; stage 2 (refit) the packed train and test
    features and the state for the chosen C; plus the preconditioner's eigenvectors.
    """
    q1 = n_tasks if warm_start else n_tasks * n_grid
    G = sum(len(b) for b in blocks)
    d1 = 1 + max(max(b) for b in blocks)
    data = sum(len(b) * (1 + max(b)) for b in blocks)
    act = max(len(b) for b in blocks) * ACTIVATION_COPIES
    eig = sum(len(b) * max(b) ** 2 for b in blocks) if precondition else 0
    state = (2 * history + PARAM_COPIES) * G * d1
    stage1 = (n_fit + n_val) * data + act * n_fit * q1 * n_classes + state * q1 * n_classes + n_grid * G * d1 * n_tasks * n_classes
    stage2 = (n_train + n_test) * data + act * n_train * n_tasks * n_classes + (state + n_grid * G * d1) * n_tasks * n_classes
    return itemsize * (max(stage1, stage2) + eig)


def fit_linear_probes(
    train_feats: Mapping[str, torch.Tensor],
    train_labels: Mapping[str, torch.Tensor],
    test_feats: Mapping[str, torch.Tensor],
    test_labels: Mapping[str, torch.Tensor],
    *,
    fit_idx: torch.Tensor,
    val_idx: torch.Tensor,
    grid: Sequence[float] | None = None,
    n_classes: Mapping[str, int] | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    max_iter: int = 1000,
    tol: float = 1e-4,
    history: int = 10,
    warm_start: bool = False,
    precondition: bool = True,
    pad_ratio: float | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    progress: Callable[[int, str], None] | None = None,
) -> dict[tuple[str, str], LinearProbeResult]:
    """Fit the linear probe for every (cut, task); inputs are assumed validated (see run_probes).

    `fit_idx`/`val_idx` index the train set (C is chosen on them, best val accuracy, ties ->
    the smaller C). `warm_start`: walk the grid strong -> weak, one solver call per C for all
    (cut, task) problems, each starting from the previous solution; otherwise one call for all
    (cut, task, C) from zero. `pad_ratio`: cuts whose D is at least this fraction of the
    largest D in their block share one zero-padded feature tensor (one bmm); default 0 on CUDA
    (all cuts of a chunk in one tensor) and 1 elsewhere (only equal D share, no wasted flops on
    CPU). `memory_budget` (bytes) bounds one chunk of cuts; chunks run one after the other.
    `progress(n_done, message)` is called after each chunk with the (cut, task) results it
    finished; it may raise to stop before the next chunk.
    """
    device = torch.device(device)
    grid = sorted(float(c) for c in (DEFAULT_GRID if grid is None else grid))
    if pad_ratio is None:
        pad_ratio = 0.0 if device.type == "cuda" else 1.0
    cuts = list(train_feats)
    tasks = list(train_labels)
    if n_classes is None:
        n_classes = {t: int(max(train_labels[t].max(), test_labels[t].max())) + 1 for t in tasks}
    T, K = len(tasks), max(n_classes[t] for t in tasks)
    class_mask_t = torch.zeros((T, K), dtype=torch.bool)
    for i, t in enumerate(tasks):
        class_mask_t[i, : n_classes[t]] = True
    fit_idx = fit_idx.cpu()
    val_idx = val_idx.cpu()
    n_fit, n_val = len(fit_idx), len(val_idx)
    n_train = next(iter(train_feats.values())).shape[0]
    n_test = next(iter(test_feats.values())).shape[0]
    y_train = torch.stack([train_labels[t].cpu().long() for t in tasks], 1)  # [N, T]
    y_test = torch.stack([test_labels[t].cpu().long() for t in tasks], 1).to(device)
    y_fit, y_val = y_train[fit_idx], y_train[val_idx].to(device)
    nC = len(grid)

    def bytes_for(blocks: list[list[int]]) -> int:
        return chunk_bytes(blocks, n_fit=n_fit, n_val=n_val, n_train=n_train, n_test=n_test, n_grid=nC, n_tasks=T,
                           n_classes=K, history=history, warm_start=warm_start, precondition=precondition,
                           itemsize=torch.finfo(dtype).bits // 8)

    dims = {c: int(train_feats[c].shape[1]) for c in cuts}
    chunks = _plan(dims, bytes_for, memory_budget, pad_ratio, block_per_chunk=device.type != "cuda")
    results: dict[tuple[str, str], LinearProbeResult] = {}
    for blocks in chunks:
        chunk = [c for b in blocks for c in b]
        G = len(chunk)
        d1 = 1 + max(dims[c] for c in chunk)
        # ---- stage 1: choose C on the validation split ----
        stats = {c: _stats(train_feats[c][fit_idx].to(device)) for c in chunk}
        X_fit = [_pack([train_feats[c][fit_idx] for c in b], [stats[c] for c in b], device, dtype) for b in blocks]
        X_val = [_pack([train_feats[c][val_idx] for c in b], [stats[c] for c in b], device, dtype) for b in blocks]
        eigen = feature_eigen(X_fit) if precondition else False
        correct = torch.zeros((nC, G, T), dtype=torch.long, device=device)
        thetas = torch.zeros((nC, G, d1, T, K), dtype=dtype, device=device)
        iters = torch.zeros((G, T), dtype=torch.long, device=device)
        conv = torch.ones((G, T), dtype=torch.bool, device=device)
        solve = dict(precondition=eigen, max_iter=max_iter, tol=tol, history=history)
        if warm_start:
            theta = None
            for ci, C in enumerate(grid):
                lam = torch.full((G, T), 1.0 / (C * n_fit), dtype=dtype, device=device)
                res = lbfgs_softmax(X_fit, y_fit, class_mask_t, lam, init=theta, **solve)
                theta = res.theta
                thetas[ci] = theta
                iters += res.n_iter
                conv &= res.converged
                correct[ci] = (predict(X_val, theta, class_mask_t) == y_val.unsqueeze(0)).sum(1)
        else:
            lam = torch.tensor([1.0 / (C * n_fit) for C in grid], dtype=dtype, device=device)
            lam = lam.repeat_interleave(T).view(1, nC * T).expand(G, nC * T).contiguous()  # column q = ci*T + t
            res = lbfgs_softmax(X_fit, y_fit.repeat(1, nC), class_mask_t.repeat(nC, 1), lam, **solve)
            thetas = res.theta.view(G, d1, nC, T, K).permute(2, 0, 1, 3, 4).contiguous()
            iters += res.n_iter.view(G, nC, T).sum(1)
            conv &= res.converged.view(G, nC, T).all(1)
            pred = predict(X_val, res.theta, class_mask_t.repeat(nC, 1))
            correct = (pred == y_val.repeat(1, nC).unsqueeze(0)).sum(1).view(G, nC, T).permute(1, 0, 2)
        del X_fit, X_val
        # Best validation accuracy; ties -> the smallest C (strongest regularisation): argmax takes the first max.
        best = correct.argmax(0)  # [G, T]
        C_best = torch.tensor(grid, dtype=dtype, device=device)[best]
        ar_g = torch.arange(G, device=device)[:, None]
        ar_t = torch.arange(T, device=device)[None, :]
        init = thetas[best, ar_g, :, ar_t, :].permute(0, 2, 1, 3).contiguous()  # [G, T, D1, K] -> [G, D1, T, K]
        del thetas
        # ---- stage 2: refit on all train data with the chosen C (warm start), score on test ----
        fit_stats = stats
        stats = {c: _stats(train_feats[c].to(device)) for c in chunk}
        for gi, c in enumerate(chunk):
            # Same logits under the new standardisation: w' = w inv_fit / inv_train, b' = b + w inv_fit . (m_train - m_fit).
            (m_f, inv_f), (m_t, inv_t) = fit_stats[c], stats[c]
            d = dims[c]
            w = init[gi, 1 : 1 + d] * inv_f[:, None, None].to(dtype)
            init[gi, 0] += (w * (m_t - m_f)[:, None, None].to(dtype)).sum(0)
            safe = torch.where(inv_t > 0, inv_t, torch.ones_like(inv_t)).to(dtype)
            init[gi, 1 : 1 + d] = torch.where((inv_t > 0)[:, None, None], w / safe[:, None, None], torch.zeros_like(w))
        X_train = [_pack([train_feats[c] for c in b], [stats[c] for c in b], device, dtype) for b in blocks]
        lam = 1.0 / (C_best * n_train)
        res = lbfgs_softmax(X_train, y_train, class_mask_t, lam, init=init, **solve)
        del X_train
        iters += res.n_iter
        conv &= res.converged
        X_test = [_pack([test_feats[c] for c in b], [stats[c] for c in b], device, dtype) for b in blocks]
        test_hits = (predict(X_test, res.theta, class_mask_t) == y_test.unsqueeze(0)).cpu()  # [G, N_test, T]
        del X_test
        correct_c, best_c = correct.cpu(), best.cpu()
        iters_c, conv_c = iters.cpu(), conv.cpu()
        for gi, cut in enumerate(chunk):
            for ti, task in enumerate(tasks):
                b = int(best_c[gi, ti])
                hits = test_hits[gi, :, ti].clone()
                results[(cut, task)] = LinearProbeResult(
                    C=grid[b],
                    val_accuracy=float(correct_c[b, gi, ti]) / n_val,
                    accuracy=float(hits.sum()) / n_test,
                    val_accuracies={C: float(correct_c[ci, gi, ti]) / n_val for ci, C in enumerate(grid)},
                    n_iter=int(iters_c[gi, ti]),
                    converged=bool(conv_c[gi, ti]),
                    correct=hits,
                )
        if progress is not None:
            progress(G * T, f"linear: {', '.join(chunk)}")
    return {(c, t): results[(c, t)] for c in cuts for t in tasks}


class LinearHead(Head):
    """The linear probe as a sweep head: C chosen on validation from `grid`, every (cut, task, C) in one batched solve."""

    name, hparam = "linear", "C"

    def __init__(self, grid: Sequence[float] | None = None, max_iter: int = 1000, tol: float = 1e-4,
                 memory_budget: int = DEFAULT_MEMORY_BUDGET):
        self.grid, self.max_iter, self.tol, self.memory_budget = grid, max_iter, tol, memory_budget

    def fit(self, train_feats, train_labels, test_feats, test_labels, *, fit_idx, val_idx, n_classes, device, tick):
        res = fit_linear_probes(train_feats, train_labels, test_feats, test_labels, fit_idx=fit_idx, val_idx=val_idx,
                                grid=self.grid, n_classes=n_classes, device=device, max_iter=self.max_iter,
                                tol=self.tol, memory_budget=self.memory_budget, progress=tick)
        return {(cut, task): ProbeResult(cut, task, self.name, r.accuracy, r.val_accuracy, self.hparam, float(r.C),
                                         float(r.C), n_classes[task], r.converged, r.n_iter, dict(r.val_accuracies),
                                         r.correct)
                for (cut, task), r in res.items()}


__all__ = [
    "DEFAULT_GRID",
    "DEFAULT_MEMORY_BUDGET",
    "LinearHead",
    "LinearProbeResult",
    "chunk_bytes",
    "fit_linear_probes",
    "standardize",
]

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
* rows (a million images): when even one cut's packed features and activations
  exceed the budget, chunks are solved *streamed* (see ``streamed_bytes``): the
  features stay in their storage dtype (float16 on disk, memory-mapped), copied
  once to the device when they fit there, and every function evaluation of the
  same full-batch L-BFGS sums the loss and gradient over row chunks that are
  standardised and packed as they are read (rows.PackedRows). Same objective,
  same iterates up to the order of float sums; memory is set by the row chunk.

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
from .rows import PackedRows, RowSource, pack
from .solver import feature_eigen, lbfgs_softmax, predict

DEFAULT_GRID: tuple[float, ...] = tuple(float(c) for c in np.logspace(-3, 2, 6))  # 0.001 ... 100
DEFAULT_MEMORY_BUDGET = 2 * 2**30  # bytes per chunk of cuts solved together

# Memory model of one chunk, in elements of the solver dtype (see chunk_bytes).
#: live [N, Q, K] activation tensors per block during one function evaluation (logits, softmax, gradient ...)
ACTIVATION_COPIES = 4
#: parameter-sized [G, 1 + D, Q, K] tensors besides the L-BFGS history: iterate, gradient, trial point, direction ...
PARAM_COPIES = 12
#: streamed chunks: the fewest rows per chunk planned for (fewer would make every evaluation a long loop)
MIN_ROWS = 1024
#: streamed chunks: rows per chunk of the float64 column statistics
STATS_ROWS = 65536


# ----------------------------------------------------------------------------------------------
# features


def standardize(train: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(x - mean) / std with mean/std (population, ddof=0) of `train`; zero-std columns become 0.

    Returns float32 tensors (`train` first, then `others` in order) on `train`'s device.
    """
    mean, inv = _stats(train)
    return tuple(((t.to(torch.float32) - mean) * inv) for t in (train, *others))


def _stats(x: torch.Tensor | RowSource) -> tuple[torch.Tensor, torch.Tensor]:
    """Column mean and 1/std (0 where std == 0), computed in float64 (a RowSource chunk by chunk, two passes),
    returned in float32."""
    if isinstance(x, RowSource):  # float64 chunks of at most STATS_ROWS rows: a small share of any budget
        step = min(x.chunk, STATS_ROWS)
        mean = sum(c.to(torch.float64).sum(0) for _, _, c in x.chunks(step)) / x.n
        var = sum((c.to(torch.float64) - mean).square_().sum(0) for _, _, c in x.chunks(step)) / x.n
    else:
        x64 = x.to(torch.float64)
        mean = x64.mean(0)
        var = (x64 - mean).square_().mean(0)
    std = var.sqrt()
    # A column constant up to float rounding counts as constant.
    const = std <= 1e-7 * mean.abs().clamp_min(1e-30) + 1e-12
    inv = torch.where(const, torch.zeros_like(std), 1.0 / torch.where(const, torch.ones_like(std), std))
    return mean.to(torch.float32), inv.to(torch.float32)


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
    val_correct: torch.Tensor | None = None  # bool [n_val]: validation hits of the chosen C


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


def streamed_bytes(blocks: list[list[int]], *, rows: int, resident: bool, n_val: int, n_train: int, n_test: int,
                   n_grid: int, n_tasks: int, n_classes: int, history: int, warm_start: bool, precondition: bool,
                   itemsize: int, storage_itemsize: int) -> int:
    """Peak bytes of one chunk solved in row chunks of `rows`: one block's packed chunk and activations at a time,
    the L-BFGS state and per-C solutions, the preconditioner, the predictions ([G, N_val, problems] int64), and,
    when `resident`, the cuts' train and test features copied to the device in their storage dtype."""
    q1 = n_tasks if warm_start else n_tasks * n_grid
    G = sum(len(b) for b in blocks)
    d1 = 1 + max(max(b) for b in blocks)
    packed = max(len(b) * (1 + max(b)) for b in blocks) * rows
    act = max(len(b) for b in blocks) * ACTIVATION_COPIES * rows * q1 * n_classes
    state = (2 * history + PARAM_COPIES) * G * d1 * q1 * n_classes + n_grid * G * d1 * n_tasks * n_classes
    eig = sum(len(b) * max(b) ** 2 for b in blocks) if precondition else 0
    preds = 8 * G * max(n_val * q1, n_test * n_tasks)
    raw = (n_train + n_test) * sum(sum(b) for b in blocks) * storage_itemsize if resident else 0
    return itemsize * (packed + act + state + eig) + preds + raw


def _rows_within(bytes_at: Callable[[int], int], budget: int, n: int) -> int:
    """The most rows per chunk (MIN_ROWS to n) whose bytes stay within budget (bytes grow linearly with rows)."""
    base, per_row = bytes_at(0), bytes_at(1) - bytes_at(0)
    fit = (budget - base) // per_row if per_row > 0 else n
    return int(min(n, max(MIN_ROWS, fit)))


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
    rows_per_chunk: int | None = None,
    progress: Callable[[int, str], None] | None = None,
    refit_idx: torch.Tensor | None = None,
) -> dict[tuple[str, str], LinearProbeResult]:
    """Fit the linear probe for every (cut, task); inputs are assumed validated (see run_probes).

    `fit_idx`/`val_idx` index the train set (C is chosen on them, best val accuracy, ties ->
    the smaller C). `warm_start`: walk the grid strong -> weak, one solver call per C for all
    (cut, task) problems, each starting from the previous solution; otherwise one call for all
    (cut, task, C) from zero. `pad_ratio`: cuts whose D is at least this fraction of the
    largest D in their block share one zero-padded feature tensor (one bmm); default 0 on CUDA
    (all cuts of a chunk in one tensor) and 1 elsewhere (only equal D share, no wasted flops on
    CPU). `memory_budget` (bytes) bounds one chunk of cuts; chunks run one after the other; when
    one cut alone would not fit, the chunks are solved streamed, in row chunks (see the module
    docstring; `rows_per_chunk` forces that, with that many rows per chunk).
    `progress(n_done, message)` is called after each chunk with the (cut, task) results it
    finished, and with n_done = 0 after every solver iteration (still working); it may raise to stop.
    `refit_idx`: the train rows the chosen C is refitted on (None: all; a few-shot draw: the draw alone).
    """
    device = torch.device(device)
    pad_ratio = (0.0 if device.type == "cuda" else 1.0) if pad_ratio is None else pad_ratio
    problem = _Problem(train_feats, train_labels, test_feats, test_labels, fit_idx, val_idx, grid, n_classes, device,
                       dtype, dict(max_iter=max_iter, tol=tol, history=history), warm_start, precondition, refit_idx)
    chunks, streams = _plan_chunks(problem, memory_budget, pad_ratio, rows_per_chunk)
    results: dict[tuple[str, str], LinearProbeResult] = {}
    for i, blocks in enumerate(chunks):
        rows = _Rows(problem, [c for b in blocks for c in b], streams.get(i))
        pulse = None
        if progress is not None:
            def pulse(what: str, names: str = ", ".join(rows.chunk)) -> None:
                progress(0, f"linear: {names}: {what}")
        results.update(_fit_chunk(problem, blocks, rows, pulse))
        if progress is not None:
            progress(len(rows.chunk) * len(problem.tasks), f"linear: {', '.join(rows.chunk)}")
    return {(c, t): results[(c, t)] for c in problem.cuts for t in problem.tasks}


class _Problem:
    """What every chunk of cuts shares: tasks and their class masks, labels of each split, the C grid, solver settings."""

    def __init__(self, train_feats, train_labels, test_feats, test_labels, fit_idx, val_idx, grid, n_classes, device,
                 dtype, solve: dict, warm_start: bool, precondition: bool, refit_idx: torch.Tensor | None = None):
        self.train_feats, self.test_feats = train_feats, test_feats
        self.device, self.dtype, self.solve, self.warm_start, self.precondition = device, dtype, solve, warm_start, \
            precondition
        self.grid = sorted(float(c) for c in (DEFAULT_GRID if grid is None else grid))
        self.cuts, self.tasks = list(train_feats), list(train_labels)
        if n_classes is None:
            n_classes = {t: int(max(train_labels[t].max(), test_labels[t].max())) + 1 for t in self.tasks}
        self.T, self.K = len(self.tasks), max(n_classes[t] for t in self.tasks)
        self.class_mask = torch.zeros((self.T, self.K), dtype=torch.bool)
        for i, t in enumerate(self.tasks):
            self.class_mask[i, : n_classes[t]] = True
        self.fit_idx, self.val_idx = fit_idx.cpu(), val_idx.cpu()
        self.n_fit, self.n_val = len(self.fit_idx), len(self.val_idx)
        self.n_train = next(iter(train_feats.values())).shape[0]
        self.n_test = next(iter(test_feats.values())).shape[0]
        self.y_train = torch.stack([train_labels[t].cpu().long() for t in self.tasks], 1)  # [N, T]
        self.y_test = torch.stack([test_labels[t].cpu().long() for t in self.tasks], 1).to(device)
        self.y_fit, self.y_val = self.y_train[self.fit_idx], self.y_train[self.val_idx].to(device)
        self.refit_idx = None if refit_idx is None else refit_idx.cpu()
        self.y_refit = self.y_train if refit_idx is None else self.y_train[self.refit_idx]
        self.n_refit = self.n_train if refit_idx is None else len(self.refit_idx)
        self.dims = {c: int(train_feats[c].shape[1]) for c in self.cuts}

    def chunk_bytes(self, blocks: list[list[int]]) -> int:
        return chunk_bytes(blocks, n_fit=self.n_fit, n_val=self.n_val, n_train=self.n_train, n_test=self.n_test,
                           n_grid=len(self.grid), n_tasks=self.T, n_classes=self.K, history=self.solve["history"],
                           warm_start=self.warm_start, precondition=self.precondition, itemsize=self.itemsize)

    def streamed_bytes(self, blocks: list[list[int]], rows: int, resident: bool) -> int:
        storage = max(self.train_feats[c].element_size() for c in self.cuts)
        return streamed_bytes(blocks, rows=rows, resident=resident, n_val=self.n_val, n_train=self.n_train,
                              n_test=self.n_test, n_grid=len(self.grid), n_tasks=self.T, n_classes=self.K,
                              history=self.solve["history"], warm_start=self.warm_start,
                              precondition=self.precondition, itemsize=self.itemsize, storage_itemsize=storage)

    @property
    def itemsize(self) -> int:
        return torch.finfo(self.dtype).bits // 8

    def shape(self, blocks: list[list[str]]) -> list[list[int]]:
        return [[self.dims[c] for c in b] for b in blocks]


def _plan_chunks(p: _Problem, budget: int, pad_ratio: float, rows_per_chunk: int | None):
    """(chunks of blocks of cuts, {chunk index: (rows per row chunk, features resident on the device)} for the
    chunks that must be solved streamed)."""
    block_per_chunk = p.device.type != "cuda"
    chunks = _plan(p.dims, p.chunk_bytes, budget, pad_ratio, block_per_chunk)
    streams: dict[int, tuple[int, bool]] = {}
    if rows_per_chunk is None and all(p.chunk_bytes(p.shape(b)) <= budget for b in chunks):
        return chunks, streams
    chunks = _plan(p.dims, lambda shape: p.streamed_bytes(shape, MIN_ROWS, True), budget, pad_ratio, block_per_chunk)
    for i, blocks in enumerate(chunks):
        shape = p.shape(blocks)
        resident = p.streamed_bytes(shape, MIN_ROWS, True) <= budget
        rows = rows_per_chunk or _rows_within(lambda r, s=shape, res=resident: p.streamed_bytes(s, r, res), budget,
                                              max(p.n_train, p.n_test))
        streams[i] = (rows, resident)
    return chunks, streams


class _Rows:
    """One chunk's features: in memory (packed on the device) or streamed (RowSources packed as they are read)."""

    def __init__(self, p: _Problem, chunk: list[str], stream: tuple[int, bool] | None):
        self.p, self.chunk = p, chunk
        self.src = None  # streamed: RowSources over each split's features, fit/val rows as subsets of train
        if stream is not None:
            rows, resident = stream
            self.src = {split: {c: RowSource(f[c], p.device, rows, resident) for c in chunk}
                        for split, f in (("train", p.train_feats), ("test", p.test_feats))}

    def part(self, split: str, c: str, idx: torch.Tensor | None):
        if self.src is not None:
            return self.src[split][c] if idx is None else self.src[split][c].subset(idx)
        x = (self.p.train_feats if split == "train" else self.p.test_feats)[c]
        return x if idx is None else x[idx]

    def stats(self, split: str, idx: torch.Tensor | None) -> dict:
        return {c: _stats(self.part(split, c, idx) if self.src is not None else self.part(split, c, idx).to(self.p.device))
                for c in self.chunk}

    def packed(self, blocks: list[list[str]], split: str, idx: torch.Tensor | None, stats: dict) -> list:
        out = []
        for b in blocks:
            parts, st = [self.part(split, c, idx) for c in b], [stats[c] for c in b]
            out.append(PackedRows(parts, st, self.p.dtype) if self.src is not None
                       else pack(parts, st, self.p.device, self.p.dtype))
        return out


def _fit_chunk(p: _Problem, blocks: list[list[str]], rows: _Rows,
               pulse: Callable[[str], None] | None = None) -> dict[tuple[str, str], LinearProbeResult]:
    """Choose C on validation for every (cut, task) of a chunk, refit on all train data, score on test
    (`pulse(what)` after every solver iteration)."""
    fit_stats = rows.stats("train", p.fit_idx)
    correct, val_hits, best, init, iters, conv, eigen = _choose_C(p, blocks, rows, fit_stats,
                                                                  _iterations(pulse, "choosing C"))
    # ---- stage 2: refit on all train data with the chosen C (warm start), score on test ----
    stats = rows.stats("train", p.refit_idx)
    _restandardise(init, rows.chunk, p.dims, fit_stats, stats, p.dtype)
    C_best = torch.tensor(p.grid, dtype=p.dtype, device=p.device)[best]
    X_train = rows.packed(blocks, "train", p.refit_idx, stats)
    res = lbfgs_softmax(X_train, p.y_refit, p.class_mask, 1.0 / (C_best * p.n_refit), init=init, precondition=eigen,
                        callback=_iterations(pulse, "refit"), **p.solve)
    del X_train
    iters += res.n_iter
    conv &= res.converged
    X_test = rows.packed(blocks, "test", None, stats)
    test_hits = (predict(X_test, res.theta, p.class_mask) == p.y_test.unsqueeze(0)).cpu()  # [G, N_test, T]
    del X_test
    correct_c, best_c, iters_c, conv_c, val_hits = correct.cpu(), best.cpu(), iters.cpu(), conv.cpu(), val_hits.cpu()
    out = {}
    for gi, cut in enumerate(rows.chunk):
        for ti, task in enumerate(p.tasks):
            b = int(best_c[gi, ti])
            hits = test_hits[gi, :, ti].clone()
            out[(cut, task)] = LinearProbeResult(
                C=p.grid[b], val_accuracy=float(correct_c[b, gi, ti]) / p.n_val, accuracy=float(hits.sum()) / p.n_test,
                val_accuracies={C: float(correct_c[ci, gi, ti]) / p.n_val for ci, C in enumerate(p.grid)},
                n_iter=int(iters_c[gi, ti]), converged=bool(conv_c[gi, ti]), correct=hits,
                val_correct=val_hits[gi, :, ti].clone())
    return out


def _iterations(pulse: Callable[[str], None] | None, phase: str) -> Callable[[int], None] | None:
    """The solver's callback: a pulse naming the phase and the iteration."""
    return None if pulse is None else lambda it: pulse(f"{phase}, L-BFGS iteration {it}")


def _choose_C(p: _Problem, blocks: list[list[str]], rows: _Rows, stats: dict, pulse=None):
    """Stage 1: every (cut, task, C) fitted on the fit rows and scored on the validation rows.

    Returns (validation hits [C, G, T], per-image validation hits of the chosen C [G, N_val, T], chosen C index
    [G, T], the chosen solutions [G, D1, T, K] to warm-start the refit, iterations [G, T], converged [G, T], the
    preconditioner)."""
    G, T, K, nC = len(rows.chunk), p.T, p.K, len(p.grid)
    d1 = 1 + max(p.dims[c] for c in rows.chunk)
    X_fit = rows.packed(blocks, "train", p.fit_idx, stats)
    X_val = rows.packed(blocks, "train", p.val_idx, stats)
    eigen = feature_eigen(X_fit) if p.precondition else False
    iters = torch.zeros((G, T), dtype=torch.long, device=p.device)
    conv = torch.ones((G, T), dtype=torch.bool, device=p.device)
    if p.warm_start:
        correct = torch.zeros((nC, G, T), dtype=torch.long, device=p.device)
        hits = torch.zeros((nC, G, p.n_val, T), dtype=torch.bool, device=p.device)
        thetas = torch.zeros((nC, G, d1, T, K), dtype=p.dtype, device=p.device)
        theta = None
        for ci, C in enumerate(p.grid):
            lam = torch.full((G, T), 1.0 / (C * p.n_fit), dtype=p.dtype, device=p.device)
            res = lbfgs_softmax(X_fit, p.y_fit, p.class_mask, lam, init=theta, precondition=eigen, callback=pulse,
                                **p.solve)
            theta = res.theta
            thetas[ci] = theta
            iters += res.n_iter
            conv &= res.converged
            hits[ci] = predict(X_val, theta, p.class_mask) == p.y_val.unsqueeze(0)
            correct[ci] = hits[ci].sum(1)
    else:
        lam = torch.tensor([1.0 / (C * p.n_fit) for C in p.grid], dtype=p.dtype, device=p.device)
        lam = lam.repeat_interleave(T).view(1, nC * T).expand(G, nC * T).contiguous()  # column q = ci*T + t
        res = lbfgs_softmax(X_fit, p.y_fit.repeat(1, nC), p.class_mask.repeat(nC, 1), lam, precondition=eigen,
                            callback=pulse, **p.solve)
        thetas = res.theta.view(G, d1, nC, T, K).permute(2, 0, 1, 3, 4).contiguous()
        iters += res.n_iter.view(G, nC, T).sum(1)
        conv &= res.converged.view(G, nC, T).all(1)
        pred = predict(X_val, res.theta, p.class_mask.repeat(nC, 1))
        hits = (pred == p.y_val.repeat(1, nC).unsqueeze(0)).view(G, p.n_val, nC, T).permute(2, 0, 1, 3)
        correct = hits.sum(2)  # [nC, G, T]
    del X_fit, X_val
    # Best validation accuracy; ties -> the smallest C (strongest regularisation): argmax takes the first max.
    best = correct.argmax(0)  # [G, T]
    ar_g = torch.arange(G, device=p.device)[:, None]
    ar_t = torch.arange(T, device=p.device)[None, :]
    init = thetas[best, ar_g, :, ar_t, :].permute(0, 2, 1, 3).contiguous()  # [G, T, D1, K] -> [G, D1, T, K]
    val_hits = hits[best, ar_g, :, ar_t].permute(0, 2, 1)  # [G, T, N_val] -> [G, N_val, T]
    return correct, val_hits, best, init, iters, conv, eigen


def _restandardise(init: torch.Tensor, chunk: list[str], dims: dict, fit_stats: dict, stats: dict,
                   dtype: torch.dtype) -> None:
    """Re-express solutions found on fit-standardised features for train-standardised ones (same logits):
    w' = w inv_fit / inv_train, b' = b + w inv_fit . (m_train - m_fit)."""
    for gi, c in enumerate(chunk):
        (m_f, inv_f), (m_t, inv_t) = fit_stats[c], stats[c]
        d = dims[c]
        w = init[gi, 1 : 1 + d] * inv_f[:, None, None].to(dtype)
        init[gi, 0] += (w * (m_t - m_f)[:, None, None].to(dtype)).sum(0)
        safe = torch.where(inv_t > 0, inv_t, torch.ones_like(inv_t)).to(dtype)
        init[gi, 1 : 1 + d] = torch.where((inv_t > 0)[:, None, None], w / safe[:, None, None], torch.zeros_like(w))


class LinearHead(Head):
    """The linear probe as a sweep head: C chosen on validation from `grid`, every (cut, task, C) in one batched solve."""

    name, hparam = "linear", "C"

    def __init__(self, grid: Sequence[float] | None = None, max_iter: int = 1000, tol: float = 1e-4,
                 memory_budget: int = DEFAULT_MEMORY_BUDGET):
        self.grid, self.max_iter, self.tol, self.memory_budget = grid, max_iter, tol, memory_budget

    def fit(self, train_feats, train_labels, test_feats, test_labels, *, fit_idx, val_idx, n_classes, device, tick,
            refit_idx=None):
        res = fit_linear_probes(train_feats, train_labels, test_feats, test_labels, fit_idx=fit_idx, val_idx=val_idx,
                                grid=self.grid, n_classes=n_classes, device=device, max_iter=self.max_iter,
                                tol=self.tol, memory_budget=self.memory_budget, progress=tick, refit_idx=refit_idx)
        return {(cut, task): ProbeResult(cut, task, self.name, r.accuracy, r.val_accuracy, self.hparam, float(r.C),
                                         float(r.C), n_classes[task], r.converged, r.n_iter, dict(r.val_accuracies),
                                         r.correct, r.val_correct)
                for (cut, task), r in res.items()}

    def unconverged(self, results) -> str:
        text = super().unconverged(results)
        return text.replace("did not converge", f"did not converge within {self.max_iter} iterations", 1)


__all__ = [
    "DEFAULT_GRID",
    "DEFAULT_MEMORY_BUDGET",
    "LinearHead",
    "LinearProbeResult",
    "chunk_bytes",
    "fit_linear_probes",
    "standardize",
    "streamed_bytes",
]

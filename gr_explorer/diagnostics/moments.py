"""Chunked float64 second moments of pooled features: the one kind of pass over N diagnostics make.

Why: the spectral metrics and linear CKA need only D x D (cross-)covariances,
so their cost grows linearly with the number of images N and their memory is
set by a budget, never by an N x N Gram matrix. Features stay float32 [N, D]
where they are (the CPU, as `extract_features` keeps them); each row chunk is
copied to the device, converted to float64 and centred with the column mean
computed first. Centring before multiplying avoids the cancellation in
X^T X - N mu mu^T that would otherwise eat the digits of post-ReLU features,
whose mean is much larger than their spread.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..device import resolve_device
from ..errors import DiagnosticError

#: Bytes of float64 accumulators plus one converted row chunk, per pass (covariance matrices excepted).
DEFAULT_MEMORY_BUDGET = 256 * 2**20
_F64 = 8


def float64_device(device: str | torch.device | None) -> torch.device:
    """The device for float64 work: `device` itself, or the CPU for MPS (which has no float64)."""
    dev = resolve_device(device)
    return torch.device("cpu") if dev.type == "mps" else dev


def check_features(feats: dict[str, torch.Tensor], what: str = "features") -> int:
    """Every cut is a finite 2-D matrix with the same number of rows (>= 2); returns that N."""
    if not feats:
        raise DiagnosticError(f"No {what} given. Valid: a dict cut name -> float tensor [N, D] with N >= 2.")
    n = None
    for name, x in feats.items():
        if not torch.is_tensor(x) or x.ndim != 2 or x.shape[1] < 1:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise DiagnosticError(f"{what} of cut {name!r} have shape {shape}. Valid: a float tensor [N, D] with D >= 1.")
        if n is None:
            n = int(x.shape[0])
        elif int(x.shape[0]) != n:
            raise DiagnosticError(f"{what} of cut {name!r} have {x.shape[0]} rows but other cuts have {n}. "
                                  "Valid: every cut computed on the same images.")
    if n < 2:
        raise DiagnosticError(f"{what} have {n} row(s). Valid: at least 2 images.")
    return n


def rows_per_chunk(width: int, budget: int) -> int:
    """Rows of a float64 chunk of `width` columns that fit in half the budget (at least 1)."""
    return max(1, (budget // 2) // (_F64 * max(1, width)))


def column_mean(x: torch.Tensor, device: torch.device, budget: int = DEFAULT_MEMORY_BUDGET) -> torch.Tensor:
    """Float64 column means [D] on `device`, one chunked pass."""
    n, d = x.shape
    acc = torch.zeros(d, dtype=torch.float64, device=device)
    step = rows_per_chunk(d, budget)
    for s in range(0, n, step):
        acc += x[s:s + step].to(device).to(torch.float64).sum(0)
    if not torch.isfinite(acc).all():
        raise DiagnosticError("Features contain NaN or infinite values; diagnostics need finite features.")
    return acc / n


def _centred(x: torch.Tensor, start: int, step: int, mu: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Rows start..start+step of x as float64 on the device, minus the column mean.

    Moved in the features' own dtype (half the bytes of float64), converted
    there into a fresh tensor (never the caller's) and centred in place.
    """
    return x[start:start + step].to(device).to(torch.float64, copy=True).sub_(mu)


def covariance(x: torch.Tensor, device: torch.device, budget: int = DEFAULT_MEMORY_BUDGET) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, mu): biased covariance X_c^T X_c / N [D, D] and column mean [D], float64 on `device`.

    Memory: the D x D result itself (8 D^2 bytes, 512 MiB at D = 8192; an
    eigendecomposition needs it whole) plus one row chunk within the budget.
    Cost: N D^2 multiply-adds.
    """
    n, d = x.shape
    mu = column_mean(x, device, budget)
    cov = torch.zeros(d, d, dtype=torch.float64, device=device)
    step = rows_per_chunk(d, budget)
    for s in range(0, n, step):
        xc = _centred(x, s, step, mu, device)
        cov.addmm_(xc.T, xc)
    cov /= n
    return cov, mu


def cross_frobenius(mats: Sequence[torch.Tensor], pairs: Sequence[tuple[int, int]], device: torch.device,
                    budget: int = DEFAULT_MEMORY_BUDGET, means: Sequence[torch.Tensor] | None = None) -> dict[tuple[int, int], float]:
    """{(i, j): ||X_i,c^T X_j,c||_F^2 / N^2} (squared Frobenius norm of the centred cross-covariance).

    How: every pair is cut into tiles D_i x w (columns of X_j in blocks of w),
    tiles are packed into passes whose float64 accumulators fit half the
    budget, and each pass streams the rows once, converting each needed
    matrix's chunk once and updating all its tiles. With everything in one
    pass this is one sweep over the rows; otherwise each pass re-reads only
    the matrices it needs. Cost: N * sum over pairs of D_i D_j multiply-adds;
    memory: at most the budget, whatever N and D.
    """
    n = int(mats[0].shape[0])
    dims = [int(m.shape[1]) for m in mats]
    if means is None:
        means = [column_mean(m, device, budget) for m in mats]
    half = budget // 2
    tiles: list[tuple[int, int, int, int]] = []
    for i, j in pairs:
        w = max(1, min(dims[j], half // (_F64 * dims[i])))
        tiles += [(i, j, c, min(c + w, dims[j])) for c in range(0, dims[j], w)]
    passes: list[list[tuple[int, int, int, int]]] = [[]]
    used = 0
    for t in tiles:
        size = _F64 * dims[t[0]] * (t[3] - t[2])
        if passes[-1] and used + size > half:
            passes.append([])
            used = 0
        passes[-1].append(t)
        used += size
    out = {(i, j): 0.0 for i, j in pairs}
    for tiles_in_pass in passes:
        needed = sorted({t[0] for t in tiles_in_pass} | {t[1] for t in tiles_in_pass})
        acc = [torch.zeros(dims[i], c1 - c0, dtype=torch.float64, device=device) for i, _, c0, c1 in tiles_in_pass]
        step = rows_per_chunk(sum(dims[k] for k in needed), budget)
        for s in range(0, n, step):
            chunk = {k: _centred(mats[k], s, step, means[k], device) for k in needed}
            for a, (i, j, c0, c1) in zip(acc, tiles_in_pass):
                a.addmm_(chunk[i].T, chunk[j][:, c0:c1])
        for a, (i, j, _, _) in zip(acc, tiles_in_pass):
            out[(i, j)] += float(a.square().sum()) / n**2
    return out

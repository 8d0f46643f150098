"""Linear CKA (Kornblith et al. 2019) between cuts, from D x D cross-covariances only.

CKA(X, Y) = ||X_c^T Y_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F) with X_c, Y_c
the column-centred features of the same N images. This equals the N x N
Gram-matrix form (HSIC of linear kernels) but costs N * D_x * D_y per pair
instead of N^2 (D_x + D_y) and never holds an N x N matrix; the products are
chunked by `moments.cross_frobenius` within a memory budget, so 8192-d
projectors and 50,000 images fit in a few hundred MiB.

Cost for a model with cuts of widths D_1..D_K: N * sum_{i <= j} D_i D_j
multiply-adds (about N (sum D)^2 / 2), float64.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..errors import DiagnosticError
from ..models import Cut
from .moments import DEFAULT_MEMORY_BUDGET, check_features, column_mean, cross_frobenius

CKA_COLUMNS = ["model_a", "cut_a", "depth_a", "model_b", "cut_b", "depth_b", "cka"]
PAIRINGS = ("depth", "all")


def _cka(f: Mapping[tuple[int, int], float], i: int, j: int) -> float:
    den = math.sqrt(f[(i, i)] * f[(j, j)])
    return f[(i, j)] / den if den > 0 else float("nan")


def cka_matrix(feats: Mapping[str, torch.Tensor], device: torch.device,
               budget: int = DEFAULT_MEMORY_BUDGET) -> np.ndarray:
    """K x K linear CKA between the cuts of one model (symmetric, ones on the diagonal)."""
    check_features(dict(feats), "features")
    mats = list(feats.values())
    k = len(mats)
    f = cross_frobenius(mats, [(i, j) for i in range(k) for j in range(i, k)], device, budget)
    out = np.empty((k, k))
    for i in range(k):
        for j in range(i, k):
            out[i, j] = out[j, i] = _cka(f, i, j)
    return out


def cka_pairs(feats_a: Mapping[str, torch.Tensor], feats_b: Mapping[str, torch.Tensor],
              pairs: Sequence[tuple[str, str]], device: torch.device, budget: int = DEFAULT_MEMORY_BUDGET) -> list[float]:
    """Linear CKA for each (cut of a, cut of b) pair; both feature sets must be of the same images, same order."""
    na, nb = check_features(dict(feats_a), "features of model a"), check_features(dict(feats_b), "features of model b")
    if na != nb:
        raise DiagnosticError(f"CKA between models needs features of the same images, but model a has {na} rows and "
                              f"model b {nb}. Valid: both extracted from the same dataset split.")
    names_a, names_b = list(feats_a), list(feats_b)
    used_a = sorted({names_a.index(a) for a, _ in pairs})
    used_b = sorted({names_b.index(b) for _, b in pairs})
    mats = [feats_a[names_a[i]] for i in used_a] + [feats_b[names_b[i]] for i in used_b]
    ia = {names_a[i]: k for k, i in enumerate(used_a)}
    ib = {names_b[i]: len(used_a) + k for k, i in enumerate(used_b)}
    means = [column_mean(m, device, budget) for m in mats]
    wanted = [(ia[a], ib[b]) for a, b in pairs] + [(k, k) for k in range(len(mats))]
    f = cross_frobenius(mats, list(dict.fromkeys(wanted)), device, budget, means)
    return [_cka(f, ia[a], ib[b]) for a, b in pairs]


def cka_table(model: str, cuts: Sequence[Cut], feats: Mapping[str, torch.Tensor], device: torch.device,
              budget: int = DEFAULT_MEMORY_BUDGET) -> pd.DataFrame:
    """Long table of the cut x cut CKA matrix of one model (all K^2 ordered pairs)."""
    names = [c.name for c in cuts]
    m = cka_matrix({n: feats[n] for n in names}, device, budget)
    rows = [(model, a.name, a.depth, model, b.name, b.depth, float(m[i, j]))
            for i, a in enumerate(cuts) for j, b in enumerate(cuts)]
    return pd.DataFrame(rows, columns=CKA_COLUMNS)


def cka_between_models(model_a: str, cuts_a: Sequence[Cut], feats_a: Mapping[str, torch.Tensor],
                       model_b: str, cuts_b: Sequence[Cut], feats_b: Mapping[str, torch.Tensor], *,
                       pairing: str = "depth", device: torch.device, budget: int = DEFAULT_MEMORY_BUDGET) -> pd.DataFrame:
    """CKA between two models' cuts: `depth` pairs cuts of equal depth (Compare), `all` every cut a x cut b.

    Depth is forward order, so equal depth means the same place only for
    models that share an architecture (e.g. two objectives on one backbone).
    """
    if pairing not in PAIRINGS:
        raise DiagnosticError(f"Unknown CKA pairing {pairing!r}. Valid: {', '.join(PAIRINGS)}.")
    if pairing == "depth":
        by_depth = {c.depth: c for c in cuts_b}
        pairs = [(a, by_depth[a.depth]) for a in cuts_a if a.depth in by_depth]
    else:
        pairs = [(a, b) for a in cuts_a for b in cuts_b]
    if not pairs:
        return pd.DataFrame(columns=CKA_COLUMNS)
    vals = cka_pairs(feats_a, feats_b, [(a.name, b.name) for a, b in pairs], device, budget)
    return pd.DataFrame([(model_a, a.name, a.depth, model_b, b.name, b.depth, v) for (a, b), v in zip(pairs, vals)],
                        columns=CKA_COLUMNS)

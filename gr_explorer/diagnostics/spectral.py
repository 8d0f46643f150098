"""Spectral metrics of a cut's features: RankMe, alpha-ReQ, stable rank, NESum.

All four come from one chunked pass over the rows (`moments.covariance`) and
the eigenvalues of D x D matrices in float64, never from an SVD of the
N x D data matrix: with X = U S V^T, X^T X / N has eigenvalues s_k^2 / N,
so s_k = sqrt(N * eig_k). Two spectra are used, because the papers define
the metrics on two different matrices:

* the data matrix as it is (uncentred), for **RankMe** (Garrido et al. 2023
  take the singular values of the embedding matrix Z, with no centring) and
  the **stable rank** ||X||_F^2 / ||X||_2^2 (a property of the matrix X);
* the covariance (centred), for **alpha-ReQ** (Agrawal et al. 2022 fit the
  eigenspectrum of the representation covariance) and **NESum** (He & Ozay
  2022, sum of covariance eigenvalues over the largest).

Computed on one matrix, the stable rank and NESum would be the same number
(both are trace / largest eigenvalue); on the two they differ exactly by the
mean direction, which post-ReLU backbone cuts have in abundance. The centred
covariance C comes from the pass; the uncentred second moment is C + mu mu^T
(no second pass), so each cut costs N D^2 multiply-adds plus one D x D
symmetric eigenvalue problem per spectrum asked for (about 4/3 D^3 flops each;
a D^3 term that matters only for D in the thousands).

Resolution: eigenvalues below `floor_ratio(D) * largest` are set to 0. An
eigensolver's rounding error is about D * eps64 * largest, so smaller values
are indistinguishable from exact zeros (dead units, rank < D); in singular
values that is about 1e-6 of the largest at D = 512. A direct SVD would
resolve smaller singular values, but they weigh at most ~1e-6 each in RankMe.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..names import SPECTRAL_METRICS
from .moments import DEFAULT_MEMORY_BUDGET, covariance

#: Added to every normalised singular value in RankMe, as in the paper (avoids log 0).
RANKME_EPS = 1e-7
#: alpha-ReQ's reference point: a spectrum decaying like 1/k (Agrawal et al. 2022; Stringer et al. 2019).
ALPHA_TARGET = 1.0


def floor_ratio(dim: int) -> float:
    """Relative eigenvalue floor: 10 x the eigensolver's rounding error (D * float64 epsilon)."""
    return 10.0 * max(dim, 1) * float(np.finfo(np.float64).eps)


def _resolved(eig: np.ndarray, dim: int) -> np.ndarray:
    """Eigenvalues sorted descending, numerical noise (and negative round-off) set to 0."""
    eig = np.sort(np.asarray(eig, dtype=np.float64))[::-1].copy()
    top = eig[0] if eig.size else 0.0
    eig[eig < floor_ratio(dim) * top] = 0.0
    return eig


def rankme(uncentred_eig: np.ndarray, n: int) -> float:
    """exp(entropy) of p_k = s_k / sum(s) + 1e-7 over the min(N, D) singular values of X (not centred).

    Uncentred as in the paper, whose embeddings are roughly centred anyway; on
    a post-ReLU backbone cut the mean is one large singular value, which lowers
    RankMe (a linear probe with a bias does not care about the mean).
    """
    eig = uncentred_eig[: min(n, len(uncentred_eig))]
    s = np.sqrt(n * eig)
    if s.sum() <= 0:
        return float("nan")
    p = s / s.sum() + RANKME_EPS
    return float(np.exp(-np.sum(p * np.log(p))))


def alpha_req(centred_eig: np.ndarray, n: int) -> float:
    """alpha of the least-squares fit log eig_k = c - alpha log k over the resolvable ranks.

    Ranks 1..K with K = min(D, N - 1) (a centred covariance of N images has
    rank at most N - 1) restricted to eigenvalues above the floor. Why the
    whole resolvable spectrum and not a fixed window (reptrix fits ranks
    6..100): cuts range from 16 to thousands of dimensions, and a fixed window
    would cover all of a narrow cut but a sliver of a wide one. The price:
    where D approaches N the finite-sample edge bends the tail down, so compare
    alpha at equal N (a sweep does). NaN with fewer than 3 resolvable eigenvalues.
    """
    eig = centred_eig[: max(0, min(len(centred_eig), n - 1))]
    eig = eig[eig > 0]
    if eig.size < 3:
        return float("nan")
    slope, _ = np.polyfit(np.log(np.arange(1, eig.size + 1)), np.log(eig), 1)
    return float(-slope)


def trace_ratio(eig: np.ndarray) -> float:
    """sum(eig) / max(eig): the stable rank of the uncentred spectrum, NESum of the centred one."""
    return float(eig.sum() / eig[0]) if eig.size and eig[0] > 0 else float("nan")


def spectra(x: torch.Tensor, device: torch.device, budget: int = DEFAULT_MEMORY_BUDGET, centred: bool = True,
            uncentred: bool = True) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(centred, uncentred) eigenvalues of one cut's features [N, D], descending, float64 (None when not asked)."""
    cov, mu = covariance(x, device, budget)
    dim = int(x.shape[1])
    c = _resolved(torch.linalg.eigvalsh(cov).cpu().numpy(), dim) if centred else None
    u = None
    if uncentred:
        cov.addr_(mu, mu)  # in place: C + mu mu^T = X^T X / N
        u = _resolved(torch.linalg.eigvalsh(cov).cpu().numpy(), dim)
    return c, u


def spectral_metrics(x: torch.Tensor, device: torch.device, wanted=SPECTRAL_METRICS,
                     budget: int = DEFAULT_MEMORY_BUDGET) -> dict[str, float]:
    """The wanted metrics of one cut, plus `<metric>_frac` = value / min(D, N) for the three ranks.

    The fractions make cuts of different widths comparable (a 16-d stem cannot
    reach the rank of a 512-d projector); alpha is scale-free and has none.
    """
    n, dim = int(x.shape[0]), int(x.shape[1])
    centred, uncentred = spectra(x, device, budget, centred=bool({"alpha_req", "nesum"} & set(wanted)),
                                 uncentred=bool({"rankme", "stable_rank"} & set(wanted)))
    values = {"rankme": lambda: rankme(uncentred, n), "alpha_req": lambda: alpha_req(centred, n),
              "stable_rank": lambda: trace_ratio(uncentred), "nesum": lambda: trace_ratio(centred)}
    out: dict[str, float] = {}
    cap = min(dim, n)
    for m in wanted:
        out[m] = values[m]()
        if m != "alpha_req":
            out[f"{m}_frac"] = out[m] / cap if math.isfinite(out[m]) else float("nan")
    return out

"""Bootstrap intervals over test images, from per-image correctness (no probe is refitted).

Why a shared resampling: every accuracy of a sweep is scored on the same test
images, so one set of B resamples (seeded) serves all rows, and a difference
of two accuracies (a cut vs the last cut, a model vs its random-init twin) is
resampled *paired*: both sides see the same resampled images, which removes
the between-image variance the two share and gives the narrower, correct
interval for the difference. Percentile intervals; with n >= a few hundred
test images their coverage is close to nominal (tests check 92-98% for 95%).
"""

from __future__ import annotations

import math

import numpy as np
import torch

LEVEL = 0.95
_CHUNK = 200  # resamples per matmul: bounds memory to _CHUNK x n floats


class Resampler:
    """B seeded bootstrap resamples of n test images, applied to correctness vectors."""

    def __init__(self, n: int, resamples: int = 1000, seed: int = 0, stream: int = 0):
        """`stream` > 0 draws an independent set of resamples from the same seed (e.g. validation images, stream 1,
        resampled beside the test images; stream 0 is the test images' own)."""
        self.n, self.resamples = int(n), int(resamples)
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED, *([int(stream)] if stream else [])]))
        self._idx = rng.integers(0, self.n, size=(self.resamples, self.n), dtype=np.int64) if self.n else None

    @staticmethod
    def nbytes(n: int, resamples: int) -> int:
        """Bytes of the resampled indices a Resampler of n images holds (int64, resamples x n)."""
        return 8 * int(n) * int(resamples)

    def accuracies(self, correct: np.ndarray | torch.Tensor) -> np.ndarray:
        """correct [L, n] (bool) -> resampled accuracies [B, L]."""
        c = np.asarray(correct.numpy() if isinstance(correct, torch.Tensor) else correct, dtype=np.float32)
        if c.ndim == 1:
            c = c[None]
        if c.shape[1] != self.n:
            raise ValueError(f"correctness vectors have {c.shape[1]} images, the resampler {self.n}")
        out = np.empty((self.resamples, c.shape[0]), dtype=np.float64)
        for s in range(0, self.resamples, _CHUNK):
            idx = self._idx[s:s + _CHUNK]
            rows = idx.shape[0]
            flat = (idx + (np.arange(rows) * self.n)[:, None]).ravel()
            counts = np.bincount(flat, minlength=rows * self.n).reshape(rows, self.n).astype(np.float32)
            out[s:s + rows] = counts @ c.T / self.n
        return out

    def interval(self, correct) -> tuple[np.ndarray, np.ndarray]:
        """95% percentile interval of each row's accuracy: (low [L], high [L])."""
        return percentile_interval(self.accuracies(correct))

    def difference_interval(self, correct_a, correct_b) -> tuple[float, float]:
        """Paired 95% interval of accuracy(a) - accuracy(b) over the same resampled images."""
        acc = self.accuracies(np.stack([_np(correct_a), _np(correct_b)]))
        lo, hi = percentile_interval(acc[:, :1] - acc[:, 1:])
        return float(lo[0]), float(hi[0])


def versus_draws(model: np.ndarray, draws: np.ndarray, points: np.ndarray, seed: int = 0,
                 level: float = LEVEL) -> tuple[float, float]:
    """Interval of (model - the mean of N random draws), e.g. a model's gain minus the mean gain of N random inits.

    `model` [B] and `draws` [B, N] are the statistic on the same B resamples of the test images (paired: the image
    noise the two share cancels); `points` [N] the draws' values on the whole test set. With N >= 2 the mean of N
    draws is itself uncertain: each resample also gets the mean's between-draw error s / sqrt(N) * T, T drawn from
    Student's t with N - 1 degrees of freedom (s: the sd of `points`; t because s is estimated from few draws).
    That adds the between-draw variance to the test-image variance; it counts the draws' own image noise twice, so
    it errs wide. With N = 1 it is the plain paired interval.
    """
    diff = np.asarray(model, dtype=np.float64) - np.asarray(draws, dtype=np.float64).mean(axis=1)
    n = len(points)
    if n >= 2:
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED, 2]))
        diff = diff + np.std(points, ddof=1) / math.sqrt(n) * rng.standard_t(n - 1, size=diff.shape[0])
    lo, hi = percentile_interval(diff[:, None], level)
    return float(lo[0]), float(hi[0])


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) percentiles of resampled statistics [B, L] along the resamples."""
    a = (1.0 - level) / 2.0
    return np.quantile(samples, a, axis=0), np.quantile(samples, 1.0 - a, axis=0)


def _np(x) -> np.ndarray:
    return np.asarray(x.numpy() if isinstance(x, torch.Tensor) else x)

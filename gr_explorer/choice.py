"""How sure is the choice of cut: re-choose it on resampled validation images, score it on resampled test images.

Why: the best cut is the one with the highest validation accuracy, and its test accuracy is reported with a
bootstrap over the test images only. The choice itself depends on which images happen to be in the validation
split; another sample can pick another cut and move the headline by points (issue 28). Here every one of the B
resamples draws the validation images AND the test images with replacement (independently: they are different
images), re-chooses the cut on the resampled validation accuracies (ties: the shallower cut, summary.best_row's
rule) and reads the resampled test accuracy of the cut chosen there. That gives

* `p_chosen`: the share of resamples in which each cut is the one chosen (sums to 1 over a curve's cuts);
* an interval for the reported best-cut accuracy that includes the choice, and one for the guillotine gain
  (the re-chosen cut minus the last cut, paired on the same resampled test images).

Each cut's probe hyper-parameter (C, k) stays at its own validation choice: re-choosing it as well would need
every value's test hits, a refit per value. An interval with the choice is never reported narrower than the one
with the cut fixed (`hull`): choosing adds uncertainty, and a mixture of cuts whose test spread happens to be
smaller must not read as more certain. Cost: per curve, two bincount products of B x n x L (validation and test)
and no refit; see benchmarks/README.md for the measured time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .stats import Resampler, percentile_interval


@dataclass
class CutChoice:
    """One curve's joint resamples: how often each cut is chosen and what the chosen cut scores on test."""

    p_chosen: np.ndarray  # [L] share of resamples in which each cut (depth order) is chosen
    accuracy: np.ndarray  # [B] test accuracy of the cut chosen in each resample
    gain: np.ndarray  # [B] that minus the last cut's test accuracy in the same resample

    def accuracy_interval(self, fixed: tuple[float, float]) -> tuple[float, float]:
        """95% interval of the reported accuracy with the choice of cut, never narrower than `fixed`."""
        return hull(self.accuracy, fixed)

    def gain_interval(self, fixed: tuple[float, float]) -> tuple[float, float]:
        """95% interval of the guillotine gain with the choice of cut, never narrower than `fixed`."""
        return hull(self.gain, fixed)


def choose_cuts(val_correct: np.ndarray, test_accuracies: np.ndarray, val_resampler: Resampler) -> CutChoice:
    """val_correct [L, n_val] (bool, cuts in depth order), test_accuracies [B, L] (each cut's accuracy on B resamples
    of the test images, e.g. Resampler.accuracies) -> the cut chosen in each joint resample and its test accuracy.

    `val_resampler` must draw as many resamples as the test side (B) and is paired with it resample by resample.
    """
    val = val_resampler.accuracies(val_correct)  # [B, L]
    if val.shape[0] != test_accuracies.shape[0]:
        raise ValueError(f"{val.shape[0]} validation resamples against {test_accuracies.shape[0]} test resamples")
    chosen = val.argmax(axis=1)  # the first maximum: ties go to the shallower cut
    rows = np.arange(len(chosen))
    accuracy = test_accuracies[rows, chosen]
    p = np.bincount(chosen, minlength=val.shape[1]) / len(chosen)
    return CutChoice(p, accuracy, accuracy - test_accuracies[:, -1])


def hull(samples: np.ndarray, fixed: tuple[float, float]) -> tuple[float, float]:
    """The percentile interval of `samples`, widened to contain `fixed` (lo, hi; NaN: nothing to contain)."""
    lo, hi = percentile_interval(np.asarray(samples, dtype=np.float64)[:, None])
    return float(np.fmin(lo[0], fixed[0])), float(np.fmax(hi[0], fixed[1]))  # fmin/fmax: a NaN bound is ignored

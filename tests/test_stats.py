"""Bootstrap intervals against known truths: coverage on simulated data, paired vs unpaired widths."""

import numpy as np

from gr_explorer.stats import Resampler, percentile_interval


def test_accuracy_interval_covers_the_truth_at_the_nominal_rate():
    """95% intervals on Bernoulli(p) correctness vectors cover p in 92-98% of 500 repetitions."""
    rng = np.random.default_rng(0)
    n, p, reps = 400, 0.7, 500
    resampler = Resampler(n, resamples=1000, seed=1)
    samples = rng.random((reps, n)) < p
    lo, hi = resampler.interval(samples)  # 500 rows resampled with the same image draws, as a sweep does
    coverage = float(((lo <= p) & (p <= hi)).mean())
    assert 0.92 <= coverage <= 0.98, coverage


def test_resampled_accuracy_matches_numpy_reference():
    rng = np.random.default_rng(3)
    correct = rng.random((2, 50)) < 0.6
    r = Resampler(50, resamples=200, seed=7)
    acc = r.accuracies(correct)
    ref = np.stack([correct[:, idx].mean(1) for idx in r._idx])  # resample by index, by hand
    assert np.allclose(acc, ref)
    lo, hi = percentile_interval(acc)
    assert np.allclose(lo, np.quantile(ref, 0.025, axis=0)) and np.allclose(hi, np.quantile(ref, 0.975, axis=0))


def test_paired_difference_is_narrower_than_unpaired_on_correlated_data():
    """Two cuts that get mostly the same images right: the paired interval of their difference is much narrower."""
    rng = np.random.default_rng(2)
    n = 1000
    a = rng.random(n) < 0.7
    b = a.copy()
    flip = rng.random(n) < 0.08  # b differs from a on 8% of the images
    b[flip] = ~b[flip]
    r = Resampler(n, resamples=1000, seed=0)
    lo, hi = r.difference_interval(a, b)
    # unpaired reference: a and b resampled independently
    ia = rng.integers(0, n, (1000, n))
    ib = rng.integers(0, n, (1000, n))
    diff = a[ia].mean(1) - b[ib].mean(1)
    ulo, uhi = np.quantile(diff, [0.025, 0.975])
    assert (hi - lo) < 0.6 * (uhi - ulo)
    assert lo <= a.mean() - b.mean() <= hi


def test_seeded():
    c = np.random.default_rng(0).random((3, 100)) < 0.5
    assert np.array_equal(Resampler(100, 300, 5).interval(c), Resampler(100, 300, 5).interval(c))
    assert not np.array_equal(Resampler(100, 300, 5).interval(c)[0], Resampler(100, 300, 6).interval(c)[0])

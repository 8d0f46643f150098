"""Does a label-free score find the best cut? Metric vs probe accuracy across the cuts of each curve.

For every (model, task, probe) curve of a sweep table and every metric (and
augmentation, for invariance rows) of a diagnostics table:

* Spearman's rho across cuts between the metric, oriented so that higher means
  "better" (see `DIRECTIONS`), and test accuracy, with its p-value and a 95%
  interval (Fisher z with the Fieller-Hartley-Pearson variance 1.06 / (n - 3),
  the usual approximation for Spearman's rho; none below 4 cuts);
* the cut the metric picks (best oriented score, ties -> shallower) against
  the cut validation picks (highest val_accuracy, ties -> shallower), and the
  test accuracy lost by trusting the metric (validation pick minus metric pick;
  negative when the metric happened to do better on test), with a paired 95%
  bootstrap interval over the same test images (stats.Resampler) when the
  table carries per-image hits: a 1-point loss within noise and a 17-point one
  must not read alike.

A curve has few cuts (7-9 for the zoo), so these correlations are noisy; read
the interval. The literature validated RankMe and alpha-ReQ across training
runs and hyper-parameters at the embedding, not across depth within one model.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import DiagnosticError
from ..stats import Resampler
from .spectral import ALPHA_TARGET

CURVE = ["model", "task", "probe"]
#: How to orient a metric so that higher is "better". alpha-ReQ: Agrawal et al. (2022) find the best
#: representations near alpha = 1 (slower decay: noisy, whitened; faster: collapsed), so -|alpha - 1|.
#: Invariance/retrieval: higher, the SSL objective's own view (a downstream task that needs the
#: attribute an augmentation removes wants the opposite, which the sign of rho then shows).
DIRECTIONS = {"alpha_req": f"closest to {ALPHA_TARGET:g}"}
DEFAULT_DIRECTION = "higher"
COLUMNS = CURVE + ["metric", "augmentation", "direction", "n_cuts", "spearman", "spearman_low", "spearman_high",
                   "p_value", "metric_cut", "metric_depth", "metric_accuracy", "val_cut", "val_depth", "val_pick_accuracy",
                   "accuracy_lost", "accuracy_lost_ci_low", "accuracy_lost_ci_high"]
_RESULT_COLUMNS = {"model", "cut", "depth", "task", "probe", "accuracy", "val_accuracy"}
_METRIC_COLUMNS = {"model", "cut", "metric", "value", "augmentation"}


def oriented(metric: str, values) -> np.ndarray:
    """Metric values turned into a higher-is-better score."""
    v = np.asarray(values, dtype=np.float64)
    return -np.abs(v - ALPHA_TARGET) if metric == "alpha_req" else v


def _pick(depth: np.ndarray, score: np.ndarray) -> int:
    """Index of the highest finite score, ties -> smallest depth; -1 when none is finite."""
    ok = np.isfinite(score)
    if not ok.any():
        return -1
    best = score[ok].max()
    cand = np.flatnonzero(ok & (score == best))
    return int(cand[np.argmin(depth[cand])])


def spearman_interval(rho: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Fisher-z interval for Spearman's rho, variance 1.06 / (n - 3) (Fieller et al. 1957)."""
    if n < 4 or not np.isfinite(rho):
        return float("nan"), float("nan")
    z = np.arctanh(np.clip(rho, -0.999999, 0.999999))
    half = stats.norm.ppf(0.5 + level / 2) * np.sqrt(1.06 / (n - 3))
    return float(np.tanh(z - half)), float(np.tanh(z + half))


def _check(table: pd.DataFrame, need: set, what: str) -> None:
    missing = sorted(need - set(table.columns))
    if missing:
        raise DiagnosticError(f"The {what} table lacks column(s) {missing}. Valid: a table with {sorted(need)}.")


def metric_vs_accuracy(results: pd.DataFrame, metrics: pd.DataFrame, resamples: int = 1000,
                       seed: int = 0) -> pd.DataFrame:
    """One row per (model, task, probe, metric, augmentation); see the module docstring. The interval of the
    accuracy lost needs `results`' per-image `correct` column (a sweep's in-memory table), else it is NaN."""
    _check(results, _RESULT_COLUMNS, "results")
    _check(metrics, _METRIC_COLUMNS, "metrics")
    paired = "correct" in results.columns and len(results) and results["correct"].notna().all()
    resampler = Resampler(int(results["n_test"].iloc[0]), resamples, seed) if paired else None
    m = metrics[["model", "cut", "metric", "augmentation", "value"]].copy()
    m["augmentation"] = m["augmentation"].fillna("")
    rows = []
    for key, curve in results.groupby(CURVE, sort=False):
        curve = curve.drop_duplicates("cut")
        depth_all = curve["depth"].to_numpy()
        val_i = _pick(depth_all, curve["val_accuracy"].to_numpy(dtype=np.float64))
        val = curve.iloc[val_i] if val_i >= 0 else None  # None: no finite val_accuracy in this curve
        for (metric, aug), g in m[m["model"] == key[0]].groupby(["metric", "augmentation"], sort=False):
            j = curve.merge(g[["cut", "value"]], on="cut", how="inner").sort_values("depth")
            score = oriented(metric, j["value"])
            acc = j["accuracy"].to_numpy(dtype=np.float64)
            ok = np.isfinite(score)
            n = int(ok.sum())
            rho = p = float("nan")
            if n >= 3 and np.ptp(score[ok]) > 0 and np.ptp(acc[ok]) > 0:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = stats.spearmanr(score[ok], acc[ok])
                rho, p = float(res.statistic), float(res.pvalue)
            lo, hi = spearman_interval(rho, n)
            k = _pick(j["depth"].to_numpy(), score)
            pick = j.iloc[k] if k >= 0 else None
            lost_lo = lost_hi = float("nan")
            if resampler is not None and val is not None and pick is not None:
                lost_lo, lost_hi = (0.0, 0.0) if pick["cut"] == val["cut"] else \
                    resampler.difference_interval(val["correct"], pick["correct"])
            rows.append({**dict(zip(CURVE, key)), "metric": metric, "augmentation": aug,
                         "direction": DIRECTIONS.get(metric, DEFAULT_DIRECTION), "n_cuts": n,
                         "spearman": rho, "spearman_low": lo, "spearman_high": hi, "p_value": p,
                         "metric_cut": pick["cut"] if pick is not None else None,
                         "metric_depth": int(pick["depth"]) if pick is not None else -1,
                         "metric_accuracy": float(pick["accuracy"]) if pick is not None else float("nan"),
                         "val_cut": val["cut"] if val is not None else None,
                         "val_depth": int(val["depth"]) if val is not None else -1,
                         "val_pick_accuracy": float(val["accuracy"]) if val is not None else float("nan"),
                         "accuracy_lost": float(val["accuracy"] - pick["accuracy"]) if val is not None and pick is not None
                         else float("nan"), "accuracy_lost_ci_low": lost_lo,
                         "accuracy_lost_ci_high": lost_hi})
    return pd.DataFrame(rows, columns=COLUMNS)

"""Combined cuts: several cuts' pooled features concatenated and probed like one cut.

Why: the evaluations that define today's results read more than one layer (DINOv2's linear evaluation
concatenates the last 4 blocks' class tokens; AIM probes its 6 best intermediate layers and beats its last
layer). A combined cut answers "is one cut enough?" next to the curve of single cuts.

Forms (`SweepConfig.combine`):

* `lastK`: the last K block / stage outputs of the backbone, in forward order (sub-block cuts and the pooled
  output left out: they repeat what the blocks carry);
* `bestK`: the K single cuts of the same curve with the best *validation* accuracy for that probe and task (ties:
  the shallower cut), so it may differ per task and probe; test accuracy is never looked at;
* `a+b+c`: those cuts.

Each cut's features are z-scored and scaled to unit total variance before they are concatenated
(`combine_standardize=on`), so that each cut weighs the same in the k-NN's cosine similarity whatever its
width; the linear probe standardises every column anyway, so its numbers are the same either way. The
concatenation lives in memory as float32: N x (sum of the cuts' dims) x 4 bytes per split. The attentive probe
reads one cut's tokens and is not combined.

Results: one row per (combined cut, task, probe) with `cut = concat(a,b)`, `cuts = a,b` and `combine` the form,
plus the comparison with the curve's validation-selected best single cut: the difference of test accuracies
with a paired bootstrap interval over the same test images (`combined_summary`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .errors import ConfigError, did_you_mean
from .features import Features
from .models import Cut, Model
from .probes import ProbeResult
from .stats import Resampler
from .summary import CURVE, VARIANT, best_row
from .verdict import clear, difference_text

#: a combined cut's rows, besides the results columns
COMBINED_COLUMNS = ["cuts", "combine"]
COMBINED_SUMMARY_COLUMNS = CURVE + VARIANT + [
    "baseline", "combine", "cut", "cuts", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "val_accuracy",
    "best_cut", "best_accuracy", "over_best", "over_best_ci_low", "over_best_ci_high", "clear_difference",
    "random_init_accuracy", "chance"]
#: cuts that `lastK` leaves out: points inside blocks, and the pooled output (it repeats the last block's readout)
_NOT_BLOCKS = re.compile(r".*\.(attn_out|mlp_hidden)$|^pool$")


def concat_name(cuts) -> str:
    return f"concat({','.join(cuts)})"


def _form(spec: str) -> tuple[str, int | tuple[str, ...]]:
    """('last', K) / ('best', K) / ('set', (a, b, ...))."""
    m = re.fullmatch(r"(last|best)(\d+)", spec)
    return (m.group(1), int(m.group(2))) if m else ("set", tuple(spec.split("+")))


def block_cuts(cuts: list[Cut]) -> list[Cut]:
    """The backbone's block / stage outputs, in forward order: what `lastK` counts from the end."""
    return [c for c in cuts if c.part == "backbone" and not _NOT_BLOCKS.fullmatch(c.name)]


def check_forms(forms, model: Model, cuts: list[Cut]) -> None:
    """Every combined cut can be built from this model's cuts of the sweep; else ConfigError naming what is valid."""
    names = [c.name for c in cuts]
    for spec in forms:
        kind, arg = _form(spec)
        if kind == "set":
            for n in arg:
                if n not in names:
                    raise ConfigError(f"combine={spec!r}: {model.name} has no cut {n!r} in this sweep. "
                                      f"{did_you_mean(n, names)}")
            if len(set(arg)) != len(arg):
                raise ConfigError(f"combine={spec!r} names a cut twice. Valid: distinct cut names joined by '+'.")
        else:
            pool = block_cuts(cuts) if kind == "last" else cuts
            if arg > len(pool):
                what = "block/stage outputs" if kind == "last" else "cuts"
                raise ConfigError(f"combine={spec!r} asks for {arg} cuts but {model.name} has {len(pool)} {what} in "
                                  f"this sweep ({', '.join(c.name for c in pool)}). Valid: {kind}2 to "
                                  f"{kind}{len(pool)}.")


@dataclass(frozen=True)
class Combination:
    """One combined cut of one curve: the form that chose it, its cuts in forward order and their feature columns."""

    form: str
    cuts: tuple[str, ...]
    columns: tuple[str, ...]

    @property
    def name(self) -> str:
        return concat_name(self.cuts)


def combinations(forms, feats: Features, results: list[ProbeResult], probe: str) -> dict[str, dict[str, list]]:
    """{curve: {task: [Combination]}} for one probe: each readout curve's combined cuts per task.

    `results` are the single-cut results of `feats.distinct()` columns; `bestK` ranks the curve's cuts by their
    validation accuracy for `probe` and the task (ties: the shallower cut)."""
    val = {(col.name, r.task): r.val_accuracy for col, r in feats.expand(results) if r.probe == probe}
    tasks = list(dict.fromkeys(t for _, t in val))
    curves: dict[str, list] = {}
    for col in feats.columns:
        curves.setdefault(f"{col.readout}|{col.norm}", []).append(col)
    out: dict[str, dict[str, list]] = {}
    for curve, cols in curves.items():
        by_cut = {c.cut.name: c for c in cols}
        order = [c.cut for c in cols]
        out[curve] = {t: [] for t in tasks}
        for spec in forms:
            kind, arg = _form(spec)
            for task in tasks:
                if kind == "last":
                    chosen = [c.name for c in block_cuts(order)[-arg:]]
                elif kind == "best":
                    ranked = sorted(order, key=lambda c, t=task: (-val[(by_cut[c.name].name, t)], c.depth))[:arg]
                    chosen = [c.name for c in sorted(ranked, key=lambda c: c.depth)]
                else:
                    chosen = [c.name for c in order if c.name in arg]
                out[curve][task].append(Combination(spec, tuple(chosen), tuple(by_cut[n].name for n in chosen)))
    return out


def fit_combined(forms, feats: Features, results: list[ProbeResult], probes, train_labels, test_labels, *,
                 standardize: bool, fit_probes, fit_rows: torch.Tensor | None = None) -> list[tuple[Combination, str, int,
                                                                                                      ProbeResult]]:
    """Probe every combined cut of every readout curve: (combination, curve, dim, result) per (curve, task, form,
    probe). `fit_probes(probes, train_feats, test_feats)` fits like the sweep's single cuts (same split and
    settings); `fit_rows`: the rows whose statistics standardise each cut (None: all train rows)."""
    out = []
    for probe in probes:
        combos = combinations(forms, feats, results, probe)
        train, test = {}, {}
        for per_task in combos.values():
            for combs in per_task.values():
                for comb in combs:
                    key = "|".join(comb.columns)
                    if key not in train:
                        train[key], test[key] = concatenate(feats.train, feats.test, comb.columns, standardize, fit_rows)
        if not train:
            continue
        fitted = {(r.cut, r.task): r for r in fit_probes([probe], train, test)}
        for curve, per_task in combos.items():
            for task, combs in per_task.items():
                for comb in combs:
                    key = "|".join(comb.columns)
                    out.append((comb, curve, int(train[key].shape[1]), fitted[(key, task)]))
    return out


def concatenate(train: dict[str, torch.Tensor], test: dict[str, torch.Tensor], columns, standardize: bool,
                rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The columns' features side by side, float32 [N, sum D]; with `standardize`, each cut z-scored (statistics of
    the train rows `rows`, all when None) and scaled by 1/sqrt(D) so every cut has unit total variance."""
    parts_tr, parts_te = [], []
    for c in columns:
        a, b = train[c].to(torch.float32), test[c].to(torch.float32)
        if standardize:
            ref = (a if rows is None else a[rows]).to(torch.float64)
            mean, std = ref.mean(0), ref.std(0, unbiased=False)
            inv = torch.where(std > 1e-12, 1.0 / std.clamp_min(1e-12), torch.zeros_like(std)) / np.sqrt(a.shape[1])
            a, b = ((a - mean.float()) * inv.float()), ((b - mean.float()) * inv.float())
        parts_tr.append(a)
        parts_te.append(b)
    return torch.cat(parts_tr, 1), torch.cat(parts_te, 1)


def combined_summary(table: pd.DataFrame, combined: pd.DataFrame, resamples: int, seed: int) -> pd.DataFrame:
    """Each combined cut next to its curve's validation-selected best single cut (paired interval over the same test
    images) and the random-init twin's same combined cut."""
    if combined.empty:
        return pd.DataFrame(columns=COMBINED_SUMMARY_COLUMNS)
    keys = CURVE + VARIANT
    paired = "correct" in combined.columns and combined["correct"].notna().all() and table["correct"].notna().all()
    resampler = Resampler(int(combined["n_test"].iloc[0]), resamples, seed) if paired else None
    best = {k: best_row(g) for k, g in table.groupby(keys, sort=False)}
    twins = dict(zip(table["baseline_for"], table["model"])) if "baseline_for" in table.columns else {}
    twins.pop("", None)
    twin_rows = {tuple(r[k] for k in [*keys, "combine"]): r for _, r in combined.iterrows()}
    rows = []
    for _, r in combined.iterrows():
        b = best.get(tuple(r[k] for k in keys))
        lo = hi = np.nan
        if b is not None and resampler is not None:
            lo, hi = resampler.difference_interval(r["correct"], b["correct"])
        twin = twin_rows.get((twins.get(r["model"], None), *[r[k] for k in keys[1:]], r["combine"]))
        rows.append({**{k: r[k] for k in keys}, "baseline": r["baseline"], "combine": r["combine"], "cut": r["cut"],
                     "cuts": r["cuts"], "accuracy": r["accuracy"], "accuracy_ci_low": r["accuracy_ci_low"],
                     "accuracy_ci_high": r["accuracy_ci_high"], "val_accuracy": r["val_accuracy"],
                     "best_cut": b["cut"] if b is not None else "",
                     "best_accuracy": float(b["accuracy"]) if b is not None else np.nan,
                     "over_best": float(r["accuracy"] - b["accuracy"]) if b is not None else np.nan,
                     "over_best_ci_low": lo, "over_best_ci_high": hi,
                     "clear_difference": clear(lo, hi),
                     "random_init_accuracy": float(twin["accuracy"]) if twin is not None else np.nan,
                     "chance": r["chance"]})
    return pd.DataFrame(rows, columns=COMBINED_SUMMARY_COLUMNS)


def combined_view(summary: pd.DataFrame) -> pd.DataFrame:
    """The comparison as a compact table to print: each combined cut, its accuracy and the difference to the best
    single cut with its paired interval."""
    s = summary[summary["baseline"].fillna("") == ""]
    return pd.DataFrame({
        "model": s["model"], "task": s["task"], "probe": s["probe"], "combined": s["combine"], "cuts": s["cuts"],
        "accuracy [95% CI]": [f"{a:.3f} [{lo:.3f}, {hi:.3f}]" if pd.notna(lo) else f"{a:.3f}"
                              for a, lo, hi in zip(s["accuracy"], s["accuracy_ci_low"], s["accuracy_ci_high"])],
        "best single cut": [f"{c}: {a:.3f}" for c, a in zip(s["best_cut"], s["best_accuracy"])],
        "combined - best single cut": [difference_text(d, lo, hi) for d, lo, hi in
                                       zip(s["over_best"], s["over_best_ci_low"], s["over_best_ci_high"])],
        "random init": ["" if pd.isna(v) else f"{v:.3f}" for v in s["random_init_accuracy"]],
    })

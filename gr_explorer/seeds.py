"""Seeds of one design: models trained with the same recipe and different seeds, read as one result.

The rule (README, "Compare"): two models belong to one *design* when their
cards say so,

* by an explicit `design` field (any string; equal strings = one design), or
* by their training `config` (what `gr-explorer train` records) being equal
  once the seeds and the bookkeeping are left out: `seed`, `data_seed`,
  `out`, `description` and the evaluation settings (`eval*`, `device`).

A run that was stopped before its last step (its card says `complete: false`,
or `training.stopped_early`) is no seed of its recipe: it stands alone, so a
half-trained model is never averaged with finished ones.

A design with two or more of the picked models is drawn as one mean curve
whose band spans the seeds (min to max at each cut), and summarised by the
mean and the standard deviation (ddof=1) over seeds of each seed's own
validation-selected guillotine gain, with a 95% Student-t interval for that
mean (n - 1 degrees of freedom). "No clear gain" when the interval contains 0.

Pure pandas / NumPy on the library's tables: the app's Compare page, the zoo's
README generator and a notebook use the same rule.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .hashing import json_digest
from .names import draw_of, random_label
from .summary import CURVE, SUMMARY_COLUMNS, enough_data
from .training.config import TrainConfig

#: card `config` keys that do not change the design: the seeds and where / how a run was written or evaluated
NOT_DESIGN = TrainConfig.not_design()
BAND = "min-max over seeds"
SEED_COLUMNS = ["design", "task", "probe", "n_seeds", "models", "best_cuts", "best_accuracy_mean", "best_accuracy_sd",
                "last_accuracy_mean", "gain_mean", "gain_sd", "gain_ci_low", "gain_ci_high", "clear_gain", "gains"]


def design_key(card: dict | None) -> str | None:
    """What identifies a model's design (None: the card does not say, so the model stands alone)."""
    card = card or {}
    if incomplete(card):
        return None
    if isinstance(card.get("design"), str) and card["design"].strip():
        return "design:" + card["design"].strip()
    config = card.get("config")
    if not isinstance(config, dict) or not config:
        return None
    # A setting declared after the card was written is absent from it; the card ran with that setting's default
    # (a new setting's default keeps the old behaviour), so it is filled in and the card keeps its design.
    config = {**TrainConfig.defaults(), **config}
    return "config:" + json_digest({k: v for k, v in config.items() if k not in NOT_DESIGN}, length=16)


def incomplete(card: dict | None) -> bool:
    """Was the training that made this model stopped before its last planned step?"""
    card = card or {}
    training = card.get("training") if isinstance(card.get("training"), dict) else {}
    return card.get("complete") is False or bool(training.get("stopped_early"))


def _label(models: list[str], card: dict | None) -> str:
    if card and isinstance(card.get("design"), str) and card["design"].strip():
        stem = card["design"].strip()
    else:
        stem = os.path.commonprefix(models).rstrip("_-.")
        for tail in ("_seed", "-seed", "_s", "-s"):
            stem = stem.removesuffix(tail)
        stem = stem.rstrip("_-.") or models[0]
    return f"{stem} (mean of {len(models)} seeds)"


def seed_groups(cards: dict[str, dict | None]) -> dict[str, list[str]]:
    """{group label: [model names]} for every design with at least two of the given models (in given order)."""
    by_key: dict[str, list[str]] = {}
    for model, card in cards.items():
        key = design_key(card)
        if key is not None:
            by_key.setdefault(key, []).append(model)
    return {_label(members, cards[members[0]]): members for members in by_key.values() if len(members) >= 2}


def _member_of(groups: dict[str, list[str]], table: pd.DataFrame) -> dict[str, str]:
    """model name -> its group's label, and each member's random-init twin (its rows' `baseline_for`) -> the
    group twin's label."""
    out = {m: label for label, members in groups.items() for m in members}
    if "baseline_for" in table.columns:
        twins = table[table["baseline_for"].fillna("").isin(list(out))]
        out.update({twin: random_label(out[model], draw_of(twin)) for twin, model in
                    zip(twins["model"], twins["baseline_for"])})
    return out


def aggregate_table(table: pd.DataFrame, groups: dict[str, list[str]]) -> pd.DataFrame:
    """The results table with each group's rows replaced by one mean row per cut (band: min-max over seeds).

    `accuracy` and `val_accuracy` are the means over seeds; `accuracy_ci_low/high` hold the min and max
    (the band the plot draws); other models' rows are unchanged.
    """
    member = _member_of(groups, table)
    inside = table["model"].isin(list(member))
    if not inside.any():
        return table
    rows = table[inside].assign(model=table.loc[inside, "model"].map(member))
    if "baseline_for" in rows.columns:
        rows["baseline_for"] = rows["baseline_for"].fillna("").map(lambda m: member.get(m, m))
    keys = ["model", "baseline", "task", "probe", "cut", "depth", "part"]
    agg = rows.groupby(keys, sort=False).agg(
        accuracy=("accuracy", "mean"), accuracy_ci_low=("accuracy", "min"), accuracy_ci_high=("accuracy", "max"),
        val_accuracy=("val_accuracy", "mean"), chance=("chance", "mean"), dim=("dim", "first"),
        dataset=("dataset", "first"), n_classes=("n_classes", "first"), n_train=("n_train", "first"),
        n_test=("n_test", "first"), n_seeds=("accuracy", "size"),
        **({"baseline_for": ("baseline_for", "first")} if "baseline_for" in rows.columns else {})).reset_index()
    agg["weights"] = BAND
    cols = [c for c in table.columns if c not in ("correct", "val_correct")]
    out = pd.concat([table.loc[~inside, cols], agg.reindex(columns=cols + ["n_seeds"])], ignore_index=True)
    return out


def seed_summary(summary: pd.DataFrame, groups: dict[str, list[str]]) -> pd.DataFrame:
    """One row per (group, task, probe): mean and sd over seeds of each seed's validation-selected gain."""
    rows = []
    s = summary[summary["baseline"].fillna("") == ""]
    for label, members in groups.items():
        g = s[s["model"].isin(members)]
        for (task, probe), part in g.groupby(["task", "probe"], sort=False):
            part = part.set_index("model").reindex([m for m in members if m in set(part["model"])])
            gains = part["gain"].to_numpy(dtype=np.float64)
            n = len(gains)
            mean = float(gains.mean())
            sd = float(gains.std(ddof=1)) if n > 1 else float("nan")
            half = float(stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n)) if n > 1 else float("nan")
            lo, hi = mean - half, mean + half
            rows.append({"design": label, "task": task, "probe": probe, "n_seeds": n, "models": list(part.index),
                         "best_cuts": list(part["best_cut"]),
                         "best_accuracy_mean": float(part["best_accuracy"].mean()),
                         "best_accuracy_sd": float(part["best_accuracy"].std(ddof=1)) if n > 1 else float("nan"),
                         "last_accuracy_mean": float(part["last_accuracy"].mean()), "gain_mean": mean, "gain_sd": sd,
                         "gain_ci_low": lo, "gain_ci_high": hi,
                         "clear_gain": bool(n > 1 and lo > 0 and enough_data(part).all()),
                         "gains": [float(v) for v in gains]})
    return pd.DataFrame(rows, columns=SEED_COLUMNS)


def card_seed_summary(cards: dict[str, dict], task: str | None = None) -> pd.DataFrame:
    """seed_summary of the held-out sweeps the cards themselves record (`results.summary`), for every design with
    two or more of the given cards: what the zoo's README and the About page quote, never typed by hand."""
    summary = pd.DataFrame([{**r, "model": name} for name, card in cards.items()
                            for r in (card.get("results") or {}).get("summary", [])
                            if (task is None or r["task"] == task) and not r["baseline"]])
    if summary.empty:
        return pd.DataFrame(columns=SEED_COLUMNS)
    return seed_summary(summary, seed_groups(cards))


def plot_summary(agg: pd.DataFrame, summary: pd.DataFrame, seeds: pd.DataFrame, groups: dict[str, list[str]],
                 member: dict[str, str]) -> pd.DataFrame:
    """A summary (SUMMARY_COLUMNS) for `aggregate_table`'s rows, as accuracy_vs_depth reads it.

    A group's star sits at the cut with the best mean validation accuracy; its gain and interval are the
    seed summary's (mean over seeds of each seed's own gain, Student-t interval).
    """
    labels = set(member.values())
    keep = summary[~summary["model"].isin(list(member))]
    rows = []
    sd = seeds.set_index(["design", "task", "probe"]) if len(seeds) else None
    for (model, task, probe), g in agg[agg["model"].isin(labels)].groupby(CURVE, sort=False):
        g = g.sort_values("depth", kind="stable")
        best, last = g.loc[g["val_accuracy"].idxmax()], g.iloc[-1]
        row = {"model": model, "task": task, "probe": probe, "baseline": g["baseline"].iloc[0], "chance": g["chance"].iloc[0],
               "best_cut": best["cut"], "best_depth": int(best["depth"]), "best_val_accuracy": float(best["val_accuracy"]),
               "best_accuracy": float(best["accuracy"]), "best_ci_low": float(best["accuracy_ci_low"]),
               "best_ci_high": float(best["accuracy_ci_high"]), "last_cut": last["cut"],
               "last_accuracy": float(last["accuracy"]), "last_ci_low": float(last["accuracy_ci_low"]),
               "last_ci_high": float(last["accuracy_ci_high"]), "gain": float("nan"), "gain_ci_low": float("nan"),
               "gain_ci_high": float("nan"), "clear_gain": False}
        if sd is not None and (model, task, probe) in sd.index:
            r = sd.loc[(model, task, probe)]
            row.update(gain=r["gain_mean"], gain_ci_low=r["gain_ci_low"], gain_ci_high=r["gain_ci_high"],
                       clear_gain=bool(r["clear_gain"]))
        rows.append(row)
    out = pd.concat([keep, pd.DataFrame(rows).reindex(columns=SUMMARY_COLUMNS)], ignore_index=True)
    return out[SUMMARY_COLUMNS]


@dataclass
class SeedView:
    """Seeds of one design read as one result: what Compare draws and `gr-explorer compare` prints."""

    groups: dict[str, list[str]]  # group label -> member models
    table: pd.DataFrame  # the results with each group's rows replaced by its mean curve (band: min-max)
    seeds: pd.DataFrame  # SEED_COLUMNS: mean and sd over seeds of each seed's gain, Student-t interval
    summary: pd.DataFrame  # SUMMARY_COLUMNS for `table` (a group's star at its best mean validation accuracy)


def seed_view(table: pd.DataFrame, summary: pd.DataFrame, cards: dict[str, dict | None]) -> SeedView:
    """Group the models by design (their cards) and aggregate their curves and gains."""
    groups = seed_groups(cards)
    member = _member_of(groups, table)
    agg = aggregate_table(table, groups)
    rows = seed_summary(summary, groups)
    return SeedView(groups, agg, rows, plot_summary(agg, summary, rows, groups, member))

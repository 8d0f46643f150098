"""Reading a sweep table: best cut and guillotine gain (best minus last cut) per curve."""

from __future__ import annotations

import pandas as pd

CURVE = ["model", "task", "probe"]


def guillotine_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, task, probe): best cut, its accuracy, the last cut's accuracy, and the gain."""
    rows = []
    for key, g in table.groupby(CURVE, sort=False):
        g = g.sort_values("depth")
        best = g.loc[g["accuracy"].idxmax()]
        last = g.iloc[-1]
        rows.append({**dict(zip(CURVE, key)), "best_cut": best["cut"], "best_depth": int(best["depth"]),
                     "best_accuracy": float(best["accuracy"]), "last_cut": last["cut"],
                     "last_accuracy": float(last["accuracy"]), "guillotine_gain": float(best["accuracy"] - last["accuracy"])})
    return pd.DataFrame(rows, columns=CURVE + ["best_cut", "best_depth", "best_accuracy", "last_cut", "last_accuracy", "guillotine_gain"])

"""Reading a sweep table: the best cut (chosen on validation), the guillotine gain and its paired interval.

The rule, the same in the CLI, the plots, the app and the cards: for each
(model, task, probe) curve the best cut is the one with the highest
*validation* accuracy (ties: the shallower cut), and its *test* accuracy is
reported. Picking on test accuracy would bias the gain upward. Guillotine
gain = test accuracy at that cut minus test accuracy at the last cut, with a
paired bootstrap interval over the same test images; a gain whose interval
contains 0 is "no clear gain". Each model is also compared with its
random-init twin (same test images, paired) and with the raw pixels. A curve
without enough data for a finding (samples.py: too few test or validation
images per class, a class missing from a split, every validation accuracy 0)
is `enough_data=False` with its reason in `note`: never a clear gain, and every
view shows "not enough data" instead of its best cut.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .samples import NOT_ENOUGH, NOTHING_CHOSEN, chose_nothing
from .stats import Resampler
from .verdict import gain_text, interval_text

CURVE = ["model", "task", "probe"]
#: which readout curve of a model a row belongs to (a token/pooling readout, the final norm off or on)
VARIANT = ["readout", "norm"]
SUMMARY_COLUMNS = CURVE + VARIANT + [
    "baseline", "chance", "best_cut", "best_depth", "best_val_accuracy", "best_accuracy", "best_ci_low", "best_ci_high",
    "last_cut", "last_accuracy", "last_ci_low", "last_ci_high", "gain", "gain_ci_low", "gain_ci_high", "clear_gain",
    "random_init_accuracy", "over_random_init", "over_random_init_ci_low", "over_random_init_ci_high", "pixels_accuracy",
    "enough_data", "note",
]


def best_row(curve: pd.DataFrame) -> pd.Series:
    """The validation-selected cut of one curve: highest val_accuracy, ties -> the shallower cut."""
    c = curve.sort_values("depth", kind="stable")
    return c.loc[c["val_accuracy"].idxmax()]


def guillotine_summary(table: pd.DataFrame, resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per (model, task, probe): validation-selected best cut, last cut, gain with its paired interval.

    Intervals need the per-image `correct` column that a sweep's in-memory table carries; a table read
    back from results.csv has none, and the interval columns are then NaN.
    """
    if table.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    table = with_variant(table)
    keys = CURVE + VARIANT
    has_correct = "correct" in table.columns and table["correct"].notna().all()
    resampler = Resampler(int(table["n_test"].iloc[0]), resamples, seed) if has_correct else None
    rows, picks = [], {}
    for key, g in table.groupby(keys, sort=False):
        g = g.sort_values("depth", kind="stable")
        best, last = best_row(g), g.iloc[-1]
        picks[key] = best
        row = {**dict(zip(keys, key)), "baseline": _baseline(g), "chance": _first(g, "chance"),
               "best_cut": best["cut"], "best_depth": int(best["depth"]), "best_val_accuracy": float(best["val_accuracy"]),
               "best_accuracy": float(best["accuracy"]), "best_ci_low": _first_of(best, "accuracy_ci_low"),
               "best_ci_high": _first_of(best, "accuracy_ci_high"), "last_cut": last["cut"],
               "last_accuracy": float(last["accuracy"]), "last_ci_low": _first_of(last, "accuracy_ci_low"),
               "last_ci_high": _first_of(last, "accuracy_ci_high"), "gain": float(best["accuracy"] - last["accuracy"])}
        lo = hi = np.nan
        if resampler is not None:
            lo, hi = (0.0, 0.0) if best["cut"] == last["cut"] else resampler.difference_interval(best["correct"], last["correct"])
        note = _note(g)
        row.update(gain_ci_low=lo, gain_ci_high=hi, clear_gain=bool(lo > 0) and not note, enough_data=not note,
                   note=note)
        rows.append(row)
    out = pd.DataFrame(rows)
    _compare_with_baselines(out, picks, table, resampler)
    return out[SUMMARY_COLUMNS]


def _note(curve: pd.DataFrame) -> str:
    """Why a curve's numbers are not a finding ('' when they are): its rows' sample note, or nothing chosen."""
    notes = [n for n in (curve["note"].fillna("") if "note" in curve.columns else []) if n]
    if notes:
        return notes[0]
    return NOTHING_CHOSEN if chose_nothing(curve) else ""


def with_variant(table: pd.DataFrame) -> pd.DataFrame:
    """The table with `readout` and `norm` columns (a table written before they existed is one curve per model)."""
    missing = {c: v for c, v in (("readout", ""), ("norm", "off")) if c not in table.columns}
    return table.assign(**missing) if missing else table


def first_curves(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of each model's first (readout, norm) curve: the one its label-free diagnostics describe."""
    if table.empty:
        return table
    table = with_variant(table)
    first = table.groupby("model", sort=False)[VARIANT].first()
    keep = np.ones(len(table), dtype=bool)
    for col in VARIANT:
        keep &= table[col].to_numpy() == first.loc[table["model"], col].to_numpy()
    return table[keep]


def _compare_with_baselines(out: pd.DataFrame, picks: dict, table: pd.DataFrame, resampler: Resampler | None) -> None:
    """Fill random_init_* (the model's random-init twin, same readout curve, paired over the same images) and
    pixels_accuracy (the pixels baseline has one curve, whatever the readouts).

    A baseline row says which model it stands next to (`baseline_for`); the pixels baseline serves every model.
    """
    for col in ("random_init_accuracy", "over_random_init", "over_random_init_ci_low", "over_random_init_ci_high",
                "pixels_accuracy"):
        out[col] = np.nan
    twins = _twins(table)
    kinds = table["baseline"].fillna("") if "baseline" in table.columns else pd.Series("", index=table.index)
    pixels = next(iter(table.loc[kinds == "pixels", "model"]), None)
    for i, r in out.iterrows():
        if r["baseline"]:
            continue
        twin = picks.get((twins.get(r["model"]), r["task"], r["probe"], r["readout"], r["norm"]))
        if twin is not None:
            best = picks[(r["model"], r["task"], r["probe"], r["readout"], r["norm"])]
            out.at[i, "random_init_accuracy"] = float(twin["accuracy"])
            out.at[i, "over_random_init"] = float(best["accuracy"] - twin["accuracy"])
            if resampler is not None:
                lo, hi = resampler.difference_interval(best["correct"], twin["correct"])
                out.at[i, "over_random_init_ci_low"], out.at[i, "over_random_init_ci_high"] = lo, hi
        pix = next((p for k, p in picks.items() if k[:3] == (pixels, r["task"], r["probe"])), None)
        if pix is not None:
            out.at[i, "pixels_accuracy"] = float(pix["accuracy"])


def _twins(table: pd.DataFrame) -> dict[str, str]:
    """model -> the name of its random-init twin, from the rows' `baseline_for` (absent: no twins)."""
    if "baseline_for" not in table.columns:
        return {}
    twin_rows = table[(table["baseline"] == "random-init") & (table["baseline_for"].fillna("") != "")]
    return dict(zip(twin_rows["baseline_for"], twin_rows["model"]))


def _baseline(g: pd.DataFrame) -> str:
    v = g["baseline"].iloc[0] if "baseline" in g.columns else ""
    return v if isinstance(v, str) else ""


def _first(g: pd.DataFrame, col: str) -> float:
    return float(g[col].iloc[0]) if col in g.columns else np.nan


def _first_of(row: pd.Series, col: str) -> float:
    return float(row[col]) if col in row.index else np.nan


def _acc(acc, lo, hi) -> list[str]:
    return [f"{a:.3f}" if pd.isna(l) else f"{a:.3f} [{l:.3f}, {h:.3f}]" for a, l, h in zip(acc, lo, hi)]


def enough_data(summary: pd.DataFrame) -> pd.Series:
    """Which summary rows are findings (a summary written before the column existed: all of them)."""
    if "enough_data" not in summary.columns:
        return pd.Series(True, index=summary.index)
    return summary["enough_data"].fillna(True).astype(bool)


def unless_short(values, enough: pd.Series, empty: str = "—") -> list:
    """Cells of a summary column, with `empty` where the row has not enough data for a finding."""
    return [v if ok else empty for v, ok in zip(values, enough)]


def summary_view(summary: pd.DataFrame, curves: list[str] | None = None) -> pd.DataFrame:
    """The summary as a compact table to print: one row per curve, every number with its interval.

    `curves`: the columns that tell a model's readout curves apart (default: readout and norm when a model has
    several). `print(summary_view(guillotine_summary(table)).to_string(index=False))` shows what the CLI shows.
    """
    s = with_variant(summary)
    if curves is None:
        curves = VARIANT if len(s[VARIANT].drop_duplicates()) > 1 else []
    ok = enough_data(s)
    view = pd.DataFrame({
        "model": s["model"], **{c: s[c] for c in curves}, "task": s["task"], "probe": s["probe"],
        "chance": s["chance"].round(3),
        "best cut": unless_short(s["best_cut"], ok, NOT_ENOUGH),
        "best": unless_short(_acc(s["best_accuracy"], s["best_ci_low"], s["best_ci_high"]), ok),
        "last cut": s["last_cut"], "last": unless_short(_acc(s["last_accuracy"], s["last_ci_low"], s["last_ci_high"]), ok),
        "gain": unless_short([gain_text(g, lo, hi, c, style="suffix", unit="acc")
                              for g, lo, hi, c in zip(s["gain"], s["gain_ci_low"], s["gain_ci_high"], s["clear_gain"])],
                             ok),
    })
    if s["over_random_init"].notna().any():
        view["vs random init"] = unless_short(["" if pd.isna(v) else interval_text(v, lo, hi, unit="acc")
                                               for v, lo, hi in zip(s["over_random_init"], s["over_random_init_ci_low"],
                                                                    s["over_random_init_ci_high"])], ok)
    return view

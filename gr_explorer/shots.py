"""Few-shot and data-fraction curves: the probes refitted on seeded draws of the labelled images, features extracted once.

Why: how much labelled data a task has moves the best cut (one of the guillotine paper's points), and the
few-shot and data-fraction curves of DINOv2 and torchgeo-bench ask the same of every layer.

A draw takes its images from the probe's *fit* split (the train images left after the sweep's validation split):
`shots=n` takes n images of each class of the task (all of a class that has fewer; one draw per task, so each
task is stratified on its own labels), `fractions=f` takes a stratified f of the fit split for all tasks at once
(stratified on the first task, as the validation split is). Each is drawn `tries` times, seeded by (seed, kind,
amount, try), so run.json reproduces every draw (`draw_rows`). The probe's hyper-parameter and the best cut are
chosen on the sweep's validation split (the same images for every draw; its labels are never fitted), and the
chosen setting is refitted on the draw alone. `all` (and the fraction 1) is the ordinary sweep.

Tables: `draws` (one row per draw, cut, task and probe: the results columns plus `shots`, `try`, `n_fit`),
`curves` (per shot and cut: the mean test accuracy over tries and their spread, min to max, as the interval) and
`best` (per shot: the cut validation chose in each draw and its test accuracy, as mean and spread over tries).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch

from .plots import accuracy_vs_depth
from .probes import validation_split
from .summary import CURVE, VARIANT, best_row

ALL = "all"
#: columns the draws add to the results columns
DRAW_COLUMNS = ["shots", "try", "n_fit"]
CURVE_COLUMNS = ["model", "baseline", "dataset", "cut", "readout", "norm", "depth", "part", "dim", "task", "probe",
                 "shots", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "accuracy_sd", "val_accuracy", "tries",
                 "n_fit", "chance"]
BEST_COLUMNS = CURVE + VARIANT + ["baseline", "shots", "tries", "n_fit", "best_cuts", "most_chosen_cut",
                                  "best_accuracy", "best_accuracy_low", "best_accuracy_high", "best_accuracy_sd",
                                  "gain", "gain_low", "gain_high", "chance"]


@dataclass(frozen=True)
class Draw:
    """One seeded draw: `kind` shots (per class) or fraction (of the fit split), its amount and try."""

    kind: str
    amount: int | float
    attempt: int

    @property
    def label(self) -> str:
        """The `shots` column: '5' (per class) or '10%' (of the fit split)."""
        return str(self.amount) if self.kind == "shots" else f"{100 * self.amount:g}%"


def plan(shots, fractions, tries: int) -> list[Draw]:
    """The draws of a sweep, in order: every shot count, then every fraction, each `tries` times ('all' and the
    fraction 1 are the ordinary sweep and drawn never)."""
    amounts = [("shots", n) for n in shots if n != ALL] + [("fraction", f) for f in fractions if f < 1]
    return [Draw(kind, amount, t) for kind, amount in amounts for t in range(tries)]


def _rng(seed: int, draw: Draw, task: str) -> np.random.Generator:
    code = int(draw.amount) if draw.kind == "shots" else int(round(draw.amount * 1e6))
    words = [int(seed), 1 if draw.kind == "shots" else 2, code, draw.attempt, *task.encode()]
    return np.random.default_rng(np.random.SeedSequence(words))


def draw_rows(draw: Draw, fit_idx: torch.Tensor, labels: dict[str, torch.Tensor], seed: int, task: str = "") -> torch.Tensor:
    """The train rows of one draw (sorted): from the fit rows `fit_idx`, stratified on `labels[task]` (shots) or on
    the tasks' labels (fractions, `task` ignored). Reproducible from (seed, draw, task) alone."""
    fit = fit_idx.cpu().numpy()
    if draw.kind == "shots":
        rng = _rng(seed, draw, task)
        y = labels[task].cpu().numpy()[fit]
        picked = [rng.choice(np.flatnonzero(y == c), size=min(int(draw.amount), int((y == c).sum())), replace=False)
                  for c in np.unique(y)]
        return torch.from_numpy(np.sort(fit[np.concatenate(picked)]))
    sub = {t: y[fit_idx] for t, y in labels.items()}
    seed_word = int(_rng(seed, draw, "").integers(2**31))
    _, take = validation_split(sub, draw.amount, seed_word)
    return torch.from_numpy(np.sort(fit[take.numpy()]))


def fit_draws(draws: list[Draw], fit_probes, train_labels: dict[str, torch.Tensor], fit_idx: torch.Tensor,
              val_idx: torch.Tensor, seed: int):
    """(draw, rows, results) for every draw: shots once per task (its own stratification), fractions for all tasks
    at once. `fit_probes(labels, split, refit_idx)` fits the sweep's probes on its features with those labels."""
    out = []
    for d in draws:
        if d.kind == "shots":
            for task, y in train_labels.items():
                rows = draw_rows(d, fit_idx, train_labels, seed, task)
                out.append((d, rows, fit_probes({task: y}, (rows, val_idx), rows)))
        else:
            rows = draw_rows(d, fit_idx, train_labels, seed)
            out.append((d, rows, fit_probes(train_labels, (rows, val_idx), rows)))
    return out


def curves(draws: pd.DataFrame) -> pd.DataFrame:
    """Per (model, cut, readout, norm, task, probe, shots): mean test accuracy over tries and the spread (min-max)."""
    if draws.empty:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    keys = ["model", "baseline", "dataset", "cut", "readout", "norm", "depth", "part", "dim", "task", "probe", "shots"]
    g = draws.groupby(keys, sort=False, dropna=False)
    out = g.agg(accuracy=("accuracy", "mean"), accuracy_ci_low=("accuracy", "min"),
                accuracy_ci_high=("accuracy", "max"), accuracy_sd=("accuracy", _sd),
                val_accuracy=("val_accuracy", "mean"), tries=("try", "nunique"), n_fit=("n_fit", "mean"),
                chance=("chance", "first")).reset_index()
    return out[CURVE_COLUMNS]


def best_cuts(draws: pd.DataFrame) -> pd.DataFrame:
    """Per (model, task, probe, curve, shots): the cut validation chose in each draw, its test accuracy (mean and
    spread over tries) and the gain over the last cut in the same draw."""
    if draws.empty:
        return pd.DataFrame(columns=BEST_COLUMNS)
    per_try = []
    for key, g in draws.groupby([*CURVE, *VARIANT, "shots", "try"], sort=False):
        g = g.sort_values("depth", kind="stable")
        best, last = best_row(g), g.iloc[-1]
        per_try.append({**dict(zip([*CURVE, *VARIANT, "shots", "try"], key)), "baseline": g["baseline"].iloc[0],
                        "n_fit": float(g["n_fit"].mean()), "cut": best["cut"], "accuracy": float(best["accuracy"]),
                        "gain": float(best["accuracy"] - last["accuracy"]), "chance": float(g["chance"].iloc[0])})
    t = pd.DataFrame(per_try)
    rows = []
    for key, g in t.groupby([*CURVE, *VARIANT, "shots"], sort=False):
        rows.append({**dict(zip([*CURVE, *VARIANT, "shots"], key)), "baseline": g["baseline"].iloc[0],
                     "tries": len(g), "n_fit": float(g["n_fit"].mean()), "best_cuts": ",".join(g["cut"]),
                     "most_chosen_cut": g["cut"].value_counts(sort=True).index[0],
                     "best_accuracy": g["accuracy"].mean(), "best_accuracy_low": g["accuracy"].min(),
                     "best_accuracy_high": g["accuracy"].max(), "best_accuracy_sd": _sd(g["accuracy"]),
                     "gain": g["gain"].mean(), "gain_low": g["gain"].min(), "gain_high": g["gain"].max(),
                     "chance": g["chance"].iloc[0]})
    return pd.DataFrame(rows, columns=BEST_COLUMNS)


def _sd(x) -> float:
    return float(np.std(np.asarray(x, dtype=float), ddof=1)) if len(x) > 1 else 0.0


def best_view(best: pd.DataFrame) -> pd.DataFrame:
    """The per-shot best cuts as a compact table to print."""
    b = best[best["baseline"].fillna("") == ""]
    b = b.assign(_o=b["shots"].map({s: i for i, s in enumerate(shot_order(b["shots"]))})).sort_values(
        ["model", "task", "probe", "_o"], kind="stable")
    return pd.DataFrame({
        "model": b["model"], "task": b["task"], "probe": b["probe"], "labels": b["shots"].map(amount_text),
        "tries": b["tries"], "best cut per try (validation)": b["best_cuts"],
        "test accuracy there, mean [min, max]": [f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in
                                                 zip(b["best_accuracy"], b["best_accuracy_low"],
                                                     b["best_accuracy_high"])],
        "gain over the last cut, mean [min, max] pts": [f"{100 * m:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]" for m, lo, hi
                                                       in zip(b["gain"], b["gain_low"], b["gain_high"])],
        "chance": b["chance"].round(3)})


def shot_order(labels) -> list[str]:
    """Shot labels in reading order: per-class counts ascending, then fractions ascending, then 'all'."""
    def key(s):
        if s == ALL:
            return (2, 0.0)
        return (1, float(s[:-1])) if s.endswith("%") else (0, float(s))
    return sorted(dict.fromkeys(labels), key=key)


def amount_text(shots: str) -> str:
    """'5 per class', '10% of the fit images', 'all labels'."""
    if shots == ALL:
        return "all labels"
    return f"{shots} of the fit images" if shots.endswith("%") else f"{shots} per class"


def shots_figure(curve_table: pd.DataFrame, probe: str | None = None, task: str | None = None,
                 model: str | None = None) -> go.Figure:
    """Accuracy vs depth at every amount of labels for one probe and model (default: the first): one line per amount,
    its band the spread over tries (min-max), the star at the cut with the best mean validation accuracy. One task,
    or (`task` None) every task with a dropdown showing one at a time."""
    main = curve_table[curve_table["baseline"].fillna("") == ""]
    if main.empty:
        return go.Figure().update_layout(title="no few-shot results")
    probe = probe or main["probe"].iloc[0]
    model = model or main["model"].iloc[0]
    tasks = [task] if task is not None else list(dict.fromkeys(main["task"]))
    figs = [_shots_figure(main, t, probe, model) for t in tasks]
    fig = figs[0]
    for f in figs[1:]:
        fig.add_traces(list(f.data))
    if len(tasks) > 1:
        def visible(t):
            return [(tr.meta or {}).get("task") in (None, t) for tr in fig.data]

        for tr, v in zip(fig.data, visible(tasks[0])):
            tr.visible = v
        fig.update_layout(updatemenus=[dict(buttons=[dict(label=t, method="update", args=[{"visible": visible(t)}])
                                                     for t in tasks], direction="down", x=1.0, xanchor="right",
                                            y=1.13, yanchor="top", showactive=True)])
        fig.update_layout(title=fig.layout.title.text.replace(f": {tasks[0]},", ":", 1))
    return fig


def _shots_figure(main: pd.DataFrame, task: str, probe: str, model: str) -> go.Figure:
    t = main[(main["task"] == task) & (main["probe"] == probe) & (main["model"] == model)]
    order = shot_order(t["shots"])
    t = t.assign(model=t["shots"].map(amount_text), _order=t["shots"].map({s: i for i, s in enumerate(order)}))
    t = t.sort_values(["_order", "depth"], kind="stable").drop(columns="_order")
    fig = accuracy_vs_depth(t, title=f"{model}: {task}, {probe} probe: test accuracy per amount of labels "
                                     "(band: min-max over tries)", selector=False)
    for tr in fig.data:
        if tr.hovertemplate:
            tr.hovertemplate = tr.hovertemplate.replace("[95% CI", "[min-max over tries")
    return fig

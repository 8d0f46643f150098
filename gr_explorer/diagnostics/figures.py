"""Plotly figures of diagnostics tables, sized to read at 1280 x 720.

* `metric_curves`: label-free metrics per cut, on the x axis of the
  accuracy-vs-depth plot (optionally with that plot as the top row);
* `cka_heatmap`: CKA between the cuts of one model, or between two models;
* `invariance_heatmap`: augmentation x cut invariance (or retrieval) of one model.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from ..plots import _ticks, accuracy_vs_depth
from ..summary import CURVE
from .spectral import ALPHA_TARGET

LABELS = {
    "rankme": "RankMe", "rankme_frac": "RankMe / dim", "alpha_req": "alpha-ReQ", "stable_rank": "stable rank",
    "stable_rank_frac": "stable rank / dim", "nesum": "NESum", "nesum_frac": "NESum / dim",
    "invariance": "invariance", "retrieval": "retrieval",
}
#: Metric lines: dark first, so that they do not take the colour of an accuracy curve above them.
METRIC_PALETTE = ["#222222"] + qualitative.Dark2
SHADES = (("backbone", "rgba(31,119,180,0.07)"), ("projector", "rgba(255,127,14,0.12)"))
FONT = dict(size=13)


def _shade(fig: go.Figure, table: pd.DataFrame, rows: int) -> None:
    for part, colour in SHADES:
        d = table.loc[table["part"] == part, "depth"]
        if len(d):
            for r in range(1, rows + 1):
                label = dict(annotation_text=part, annotation_position="top left") if r == 1 else {}
                fig.add_vrect(x0=d.min() - 0.5, x1=d.max() + 0.5, fillcolor=colour, line_width=0, layer="below", row=r, col=1,
                              **label)


def metric_curves(metrics: pd.DataFrame, results: pd.DataFrame | None = None, metric_names: Sequence[str] | None = None,
                  title: str | None = None, height: int = 720) -> go.Figure:
    """One row per metric (one line per model) against cut depth; accuracy vs depth on top when `results` is given.

    With one accuracy curve per model, a model's metric lines share its curve's
    colour. Invariance rows are averaged over augmentations (see
    `invariance_heatmap` for each one).
    """
    t = metrics.copy()
    t["augmentation"] = t["augmentation"].fillna("")
    if metric_names is None:
        metric_names = [m for m in ("rankme", "alpha_req", "stable_rank", "nesum") if m in set(t["metric"])]
    metric_names = list(metric_names)
    n_rows = len(metric_names) + (results is not None)
    if n_rows == 0:
        return go.Figure().update_layout(title=title or "no diagnostics")
    titles = (["test accuracy"] if results is not None else []) + [LABELS.get(m, m) for m in metric_names]
    fig = make_subplots(rows=n_rows, cols=1, shared_xaxes=True, vertical_spacing=0.05, subplot_titles=titles)
    models = list(dict.fromkeys(t["model"]))
    colours = {m: METRIC_PALETTE[i % len(METRIC_PALETTE)] for i, m in enumerate(models)}
    same_colours = False
    if results is not None:
        acc = accuracy_vs_depth(results, choice=False).data
        for trace in acc:
            fig.add_trace(trace, row=1, col=1)
        fig.update_yaxes(range=[0, 1.05], row=1, col=1)
        # One accuracy curve per model: its metric lines take that curve's colour (curves come in groupby order).
        keys = list(results.groupby(CURVE, sort=False).groups)
        lines = [tr for tr in acc if tr.mode == "lines+markers"]
        if len({k[0] for k in keys}) == len(keys) and len(lines) == len(keys):
            colours.update({k[0]: tr.line.color for k, tr in zip(keys, lines)})
            same_colours = True
    first = 1 + (results is not None)
    for r, metric in enumerate(metric_names, start=first):
        g = t[t["metric"] == metric].groupby(["model", "cut", "depth"], as_index=False, sort=False)["value"].mean()
        for model in models:
            s = g[g["model"] == model].sort_values("depth")
            fig.add_trace(go.Scatter(
                x=s["depth"], y=s["value"], mode="lines+markers", name=model, legendgroup=model,
                showlegend=r == first and len(models) > 1 and not same_colours, line=dict(color=colours[model], dash="dot"),
                customdata=s[["cut"]].to_numpy(),
                hovertemplate=f"{model}<br>cut %{{customdata[0]}}<br>{LABELS.get(metric, metric)} %{{y:.3g}}<extra></extra>"),
                row=r, col=1)
        if metric == "alpha_req":
            fig.add_hline(y=ALPHA_TARGET, line=dict(color="grey", dash="dash", width=1), row=r, col=1)
    cols = ["depth", "cut", "part"]
    span = pd.concat([t[cols]] + ([results[cols]] if results is not None else []))
    _shade(fig, span, n_rows)
    tickvals, ticktext = _ticks(span)
    fig.update_xaxes(tickmode="array", tickvals=tickvals, ticktext=ticktext)
    fig.update_xaxes(title_text="cut (forward order)", row=n_rows, col=1)
    fig.update_layout(title=title or "Label-free diagnostics per cut", height=height, template="plotly_white", font=FONT,
                      hovermode="closest", margin=dict(l=60, r=20, t=70, b=50), legend=dict(font=dict(size=11)))
    return fig


def _order(table: pd.DataFrame, cut: str, depth: str) -> list[str]:
    return table.sort_values(depth)[cut].drop_duplicates().tolist()


def cka_heatmap(cka: pd.DataFrame, model_a: str | None = None, model_b: str | None = None,
                title: str | None = None, height: int = 680) -> go.Figure:
    """CKA between the cuts of `model_a` (rows) and `model_b` (columns; default the same model)."""
    if cka.empty:
        return go.Figure().update_layout(title=title or "no CKA")
    model_a = model_a or cka["model_a"].iloc[0]
    model_b = model_b or model_a
    t = cka[(cka["model_a"] == model_a) & (cka["model_b"] == model_b)]
    rows, cols = _order(t, "cut_a", "depth_a"), _order(t, "cut_b", "depth_b")
    grid = t.pivot_table(index="cut_a", columns="cut_b", values="cka", sort=False).reindex(index=rows, columns=cols)
    z = grid.to_numpy()
    text = [[f"{v:.2f}" for v in row] for row in z] if max(len(rows), len(cols)) <= 24 else None
    fig = go.Figure(go.Heatmap(z=z, x=cols, y=rows, zmin=0, zmax=1, colorscale="Viridis", text=text,
                               texttemplate="%{text}" if text else None, textfont=dict(size=11),
                               colorbar=dict(title="CKA"),
                               hovertemplate=f"{model_a}: %{{y}}<br>{model_b}: %{{x}}<br>CKA %{{z:.3f}}<extra></extra>"))
    same = model_a == model_b
    fig.update_layout(title=title or (f"{model_a}: linear CKA between cuts" if same else f"Linear CKA: {model_a} vs {model_b}"),
                      xaxis=dict(title=f"cut of {model_b}", constrain="domain"),
                      yaxis=dict(title=f"cut of {model_a}", autorange="reversed", scaleanchor="x"),
                      template="plotly_white", height=height, font=FONT, margin=dict(l=80, r=20, t=70, b=60))
    return fig


def invariance_heatmap(metrics: pd.DataFrame, model: str | None = None, metric: str = "invariance",
                       title: str | None = None, height: int = 420) -> go.Figure:
    """Augmentations (rows) x cuts (columns, forward order) of one model; the projector's cuts are marked."""
    t = metrics[metrics["metric"] == metric]
    if t.empty:
        return go.Figure().update_layout(title=title or f"no {metric} rows")
    model = model or t["model"].iloc[0]
    t = t[t["model"] == model]
    cuts = _order(t, "cut", "depth")
    augs = list(dict.fromkeys(t["augmentation"]))
    grid = t.pivot_table(index="augmentation", columns="cut", values="value", sort=False).reindex(index=augs, columns=cuts)
    z = grid.to_numpy()
    fig = go.Figure(go.Heatmap(z=z, x=list(range(len(cuts))), y=augs, zmin=0, zmax=1, colorscale="Viridis",
                               text=[[f"{v:.2f}" for v in row] for row in z], texttemplate="%{text}", textfont=dict(size=11),
                               customdata=[cuts] * len(augs), colorbar=dict(title=LABELS.get(metric, metric)),
                               hovertemplate="cut %{customdata}<br>%{y}<br>" + metric + " %{z:.3f}<extra></extra>"))
    parts = t.drop_duplicates("cut").set_index("cut")["part"]
    proj = [i for i, c in enumerate(cuts) if parts.get(c) == "projector"]
    if proj:
        fig.add_vrect(x0=min(proj) - 0.5, x1=max(proj) + 0.5, line=dict(color="rgb(255,127,14)", width=3), fillcolor="rgba(0,0,0,0)")
        fig.add_annotation(x=(min(proj) + max(proj)) / 2, y=1, xref="x", yref="paper", yanchor="bottom", showarrow=False,
                           text="projector", font=dict(color="rgb(255,127,14)"))
    what = "1 = the augmentation does not move the features" if metric == "invariance" else "own image retrieved, chance 1/n"
    fig.update_layout(title=title or f"{model}: {LABELS.get(metric, metric)} per cut and augmentation ({what})",
                      xaxis=dict(title="cut (forward order)", tickmode="array", tickvals=list(range(len(cuts))), ticktext=cuts),
                      yaxis=dict(title="augmentation", autorange="reversed"), template="plotly_white", height=height, font=FONT,
                      margin=dict(l=110, r=20, t=70, b=60))
    return fig

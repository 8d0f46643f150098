"""Plotly figures of a sweep table: accuracy vs depth, and a cut x task heatmap."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from .summary import CURVE, guillotine_summary

PALETTE = qualitative.Plotly + qualitative.D3


def _labels(table: pd.DataFrame) -> dict[tuple, str]:
    """Curve names that mention only what varies (model, task, probe)."""
    varying = [c for c in CURVE if table[c].nunique() > 1] or ["task"]
    return {key: " / ".join(str(v) for c, v in zip(CURVE, key) if c in varying)
            for key, _ in table.groupby(CURVE, sort=False)}


def _ticks(table: pd.DataFrame) -> tuple[list[int], list[str]]:
    names: dict[int, list[str]] = {}
    for d, c in table[["depth", "cut"]].drop_duplicates().itertuples(index=False):
        names.setdefault(int(d), [])
        if c not in names[int(d)]:
            names[int(d)].append(c)
    depths = sorted(names)
    return depths, ["/".join(names[d]) for d in depths]


def accuracy_vs_depth(table: pd.DataFrame, title: str | None = None) -> go.Figure:
    """One line per (model, task, probe); regions shaded, best cut starred, guillotine gain annotated."""
    fig = go.Figure()
    if table.empty:
        fig.update_layout(title=title or "no results")
        return fig
    labels = _labels(table)
    summary = guillotine_summary(table).set_index(CURVE)
    for i, (key, g) in enumerate(table.groupby(CURVE, sort=False)):
        g = g.sort_values("depth")
        color = PALETTE[i % len(PALETTE)]
        name = labels[key]
        fig.add_trace(go.Scatter(
            x=g["depth"], y=g["accuracy"], mode="lines+markers", name=name, line=dict(color=color),
            customdata=g[["cut", "dim", "part"]].to_numpy(),
            hovertemplate="cut %{customdata[0]} (%{customdata[2]}, depth %{x})<br>dim %{customdata[1]}"
                          "<br>accuracy %{y:.3f}<extra>" + name + "</extra>"))
        s = summary.loc[key]
        fig.add_trace(go.Scatter(
            x=[s["best_depth"]], y=[s["best_accuracy"]], mode="markers", showlegend=False,
            marker=dict(symbol="star", size=15, color=color, line=dict(width=1, color="black")),
            hovertemplate=f"best cut {s['best_cut']}<br>accuracy %{{y:.3f}}<br>guillotine gain "
                          f"{100 * s['guillotine_gain']:+.1f} pts<extra>{name}</extra>"))
        if s["guillotine_gain"] > 0:
            fig.add_annotation(x=s["best_depth"], y=s["best_accuracy"], text=f"+{100 * s['guillotine_gain']:.1f} pts",
                               showarrow=True, arrowhead=2, ax=0, ay=-28, font=dict(color=color, size=11))
    for part, colour in (("backbone", "rgba(31,119,180,0.07)"), ("projector", "rgba(255,127,14,0.12)")):
        d = table.loc[table["part"] == part, "depth"]
        if len(d):
            fig.add_vrect(x0=d.min() - 0.5, x1=d.max() + 0.5, fillcolor=colour, line_width=0, layer="below",
                          annotation_text=part, annotation_position="top left")
    tickvals, ticktext = _ticks(table)
    fig.update_layout(
        title=title or "Linear-probe accuracy vs depth: where to cut",
        xaxis=dict(title="cut (forward order)", tickmode="array", tickvals=tickvals, ticktext=ticktext),
        yaxis=dict(title="test accuracy", range=[0, 1.05]), hovermode="closest", template="plotly_white",
        legend=dict(title="model / task / probe"))
    return fig


def cut_task_heatmap(table: pd.DataFrame, model: str | None = None, probe: str | None = None) -> go.Figure:
    """Accuracy of one model and probe, tasks x cuts (cuts in forward order)."""
    model = model or table["model"].iloc[0]
    probe = probe or table["probe"].iloc[0]
    t = table[(table["model"] == model) & (table["probe"] == probe)]
    cuts = t.sort_values("depth")["cut"].drop_duplicates().tolist()
    grid = t.pivot_table(index="task", columns="cut", values="accuracy", sort=False).reindex(columns=cuts)
    fig = go.Figure(go.Heatmap(z=grid.to_numpy(), x=cuts, y=list(grid.index), colorscale="Viridis", zmin=0, zmax=1,
                               text=[[f"{v:.2f}" for v in row] for row in grid.to_numpy()], texttemplate="%{text}",
                               hovertemplate="task %{y}<br>cut %{x}<br>accuracy %{z:.3f}<extra></extra>",
                               colorbar=dict(title="accuracy")))
    fig.update_layout(title=f"{model} ({probe} probe): accuracy per cut and task", xaxis_title="cut",
                      yaxis_title="task", template="plotly_white")
    return fig

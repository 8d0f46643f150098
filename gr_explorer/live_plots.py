"""Figures of probes taken while a network trains (training/live.py): accuracy vs depth as it changes over epochs,
and the guillotine gain per epoch with its interval, so the moment it opens is visible.

Same conventions as plots.py (one colour per task, 95% bands, the best cut starred), sized for a projector
(1280x720) and for a 1200x800 export.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .plots import PALETTE, rgba


def _colours(tasks) -> dict[str, str]:
    return {t: PALETTE[i % len(PALETTE)] for i, t in enumerate(tasks)}


def _frame_traces(table: pd.DataFrame, summary: pd.DataFrame, colour: dict) -> list[go.Scatter]:
    traces = []
    for task, g in table.groupby("task", sort=False):
        g = g.sort_values("depth")
        c = colour[task]
        traces.append(go.Scatter(x=g["depth"], y=g["accuracy"], mode="lines+markers", name=task,
                                 line=dict(color=c, width=2.6), marker=dict(size=7), legendgroup=task,
                                 customdata=g[["cut"]].to_numpy(),
                                 hovertemplate="cut %{customdata[0]}<br>accuracy %{y:.3f}<extra>" + task + "</extra>"))
        s = summary[summary["task"] == task]
        if len(s):
            s = s.iloc[0]
            traces.append(go.Scatter(x=[s["best_depth"]], y=[s["best_accuracy"]], mode="markers", showlegend=False,
                                     legendgroup=task, marker=dict(symbol="star", size=17, color=c,
                                                                   line=dict(width=1, color="black")),
                                     hovertemplate=f"best cut {s['best_cut']} (chosen on validation)<extra>{task}"
                                                   "</extra>"))
    return traces


#: pixels between the plot's bottom edge and the slider row (tick labels and the axis title fit in between)
CONTROLS_BELOW_PX = 64


def probes_over_training(table: pd.DataFrame, summary: pd.DataFrame, title: str | None = None,
                         height: int = 720) -> go.Figure:
    """Accuracy vs depth at every probe epoch: one animation frame per epoch, a slider and Play across epochs.

    `table` / `summary`: the live probe tables (`<out>.probes.csv`, `<out>.probes_summary.csv`), with `epoch`.
    `height`: the figure's height in pixels; the slider and Play sit one row below the x-axis title at any height.
    """
    epochs = sorted(set(table["epoch"]))
    colour = _colours(dict.fromkeys(table["task"]))
    frames = [go.Frame(data=_frame_traces(table[table["epoch"] == e], summary[summary["epoch"] == e], colour),
                       name=f"{e:g}", layout=dict(title=dict(text=_title(title, e))))
              for e in epochs]
    fig = go.Figure(data=frames[-1].data, frames=frames)
    cuts = table[table["epoch"] == epochs[-1]].drop_duplicates("depth").sort_values("depth")
    margin = dict(t=60, b=CONTROLS_BELOW_PX + 50, l=60, r=10)
    below = -CONTROLS_BELOW_PX / max(height - margin["t"] - margin["b"], 100)  # paper units: the plot's own height
    fig.update_layout(
        height=height, title=dict(text=_title(title, epochs[-1]), font=dict(size=18)), template="plotly_white",
        font=dict(size=14),
        xaxis=dict(title="cut (forward order)", tickmode="array", tickvals=list(cuts["depth"]),
                   ticktext=list(cuts["cut"]), range=[cuts["depth"].min() - 0.4, cuts["depth"].max() + 0.4]),
        yaxis=dict(title="test accuracy (live probe)", range=[0, 1.05]), margin=margin,
        legend=dict(title=dict(text="task  ★ best cut (validation)")),
        # the epoch on screen is in the title: the slider needs no label of its own, so Play sits left of it
        sliders=[dict(active=len(epochs) - 1, currentvalue=dict(visible=False), x=0.22, len=0.78, y=below,
                      yanchor="top", pad=dict(t=0, b=0),
                      steps=[dict(label=f"{e:g}", method="animate",
                                  args=[[f"{e:g}"], dict(mode="immediate", frame=dict(duration=0, redraw=True))])
                             for e in epochs])],
        updatemenus=[dict(type="buttons", showactive=False, x=0, y=below, xanchor="left", yanchor="top", pad=dict(t=0),
                          buttons=[dict(label="▶ Play", method="animate",
                                        args=[None, dict(frame=dict(duration=700, redraw=True), fromcurrent=False)])])])
    return fig


def _title(title: str | None, epoch: float) -> str:
    return f"{title or 'Accuracy at every cut while training'} · epoch {epoch:g}"


def gain_over_training(summary: pd.DataFrame, title: str | None = None) -> go.Figure:
    """The guillotine gain (best cut minus last cut, points) per task at every probe epoch, with its 95% band;
    a ring marks the first epoch from which the gain's interval excludes 0 (where it opens)."""
    fig = go.Figure()
    colour = _colours(dict.fromkeys(summary["task"]))
    for task, g in summary.groupby("task", sort=False):
        g = g.sort_values("epoch")
        c = colour[task]
        x = list(g["epoch"])
        fig.add_trace(go.Scatter(x=x + x[::-1], y=list(100 * g["gain_ci_high"]) + list(100 * g["gain_ci_low"])[::-1],
                                 fill="toself", fillcolor=rgba(c, 0.13), mode="lines", line=dict(width=0), hoverinfo="skip",
                                 showlegend=False, legendgroup=task))
        fig.add_trace(go.Scatter(x=x, y=100 * g["gain"], mode="lines+markers", name=task, legendgroup=task,
                                 line=dict(color=c, width=2.6), customdata=g[["best_cut", "gain_ci_low", "gain_ci_high"]],
                                 hovertemplate="epoch %{x:g}: gain %{y:+.1f} pts [%{customdata[1]:.3f}, "
                                               "%{customdata[2]:.3f}] at %{customdata[0]}<extra>" + task + "</extra>"))
        opened = g[g["gain_ci_low"] > 0]
        if len(opened):
            first = opened.iloc[0]
            fig.add_trace(go.Scatter(x=[first["epoch"]], y=[100 * first["gain"]], mode="markers", showlegend=False,
                                     legendgroup=task, marker=dict(symbol="circle-open", size=18, color=c,
                                                                   line=dict(width=2.5)),
                                     hovertemplate=f"the gain opens: epoch {first['epoch']:g}<extra>{task}</extra>"))
    fig.add_hline(y=0, line=dict(color="rgb(120,120,120)", width=1, dash="dot"))
    fig.update_layout(title=dict(text=title or "Guillotine gain while training (○ where its interval first excludes 0)",
                                 font=dict(size=18)),
                      xaxis_title="epoch", yaxis_title="gain, pts (band: 95% CI)", template="plotly_white",
                      font=dict(size=14), margin=dict(t=60, b=50, l=60, r=10))
    return fig


def gain_of_designs(summaries: dict[str, pd.DataFrame], task: str) -> go.Figure:
    """Several trainings' guillotine gain on one task overlaid, one colour per design (name -> live summary), so two
    designs trained one after the other (e.g. projector none vs 3 layers) can be compared epoch by epoch."""
    rows = [s[s["task"] == task].assign(task=name) for name, s in summaries.items()]
    return gain_over_training(pd.concat(rows, ignore_index=True),
                              title=f"Guillotine gain on {task}, designs overlaid (○ where its interval first excludes 0)")

"""Small Plotly views the app adds next to the library's figures (they draw library tables; they compute nothing).

* `search_curve`: the probe's hyper-parameter search at one cut (SweepResult.search);
* `cka_by_depth`: linear CKA between two models' cuts of equal depth (diagnostics.cka_between_models);
* `mark_seed_groups`: names a seed group's curve and band for what they are (mean, min-max over seeds).
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from ..names import PROBES, label_of

FONT = dict(size=14)
HPARAM_NAMES = {"C": "inverse L2 strength C", "k": "number of neighbours k", "lr": "AdamW learning rate"}


def search_curve(search: pd.DataFrame, cut: str, task: str, probe: str, model: str, height: int = 320) -> go.Figure:
    """Validation accuracy of every value tried for one (model, cut, task, probe); the chosen value starred."""
    s = search[(search["model"] == model) & (search["cut"] == cut) & (search["task"] == task) & (search["probe"] == probe)]
    s = s.sort_values("value")
    fig = go.Figure()
    if s.empty:
        return fig.update_layout(title="no search recorded for this cut", height=height)
    hp = str(s["hparam"].iloc[0])
    also = s["also"].fillna("") if "also" in s.columns else pd.Series("", index=s.index)
    for other in dict.fromkeys(also):  # a head that searches a grid (attentive: lr x wd): one line per other setting
        g = s[also == other]
        fig.add_trace(go.Scatter(x=g["value"], y=g["val_accuracy"], mode="lines+markers",
                                 name="validation accuracy" + (f", {other}" if other else ""), line=dict(width=2.4),
                                 marker=dict(size=8), hovertemplate=hp + " %{x:g}" + (f" {other}" if other else "")
                                 + "<br>validation accuracy %{y:.3f}<extra></extra>"))
    chosen = s[s["chosen"]]
    fig.add_trace(go.Scatter(x=chosen["value"], y=chosen["val_accuracy"], mode="markers", name="chosen (then refit on all train)",
                             marker=dict(symbol="star", size=18, line=dict(width=1, color="black")),
                             hovertemplate=hp + " %{x:g} chosen<br>validation accuracy %{y:.3f}<extra></extra>"))
    log_x = hp == "C" or (s["value"].max() / max(s["value"].min(), 1e-12) > 20)
    fig.update_layout(
        title=dict(text=f"{label_of(PROBES, probe)} probe at {cut}, task {task}: validation accuracy per "
                        f"{HPARAM_NAMES.get(hp, hp)}", font=dict(size=15)),
        xaxis=dict(title=HPARAM_NAMES.get(hp, hp), type="log" if log_x else "linear"),
        yaxis=dict(title="validation accuracy", range=[0, 1.05]), template="plotly_white", font=FONT, height=height,
        margin=dict(t=50, b=50, l=60, r=10), legend=dict(orientation="h", y=-0.3))
    return fig


def cka_by_depth(cka: pd.DataFrame, height: int = 380) -> go.Figure:
    """CKA between two models at each depth (rows of cka_between_models(pairing='depth'))."""
    fig = go.Figure()
    if cka.empty:
        return fig.update_layout(title="the two models share no depth", height=height)
    c = cka.sort_values("depth_a")
    a, b = c["model_a"].iloc[0], c["model_b"].iloc[0]
    same_cuts = (c["cut_a"] == c["cut_b"]).all()
    ticks = list(c["cut_a"]) if same_cuts else [f"{x} / {y}" for x, y in zip(c["cut_a"], c["cut_b"])]
    fig.add_trace(go.Scatter(x=c["depth_a"], y=c["cka"], mode="lines+markers", line=dict(width=2.6), marker=dict(size=8),
                             customdata=c[["cut_a", "cut_b"]].to_numpy(), name="linear CKA",
                             hovertemplate=f"{a}: %{{customdata[0]}}<br>{b}: %{{customdata[1]}}<br>CKA %{{y:.3f}}<extra></extra>"))
    parts = c.drop_duplicates("depth_a")
    for part, fill in (("backbone", "rgba(31,119,180,0.06)"), ("projector", "rgba(255,127,14,0.10)")):
        d = parts.loc[parts["cut_a"].str.startswith("proj") == (part == "projector"), "depth_a"]
        if len(d):
            fig.add_vrect(x0=d.min() - 0.5, x1=d.max() + 0.5, fillcolor=fill, line_width=0, layer="below",
                          annotation_text=part, annotation_position="bottom left")
    fig.update_layout(title=dict(text=f"Linear CKA at each depth: {a} vs {b}", font=dict(size=15)),
                      xaxis=dict(title="cut (forward order)", tickmode="array", tickvals=list(c["depth_a"]), ticktext=ticks),
                      yaxis=dict(title="linear CKA", range=[0, 1.05]),
                      template="plotly_white", font=FONT, height=height, margin=dict(t=50, b=50, l=60, r=10),
                      showlegend=False)
    return fig


def mark_seed_groups(fig: go.Figure, groups: dict[str, list[str]]) -> go.Figure:
    """Seed groups' traces say what they are: the line is the mean over seeds, the band spans them (min-max)."""
    labels = set(groups)
    for t in fig.data:
        meta = t.meta or {}
        if meta.get("model") in labels:
            if meta.get("role") == "band":
                t.name = f"{meta['model']}: min-max over seeds"
            elif meta.get("role") == "curve" and t.hovertemplate:
                t.hovertemplate = t.hovertemplate.replace("[95% CI", "[min-max over seeds")
    if labels:
        fig.update_layout(yaxis_title_text="test accuracy (band: 95% CI; seed groups: min-max over seeds)")
    return fig

"""Plotly figures of a sweep table: accuracy vs depth with intervals and references, and a cut x task heatmap.

Made to be read on a projector (1280x720): one colour per task (or per model
when one task is shown), one line style per probe, a 95% band around every
curve, the validation-selected best cut starred, its guillotine gain labelled
only when it is clear (verdict.py: not when its interval contains 0, nor when
it is borderline), references in grey (random-init twin dashed, the band of
its draws with `random-init:N`, raw pixels dash-dot) and each task's chance
level dotted. Under the curves, a strip of bars says how often each cut is the
one chosen when the validation and test images are resampled (`p_chosen`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from .models.subblock import ATTN_OUT, MLP_HIDDEN
from .names import PROBES, label_of, random_suffix
from .samples import NOT_ENOUGH
from .summary import CURVE, guillotine_summary
from .verdict import CLEAR_GAIN, difference_text, gain_label, gain_text

PALETTE = qualitative.D3
#: line style per probe; dotted is the chance level's, dashed the random-init twin's, so k-NN is dash-dot
PROBE_DASH = {"linear": "solid", "knn": "dashdot", "attentive": "longdash"}
GREY = "rgb(120,120,120)"
REGION_FILL = {"backbone": "rgba(31,119,180,0.06)", "projector": "rgba(255,127,14,0.10)"}


def rgba(colour: str, alpha: float) -> str:
    """A hex or rgb() colour with an alpha channel."""
    if colour.startswith("#"):
        r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    else:
        r, g, b = (int(float(v)) for v in colour[colour.index("(") + 1:colour.index(")")].split(",")[:3])
    return f"rgba({r},{g},{b},{alpha})"


def _ticks(table: pd.DataFrame) -> tuple[list[int], list[str]]:
    """Tick positions and labels: every cut, or, with sub-block cuts, only the block outputs and the cuts after
    them (the attention and MLP points of a block sit unlabelled between its neighbours; hover names them)."""
    names: dict[int, list[str]] = {}
    for d, c in table[["depth", "cut"]].drop_duplicates().itertuples(index=False):
        if str(c).endswith(SUB_BLOCK):
            continue
        names.setdefault(int(d), [])
        if c not in names[int(d)]:
            names[int(d)].append(c)
    depths = sorted(names)
    return depths, ["/".join(names[d]) for d in depths]


#: the names of the cuts inside a transformer block (models/subblock.py)
SUB_BLOCK = (f".{ATTN_OUT}", f".{MLP_HIDDEN}")


def _bases(df: pd.DataFrame) -> tuple[pd.Series, pd.Series, list[str]]:
    """Each row's baseline kind, the model a random-init twin stands for, and the model whose curve it is."""
    kind = df["baseline"].fillna("") if "baseline" in df.columns else pd.Series("", index=df.index)
    of = df["baseline_for"].fillna("") if "baseline_for" in df.columns else pd.Series("", index=df.index)
    return kind, of, [o if k == "random-init" and o else m for m, k, o in zip(df["model"], kind, of)]


def fold_curves(df: pd.DataFrame, like: pd.DataFrame | None = None) -> pd.DataFrame:
    """With several readout curves per model and probe (readouts, norm off/on), each drawn as a model of its own:
    `[<model> · ]<readout>[ · norm]` (the model named only when there are several), a random-init twin's curve
    labelled after its model's (its `baseline_for` follows, so twins still pair up). Pixels stay one curve.
    `like`: the table whose curves decide whether to fold (the combined cuts drawn beside a results table)."""
    ref = df if like is None else like
    if df.empty or not {"readout", "norm"} <= set(df.columns) or not {"readout", "norm"} <= set(ref.columns):
        return df
    keys = ["model", "probe"] if "probe" in ref.columns else ["model"]
    if ref[[*keys, "readout", "norm"]].astype(str).drop_duplicates()[keys].duplicated().sum() == 0:
        return df  # every model has one curve per probe: nothing to tell apart
    kind, of, base = _bases(df)
    ref_kind, _, ref_base = _bases(ref)
    several = len({b for b, k in zip(ref_base, ref_kind) if k != "pixels"}) > 1

    def label(model, readout, norm):
        curve = f"{readout}" + (" · norm" if norm == "on" else "")
        return f"{model} · {curve}" if several else curve

    out = df.assign(model=[m if k == "pixels" else label(b, r, n) + (random_suffix(m) if k == "random-init" else "")
                           for m, k, b, r, n in zip(df["model"], kind, base, df["readout"], df["norm"])])
    if "baseline_for" in df.columns:
        out["baseline_for"] = [label(b, r, n) if k == "random-init" else o
                               for k, b, r, n, o in zip(kind, base, df["readout"], df["norm"], of)]
    return out


def probes_title(table: pd.DataFrame) -> str:
    probes = [label_of(PROBES, p) for p in dict.fromkeys(table["probe"])]
    return " and ".join(probes) + (" probe" if len(probes) == 1 else " probes")


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _baseline_of(table: pd.DataFrame) -> pd.Series:
    return table["baseline"].fillna("") if "baseline" in table.columns else pd.Series("", index=table.index)


def _verdict(s) -> str | None:
    v = s.get("gain_verdict")
    return v if isinstance(v, str) and v else None


def _gain_text(s, short: bool = False) -> str:
    if short:
        return gain_text(s["gain"], s["gain_ci_low"], s["gain_ci_high"], s["clear_gain"], verdict=_verdict(s),
                         style="short")
    text = gain_text(s["gain"], s["gain_ci_low"], s["gain_ci_high"], s["clear_gain"], verdict=_verdict(s))
    return "gain " + text if text[:1] in "+-" else text


def accuracy_vs_depth(table: pd.DataFrame, title: str | None = None, summary: pd.DataFrame | None = None,
                      selector: bool = True, combined: pd.DataFrame | None = None, choice: bool = True) -> go.Figure:
    """One line per (model, task, probe) with its 95% band; best cut starred; clear gains labelled; references.

    References: the random-init twin dashed in the curve's colour (faded), the raw-pixels baseline as a
    diamond at the `pixels` position left of the first cut, each task's chance level dotted. With several
    tasks and `selector`, a dropdown shows one task at a time (it works in the offline HTML too). `choice`:
    the strip of p_chosen bars under the curves (when the table has them).
    `combined` (combine.combined_summary): each combined cut as a square with its 95% interval right of the
    last cut, one position per form (last4, best4, ...), compared with the curve's best single cut in its hover.
    """
    fig = go.Figure()
    if table.empty:
        fig.update_layout(title=title or "no results")
        return fig
    combined = fold_curves(combined, like=table) if combined is not None else None
    table = fold_curves(table)
    summary = fold_curves(summary) if summary is not None else None
    base = _baseline_of(table)
    main, refs = table[base == ""], table[base != ""]
    if main.empty:
        main, refs = table, table.iloc[0:0]
    summary = guillotine_summary(table) if summary is None else summary
    summ = summary.set_index(CURVE)
    by_task = main["model"].nunique() == 1 or main["task"].nunique() > 1
    keys = list(dict.fromkeys(main["task"] if by_task else main["model"]))
    colour = {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(keys)}
    style = _Style(by_task, main["model"].nunique() > 1, table["probe"].nunique() > 1)
    pixels = refs[_baseline_of(refs) == "pixels"]
    refs = refs[_baseline_of(refs) != "pixels"]
    depths = sorted(set(table.loc[_baseline_of(table) != "pixels", "depth"])) or [0]
    x_left = min(depths) - (1 if len(pixels) else 0)
    combined = _combined_of(combined, main)
    forms = list(dict.fromkeys(combined["combine"])) if combined is not None else []
    x_span = (x_left - 0.4, max(depths) + len(forms) + 0.4)
    labels, stars = [], []
    for key, g in main.groupby(CURVE, sort=False):
        c = colour[key[1] if by_task else key[0]]
        label = _add_curve(fig, key, g.sort_values("depth"), summ.loc[key], c, style, stars)
        if label is not None:
            labels.append(label)
    for task, g in main.groupby("task", sort=False):
        if "chance" in g.columns:
            chance = float(g["chance"].iloc[0])
            fig.add_trace(go.Scatter(
                x=list(x_span), y=[chance, chance], mode="lines", line=dict(color=colour[task] if by_task else GREY,
                                                                             dash="dot", width=1.2),
                name=f"{task}: chance {chance:.2f}", showlegend=False, meta={"task": task, "role": "chance"},
                hovertemplate=f"{task}: chance (majority class) {chance:.3f}<extra></extra>"))
    _add_references(fig, refs, pixels, colour, by_task, x_left, style.several_probes)
    if forms:
        _add_combined(fig, combined, forms, max(depths) + 1, colour, by_task)
    _add_gain_labels(fig, labels)
    chosen = choice and _add_choice_bars(fig, main, colour, by_task)
    _layout(fig, table, main, pixels, x_left, x_span, title, chosen)
    if forms:
        fig.update_xaxes(tickvals=[*fig.layout.xaxis.tickvals, *(max(depths) + 1 + i for i in range(len(forms)))],
                         ticktext=[*fig.layout.xaxis.ticktext, *forms])
    if selector and by_task and main["task"].nunique() > 1:
        _task_selector(fig, list(dict.fromkeys(main["task"])))
    return fig


@dataclass(frozen=True)
class _Style:
    by_task: bool  # one colour per task (else per model)
    several_models: bool
    several_probes: bool


#: how far apart two stars at the same place are drawn (x units: one cut), so that both stay visible
STAR_NUDGE = 0.12


def _add_curve(fig: go.Figure, key: tuple, g: pd.DataFrame, s: pd.Series, c: str, style: _Style,
               stars: list[tuple[float, float]]) -> tuple | None:
    """A curve with its band and its best-cut star; returns its gain label when the gain is clear."""
    model, task, probe = key
    name = " · ".join([*(([model] if style.several_models and style.by_task else [])),
                       task if style.by_task else model, *([label_of(PROBES, probe)] if style.several_probes else [])])
    group = f"{model}|{task}|{probe}"
    meta = {"task": task, "model": model, "probe": probe}
    if "accuracy_ci_low" in g.columns and g["accuracy_ci_low"].notna().all():
        fig.add_trace(go.Scatter(
            x=list(g["depth"]) + list(g["depth"])[::-1], y=list(g["accuracy_ci_high"]) + list(g["accuracy_ci_low"])[::-1],
            fill="toself", fillcolor=rgba(c, 0.13), mode="lines", line=dict(width=0), hoverinfo="skip", showlegend=False,
            legendgroup=group, name=f"{name} 95% CI", meta={**meta, "role": "band"}))
    ci = (g[["accuracy_ci_low", "accuracy_ci_high"]].to_numpy() if "accuracy_ci_low" in g.columns else None)
    enough = bool(s.get("enough_data", True))  # not enough data: the curve is drawn, but no star and no gain
    fig.add_trace(go.Scatter(
        x=g["depth"], y=g["accuracy"], mode="lines+markers",
        name=f"{name}: {_gain_text(s, short=True) if enough else NOT_ENOUGH}",
        legendgroup=group, line=dict(color=c, dash=PROBE_DASH.get(probe, "solid"), width=2.6), marker=dict(size=7),
        meta={**meta, "role": "curve"},
        customdata=[[cut, dim, part, *(ci[i] if ci is not None else (float("nan"),) * 2)]
                    for i, (cut, dim, part) in enumerate(g[["cut", "dim", "part"]].itertuples(index=False))],
        hovertemplate="cut %{customdata[0]} (%{customdata[2]}, dim %{customdata[1]})<br>accuracy %{y:.3f} "
                      "[95% CI %{customdata[3]:.3f}, %{customdata[4]:.3f}]<extra>" + name + "</extra>"))
    if not enough:
        return None
    x, y = float(s["best_depth"]), float(s["best_accuracy"])
    x += STAR_NUDGE * sum(1 for px, py in stars if abs(px - x) < STAR_NUDGE / 2 and abs(py - y) < 0.02)
    stars.append((x, y))
    fig.add_trace(go.Scatter(
        x=[x], y=[y], mode="markers", showlegend=False, legendgroup=group, meta={**meta, "role": "best"},
        marker=dict(symbol="star", size=18, color=c, line=dict(width=1, color="black")),
        hovertemplate=f"best cut {s['best_cut']} (chosen on validation)<br>test accuracy %{{y:.3f}}<br>"
                      f"{_gain_text(s)} vs the last cut {s['last_cut']}<extra>{name}</extra>"))
    clear = _verdict(s) == CLEAR_GAIN if _verdict(s) else bool(s["clear_gain"])
    return (x, y, gain_label(s["gain"]), c, task) if clear else None


#: the strip of p_chosen bars under the curves: its share of the plot's height, and the curves' share above it
CHOICE_STRIP = (0.0, 0.13)
CURVES_ABOVE = (0.21, 1.0)


def _add_choice_bars(fig: go.Figure, main: pd.DataFrame, colour: dict, by_task: bool) -> bool:
    """Bars under the curves: per curve and cut, the share of joint validation + test resamples in which that cut is
    the one chosen (choice.py). Returns whether any was drawn (no `p_chosen`, no strip)."""
    if "p_chosen" not in main.columns or main["p_chosen"].isna().all():
        return False
    curves = [(k, g) for k, g in main.groupby(CURVE, sort=False) if g["p_chosen"].notna().any()]
    width = min(0.8 / len(curves), 0.3)
    for i, (key, g) in enumerate(curves):
        model, task, probe = key
        g = g.sort_values("depth")
        shift = (i - (len(curves) - 1) / 2) * width
        p = g["p_chosen"].fillna(0).to_numpy()
        fig.add_trace(go.Bar(
            x=g["depth"] + shift, y=p, width=width, yaxis="y2", marker=dict(color=colour[task if by_task else model]),
            showlegend=False, legendgroup=f"{model}|{task}|{probe}", meta={"task": task, "model": model, "probe": probe,
                                                                          "role": "p_chosen"},
            text=[f"{100 * v:.0f}%" if v >= 0.15 else "" for v in p], textposition="outside", cliponaxis=False,
            textfont=dict(size=11), customdata=g[["cut"]].to_numpy(),
            hovertemplate="cut %{customdata[0]} is chosen in %{y:.0%} of the resamples of validation and test "
                          f"images<extra>{model} · {task}</extra>"))
    return True


def _layout(fig: go.Figure, table: pd.DataFrame, main: pd.DataFrame, pixels: pd.DataFrame, x_left: float,
            x_span: tuple[float, float], title: str | None, chosen: bool = False) -> None:
    for part, fill in REGION_FILL.items():
        d = main.loc[main["part"] == part, "depth"]
        if len(d):
            fig.add_vrect(x0=max(d.min() - 0.5, x_span[0]), x1=d.max() + 0.5, fillcolor=fill, line_width=0, layer="below",
                          annotation_text=part, annotation_position="bottom left", annotation_font=dict(size=13, color=GREY))
    tickvals, ticktext = _ticks(table[_baseline_of(table) != "pixels"])
    if len(pixels):
        tickvals, ticktext = [x_left, *tickvals], ["pixels", *ticktext]
    fig.update_layout(
        title=dict(text=title or f"{_upper_first(probes_title(table))}: test accuracy at every cut", font=dict(size=18)),
        xaxis=dict(title="cut (forward order)", anchor="y2" if chosen else "y", tickmode="array", tickvals=tickvals,
                   ticktext=ticktext, tickangle=-35 if len(tickvals) > 10 else 0, tickfont=dict(size=13), range=list(x_span)),
        yaxis=dict(title="test accuracy (band: 95% CI)", range=[0, 1.08], tickfont=dict(size=13)),
        hovermode="closest", template="plotly_white", font=dict(size=14),
        legend=dict(title=dict(text="curve: guillotine gain, pts [95% CI]<br>★ best cut (chosen on validation)",
                               font=dict(size=12)), font=dict(size=12), groupclick="togglegroup"),
        margin=dict(t=60, b=50, l=60, r=10))
    if chosen:
        fig.update_layout(
            yaxis=dict(domain=list(CURVES_ABOVE)),
            yaxis2=dict(domain=list(CHOICE_STRIP), anchor="x", range=[0, 1.35], tickvals=[0, 1], ticktext=["0", "1"],
                        tickfont=dict(size=11), title=dict(text="chosen", font=dict(size=12))),
            bargap=0)


def _add_references(fig: go.Figure, refs: pd.DataFrame, pixels: pd.DataFrame, colour: dict, by_task: bool,
                    x_pixels: float, several_probes: bool) -> None:
    """Random-init twins dashed (faded curve colour; N draws: their mean, and a band from the lowest to the highest
    draw), raw pixels as diamonds at the input; one legend entry each."""
    shown = False
    refs = refs.assign(_twin_of=[m.removesuffix(random_suffix(m)) for m in refs["model"]])
    for (of_label, task, probe), group in refs.groupby(["_twin_of", "task", "probe"], sort=False):
        draws = group["model"].nunique()
        of = group["baseline_for"].iloc[0] if "baseline_for" in group.columns else of_label
        c = rgba(colour.get(task if by_task else of, GREY), 0.6)
        by_depth = group.groupby(["depth", "cut"], sort=True)["accuracy"]
        g = by_depth.mean().reset_index()
        model = group["model"].iloc[0] if draws == 1 else f"{of_label} [random init, mean of {draws} draws]"
        label = f"{model} · {task}" + (f" · {label_of(PROBES, probe)}" if several_probes else "")
        meta = {"task": task, "model": model, "probe": probe}
        if draws > 1:
            lo, hi = by_depth.min().to_numpy(), by_depth.max().to_numpy()
            fig.add_trace(go.Scatter(
                x=list(g["depth"]) + list(g["depth"])[::-1], y=list(hi) + list(lo)[::-1], fill="toself",
                fillcolor=rgba(colour.get(task if by_task else of, GREY), 0.10), mode="lines", line=dict(width=0),
                hoverinfo="skip", showlegend=False, legendgroup="random-init", meta={**meta, "role": "random-init-band"}))
        name = "random init (same network, dashed)" if draws == 1 else \
            f"random init (dashed: mean of {draws} draws; band: their range)"
        fig.add_trace(go.Scatter(
            x=g["depth"], y=g["accuracy"], mode="lines", name=name,
            legendgroup="random-init", showlegend=not shown, meta={**meta, "role": "random-init"},
            line=dict(color=c, dash="dash", width=1.7), customdata=g[["cut"]].to_numpy(),
            hovertemplate="cut %{customdata[0]}<br>accuracy %{y:.3f}<extra>" + label + "</extra>"))
        shown = True
    shown = False
    for key, g in pixels.groupby(CURVE, sort=False):
        _, task, probe = key
        acc = float(g["accuracy"].iloc[0])
        label = f"raw pixels · {task}" + (f" · {label_of(PROBES, probe)}" if several_probes else "")
        fig.add_trace(go.Scatter(
            x=[x_pixels], y=[acc], mode="markers", name="raw pixels (◆ at the input)", legendgroup="pixels",
            showlegend=not shown, meta={"task": task, "probe": probe, "role": "pixels"},
            marker=dict(symbol="diamond" if probe == "linear" else "diamond-open", size=11,
                        color=colour.get(task, GREY) if by_task else GREY, line=dict(width=1, color=GREY)),
            hovertemplate=f"accuracy {acc:.3f}<extra>{label}</extra>"))
        shown = True


def _combined_of(combined: pd.DataFrame | None, main: pd.DataFrame) -> pd.DataFrame | None:
    """The combined cuts of the models, tasks and probes drawn (none when there are none)."""
    if combined is None or combined.empty:
        return None
    c = combined
    c = c[(c["baseline"].fillna("") == "") & c["model"].isin(set(main["model"])) & c["task"].isin(set(main["task"]))
          & c["probe"].isin(set(main["probe"]))]
    return c if len(c) else None


def _add_combined(fig: go.Figure, combined: pd.DataFrame, forms: list[str], x0: float, colour: dict,
                  by_task: bool) -> None:
    """Combined cuts as squares with their 95% intervals, one x position per form, right of the last cut."""
    shown = False
    for r in combined.itertuples():
        x = x0 + forms.index(r.combine)
        vs = difference_text(r.over_best, r.over_best_ci_low, r.over_best_ci_high)
        fig.add_trace(go.Scatter(
            x=[x], y=[r.accuracy], mode="markers", name="combined cuts (■, right of the curve)", legendgroup="combined",
            showlegend=not shown, meta={"task": r.task, "model": r.model, "probe": r.probe, "role": "combined"},
            error_y=dict(type="data", symmetric=False, array=[r.accuracy_ci_high - r.accuracy],
                         arrayminus=[r.accuracy - r.accuracy_ci_low], thickness=1.4, width=5),
            marker=dict(symbol="square" if r.probe == "linear" else "square-open", size=11,
                        color=colour.get(r.task if by_task else r.model, GREY), line=dict(width=1, color="black")),
            hovertemplate=f"{r.combine} = {r.cut}<br>test accuracy %{{y:.3f}} [95% CI {r.accuracy_ci_low:.3f}, "
                          f"{r.accuracy_ci_high:.3f}]<br>vs the best single cut {r.best_cut} ({r.best_accuracy:.3f}, "
                          f"chosen on validation): {vs}<extra>{r.model} · {r.task} · "
                          f"{label_of(PROBES, r.probe)}</extra>"))
        shown = True


def _add_gain_labels(fig: go.Figure, labels: list[tuple[float, float, str, str, str]]) -> None:
    """Clear gains (points) as labels beside their stars, nudged apart where two would overlap."""
    placed: list[tuple[float, float]] = []
    for x, y, text, c, task in sorted(labels, key=lambda t: (t[0], -t[1])):
        dy = 0.0
        while any(abs(x - px) < 0.9 and abs((y + dy) - py) < 0.06 for px, py in placed):
            dy -= 0.06
        placed.append((x, y + dy))
        fig.add_annotation(x=x, y=y + dy, text=text, showarrow=False, xanchor="left", xshift=11, yshift=10,
                           font=dict(color=c, size=13), bgcolor="rgba(255,255,255,0.8)", name=task)


def _task_selector(fig: go.Figure, tasks: list[str]) -> None:
    """A dropdown: all tasks, or one task with its references (traces carry meta.task)."""
    def visible(task):
        return [True if task is None or (t.meta or {}).get("task") in (None, task) else False for t in fig.data]

    def notes(task):
        return [dict(a.to_plotly_json(), visible=task is None or a.name in (None, task)) for a in fig.layout.annotations]

    buttons = [dict(label="all tasks", method="update", args=[{"visible": visible(None)}, {"annotations": notes(None)}])]
    buttons += [dict(label=t, method="update", args=[{"visible": visible(t)}, {"annotations": notes(t)}]) for t in tasks]
    fig.update_layout(updatemenus=[dict(buttons=buttons, direction="down", x=1.0, xanchor="right", y=1.13, yanchor="top",
                                        showactive=True, font=dict(size=13))])


def cut_task_heatmap(table: pd.DataFrame, model: str | None = None, probe: str | None = None) -> go.Figure:
    """Accuracy of one model (its first readout curve when it has several) and probe, tasks x cuts (forward order)."""
    model = model or table["model"].iloc[0]
    probe = probe or table["probe"].iloc[0]
    t = table[(table["model"] == model) & (table["probe"] == probe)]
    name = model
    if {"readout", "norm"} <= set(t.columns) and len(t[["readout", "norm"]].drop_duplicates()) > 1:
        readout, norm = t[["readout", "norm"]].iloc[0]
        t = t[(t["readout"] == readout) & (t["norm"] == norm)]
        name = f"{model} · {readout}" + (" · norm" if norm == "on" else "")
    cuts = t.sort_values("depth")["cut"].drop_duplicates().tolist()
    grid = t.pivot_table(index="task", columns="cut", values="accuracy", sort=False).reindex(columns=cuts)
    fig = go.Figure(go.Heatmap(z=grid.to_numpy(), x=cuts, y=list(grid.index), colorscale="Viridis", zmin=0, zmax=1,
                               text=[[f"{v:.2f}" for v in row] for row in grid.to_numpy()], texttemplate="%{text}",
                               hovertemplate="task %{y}<br>cut %{x}<br>accuracy %{z:.3f}<extra></extra>",
                               colorbar=dict(title="accuracy")))
    fig.update_layout(title=f"{name} ({label_of(PROBES, probe)} probe): test accuracy per cut and task",
                      xaxis_title="cut", yaxis_title="task", template="plotly_white", font=dict(size=14))
    return fig

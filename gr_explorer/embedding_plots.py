"""The embedding figure: the same images at every cut, one frame per cut, coloured by a task, score in the title.

Drawn with WebGL (`Scattergl`, one trace per class so the legend names the classes) and Plotly animation
frames: a slider (and Play) steps through the cuts in forward order, and each frame only moves x and y, so the
points keep their colours, hover text and data. Each frame's title gives the cut, its k-NN label agreement with
its 95% interval and chance, and a note under the map says how many of the split's images are drawn.

Thumbnails: Plotly's hover cannot show an image. Each point's `customdata` is [position in the drawn sample,
index in the split, one class name per task] and, when at most THUMBNAILS_MAX_POINTS are drawn, a small
base64 PNG data URI of the image last; `hover_script` is the JavaScript that shows that image beside the
pointer in the standalone HTML (pass it as save_figure's `post_script`), and an app's click handler reads the
same customdata or calls `point_thumbnail` (any size) and `Embedding.neighbours` (its k nearest neighbours).
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from .data.base import Dataset
from .embedding import METHOD_NAMES, Embedding
from .errors import ConfigError, did_you_mean

#: thumbnails travel inside the figure up to this many points (about 3 KB each for a 32-px PNG)
THUMBNAILS_MAX_POINTS = 2_000
THUMBNAIL_PX = 32
PALETTE = qualitative.D3 + qualitative.Alphabet
#: class names drawn in their own colour (a 'red' class in blue misleads); any other name set uses PALETTE
NAMED_COLOURS = {"red": "rgb(214,39,40)", "orange": "rgb(255,127,14)", "yellow": "rgb(230,200,0)",
                 "green": "rgb(44,160,44)", "cyan": "rgb(23,190,207)", "blue": "rgb(31,80,220)",
                 "magenta": "rgb(220,40,200)", "purple": "rgb(128,0,160)", "pink": "rgb(247,129,191)",
                 "brown": "rgb(140,86,75)", "gray": "rgb(127,127,127)", "grey": "rgb(127,127,127)",
                 "black": "rgb(0,0,0)"}


def thumbnail_uri(image: torch.Tensor | np.ndarray, size: int = THUMBNAIL_PX) -> str:
    """A uint8 [3, H, W] image as a PNG data URI, its longer side scaled down to at most `size` pixels."""
    a = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    im = Image.fromarray(np.ascontiguousarray(a.transpose(1, 2, 0)))
    if max(im.size) > size:
        scale = size / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def point_thumbnail(dataset: Dataset, split: str, index: int, size: int = 96) -> str:
    """The thumbnail (PNG data URI) of image `index` of a split: what a click on a point shows."""
    images = dataset.splits[split]
    if not 0 <= int(index) < len(images):
        raise ConfigError(f"image index {index} is not in the {split} split. Valid: 0 to {len(images) - 1}.")
    return thumbnail_uri(images.get(np.array([int(index)]))[0], size)


def class_colours(names: list[str]) -> list[str]:
    """One colour per class: the classes' own colours when every name is a colour, else the qualitative palette."""
    if all(str(n).lower() in NAMED_COLOURS for n in names):
        return [NAMED_COLOURS[str(n).lower()] for n in names]
    return [PALETTE[i % len(PALETTE)] for i in range(len(names))]


def _view_limit(maps) -> float:
    """Half-width of the fixed square view: the 99.5th percentile of |coordinate| over all cuts, plus a margin
    (one far outlier would otherwise shrink every map; zooming out still shows it)."""
    return 1.08 * max(float(np.quantile(np.abs(m).max(1), 0.995)) for m in maps)


def _marker_size(n: int) -> float:
    return float(np.clip(11 - 1.6 * np.log10(max(n, 1)), 3, 8))


def _sample_note(emb: Embedding) -> str:
    axes = {"pca": "axes: top 2 principal components", "tsne": "t-SNE (cosine)"}[emb.method]
    drawn = (f"{emb.n_drawn:,} of {emb.n_total:,} {emb.split} images drawn (seed {emb.seed}, stratified by "
             f"{emb.stratify})" if emb.n_drawn < emb.n_total else f"all {emb.n_total:,} {emb.split} images")
    queries = int(emb.scores["n_queries"].iloc[0]) if len(emb.scores) else emb.n_drawn
    over = f", averaged over {queries:,} of them" if queries < emb.n_drawn else ""
    return (f"{drawn} · {axes}, each cut's map aligned to the previous one<br>agreement: share of each point's "
            f"{emb.k} nearest drawn neighbours (cosine, the cut's full features) with its label{over}")


def _frame_title(emb: Embedding, cut: str, task: str, model: str) -> str:
    c, s = emb.cut(cut), emb.score(cut, task)
    head = f"{METHOD_NAMES[emb.method]} of {model + ' at ' if model else ''}{cut} ({c.part}, depth {c.depth})"
    return (f"{head}<br><span style='font-size:15px'>{emb.k}-NN agreement on {task}: <b>{s['agreement']:.3f}</b> "
            f"[95% CI {s['ci_low']:.3f}, {s['ci_high']:.3f}] · chance {s['chance']:.3f}</span>")


def embedding_figure(emb: Embedding, task: str | None = None, *, model: str = "", thumbnails: list[str] | None = None,
                     start: str | None = None) -> go.Figure:
    """The aligned maps of every cut as animation frames with a slider, points coloured by `task`'s classes.

    thumbnails: one data URI per drawn point (`thumbnail_uri` of `emb.index`'s images), put last in each
    point's customdata for hover_script and the app's click handler; leave it None above
    THUMBNAILS_MAX_POINTS. start: the cut shown first (default the first).
    """
    task = task or emb.stratify
    if task not in emb.labels:
        raise ConfigError(f"Task {task!r} is not in this embedding. {did_you_mean(task, list(emb.labels))}")
    if thumbnails is not None and len(thumbnails) != emb.n_drawn:
        raise ConfigError(f"{len(thumbnails)} thumbnails for {emb.n_drawn} drawn points; give one per point.")
    cuts = [c.name for c in emb.cuts]
    start = start or cuts[0]
    emb.cut(start)
    y = emb.labels[task]
    names = emb.classes.get(task) or [str(i) for i in range(int(y.max()) + 1)]
    tasks = list(emb.labels)
    label_cols = np.stack([emb.class_names(t) for t in tasks], axis=1)
    positions = np.arange(emb.n_drawn)
    groups = [(cls, np.flatnonzero(y == cls)) for cls in range(len(names))]
    groups = [(cls, rows) for cls, rows in groups if len(rows)]
    size = _marker_size(emb.n_drawn)
    colours = class_colours(names)
    hover = "image %{customdata[1]}<br>" + "<br>".join(f"{t}: %{{customdata[{2 + i}]}}" for i, t in enumerate(tasks))

    fig = go.Figure()
    maps = {cut: m.astype(np.float32) for cut, m in emb.maps.items()}  # half the bytes; a map needs no more digits
    m0 = maps[start]
    for cls, rows in groups:
        custom = np.column_stack([positions[rows], emb.index[rows], label_cols[rows]]).astype(object)
        if thumbnails is not None:
            custom = np.column_stack([custom, np.asarray(thumbnails, dtype=object)[rows]])
        fig.add_trace(go.Scattergl(
            x=m0[rows, 0], y=m0[rows, 1], mode="markers", name=str(names[cls]), customdata=custom,
            marker=dict(size=size, color=colours[cls], opacity=0.75, line=dict(width=0)),
            hovertemplate=hover + "<extra></extra>"))
    fig.frames = [go.Frame(name=cut, traces=list(range(len(groups))),
                           data=[go.Scattergl(x=maps[cut][rows, 0], y=maps[cut][rows, 1]) for _, rows in groups],
                           layout=dict(title=dict(text=_frame_title(emb, cut, task, model))))
                  for cut in cuts]
    lim = _view_limit(emb.maps.values())
    step = dict(mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0))
    fig.update_layout(
        title=dict(text=_frame_title(emb, start, task, model), font=dict(size=18), x=0.01, xanchor="left"),
        template="plotly_white", font=dict(size=14), hovermode="closest",
        xaxis=dict(range=[-lim, lim], zeroline=False, showticklabels=False),
        yaxis=dict(range=[-lim, lim], zeroline=False, showticklabels=False, scaleanchor="x", scaleratio=1),
        legend=dict(title=dict(text=task, font=dict(size=14)), font=dict(size=13), itemsizing="constant"),
        margin=dict(t=80, b=150, l=20, r=10),
        annotations=[dict(text=_sample_note(emb), xref="paper", yref="paper", x=0, y=-0.005, xanchor="left", align="left",
                          yanchor="top", showarrow=False, font=dict(size=12, color="rgb(90,90,90)"))],
        sliders=[dict(active=cuts.index(start), x=0.1, len=0.9, y=-0.085, yanchor="top", pad=dict(t=10),
                      currentvalue=dict(prefix="cut: ", font=dict(size=14), xanchor="right"),  # clear of ▶ ❚❚
                      steps=[dict(label=cut, method="animate", args=[[cut], step]) for cut in cuts])],
        updatemenus=[dict(type="buttons", direction="left", x=0.0, y=-0.085, xanchor="left", yanchor="top",
                          pad=dict(t=10), showactive=False,
                          buttons=[dict(label="▶", method="animate",
                                        args=[None, dict(step, frame=dict(duration=900, redraw=True), fromcurrent=True)]),
                                   dict(label="❚❚", method="animate", args=[[None], step])])])
    fig.layout.meta = {"embedding": {"method": emb.method, "task": task, "cuts": cuts, "n_drawn": emb.n_drawn,
                                     "n_total": emb.n_total, "thumbnails": thumbnails is not None}}
    return fig


def _grid_columns(n: int, width: float = 1080, height: float = 620) -> int:
    """Columns that give the largest square panels in a width x height area (a 1200 x 800 export less legend)."""
    return max(range(1, n + 1), key=lambda c: (min(width / c, height / np.ceil(n / c)), -c))


def embedding_grid(emb: Embedding, task: str | None = None, *, model: str = "", columns: int | None = None,
                   gl_above: int = 5_000) -> go.Figure:
    """Every cut's aligned map side by side (the static image of the animation: what a PNG or SVG can hold).

    Each panel is titled with its cut and k-NN agreement; one legend names the classes. Up to `gl_above` points
    a panel is drawn as SVG (sharp in an SVG export), above it with WebGL (an SVG export then embeds a bitmap).
    """
    task = task or emb.stratify
    if task not in emb.labels:
        raise ConfigError(f"Task {task!r} is not in this embedding. {did_you_mean(task, list(emb.labels))}")
    cuts = [c.name for c in emb.cuts]
    cols = columns or _grid_columns(len(cuts))
    rows_n = int(np.ceil(len(cuts) / cols))
    titles = []
    for cut in cuts:
        sc = emb.score(cut, task)
        titles.append(f"{cut}: {sc['agreement']:.2f} [{sc['ci_low']:.2f}, {sc['ci_high']:.2f}]")
    fig = make_subplots(rows=rows_n, cols=cols, horizontal_spacing=0.02, vertical_spacing=0.09)
    y = emb.labels[task]
    names = emb.classes.get(task) or [str(i) for i in range(int(y.max()) + 1)]
    colours = class_colours(names)
    trace = go.Scattergl if emb.n_drawn > gl_above else go.Scatter
    size = max(2.0, _marker_size(emb.n_drawn) - 2)
    lim = _view_limit(emb.maps.values())
    for i, cut in enumerate(cuts):
        r, c = divmod(i, cols)
        m = emb.maps[cut]
        for cls in range(len(names)):
            rows = np.flatnonzero(y == cls)
            if not len(rows):
                continue
            fig.add_trace(trace(x=m[rows, 0], y=m[rows, 1], mode="markers", name=str(names[cls]), legendgroup=str(cls),
                                showlegend=i == 0, hoverinfo="skip",
                                marker=dict(size=size, color=colours[cls], opacity=0.7, line=dict(width=0))),
                          row=r + 1, col=c + 1)
    frame = dict(range=[-lim, lim], showticklabels=False, zeroline=False, showgrid=False, showline=True,
                 linecolor="rgb(200,200,200)", mirror=True, constrain="domain")
    fig.update_xaxes(**frame)
    fig.update_yaxes(**frame)
    for i in range(len(cuts)):
        suffix = "" if i == 0 else str(i + 1)
        fig.layout[f"yaxis{suffix}"].update(scaleanchor=f"x{suffix}", scaleratio=1)
        fig.add_annotation(text=titles[i], xref=f"x{suffix} domain", yref=f"y{suffix} domain", x=0.5, y=1.0,
                           xanchor="center", yanchor="bottom", showarrow=False, font=dict(size=13))
    chance = float(emb.scores.loc[emb.scores["task"] == task, "chance"].iloc[0])
    fig.add_annotation(text=_sample_note(emb), xref="paper", yref="paper", x=0, y=-0.02, xanchor="left", yanchor="top",
                       align="left", showarrow=False, font=dict(size=12, color="rgb(90,90,90)"))
    fig.update_layout(
        title=dict(text=f"{METHOD_NAMES[emb.method]} of {model + ' ' if model else ''}at every cut, coloured by {task}"
                        f"<br><span style='font-size:14px'>panel: cut: {emb.k}-NN agreement on {task} [95% CI] · "
                        f"chance {chance:.2f}</span>", font=dict(size=18), x=0.01, xanchor="left"),
        template="plotly_white", font=dict(size=14), margin=dict(t=95, b=60, l=10, r=10),
        legend=dict(title=dict(text=task, font=dict(size=14)), font=dict(size=13), itemsizing="constant"))
    return fig


def hover_script(size: int = 96) -> str:
    """JavaScript for Plotly's to_html(post_script=...): shows the hovered point's thumbnail (customdata's last
    entry, a data URI) left of the pointer, `size` pixels wide, pixelated rather than blurred."""
    return ("""
var gd = document.getElementById('{plot_id}');
var box = document.createElement('img');
box.style.cssText = 'position:fixed;display:none;pointer-events:none;z-index:1000;border:1px solid #888;'
  + 'background:#fff;image-rendering:pixelated;width:SIZEpx;';
box.className = 'gr-thumbnail';
document.body.appendChild(box);
gd.on('plotly_hover', function (ev) {
  var p = ev.points[0], c = p.customdata, uri = c && c[c.length - 1];
  if (typeof uri !== 'string' || uri.indexOf('data:image/') !== 0) { return; }
  box.src = uri;
  var e = ev.event || {clientX: 0, clientY: 0};
  var left = e.clientX - SIZE - 20;  // left of the pointer: Plotly's hover label opens to its right
  box.style.left = (left >= 0 ? left : e.clientX + 20) + 'px';
  box.style.top = Math.max(0, e.clientY - SIZE / 2) + 'px';
  box.style.display = 'block';
});
gd.on('plotly_unhover', function () { box.style.display = 'none'; });
""").replace("SIZE", json.dumps(int(size)))


def click_script(neighbours: dict[str, np.ndarray], thumbnails: list[str], labels: list[str], size: int = 72) -> str:
    """JavaScript for to_html(post_script=...): a click on a point shows, below the figure, its thumbnail and those
    of its k nearest neighbours at the cut on screen (`neighbours` from Embedding.all_neighbours, `labels` one
    caption per drawn point); the cut on screen follows the slider and the Play button."""
    data = {"nb": {cut: np.asarray(p).tolist() for cut, p in neighbours.items()}, "thumbs": list(thumbnails),
            "labels": list(labels), "first": next(iter(neighbours))}
    return ("""
var gd = document.getElementById('{plot_id}');
var NB = DATA, current = NB.first;
var panel = document.createElement('div');
panel.className = 'gr-neighbours';
panel.style.cssText = 'font:14px sans-serif;margin:6px 0 0 8px;';
panel.textContent = 'Click a point: its nearest images at this cut appear here.';
gd.parentNode.appendChild(panel);
function cell(pos, title) {
  var d = document.createElement('figure');
  d.style.cssText = 'display:inline-block;margin:0 8px 0 0;text-align:center;';
  d.innerHTML = '<img src="' + NB.thumbs[pos] + '" style="width:SIZEpx;image-rendering:pixelated;border:1px solid #888">'
    + '<figcaption style="font-size:12px;max-width:SIZEpx">' + title + '</figcaption>';
  return d;
}
var shown = null;
function show(pos) {
  shown = pos;
  panel.innerHTML = '<div><b>Nearest images at ' + current + '</b> (cosine, on the features of this cut)</div>';
  panel.appendChild(cell(pos, 'clicked: ' + NB.labels[pos]));
  NB.nb[current][pos].forEach(function (q) { panel.appendChild(cell(q, NB.labels[q])); });
}
gd.on('plotly_click', function (ev) { show(ev.points[0].customdata[0]); });
gd.on('plotly_sliderchange', function (ev) { current = ev.step.label; if (shown !== null) { show(shown); } });
gd.on('plotly_animatingframe', function (ev) { current = ev.name; if (shown !== null) { show(shown); } });
""").replace("DATA", json.dumps(data)).replace("SIZE", str(int(size)))


__all__ = ["THUMBNAILS_MAX_POINTS", "class_colours", "click_script", "embedding_figure", "embedding_grid", "hover_script",
           "point_thumbnail", "thumbnail_uri"]

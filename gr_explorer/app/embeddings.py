"""Explore's embedding view: the same test images at every cut, one aligned 2-D map per cut behind a slider.

The maps come from the features the sweep already extracted (no forward pass): `embedding.embed_cuts` on the
base view's test features. The figure is the library's (`embedding_plots.embedding_figure`), drawn as its own
HTML page in an iframe so that its scripts run: a hovered point shows its image (thumbnails up to
THUMBNAILS_MAX_POINTS drawn points), a clicked point lists its nearest images at the cut on screen. The
neighbourhood score (k-NN label agreement with its interval and chance) is in each frame's title and in the
table below the figure, so the view is not just a picture.
"""

from __future__ import annotations

import importlib.util

import streamlit as st
import streamlit.components.v1 as components

from ..embedding import METHOD_NAMES, embed_cuts
from ..embedding_plots import (
    THUMBNAILS_MAX_POINTS,
    click_script,
    embedding_figure,
    embedding_grid,
    hover_script,
    thumbnail_uri,
)
from ..export import HTML_CONFIG
from ..files import slug
from ..run import SweepResult
from . import results
from .state import kept

FIGURE_HEIGHT = 720


def methods() -> list[str]:
    """PCA always; t-SNE when its optional extra (openTSNE) is installed."""
    return ["pca"] + (["tsne"] if importlib.util.find_spec("openTSNE") is not None else [])


@st.cache_data(show_spinner=False, max_entries=8)
def _html(_emb, task: str, model: str, thumbs: tuple[str, ...] | None, key: tuple) -> str:
    labels = [" · ".join(str(_emb.class_names(t)[i]) for t in _emb.labels) for i in range(_emb.n_drawn)]
    fig = embedding_figure(_emb, task, model=model, thumbnails=list(thumbs) if thumbs else None)
    scripts = [hover_script()] + ([click_script(_emb.all_neighbours(), list(thumbs), labels)] if thumbs else [])
    return fig.to_html(include_plotlyjs=True, full_html=True, post_script=scripts, config=HTML_CONFIG,
                       default_height=FIGURE_HEIGHT - 120)


def show_embedding(record: SweepResult, key: str) -> None:
    model = record.models[0]
    feats = record.features.get(model, {}).get("base")
    if feats is None or record.dataset is None:
        st.info("The embedding view needs this run's features (run the sweep again; a cancelled run keeps none).")
        return
    tasks = record.dataset.view_tasks("base")
    c1, c2 = st.columns([3, 2])
    task = kept(c1.selectbox, "Colour the points by", key=f"{key}:emb_task", options=tasks, index=0,
                help="The task whose classes colour the points (and stratify a sample of large sets).")
    options = methods()
    method = kept(c2.radio, "Map", key=f"{key}:emb_method", options=options, horizontal=True,
                  format_func=lambda m: METHOD_NAMES[m],
                  help="PCA: exact, seconds. t-SNE (openTSNE, the optional extra 'tsne'): about a minute per cut "
                       "on 2 cores at 5,000 points.")
    memo = st.session_state.setdefault(f"{key}:emb:{id(record)}", {})
    if (task, method) not in memo:
        with st.spinner(f"{METHOD_NAMES[method]} of every cut ..."):
            memo[(task, method)] = embed_cuts(feats, record.dataset, task=task, method=method, split="test",
                                              seed=record.config.seed, model=model)
    emb = memo[(task, method)]
    thumbs = None
    if emb.n_drawn <= THUMBNAILS_MAX_POINTS:
        thumbs = tuple(thumbnail_uri(x) for x in record.dataset.splits["test"].get(emb.index))
    components.html(_html(emb, task, model, thumbs, (id(record), task, method)), height=FIGURE_HEIGHT, scrolling=True)
    st.caption(f"The same {emb.n_drawn:,} test images at every cut (of {emb.n_total:,}), each map aligned to the "
               "previous cut's (rotation and reflection only), so points move as much as the representation does. "
               "Slide or press ▶ to walk through the cuts; hover a point to see its image; click it for its nearest "
               "images at that cut. The title gives the cut's neighbourhood score: the share of each image's "
               f"{emb.k} nearest images (cosine, the cut's own features) with its {task} label, with its 95% interval "
               "and chance.")
    scores = emb.scores[emb.scores["task"] == task]
    st.dataframe(scores.assign(agreement=[f"{a:.3f} [{lo:.3f}, {hi:.3f}]" for a, lo, hi in
                                          zip(scores["agreement"], scores["ci_low"], scores["ci_high"])])
                 [["cut", "part", "agreement", "chance", "k", "n_points"]],
                 hide_index=True, width="stretch", key=f"{key}:emb_scores")
    results.image_downloads(lambda: embedding_grid(emb, task, model=model), key=f"{key}:emb", what="Map",
                            stem=slug(f"embedding_{model.split(':')[-1]}_{task}"))

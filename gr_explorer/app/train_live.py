"""The Train page's live probes: accuracy vs depth over the epochs and the guillotine gain per epoch, for every
design of a training queue, drawn while they train and again from their files when done.

Why one drawing for both: the live charts are built from the probe steps the job recorded so far (each step is
`training/live.py`'s table and summary, the same rows it writes to `<out>.probes.csv`), the final ones from those
CSVs next to the published checkpoint, and both go through `design_figures`, so what a teacher watched is what
stays. The figures are live_plots.py's; this module only arranges them: one column per design (side by side),
and the designs' gains overlaid on one task when there are several.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from ..export import HTML_CONFIG
from ..live_plots import gain_of_designs, gain_over_training, probes_over_training

#: design label -> (table of every cut per probe step, summary per task per probe step)
Designs = dict[str, tuple[pd.DataFrame, pd.DataFrame]]
HEIGHT = 470
#: the live charts' legend above the plot: two designs side by side leave each about 450 px at 1280 px
LEGEND = dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0, title=dict(text=""))


def from_records(records: list[dict]) -> Designs:
    """A job's recorded probe steps ({'label', 'table', 'summary'} each) -> the tables of each design, in order."""
    steps: dict[str, list[dict]] = {}
    for r in records:
        steps.setdefault(r["label"], []).append(r)
    return {label: (pd.concat([r["table"] for r in rs], ignore_index=True),
                    pd.concat([r["summary"] for r in rs], ignore_index=True)) for label, rs in steps.items()}


def design_figures(designs: Designs, task: str | None = None) -> tuple[list[tuple[go.Figure, go.Figure]],
                                                                          go.Figure | None]:
    """Per design: accuracy vs depth (slider and Play over the probe epochs) and its gain per epoch; with two
    designs or more, their gains on `task` (default: the first task probed) overlaid."""
    pairs = []
    for label, (table, summary) in designs.items():
        acc = probes_over_training(table, summary, title=label, height=HEIGHT)
        gain = gain_over_training(summary, title=f"{label}: guillotine gain (○ interval first excludes 0)")
        for fig in (acc, gain):  # the legend above the plot: the slider and Play keep the space below
            fig.update_layout(height=HEIGHT, legend=LEGEND, title=dict(y=0.98, yanchor="top", font=dict(size=16)),
                              margin=dict(t=90, l=60, r=10))
        pairs.append((acc, gain))
    overlay = None
    if len(designs) > 1:
        tasks = list(dict.fromkeys(t for _, s in designs.values() for t in s["task"]))
        task = task if task in tasks else tasks[0]
        overlay = gain_of_designs({label: s for label, (_, s) in designs.items()}, task)
        overlay.update_layout(height=HEIGHT)
    return pairs, overlay


def draw_designs(designs: Designs, key: str, task: str | None = None, waiting: list[str] = ()) -> None:
    """The charts of every design, side by side (two per row); `waiting` names designs queued but not yet probed.

    `key` prefixes the charts' keys: a redraw while following a job needs new ones (an unchanged design's chart
    drawn again in the same script run would otherwise repeat an element id)."""
    pairs, overlay = design_figures(designs, task)
    labels = list(designs)
    if len(pairs) == 1:  # one design: its two charts side by side, the full width of the page
        (acc, gain), label = pairs[0], labels[0]
        c1, c2 = st.columns(2)
        c1.plotly_chart(acc, width="stretch", config=HTML_CONFIG, key=f"{key}:acc:{label}")
        c2.plotly_chart(gain, width="stretch", config=HTML_CONFIG, key=f"{key}:gain:{label}")
    for row in range(0, len(pairs) if len(pairs) > 1 else 0, 2):
        cols = st.columns(2)
        for col, label, (acc, gain) in zip(cols, labels[row:row + 2], pairs[row:row + 2]):
            col.plotly_chart(acc, width="stretch", config=HTML_CONFIG, key=f"{key}:acc:{label}")
            col.plotly_chart(gain, width="stretch", config=HTML_CONFIG, key=f"{key}:gain:{label}")
    if waiting:
        st.caption("Queued, not probed yet: " + ", ".join(waiting) + ".")
    if overlay is not None:
        st.plotly_chart(overlay, width="stretch", config=HTML_CONFIG, key=f"{key}:overlay")


CAPTION = ("Every cut probed on held-out images at each probe epoch (epoch 0: the random init). Drag the slider or "
           "press ▶ to watch accuracy vs depth form; the gain chart shows when the best cut starts to beat the last "
           "one (bands: 95% intervals).")


def draw_live(slot, records: list[dict], waiting: list[str] = ()) -> None:
    """`follow`'s on_records: redraw the live charts from the probe steps recorded so far."""
    with slot.container():
        st.subheader("Live probes")
        st.caption(CAPTION + " The charts grow as epochs arrive.")
        draw_designs(from_records(records), f"tr_live:{len(records)}", waiting=[w for w in waiting if w not in {r["label"] for r in records}])

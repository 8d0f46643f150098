"""A page's settings in its URL: copy the address bar to share a run; opening the link restores the settings and,
when the features are cached, the result.

The query string holds the settings that differ from their declared defaults, each spelled as its command-line
word (settings.format_flag / parse_flag, so the URL, the CLI and run.json agree), e.g.
`?models=zoo:simclr&tasks=shape,color&n_train=500&run=1`. A link is read once per session, before the widgets are
drawn; from then on the URL follows the widgets. Unknown or bad values are ignored with a warning, never trusted.
"""

from __future__ import annotations

import streamlit as st

from ..config import SweepConfig
from ..errors import GRExplorerError
from ..settings import format_flag, parse_flag
from .state import preset

#: settings a page's link carries, and the widget key (prefix added) that shows each
WIDGETS = {"probes": "probes", "baselines": "baselines", "n_train": "n_train", "n_test": "n_test", "seed": "seed",
           "batch_size": "batch", "device": "device", "image_size": "image_size", "metrics": "metrics",
           "combine": "combine", "tries": "tries"}
RUN = "run"
ZOO_SOURCE = "Zoo & this session"


def link_of(config: SweepConfig) -> dict[str, str]:
    """The query string of a config: the settings that differ from their declared defaults, as flag words."""
    out = {}
    for name, value in config.changed().items():
        kind = SweepConfig.spec(name).kind
        if value is None:
            if kind == "count":
                out[name] = "all"
            continue
        out[name] = format_flag(kind, value)
    return out


def publish(config: SweepConfig | None) -> None:
    """Keep the address bar equal to the current settings (with run=1: opening it runs them)."""
    if config is None:
        return
    query = {**link_of(config), RUN: "1"}
    if dict(st.query_params) != query:
        st.query_params.from_dict(query)


def read_link() -> SweepConfig | None:
    """The config a link describes, or None (no link, or a bad one: said once, then ignored)."""
    params = {k: v for k, v in st.query_params.to_dict().items() if k != RUN}
    if "models" not in params:
        return None
    try:
        values = {name: parse_flag(SweepConfig.spec(name).kind, text, name) for name, text in params.items()
                  if name in dict(SweepConfig.declared())}
        return SweepConfig.from_dict(values, source="the link")
    except GRExplorerError as e:
        st.warning(f"This link's settings could not be used ({e}); the page starts from the defaults.",
                   icon=":material/link_off:")
        return None


def restore(prefix: str) -> SweepConfig | None:
    """Once per session: put a link's settings into the page's widgets (before they are drawn); returns the
    linked config when the link asks to run it."""
    done = f"_{prefix}:link_read"
    if st.session_state.get(done):
        return None
    st.session_state[done] = True
    config = read_link()
    if config is None:
        return None
    scheme, _, name = config.models[0].partition(":")
    if scheme == "timm":
        preset(f"{prefix}_source", "timm")
        preset(f"{prefix}_timm", name)
    else:
        preset(f"{prefix}_source", ZOO_SOURCE)
        preset(f"{prefix}_model", config.models[0])
    kind, _, folder = config.dataset.partition(":")
    preset(f"{prefix}_dataset", kind)
    if folder:
        preset(f"{prefix}_folder", folder)
    if config.tasks is not None:
        preset(f"{prefix}_tasks::{kind}", list(config.tasks))
    model = config.models[0]
    if config.cut_detail != "block":
        preset(f"{prefix}_detail::{model}", config.cut_detail)
    if config.cuts is not None:
        preset(f"{prefix}_cuts::{model}" + ("" if config.cut_detail == "block" else f"::{config.cut_detail}"),
               list(config.cuts))
    if config.readout is not None:
        preset(f"{prefix}_readouts::{model}", list(config.readout))
    if config.readout_norm != "off":
        preset(f"{prefix}_norm::{model}", config.readout_norm)
    for setting, widget in WIDGETS.items():
        value = getattr(config, setting)
        if setting in ("n_train", "n_test", "image_size") and value is None:
            value = 0
        preset(f"{prefix}_{widget}", list(value) if isinstance(value, tuple) else value)
    if config.shots:  # the page offers counts; 'all' is the ordinary sweep, always drawn
        preset(f"{prefix}_shots", [s for s in config.shots if s != "all"])
    if config.metrics:
        preset(f"{prefix}_diagnostics", True)
    return config if st.query_params.get(RUN) == "1" else None

"""Keep and share a figure: write it as PNG, SVG and self-contained HTML.

Why server-side: the CLI has no browser tab to click a download button in, and the app's download buttons need
the file's bytes. PNG and SVG are rendered by kaleido (>= 1), Plotly's maintained exporter, which drives a
Chrome/Chromium already on the machine (Debian: `apt-get install chromium`; kaleido does not download one
here). A headless browser is started on the first export of a process and reused (an export then takes about
0.2 s instead of 2 s), and closed when the process exits. The HTML is Plotly's own, with plotly.js inlined
(works offline); its camera button saves a PNG at the same export size (HTML_CONFIG).
"""

from __future__ import annotations

import atexit
import threading
from pathlib import Path
from typing import Sequence

import kaleido
import plotly.graph_objects as go
from choreographer.browsers import Chromium

from .errors import ExportError
from .files import atomic_write
from .names import FIGURE_FORMATS

FORMATS = FIGURE_FORMATS  # declared in names.py
WIDTH, HEIGHT = 1200, 800
#: Plotly config of the written HTML (and for the app's charts): the camera button exports 1200 x 800 PNG
HTML_CONFIG = {"toImageButtonOptions": {"format": "png", "width": WIDTH, "height": HEIGHT, "scale": 1},
               "displaylogo": False}

_lock = threading.Lock()
_server = {"started": False}


def find_browser() -> str | None:
    """The Chrome/Chromium kaleido would use ($BROWSER_PATH, else the usual names and places), or None.

    Asked of choreographer, the browser driver kaleido itself uses, so the answer is the one kaleido acts on."""
    return Chromium.find_browser(skip_local=False)


def _stop_server() -> None:
    if _server["started"]:
        kaleido.stop_sync_server(silence_warnings=True)
        _server["started"] = False


def check_export(formats: Sequence[str]) -> None:
    """Fail before any long work when a format is unknown, or PNG/SVG is asked for and no browser can render it."""
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ExportError(f"Figure formats {list(formats)!r} are invalid. Valid: one or more of {', '.join(FORMATS)}.")
    static = [f.upper() for f in formats if f != "html"]
    if static and find_browser() is None:
        raise ExportError(f"Writing figures as {' and '.join(static)} needs Chrome or Chromium, and none was found "
                          "(looked at $BROWSER_PATH and PATH). Valid: install one (Debian: apt-get install chromium) or "
                          "set BROWSER_PATH to it, or ask for html only (--figures html).")


def figure_bytes(fig: go.Figure, fmt: str, width: int = WIDTH, height: int = HEIGHT,
                 post_script: str | None = None) -> bytes:
    """The figure as a PNG, SVG or HTML file's bytes (what the app's download buttons serve)."""
    check_export([fmt])
    if fmt == "html":
        return fig.to_html(include_plotlyjs=True, full_html=True, config=HTML_CONFIG, post_script=post_script,
                           auto_play=False).encode()  # animation frames wait for the slider or Play
    browser = find_browser()
    with _lock:
        try:
            if not _server["started"]:
                kaleido.start_sync_server(mathjax=False, silence_warnings=True)
                _server["started"] = True
                atexit.register(_stop_server)
            return kaleido.calc_fig_sync(fig, opts=dict(format=fmt, width=int(width), height=int(height)))
        except Exception as e:  # kaleido and choreographer raise many kinds; say which browser failed and why
            _stop_server()
            raise ExportError(f"The browser {browser!r} could not render the figure as {fmt.upper()} "
                              f"({type(e).__name__}: {e}). Valid: a working Chrome/Chromium (set BROWSER_PATH), "
                              "or html only (--figures html).") from e


def save_figure(fig: go.Figure, path_without_ext: str | Path, formats: Sequence[str] = FORMATS, width: int = WIDTH,
                height: int = HEIGHT, post_script: str | None = None) -> list[Path]:
    """Write `<path>.<fmt>` for each format (atomically); returns the paths written, in the order asked.

    width/height: the PNG and SVG size in pixels. post_script: JavaScript run in the HTML after the plot is
    drawn (e.g. embedding_plots.hover_script).
    """
    check_export(formats)
    base = Path(path_without_ext)
    return [atomic_write(base.with_name(f"{base.name}.{fmt}"), figure_bytes(fig, fmt, width, height, post_script))
            for fmt in dict.fromkeys(formats)]


__all__ = ["FORMATS", "HTML_CONFIG", "check_export", "figure_bytes", "find_browser", "save_figure"]

"""Figures kept and shared: PNG and SVG files are valid images of the right size with their labels; HTML offline.

PNG and SVG are rendered by kaleido through a Chrome/Chromium on the machine; those tests skip only when no
browser is found (CI installs Debian's chromium).
"""

import re
import xml.etree.ElementTree as ET

import pandas as pd
import plotly.graph_objects as go
import pytest
from PIL import Image

from gr_explorer import export
from gr_explorer.cli import main
from gr_explorer.errors import ExportError
from helpers import saved_tiny

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CAMERA = '"toImageButtonOptions": {"format": "png", "width": 1200, "height": 800, "scale": 1}'
needs_browser = pytest.mark.skipif(export.find_browser() is None,
                                   reason="no Chrome/Chromium for kaleido (apt-get install chromium; .ci/run does it)")


def _svg_texts(path) -> str:
    root = ET.parse(path).getroot()  # parses as XML
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return " ".join(t for el in root.iter() if el.tag.endswith("text") for t in el.itertext())


def _check_png(path, size):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == size


@needs_browser
def test_sweep_writes_its_figures_as_png_svg_and_html(tmp_path, capsys):
    _, path = saved_tiny(tmp_path)
    out = tmp_path / "run"
    assert main(["sweep", "--model", f"file:{path}", "--dataset", "shapes", "--tasks", "shape,color", "--n-train", "120",
                 "--n-test", "60", "--bootstrap", "100", "--figures", "png,svg,html", "--out", str(out), "--quiet"]) == 0
    for name in ("figure", "heatmap"):
        _check_png(out / f"{name}.png", (1200, 800))
        assert CAMERA in (out / f"{name}.html").read_text()  # the HTML's own download button: 1200 x 800 PNG
    texts = _svg_texts(out / "figure.svg")
    for label in ("cut (forward order)", "test accuracy (band: 95% CI)", "shape", "color", "proj3"):
        assert label in texts
    texts = _svg_texts(out / "heatmap.svg")
    assert "task" in texts and "cut" in texts and "accuracy" in texts
    assert ET.parse(out / "heatmap.svg").getroot().get("width") == "1200"
    assert pd.read_csv(out / "results.csv").shape[0] == 8 * 2


@needs_browser
def test_save_figure_sizes_and_formats(tmp_path):
    fig = go.Figure(go.Scatter(x=[0, 1, 2], y=[2, 0, 1])).update_layout(xaxis_title="depth of the cut",
                                                                        yaxis_title="share of neighbours")
    written = export.save_figure(fig, tmp_path / "small", formats=("svg", "png"), width=640, height=360)
    assert [p.name for p in written] == ["small.svg", "small.png"]
    _check_png(tmp_path / "small.png", (640, 360))
    assert "depth of the cut" in _svg_texts(tmp_path / "small.svg")
    assert not (tmp_path / "small.html").exists()


def test_html_needs_no_browser_and_embeds_plotly(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "find_browser", lambda: None)
    (p,) = export.save_figure(go.Figure(go.Bar(y=[1, 2])), tmp_path / "f", formats=("html",))
    html = p.read_text()
    assert not re.search(r"<script[^>]*src=", html) and CAMERA in html


def test_png_without_a_browser_is_a_clear_error_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(export, "find_browser", lambda: None)
    with pytest.raises(ExportError, match=r"needs Chrome or Chromium.*apt-get install chromium"):
        export.save_figure(go.Figure(), tmp_path / "f", formats=("html", "png"))
    assert not list(tmp_path.iterdir())  # nothing half-written
    _, path = saved_tiny(tmp_path)
    assert main(["sweep", "--model", f"file:{path}", "--figures", "svg", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "SVG needs Chrome or Chromium" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "results.csv").exists()  # refused before the sweep ran


@pytest.mark.parametrize("formats", [("pdf",), (), ("png", "jpeg")])
def test_unknown_formats_are_refused(tmp_path, formats):
    with pytest.raises(ExportError, match="Valid: one or more of html, png, svg"):
        export.save_figure(go.Figure(), tmp_path / "f", formats=formats)

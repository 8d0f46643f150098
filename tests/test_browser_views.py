"""The views a teacher projects, in a real browser (headless Chromium at 1280x720, as tests/test_browser.py): the
embedding slider moves the same images, hover shows an image, PNG and SVG downloads are valid files, a shared link
restores the settings (and the cached result), and the Train page draws its live probe curves while it trains.

What is read back is the browser's own state (Plotly's graph div: its data, its axes), so a chart that does not draw,
or a script that fails (a JavaScript error on the page fails the test), is caught here and nowhere else.
Screenshots (1280x720) go to the test's tmp dir: embedding_view.png, embedding_hover.png, train_live.png,
train_done.png.
"""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
import test_browser
from test_browser import VIEWPORT, _launch, _no_errors, _shot

from gr_explorer.embedding_plots import click_script, hover_script

playwright_api, served, server = test_browser.playwright_api, test_browser.served, test_browser.server  # its fixtures

RUN_S = 400
#: a small run (the link a teacher would share): two tasks, 300 / 200 images
LINK = "?models=zoo:simclr&tasks=shape,color&n_train=300&n_test=200"

#: the graph div of a Plotly figure in this document whose title (less the <b> Streamlit's theme adds) starts with `t`
FIND = """(t) => [...document.querySelectorAll('.js-plotly-plot')].find(
  g => ((g.layout.title || {}).text || '').replace(/<[^>]*>/g, '').startsWith(t)) || null"""
TITLE = "(g) => g.layout.title.text.replace(/<[^>]*>/g, '')"


def _positions(frame) -> dict:
    """Image index (customdata[1]) -> [x, y] of every drawn point of the embedding figure, as Plotly holds them now."""
    return frame.evaluate("""() => { const gd = document.querySelector('.js-plotly-plot'), out = {};
      gd._fullData.forEach(t => { for (let i = 0; i < t.x.length; i++) { out[t.customdata[i][1]] = [t.x[i], t.y[i]]; } });
      return out; }""")


def _errors_of(page) -> list[str]:
    """JavaScript errors on the page and in its iframes. A promise rejected with nothing (no message, no stack) is
    left out: Plotly.animate rejects that way when a new frame interrupts the one being drawn, which is harmless."""
    errors: list[str] = []

    def seen(e) -> None:
        if (e.message, e.stack) not in (("undefined", None), ("undefined", ""), ("", None), ("", "")):
            errors.append(f"{e.message}\n{e.stack}")

    page.on("pageerror", seen)
    return errors


@contextmanager
def _opened(playwright_api, address: str):
    """(browser, page at `address`, the page's JavaScript errors so far), the browser closed afterwards."""
    with playwright_api() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            errors = _errors_of(page)
            page.goto(address, wait_until="domcontentloaded", timeout=60_000)
            yield browser, page, errors
        finally:
            browser.close()


@pytest.mark.slow
def test_embedding_slider_hover_downloads_and_a_shared_link(playwright_api, server, tmp_path):
    url, _ = server
    with _opened(playwright_api, url + "/" + LINK) as (browser, page, errors):
        run = page.get_by_role("button", name="Run", exact=True)
        run.wait_for(timeout=90_000)
        run.click()
        page.get_by_text("Reproduce from a terminal").first.wait_for(timeout=RUN_S * 1000)
        _no_errors(page)

        # the embedding: the same images at two cuts sit at different places
        page.get_by_role("tab", name="Embedding per cut").click()
        iframe = page.locator("iframe[title='st.iframe']").first
        iframe.scroll_into_view_if_needed()
        frame = page.frame_locator("iframe[title='st.iframe']").first
        frame.locator(".js-plotly-plot").wait_for(timeout=60_000)
        inner = next(f for f in page.frames if f is not page.main_frame and f.url == "about:srcdoc")
        cuts = inner.evaluate("() => document.querySelector('.js-plotly-plot').layout.sliders[0].steps"
                              ".map(s => s.label)")
        assert cuts[0] == "stem" and len(cuts) >= 5
        first = cuts[inner.evaluate("() => document.querySelector('.js-plotly-plot').layout.sliders[0].active")]
        before = _positions(inner)
        other = "stem" if first != "stem" else cuts[-1]
        # a click where the slider's tick label is (Plotly's rail takes the click: force skips the "covered" check)
        frame.locator(".slider-label", has_text=other).first.click(force=True)
        inner.wait_for_function("(c) => document.querySelector('.js-plotly-plot').layout.title.text.includes(c)",
                                arg=f"at {other} ", timeout=10_000)
        after = _positions(inner)
        assert before.keys() == after.keys() and len(before) == 200  # all 200 test images, the same ones
        moved = sum(abs(before[k][0] - after[k][0]) + abs(before[k][1] - after[k][1]) > 1e-6 for k in before)
        assert moved > 0.9 * len(before), f"only {moved} of {len(before)} points moved between {first} and {other}"
        _shot(page, tmp_path / "embedding_view.png")

        # hover a point: its thumbnail appears, the image of that point (a PNG data URI)
        x, y = inner.evaluate("""() => { const gd = document.querySelector('.js-plotly-plot'), fl = gd._fullLayout,
            r = gd.getBoundingClientRect(), t = gd._fullData[0];
          return [r.left + fl._size.l + fl.xaxis.l2p(t.x[0]), r.top + fl._size.t + fl.yaxis.l2p(t.y[0])]; }""")
        box = iframe.bounding_box()
        page.mouse.move(box["x"] + x, box["y"] + y, steps=4)
        thumb = frame.locator("img.gr-thumbnail")
        thumb.wait_for(state="visible", timeout=10_000)
        assert thumb.get_attribute("src").startswith("data:image/png;base64,")
        page.screenshot(path=str(tmp_path / "embedding_hover.png"))

        # PNG and SVG of the embedding grid, rendered on the server
        panel = page.get_by_role("tabpanel", name="Embedding per cut")
        for name, suffix in (("Map (PNG)", "png"), ("Map (SVG)", "svg")):
            with page.expect_download(timeout=120_000) as d:
                panel.get_by_role("button", name=name).click()
            d.value.save_as(tmp_path / f"embedding.{suffix}")
        assert (tmp_path / "embedding.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        root = ET.parse(tmp_path / "embedding.svg").getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"

        # the address bar is the shared link: a new session opening it gets the settings and the cached result
        shared = page.url
        query = parse_qs(urlparse(shared).query)
        assert query["n_train"] == ["300"] and query["tasks"] == ["shape,color"] and query["run"] == ["1"]
        friend = browser.new_context(viewport=VIEWPORT).new_page()
        friend.goto(shared, wait_until="domcontentloaded", timeout=60_000)
        friend.get_by_text("Reproduce from a terminal").first.wait_for(timeout=120_000)  # no Run pressed
        assert friend.get_by_role("spinbutton", name="Train images", exact=True).input_value() == "300"
        assert friend.get_by_role("spinbutton", name="Test images", exact=True).input_value() == "200"
        _no_errors(friend)
        assert not errors, errors


@pytest.mark.slow
def test_the_train_page_draws_probe_curves_while_it_trains(playwright_api, server, tmp_path):
    url, _ = server
    with _opened(playwright_api, url) as (browser, page, errors):
        # the first page finishes loading first: a page switch while its imports run can race them (torchvision's
        # circular imports raise ImportError when two script threads import it at once)
        page.get_by_text("then press").first.wait_for(timeout=90_000)
        page.get_by_role("link", name="Train").click()
        page.get_by_text("Train: what if?").first.wait_for(timeout=90_000)
        for label, value in (("Training images", "256"), ("Epochs", "3"),
                             ("Probe every N epochs (0 = off)", "1"), ("Live probe: train images", "200"),
                             ("Live probe: test images", "100")):
            box = page.get_by_label(label, exact=True)
            box.wait_for(timeout=60_000)
            box.fill(value)
            box.press("Enter")
            page.wait_for_timeout(1500)
        train = page.get_by_role("button", name="Train", exact=True)
        page.wait_for_function("() => { const b = [...document.querySelectorAll('button')].find("
                               "b => b.innerText.trim().endsWith('Train')); return b && !b.disabled; }",
                               timeout=90_000)
        page.get_by_text("--probe-every 1").first.wait_for(timeout=90_000)  # the command shown has the settings
        train.click()
        # while it trains: the live charts appear and grow (the Stop button still there)
        page.wait_for_function(f"() => ({FIND})('1: my-simclr · epoch')", timeout=RUN_S * 1000)
        live_epochs = page.evaluate(f"() => ({FIND})('1: my-simclr · epoch').layout.sliders[0].steps.length")
        running = page.get_by_role("button", name="Stop").count() > 0
        _shot(page, tmp_path / "train_live.png", "Every cut probed on held-out images")
        page.get_by_text("finished:").first.wait_for(timeout=RUN_S * 1000)
        page.wait_for_timeout(2000)
        _no_errors(page)
        acc = f"({FIND})('1: my-simclr · epoch')"
        steps = page.evaluate(f"() => {acc}.layout.sliders[0].steps.map(s => s.label)")
        assert steps == ["0", "1", "2", "3"]  # the random init, then every epoch
        assert running and 1 <= live_epochs <= 4
        # the slider animates the curves: back to epoch 0 (the random init), the curves change
        last = page.evaluate(f"() => Array.from({acc}._fullData[0].y)")
        # the chart in the middle of the screen (a click at the top edge lands on Streamlit's header bar)
        page.evaluate(f"() => {acc}.scrollIntoView({{block: 'center'}})")
        page.wait_for_timeout(500)
        for attempt in range(3):  # a click that lands while Streamlit redraws the chart is lost: click again
            page.locator(".js-plotly-plot .slider-label", has_text="0").first.click(force=True)
            try:
                page.wait_for_function(f"() => ({TITLE})({acc}).endsWith('epoch 0')", timeout=5_000)
                break
            except Exception:  # noqa: BLE001 -- playwright's TimeoutError; the last try fails below
                if attempt == 2:
                    raise
        start = page.evaluate(f"() => Array.from({acc}._fullData[0].y)")
        assert len(start) == len(last) and start != last
        gain = page.evaluate(f"() => ({FIND})('1: my-simclr: guillotine gain').data.length")
        assert gain >= 2  # a band and a line per task at least
        _shot(page, tmp_path / "train_done.png", "Every cut probed on held-out images")
        assert not errors, errors


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js not installed")
def test_the_embedding_figure_scripts_are_valid_javascript(tmp_path):
    """A JavaScript syntax error in a post_script stops the whole figure from drawing; node --check finds it."""
    for name, script in (("hover", hover_script()),
                         ("click", click_script({"stem": np.array([[1, 0]])}, ["data:image/png;base64,AA"] * 2,
                                                ["a's", "b"]))):
        path = tmp_path / f"{name}.js"
        path.write_text(script.replace("{plot_id}", "x"))
        done = subprocess.run(["node", "--check", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr

"""End to end in a real browser: `streamlit run streamlit_app.py`, headless Chromium, clicks on Run.

Needs Playwright (Python package) and Debian's Chromium (/usr/bin/chromium);
`.ci/run` installs Chromium with apt when it is missing, and Playwright comes
with the `test` extra. Playwright's own browser download is not used.

The app runs on its real defaults (zoo:simclr from pretrained/, shapes, all
cuts, linear probe, the random-init baseline) with a temporary data
root. While pretrained/ holds no checkpoint, a tiny stand-in zoo is used
instead, so the test still exercises the whole path. Screenshots are taken
at 1280x720 (a projector) in the test's tmp dir; with
GR_EXPLORER_UPDATE_SCREENSHOT=1 (and the shipped zoo) they also refresh the
README's docs/explore.png (default test) and docs/diagnostics.png (the slow
tour, which also shoots Compare).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import psutil
import pytest

from gr_explorer.config import SweepConfig
from gr_explorer.data import dataset_tasks, image_bytes

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("GR_EXPLORER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic", "--no-first-run",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
SERVER_START_S = 120
RUN_S = 400  # generous: the default run takes about half a minute on an idle 2-core CPU
VIEWPORT = {"width": 1280, "height": 720}  # a projector


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer at {url} within {timeout} s")


def _zoo_env(tmp_path: Path) -> dict:
    from gr_explorer.models import zoo_dir

    if list(zoo_dir().glob("*.safetensors")):
        return {}
    sys.path.insert(0, str(Path(__file__).parent))
    from helpers import saved_tiny

    saved_tiny(tmp_path / "zoo", "simclr")
    return {"GR_EXPLORER_ZOO": str(tmp_path / "zoo")}


@pytest.fixture
def playwright_api():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]' installs it)")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium; .ci/run does it)")
    return sync_playwright


@pytest.fixture
def served(tmp_path):
    """(url, real_zoo, the server's process): a test that measures the server (its memory, its CPU) needs the last."""
    port = _free_port()
    env = {**os.environ, "GR_EXPLORER_CACHE": str(tmp_path / "cache"), "GR_EXPLORER_DATA_ROOTS": str(tmp_path / "data"),
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           **_zoo_env(tmp_path)}
    log = open(tmp_path / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
         ],  # the rest (no file watcher, viewer toolbar) comes from .streamlit/config.toml
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(url, proc, SERVER_START_S)
        yield url, "GR_EXPLORER_ZOO" not in env or env["GR_EXPLORER_ZOO"] == os.environ.get("GR_EXPLORER_ZOO"), proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        print((tmp_path / "streamlit.log").read_text()[-3000:])


@pytest.fixture
def server(served):
    """(url, real_zoo)"""
    return served[:2]


def _launch(p):
    # Playwright gives every launch a fresh temporary profile (the --user-data-dir flag is its own).
    return p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def _run_and_wait(page, name: str, done_text: str) -> float:
    button = page.get_by_role("button", name=name, exact=True)
    button.wait_for(state="visible", timeout=90_000)
    page.wait_for_function("(n) => { const b = [...document.querySelectorAll('button')].find("
                           "b => b.innerText.trim().endsWith(n)); return b && !b.disabled; }", arg=name, timeout=90_000)
    t0 = time.perf_counter()
    button.click()
    page.get_by_text(done_text).first.wait_for(timeout=RUN_S * 1000)
    seconds = time.perf_counter() - t0
    page.locator(".js-plotly-plot").first.wait_for(state="visible", timeout=60_000)
    page.wait_for_timeout(2000)  # let Plotly finish drawing
    return seconds


def _no_errors(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0
    errors = page.locator("[data-testid='stAlertContentError']")
    assert errors.count() == 0, errors.all_inner_texts()
    body = page.inner_text("body")
    assert "Traceback" not in body and "Unexpected error" not in body


def _shot(page, path: Path, at_text: str | None = None) -> Path:
    if at_text is not None:  # that heading at the top of the view
        page.get_by_text(at_text).first.evaluate("e => e.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(800)
    page.mouse.move(640, 5)  # no tooltip in the screenshot
    page.wait_for_timeout(500)
    page.screenshot(path=str(path), full_page=False)
    return path


def _publish(real_zoo: bool, shot: Path, name: str) -> None:
    if real_zoo and os.environ.get("GR_EXPLORER_UPDATE_SCREENSHOT") == "1":  # never the stand-in
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, ROOT / "docs" / name)


def test_default_run_in_a_real_browser(playwright_api, server, tmp_path):
    server, real_zoo = server
    with playwright_api() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(server, wait_until="domcontentloaded", timeout=60_000)
            seconds = _run_and_wait(page, "Run", "Reproduce from a terminal")
            print(f"default run: results shown {seconds:.1f} s after clicking Run")
            assert page.locator(".js-plotly-plot").count() >= 1
            _no_errors(page)
            body = page.inner_text("body")
            assert "random init" in body and "guillotine gain" in body
            assert str(tmp_path) not in body
            _publish(real_zoo, _shot(page, tmp_path / "explore.png"), "explore.png")
            # the downloads: the run config reproduces the run (SweepConfig.load reads it), the CSV is the table
            with page.expect_download() as d:
                page.get_by_role("button", name="Run config (JSON)").click()
            d.value.save_as(tmp_path / "run.json")
            config = SweepConfig.load(tmp_path / "run.json")
            assert config.models == ("zoo:simclr",) and config.dataset == "shapes" and config.cuts is None
            assert config.probes == ("linear",) and config.baselines == ("random-init",)
            assert str(tmp_path) not in (tmp_path / "run.json").read_text()
            with page.expect_download() as d:
                page.get_by_role("button", name="Results (CSV)").click()
            d.value.save_as(tmp_path / "results.csv")
            table = pd.read_csv(tmp_path / "results.csv")
            assert set(table["task"]) == set(dataset_tasks("shapes")) and table["accuracy"].between(0, 1).all()
            assert set(table["baseline"].fillna("")) == {"", "random-init"}
            with page.expect_download() as d:
                page.get_by_role("button", name="Figure (HTML)").click()
            d.value.save_as(tmp_path / "figure.html")
            assert "plotly" in (tmp_path / "figure.html").read_text()[:200_000].lower()
            # a second browser session starts clean and does not disturb the first
            other = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
            other.goto(server, wait_until="domcontentloaded", timeout=60_000)
            other.get_by_text("then press").first.wait_for(timeout=90_000)
            assert other.locator(".js-plotly-plot").count() == 0
            other.close()
            assert page.locator(".js-plotly-plot").count() >= 1
        finally:
            browser.close()


@pytest.mark.slow
def test_screenshot_tour_diagnostics_and_compare(playwright_api, server, tmp_path):
    """The Diagnostics view of the default run and Compare's default comparison, at 1280x720."""
    server, real_zoo = server
    with playwright_api() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(server, wait_until="domcontentloaded", timeout=60_000)
            page.get_by_text("Label-free diagnostics").first.click()
            page.get_by_text("Diagnostics", exact=True).first.wait_for(timeout=30_000)
            seconds = _run_and_wait(page, "Run", "Reproduce from a terminal")
            print(f"default run with diagnostics: {seconds:.1f} s")
            _no_errors(page)
            assert "validation picks" in page.inner_text("body")
            _shot(page, tmp_path / "explore_table.png", "Each line is a task")
            _publish(real_zoo, _shot(page, tmp_path / "diagnostics.png", "Diagnostics: what the cuts look like"),
                     "diagnostics.png")
            _shot(page, tmp_path / "diagnostics_below.png", "Would a metric have found")
            page.get_by_role("tab", name="Invariance per augmentation").click()
            _shot(page, tmp_path / "diagnostics_invariance.png", "Would a metric have found")
            page.get_by_role("link", name="Compare").click()
            page.get_by_text("Pick two or more models").first.wait_for(timeout=90_000)
            seconds = _run_and_wait(page, "Run comparison", "Best cut and guillotine gain per model")
            print(f"default comparison: {seconds:.1f} s")
            _no_errors(page)
            if real_zoo:  # the projector variants differ most on colour
                page.locator("[data-testid='stButtonGroup']").get_by_role("radio", name="color", exact=True).click()
                page.wait_for_timeout(3000)
            _shot(page, tmp_path / "compare.png", "Compare models")
            _shot(page, tmp_path / "compare_below.png", "Best cut and guillotine gain per model")
            assert str(tmp_path) not in page.inner_text("body")
        finally:
            browser.close()


def _rss(proc: subprocess.Popen) -> int:
    return psutil.Process(proc.pid).memory_info().rss


@pytest.mark.slow
def test_cancel_during_extraction_stops_and_gives_the_memory_back(playwright_api, served, tmp_path):
    """20,000 train images, Cancel once extraction is under way: the page says cancelled within CANCEL_S of the
    click (the button's help promises "within a second or so" per stage; the rest is the browser round trip on
    a busy machine), and the server's RSS falls back to its level before Run plus what the app keeps on purpose
    (the generated images, in the shared dataset cache) and MEMORY_SLACK of allocator noise."""
    CANCEL_S, MEMORY_SLACK = 10.0, 150e6
    url, _, proc = served
    n_train, n_test = 20_000, 1_000  # the widget's cap on a server with default limits
    with playwright_api() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(url, wait_until="domcontentloaded", timeout=60_000)
            field = page.get_by_role("spinbutton", name="Train images")
            field.wait_for(timeout=90_000)
            field.fill(str(n_train))
            field.press("Enter")
            page.wait_for_function("() => [...document.querySelectorAll('button')].some("
                                   "b => b.innerText.trim().endsWith('Run') && !b.disabled)", timeout=90_000)
            page.wait_for_timeout(2000)
            before = _rss(proc)
            page.get_by_role("button", name="Run", exact=True).click()
            page.get_by_text("Extract features").first.wait_for(timeout=RUN_S * 1000)
            peak, server = before, psutil.Process(proc.pid)
            for _ in range(10):  # extraction under way: its features, batches and the dataset in memory
                peak = max(peak, server.memory_info().rss)
                page.wait_for_timeout(300)
            t0 = time.perf_counter()
            page.get_by_role("button", name="Cancel").click()
            page.get_by_text("cancelled after").first.wait_for(timeout=60_000)
            seconds = time.perf_counter() - t0
            page.wait_for_timeout(3000)
            after = _rss(proc)
            kept = sum(image_bytes("shapes", n_train, n_test))
            print(f"cancel during extraction: page says cancelled {seconds:.1f} s after the click; server RSS "
                  f"{before / 1e6:.0f} MB before Run, {peak / 1e6:.0f} MB peak, {after / 1e6:.0f} MB after "
                  f"(images kept in the dataset cache: {kept / 1e6:.0f} MB)")
            _no_errors(page)
            assert "Reproduce from a terminal" not in page.inner_text("body")
            assert seconds < CANCEL_S
            assert after - before < kept + MEMORY_SLACK
        finally:
            browser.close()


@pytest.mark.slow
def test_closing_the_tab_ends_its_training(playwright_api, served, tmp_path):
    """Train, then close the tab mid-training: the training stops by itself (jobs.OWNER_GRACE_S after the session
    is gone, plus a step), saves its checkpoint marked incomplete, and the server's CPU goes idle."""
    url, _, proc = served
    with playwright_api() as p:
        browser = _launch(p)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            page = context.new_page()
            page.goto(url, wait_until="domcontentloaded", timeout=60_000)
            page.get_by_role("link", name="Train").click()
            button = page.get_by_role("button", name="Train", exact=True)
            button.wait_for(timeout=90_000)
            page.wait_for_function("() => [...document.querySelectorAll('button')].some("
                                   "b => b.innerText.trim().endsWith('Train') && !b.disabled)", timeout=180_000)
            button.click()
            page.get_by_text("epoch 1, loss").first.wait_for(timeout=RUN_S * 1000)
            closed = time.perf_counter()
            context.close()
        finally:
            browser.close()
    cards: list[Path] = []
    while not cards and time.perf_counter() - closed < 120:
        time.sleep(1)
        cards = list((tmp_path / "data").rglob("trained/**/*.json"))
    stopped = time.perf_counter() - closed
    assert cards, "the training went on after its tab closed (no checkpoint within 120 s)"
    card = json.loads(cards[0].read_text())
    assert card["complete"] is False and card["training"]["steps"] < card["training"]["planned_steps"]
    server = psutil.Process(proc.pid)
    server.cpu_percent(None)
    time.sleep(3)
    cpu = server.cpu_percent(None)
    print(f"tab closed: the training stopped and saved {stopped:.1f} s later at step {card['training']['steps']} of "
          f"{card['training']['planned_steps']}; server CPU afterwards {cpu:.0f}%")
    assert cpu < 25

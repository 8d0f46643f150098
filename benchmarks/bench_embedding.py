"""Embedding view at scale: time to first draw of N points (reduction + figure + HTML + browser render).

    python benchmarks/bench_embedding.py --n 100000                # PCA, all points drawn and the default sample
    python benchmarks/bench_embedding.py --n 20000 --methods-only  # t-SNE libraries compared on one cut

zoo:simclr on N procedural shapes test images (9 cuts), features extracted once into --cache-dir (a rerun
reads them back). For each setting: embed_cuts (PCA of every cut, neighbourhood score, alignment),
embedding_figure, the self-contained HTML (save_figure), and the time headless Chromium (Playwright, Debian's
/usr/bin/chromium, 1280x720) takes from navigation to Plotly's first draw and then to move the slider to the
last cut. `--methods` also times openTSNE, umap-learn (when importable) and scikit-learn's TSNE on one cut.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import Timer, zoo_format_model  # noqa: E402

from gr_explorer.cache import FeatureCache  # noqa: E402
from gr_explorer.data import load_dataset  # noqa: E402
from gr_explorer.embedding import embed_cuts, knn_agreement, tsne_2d  # noqa: E402
from gr_explorer.embedding_plots import embedding_figure, hover_script  # noqa: E402
from gr_explorer.export import save_figure  # noqa: E402
from gr_explorer.features import extract_features  # noqa: E402

CHROMIUM = os.environ.get("GR_EXPLORER_CHROMIUM") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DRAWN = "window.__drawn = performance.now();"  # post_script: runs once Plotly.newPlot and addFrames resolved


def render(html: Path, last_cut: str, shot: Path | None) -> dict:
    """Seconds from navigation to the first draw, and for one slider move to `last_cut`, in headless Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        t0 = time.perf_counter()
        page.goto(html.as_uri(), timeout=600_000)
        page.wait_for_function("window.__drawn !== undefined", timeout=600_000, polling=50)
        wall = time.perf_counter() - t0
        first = page.evaluate("window.__drawn") / 1000.0  # ms since navigation start
        step = page.evaluate("""async (cut) => {
            const gd = document.querySelector('.js-plotly-plot');
            const t = performance.now();
            await Plotly.animate(gd, [cut], {mode: 'immediate', frame: {duration: 0, redraw: true}, transition: {duration: 0}});
            return (performance.now() - t) / 1000; }""", last_cut)
        webgl = page.evaluate("!!document.createElement('canvas').getContext('webgl')")
        if shot is not None:
            page.screenshot(path=str(shot))
        browser.close()
    return {"first_draw_s": first, "wall_s": wall, "slider_step_s": step, "webgl": webgl}


def run_view(feats, ds, max_points, label: str, out: Path, do_render: bool) -> None:
    with Timer() as t_embed:
        emb = embed_cuts(feats, ds, task="shape", method="pca", max_points=max_points)
    with Timer() as t_fig:
        fig = embedding_figure(emb, model="zoo:simclr")
    with Timer() as t_html:
        (html,) = save_figure(fig, out / f"embedding_{label}", formats=("html",), post_script=hover_script() + DRAWN)
    size_json = len(fig.to_json())
    s = emb.seconds
    print(f"[{label}] {emb.n_drawn:,} of {emb.n_total:,} points, {len(emb.cuts)} cuts: embed_cuts {t_embed.seconds:.2f} s "
          f"(PCA {s['reduce']:.2f}, scores {s['score']:.2f}, align {s['align']:.2f}), figure {t_fig.seconds:.2f} s, "
          f"HTML write {t_html.seconds:.2f} s; figure JSON {size_json / 2**20:.1f} MiB, HTML {html.stat().st_size / 2**20:.1f} MiB")
    if do_render:
        r = render(html, emb.cuts[-1].name, out / f"embedding_{label}_1280x720.png")
        total = t_embed.seconds + t_fig.seconds + t_html.seconds + r["first_draw_s"]
        print(f"[{label}] Chromium 1280x720 (webgl {r['webgl']}): first draw {r['first_draw_s']:.2f} s after navigation "
              f"(wall {r['wall_s']:.2f} s), slider step to {emb.cuts[-1].name} {r['slider_step_s']:.2f} s; "
              f"time to first draw from features {total:.2f} s")


def compare_methods(x: np.ndarray, y: np.ndarray, seed: int = 0) -> None:
    """t-SNE / UMAP libraries on one cut (cosine affinities, as tsne_2d uses): seconds, and the 2-D map's 10-NN
    label agreement (Euclidean in 2-D)."""

    def knn_2d(z):
        from sklearn.neighbors import NearestNeighbors

        idx = NearestNeighbors(n_neighbors=11).fit(z).kneighbors(z, return_distance=False)[:, 1:]
        return float(knn_agreement(idx, np.arange(len(z)), y).mean())

    threads = torch.get_num_threads()
    runs = []
    try:
        import openTSNE  # noqa: F401 (tsne_2d's library)

        runs.append((f"openTSNE via tsne_2d ({threads} threads)", lambda: tsne_2d(torch.tensor(x), seed, threads)))
    except ImportError:
        print("openTSNE not installed (pip install 'gr-explorer[tsne]')")
    try:
        import umap

        runs.append(("umap-learn (seeded: 1 thread)", lambda: umap.UMAP(metric="cosine", random_state=seed).fit_transform(x)))
    except ImportError:
        print("umap-learn not installed: skipped")
    from sklearn.manifold import TSNE

    runs.append((f"scikit-learn TSNE ({threads} threads)", lambda: TSNE(metric="cosine", random_state=seed, init="pca", n_jobs=threads).fit_transform(x)))
    for name, fit in runs:
        with Timer() as t:
            z = fit()
        print(f"[methods] {name}: {len(x):,} x {x.shape[1]} in {t.seconds:.1f} s; 2-D 10-NN agreement {knn_2d(z):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="test images (points)")
    ap.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "gr_explorer_bench_embedding"))
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "gr_explorer_bench_embedding_out"))
    ap.add_argument("--no-render", action="store_true", help="skip the headless Chromium measurement")
    ap.add_argument("--methods", action="store_true", help="also compare t-SNE/UMAP libraries on layer4")
    ap.add_argument("--methods-only", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    with Timer() as t:
        ds = load_dataset("shapes", n_train=100, n_test=args.n, seed=0)
        feats = extract_features(zoo_format_model(), ds, cache=FeatureCache(args.cache_dir))
    print(f"data + features: {t.seconds:.1f} s ({len(feats.cached_cuts)} of {len(feats.cuts)} cuts from the cache)")
    if args.methods or args.methods_only:
        compare_methods(feats.test["layer4"].numpy().astype(np.float64), ds.test_labels["shape"].numpy())
    if args.methods_only:
        return
    run_view(feats, ds, None, "all", out, not args.no_render)
    run_view(feats, ds, "auto", "default", out, not args.no_render)
    print(f"HTML and screenshots in {out}")


if __name__ == "__main__":
    main()

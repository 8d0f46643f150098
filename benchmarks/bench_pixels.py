"""The raw-pixels baseline: its cost next to a sweep without baselines, and its accuracy next to scikit-learn's
probe on ALL the pixels (issue 29). Targets: sweep with pixels <= 1.5x the sweep without; every task within
1.5 points of scikit-learn's full-pixel probe.

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. python -u benchmarks/bench_pixels.py --what cost [--repeats 2]
    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. python -u benchmarks/bench_pixels.py --what parity --dataset shapes --n-test 5000
    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. python -u benchmarks/bench_pixels.py --what parity --dataset cifar10 --n-test 10000

cost: `run_sweep` of the Explore default (zoo:simclr, shapes 2,000 / 1,000, all cuts and tasks, linear probe)
with baselines none, pixels, random-init and both, each with a fresh feature cache, interleaved per repeat so
that the machine's load hits all alike; ratios against "none" of the same repeat.

parity: the baseline exactly as a sweep measures it (the pixels pooled to at most 32 x 32, their 128 leading
principal components rotated to equal variance: models/pixels.py, then the library's linear probe) against
scikit-learn's LogisticRegression(lbfgs, tol 1e-4) on all 3,072 standardised pixels under the same protocol
(bench_probes._sklearn_protocol: the same validation split and C grid, best validation accuracy, refit on all
train images); the difference per task with a paired 95% bootstrap interval over the test images. shapes: seed
0, 2,000 train images; cifar10: the PNGs of ../shared/data/cifar10 (2,000 stratified train images, by default all
10,000 test images). `--full` also times our probe on all 3,072 pixels (what the baseline was before: minutes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

if __name__ == "__main__" and str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

DEFAULT = dict(models=["zoo:simclr"], dataset="shapes")
BASELINES = {"none": [], "pixels": ["pixels"], "random-init": ["random-init"], "both": ["random-init", "pixels"]}


def sweep_seconds(baselines: list[str]) -> float:
    from gr_explorer import SweepConfig, run_sweep
    from gr_explorer.cache import FeatureCache

    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        run_sweep(SweepConfig(**DEFAULT, baselines=baselines), cache=FeatureCache(cache))
        return time.perf_counter() - t0


def cost(repeats: int) -> None:
    times: dict[str, list[float]] = {k: [] for k in BASELINES}
    for r in range(repeats):
        order = list(BASELINES) if r % 2 == 0 else list(BASELINES)[::-1]
        for name in order:
            times[name].append(sweep_seconds(BASELINES[name]))
        print(f"  repeat {r + 1}: " + ", ".join(f"{k} {times[k][-1]:.1f} s" for k in BASELINES)
              + f" (load {os.getloadavg()[0]:.1f})", flush=True)
    for name, t in times.items():
        ratios = [a / b for a, b in zip(t, times["none"])]
        print(f"baselines {name:12s}: {', '.join(f'{x:.1f}' for x in t)} s | vs none "
              f"{', '.join(f'{x:.2f}' for x in ratios)} (median {statistics.median(ratios):.2f}x)", flush=True)


def dataset(name: str, n_train: int, n_test: int):
    from gr_explorer.data import load_dataset

    if name == "cifar10":
        from common import CIFAR
        return load_dataset(f"imagefolder:{CIFAR}", n_train=n_train, n_test=n_test, seed=0)
    return load_dataset(name, n_train=n_train, n_test=n_test, seed=0)


def parity(name: str, n_train: int, n_test: int, full: bool, max_iter: int) -> None:
    from bench_probes import _sklearn_protocol

    from gr_explorer.features import extract_features
    from gr_explorer.models import pixels_model
    from gr_explorer.models.pixels import principal_components
    from gr_explorer.probes import DEFAULT_GRID, run_probes, validation_split
    from gr_explorer.stats import Resampler

    ds = dataset(name, n_train, n_test)
    feats = extract_features(pixels_model(ds.splits["train"].shape[-1]), ds, cache=False)
    x_train, x_test = feats.train["pixels"], feats.test["pixels"]
    y_train, y_test = ds.train_labels, ds.test_labels
    print(f"{name}: {ds.n_train} train / {ds.n_test} test images, pixels {tuple(x_train.shape[1:])}, tasks "
          f"{', '.join(ds.tasks)}", flush=True)
    t0 = time.perf_counter()
    train_pc, test_pc = principal_components(x_train, x_test)
    t_pca = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = {r.task: r for r in run_probes(["linear"], {"pixels": train_pc}, y_train, {"pixels": test_pc}, y_test)}
    t_probe = time.perf_counter() - t0
    print(f"fast baseline: principal components {t_pca:.1f} s + probe {t_probe:.1f} s ({train_pc.shape[1]} dims)",
          flush=True)
    if full:
        t0 = time.perf_counter()
        old = {r.task: r for r in run_probes(["linear"], {"pixels": x_train}, y_train, {"pixels": x_test}, y_test)}
        print(f"our probe on all {x_train.shape[1]} pixels: {time.perf_counter() - t0:.1f} s: "
              + ", ".join(f"{t} {r.accuracy:.3f}" for t, r in old.items()), flush=True)
    fit, val = validation_split(y_train, 0.2, 0)
    resampler = Resampler(ds.n_test, 1000, 0)
    worst = 0.0
    for task in ds.tasks:
        t0 = time.perf_counter()
        C, _, acc, hits = _sklearn_protocol(x_train.numpy(), y_train[task].numpy(), x_test.numpy(), y_test[task].numpy(),
                                            fit.numpy(), val.numpy(), DEFAULT_GRID, max_iter=max_iter, hits=True)
        seconds = time.perf_counter() - t0
        r = ours[task]
        lo, hi = resampler.difference_interval(r.correct.numpy(), hits)
        diff = r.accuracy - acc
        worst = max(worst, abs(diff))
        print(f"  {task:8s} fast {r.accuracy:.4f} ({r.setting}) | sklearn all pixels {acc:.4f} (C={C:g}, {seconds:.0f} s)"
              f" | difference {100 * diff:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] pts", flush=True)
    print(f"largest |difference|: {100 * worst:.1f} points (target <= 1.5)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--what", default="cost", choices=("cost", "parity"))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--dataset", default="shapes", choices=("shapes", "cifar10"))
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-test", type=int, default=5000)
    ap.add_argument("--max-iter", type=int, default=3000, help="scikit-learn's iteration limit")
    ap.add_argument("--full", action="store_true", help="also time our probe on all the pixels")
    a = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"command: OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '<unset>')} python {' '.join(sys.argv)}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPU cores, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    if a.what == "cost":
        cost(a.repeats)
    else:
        parity(a.dataset, a.n_train, a.n_test, a.full, a.max_iter)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()

"""Linear probes: batched torch L-BFGS (all cuts together) vs scikit-learn one cut at a time.

Run by hand:  PYTHONPATH=. python benchmarks/bench_probes.py [--n-train 8000] [--device cpu]

Both sides follow the same protocol: the same stratified validation split
(gr_explorer.probes.validation_split), features standardised on the data being
fitted, every C of the grid fitted on the fit part and scored on the val part,
best val accuracy wins (ties -> smaller C), refit on all train, score on test.
scikit-learn runs LogisticRegression(lbfgs, C, tol=1e-4, max_iter=1000) per
(cut, task, C); ours runs run_probes(["linear"], ...) once for everything.
`compare_with_sklearn` is importable so real features (e.g. CIFAR-10) can be fed to it.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

if __name__ == "__main__" and str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def _sklearn_protocol(Xtr, ytr, Xte, yte, fit_idx, val_idx, grid, max_iter=1000, tol=1e-4, hits=False):
    """One (cut, task) the sklearn way: returns (chosen C, val acc, test acc[, per-image test hits with `hits`])."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from gr_explorer.probes import standardize

    Xtr_t = torch.as_tensor(Xtr)
    a, v = standardize(Xtr_t[fit_idx], Xtr_t[val_idx])
    a, v = a.double().numpy(), v.double().numpy()
    best = (-1.0, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for C in sorted(grid):
            clf = LogisticRegression(C=C, max_iter=max_iter, tol=tol).fit(a, ytr[fit_idx])
            acc = float((clf.predict(v) == ytr[val_idx]).mean())
            if acc > best[0]:
                best = (acc, C)
        tr, te = standardize(Xtr_t, torch.as_tensor(Xte))
        clf = LogisticRegression(C=best[1], max_iter=max_iter, tol=tol).fit(tr.double().numpy(), ytr)
        correct = clf.predict(te.double().numpy()) == yte
    return (best[1], best[0], float(correct.mean())) + ((correct,) if hits else ())


def compare_with_sklearn(
    train_feats: dict[str, torch.Tensor],
    train_labels: dict[str, torch.Tensor],
    test_feats: dict[str, torch.Tensor],
    test_labels: dict[str, torch.Tensor],
    grid=None,
    device="cpu",
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    max_iter: int = 1000,
    tol: float = 1e-4,
) -> pd.DataFrame:
    """Per (cut, task): our accuracy and C, sklearn's, and the wall times of both protocols.

    `ours_s` is the time of ONE run_probes call for all cuts and tasks (repeated in
    every row); `sklearn_s` is the time of that (cut, task) with sklearn. The frame's
    attrs hold the wall-clock totals and ratio (df.attrs["ours_s"], ["sklearn_s"], ["speedup"])
    and the same in process CPU time (["ours_cpu_s"], ["sklearn_cpu_s"], ["cpu_speedup"]), which
    is steadier than wall time on a shared machine.
    """
    from gr_explorer.probes import DEFAULT_GRID, run_probes, validation_split

    grid = list(DEFAULT_GRID if grid is None else grid)
    if isinstance(device, str) and device.startswith("cuda"):
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    rows = run_probes(
        ["linear"], train_feats, train_labels, test_feats, test_labels, device=device, seed=seed,
        val_fraction=val_fraction, linear_grid=grid, linear_max_iter=max_iter, linear_tol=tol,
    )
    if isinstance(device, str) and device.startswith("cuda"):
        torch.cuda.synchronize()
    ours_s, ours_cpu = time.perf_counter() - t0, time.process_time() - c0
    fit_idx, val_idx = validation_split(train_labels, val_fraction, seed)
    fit_idx, val_idx = fit_idx.numpy(), val_idx.numpy()
    out = []
    sk_total = sk_cpu = 0.0
    for r in rows:
        cut, task = r["cut"], r["task"]
        t1, c1 = time.perf_counter(), time.process_time()
        C, val, test = _sklearn_protocol(
            train_feats[cut].float().cpu(), train_labels[task].cpu().numpy(), test_feats[cut].float().cpu(),
            test_labels[task].cpu().numpy(), fit_idx, val_idx, grid, max_iter=max_iter, tol=tol,
        )
        dt = time.perf_counter() - t1
        sk_total += dt
        sk_cpu += time.process_time() - c1
        out.append(dict(
            cut=cut, task=task, dim=int(train_feats[cut].shape[1]), ours_acc=r["accuracy"], sklearn_acc=test,
            diff=r["accuracy"] - test, ours_C=r["hparam"], sklearn_C=f"C={C:g}", ours_val=r["val_accuracy"],
            sklearn_val=val, ours_s=ours_s, sklearn_s=dt,
        ))
    df = pd.DataFrame(out)
    df.attrs.update(
        ours_s=ours_s, sklearn_s=sk_total, speedup=sk_total / ours_s,
        ours_cpu_s=ours_cpu, sklearn_cpu_s=sk_cpu, cpu_speedup=sk_cpu / ours_cpu,
    )
    return df


def synthetic_cuts(
    n_train=8000, n_test=2000, dims=(64, 128, 256, 512, 512), n_classes=10, tasks=1, noise_decay=1.0, seed=0
):
    """Multi-cut features that look like a network's: one latent class structure (32-d) mapped
    into every cut by a random linear map, plus noise whose variance decays as j^-noise_decay
    over a random basis (real features have such power-law spectra, which is what makes
    logistic regression ill-conditioned); later cuts get more noise, odd cuts a ReLU.
    noise_decay=0 gives isotropic noise (an easy, well-conditioned problem). Task k > 0 is a
    coarser, noisier relabelling of task 0."""
    from sklearn.datasets import make_classification

    rng = np.random.default_rng(seed)
    n = n_train + n_test
    Z, y = make_classification(
        n_samples=n, n_features=32, n_informative=20, n_redundant=4, n_classes=n_classes,
        n_clusters_per_class=1, class_sep=1.5, flip_y=0.01, random_state=seed,
    )
    labels = {"task0": y}
    for t in range(1, tasks):
        labels[f"task{t}"] = (y + rng.integers(0, 2, n) * (t + 1)) % (n_classes // 2 + t)
    train_feats, test_feats = {}, {}
    for i, d in enumerate(dims):
        M = rng.normal(size=(Z.shape[1], d)) / np.sqrt(Z.shape[1])
        scale = (2.0 + 0.5 * i) * np.arange(1, d + 1) ** (-noise_decay / 2)
        basis = np.linalg.qr(rng.normal(size=(d, d)))[0]
        H = Z @ M + (rng.normal(size=(n, d)) * scale) @ basis
        if i % 2:
            H = np.maximum(H, 0)
        H = torch.tensor(H, dtype=torch.float32)
        train_feats[f"cut{i}_d{d}"], test_feats[f"cut{i}_d{d}"] = H[:n_train], H[n_train:]
    train_labels = {k: torch.tensor(v[:n_train]) for k, v in labels.items()}
    test_labels = {k: torch.tensor(v[n_train:]) for k, v in labels.items()}
    return train_feats, train_labels, test_feats, test_labels


def cifar_cuts(which: str, n_train: int, n_test: int, device: str):
    """Features of every cut of a real model on CIFAR-10 (extracted once, cache off)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import cifar10, resnet18, zoo_format_model

    from gr_explorer.features import extract_features

    ds = cifar10(n_train, n_test)
    model = zoo_format_model() if which == "zoo" else resnet18(64)
    f = extract_features(model, ds, device=device, cache=False)
    return f.train, ds.train_labels, f.test, ds.test_labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=8000)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--dims", type=str, default="64,128,256,512,512")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--tasks", type=int, default=1)
    ap.add_argument("--noise-decay", type=float, default=1.0, help="noise spectrum exponent (0: isotropic, easy)")
    ap.add_argument("--grid", type=str, default="", help="comma-separated C values (default: probes.DEFAULT_GRID)")
    ap.add_argument("--device", type=str, default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="limit torch and BLAS threads (0: library defaults)")
    ap.add_argument("--cifar", choices=["zoo", "resnet18"], help="real features: every cut of zoo:simclr (or its "
                    "architecture) or a random-init timm ResNet-18 at 64 px, on CIFAR-10 from ../shared/data")
    args = ap.parse_args()
    if args.threads:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    dims = tuple(int(d) for d in args.dims.split(","))
    grid = [float(c) for c in args.grid.split(",")] if args.grid else None
    if args.cifar:
        data = cifar_cuts(args.cifar, args.n_train, args.n_test, args.device)
        dims = tuple(f.shape[1] for f in data[0].values())
    else:
        data = synthetic_cuts(args.n_train, args.n_test, dims, args.classes, args.tasks, args.noise_decay)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}; "
          f"{args.n_train} train x dims {dims}, {args.classes} classes, {args.tasks} task(s), "
          f"noise decay {args.noise_decay}")
    df = compare_with_sklearn(*data, grid=grid, device=args.device)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(df.drop(columns=["ours_s"]).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    a = df.attrs
    print(f"\nours (all cuts and tasks together): {a['ours_s']:.2f} s")
    print(f"sklearn (one cut/task at a time, same grid and protocol): {a['sklearn_s']:.2f} s")
    print(f"speed-up (wall): {a['speedup']:.1f}x   speed-up (CPU time): {a['cpu_speedup']:.1f}x "
          f"({a['ours_cpu_s']:.2f} s vs {a['sklearn_cpu_s']:.2f} s)")
    print(f"max |accuracy diff|: {df['diff'].abs().max():.4f}   same C chosen: {(df.ours_C == df.sklearn_C).sum()}/{len(df)}")


if __name__ == "__main__":
    main()

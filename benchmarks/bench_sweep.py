"""(c) End-to-end sweep vs the naive approach, on CIFAR-10 images.

Naive = for every cut, a forward pass truncated at that cut over all images,
then scikit-learn's LogisticRegression per cut with the same C grid and the
same validation protocol (pick C on the validation split, refit on all train).

    python benchmarks/bench_sweep.py [--n-train 2000 --n-test 500 --r18-size 64]

Target: ratio >= 10x.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch
from common import Timer, cifar10, resnet18, zoo_format_model
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from gr_explorer.device import resolve_device
from gr_explorer.probes import DEFAULT_GRID, validation_split
from gr_explorer.sweep import SweepConfig, run_sweep


@torch.no_grad()
def truncated_features(model, images, cut, device, batch_size):
    model.eval().to(device)
    out = [model.forward_cuts(model.preprocessing(images[s:s + batch_size].to(device)), [cut])[cut].float().cpu()
           for s in range(0, images.shape[0], batch_size)]
    return torch.cat(out).numpy()


def sklearn_probe(xtr, ytr, xte, yte, grid, seed, max_iter):
    fit, val = (i.numpy() for i in validation_split({"y": torch.as_tensor(ytr)}, 0.2, seed))

    def score(train_idx, test_x, test_y, C):
        mu, sd = xtr[train_idx].mean(0), xtr[train_idx].std(0)
        sd[sd == 0] = 1
        clf = LogisticRegression(C=C, max_iter=max_iter).fit((xtr[train_idx] - mu) / sd, ytr[train_idx])
        return clf.score((test_x - mu) / sd, test_y)

    val_acc = [score(fit, xtr[val], ytr[val], C) for C in grid]
    best = grid[int(np.argmax(val_acc))]
    return score(np.arange(len(ytr)), xte, yte, best)


def naive(model, ds, device, batch_size, grid, seed, max_iter):
    task = ds.tasks[0]
    ytr, yte = ds.train_labels[task].numpy(), ds.test_labels[task].numpy()
    acc = {}
    for cut in model.cut_names:
        xtr = truncated_features(model, ds.train_images, cut, device, batch_size)
        xte = truncated_features(model, ds.test_images, cut, device, batch_size)
        acc[cut] = sklearn_probe(xtr, ytr, xte, yte, grid, seed, max_iter)
        print(f"  naive: {cut} done", flush=True)
    return acc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--r18-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--max-iter", type=int, default=1000, help="sklearn lbfgs iterations (enough to converge)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--models", default="zoo,resnet18", help="which of zoo, resnet18 to measure")
    a = ap.parse_args()
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    device = resolve_device(a.device)
    ds = cifar10(a.n_train, a.n_test)
    grid = list(DEFAULT_GRID)
    print(f"device {device}; CIFAR-10 {a.n_train} train / {a.n_test} test; C grid {grid}")
    makers = {"zoo": zoo_format_model, "resnet18": lambda: resnet18(a.r18_size)}
    for model in (makers[m]() for m in a.models.split(",")):
        cfg = SweepConfig(models=[model.name], dataset=ds.name, probes=["linear"], device=str(device), batch_size=a.batch_size)
        with Timer() as t_ours:
            ours = run_sweep(cfg, models=[model], dataset=ds, cache=False).table
        with Timer() as t_naive:
            ref = naive(model, ds, device, a.batch_size, grid, cfg.seed, a.max_iter)
        print(f"\n{model.name}: sweep {t_ours.seconds:.1f} s, naive {t_naive.seconds:.1f} s, "
              f"ratio {t_naive.seconds / t_ours.seconds:.1f}x")
        print(f"  {'cut':12s} {'ours':>6s} {'naive':>6s}")
        for r in ours.itertuples():
            print(f"  {r.cut:12s} {r.accuracy:6.3f} {ref[r.cut]:6.3f}")


if __name__ == "__main__":
    main()

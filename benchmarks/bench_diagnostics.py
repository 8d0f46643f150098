"""(d) Label-free diagnostics vs the sweep they describe, measured side by side in one run.

    python -u benchmarks/bench_diagnostics.py [--n-train 2000 --n-test 1000 --r18-size 64 --device auto]
    python -u benchmarks/bench_diagnostics.py --models none --wide vit,r50 --wide-n 10000   # very wide cuts

Targets: all spectral metrics + the cut x cut CKA matrix cost <= 10% of the sweep
(`run_sweep`, linear probes, cache off) that extracted the features; invariance
costs one forward pass of the augmented subset per augmentation (the forward
count is printed next to the time of one plain forward pass over the subset).
`--wide` times the spectral metrics and CKA of synthetic cuts shaped like a
ViT-B (13 x 768) and a ResNet-50 with an 8192-8192-8192 projector, and prints
the peak memory.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import Timer, resnet18, sync, zoo_format_model

from gr_explorer import SweepConfig, run_sweep
from gr_explorer.data import load_dataset
from gr_explorer.device import autocast, resolve_device
from gr_explorer.diagnostics import AUGMENTATIONS, DEFAULT_METRICS, compute_diagnostics
from gr_explorer.diagnostics.invariance import MAX_IMAGES, subset
from gr_explorer.features import Features
from gr_explorer.models import Cut

WIDE = {"vit": ("ViT-B (13 x 768)", [768] * 13),
        "r50": ("ResNet-50 + 8192-8192-8192 projector", [64, 256, 512, 1024, 2048, 2048, 8192, 8192, 8192])}


@torch.no_grad()
def plain_forward(model, images, device, batch_size):
    model.eval().to(device)
    for s in range(0, images.shape[0], batch_size):
        with autocast(device):
            model.forward_cuts(model.preprocessing(images[s:s + batch_size].to(device)))
    sync(device)


def _status_mib(field: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak(device) -> float:
    """Reset the peak-memory counter; return the memory in use now (MiB)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    try:
        with open("/proc/self/clear_refs", "w") as f:  # Linux: "5" resets the RSS high-water mark (VmHWM)
            f.write("5")
    except OSError:
        pass
    return _status_mib("VmRSS")


def peak_mib(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return _status_mib("VmHWM")


def bench_model(model, ds, device, batch_size):
    cfg = SweepConfig(models=[model.name], dataset=ds.name, probes=["linear"], device=str(device), batch_size=batch_size)
    with Timer() as t_sweep:
        res = run_sweep(cfg, models=[model], dataset=ds, cache=False)
    feats = res.features[model.name]
    with Timer() as t_diag:
        d = compute_diagnostics(model, feats, metrics=DEFAULT_METRICS, device=device)
        sync(device)
    dims = [c.dim for c in feats.cuts]
    print(f"\n{model.name}: {len(dims)} cuts, dims {dims}, N = {ds.n_train} train images")
    print(f"  sweep {t_sweep.seconds:.2f} s; spectral {d.seconds['spectral']:.2f} s + CKA {d.seconds['cka']:.2f} s "
          f"= {t_diag.seconds:.2f} s; ratio {100 * t_diag.seconds / t_sweep.seconds:.1f}% of the sweep")
    with Timer() as t_inv:
        inv = compute_diagnostics(model, feats, ds.train_images, metrics=["invariance"], device=device, batch_size=batch_size)
        sync(device)
    idx = subset(ds.n_train, MAX_IMAGES, 0)
    with Timer() as t_plain:
        plain_forward(model, ds.train_images[idx], device, batch_size)
    n_aug = len(AUGMENTATIONS)
    print(f"  invariance ({n_aug} augmentations, {len(idx)} images): {t_inv.seconds:.2f} s, {inv.forward_batches} forward "
          f"batches, {inv.images_forwarded} images forwarded (= {inv.images_forwarded / len(idx):.0f} passes over the subset); "
          f"one plain forward pass over the subset {t_plain.seconds:.2f} s (x{n_aug} = {n_aug * t_plain.seconds:.2f} s)")


def bench_wide(which, n, device):
    for name, dims in (WIDE[w] for w in which):
        g = torch.Generator().manual_seed(0)
        train = {f"c{i}": torch.randn(n, d, generator=g) * torch.rand(d, generator=g) for i, d in enumerate(dims)}
        cuts = [Cut(f"c{i}", i, "backbone", d) for i, d in enumerate(dims)]
        feats = Features(cuts, train, {}, key="synthetic")
        before = reset_peak(device)
        with Timer() as t:
            d = compute_diagnostics(None, feats, metrics=DEFAULT_METRICS, device=device, name=name)
            sync(device)
        feat_mib = sum(x.numel() * 4 for x in train.values()) / 2**20
        madds = n * sum(dims[i] * dims[j] for i in range(len(dims)) for j in range(i, len(dims)))
        print(f"\n{name}: N = {n}, sum of dims {sum(dims)}, features {feat_mib:.0f} MiB (float32)")
        print(f"  spectral {d.seconds['spectral']:.1f} s, CKA {d.seconds['cka']:.1f} s ({madds / 1e9:.0f} G multiply-adds "
              f"in float64), total {t.seconds:.1f} s; peak {'GPU' if device.type == 'cuda' else 'process RSS'} "
              f"{peak_mib(device):.0f} MiB (in use before, features included: {before:.0f} MiB)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="shapes")
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--r18-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--models", default="zoo,resnet18", help="comma-separated: zoo, resnet18 (or none)")
    ap.add_argument("--wide", default="", help="also time very wide synthetic cuts: vit, r50 or vit,r50")
    ap.add_argument("--wide-n", type=int, default=10000)
    a = ap.parse_args()
    device = resolve_device(a.device)
    print(f"device {device}, torch threads {torch.get_num_threads()}, {time.strftime('%Y-%m-%d %H:%M')}")
    makers = {"zoo": zoo_format_model, "resnet18": lambda: resnet18(a.r18_size)}
    models = [m for m in a.models.split(",") if m != "none"]
    if models:
        ds = load_dataset(a.dataset, n_train=a.n_train, n_test=a.n_test, seed=a.seed)
        print(f"dataset {ds.name}: {ds.n_train} train / {ds.n_test} test, tasks {', '.join(ds.tasks)}")
        for m in models:
            bench_model(makers[m](), ds, device, a.batch_size)
    if a.wide:
        bench_wide(a.wide.split(","), a.wide_n, device)


if __name__ == "__main__":
    main()

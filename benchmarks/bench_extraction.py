"""(a) Extracting ALL cuts vs a plain forward pass of the same model over the same batches.

    python benchmarks/bench_extraction.py [--n 2000] [--r18-size 64] [--device auto]

Target: ratio <= 1.10 (capturing every cut costs at most 10% over the forward pass itself).
"""

from __future__ import annotations

import argparse

import torch

from common import Timer, cifar10, resnet18, sync, zoo_format_model
from gr_explorer.device import autocast, resolve_device
from gr_explorer.features import extract_features


@torch.no_grad()
def plain_forward(model, images, device, batch_size):
    model.eval().to(device)
    for s in range(0, images.shape[0], batch_size):
        with autocast(device):
            model(model.preprocessing(images[s:s + batch_size].to(device)))
    sync(device)


def measure(model, ds, device, batch_size, repeats):
    images = torch.cat([ds.train_images, ds.test_images])
    plain_forward(model, images[:batch_size], device, batch_size)  # warm-up
    plain, ours = [], []
    for _ in range(repeats):  # interleaved, so drift hits both alike
        with Timer() as t:
            plain_forward(model, images, device, batch_size)
        plain.append(t.seconds)
        with Timer() as t:
            extract_features(model, ds, None, device=device, batch_size=batch_size, cache=False)
            sync(device)
        ours.append(t.seconds)
    return min(plain), min(ours)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000, help="images (train+test split 4:1)")
    ap.add_argument("--r18-size", type=int, default=64, help="input size for ResNet-18 (224 is its native size)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    device = resolve_device(a.device)
    ds = cifar10(a.n * 4 // 5, a.n // 5)
    print(f"device {device}, {a.n} CIFAR-10 images, batch {a.batch_size}, best of {a.repeats}")
    print(f"{'model':32s} {'cuts':>4s} {'forward s':>10s} {'all cuts s':>10s} {'ratio':>6s}")
    for model in (zoo_format_model(), resnet18(a.r18_size)):
        plain, ours = measure(model, ds, device, a.batch_size, a.repeats)
        print(f"{model.name:32s} {len(model.cuts):>4d} {plain:>10.2f} {ours:>10.2f} {ours / plain:>6.2f}")


if __name__ == "__main__":
    main()

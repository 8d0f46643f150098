"""(a) Extracting ALL cuts (written to disk) vs a plain forward pass of the same model over the same batches.

    python benchmarks/bench_extraction.py [--n 2000] [--models zoo,resnet18] [--size 64] [--device auto]
    python benchmarks/bench_extraction.py --data shapes --models vit_base_patch16_224,resnet50 --size 224 \
        --n 10000 --batch-size 256 --device cuda          # the GPU figures in benchmarks/README.md

Both sides read the same batches the same way (pinned, next batch copied while this one runs) and run
under the same autocast; "all cuts" also pools every cut and copies it to the on-disk store.
Target: ratio <= 1.10. Prints one line per model and, with --channels-last, the same with NHWC weights.
"""

from __future__ import annotations

import argparse

import torch
from common import Timer, cifar10, sync, zoo_format_model

from gr_explorer.data import load_dataset
from gr_explorer.data.loading import read_batches
from gr_explorer.device import autocast, resolve_device
from gr_explorer.features import extract_features


@torch.no_grad()
def plain_forward(model, ds, device, batch_size):
    """The model's own forward (backbone, pooled, projector) over the same pinned, prefetched batches."""
    model.eval().to(device)
    for split in ("train", "test"):
        batches = read_batches(ds, split, batch_size, pin=device.type == "cuda")
        nxt = next(batches, None)
        nxt = None if nxt is None else nxt[1].to(device, non_blocking=True)
        while nxt is not None:
            x = nxt
            nb = next(batches, None)
            nxt = None if nb is None else nb[1].to(device, non_blocking=True)
            with autocast(device):
                model(model.preprocessing(x))
    sync(device)


def measure(model, ds, device, batch_size, repeats):
    plain_forward(model, ds, device, batch_size)  # warm-up (cudnn autotune, allocator, page cache)
    extract_features(model, ds, None, device=device, batch_size=batch_size, cache=False)
    plain, ours = [], []
    for _ in range(repeats):  # interleaved, so drift hits both alike
        with Timer() as t:
            plain_forward(model, ds, device, batch_size)
        plain.append(t.seconds)
        with Timer() as t:
            extract_features(model, ds, None, device=device, batch_size=batch_size, cache=False)
            sync(device)
        ours.append(t.seconds)
    return min(plain), min(ours)


def build(name: str, size: int):
    from dataclasses import replace

    from gr_explorer.models import load_model

    if name == "zoo":
        return zoo_format_model()
    model = load_model(f"timm:{name}", weights="random")
    model.preprocessing = replace(model.preprocessing, input_size=size)
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000, help="images (train+test split 4:1)")
    ap.add_argument("--data", choices=["cifar", "shapes"], default="cifar")
    ap.add_argument("--models", default="zoo,resnet18", help="zoo and/or timm architecture names (random weights)")
    ap.add_argument("--size", type=int, default=64, help="input size of the timm models")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--channels-last", action="store_true", help="also measure with NHWC (channels_last) weights")
    a = ap.parse_args()
    device = resolve_device(a.device)
    if a.data == "cifar":
        ds = cifar10(a.n * 4 // 5, a.n // 5)
    else:
        ds = load_dataset("shapes", tasks=["shape"], n_train=a.n * 4 // 5, n_test=a.n // 5, image_size=a.size)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device {device} ({name}), {a.n} {a.data} images at {ds.splits['train'].shape[-1]} px, batch {a.batch_size}, "
          f"best of {a.repeats}")
    print(f"{'model':34s} {'cuts':>4s} {'forward s':>10s} {'all cuts s':>10s} {'ratio':>6s} {'img/s':>8s}")
    for m in a.models.split(","):
        model = build(m, a.size)
        variants = [("", model)]
        if a.channels_last:
            variants.append((" (channels_last)", model))
        for tag, mdl in variants:
            if tag:
                mdl = mdl.to(memory_format=torch.channels_last)
            plain, ours = measure(mdl, ds, device, a.batch_size, a.repeats)
            print(f"{model.name + tag:34s} {len(model.cuts):>4d} {plain:>10.2f} {ours:>10.2f} {ours / plain:>6.2f} "
                  f"{a.n / ours:>8.0f}", flush=True)


if __name__ == "__main__":
    main()

"""(i) Sub-block cuts: extraction of every attn_out / mlp_hidden / block cut vs the plain forward, side by side.

    OMP_NUM_THREADS=1 python benchmarks/bench_subblock.py [--n 160] [--size 224] [--batch-size 32] [--repeats 3]

ViT-Tiny (random weights) at 224 px on shapes images. Timed in one run, interleaved, best of `--repeats`:
the model's plain forward over the same batches (bench_extraction.plain_forward), extraction of the default
block cuts (13), of all 37 sub-block cuts (the target: <= 1.25x the plain forward on CPU), and of the same
37 cuts read out two ways with the final norm off and on (4 curves, 148 columns, one forward pass).
Extraction writes every column to a scratch feature store, as a sweep does. Wall and CPU time are both
reported; on a shared machine the CPU time of this (single-threaded) process and the paired per-batch
ratios (the two forwards back to back on the same batch, alternating which goes first) are the figures
that other jobs disturb least.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from bench_extraction import plain_forward
from common import sync

from gr_explorer.data import load_dataset
from gr_explorer.data.loading import read_batches
from gr_explorer.device import resolve_device
from gr_explorer.features import extract_features
from gr_explorer.models import load_model

SETUPS = {  # name: extract_features keyword arguments
    "block cuts (13)": dict(detail="block"),
    "all sub-block cuts (37)": dict(detail="sub-block"),
    "sub-block x cls,mean x norm both (148 columns)": dict(detail="sub-block", readouts=["cls", "mean"], norm="both"),
}


class Clock:
    """Wall and CPU seconds of a block (the CPU time of this process: less sensitive to other jobs on the cores)."""

    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.w, time.process_time() - self.c


@torch.no_grad()
def paired_batches(model, ds, columns, batch_size: int, pairs: int) -> np.ndarray:
    """CPU-time ratio (columns captured and copied to host arrays / plain forward) per batch, the two run back to
    back on the same batch in alternating order, so both see the same load."""
    x = model.preprocessing(next(read_batches(ds, "train", batch_size))[1])
    ratios = []
    for i in range(pairs):
        order = ("plain", "ours") if i % 2 == 0 else ("ours", "plain")
        t = {}
        for side in order:
            with Clock() as c:
                if side == "plain":
                    model(x)
                else:
                    for v in model.forward_readouts(x, columns).values():
                        v.float().numpy().copy()
            t[side] = c.cpu
        ratios.append(t["ours"] / t["plain"])
    return np.array(ratios)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=160, help="images (train+test split 4:1)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=20, help="paired single-batch measurements")
    ap.add_argument("--model", default="vit_tiny_patch16_224")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    device = resolve_device(a.device)
    ds = load_dataset("shapes", tasks=["shape"], n_train=a.n * 4 // 5, n_test=a.n // 5, image_size=a.size)
    model = load_model(f"timm:{a.model}", weights="random").eval()
    model.cut_list("sub-block")  # the one-off probe of the sub-block dims, outside the timings
    print(f"device {device} ({torch.get_num_threads()} threads), {a.n} shapes images at {a.size} px, batch "
          f"{a.batch_size}; timm:{a.model} random weights")
    plain_forward(model, ds, device, a.batch_size)  # warm-up
    times: dict[str, list] = {"plain forward": [], **{k: [] for k in SETUPS}}
    for _ in range(a.repeats):
        with Clock() as c:
            plain_forward(model, ds, device, a.batch_size)
        times["plain forward"].append(c)
        for name, kwargs in SETUPS.items():
            with Clock() as c:
                extract_features(model, ds, None, device=device, batch_size=a.batch_size, cache=False, **kwargs)
                sync(device)
            times[name].append(c)
    wall0 = min(c.wall for c in times["plain forward"])
    cpu0 = min(c.cpu for c in times["plain forward"])
    print(f"\nwhole extraction (written to a scratch store) vs the plain forward, best of {a.repeats} interleaved repeats:")
    print(f"{'':48s} {'wall s':>7s} {'ratio':>6s} {'CPU s':>7s} {'ratio':>6s}   wall of every run")
    for name, cs in times.items():
        w, c = min(x.wall for x in cs), min(x.cpu for x in cs)
        print(f"{name:48s} {w:>7.2f} {w / wall0:>6.2f} {c:>7.2f} {c / cpu0:>6.2f}   "
              + " ".join(f"{x.wall:.2f}" for x in cs), flush=True)
    print(f"\none batch of {a.batch_size}, forward with the columns captured and copied vs the plain forward, "
          f"{a.pairs} back-to-back pairs (CPU time): median ratio [quartiles]")
    for name, kwargs in SETUPS.items():
        cuts = model.resolve_cuts(None, kwargs.get("detail", "block"))
        cols = model.columns(cuts, kwargs.get("readouts"), kwargs.get("norm", "off"))
        r = paired_batches(model, ds, cols, a.batch_size, a.pairs)
        q1, med, q3 = np.percentile(r, [25, 50, 75])
        print(f"{name:48s} {med:.3f} [{q1:.3f}, {q3:.3f}]", flush=True)


if __name__ == "__main__":
    main()

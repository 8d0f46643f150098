"""Training throughput (images/s, each image = two augmented views for SSL) of the default small model.

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. python benchmarks/bench_training.py [--steps 8] [--device cpu|cuda|auto]
        [--objective simclr] [--batch-size 256] [--width 16]

Times steady-state optimiser steps (augmentations + forward + backward + step)
from the loop's own progress callback, after a warm-up of 2 steps. Run by hand;
never a timed test. Without --device it measures the CPU and, when present, CUDA.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def bench(device: str, steps: int, objective: str, batch_size: int, width: int, n_train: int) -> dict:
    import torch

    from gr_explorer.data import load_dataset
    from gr_explorer.training import TrainConfig, train

    ds = load_dataset("shapes", n_train=n_train, n_test=10, seed=0)
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(objective=objective, label_task="shape" if objective in ("supervised", "label_aligned") else None,
                          batch_size=batch_size, width=width, n_train=n_train, epochs=100, max_steps=steps + 2,
                          device=device, out=str(Path(tmp) / "bench.safetensors"))
        res = train(cfg, progress=lambda s, e, l: stamps.append(time.perf_counter()), dataset=ds)
    dt = (stamps[-1] - stamps[1]) / (len(stamps) - 2)
    return {"device": str(res.card["training"]["device"]), "threads": torch.get_num_threads(), "objective": objective,
            "batch_size": batch_size, "width": width, "s_per_step": dt, "images_per_s": batch_size / dt,
            "views_per_s": batch_size * (1 if objective == "supervised" else 2) / dt}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--device", default=None)
    ap.add_argument("--objective", default="simclr")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--n-train", type=int, default=4096)
    a = ap.parse_args()
    import torch

    devices = [a.device] if a.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"command: OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '<unset>')} python {' '.join(sys.argv)}")
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores visible")
    for dev in devices:
        r = bench(dev, a.steps, a.objective, a.batch_size, a.width, a.n_train)
        print(f"{r['device']:6s} threads={r['threads']} {r['objective']} width={r['width']} batch={r['batch_size']}: "
              f"{r['s_per_step']:.3f} s/step, {r['images_per_s']:.0f} images/s ({r['views_per_s']:.0f} views/s)")


if __name__ == "__main__":
    main()

"""What probing while training costs: the shipped SimCLR recipe (zoo:simclr's card) trained for a few epochs with and
without live probes (`--probe-every N`, training/live.py), side by side in one run.

    python benchmarks/bench_live.py                    # 4 epochs, probes every epoch, the default probe set
    python benchmarks/bench_live.py --epochs 20 --every 2

Prints the training time with and without probes, the time the probe steps took, and their share; the target is
that probes cost <= 25% of the training time at the default setting on the CPU.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from gr_explorer.models import read_card, zoo_dir
from gr_explorer.training import TrainConfig, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    recipe = {k: v for k, v in read_card(zoo_dir() / "simclr.safetensors")["config"].items()
              if k not in TrainConfig.not_recipe()}
    out = Path(tempfile.mkdtemp(prefix="bench_live_"))
    times = {}
    for name, extra in (("plain", {}), ("probed", {"probe_every": a.every})):
        cfg = TrainConfig.from_dict({**recipe, "epochs": a.epochs, "device": "cpu", "out": str(out / f"{name}.safetensors"),
                                     **extra})
        t0 = time.perf_counter()
        res = train(cfg)
        times[name] = time.perf_counter() - t0
        if name == "probed":
            probe = res.card["training"]["live_probe_seconds"]
            steps = len({r["epoch"] for r in res.card["live_probes"]["summary"]})
    train_s = times["probed"] - probe
    print(json.dumps({"epochs": a.epochs, "every": a.every, "probe_steps": steps, "plain_s": round(times["plain"], 1),
                      "probed_s": round(times["probed"], 1), "probe_s": round(probe, 1),
                      "probe_share_of_training": round(probe / train_s, 3),
                      "per_probe_step_s": round(probe / steps, 2)}, indent=1))


if __name__ == "__main__":
    main()

"""Held-out linear probes of trained checkpoints next to their own random-init twin (same architecture, seed, preprocessing).

    PYTHONPATH=. python benchmarks/label_aligned/probe_vs_random.py shape runs/la_p1.safetensors [more.safetensors ...]

Probe data and sizes come from the first card's --eval settings (shapes: seed data_seed + 1, images the
training never saw). The best cut is chosen on validation accuracy; its test accuracy has a 95% Wilson
interval; the gain over random init a 95% normal interval (unpaired, so conservative: same test images).
"""

from __future__ import annotations

import json
import math
import sys

import torch

from gr_explorer import SweepConfig, run_sweep
from gr_explorer.models import Preprocessing, load_model
from gr_explorer.training import TrainConfig
from gr_explorer.training.loop import build_train_model


def wilson(a: float, n: int, z: float = 1.96) -> tuple[float, float]:
    c = (a + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(a * (1 - a) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return c - h, c + h


def main(task: str, paths: list[str]) -> None:
    torch.set_num_threads(1)
    card = json.load(open(paths[0].rsplit(".", 1)[0] + ".json"))
    cfg = TrainConfig.from_dict(card["config"])
    rand = build_train_model(cfg, Preprocessing.from_dict(card["preprocessing"])).eval()
    rand.name = "random_init"
    models = [rand]
    for p in paths:
        m = load_model("file:" + p)
        m.name = p.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        models.append(m)
    seed = cfg.eval_seed if cfg.eval_seed is not None else cfg.data_seed + 1
    sc = SweepConfig(models=[m.name for m in models], dataset=cfg.dataset, tasks=[task], probes=["linear"],
                     n_train=cfg.eval_n_train, n_test=cfg.eval_n_test, seed=seed, device="cpu", image_size=cfg.image_size)
    table = run_sweep(sc, models=models, cache=False).table
    n = int(table["n_test"].iloc[0])
    best = {}
    for name, g in table.groupby("model", sort=False):
        g = g.sort_values("depth")
        row = g.loc[g["val_accuracy"].idxmax()]
        best[name] = float(row["accuracy"])
        lo, hi = wilson(best[name], n)
        curve = " ".join(f"{r.cut}:{r.accuracy:.3f}" for r in g.itertuples())
        print(f"{name:24s} best(val) {row['cut']:6s} test {best[name]:.3f} [{lo:.3f}, {hi:.3f}]  last {g.iloc[-1]['accuracy']:.3f} | {curve}")
    r = best["random_init"]
    for name, a in best.items():
        if name != "random_init":
            se = math.sqrt(a * (1 - a) / n + r * (1 - r) / n)
            print(f"{name}: gain over random init {a - r:+.3f} [{a - r - 1.96 * se:+.3f}, {a - r + 1.96 * se:+.3f}] "
                  f"(n_test={n}, {cfg.dataset} seed {seed})")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])

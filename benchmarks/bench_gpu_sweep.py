"""(e) The 50,000-image ViT-B/16 sweep on one GPU, end to end.

    python benchmarks/bench_gpu_sweep.py [--n-train 40000] [--n-test 10000] [--model vit_base_patch16_224]

Random weights (nothing to download), procedural shapes resized to 224 px, all 13 cuts, linear + k-NN probes on
two tasks. Prints the sweep's own time (run_sweep: loading, extraction to disk, probes) and the process's time.
Target: <= 30 s for the sweep on one H100-class GPU.
"""

from __future__ import annotations

import argparse
import time

T0 = time.perf_counter()

import torch  # noqa: E402

from gr_explorer import SweepConfig, run_sweep  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="vit_base_patch16_224")
    ap.add_argument("--n-train", type=int, default=40000)
    ap.add_argument("--n-test", type=int, default=10000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--cache-dir", default=None)
    a = ap.parse_args()
    cfg = SweepConfig(models=[f"timm:{a.model}"], weights="random", dataset="shapes", tasks=["shape", "color"],
                      n_train=a.n_train, n_test=a.n_test, image_size=224, probes=["linear", "knn"],
                      batch_size=a.batch_size, device=a.device)
    from gr_explorer.cache import FeatureCache

    res = run_sweep(cfg, cache=FeatureCache(a.cache_dir) if a.cache_dir else False)
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    t = res.table
    print(f"{a.model} random weights, {a.n_train + a.n_test} images at 224 px, {t['cut'].nunique()} cuts, "
          f"{len(t)} results on {dev}: sweep {res.seconds:.1f} s, process {time.perf_counter() - T0:.1f} s")
    best = res.summary[res.summary["baseline"] == ""][["task", "probe", "best_cut", "best_accuracy", "gain"]]
    print(best.to_string(index=False))


if __name__ == "__main__":
    main()

"""(f) Streaming an image folder: images/s decoded and extracted with 0, 2, 4 workers; peak memory vs folder size.

    python benchmarks/bench_streaming.py [--n 20000] [--small 5000] [--size 256] [--folder /tmp/gr_stream]

Writes a JPEG folder of `--n` procedural images (256 px) once, then, each in a fresh process so that peak RSS
is its own: extracts all cuts of the shipped small model (images resized to 32 px in the workers) with each
worker count, and compares the peak resident memory of a `--small` and an `--n` image run. Target: peak RSS
grows by no more than the features' own size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def make_folder(root: Path, n: int, size: int) -> None:
    """n JPEGs in 5 shape classes (train 80% / test 20%), reused when already there."""
    from PIL import Image

    from gr_explorer.data import shapes

    if (root / "done.json").exists() and json.loads((root / "done.json").read_text()) == {"n": n, "size": size}:
        return
    x, y, _ = shapes.generate(n, seed=0, stream=0)
    names = shapes.CLASSES["shape"]
    for i in range(n):
        split = "test" if i % 5 == 0 else "train"
        d = root / split / names[int(y["shape"][i])]
        d.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(x[i].permute(1, 2, 0).numpy()).resize((size, size), Image.BILINEAR)
        img.save(d / f"{i:06d}.jpg", quality=90)
    (root / "done.json").write_text(json.dumps({"n": n, "size": size}))


def child(folder: str, n: int, workers: int) -> None:
    """One measured run in this process: load (listing only), extract all cuts, report rate and peak RSS."""
    import resource

    from gr_explorer.data import load_dataset
    from gr_explorer.features import extract_features
    from gr_explorer.models import build_model

    card = {"architecture": {"backbone": {"type": "resnet_small", "width": 16, "depths": [1, 1, 1, 1]},
                             "projector": {"spec": "512-512-128", "norm": "bn", "act": "relu"}},
            "preprocessing": {"input_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}}
    model = build_model(card, name="small")
    ds = load_dataset(f"imagefolder:{folder}", n_train=n * 4 // 5, n_test=n // 5, image_size=32)
    t = time.perf_counter()
    feats = extract_features(model, ds, cache=False, workers=workers, batch_size=256)
    seconds = time.perf_counter() - t
    feat_bytes = sum(x.numel() * x.element_size() for split in (feats.train, feats.test) for x in split.values())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"n": ds.n_train + ds.n_test, "workers": workers, "seconds": seconds, "peak_rss": peak,
                      "feature_bytes": feat_bytes}))


def run_child(folder: Path, n: int, workers: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(folder), str(n), str(workers)], capture_output=True,
                         text=True, check=True, cwd=HERE)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--small", type=int, default=5000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--folder", default="/tmp/gr_stream")
    ap.add_argument("--workers", default="0,2,4")
    ap.add_argument("--child", nargs=3)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], int(a.child[1]), int(a.child[2]))
        return
    folder = Path(a.folder)
    t = time.perf_counter()
    make_folder(folder, a.n, a.size)
    print(f"folder of {a.n} JPEGs ({a.size} px) ready in {time.perf_counter() - t:.0f} s: {folder}")
    print(f"{'images':>7s} {'workers':>7s} {'seconds':>8s} {'img/s':>7s} {'peak RSS MB':>11s} {'features MB':>11s}")
    rows = []
    for w in [int(v) for v in a.workers.split(",")]:
        rows.append(run_child(folder, a.n, w))
    rows.append(run_child(folder, a.small, int(a.workers.split(",")[-1])))
    for r in rows:
        print(f"{r['n']:>7d} {r['workers']:>7d} {r['seconds']:>8.1f} {r['n'] / r['seconds']:>7.0f} "
              f"{r['peak_rss'] / 2**20:>11.0f} {r['feature_bytes'] / 2**20:>11.0f}")
    big, small = rows[-2], rows[-1]
    grow = (big["peak_rss"] - small["peak_rss"]) / 2**20
    feat = (big["feature_bytes"] - small["feature_bytes"]) / 2**20
    print(f"peak RSS grows by {grow:.0f} MB from {small['n']} to {big['n']} images; their features grow by {feat:.0f} MB "
          f"(target: growth <= features).")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    main()

"""Issue 27's CPU side: compile vs eager, JPEG decoding by PIL vs torchvision, streamed vs in-memory probes.

    python benchmarks/bench_cpu_speed.py [--what forward,decode,probes] [--n 2048] [--jpegs 1000]
        [--probe-n 40000] [--threads 2]

forward: the extraction forward (all cuts, CutForward) of zoo:simclr (32 px) and timm:resnet18 (64 px, random
weights), eager vs inductor-compiled, over the same uint8 batches (interleaved, best of 3), and the compile time
from a cold inductor cache (a fresh TORCHINDUCTOR_CACHE_DIR) and from a warm one.
decode: a folder of 256-px JPEGs (procedural shapes, written once), decoded and resized to 224 px one file at a
time by PIL and by torchvision, and by the GPU path's code on the CPU (threads read, one batched decode_jpeg,
torch resize); images/s, best of 3 interleaved.
probes: float16 features on disk (3 cuts x 256 dims, 10 classes), linear and k-NN probes in memory vs streamed
in row chunks read from the memory map; each run in a fresh process for its own peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def bench_forward(n: int, repeats: int) -> None:
    from dataclasses import replace

    import torch
    import torch._dynamo
    from common import best_of, zoo_format_model

    from gr_explorer.forward import CutForward
    from gr_explorer.models import load_model

    cpu = torch.device("cpu")
    models = [zoo_format_model()]
    r18 = load_model("timm:resnet18", weights="random")
    r18.preprocessing = replace(r18.preprocessing, input_size=64)
    models.append(r18)
    print(f"{'model':28s} {'cuts':>4s} {'compile cold s':>14s} {'warm s':>7s} {'eager img/s':>11s} {'compiled img/s':>14s} "
          f"{'speed-up':>8s} {'max |diff|':>10s}")
    for model in models:
        s = model.preprocessing.input_size
        g = torch.Generator().manual_seed(0)
        batches = [torch.randint(0, 256, (256, 3, s, s), dtype=torch.uint8, generator=g) for _ in range(max(1, n // 256))]
        eager = CutForward(model, model.cut_names, cpu)
        torch._dynamo.reset()
        compiled = CutForward(model, model.cut_names, cpu, compile=True)
        t = time.perf_counter()
        out = compiled(batches[0])
        cold = time.perf_counter() - t
        ref = eager(batches[0])
        diff = max(float((out[k] - ref[k]).abs().max()) for k in ref)
        torch._dynamo.reset()  # a new compile of the same graph: dynamo traces again, inductor reads its cache
        again = CutForward(model, model.cut_names, cpu, compile=True)
        t = time.perf_counter()
        again(batches[0])
        warm = time.perf_counter() - t
        best = best_of({"eager": lambda: [eager(x) for x in batches], "compiled": lambda: [again(x) for x in batches]},
                       repeats)
        imgs = 256 * len(batches)
        print(f"{model.name:28s} {len(model.cuts):>4d} {cold:>14.1f} {warm:>7.1f} {imgs / best['eager']:>11.0f} "
              f"{imgs / best['compiled']:>14.0f} {best['eager'] / best['compiled']:>8.2f} {diff:>10.1e}", flush=True)


def make_jpegs(root: Path, n: int, size: int = 256) -> list[Path]:
    """n procedural 256-px JPEGs (quality 90, 4:2:0), written once."""
    from PIL import Image

    from gr_explorer.data import shapes

    paths = [root / f"{i:06d}.jpg" for i in range(n)]
    if all(p.exists() for p in paths):
        return paths
    root.mkdir(parents=True, exist_ok=True)
    x, _, _ = shapes.generate(n, seed=0, stream=0)
    for i, p in enumerate(paths):
        Image.fromarray(x[i].permute(1, 2, 0).numpy()).resize((size, size), Image.BILINEAR).save(p, quality=90)
    return paths


def bench_decode(n: int, repeats: int, threads: int) -> None:
    import torch
    from common import best_of

    from gr_explorer.data.decoders import CudaJpegBatches, decode_file

    root = Path(tempfile.gettempdir()) / "gr_bench_jpegs"
    paths = make_jpegs(root, n)

    class Folder:  # what CudaJpegBatches reads: a FileImages-like listing
        size, shape = 224, (3, 224, 224)

        def __init__(self):
            self.root, self.rel_paths = root, [p.name for p in paths]

        def __len__(self):
            return len(self.rel_paths)

    folder = Folder()
    gpu_path = CudaJpegBatches(folder, torch.device("cpu"), threads)
    starts = list(range(0, n, 256))
    fns = {
        "PIL, decode only": lambda: [decode_file(p, None, "pil") for p in paths],
        "torchvision, decode only": lambda: [decode_file(p, None, "torchvision-cpu") for p in paths],
        "PIL, decode + resize 224": lambda: [decode_file(p, 224, "pil") for p in paths],
        "torchvision, decode + resize 224": lambda: [decode_file(p, 224, "torchvision-cpu") for p in paths],
        f"GPU path's code on the CPU ({threads} reading threads)": lambda: list(gpu_path(starts, 256)),
    }
    best = best_of(fns, repeats)
    print(f"{n} JPEGs of 256 px (quality 90, 4:2:0), one process, torch threads {torch.get_num_threads()}")
    for k, s in best.items():
        print(f"  {k:52s} {n / s:>7.0f} images/s")


def _probe_child(args: list[str]) -> None:
    """One probe run in this process: prints seconds, RSS before and peak RSS as JSON."""
    import torch
    from common import proc_status

    from gr_explorer.cache import FeatureCache
    from gr_explorer.probes import fit_knn_probes, fit_linear_probes
    from gr_explorer.probes.split import validation_split

    store, probe, budget = FeatureCache(args[0]), args[1], int(args[2])
    meta = json.loads((Path(args[0]) / "labels.json").read_text())
    train, test = {}, {}
    for cut in meta["cuts"]:
        got = store.get(cut, verify=False)
        train[cut], test[cut] = got["train"], got["test"]
    ytr, yte = {"label": torch.tensor(meta["train"])}, {"label": torch.tensor(meta["test"])}
    fit, val = validation_split(ytr, 0.2, 0)
    before = proc_status("VmRSS")
    t = time.perf_counter()
    if probe == "linear":
        res = fit_linear_probes(train, ytr, test, yte, fit_idx=fit, val_idx=val, memory_budget=budget)
    else:
        res = fit_knn_probes(train, ytr, test, yte, fit_idx=fit, val_idx=val, memory_budget=budget)
    seconds = time.perf_counter() - t
    print(json.dumps({"seconds": seconds, "rss_before": before, "peak_rss": proc_status("VmHWM"),
                      "accuracy": {c: r.accuracy for (c, _), r in res.items()}}))


def bench_probes(n: int, dim: int = 256, cuts: int = 3, classes: int = 10) -> None:
    import numpy as np

    from gr_explorer.cache import FeatureCache

    root = Path(tempfile.mkdtemp(prefix="gr_bench_probes_"))
    rng = np.random.default_rng(0)
    n_test = n // 4
    y = rng.integers(0, classes, n + n_test)
    store = FeatureCache(root)
    for c in range(cuts):
        means = rng.standard_normal((classes, dim)) * (0.05 + 0.05 * c)
        x = (means[y] + rng.standard_normal((len(y), dim))).astype(np.float16)
        w = store.writer(f"cut{c}", {}, "float16")
        for split, rows in (("train", x[:n]), ("test", x[n:])):
            w.open(split, len(rows), dim)
            w.write(split, 0, rows)
        w.commit()
    (root / "labels.json").write_text(json.dumps({"cuts": [f"cut{c}" for c in range(cuts)],
                                                  "train": y[:n].tolist(), "test": y[n:].tolist()}))
    feat_mb = (n + n_test) * dim * cuts * 2 / 2**20
    print(f"{n} train + {n_test} test images, {cuts} cuts x {dim} dims float16 on disk ({feat_mb:.0f} MB), "
          f"{classes} classes; each line a fresh process")
    print(f"{'probe':7s} {'budget':>18s} {'seconds':>8s} {'RSS before MB':>13s} {'peak RSS MB':>11s}  accuracy per cut")
    for probe in ("linear", "knn"):
        for budget in (2 * 2**30, 64 * 2**20):
            out = subprocess.run([sys.executable, __file__, "--child", str(root), probe, str(budget)],
                                 capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(HERE.parent)})
            r = json.loads(out.stdout.strip().splitlines()[-1])
            acc = " ".join(f"{a:.3f}" for a in r["accuracy"].values())
            label = "2 GiB (in memory)" if budget > 2**30 else "64 MiB (streamed)"
            print(f"{probe:7s} {label:>18s} {r['seconds']:>8.1f} {r['rss_before'] / 2**20:>13.0f} "
                  f"{r['peak_rss'] / 2**20:>11.0f}  {acc}", flush=True)
    import shutil

    shutil.rmtree(root, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--what", default="forward,decode,probes")
    ap.add_argument("--n", type=int, default=2048, help="images per forward measurement")
    ap.add_argument("--jpegs", type=int, default=1000)
    ap.add_argument("--probe-n", type=int, default=40000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="reading threads of the GPU path's code")
    ap.add_argument("--child", nargs=3)
    a = ap.parse_args()
    if a.child:
        _probe_child(a.child)
        return
    import torch

    print(f"CPU: {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.1f}")
    what = a.what.split(",")
    if "forward" in what:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="gr_inductor_")  # a cold cache first
        bench_forward(a.n, a.repeats)
    if "decode" in what:
        bench_decode(a.jpegs, a.repeats, a.threads)
    if "probes" in what:
        bench_probes(a.probe_n)


if __name__ == "__main__":
    main()

"""Issue 27 on one GPU: the forward near the limit, JPEGs decoded on the GPU, probes over a million images.

    python benchmarks/bench_gpu_scale.py forward [--models vit_base_patch16_224,resnet50] [--n 10240]
    python benchmarks/bench_gpu_scale.py jpeg [--n 20000] [--workers 15]
    python benchmarks/bench_gpu_scale.py probes [--n-train 1281167] [--n-test 50000] [--cuts 13] [--knn-cuts 1]
    python benchmarks/bench_gpu_scale.py summary --json results.jsonl

Every figure is printed as it is measured and appended to `--json` (one record a line: step, what, value, unit,
card), so a run cut short by its time limit keeps what it measured; `summary` prints the table of the issue's
targets from those records. benchmarks/gpu_check.sh runs the three steps and the summary in one call.

forward: 224-px uint8 batches already on the GPU (random pixels: speed does not depend on them), the model's plain
forward vs all cuts (forward.CutForward), eager vs torch.compile (inductor, default mode), bf16 autocast, batch 256
and the automatic batch size; ResNet-50 also with channels_last; the attention kernel ViT-B/16 runs; then the real
path, `extract_features` of 20,000 shapes at 224 px written to disk, eager vs compiled.
jpeg: a folder of procedural 256-px JPEGs (written once, in parallel), streamed, decoded, resized to 224 px and
extracted with ViT-B/16 (all 13 cuts, eager, batch 256): decoder torchvision-cuda vs pil (DataLoader workers).
probes: float16 features of 13 cuts x 768 dims (class means + noise, 10 classes, one task) written to the feature
store on local disk and probed from the memory maps: the linear probe (6 C values) on all cuts, the k-NN probe on
`--knn-cuts` cuts (its cost is per cut: the total is extrapolated and says so), one linear-probe function
evaluation at 1,000 classes for scale, the peak GPU memory and the peak host RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import torch  # noqa: E402
from common import best_of as _best_of  # noqa: E402
from common import proc_status

CARD = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
JSON: Path | None = None


def record(step: str, what: str, value, unit: str = "", **extra) -> None:
    shown = (f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}") if isinstance(value, float) else \
        f"{value:,}" if isinstance(value, int) else str(value)
    print(f"[{step}] {what}: {shown} {unit}", flush=True)
    if JSON is not None:
        with open(JSON, "a") as f:
            f.write(json.dumps({"step": step, "what": what, "value": value, "unit": unit, "card": CARD, **extra}) + "\n")


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def best_of(fns: dict, repeats: int) -> dict[str, float]:
    return _best_of(fns, repeats, torch.device("cuda") if torch.cuda.is_available() else None)


def device(a) -> torch.device:
    return torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))


# ------------------------------------------------------------------------------------------------ forward
def timm_model(name: str):
    from gr_explorer.models import load_model

    return load_model(f"timm:{name}", weights="random")


def step_forward(a) -> None:
    from gr_explorer.device import autocast
    from gr_explorer.forward import CutForward, attention_kernels, auto_batch_size

    dev, B, S = device(a), a.batch, a.size
    g = torch.Generator(device=dev).manual_seed(0)
    n_batches = max(1, a.n // B)
    batches = [torch.randint(0, 256, (B, 3, S, S), dtype=torch.uint8, device=dev, generator=g)
               for _ in range(n_batches)]
    n = B * n_batches
    for name in a.models.split(","):
        model = timm_model(name)
        short = "ViT-B/16" if name.startswith("vit_base") else "ResNet-50" if name == "resnet50" else name
        cnn = "resnet" in name
        if not cnn:
            record("forward", f"{short} attention kernels (bf16 autocast)", json.dumps(attention_kernels(model, dev)))

        def plain(fwd: CutForward):
            def run():
                with torch.no_grad(), autocast(dev):
                    for x in batches:
                        x = model.preprocessing(x)
                        model(x.contiguous(memory_format=torch.channels_last) if fwd.channels_last else x)
            return run

        for layout in ([False, True] if cnn else [False]):
            tag = " channels_last" if layout else ""
            eager = CutForward(model, model.cut_names, dev, channels_last=layout)
            t = best_of({"plain": plain(eager), "cuts": lambda: [eager(x) for x in batches]}, a.repeats)
            record("forward", f"{short}{tag} eager plain forward", n / t["plain"], "images/s", batch=B)
            record("forward", f"{short}{tag} eager all cuts", n / t["cuts"], "images/s", batch=B, cuts=len(model.cuts))
            record("forward", f"{short}{tag} eager all cuts / plain", t["cuts"] / t["plain"], "x")
            eager_rate = n / t["cuts"]  # of the last layout: the one the compiled run uses
        auto = auto_batch_size(eager, (3, S, S), B, 10**6)
        record("forward", f"{short} auto batch size", auto, "images")
        if auto >= 2 * B:
            k = auto // B
            big = [torch.cat(batches[i:i + k]) for i in range(0, n_batches - k + 1, k)]
            if big:
                t = best_of({"cuts": lambda: [eager(x) for x in big]}, a.repeats)
                record("forward", f"{short}{' channels_last' if cnn else ''} eager all cuts at the auto batch",
                       sum(len(x) for x in big) / t["cuts"], "images/s", batch=k * B)
        if a.backend == "none":
            continue
        compiled = CutForward(model, model.cut_names, dev, compile=True, channels_last=cnn, backend=a.backend)
        t0 = time.perf_counter()
        compiled(batches[0])
        sync()
        compile_s = time.perf_counter() - t0
        if not compiled.is_compiled:
            record("forward", f"{short} compile FAILED (fell back to eager)", compile_s, "s")
            continue
        record("forward", f"{short}{' channels_last' if cnn else ''} compile time (cold cache)", compile_s, "s")
        t = best_of({"cuts": lambda: [compiled(x) for x in batches]}, a.repeats)
        rate = n / t["cuts"]
        record("forward", f"{short}{' channels_last' if cnn else ''} compiled all cuts", rate, "images/s", batch=B)
        record("forward", f"{short} compiled / eager time, all cuts", eager_rate / rate, "x")
        if rate > eager_rate:
            record("forward", f"{short} compile break-even (cold compile / time saved per image)",
                   int(compile_s / (1 / eager_rate - 1 / rate)), "images")
        if not cnn and not a.skip_compiled_plain:
            plain_c = torch.compile(lambda x: model(model.preprocessing(x)), dynamic=False, backend=a.backend)
            with torch.no_grad(), autocast(dev):
                plain_c(batches[0])
            sync()

            def run_plain_c():
                with torch.no_grad(), autocast(dev):
                    for x in batches:
                        plain_c(x)

            tp = best_of({"plain": run_plain_c}, a.repeats)
            record("forward", f"{short} compiled plain forward", n / tp["plain"], "images/s", batch=B)
            record("forward", f"{short} compiled all cuts / compiled plain", t["cuts"] / tp["plain"], "x")
        compiled = None
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    if a.e2e:
        step_extract(a)


def step_extract(a) -> None:
    """The real path: extract_features of an in-memory dataset, features written to disk, eager vs compiled."""
    from gr_explorer.data import load_dataset
    from gr_explorer.features import extract_features

    dev = device(a)
    t = time.perf_counter()
    ds = load_dataset("shapes", tasks=["shape"], n_train=a.e2e * 4 // 5, n_test=a.e2e // 5, image_size=a.size)
    record("forward", f"shapes rendered and resized to {a.size} px", time.perf_counter() - t, "s", images=a.e2e)
    model = timm_model(a.models.split(",")[0])
    kw = dict(device=dev, cache=False, storage="float16", batch_size=a.batch)
    extract_features(model, ds, **kw)  # warm-up
    if a.backend != "inductor":  # a smoke test's stand-in backend, in place of the one extract_features asks for
        real = torch.compile
        torch.compile = lambda fn, **kw: real(fn, **{**kw, "backend": a.backend})
    for mode in ("off", "on"):
        sync()
        t = time.perf_counter()
        extract_features(model, ds, compile=mode, **kw)
        sync()
        s = time.perf_counter() - t
        record("forward", f"{model.name} extract_features (all cuts to disk, float16) compile={mode}", a.e2e / s, "images/s",
               seconds=s, note="compile=on includes compiling (from the inductor cache when warm)")


# ------------------------------------------------------------------------------------------------ jpeg
def _write_chunk(args) -> int:
    root, start, stop, size = args
    from PIL import Image

    from gr_explorer.data import shapes

    x, y, _ = shapes.generate(stop - start, seed=0, stream=1000 + start // 1000)
    names = shapes.CLASSES["shape"]
    for j in range(stop - start):
        i = start + j
        d = Path(root) / ("test" if i % 5 == 0 else "train") / names[int(y["shape"][j])]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[j].permute(1, 2, 0).numpy()).resize((size, size), Image.BILINEAR).save(d / f"{i:07d}.jpg",
                                                                                                   quality=90)
    return stop - start


def make_folder(root: Path, n: int, size: int = 256, procs: int = 16) -> None:
    from multiprocessing import Pool

    done = root / "done.json"
    if done.exists() and json.loads(done.read_text()) == {"n": n, "size": size}:
        return
    chunks = [(str(root), s, min(s + 1000, n), size) for s in range(0, n, 1000)]
    with Pool(procs) as pool:
        sum(pool.map(_write_chunk, chunks))
    done.write_text(json.dumps({"n": n, "size": size}))


def step_jpeg(a) -> None:
    from gr_explorer.data import load_dataset
    from gr_explorer.data.loading import read_batches
    from gr_explorer.features import extract_features

    root = Path(a.folder)
    t = time.perf_counter()
    make_folder(root, a.n, procs=os.cpu_count() or 8)
    record("jpeg", f"folder of {a.n:,} 256-px JPEGs written", time.perf_counter() - t, "s")
    ds = load_dataset(f"imagefolder:{root}", n_train=None, n_test=None, image_size=a.size)
    n = ds.n_train + ds.n_test
    dev = device(a)
    model = timm_model(a.models.split(",")[0])
    for decoder in ("torchvision-cuda" if dev.type == "cuda" else "torchvision-cpu", "pil"):
        def decode_only():
            for split in ("train", "test"):
                for _, x in read_batches(ds, split, a.batch, workers=a.workers, pin=dev.type == "cuda",
                                         decoder=decoder, device=dev):
                    x.to(dev, non_blocking=True)
        s = best_of({"d": decode_only}, 1)["d"]
        record("jpeg", f"decode + resize to {a.size}, decoder={decoder}", n / s, "images/s", workers=a.workers)
        sync()
        t = time.perf_counter()
        extract_features(model, ds, device=dev, cache=False, storage="float16", workers=a.workers, decoder=decoder,
                         compile="off", auto_batch="off", batch_size=a.batch)
        sync()
        s = time.perf_counter() - t
        record("jpeg", f"streamed + decoded + {model.name} all cuts, decoder={decoder}", n / s, "images/s",
               workers=a.workers, seconds=s)


# ------------------------------------------------------------------------------------------------ probes
def step_probes(a) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from gr_explorer.cache import FeatureCache
    from gr_explorer.probes import fit_knn_probes, fit_linear_probes
    from gr_explorer.probes import linear as linear_module
    from gr_explorer.probes.rows import PackedRows, RowSource
    from gr_explorer.probes.solver import _Objective
    from gr_explorer.probes.split import validation_split

    dev = device(a)
    n_tr, n_te, D, K = a.n_train, a.n_test, a.dim, a.classes
    store = FeatureCache(Path(a.store))
    g = torch.Generator(device=dev).manual_seed(0)
    y = torch.randint(0, K, (n_tr + n_te,), device=dev, generator=g)
    cuts = [f"blocks.{i}" for i in range(a.cuts)]

    def write(i: int) -> None:
        gi = torch.Generator(device=dev).manual_seed(i + 1)
        means = torch.randn((K, D), device=dev, generator=gi) * (0.02 + 0.01 * i)
        w = store.writer(cuts[i], {}, "float16")
        for split, lo, hi in (("train", 0, n_tr), ("test", n_tr, n_tr + n_te)):
            w.open(split, hi - lo, D)
            for s in range(lo, hi, 262144):
                e = min(s + 262144, hi)
                x = (means[y[s:e]] + torch.randn((e - s, D), device=dev, generator=gi)).half()
                w.write(split, s - lo, x.cpu().numpy())
        w.commit()

    t = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(a.cuts)))
    gb = (n_tr + n_te) * D * a.cuts * 2 / 1e9
    record("probes", f"{a.cuts} cuts x {D} float16 features of {n_tr + n_te:,} images written ({gb:.1f} GB)",
           time.perf_counter() - t, "s")
    train, test = {}, {}
    for c in cuts:
        got = store.get(c, verify=False)
        train[c], test[c] = got["train"], got["test"]
    ytr, yte = {"label": y[:n_tr].cpu()}, {"label": y[n_tr:].cpu()}
    fit, val = validation_split(ytr, 0.2, 0)
    cuda = dev.type == "cuda"
    knn_cuts = cuts[:a.knn_cuts]
    t = time.perf_counter()
    res = fit_knn_probes({c: train[c] for c in knn_cuts}, ytr, {c: test[c] for c in knn_cuts}, yte, fit_idx=fit,
                         val_idx=val, device=dev, memory_budget=int(a.knn_budget_gib * 2**30))
    sync()
    s = time.perf_counter() - t
    record("probes", f"k-NN probe, {len(knn_cuts)} cut(s) (exact top-k, bank streamed under {a.knn_budget_gib:g} GiB)",
           s, "s", accuracy=[r.accuracy for r in res.values()])
    record("probes", f"k-NN probe, all {a.cuts} cuts (EXTRAPOLATED x{a.cuts / len(knn_cuts):.1f} from "
           f"{len(knn_cuts)} cut(s))", s * a.cuts / len(knn_cuts), "s")
    # One function evaluation at 1,000 classes (ImageNet's), one cut, 6 C values: the unit the probe's time scales by.
    src = RowSource(train[cuts[0]], dev, a.eval_rows, resident=True).subset(fit)
    X = PackedRows([src], [(torch.zeros(D, device=dev), torch.ones(D, device=dev))], torch.float32)
    obj = _Objective([X], torch.randint(0, 1000, (src.n, 6)), torch.ones((6, 1000), dtype=torch.bool),
                     torch.full((1, 6), 1e-4))
    theta = torch.zeros((1, D + 1, 6, 1000), device=dev)
    obj(theta)
    sync()
    t = time.perf_counter()
    obj(theta)
    sync()
    record("probes", "one linear-probe evaluation, 1 cut, 6 C x 1,000 classes", time.perf_counter() - t, "s",
           rows=src.n)
    del X, src, obj, theta
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    streamed = []  # whether the planner chose row chunks (PackedRows) for some chunk of cuts
    real = linear_module.PackedRows
    linear_module.PackedRows = lambda *args, **kw: streamed.append(1) or real(*args, **kw)
    budget = int(a.budget_gib * 2**30)
    t = time.perf_counter()
    res = fit_linear_probes(train, ytr, test, yte, fit_idx=fit, val_idx=val, device=dev, memory_budget=budget)
    sync()
    s = time.perf_counter() - t
    accs = [r.accuracy for r in res.values()]
    record("probes", f"linear probe, {a.cuts} cuts x 6 C, {K} classes, {n_tr:,} train", s, "s",
           accuracy_min=min(accs), accuracy_max=max(accs), n_iter_max=max(r.n_iter for r in res.values()),
           converged=all(r.converged for r in res.values()), budget_gib=a.budget_gib, streamed=bool(streamed))
    if cuda:
        record("probes", f"linear probe peak GPU memory (budget {a.budget_gib:g} GiB, "
               f"{'streamed in row chunks' if streamed else 'in memory'})", torch.cuda.max_memory_allocated() / 2**30,
               "GiB")
    record("probes", "peak host RSS (VmHWM; counts the memory-mapped feature pages read)",
           proc_status("VmHWM") / 2**30, "GiB")
    if not a.keep:
        import shutil

        shutil.rmtree(a.store, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ summary
TARGETS = [  # (the figure, the records it is read from (best taken), target, "higher"/"lower"/"")
    ("ViT-B/16 all 13 cuts, images/s, eager", ["ViT-B/16 eager all cuts", "ViT-B/16 eager all cuts at the auto batch"],
     15000, "higher"),
    ("ViT-B/16 all 13 cuts, images/s, compiled", ["ViT-B/16 compiled all cuts"], 15000, "higher"),
    ("ViT-B/16 all cuts / plain forward, eager", ["ViT-B/16 eager all cuts / plain"], 1.10, "lower"),
    ("ViT-B/16 all cuts / plain forward, compiled", ["ViT-B/16 compiled all cuts / compiled plain"], 1.10, "lower"),
    ("ViT-B/16 extract_features to disk, images/s (compile on)",
     ["timm:vit_base_patch16_224 [random init] extract_features (all cuts to disk, float16) compile=on"], 15000, "higher"),
    ("ResNet-50 all stages, images/s (channels_last, eager)",
     ["ResNet-50 channels_last eager all cuts", "ResNet-50 channels_last eager all cuts at the auto batch"], 12000,
     "higher"),
    ("ResNet-50 all stages, images/s (channels_last, compiled)", ["ResNet-50 channels_last compiled all cuts"], 12000,
     "higher"),
    ("JPEG folder decoded on the GPU + ViT-B/16, images/s",
     ["streamed + decoded + timm:vit_base_patch16_224 [random init] all cuts, decoder=torchvision-cuda"], 5000, "higher"),
    ("the same with CPU decoding (PIL workers), images/s",
     ["streamed + decoded + timm:vit_base_patch16_224 [random init] all cuts, decoder=pil"], None, ""),
]


def step_summary(a) -> None:
    rows = [json.loads(line) for line in open(a.json)] if a.json and Path(a.json).exists() else []
    card = rows[0]["card"] if rows else CARD
    print(f"\nSummary ({card}); every figure is in the log above, one line each")
    print(f"| {'figure':62s} | {'measured':>12s} | {'target':>8s} | met |")
    print(f"| {'-' * 62} | {'-' * 12} | {'-' * 8} | --- |")
    for label, names, target, sense in TARGETS:
        vals = [r["value"] for r in rows if r["what"] in names and isinstance(r["value"], (int, float))]
        if not vals:
            print(f"| {label:62s} | {'not measured':>12s} | {target or '':>8} | -   |")
            continue
        v = max(vals) if sense == "higher" else min(vals)
        met = "" if target is None else ("yes" if (v >= target if sense == "higher" else v <= target) else "NO")
        print(f"| {label:62s} | {v:>12,.2f} | {target or '':>8} | {met:3s} |")
    for r in rows:  # the probes' figures have no target in images/s: list them as measured
        if r["step"] == "probes" and isinstance(r["value"], (int, float)):
            print(f"| {r['what'][:62]:62s} | {r['value']:>12,.2f} | {r['unit']:>8s} |     |")


def main():
    global JSON
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=["forward", "jpeg", "probes", "summary"])
    ap.add_argument("--json", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default=None, help="default: cuda when there is one, else cpu (for a smoke test)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--backend", default="inductor", help="torch.compile backend; 'none' skips compiling")
    ap.add_argument("--models", default="vit_base_patch16_224,resnet50")
    ap.add_argument("--n", type=int, default=10240, help="forward: images per timing; jpeg: images in the folder")
    ap.add_argument("--e2e", type=int, default=20000, help="forward: images for the extract_features run (0: skip)")
    ap.add_argument("--skip-compiled-plain", action="store_true")
    ap.add_argument("--folder", default=str(Path(tempfile.gettempdir()) / "gr_gpu_jpegs"))
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--n-train", type=int, default=1281167)
    ap.add_argument("--n-test", type=int, default=50000)
    ap.add_argument("--cuts", type=int, default=13)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--knn-cuts", type=int, default=1)
    ap.add_argument("--budget-gib", type=float, default=48.0, help="the linear probe's memory budget")
    ap.add_argument("--knn-budget-gib", type=float, default=4.0, help="the k-NN probe's (small: its bank is streamed)")
    ap.add_argument("--eval-rows", type=int, default=131072, help="rows per chunk of the 1,000-class evaluation")
    ap.add_argument("--store", default=str(Path(tempfile.gettempdir()) / "gr_gpu_probes"))
    ap.add_argument("--keep", action="store_true", help="probes: keep the generated feature store")
    a = ap.parse_args()
    JSON = Path(a.json) if a.json else None
    if a.step != "summary":
        print(f"{a.step} on {CARD}, torch {torch.__version__}, {os.cpu_count()} CPU cores", flush=True)
    {"forward": step_forward, "jpeg": step_jpeg, "probes": step_probes, "summary": step_summary}[a.step](a)


if __name__ == "__main__":
    main()

"""Heads (issue 25): the attentive probe's cost per cut vs the linear probe, combined cuts' overhead, few-shot draws
vs separate sweeps.

Run by hand (CPU; one thread is the fair comparison on a shared machine):

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_heads.py attentive --model zoo:simclr
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_heads.py attentive --model timm:vit_tiny_patch16_224
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_heads.py combine
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_heads.py shots

`attentive`: features of every cut extracted once (with and without the float16 token features, timed), then the
linear probe and the attentive probe fitted on all cuts (each timed; seconds per cut = total / cuts), with every
cut's test accuracy and the paired difference (attentive - linear) with its bootstrap interval. A timm model runs
with random weights (seeded). `combine`: the same sweep without and with `combine=last4,best4` from a warm feature
cache (the difference is the combined cuts' probes). `shots`: one sweep with `shots=1,5,10, tries=5` (features
extracted once, then 15 draws per task) vs the naive way, 5 separate runs that each extract the features again
and fit one draw of each shot count.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

if __name__ == "__main__" and str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gr_explorer.cache import FeatureCache  # noqa: E402
from gr_explorer.config import SweepConfig  # noqa: E402
from gr_explorer.data import load_dataset  # noqa: E402
from gr_explorer.features import extract_features  # noqa: E402
from gr_explorer.models import load_model  # noqa: E402
from gr_explorer.probes import AttentiveHead, run_probes, validation_split  # noqa: E402
from gr_explorer.run import run_sweep  # noqa: E402
from gr_explorer.shots import fit_draws, plan  # noqa: E402
from gr_explorer.stats import Resampler  # noqa: E402


def _model(spec: str):
    return load_model(spec, weights="random" if spec.startswith("timm:") else None, seed=0)


def bench_attentive(a) -> None:
    model = _model(a.model)
    ds = load_dataset("shapes", tasks=a.tasks, n_train=a.n_train, n_test=a.n_test, seed=0)
    cuts = model.cut_names if a.cuts is None else a.cuts.split(",")
    t = time.perf_counter()
    plain = extract_features(model, ds, cuts, cache=False, batch_size=a.batch_size)
    t_plain = time.perf_counter() - t
    t = time.perf_counter()
    feats = extract_features(model, ds, cuts, cache=False, batch_size=a.batch_size, tokens=a.tokens)
    t_tokens = time.perf_counter() - t
    del plain
    n_cuts = len(feats.columns)
    shapes = {c: tuple(x.shape[1:]) for c, x in feats.tokens["train"].items()}
    print(f"{model.name}: {n_cuts} cuts, {ds.n_train} train / {ds.n_test} test, tasks {', '.join(ds.tasks)}")
    print(f"extraction: {t_plain:.1f} s pooled only, {t_tokens:.1f} s with tokens (x{t_tokens / t_plain:.2f}); token "
          f"features {feats.token_bytes() / 2**20:.1f} MB float16 ({shapes})")
    kw = dict(seed=0)
    t = time.perf_counter()
    lin = run_probes(["linear"], feats.train, ds.train_labels, feats.test, ds.test_labels, **kw)
    t_lin = time.perf_counter() - t
    head = AttentiveHead(seed=0, max_epochs=a.epochs)
    t = time.perf_counter()
    att = run_probes(["attentive"], feats.train, ds.train_labels, feats.test, ds.test_labels, attentive=head,
                     train_tokens=feats.tokens["train"], test_tokens=feats.tokens["test"], **kw)
    t_att = time.perf_counter() - t
    print(f"probes, all {n_cuts} cuts x {len(ds.tasks)} tasks: linear {t_lin:.1f} s ({t_lin / n_cuts:.2f} s per cut), "
          f"attentive {t_att:.1f} s ({t_att / n_cuts:.2f} s per cut, x{t_att / t_lin:.1f} the linear probe)")
    if a.alone:
        t = time.perf_counter()
        for c in feats.train:
            tok = {s: {c: feats.tokens[s][c]} if c in feats.tokens[s] else {} for s in ("train", "test")}
            run_probes(["attentive"], {c: feats.train[c]}, ds.train_labels, {c: feats.test[c]}, ds.test_labels,
                       attentive=head, train_tokens=tok["train"], test_tokens=tok["test"], **kw)
        t_alone = time.perf_counter() - t
        print(f"attentive one cut at a time: {t_alone:.1f} s (batched over cuts: x{t_alone / t_att:.2f} faster)")
    res = Resampler(ds.n_test, 1000, 0)
    rows = []
    for r_l, r_a in zip(lin, att):
        lo, hi = res.difference_interval(r_a.correct, r_l.correct)
        (l_lo, ), (l_hi, ) = res.interval(r_l.correct)
        (a_lo, ), (a_hi, ) = res.interval(r_a.correct)
        rows.append({"cut": r_l.cut, "task": r_l.task, "linear": f"{r_l.accuracy:.3f} [{l_lo:.3f}, {l_hi:.3f}]",
                     "attentive": f"{r_a.accuracy:.3f} [{a_lo:.3f}, {a_hi:.3f}]", "att_setting": r_a.setting,
                     "epochs": r_a.n_iter, "attentive - linear (pts)": f"{100 * (r_a.accuracy - r_l.accuracy):+.1f} "
                     f"[{100 * lo:+.1f}, {100 * hi:+.1f}]", "clear": lo > 0 or hi < 0})
    with pd.option_context("display.width", 250, "display.max_rows", 500):
        print(pd.DataFrame(rows).to_string(index=False))


def bench_combine(a) -> None:
    with tempfile.TemporaryDirectory() as d:
        cache = FeatureCache(d)
        base = dict(models=[a.model], tasks=a.tasks, n_train=a.n_train, n_test=a.n_test, probes=["linear", "knn"])
        run_sweep(SweepConfig(**base), cache=cache)  # warm the cache: both timed runs read the features
        times = {"plain": [], "combined": []}
        for _ in range(a.repeats):
            for name, extra in (("plain", {}), ("combined", {"combine": ["last4", "best4"]})):
                t = time.perf_counter()
                r = run_sweep(SweepConfig(**base, **extra), cache=cache)
                times[name].append(time.perf_counter() - t)
        p, c = min(times["plain"]), min(times["combined"])
        print(f"{a.model}, linear + k-NN, {len(r.table) // 2} single (cut, task) fits per probe, warm cache: "
              f"{p:.1f} s without combined cuts, {c:.1f} s with last4,best4 ({len(r.combined)} combined rows): "
              f"x{c / p:.2f} (best of {a.repeats})")


def bench_shots(a) -> None:
    config = SweepConfig(models=[a.model], tasks=a.tasks, n_train=a.n_train, n_test=a.n_test, probes=["linear"],
                         shots=[1, 5, 10], tries=a.tries)
    events = []
    t = time.perf_counter()
    res = run_sweep(config, cache=False, progress=lambda e: events.append(e) if e.stage == "extract" else None)
    ours = time.perf_counter() - t
    batches = res.cache_stats()[res.models[0]]["batches"]
    # the naive way: each try a run of its own, extracting again, one draw of each shot count
    model = _model(a.model)
    ds = load_dataset("shapes", tasks=a.tasks, n_train=a.n_train, n_test=a.n_test, seed=0)
    t = time.perf_counter()
    naive_batches = 0
    for attempt in range(a.tries):
        feats = extract_features(model, ds, cache=False)
        naive_batches += feats.forward_batches
        fit, val = validation_split(ds.train_labels, 0.2, 0)
        draws = [d for d in plan((1, 5, 10), (), a.tries) if d.attempt == attempt]
        fit_draws(draws, lambda y, split, refit: run_probes(["linear"], feats.train, y, feats.test,
                                                            {k: ds.test_labels[k] for k in y}, split=split,
                                                            refit_idx=refit), ds.train_labels, fit, val, 0)
    naive = time.perf_counter() - t
    print(f"{a.model}, shots 1,5,10 x {a.tries} tries, linear probe, {len(ds.tasks)} tasks: one sweep {ours:.1f} s "
          f"({batches} forward batches, with the ordinary sweep's fits) vs {a.tries} separate runs {naive:.1f} s "
          f"({naive_batches} forward batches): x{naive / ours:.2f}")
    b = res.shots_best
    print(b[["task", "shots", "best_cuts", "best_accuracy", "best_accuracy_low", "best_accuracy_high"]].to_string(
        index=False))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=("attentive", "combine", "shots"))
    p.add_argument("--model", default="zoo:simclr")
    p.add_argument("--tasks", default=None, help="comma-separated (default: every base task of shapes)")
    p.add_argument("--cuts", default=None)
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--tokens", type=int, default=SweepConfig.spec("attentive_tokens").default)
    p.add_argument("--epochs", type=int, default=SweepConfig.spec("attentive_epochs").default)
    p.add_argument("--alone", action="store_true", help="attentive: also fit every cut alone (batching's gain)")
    p.add_argument("--tries", type=int, default=5)
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args()
    a.tasks = a.tasks.split(",") if a.tasks else None
    torch.manual_seed(0)
    np.random.seed(0)
    {"attentive": bench_attentive, "combine": bench_combine, "shots": bench_shots}[a.what](a)


if __name__ == "__main__":
    main()

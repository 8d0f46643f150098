"""Measurement (not a speed benchmark): do label-free metrics find the validation-best cut of the shipped zoo?

    python -u benchmarks/measure_diagnostics_zoo.py [--models simclr,vicreg] [--n-train 2000 --n-test 1000 --seed 1]
    python -u benchmarks/measure_diagnostics_zoo.py --dataset cifar10_mini --n-train 2000 --n-test 1000

The zoo models trained on the dataset's kind (shapes, or CIFAR-10 for cifar10_mini; or those named) plus the
random-init twin of the first of them, swept with the linear probe and every diagnostic (`metrics`: invariance
with the default AugmentConfig) through `run_sweep`, on the train split. Writes the full tables as CSV and prints three summaries:
the cut each metric picks vs the validation-selected cut per task, Spearman's
rho per metric and task (median and range over models), and the test accuracy
lost by trusting each metric.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from gr_explorer import SweepConfig, run_sweep
from gr_explorer.cache import FeatureCache
from gr_explorer.diagnostics import METRICS, metric_vs_accuracy
from gr_explorer.models import list_zoo, read_card, zoo_dir


def trained_for(dataset: str) -> list[str]:
    """Zoo models whose training data matches the dataset: shapes for shapes, CIFAR-10 for cifar10_mini."""
    spec = lambda n: read_card(zoo_dir() / f"{n}.safetensors")["dataset"]["spec"]  # noqa: E731
    return [n for n in list_zoo() if (spec(n) == "shapes") == (dataset == "shapes")]


def baselines(metrics: pd.DataFrame) -> pd.DataFrame:
    """Pseudo-metrics that need no features: the cut's width, and a pick of the `pool` cut."""
    cuts = metrics.drop_duplicates(["model", "cut"])[["model", "cut", "depth", "part", "dim"]]
    dim = cuts.assign(metric="baseline:dim", value=cuts["dim"].astype(float), augmentation="")
    pool = cuts.assign(metric="baseline:pool", value=(cuts["cut"] == "pool").astype(float), augmentation="")
    return pd.concat([dim, pool])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=None, help="comma-separated zoo names (default: every shapes-trained one)")
    ap.add_argument("--dataset", default="shapes", choices=["shapes", "cifar10_mini"])
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="/tmp/diag_zoo")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    names = a.models.split(",") if a.models else trained_for(a.dataset)
    common = dict(dataset=a.dataset, n_train=a.n_train, n_test=a.n_test, seed=a.seed, probes=["linear"],
                  metrics=list(METRICS), device=a.device)
    # the zoo models, then the first one again with its random-init twin (its own features come from the cache)
    runs = [run_sweep(SweepConfig(models=[f"zoo:{n}" for n in names], **common), cache=FeatureCache(out / "cache")),
            run_sweep(SweepConfig(models=[f"zoo:{names[0]}"], baselines=["random-init"], **common),
                      cache=FeatureCache(out / "cache"))]
    for r in runs:
        print(f"sweep with diagnostics: {r.seconds:.1f} s", flush=True)
    results = pd.concat([r.table for r in runs]).drop_duplicates(["model", "cut", "task", "probe"])
    metrics = pd.concat([r.metrics for r in runs]).drop_duplicates(["model", "cut", "metric", "augmentation"])
    cka = pd.concat([r.cka for r in runs]).drop_duplicates()
    sel = metric_vs_accuracy(results, pd.concat([metrics, baselines(metrics)]))
    for name, t in (("results", results), ("metrics", metrics), ("cka", cka), ("selection", sel)):
        t.to_csv(out / f"{name}.csv", index=False)
    sel["name"] = sel["metric"] + sel["augmentation"].map(lambda s: f"[{s}]" if s else "")
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 60)
    pd.set_option("display.max_rows", 400)

    print("\nCut picked by validation (per task) and by each metric (task-independent)")
    val = sel.drop_duplicates(["model", "task"]).pivot(index="model", columns="task", values="val_cut")
    picks = sel.drop_duplicates(["model", "name"]).pivot(index="model", columns="name", values="metric_cut")
    print(pd.concat([val.add_prefix("val:"), picks], axis=1).to_string())

    print("\nSpearman rho (metric oriented higher = better vs test accuracy, across cuts): median [min, max] over models")
    g = sel.groupby(["name", "task"])["spearman"]
    fmt = (g.median().map("{:+.2f}".format) + " [" + g.min().map("{:+.2f}".format) + ", " + g.max().map("{:+.2f}".format) + "]")
    print(fmt.unstack("task").to_string())

    print("\nAgreement with the validation pick (models where metric pick == val pick) and mean test accuracy lost (points)")
    sel["agree"] = sel["metric_cut"] == sel["val_cut"]
    agree = sel.groupby(["name", "task"])["agree"].sum().unstack("task").astype(int)
    lost = (100 * sel.groupby(["name", "task"])["accuracy_lost"].mean()).unstack("task").round(1)
    print(pd.concat({"agree (of %d)" % sel["model"].nunique(): agree, "lost": lost}, axis=1).to_string())
    print(f"\nTables written to {out}/")


if __name__ == "__main__":
    main()

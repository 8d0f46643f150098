"""Measurement (not a speed benchmark): do label-free metrics find the validation-best cut of the shipped zoo?

    python -u benchmarks/measure_diagnostics_zoo.py [--models simclr,vicreg] [--n-train 2000 --n-test 1000 --seed 1]
    python -u benchmarks/measure_diagnostics_zoo.py --dataset cifar10_mini --n-train 2000 --n-test 1000

The zoo models trained on the dataset's kind (shapes, or CIFAR-10 for cifar10_mini; or those named) plus a
random-init twin of the first of them
(`build_model(card)` under `torch.manual_seed(0)`), swept on `shapes` with the
linear probe; all diagnostics (invariance with the default AugmentConfig) on
the train split. Writes the full tables as CSV and prints three summaries:
the cut each metric picks vs the validation-selected cut per task, Spearman's
rho per metric and task (median and range over models), and the test accuracy
lost by trusting each metric.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from gr_explorer import SweepConfig, run_sweep
from gr_explorer.data import load_dataset
from gr_explorer.diagnostics import METRICS, compute_diagnostics, metric_vs_accuracy
from gr_explorer.models import build_model, list_zoo, load_model, read_card, zoo_dir


def models(names: list[str]):
    for name in names:
        yield load_model(f"zoo:{name}")
    torch.manual_seed(0)
    yield build_model(read_card(zoo_dir() / f"{names[0]}.safetensors"), name=f"zoo:{names[0]} [random init]")


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
    ds = load_dataset(a.dataset, n_train=a.n_train, n_test=a.n_test, seed=a.seed)
    results, metrics, ckas = [], [], []
    names = a.models.split(",") if a.models else trained_for(a.dataset)
    for model in models(names):
        cfg = SweepConfig(models=[model.name], dataset=ds.name, probes=["linear"], device=a.device, seed=a.seed)
        res = run_sweep(cfg, models=[model], dataset=ds, cache=False)
        d = compute_diagnostics(model, res.features[model.name], ds.train_images, metrics=METRICS, device=a.device,
                                seed=a.seed)
        results.append(res.table)
        metrics.append(d.metrics)
        ckas.append(d.cka)
        print(f"{model.name}: sweep {res.seconds:.1f} s, diagnostics {sum(d.seconds.values()):.1f} s", flush=True)
    results, metrics, cka = pd.concat(results), pd.concat(metrics), pd.concat(ckas)
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

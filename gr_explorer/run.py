"""Running a sweep: model(s) x dataset views x cuts x tasks x probes -> tidy tables.

`run_sweep(SweepConfig)` is the one path every caller takes (the `sweep()`
shortcut, the CLI, the app, training's held-out evaluation): it resolves the
device once, loads the dataset and the models (plus the requested baselines),
extracts each view's features in one forward pass per batch, fits the probes,
and returns the results table with 95% bootstrap intervals and chance, the
validation-selected summary, and the hyper-parameter search table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import pandas as pd
import torch

from .cache import FeatureCache
from .config import SweepConfig
from .data import Dataset, load_dataset
from .data.base import BASE
from .device import resolve_device
from .distributed import join, rank_device
from .errors import GRExplorerError
from .features import Features, extract_features
from .models import SCHEMES, Model, load_model, pixels_model, random_init
from .probes import run_probes
from .progress import Cancelled, Progress, ProgressEvent, ShouldStop
from .stats import Resampler
from .summary import first_curves, guillotine_summary

#: results.csv columns, in order (the in-memory table also carries `correct`, per-image test hits)
COLUMNS = ["model", "baseline", "weights", "dataset", "cut", "readout", "norm", "depth", "part", "dim", "task", "probe",
           "accuracy", "accuracy_ci_low", "accuracy_ci_high", "val_accuracy", "chance", "hparam", "converged", "n_iter",
           "n_classes", "n_train", "n_test"]
SEARCH_COLUMNS = ["model", "cut", "readout", "norm", "depth", "task", "probe", "hparam", "value", "val_accuracy", "chosen"]


@dataclass
class SweepResult:
    table: pd.DataFrame  # COLUMNS + correct
    summary: pd.DataFrame  # summary.SUMMARY_COLUMNS
    search: pd.DataFrame  # SEARCH_COLUMNS: validation accuracy of every C / k tried
    config: SweepConfig
    features: dict[str, dict[str, Features]]  # model -> view -> features
    dataset: Dataset
    seconds: float
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)  # label-free diagnostics per cut (config.metrics)
    cka: pd.DataFrame = field(default_factory=pd.DataFrame)  # CKA between the cuts of each model
    metric_selection: pd.DataFrame = field(default_factory=pd.DataFrame)  # does a metric find the best cut?


class SweepCancelled(Cancelled):
    """The user stopped the sweep; `.partial` holds the rows of every (model, view) finished before."""

    def __init__(self, rows: list[dict]):
        super().__init__("Sweep cancelled; the rows finished so far are kept in .partial.")
        self.partial = pd.DataFrame(rows, columns=COLUMNS + ["correct"])


def run_sweep(config: SweepConfig, *, models: Sequence[Model] | None = None, dataset: Dataset | None = None,
              cache: FeatureCache | None | bool = None, progress: Progress | None = None,
              should_stop: ShouldStop | None = None) -> SweepResult | None:
    """Run a sweep. Pre-built `models`/`dataset` objects (the app's shared caches) replace loading the specs.

    `progress(ProgressEvent)` hears every stage; `should_stop()` is polled between batches and probe
    chunks, and stopping raises SweepCancelled carrying the rows finished so far. Under torchrun every
    rank extracts its share of the batches and rank 0 returns the result; the other ranks return None.
    """
    t0 = time.perf_counter()
    device = resolve_device(config.device)
    world = join(device)
    device = rank_device(device, world)
    if world.size > 1 and cache is False:
        raise GRExplorerError("Under torchrun the ranks hand their features to rank 0 through the cache folder: "
                              "drop --no-cache (and give --cache-dir on a filesystem every machine sees).")
    emit = (progress or (lambda e: None)) if world.is_main else (lambda e: None)
    rows: list[dict] = []
    search: list[dict] = []
    metrics, ckas = [], []
    feats_by_model: dict[str, dict[str, Features]] = {}
    try:
        emit(ProgressEvent("load", 0, 1, "", f"dataset {config.dataset}"))
        if dataset is None:
            dataset = load_dataset(**dataset_args(config))
        emit(ProgressEvent("load", 1, 1, "", f"dataset {dataset.name}: {dataset.n_train} train / {dataset.n_test} test, "
                                             f"tasks {', '.join(dataset.tasks)}"))
        for model, baseline in _models(config, models, dataset, emit):
            feats_by_model[model.name] = {}
            for view in dataset.views:
                feats = extract_features(model, dataset, None if baseline == "pixels" else config.cuts, view=view,
                                         device=device, batch_size=config.batch_size, cache=cache, progress=progress,
                                         should_stop=should_stop, workers=config.workers,
                                         storage=config.feature_dtype, world=world,
                                         detail="block" if baseline == "pixels" else config.cut_detail,
                                         readouts=None if baseline == "pixels" else config.readout,
                                         norm="off" if baseline == "pixels" else config.readout_norm)
                feats_by_model[model.name][view] = feats
                if not world.is_main:
                    continue  # rank 0 fits the probes on the merged features
                fit = feats.distinct()  # columns that share features (vector cuts in several curves) are fitted once
                results = run_probes(config.probes, {n: feats.train[n] for n in fit}, dataset.view_labels(view, "train"),
                                     {n: feats.test[n] for n in fit}, dataset.view_labels(view, "test"), device=device,
                                     seed=config.seed,
                                     val_fraction=config.val_fraction, linear_grid=config.linear_grid,
                                     knn_ks=config.knn_ks, knn_temperature=config.knn_temperature, progress=progress,
                                     should_stop=should_stop, model=model.name, linear_memory_budget=config.memory_budget)
                rows += _rows(model, baseline, dataset, feats, results)
                search += _search_rows(model, feats, results)
                if config.metrics and view == BASE and baseline != "pixels":
                    m, c = _diagnostics(config, model, feats, dataset, device, cache, progress, should_stop)
                    metrics.append(m)
                    ckas.append(c)
    except Cancelled as e:
        if isinstance(e, SweepCancelled):
            raise
        raise SweepCancelled(rows) from None
    if not world.is_main:
        return None
    table = with_intervals(pd.DataFrame(rows, columns=COLUMNS + ["correct"]), config.bootstrap, config.seed)
    summary = guillotine_summary(table, config.bootstrap, config.seed)
    result = SweepResult(table, summary, pd.DataFrame(search, columns=SEARCH_COLUMNS), config, feats_by_model, dataset,
                         time.perf_counter() - t0)
    if metrics:
        from .diagnostics import metric_vs_accuracy

        result.metrics = pd.concat(metrics, ignore_index=True)
        result.cka = pd.concat(ckas, ignore_index=True)
        result.metric_selection = metric_vs_accuracy(first_curves(table), result.metrics)
    return result


def dataset_args(config: SweepConfig) -> dict:
    """`load_dataset` keyword arguments for a config: what run_sweep loads (callers that cache loading key on this)."""
    return dict(spec=config.dataset, tasks=list(config.tasks) if config.tasks is not None else None,
                n_train=config.n_train, n_test=config.n_test, seed=config.seed, data_root=config.data_root,
                image_size=config.image_size)


def model_args(config: SweepConfig, spec: str) -> dict:
    """`load_model` keyword arguments for one model spec of a config (see dataset_args)."""
    args = dict(spec=spec, weights=config.weights, readout=None, seed=config.seed)  # readouts apply per cut (features)
    if spec.startswith("py:"):
        args.update(stages=config.stages, projector=config.projector)
    return args


def _diagnostics(config: SweepConfig, model: Model, feats: Features, dataset: Dataset, device: torch.device, cache,
                 progress, should_stop) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Label-free metrics of one model's base-view features, cached with them (keyed on the features' own key)."""
    from .cache import content_key
    from .diagnostics import compute_diagnostics
    from .training.augment import AugmentConfig

    store = None if cache is False else (cache if isinstance(cache, FeatureCache) else FeatureCache())
    feats = feats.first_curve()
    key = content_key({"base": feats.key, "cuts": [c.name for c in feats.cuts], "metrics": list(config.metrics),
                       "seed": config.seed, "augmentations": model.card.get("augmentations"),
                       "curve": [feats.columns[0].readout, feats.columns[0].norm]})
    if store is not None:
        m, c = store.get_table(key + "-metrics"), store.get_table(key + "-cka")
        if m is not None and c is not None:
            return m.fillna({"augmentation": ""}).assign(model=model.name), c.assign(model_a=model.name, model_b=model.name)
    aug = model.card.get("augmentations")
    augment = AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in aug.items()}) if isinstance(aug, dict) else None
    images = dataset.train_images if "invariance" in config.metrics else None
    d = compute_diagnostics(model, feats, images, metrics=list(config.metrics), device=device, seed=config.seed,
                            augment=augment, batch_size=config.batch_size, progress=progress, should_stop=should_stop)
    if store is not None:
        store.put_table(key + "-metrics", d.metrics)
        store.put_table(key + "-cka", d.cka)
    return d.metrics, d.cka


def _models(config: SweepConfig, given: Sequence[Model] | None, dataset: Dataset, emit):
    """(model, baseline kind) in order: each model then its random-init twin; the pixels baseline last."""
    specs = list(given) if given is not None else list(config.models)
    for i, spec in enumerate(specs):
        model = spec if isinstance(spec, Model) else load_model(**model_args(config, spec))
        emit(ProgressEvent("load", i + 1, len(specs), model.name, f"{len(model.cuts)} cuts"))
        yield model, ""
        if "random-init" in config.baselines:
            yield random_init(model, config.seed), "random-init"
    if "pixels" in config.baselines:
        yield pixels_model(dataset.splits["train"].shape[-1]), "pixels"


def weights_label(model: Model) -> str:
    """Where the weights come from, as tables show it: pretrained (hub id), random init (seed), a file digest."""
    return model.weights_source


def _rows(model: Model, baseline: str, dataset: Dataset, feats: Features, results) -> list[dict]:
    out = []
    for col, r in feats.expand(results):
        c = col.cut
        out.append({"model": model.name, "baseline": baseline, "weights": weights_label(model), "dataset": dataset.name,
                    "cut": c.name, "readout": col.readout, "norm": col.norm, "depth": c.depth, "part": c.part,
                    "dim": int(feats.train[col.name].shape[1]), "task": r.task, "probe": r.probe,
                    "accuracy": r.accuracy, "accuracy_ci_low": float("nan"), "accuracy_ci_high": float("nan"),
                    "val_accuracy": r.val_accuracy, "chance": dataset.chance(r.task), "hparam": r.hparam,
                    "converged": r.converged, "n_iter": r.n_iter, "n_classes": r.n_classes, "n_train": dataset.n_train,
                    "n_test": dataset.n_test, "correct": r.correct.numpy() if r.correct is not None else None})
    return out


def _search_rows(model: Model, feats: Features, results) -> list[dict]:
    out = []
    for col, r in feats.expand(results):
        name, _, chosen = r.hparam.partition("=")
        for value, acc in r.search.items():
            out.append({"model": model.name, "cut": col.cut.name, "readout": col.readout, "norm": col.norm,
                        "depth": col.cut.depth, "task": r.task, "probe": r.probe,
                        "hparam": name, "value": value, "val_accuracy": acc, "chosen": float(chosen) == value})
    return out


def with_intervals(table: pd.DataFrame, resamples: int, seed: int) -> pd.DataFrame:
    """Fill accuracy_ci_low / accuracy_ci_high from the per-image `correct` column (one shared resampling)."""
    if table.empty or table["correct"].isna().any():
        return table
    resampler = Resampler(int(table["n_test"].iloc[0]), resamples, seed)
    import numpy as np

    lo, hi = resampler.interval(np.stack(table["correct"].to_list()))
    return table.assign(accuracy_ci_low=lo, accuracy_ci_high=hi)


def sweep(models: str | Model | Sequence[str | Model], dataset: str | Dataset = "shapes", *,
          progress: Progress | None = None, cache: FeatureCache | None | bool = None, **options) -> pd.DataFrame:
    """One call from specs (or Model objects) to the tidy results table; options are SweepConfig fields.

        from gr_explorer import sweep, guillotine_summary
        table = sweep("zoo:simclr", "shapes", probes=["linear", "knn"], baselines=["random-init"])
    """
    models = [models] if isinstance(models, (str, Model)) else list(models)
    objs = None
    if any(isinstance(m, Model) for m in models):  # objects given: load the specs beside them here, once
        objs = [m if isinstance(m, Model) else load_model(m, weights=options.get("weights"),
                                                          seed=options.get("seed", 0)) for m in models]
    ds_obj = dataset if isinstance(dataset, Dataset) else None
    names = [m.name if isinstance(m, Model) else m for m in objs or models]
    config = SweepConfig(models=[n if n.partition(":")[0] in SCHEMES else f"custom:{n}" for n in names],
                         dataset=ds_obj.name if ds_obj is not None else dataset, **options)
    return run_sweep(config, models=objs, dataset=ds_obj, cache=cache, progress=progress).table


__all__ = ["COLUMNS", "SEARCH_COLUMNS", "SweepCancelled", "SweepResult", "dataset_args", "model_args", "run_sweep", "sweep",
           "weights_label"]

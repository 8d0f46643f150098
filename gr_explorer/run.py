"""Running a sweep: model(s) x dataset views x cuts x tasks x probes -> tidy tables.

`run_sweep(SweepConfig)` is the one path every caller takes (the `sweep()`
shortcut, the CLI, the app, training's held-out evaluation): it checks the
config against the data once, resolves the device once, loads the dataset and
the models (plus the requested baselines), extracts each view's features in
one forward pass per batch, fits the probes, and returns a SweepResult: the
results table with 95% bootstrap intervals and chance, the validation-selected
summary, the hyper-parameter search table, and what a page or a folder of
outputs needs to show the run again.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .augment import AugmentConfig
from .cache import FeatureCache, content_key
from .combine import COMBINED_COLUMNS, check_forms, combined_summary, fit_combined
from .config import SweepConfig
from .data import DERIVED_TASKS, Dataset, dataset_tasks, load_dataset
from .data.base import BASE
from .device import resolve_device
from .diagnostics import compute_diagnostics, metric_vs_accuracy
from .distributed import join, rank_device
from .errors import ConfigError, DatasetError, GRExplorerError, did_you_mean
from .features import Features, extract_features
from .limits import check_disk, check_sweep, size_text
from .models import Model, load_model, pixels_model, random_inits
from .models.pixels import NAME as PIXELS
from .models.pixels import PIXEL_COMPONENT_PROBES, principal_components
from .names import KIND_BASELINE, SCHEMES, random_init_draws
from .probes import HEADS, AttentiveHead, ProbeResult, run_probes, validation_size, validation_split
from .progress import Cancelled, Progress, ProgressEvent, ShouldStop
from .samples import check_bootstrap, clamp_notes, probe_clamps, task_shortfalls
from .shots import ALL, DRAW_COLUMNS, best_cuts, curves, fit_draws, plan
from .stats import Resampler
from .summary import first_curves, guillotine_summary, p_chosen

#: results.csv columns, in order (the in-memory table also carries `correct` and `val_correct`, per-image test and
#: validation hits, and `baseline_for`, the model a baseline row stands next to)
COLUMNS = ["model", "baseline", "weights", "dataset", "cut", "readout", "norm", "depth", "part", "dim", "task", "probe",
           "accuracy", "accuracy_ci_low", "accuracy_ci_high", "val_accuracy", "chance", "hparam", "converged", "n_iter",
           "n_classes", "n_train", "n_test", "p_chosen", "note"]
MEMORY_COLUMNS = ["correct", "val_correct", "baseline_for"]
#: `also`: the other hyper-parameters of a grid point, when a head searches several (attentive: 'wd=0.0001')
SEARCH_COLUMNS = ["model", "cut", "readout", "norm", "depth", "task", "probe", "hparam", "value", "val_accuracy", "chosen",
                  "also"]


@dataclass
class SweepResult:
    """Everything a sweep returns, and all that the CLI writes and the app shows of it."""

    table: pd.DataFrame  # COLUMNS + MEMORY_COLUMNS
    summary: pd.DataFrame  # summary.SUMMARY_COLUMNS
    search: pd.DataFrame  # SEARCH_COLUMNS: validation accuracy of every C / k tried
    config: SweepConfig
    features: dict[str, dict[str, Features]]  # model -> view -> features
    dataset: Dataset | None
    seconds: float
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)  # label-free diagnostics per cut (config.metrics)
    cka: pd.DataFrame = field(default_factory=pd.DataFrame)  # CKA between the cuts of each model
    metric_selection: pd.DataFrame = field(default_factory=pd.DataFrame)  # does a metric find the best cut?
    models: list[str] = field(default_factory=list)  # the models asked for (not their baselines), in order
    cards: dict[str, dict] = field(default_factory=dict)  # each model's checkpoint card
    cancelled: bool = False  # stopped by the user: the table holds the (model, view)s finished before
    notes: list[str] = field(default_factory=list)  # what the reader must know: clamped values, too little data
    combined: pd.DataFrame = field(default_factory=pd.DataFrame)  # config.combine: COLUMNS + cuts, combine (+ memory)
    combined_summary: pd.DataFrame = field(default_factory=pd.DataFrame)  # each combined cut vs the best single cut
    draws: pd.DataFrame = field(default_factory=pd.DataFrame)  # config.shots/fractions: COLUMNS + shots, try, n_fit
    shots: pd.DataFrame = field(default_factory=pd.DataFrame)  # per shot and cut: mean and spread over tries
    shots_best: pd.DataFrame = field(default_factory=pd.DataFrame)  # per shot: the cut chosen in each draw

    @classmethod
    def partial(cls, config: SweepConfig, table: pd.DataFrame, seconds: float) -> "SweepResult":
        """What a cancelled sweep keeps: its finished rows, summarised the same way."""
        return cls(table, guillotine_summary(table, config.bootstrap, config.seed), pd.DataFrame(columns=SEARCH_COLUMNS),
                   config, {}, None, seconds, models=list(dict.fromkeys(table.loc[table["baseline"] == "", "model"])),
                   cancelled=True)

    def cache_stats(self) -> dict[str, dict[str, int]]:
        """Per model: cuts read from the feature cache, cuts in all, and forward batches run."""
        return {m: {"cached": sum(len(f.cached_cuts) for f in views.values()),
                    "cuts": sum(len(f.cuts) for f in views.values()),
                    "batches": sum(f.forward_batches for f in views.values())}
                for m, views in self.features.items()}

    def base_features(self) -> dict[str, tuple]:
        """model -> (cuts, train features of the base view): what Compare's CKA reads."""
        return {m: (self.features[m][BASE].cuts, self.features[m][BASE].train) for m in self.models
                if BASE in self.features.get(m, {})}


class SweepCancelled(Cancelled):
    """The user stopped the sweep; `.partial` holds the rows of every (model, view) finished before."""

    def __init__(self, rows: list[dict]):
        super().__init__("Sweep cancelled; the rows finished so far are kept in .partial.")
        self.partial = pd.DataFrame(rows, columns=COLUMNS + MEMORY_COLUMNS)


def check_references(config: SweepConfig) -> None:
    """What the settings alone cannot check: the tasks asked for exist in the dataset, and its images fit in this
    machine's memory (limits.check_sweep)."""
    try:
        base = dataset_tasks(config.dataset)
    except DatasetError as e:
        raise ConfigError(f"dataset={config.dataset!r} is invalid: {e}") from None
    check_sweep(config)
    if config.tasks is not None:
        valid = [*base, *DERIVED_TASKS]
        bad = [t for t in config.tasks if t not in valid]
        if bad:
            raise ConfigError(f"tasks: {bad[0]!r} is not a task of dataset {config.dataset!r}. "
                              f"{did_you_mean(bad[0], valid)}")


def run_sweep(config: SweepConfig, *, models: Sequence[Model] | None = None, dataset: Dataset | None = None,
              cache: FeatureCache | None | bool = None, progress: Progress | None = None,
              should_stop: ShouldStop | None = None, cached_only: bool = False) -> SweepResult | None:
    """Run a sweep. Pre-built `models`/`dataset` objects (the app's shared caches) replace loading the specs.

    `progress(ProgressEvent)` hears every stage; `should_stop()` is polled between batches and probe
    chunks, and stopping raises SweepCancelled carrying the rows finished so far. Under torchrun every
    rank extracts its share of the batches and rank 0 returns the result; the other ranks return None.
    `cached_only`: raise errors.NotCached before any forward pass when a feature is not in the cache.
    """
    t0 = time.perf_counter()
    if dataset is None:
        check_references(config)
    device = resolve_device(config.device)
    world = join(device)
    device = rank_device(device, world)
    if world.size > 1 and cache is False:
        raise GRExplorerError("Under torchrun the ranks hand their features to rank 0 through the cache folder: "
                              "drop --no-cache (and give --cache-dir on a filesystem every machine sees).")
    run = _Sweep(config, device, world, cache, progress, should_stop, cached_only)
    try:
        dataset = run.load_dataset(dataset)
        for model in _models(config, models, dataset, run.emit):
            run.measure(model, dataset)
    except Cancelled as e:
        if isinstance(e, SweepCancelled):
            raise
        raise SweepCancelled(run.rows) from None
    if not world.is_main:
        return None
    return run.result(dataset, time.perf_counter() - t0)


class _Sweep:
    """One sweep's state: the rows, search rows and diagnostics gathered model by model."""

    def __init__(self, config: SweepConfig, device: torch.device, world, cache, progress, should_stop,
                 cached_only: bool = False):
        self.config, self.device, self.world, self.cache, self.cached_only = config, device, world, cache, cached_only
        self.progress, self.should_stop = progress, should_stop
        self.emit = (progress or (lambda e: None)) if world.is_main else (lambda e: None)
        self.rows: list[dict] = []
        self.combined: list[dict] = []
        self.draws: list[dict] = []
        self.search: list[dict] = []
        self.metrics: list[pd.DataFrame] = []
        self.ckas: list[pd.DataFrame] = []
        self.features: dict[str, dict[str, Features]] = {}
        self.models: list[Model] = []
        self.notes: list[str] = []
        #: the raw pixels' principal components per view (no labels: the same for the sweep and every few-shot draw)
        self.pixel_components: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.attentive = AttentiveHead(config.attentive_lr, config.attentive_wd, config.attentive_queries,
                                       config.attentive_epochs, config.seed, config.memory_budget)

    def load_dataset(self, dataset: Dataset | None) -> Dataset:
        self.emit(ProgressEvent("load", 0, 1, "", f"dataset {self.config.dataset}"))
        if dataset is None:
            dataset = load_dataset(**dataset_args(self.config), progress=self.emit, should_stop=self.should_stop)
        self.emit(ProgressEvent("load", 1, 1, "", f"dataset {dataset.name}: {dataset.n_train} train / "
                                                   f"{dataset.n_test} test, tasks {', '.join(dataset.tasks)}"))
        check_bootstrap(self.config.bootstrap, dataset.n_test, self.config.memory_budget)  # before any work
        self.notes += clamp_notes({"n_train": self.config.n_train, "n_test": self.config.n_test},
                                  {"n_train": dataset.n_train, "n_test": dataset.n_test}, dataset.n_train,
                                  self.config.val_fraction)
        self.shortfalls = {}
        for view in dataset.views:
            self.shortfalls.update(task_shortfalls(dataset.view_labels(view, "train"), dataset.view_labels(view, "test"),
                                                   dataset.classes, self.config.val_fraction, self.config.seed))
        self.notes += [f"task {t!r}: {why}" for t, why in self.shortfalls.items()]
        return dataset

    def measure(self, model: Model, dataset: Dataset) -> None:
        """Extract, probe and (for the base view) diagnose one model on every view of the dataset."""
        config = self.config
        if model.kind == "model":
            self.models.append(model)
        self.features[model.name] = {}
        pixels = model.kind == "pixels"  # one cut, one curve
        if config.combine and not pixels:  # before any work: a combined cut names cuts this sweep has
            check_forms(config.combine, model, model.resolve_cuts(config.cuts, config.cut_detail))
        tokens = config.attentive_tokens if "attentive" in config.probes and not pixels else None
        if self.world.is_main:  # the features must fit on the cache's disk, checked before extracting any
            check_disk([model], config, dataset.n_train + dataset.n_test, cache_folder(self.cache))
        for view in dataset.views:
            feats = extract_features(model, dataset, None if pixels else config.cuts, view=view,
                                     device=self.device, batch_size=config.batch_size, cache=self.cache,
                                     progress=self.progress, should_stop=self.should_stop, workers=config.workers,
                                     storage=config.feature_dtype, world=self.world, compile=config.compile,
                                     channels_last=config.channels_last, auto_batch=config.auto_batch,
                                     decoder=config.decoder, detail="block" if pixels else config.cut_detail,
                                     readouts=None if pixels else config.readout,
                                     norm="off" if pixels else config.readout_norm, tokens=tokens,
                                     cached_only=self.cached_only)
            self.features[model.name][view] = feats
            if not self.world.is_main:
                continue  # rank 0 fits the probes on the merged features
            if feats.tokens:
                self.emit(ProgressEvent("load", 1, 1, model.name, f"{view} view: token features for the attentive "
                                        f"probe, {size_text(feats.token_bytes())} float16 in the cache"))
            rows, results = self.fit(model, dataset, feats, view)
            self.rows += rows
            n_fit = dataset.n_train - validation_size(dataset.n_train, config.val_fraction)
            self.notes += [n for n in probe_clamps(results, n_fit, dataset.n_train) if n not in self.notes]
            if config.combine and not pixels:
                self.combine(model, dataset, feats, view, results)
            if config.shots or config.fractions:
                self.draw(model, dataset, feats, view, rows)
            if config.metrics and view == BASE and not pixels:
                m, c = _diagnostics(config, model, feats, dataset, self.device, self.cache, self.progress,
                                    self.should_stop)
                self.metrics.append(m)
                self.ckas.append(c)

    def fit(self, model: Model, dataset: Dataset, feats: Features, view: str, labels: dict | None = None,
            split=None, refit_idx=None, search: bool = True) -> tuple[list[dict], list[ProbeResult]]:
        """Every probe on one view's features: (table rows, the vector probes' results). The vector probes (linear,
        k-NN) fit every distinct column; the attentive probe reads the first curve's cuts as tokens (a curve of its
        own, readout `tokens`). `labels`, `split`, `refit_idx`: a few-shot draw's (default: the sweep's)."""
        config = self.config
        labels = dataset.view_labels(view, "train") if labels is None else labels
        test_labels = {t: dataset.view_labels(view, "test")[t] for t in labels}
        vectors = [p for p in config.probes if HEADS[p].inputs == "vectors"]
        fit = feats.distinct()  # columns that share features (vector cuts in several curves) are fitted once
        results = (self.vector_probes(vectors, feats, view, fit, labels, test_labels, model, split, refit_idx)
                   if vectors else [])
        rows = _rows(model, dataset, feats, results, self.shortfalls)
        if search:
            self.search += _search_rows(model, feats, results)
        if "attentive" in config.probes:
            first = feats.first_curve()
            att = self.probe(["attentive"], first.train, first.test, labels, test_labels, model, split, refit_idx,
                             feats.tokens)
            tokens = feats.token_curve("on" if config.readout_norm == "on" and model.kind != "pixels" else "off")
            rows += _rows(model, dataset, tokens, att, self.shortfalls)
            if search:
                self.search += _search_rows(model, tokens, att)
        return rows, results

    def vector_probes(self, probes, feats: Features, view: str, columns, labels, test_labels, model: Model,
                      split=None, refit_idx=None) -> list[ProbeResult]:
        """The vector probes on `columns` of `feats`; the raw-pixels baseline's linear probe on the pixels' leading
        principal components (models/pixels.py says why; computed once per view), its other probes on the pixels
        themselves."""
        def fit(chosen, train, test):
            return self.probe(chosen, train, test, labels, test_labels, model, split, refit_idx)

        train, test = {n: feats.train[n] for n in columns}, {n: feats.test[n] for n in columns}
        reduced = [p for p in probes if p in PIXEL_COMPONENT_PROBES]
        if model.kind != "pixels" or not reduced:
            return fit(probes, train, test)
        if view not in self.pixel_components:
            self.pixel_components[view] = principal_components(feats.train[PIXELS], feats.test[PIXELS],
                                                               seed=self.config.seed)
        train_pc, test_pc = self.pixel_components[view]
        results = fit(reduced, {PIXELS: train_pc}, {PIXELS: test_pc})
        rest = [p for p in probes if p not in reduced]
        results += fit(rest, train, test) if rest else []
        tasks = list(labels)
        return sorted(results, key=lambda r: (tasks.index(r.task), probes.index(r.probe)))  # run_probes' order

    def probe(self, probes, train, test, labels, test_labels, model, split=None, refit_idx=None, tokens=None):
        config = self.config
        return run_probes(probes, train, labels, test, test_labels, device=self.device, seed=config.seed,
                          val_fraction=config.val_fraction, linear_grid=config.linear_grid, knn_ks=config.knn_ks,
                          knn_temperature=config.knn_temperature, progress=self.progress,
                          should_stop=self.should_stop, model=model.name, linear_memory_budget=config.memory_budget,
                          attentive=self.attentive, train_tokens=(tokens or {}).get("train"),
                          test_tokens=(tokens or {}).get("test"), split=split, refit_idx=refit_idx)

    def combine(self, model: Model, dataset: Dataset, feats: Features, view: str, results: list[ProbeResult]) -> None:
        """The combined cuts (config.combine) of every readout curve, probed like single cuts, beside the curve."""
        config = self.config
        labels, test_labels = dataset.view_labels(view, "train"), dataset.view_labels(view, "test")
        vectors = [p for p in config.probes if HEADS[p].inputs == "vectors"]
        right = max(c.depth for c in feats.cuts) + 1
        fitted = fit_combined(config.combine, feats, results, vectors, labels, test_labels,
                              standardize=config.combine_standardize == "on",
                              fit_probes=lambda probes, tr, te: self.probe(probes, tr, te, labels, test_labels, model))
        for comb, curve, dim, r in fitted:
            readout, norm = curve.split("|")
            row = _row(model, dataset, comb.name, readout, norm, right + list(config.combine).index(comb.form),
                       "combined", dim, r, self.shortfalls)
            self.combined.append({**row, "cuts": ",".join(comb.cuts), "combine": comb.form})

    def draw(self, model: Model, dataset: Dataset, feats: Features, view: str, rows: list[dict]) -> None:
        """Few-shot and data-fraction draws (config.shots, config.fractions): every probe refitted on each draw."""
        config = self.config
        labels = dataset.view_labels(view, "train")
        fit_idx, val_idx = validation_split(labels, config.val_fraction, config.seed)
        done = fit_draws(plan(config.shots, config.fractions, config.tries),
                         lambda y, split, refit: self.fit(model, dataset, feats, view, y, split, refit, search=False)[0],
                         labels, fit_idx, val_idx, config.seed)
        self.draws += [{**r, "shots": ALL, "try": 0, "n_fit": dataset.n_train} for r in rows]
        for d, picked, drawn in done:
            self.draws += [{**r, "shots": d.label, "try": d.attempt, "n_fit": len(picked)} for r in drawn]

    def result(self, dataset: Dataset, seconds: float) -> SweepResult:
        config = self.config
        table = with_intervals(pd.DataFrame(self.rows, columns=COLUMNS + MEMORY_COLUMNS), config.bootstrap, config.seed)
        table["p_chosen"] = p_chosen(table, config.bootstrap, config.seed)
        summary = guillotine_summary(table, config.bootstrap, config.seed)
        result = SweepResult(table, summary, pd.DataFrame(self.search, columns=SEARCH_COLUMNS), config, self.features,
                             dataset, seconds, models=[m.name for m in self.models],
                             cards={m.name: dict(m.card or {}) for m in self.models}, notes=list(self.notes))
        if self.combined:
            result.combined = with_intervals(pd.DataFrame(self.combined, columns=COLUMNS + COMBINED_COLUMNS +
                                                          MEMORY_COLUMNS), config.bootstrap, config.seed)
            result.combined_summary = combined_summary(table, result.combined, config.bootstrap, config.seed)
        if self.draws:
            result.draws = pd.DataFrame(self.draws, columns=COLUMNS + DRAW_COLUMNS + MEMORY_COLUMNS)
            result.shots, result.shots_best = curves(result.draws), best_cuts(result.draws)
        if self.metrics:
            result.metrics = pd.concat(self.metrics, ignore_index=True)
            result.cka = pd.concat(self.ckas, ignore_index=True)
            result.metric_selection = metric_vs_accuracy(first_curves(table), result.metrics, config.bootstrap,
                                                         config.seed)
        return result


def cache_folder(cache: FeatureCache | None | bool) -> str:
    """Where a sweep's features go: the cache's folder, or the temporary folder of a scratch store (cache=False)."""
    if cache is False:
        return tempfile.gettempdir()
    return str((cache if isinstance(cache, FeatureCache) else FeatureCache()).root)


def dataset_args(config: SweepConfig) -> dict:
    """`load_dataset` keyword arguments for a config: what run_sweep loads (callers that cache loading key on this)."""
    return dict(spec=config.dataset, tasks=list(config.tasks) if config.tasks is not None else None,
                n_train=config.n_train, n_test=config.n_test, seed=config.seed, data_root=config.data_root,
                image_size=config.image_size, fingerprint=config.fingerprint)


def model_args(config: SweepConfig, spec: str) -> dict:
    """`load_model` keyword arguments for one model spec of a config (see dataset_args)."""
    args = dict(spec=spec, weights=config.weights, readout=None, seed=config.seed)  # readouts apply per cut (features)
    if spec.startswith("py:"):
        args.update(stages=config.stages, projector=config.projector)
    return args


def _diagnostics(config: SweepConfig, model: Model, feats: Features, dataset: Dataset, device: torch.device, cache,
                 progress, should_stop) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Label-free metrics of one model's base-view features, cached with them (keyed on the features' own key)."""
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
    """Models in order: each model then its random-init twin; the pixels baseline last."""
    specs = list(given) if given is not None else list(config.models)
    for i, spec in enumerate(specs):
        model = spec if isinstance(spec, Model) else load_model(**model_args(config, spec))
        emit(ProgressEvent("load", i + 1, len(specs), model.name, f"{len(model.cuts)} cuts"))
        yield model
        yield from random_inits(model, config.seed, random_init_draws(config.baselines))
    if "pixels" in config.baselines:
        yield pixels_model(dataset.splits["train"].shape[-1])


def _row(model: Model, dataset: Dataset, cut: str, readout: str, norm: str, depth: int, part: str, dim: int,
         r: ProbeResult, notes: dict[str, str]) -> dict:
    """One results row (COLUMNS + MEMORY_COLUMNS) of a probe result; `notes`: what to say per task (too little data)."""
    return {"model": model.name, "baseline": KIND_BASELINE[model.kind], "weights": model.weights_source,
            "dataset": dataset.name, "cut": cut, "readout": readout, "norm": norm, "depth": depth, "part": part,
            "dim": dim, "task": r.task, "probe": r.probe, "accuracy": r.accuracy, "accuracy_ci_low": float("nan"),
            "accuracy_ci_high": float("nan"), "val_accuracy": r.val_accuracy, "chance": dataset.chance(r.task),
            "hparam": r.setting, "converged": r.converged, "n_iter": r.n_iter, "n_classes": r.n_classes,
            "n_train": dataset.n_train, "n_test": dataset.n_test, "p_chosen": float("nan"),  # filled once the curve is whole
            "note": notes.get(r.task, ""), "correct": r.correct.numpy() if r.correct is not None else None,
            "val_correct": r.val_correct.numpy() if r.val_correct is not None else None, "baseline_for": model.baseline_for}


def _rows(model: Model, dataset: Dataset, feats: Features, results: list[ProbeResult], notes: dict[str, str]) -> list[dict]:
    return [_row(model, dataset, col.cut.name, col.readout, col.norm, col.cut.depth, col.cut.part,
                 int(feats.train[col.name].shape[-1]), r, notes)  # tokens [N, T, C]: C wide
            for col, r in feats.expand(results)]


def _search_rows(model: Model, feats: Features, results: list[ProbeResult]) -> list[dict]:
    """Every hyper-parameter value tried, with its validation accuracy; exactly one chosen per (column, task, probe)."""
    return [{"model": model.name, "cut": col.cut.name, "readout": col.readout, "norm": col.norm, "depth": col.cut.depth,
             "task": r.task, "probe": r.probe, "hparam": r.hparam, "value": key[0] if isinstance(key, tuple) else key,
             "val_accuracy": acc, "chosen": key == r.chosen,
             "also": " ".join(f"{n}={v:g}" for n, v in zip(r.also, key[1:])) if isinstance(key, tuple) else ""}
            for col, r in feats.expand(results) for key, acc in r.search.items()]


def with_intervals(table: pd.DataFrame, resamples: int, seed: int) -> pd.DataFrame:
    """Fill accuracy_ci_low / accuracy_ci_high from the per-image `correct` column (one shared resampling)."""
    if table.empty or table["correct"].isna().any():
        return table
    resampler = Resampler(int(table["n_test"].iloc[0]), resamples, seed)
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
    config = SweepConfig(models=[_spec_of(n) for n in names],
                         dataset=ds_obj.name if ds_obj is not None else dataset, **options)
    return run_sweep(config, models=objs, dataset=ds_obj, cache=cache, progress=progress).table


def _spec_of(name: str) -> str:
    """A model's spec for run.json: its own when it is one (zoo:..., timm:...), else custom:<name> (built in Python)."""
    scheme, sep, rest = name.partition(":")
    return name if sep and scheme in SCHEMES and rest.strip() else f"custom:{name}"


__all__ = ["COLUMNS", "MEMORY_COLUMNS", "SEARCH_COLUMNS", "SweepCancelled", "SweepResult", "check_references",
           "dataset_args", "model_args", "run_sweep", "sweep"]

"""Sweep: model(s) x dataset x cuts x tasks x probes -> one tidy results table.

`SweepConfig` is the whole run as data: it is what run.json holds, and running
it again gives the same numbers (fixed seeds, deterministic probes).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from .cache import FeatureCache
from .data import Dataset, load_dataset
from .device import resolve_device
from .errors import GRExplorerError
from .features import Features, extract_features
from .models import Model, load_model
from .probes import PROBES, run_probes

#: progress(stage, done, total, message): stage is one of load, extract, probe.
Progress = Callable[[str, int, int, str], None]

COLUMNS = ["model", "dataset", "cut", "depth", "part", "dim", "task", "probe", "accuracy", "val_accuracy", "hparam",
           "n_classes", "n_train", "n_test"]


@dataclass
class SweepConfig:
    models: list[str]
    dataset: str = "shapes"
    tasks: list[str] | None = None
    cuts: list[str] | None = None
    probes: list[str] = field(default_factory=lambda: ["linear"])
    n_train: int | None = None
    n_test: int | None = None
    seed: int = 0
    device: str = "auto"
    batch_size: int = 256
    readout: str = "cls"
    weights: str | None = None
    data_root: str | None = None
    image_size: int | None = None
    val_fraction: float = 0.2
    linear_grid: list[float] | None = None
    knn_ks: list[int] | None = None
    knn_temperature: float = 0.07

    def __post_init__(self):
        if isinstance(self.models, str):
            self.models = [self.models]
        if not self.models:
            raise GRExplorerError("A sweep needs at least one model spec.")
        unknown = [p for p in self.probes if p not in PROBES]
        if unknown or not self.probes:
            raise GRExplorerError(f"Unknown probe(s) {unknown or self.probes}. Valid: {', '.join(PROBES)}.")

    def to_json(self) -> str:
        return json.dumps({"gr_explorer_run": 1, **asdict(self)}, indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> "SweepConfig":
        known = {f.name for f in fields(cls)}
        extra = sorted(set(d) - known - {"gr_explorer_run", "results"})
        if extra:
            raise GRExplorerError(f"Unknown key(s) {extra} in the run config. Valid: {', '.join(sorted(known))}.")
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def load(cls, path: str | Path) -> "SweepConfig":
        p = Path(path)
        try:
            d = json.loads(p.read_text())
        except FileNotFoundError as e:
            raise GRExplorerError(f"Run config {str(p)!r} does not exist.") from e
        except json.JSONDecodeError as e:
            raise GRExplorerError(f"Run config {str(p)!r} is not valid JSON: {e}.") from e
        if not isinstance(d, dict) or "models" not in d:
            raise GRExplorerError(f"Run config {str(p)!r} must be a JSON object with at least a 'models' list (as written by gr-explorer sweep).")
        return cls.from_dict(d)


@dataclass
class SweepResult:
    table: pd.DataFrame
    config: SweepConfig
    features: dict[str, Features]
    dataset: Dataset
    seconds: float


def run_sweep(config: SweepConfig, *, models: Sequence[Model] | None = None, dataset: Dataset | None = None,
              cache: FeatureCache | None | bool = None, progress: Progress | None = None,
              should_stop: Callable[[], bool] | None = None) -> SweepResult:
    """Run a sweep. Pre-built `models`/`dataset` objects replace loading from the config's specs.

    `should_stop()` is polled between stages (the app's Cancel); stopping raises
    SweepCancelled carrying the rows computed so far.
    """
    t0 = time.perf_counter()
    report = progress or (lambda *a: None)
    device = resolve_device(config.device)
    report("load", 0, 1, f"loading dataset {config.dataset}")
    if dataset is None:
        dataset = load_dataset(config.dataset, tasks=config.tasks, n_train=config.n_train, n_test=config.n_test,
                               seed=config.seed, data_root=config.data_root, image_size=config.image_size)
    report("load", 1, 1, f"dataset {dataset.name}: {dataset.n_train} train / {dataset.n_test} test, tasks {', '.join(dataset.tasks)}")
    rows: list[dict] = []
    feats_by_model: dict[str, Features] = {}
    specs = list(models) if models is not None else list(config.models)
    for i, spec in enumerate(specs):
        _check_stop(should_stop, rows)
        model = spec if isinstance(spec, Model) else load_model(spec, weights=config.weights, readout=config.readout)
        report("load", i + 1, len(specs), f"model {model.name}: {len(model.cuts)} cuts")
        feats = extract_features(model, dataset, config.cuts, device=device, batch_size=config.batch_size, cache=cache,
                                 progress=lambda s, d, t, m=model.name: report("extract", d, t, f"{m}: batch {d}/{t}"))
        feats_by_model[model.name] = feats
        _check_stop(should_stop, rows)
        results = run_probes(config.probes, feats.train, dataset.train_labels, feats.test, dataset.test_labels,
                             device=device, seed=config.seed, val_fraction=config.val_fraction,
                             linear_grid=config.linear_grid, knn_ks=config.knn_ks, knn_temperature=config.knn_temperature,
                             progress=lambda d, t, msg, m=model.name: report("probe", d, t, f"{m}: {msg}"))
        cuts = {c.name: c for c in feats.cuts}
        for r in results:
            c = cuts[r["cut"]]
            rows.append({"model": model.name, "dataset": dataset.name, "cut": c.name, "depth": c.depth, "part": c.part,
                         "dim": c.dim, "task": r["task"], "probe": r["probe"], "accuracy": r["accuracy"],
                         "val_accuracy": r["val_accuracy"], "hparam": r["hparam"], "n_classes": r["n_classes"],
                         "n_train": dataset.n_train, "n_test": dataset.n_test})
    return SweepResult(pd.DataFrame(rows, columns=COLUMNS), config, feats_by_model, dataset, time.perf_counter() - t0)


class SweepCancelled(GRExplorerError):
    def __init__(self, rows: list[dict]):
        super().__init__("Sweep cancelled; the rows finished so far are kept in .partial.")
        self.partial = pd.DataFrame(rows, columns=COLUMNS)


def _check_stop(should_stop, rows):
    if should_stop is not None and should_stop():
        raise SweepCancelled(rows)


def sweep(models: str | Model | Sequence[str | Model], dataset: str | Dataset = "shapes", *,
          progress: Progress | None = None, cache: FeatureCache | None | bool = None, **options) -> pd.DataFrame:
    """One call from specs (or objects) to the tidy table; options are SweepConfig fields."""
    models = [models] if isinstance(models, (str, Model)) else list(models)
    objs = None
    if any(isinstance(m, Model) for m in models):  # objects given: load the specs beside them here, once
        objs = [m if isinstance(m, Model) else load_model(m, weights=options.get("weights"), readout=options.get("readout", "cls"))
                for m in models]
    ds_obj = dataset if isinstance(dataset, Dataset) else None
    config = SweepConfig(models=[m.name if isinstance(m, Model) else m for m in objs or models],
                         dataset=ds_obj.name if ds_obj is not None else dataset, **options)
    return run_sweep(config, models=objs, dataset=ds_obj, cache=cache, progress=progress).table

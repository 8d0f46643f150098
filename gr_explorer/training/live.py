"""Probes while a network trains: every cut probed on a fixed held-out set every N epochs, so the guillotine gain
can be watched as it forms.

Why a sweep of the model in training: the live numbers must be the numbers a sweep of the checkpoint would give,
so each probe step *is* `run.run_sweep` on the model as it is at that epoch (eval mode, no gradient, the training
generators untouched: probing never changes what the network learns), on a probe set drawn once from a dataset
seed the training never sees (`eval_seed`, default data_seed + 1), with linear probes chosen on validation and
95% bootstrap intervals. Each step appends to `<out>.probes.csv` (every cut, task and epoch) and
`<out>.probes_summary.csv` (best cut, gain and its interval per task and epoch), written atomically after every
step, so a run stopped (or interrupted) mid-way keeps every step it finished. The card keeps the summary.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import pandas as pd

from ..config import SweepConfig
from ..data import Dataset, load_dataset
from ..files import atomic_write
from ..live_plots import gain_over_training, probes_over_training
from ..models import Model
from ..progress import Cancelled, ShouldStop
from ..run import MEMORY_COLUMNS, run_sweep
from .config import TrainConfig

#: what the caller hears after each probe step: (the step's results table, its summary)
OnProbe = Callable[[pd.DataFrame, pd.DataFrame], None]


def probe_paths(out: str | Path) -> dict[str, Path]:
    """The files a run with live probes writes next to its checkpoint `out`."""
    out = Path(out)
    return {"table": out.with_suffix(".probes.csv"), "summary": out.with_suffix(".probes_summary.csv"),
            "figures": out.with_suffix(".probes.html")}


def read_probes(checkpoint: str | Path) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The live probe tables (every cut, the summary) recorded next to a checkpoint, or None when it has none."""
    paths = probe_paths(checkpoint)
    if not (paths["table"].exists() and paths["summary"].exists()):
        return None
    return pd.read_csv(paths["table"]), pd.read_csv(paths["summary"])


def probe_seed(config: TrainConfig) -> int:
    """The probe set's dataset seed: images the training never saw (as --eval)."""
    return config.eval_seed if config.eval_seed is not None else config.data_seed + 1


def probe_config(config: TrainConfig, name: str) -> SweepConfig:
    """The sweep each probe step runs (and that reproduces its numbers from the saved checkpoint)."""
    return SweepConfig(models=[name], dataset=config.dataset, tasks=config.probe_tasks, probes=["linear"],
                       n_train=config.probe_n_train, n_test=config.probe_n_test, seed=probe_seed(config),
                       device=config.device, image_size=config.image_size, compile="off", channels_last="off",
                       auto_batch="off")  # nothing that would change the network in training (its memory layout)


class LiveProbes:
    """The probe set, loaded once, and the tables every probe step adds to."""

    def __init__(self, config: TrainConfig, on_probe: OnProbe | None = None):
        self.config, self.on_probe = config, on_probe
        self.every = int(config.probe_every)
        self.sweep = probe_config(config, "custom:" + Path(config.out).stem)
        self.dataset: Dataset = load_dataset(config.dataset, tasks=list(config.probe_tasks) if config.probe_tasks
                                             else None, n_train=config.probe_n_train, n_test=config.probe_n_test,
                                             seed=probe_seed(config), image_size=config.image_size)
        self.paths = probe_paths(config.out)
        self.tables: list[pd.DataFrame] = []
        self.summaries: list[pd.DataFrame] = []
        self.seconds = 0.0

    def due(self, epoch: int) -> bool:
        """Whether the epoch just finished is a probe epoch (every N epochs; the end of training is probed apart)."""
        return epoch % self.every == 0

    def probe(self, model: Model, epoch: float, step: int, should_stop: ShouldStop | None = None) -> None:
        """Sweep every cut of `model` as it is now; record the step (files written before returning)."""
        t0 = time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            res = run_sweep(self.sweep, models=[model.renamed(self.sweep.models[0])], dataset=self.dataset,
                            cache=False, should_stop=should_stop)
        except Cancelled:  # stopped mid-step: the steps finished before are kept, this one is not recorded
            return
        finally:
            model.train(was_training)
        where = {"epoch": round(float(epoch), 3), "step": int(step)}
        table = res.table.drop(columns=MEMORY_COLUMNS).assign(**where)
        summary = res.summary.assign(**where)
        self.tables.append(table)
        self.summaries.append(summary)
        atomic_write(self.paths["table"], pd.concat(self.tables, ignore_index=True).to_csv(index=False))
        atomic_write(self.paths["summary"], pd.concat(self.summaries, ignore_index=True).to_csv(index=False))
        self.seconds += time.perf_counter() - t0
        if self.on_probe is not None:
            self.on_probe(table, summary)

    def write_figures(self) -> None:
        """`<out>.probes.html`: accuracy vs depth over the epochs (slider, Play) and the gain per epoch."""
        if not self.tables:
            return
        table, summary = pd.concat(self.tables, ignore_index=True), pd.concat(self.summaries, ignore_index=True)
        figs = [probes_over_training(table, summary, title=Path(self.config.out).stem), gain_over_training(summary)]
        html = "".join(f.to_html(include_plotlyjs=(i == 0), full_html=False) for i, f in enumerate(figs))
        atomic_write(self.paths["figures"], "<html><head><meta charset='utf-8'><title>live probes</title></head><body>"
                                            + html + "</body></html>")

    def card(self) -> dict:
        """What the checkpoint's card keeps: how the probes were run and the per-epoch summary."""
        summary = pd.concat(self.summaries, ignore_index=True) if self.summaries else pd.DataFrame()
        keep = ["epoch", "step", "task", "best_cut", "best_accuracy", "best_ci_low", "best_ci_high", "last_cut",
                "last_accuracy", "gain", "gain_ci_low", "gain_ci_high", "clear_gain", "chance"]
        rows = summary[[c for c in keep if c in summary.columns]].to_dict("records") if len(summary) else []
        return {"every_epochs": self.every, "seconds": round(self.seconds, 2),
                "held_out": f"linear probes fitted on {self.dataset.n_train} train images and scored on "
                            f"{self.dataset.n_test} test-split images of {self.config.dataset} seed "
                            f"{probe_seed(self.config)} (training used seed {self.config.data_seed}); best cut chosen "
                            "on a validation split; 95% bootstrap intervals",
                "sweep": {k: v for k, v in self.sweep.as_dict().items() if k != "models"},
                "files": [p.name for p in self.paths.values()],
                "summary": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]}

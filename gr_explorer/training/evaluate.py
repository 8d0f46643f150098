"""Held-out evaluation of a trained checkpoint: the same sweep a shipped model gets, stored in its card.

Why a separate dataset seed by default: the probe's train AND test images then
come from a draw the SSL training never saw (for shapes, a different seed
renders different images); the probe test split is held out in any case. The
sweep includes the random-init and raw-pixel baselines, and the card keeps the
validation-selected summary with its bootstrap intervals.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..config import SweepConfig
from ..models import random_label
from ..run import run_sweep
from ..settings import MAX_SEED
from .config import TrainConfig

KEEP = ["model", "baseline", "cut", "depth", "part", "dim", "task", "probe", "accuracy", "accuracy_ci_low",
        "accuracy_ci_high", "val_accuracy", "chance"]


def _clean(rows: list[dict]) -> list[dict]:
    return [{k: (None if isinstance(v, float) and math.isnan(v) else round(v, 4) if isinstance(v, float) else v)
             for k, v in r.items()} for r in rows]


def evaluate(model_spec: str, config: TrainConfig, device: str | None = None) -> dict:
    """Linear-probe sweep of every cut on held-out data, with baselines -> {'sweep', 'table', 'summary'}."""
    seed = config.eval_seed if config.eval_seed is not None else (config.data_seed + 1) % (MAX_SEED + 1)
    sweep_config = SweepConfig(models=[model_spec], dataset=config.dataset, tasks=config.eval_tasks, probes=["linear"],
                               n_train=config.eval_n_train, n_test=config.eval_n_test, seed=seed,
                               device=device or config.device, image_size=config.image_size,
                               baselines=["random-init", "pixels"])
    res = run_sweep(sweep_config, cache=False)
    run = json.loads(sweep_config.to_json())
    run.pop("models", None)
    name = Path(config.out).stem  # the card names the model, never the path it was written to
    twin = res.table.loc[res.table["baseline_for"] == model_spec, "model"]
    label = {model_spec: name, **{t: random_label(name) for t in twin.unique()}}
    res.table["model"] = res.table["model"].replace(label)
    res.summary["model"] = res.summary["model"].replace(label)
    return {
        "held_out": f"linear probes fitted on {res.dataset.n_train} train images and scored on {res.dataset.n_test} "
                    f"test-split images of {config.dataset} seed {seed} (training used seed {config.data_seed}); best cut "
                    f"chosen on a validation split of the probe's train images; 95% bootstrap intervals over test images",
        "sweep": run,
        "table": _clean(res.table[KEEP].to_dict("records")),
        "summary": _clean(res.summary.to_dict("records")),
    }

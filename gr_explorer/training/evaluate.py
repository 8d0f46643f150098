"""Held-out evaluation of a trained checkpoint: the same sweep a shipped model gets, stored in its card.

Why a separate dataset seed by default: the probe's train AND test images then
come from a draw the SSL training never saw (for shapes, a different seed
renders different images); the probe test split is held out in any case.
"""

from __future__ import annotations

import json

from .config import TrainConfig

KEEP = ["cut", "depth", "part", "dim", "task", "probe", "accuracy"]


def evaluate(model_spec: str, config: TrainConfig, device: str | None = None) -> dict:
    """Linear-probe sweep of every cut on held-out data -> {'sweep': run config, 'table': rows, 'summary': rows}."""
    from ..summary import guillotine_summary
    from ..sweep import SweepConfig, run_sweep

    seed = config.eval_seed if config.eval_seed is not None else config.data_seed + 1
    sweep_config = SweepConfig(models=[model_spec], dataset=config.dataset, tasks=config.eval_tasks, probes=["linear"],
                               n_train=config.eval_n_train, n_test=config.eval_n_test, seed=seed,
                               device=device or config.device, image_size=config.image_size)
    res = run_sweep(sweep_config, cache=False)
    table = res.table
    summary = guillotine_summary(table).drop(columns=["model"])
    run = json.loads(sweep_config.to_json())
    run.pop("models", None)
    return {
        "held_out": f"linear probes fitted on {res.dataset.n_train} train images and scored on {res.dataset.n_test} "
                    f"test-split images of {config.dataset} seed {seed} (training used seed {config.data_seed})",
        "sweep": run,
        "table": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()} for row in table[KEEP].to_dict("records")],
        "summary": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()} for row in summary.to_dict("records")],
    }

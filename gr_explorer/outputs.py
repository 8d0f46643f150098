"""A sweep's outputs on disk: results.csv, summary.csv, search.csv, run.json, the figures (+ features).

What the CLI's `--out` folder holds and what `gr-explorer sweep --config run.json` reproduces; the app
offers the same tables and run.json as downloads.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from .combine import COMBINED_COLUMNS
from .export import save_figure
from .files import atomic_write, publish_folder, slug
from .names import FIGURE_FORMATS
from .plots import accuracy_vs_depth, cut_task_heatmap
from .run import COLUMNS, SweepResult
from .shots import DRAW_COLUMNS, shots_figure

#: what `write_outputs` may write into --out (an older output folder holding only these may be replaced)
OUTPUTS = ("results.csv", "summary.csv", "search.csv", "metrics.csv", "cka.csv", "metric_selection.csv", "run.json",
           "combined.csv", "draws.csv", "shots.csv", "shots_best.csv",
           *(f"{name}.{fmt}" for name in ("figure", "heatmap", "shots") for fmt in FIGURE_FORMATS), "features")


def write_outputs(result: SweepResult, out: Path, save_features: bool = False) -> list[Path]:
    """The whole output set, switched in at once (files.publish_folder): a failure leaves the earlier set whole."""
    return publish_folder(out, lambda staging: _write_outputs_into(result, staging, save_features), OUTPUTS)


def _write_outputs_into(result: SweepResult, out: Path, save_features: bool) -> list[Path]:
    """results.csv, summary.csv, search.csv, run.json, figure.* and heatmap.* in the config's `figures` formats
    (+ features/<model>.npz)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def put(name: str, data) -> None:
        written.append(atomic_write(out / name, data))

    results = result.table[COLUMNS]
    if not result.combined.empty:  # combined cuts after the single cuts, told apart by `cuts` and `combine`
        results = pd.concat([results.assign(cuts="", combine=""), result.combined[COLUMNS + COMBINED_COLUMNS]],
                            ignore_index=True)
        put("combined.csv", result.combined_summary.to_csv(index=False))
    put("results.csv", results.to_csv(index=False))
    put("summary.csv", result.summary.to_csv(index=False))
    put("search.csv", result.search.to_csv(index=False))
    if not result.metrics.empty:
        put("metrics.csv", result.metrics.to_csv(index=False))
        put("cka.csv", result.cka.to_csv(index=False))
        put("metric_selection.csv", result.metric_selection.to_csv(index=False))
    put("run.json", result.config.to_json())
    if not result.draws.empty:
        put("draws.csv", result.draws[COLUMNS + DRAW_COLUMNS].to_csv(index=False))
        put("shots.csv", result.shots.to_csv(index=False))
        put("shots_best.csv", result.shots_best.to_csv(index=False))
        written += save_figure(shots_figure(result.shots), out / "shots", result.config.figures)
    written += save_figure(accuracy_vs_depth(result.table, summary=result.summary, combined=result.combined_summary),
                           out / "figure", result.config.figures)
    written += save_figure(cut_task_heatmap(result.table), out / "heatmap", result.config.figures)
    if save_features:
        ds = result.dataset
        names: set[str] = set()
        for model, views in result.features.items():
            arrays = {}
            for view, feats in views.items():
                suffix = "" if view == "base" else f"__{view}"
                arrays.update({f"{split}__{cut}{suffix}": getattr(feats, split)[cut].numpy()
                               for split in ("train", "test") for cut in feats.train})
                arrays.update({f"{split}_labels__{task}": labels.numpy() for split in ("train", "test")
                               for task, labels in ds.view_labels(view, split).items()})
            first = next(iter(views.values()))
            arrays["cuts"] = np.array([c.name for c in first.cuts])
            arrays["depths"] = np.array([c.depth for c in first.cuts])
            arrays["parts"] = np.array([c.part for c in first.cuts])
            buf = io.BytesIO()
            np.savez(buf, **arrays)
            name = slug(model.rsplit("/", 1)[-1])
            while name in names:
                name += "_"
            names.add(name)
            put(f"features/{name}.npz", buf.getvalue())
    return written

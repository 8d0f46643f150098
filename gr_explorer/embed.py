"""Running an embedding view: a sweep config's model and dataset -> aligned maps per cut -> files.

The one path for the CLI's `gr-explorer embed` (and the app): the model and dataset are loaded by the sweep's
own loaders with the sweep's arguments (`run.dataset_args` / `run.model_args`) and the features come from
`features.extract_features` with the same cache, so an embedding after a sweep of the same settings does no
forward pass. Settings are checked before any extraction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .cache import FeatureCache
from .config import SweepConfig
from .data import Dataset, load_dataset
from .embedding import DEFAULT_K, Embedding, check_settings, embed_cuts
from .embedding_plots import THUMBNAILS_MAX_POINTS, embedding_figure, embedding_grid, hover_script, thumbnail_uri
from .errors import ConfigError
from .export import save_figure
from .features import extract_features
from .files import atomic_write
from .models import load_model
from .progress import Progress, ShouldStop
from .run import dataset_args, model_args


@dataclass
class EmbeddingRun:
    embedding: Embedding
    dataset: Dataset  # for thumbnails (embedding_plots.point_thumbnail)
    model: str


def run_embedding(config: SweepConfig, *, task: str | None = None, method: str = "pca", split: str = "test",
                  max_points: int | str | None = "auto", k: int = DEFAULT_K, cache: FeatureCache | None | bool = None,
                  progress: Progress | None = None, should_stop: ShouldStop | None = None) -> EmbeddingRun:
    """Maps of the config's one model at its cuts (all when None) on `split` of its dataset; see embed_cuts."""
    if len(config.models) != 1:
        raise ConfigError(f"An embedding maps one model; got {len(config.models)} ({', '.join(config.models)}). "
                          "Valid: one model spec.")
    dataset = load_dataset(**dataset_args(config))
    check_settings(dataset, task=task, method=method, split=split, max_points=max_points, k=k)
    model = load_model(**model_args(config, config.models[0]))
    feats = extract_features(model, dataset, config.cuts, device=config.device, batch_size=config.batch_size,
                             cache=cache, progress=progress, should_stop=should_stop, workers=config.workers,
                             storage=config.feature_dtype)
    emb = embed_cuts(feats, dataset, task=task, method=method, split=split, max_points=max_points, k=k,
                     seed=config.seed, device=config.device, bootstrap=config.bootstrap, progress=progress,
                     should_stop=should_stop, model=model.name)
    return EmbeddingRun(emb, dataset, model.name)


def write_embedding(run: EmbeddingRun, out: str | Path, formats: Sequence[str] = ("html",)) -> list[Path]:
    """embedding.csv, scores.csv, embedding.<fmt> (the animated figure; hover thumbnails up to
    THUMBNAILS_MAX_POINTS points) and embedding_cuts.<fmt> (every cut side by side) for each format."""
    emb, out = run.embedding, Path(out)
    thumbs = None
    if emb.n_drawn <= THUMBNAILS_MAX_POINTS:
        thumbs = [thumbnail_uri(x) for x in run.dataset.splits[emb.split].get(emb.index)]
    written = [atomic_write(out / "embedding.csv", emb.table().to_csv(index=False)),
               atomic_write(out / "scores.csv", emb.scores.to_csv(index=False))]
    written += save_figure(embedding_figure(emb, model=run.model, thumbnails=thumbs), out / "embedding", formats,
                           post_script=hover_script() if thumbs else None)
    written += save_figure(embedding_grid(emb, model=run.model), out / "embedding_cuts", formats)
    return written


__all__ = ["EmbeddingRun", "run_embedding", "write_embedding"]

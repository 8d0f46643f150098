"""Embeddings per cut: each cut's features reduced to a 2-D map, successive maps aligned, a neighbourhood score.

Why: accuracy vs depth says *which* cut reads a task best; a map of the same images at every cut shows *why*
(colour clusters at the stem that the projector dissolves, shape clusters that form at layer4). So that the
same images move smoothly as the slider goes deeper, every cut maps the *same* drawn images and each map is
centred, scaled to unit RMS radius and rotated (or reflected) onto the previous cut's map by orthogonal
Procrustes. A map is a picture; the **neighbourhood score** beside it is a number: the fraction of each point's
k nearest neighbours (cosine similarity in the cut's full feature space, the point itself excluded) that share
its label, averaged over the points, with a bootstrap 95% interval and the chance level (random neighbours).

Methods:

* ``pca`` (default): the top two principal components, computed with torch on the features' device (GPU when
  there is one): exact (eigendecomposition of the d x d covariance, accumulated in float64) up to
  EXACT_PCA_MAX_DIM dimensions, ``torch.pca_lowrank`` above. Linear, so distances along the axes mean something,
  and fast: 100,000 points x 9 cuts in seconds on 2 CPU cores (benchmarks/README.md).
* ``tsne``: openTSNE (FFT-accelerated t-SNE, cosine affinities), the optional extra ``tsne``. Measured against
  umap-learn and scikit-learn's TSNE by `benchmarks/bench_embedding.py --methods-only` on 20,000 128-d
  features (layer4 of zoo:simclr on shapes; 2 CPU cores shared with other jobs, load ~6): openTSNE 150 s,
  umap-learn 86 s, scikit-learn 262 s; 10-NN shape agreement of the 2-D maps 0.693, 0.636 and 0.692. UMAP
  is faster on one map, but it installs about 210 MB (numba, llvmlite, pynndescent) against openTSNE's 13 MB
  (numpy, scipy and scikit-learn, which we have), compiles with numba in a fresh environment (17 s for the
  first import here) and runs on one thread when seeded, while openTSNE gives the same map for the same seed
  on every core and keeps more of each point's neighbourhood. t-SNE costs minutes per cut at 20,000 points
  on 2 cores, so it draws at most 5,000 by default.

Above a method's threshold (DEFAULT_MAX_POINTS) a seeded sample stratified by the colouring task is drawn,
and the figure says how many of how many images it shows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.linalg import orthogonal_procrustes

from .data.base import Dataset, stratified_indices
from .device import resolve_device
from .errors import ConfigError, MissingExtraError, did_you_mean
from .features import Features
from .models import Cut
from .progress import Progress, Reporter, ShouldStop
from .stats import Resampler

METHODS = ("pca", "tsne")
METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE"}
#: points drawn per map unless the caller says otherwise (t-SNE costs about a minute per cut at 20,000 on 2 cores)
DEFAULT_MAX_POINTS = {"pca": 20_000, "tsne": 5_000}
DEFAULT_K = 10
#: the neighbourhood score's query points (their neighbours are searched among all drawn points)
SCORE_QUERIES = 2_000
#: exact PCA (d x d covariance) up to this feature dimension, randomised low-rank PCA above
EXACT_PCA_MAX_DIM = 2048
_CHUNK = 4096


def _eigh_one_thread(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.linalg.eigh on one thread: a d x d eigenproblem (d <= 2048) takes 0.05-2 s alone, but 10-100x as long
    when its threads compete with other work for a busy CPU (measured on the 2-core machine, d = 512)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return torch.linalg.eigh(a)
    finally:
        torch.set_num_threads(threads)


def pca_2d(x: torch.Tensor, device: str | torch.device | None = None, seed: int = 0) -> np.ndarray:
    """Scores of x [n, d] on its top two principal components (centred) -> float64 [n, 2].

    Above EXACT_PCA_MAX_DIM dimensions the randomised low-rank PCA (20 components, 8 power iterations) is
    seeded by `seed`; it matches the exact projection to about 1e-5 of the scores' range on test spectra.
    Signs are fixed so that each component's score of largest magnitude is positive (PCA defines a component
    only up to sign); alignment across cuts (align_maps) also allows reflections.
    """
    dev = resolve_device(device) if device is not None else x.device
    n, d = x.shape
    if n < 2:
        raise ConfigError(f"A PCA map needs at least 2 points, got {n}.")
    acc = torch.float32 if dev.type == "mps" else torch.float64  # MPS has no float64
    mean = torch.zeros(d, dtype=acc, device=dev)
    for s in range(0, n, _CHUNK):
        mean += x[s:s + _CHUNK].to(dev).sum(0, dtype=acc)
    mean = (mean / n).float()

    def centred(s: int) -> torch.Tensor:  # float32 products per chunk of rows, summed in float64: 2-4x faster
        return x[s:s + _CHUNK].to(dev, torch.float32) - mean

    if d <= EXACT_PCA_MAX_DIM:
        cov = torch.zeros((d, d), dtype=acc, device=dev)
        for s in range(0, n, _CHUNK):
            xc = centred(s)
            cov += (xc.T @ xc).to(acc)
        _, vecs = _eigh_one_thread(cov.cpu().double())  # ascending eigenvalues
        comps = vecs[:, -2:].flip(1) if d >= 2 else torch.cat([vecs, torch.zeros_like(vecs)], 1)
    else:
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):  # seeded, the caller's RNG untouched
            torch.manual_seed(seed)
            _, _, v = torch.pca_lowrank(x.to(dev, torch.float32), q=min(d, 20), center=True, niter=8)
        comps = v[:, :2].cpu().double()
    comps = comps.to(dev, torch.float32)
    scores = torch.cat([centred(s) @ comps for s in range(0, n, _CHUNK)])
    scores = scores.cpu().double().numpy()
    flip = np.sign(scores[np.argmax(np.abs(scores), axis=0), [0, 1]])
    return scores * np.where(flip == 0, 1.0, flip)


def _open_tsne():
    try:
        import openTSNE  # optional dependency: the 'tsne' extra
    except ImportError:
        raise MissingExtraError("t-SNE maps need openTSNE, which the optional extra 'tsne' installs: "
                                "pip install 'gr-explorer[tsne]'. Valid without it: method 'pca'.") from None
    return openTSNE


def tsne_2d(x: torch.Tensor, seed: int = 0, n_jobs: int | None = None) -> np.ndarray:
    """openTSNE map of x [n, d] (cosine affinities, seeded: the same map for the same points and seed) -> [n, 2]."""
    openTSNE = _open_tsne()
    if x.shape[0] < 4:
        raise ConfigError(f"A t-SNE map needs at least 4 points, got {x.shape[0]}. Valid: method 'pca'.")
    perplexity = min(30.0, (x.shape[0] - 1) / 3.0)
    tsne = openTSNE.TSNE(n_components=2, perplexity=perplexity, metric="cosine", random_state=int(seed),
                         n_jobs=n_jobs or torch.get_num_threads(), verbose=False)
    return np.asarray(tsne.fit(x.float().cpu().numpy().astype(np.float64)), dtype=np.float64)


def normalise_map(m: np.ndarray) -> np.ndarray:
    """Centre a map and scale it to unit RMS distance from the origin (cuts' feature scales differ by orders)."""
    z = np.asarray(m, dtype=np.float64) - np.mean(m, axis=0)
    rms = float(np.sqrt((z ** 2).sum(1).mean()))
    return z / rms if rms > 0 else z


def align_maps(maps: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Normalised maps, each rotated/reflected onto the previous aligned one (orthogonal Procrustes, same rows)."""
    out: list[np.ndarray] = []
    for m in maps:
        z = normalise_map(m)
        if out:
            rotation, _ = orthogonal_procrustes(z, out[-1])
            z = z @ rotation
        out.append(z)
    return out


def cosine_neighbours(x: torch.Tensor, queries: np.ndarray, k: int,
                      device: str | torch.device | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The k rows of x [n, d] most cosine-similar to each row x[q] for q in `queries`, q itself excluded.

    Returns (positions [len(queries), k], similarities [len(queries), k]), most similar first.
    """
    dev = resolve_device(device) if device is not None else x.device
    n = x.shape[0]
    k = min(int(k), n - 1)
    bank = F.normalize(x.to(dev, torch.float32), dim=1)
    queries = np.asarray(queries, dtype=np.int64)
    pos, sims = [], []
    for s in range(0, len(queries), 1024):
        q = torch.as_tensor(queries[s:s + 1024], device=dev)
        sim = bank[q] @ bank.T
        sim[torch.arange(len(q), device=dev), q] = -float("inf")
        top, idx = sim.topk(k, dim=1)
        pos.append(idx.cpu().numpy())
        sims.append(top.cpu().numpy())
    return np.concatenate(pos), np.concatenate(sims)


def knn_agreement(neighbours: np.ndarray, queries: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per query: the fraction of its neighbours (positions [q, k]) whose label equals its own -> [q]."""
    labels = np.asarray(labels)
    return (labels[neighbours] == labels[np.asarray(queries)][:, None]).mean(1)


def chance_agreement(queries: np.ndarray, labels: np.ndarray) -> float:
    """Expected agreement if the k neighbours were drawn at random from the other points: mean (n_c - 1) / (n - 1)."""
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    return float(np.mean((counts[labels[np.asarray(queries)]] - 1) / max(1, len(labels) - 1)))


@dataclass
class Embedding:
    """2-D maps of the same drawn images at every cut, aligned, with each cut's neighbourhood score."""

    cuts: list[Cut]
    method: str
    split: str
    index: np.ndarray  # [n] the drawn images' indices in the split
    maps: dict[str, np.ndarray]  # cut -> [n, 2], aligned across cuts
    labels: dict[str, np.ndarray]  # task -> [n] class ids of the drawn images
    classes: dict[str, list[str]]  # task -> class names
    scores: pd.DataFrame  # SCORE_COLUMNS: one row per (cut, task)
    n_total: int  # images in the split
    stratify: str  # the task the sample was stratified by
    seed: int
    k: int
    features: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)  # cut -> the split's features
    seconds: dict[str, float] = field(default_factory=dict)  # reduce, align, score

    @property
    def n_drawn(self) -> int:
        return len(self.index)

    def cut(self, name: str) -> Cut:
        for c in self.cuts:
            if c.name == name:
                return c
        raise ConfigError(f"cut {name!r} is not in this embedding. {did_you_mean(name, [c.name for c in self.cuts])}")

    def score(self, cut: str, task: str) -> pd.Series:
        row = self.scores[(self.scores["cut"] == cut) & (self.scores["task"] == task)]
        if row.empty:
            raise ConfigError(f"No neighbourhood score for cut {cut!r} and task {task!r}. "
                              f"{did_you_mean(task, list(self.labels))}")
        return row.iloc[0]

    def class_names(self, task: str) -> np.ndarray:
        """The drawn images' class names for a task."""
        names = self.classes.get(task) or [str(i) for i in range(int(self.labels[task].max()) + 1)]
        return np.asarray(names, dtype=object)[self.labels[task]]

    def table(self) -> pd.DataFrame:
        """One row per (cut, drawn image): cut, depth, part, index, x, y, and one class-name column per task."""
        parts = []
        names = {t: self.class_names(t) for t in self.labels}
        for c in self.cuts:
            m = self.maps[c.name]
            parts.append(pd.DataFrame({"cut": c.name, "depth": c.depth, "part": c.part, "index": self.index,
                                       "x": m[:, 0], "y": m[:, 1], **names}))
        return pd.concat(parts, ignore_index=True)

    def neighbours(self, cut: str, position: int, k: int | None = None,
                   device: str | torch.device | None = None) -> pd.DataFrame:
        """The k drawn images nearest (cosine, the cut's full features) to the drawn image at `position`.

        For the app's click handler: one row per neighbour with its position in the drawn sample, its index
        in the split, its similarity and its class names; the first row is the clicked image itself.
        """
        self.cut(cut)
        if not 0 <= int(position) < self.n_drawn:
            raise ConfigError(f"position {position} is not a drawn point. Valid: 0 to {self.n_drawn - 1}.")
        x = self.features[cut][torch.as_tensor(self.index)]
        pos, sims = cosine_neighbours(x, np.array([int(position)]), k or self.k, device)
        rows = np.concatenate([[int(position)], pos[0]])
        out = pd.DataFrame({"position": rows, "index": self.index[rows], "similarity": np.concatenate([[1.0], sims[0]])})
        for task in self.labels:
            out[task] = self.class_names(task)[rows]
        return out


    def all_neighbours(self, k: int | None = None, device: str | torch.device | None = None) -> dict[str, np.ndarray]:
        """{cut: positions [n, k]}: every drawn image's k nearest drawn images at every cut (cosine, full features),
        the image itself excluded; what a page needs to answer a click without asking the server again."""
        queries = np.arange(self.n_drawn)
        return {c.name: cosine_neighbours(self.features[c.name][torch.as_tensor(self.index)], queries, k or self.k,
                                          device)[0] for c in self.cuts}


SCORE_COLUMNS = ["cut", "depth", "part", "task", "k", "agreement", "ci_low", "ci_high", "chance", "n_queries",
                 "n_points"]


def check_settings(dataset: Dataset, *, task: str | None, method: str, split: str, max_points: int | str | None,
                   k: int, view: str = "base") -> tuple[str, int | None]:
    """Validate an embedding's settings before any work (the CLI calls it before extracting features).

    Returns the colouring task (default: the view's first) and the number of points to draw at most.
    """
    if method not in METHODS:
        raise ConfigError(f"Embedding method {method!r} is unknown. {did_you_mean(str(method), METHODS)}")
    if method == "tsne":
        _open_tsne()
    if split not in ("train", "test"):
        raise ConfigError(f"split {split!r} is invalid. Valid: train, test.")
    tasks = dataset.view_tasks(view)
    task = task or tasks[0]
    if task not in tasks:
        raise ConfigError(f"Task {task!r} cannot colour an embedding of {dataset.name!r} (derived tasks have their own "
                          f"images). {did_you_mean(task, tasks)}")
    if max_points == "auto":
        max_points = DEFAULT_MAX_POINTS[method]
    if max_points is not None and (not isinstance(max_points, int) or isinstance(max_points, bool) or max_points < 2):
        raise ConfigError(f"max_points={max_points!r} is invalid. Valid: an integer >= 2, 'auto' "
                          f"({DEFAULT_MAX_POINTS[method]:,} for {method}), or None for every image.")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"k={k!r} is invalid. Valid: an integer >= 1 (e.g. {DEFAULT_K}).")
    return task, max_points


def draw_sample(labels: np.ndarray, max_points: int | None, seed: int) -> np.ndarray:
    """Indices of a seeded sample of at most `max_points`, stratified by `labels` (all, in order, below it)."""
    return stratified_indices(np.asarray(labels), max_points, seed)


def embed_cuts(features: Features, dataset: Dataset, *, task: str | None = None, method: str = "pca",
               split: str = "test", max_points: int | str | None = "auto", k: int = DEFAULT_K, seed: int = 0,
               device: str | torch.device | None = None, bootstrap: int = 1000, progress: Progress | None = None,
               should_stop: ShouldStop | None = None, model: str = "") -> Embedding:
    """Maps of one model's features at every cut of `features` on one split of `dataset`, aligned across cuts.

    task: the colouring task; the sample is stratified by it (default: the view's first task). max_points: 'auto'
    for the method's threshold (DEFAULT_MAX_POINTS), None for every image. Reports
    ProgressEvent('embed', cuts done, cuts) and stops between cuts when `should_stop()` says so.
    """
    task, max_points = check_settings(dataset, task=task, method=method, split=split, max_points=max_points, k=k,
                                      view=features.view)
    labels_t = dataset.view_labels(features.view, split)
    split_feats = features.train if split == "train" else features.test
    labels = {t: y.numpy() if isinstance(y, torch.Tensor) else np.asarray(y) for t, y in labels_t.items()}
    n_total = len(labels[task])
    index = draw_sample(labels[task], max_points, seed)
    drawn = {t: y[index] for t, y in labels.items()}
    queries = draw_sample(drawn[task], SCORE_QUERIES, seed + 1)
    resampler = Resampler(len(queries), bootstrap, seed)
    chance = {t: chance_agreement(queries, y) for t, y in drawn.items()}
    report = Reporter(progress, should_stop, "embed", len(features.cuts), model)
    raw, rows, seconds = {}, [], {"reduce": 0.0, "score": 0.0, "align": 0.0}
    take = torch.as_tensor(index)
    for c in features.cuts:
        x = split_feats[c.name][take]
        t0 = time.perf_counter()
        raw[c.name] = pca_2d(x, device, seed) if method == "pca" else tsne_2d(x, seed)
        t1 = time.perf_counter()
        nb, _ = cosine_neighbours(x, queries, k, device)
        per_point = np.stack([knn_agreement(nb, queries, y) for y in drawn.values()])
        lo, hi = resampler.interval(per_point)
        for i, t in enumerate(drawn):
            rows.append({"cut": c.name, "depth": c.depth, "part": c.part, "task": t, "k": nb.shape[1],
                         "agreement": float(per_point[i].mean()), "ci_low": float(lo[i]), "ci_high": float(hi[i]),
                         "chance": chance[t], "n_queries": len(queries), "n_points": len(index)})
        seconds["reduce"] += t1 - t0
        seconds["score"] += time.perf_counter() - t1
        report.tick(1, c.name)
    t0 = time.perf_counter()
    maps = dict(zip(raw, align_maps(list(raw.values()))))
    seconds["align"] = time.perf_counter() - t0
    return Embedding(list(features.cuts), method, split, index, maps, drawn, dict(dataset.classes),
                     pd.DataFrame(rows, columns=SCORE_COLUMNS), n_total, task, seed, k, dict(split_feats), seconds)


__all__ = ["DEFAULT_K", "DEFAULT_MAX_POINTS", "Embedding", "METHODS", "SCORE_COLUMNS", "align_maps", "chance_agreement",
           "check_settings", "cosine_neighbours", "draw_sample", "embed_cuts", "knn_agreement", "normalise_map", "pca_2d", "tsne_2d"]

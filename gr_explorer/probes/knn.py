"""Cosine k-NN probes with temperature-weighted votes (as in InstDisc / DINO).

Features are L2-normalised; each query's neighbours are the bank samples of
highest cosine similarity, and neighbour j votes for its class with weight
exp(sim_j / T). Several k are scored from ONE top-k_max search, queries are
processed in chunks (memory ~ chunk_size x bank size), and every task is voted
from the same neighbour list.

At a million images (when the normalised bank and a chunk's similarities would
exceed `memory_budget`) the search is streamed: the bank is read in chunks from
where the features live (a float16 memory map), normalised on the device, and
each query's running top-k is merged with every bank chunk's (exact top-k by
blocked matmul, one pass over the bank per block of queries that fits).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F

from . import matmul
from .base import Head, ProbeResult
from .rows import RowSource

DEFAULT_KS: tuple[int, ...] = (5, 10, 20, 50)
DEFAULT_TEMPERATURE = 0.07
DEFAULT_CHUNK_SIZE = 1024


def _normalize(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return F.normalize(x.to(device=device, dtype=torch.float32), dim=1)


def _neighbours(
    bank: torch.Tensor, queries: torch.Tensor, k_max: int, chunk_size: int
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Yield (start, sims [c, k_max] descending, indices [c, k_max]) for query chunks (inputs normalised)."""
    k_max = min(k_max, bank.shape[0])
    for start in range(0, queries.shape[0], chunk_size):
        sims = matmul.mm(queries[start : start + chunk_size], bank.T)
        top, idx = sims.topk(k_max, dim=1, largest=True, sorted=True)
        yield start, top, idx


def _neighbours_streamed(
    bank: RowSource, queries: RowSource, k_max: int, chunk_size: int, query_block: int
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """`_neighbours` over raw (unnormalised) row sources: for each block of queries, one pass over the bank's
    chunks, each query's top k_max so far merged with the chunk's. The same neighbours as the one-shot search
    (up to the order of exactly tied similarities)."""
    k_max = min(k_max, bank.n)
    for q0 in range(0, queries.n, query_block):
        q = F.normalize(queries.read(q0, min(q0 + query_block, queries.n)), dim=1)
        top = torch.full((q.shape[0], k_max), float("-inf"), device=q.device)
        idx = torch.zeros((q.shape[0], k_max), dtype=torch.long, device=q.device)
        for b0, b1, b in bank.chunks():
            b = F.normalize(b, dim=1)
            for s in range(0, q.shape[0], chunk_size):
                e = min(s + chunk_size, q.shape[0])
                t, i = matmul.mm(q[s:e], b.T).topk(min(k_max, b1 - b0), dim=1, largest=True, sorted=True)
                both_t, both_i = torch.cat([top[s:e], t], 1), torch.cat([idx[s:e], i + b0], 1)
                top[s:e], pos = both_t.topk(k_max, dim=1, largest=True, sorted=True)
                idx[s:e] = both_i.gather(1, pos)
        for s in range(0, q.shape[0], chunk_size):
            yield q0 + s, top[s : s + chunk_size], idx[s : s + chunk_size]


def _vote(
    sims: torch.Tensor, nb_labels: torch.Tensor, ks: Sequence[int], temperature: float, num_classes: int
) -> dict[int, torch.Tensor]:
    """Weighted votes of the first k neighbours for each k -> predicted class [c] per k.

    Weights exp(sim / T) are computed as exp((sim - sim_max) / T): the same up to a
    per-query factor (so the same argmax) but without overflow for small T.
    Ties in the vote go to the lowest class id.
    """
    w = torch.exp((sims - sims[:, :1]) / temperature)
    k_max = sims.shape[1]
    out = {}
    for k in ks:
        kk = min(int(k), k_max)
        votes = torch.zeros((sims.shape[0], num_classes), dtype=w.dtype, device=w.device)
        votes.scatter_add_(1, nb_labels[:, :kk], w[:, :kk])
        out[int(k)] = votes.argmax(1)
    return out


def knn_predict(
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    queries: torch.Tensor,
    ks: Sequence[int] = DEFAULT_KS,
    temperature: float = DEFAULT_TEMPERATURE,
    num_classes: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> dict[int, torch.Tensor]:
    """Cosine k-NN predictions for every k in `ks` from one top-max(ks) search.

    bank [Nb, D], bank_labels [Nb] (0..C-1), queries [Nq, D] -> {k: LongTensor [Nq]} on
    the bank's device. A k larger than the bank uses the whole bank.
    """
    device = bank.device
    bank_n = _normalize(bank, device)
    q_n = _normalize(queries, device)
    labels = bank_labels.to(device).long()
    if num_classes is None:
        num_classes = int(labels.max()) + 1
    ks = [int(k) for k in ks]
    preds = {k: torch.empty(q_n.shape[0], dtype=torch.long, device=device) for k in ks}
    for start, sims, idx in _neighbours(bank_n, q_n, max(ks), chunk_size):
        for k, p in _vote(sims, labels[idx], ks, temperature, num_classes).items():
            preds[k][start : start + len(p)] = p
    return preds


@dataclass
class KnnProbeResult:
    """One (cut, task): chosen k, its validation accuracy, test accuracy and per-image correctness against the full train bank.

    `k_used` is the k the test vote really used: min(k, train bank size).
    """

    k: int
    val_accuracy: float
    accuracy: float
    val_accuracies: dict[int, float] = field(default_factory=dict)
    k_used: int = 0
    correct: torch.Tensor | None = None  # bool [n_test]
    val_correct: torch.Tensor | None = None  # bool [n_val]: validation hits of the chosen k (bank: the fit rows)


def _multi_task_correct(
    bank: torch.Tensor | RowSource,
    bank_y: torch.Tensor,
    queries: torch.Tensor | RowSource,
    query_y: torch.Tensor,
    ks_per_task: Sequence[Sequence[int]],
    temperature: float,
    n_classes: Sequence[int],
    chunk_size: int,
    query_block: int = 0,
    pulse: Callable[[], None] | None = None,
) -> list[dict[int, torch.Tensor]]:
    """Per-query hits (bool [Nq]) per task per k; one neighbour search for all tasks. bank_y [Nb, T], query_y [Nq, T].
    `bank`, `queries`: normalised tensors, or RowSources searched streamed (`query_block` queries per bank pass).
    `pulse()` after every chunk of queries (it may raise to stop)."""
    k_max = max(max(ks) for ks in ks_per_task)
    streamed = isinstance(bank, RowSource)
    nq = queries.n if streamed else queries.shape[0]
    hits = [{int(k): torch.zeros(nq, dtype=torch.bool, device=bank_y.device) for k in ks} for ks in ks_per_task]
    search = _neighbours_streamed(bank, queries, k_max, chunk_size, query_block) if streamed else \
        _neighbours(bank, queries, k_max, chunk_size)
    for start, sims, idx in search:
        nb = bank_y[idx]  # [c, k, T]
        yq = query_y[start : start + sims.shape[0]]
        for ti, ks in enumerate(ks_per_task):
            for k, p in _vote(sims, nb[:, :, ti], ks, temperature, n_classes[ti]).items():
                hits[ti][k][start : start + len(p)] = p == yq[:, ti]
        if pulse is not None:
            pulse()
    return hits


def fit_knn_probes(
    train_feats: Mapping[str, torch.Tensor],
    train_labels: Mapping[str, torch.Tensor],
    test_feats: Mapping[str, torch.Tensor],
    test_labels: Mapping[str, torch.Tensor],
    *,
    fit_idx: torch.Tensor,
    val_idx: torch.Tensor,
    ks: Sequence[int] | None = None,
    temperature: float = DEFAULT_TEMPERATURE,
    n_classes: Mapping[str, int] | None = None,
    device: torch.device | str = "cpu",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    memory_budget: int | None = None,
    bank_chunk: int | None = None,
    progress: Callable[[int, str], None] | None = None,
    refit_idx: torch.Tensor | None = None,
) -> dict[tuple[str, str], KnnProbeResult]:
    """Fit the k-NN probe for every (cut, task); inputs are assumed validated (see run_probes).

    k is chosen per (cut, task) with bank = train[fit_idx], queries = train[val_idx]
    (best accuracy; ties -> the larger k, the smoother vote), then test queries are
    scored against the train bank `train[refit_idx]` (None: the full train set) with that k. A cut whose in-memory search would
    exceed `memory_budget` bytes (None: no limit) is searched streamed (see the module
    docstring; `bank_chunk` forces that, with that many bank rows per chunk).
    `progress(n_done, message)` is called after each cut, and with n_done = 0 after every chunk of queries
    (still working); it may raise to stop.
    """
    device = torch.device(device)
    ks = sorted({int(k) for k in (DEFAULT_KS if ks is None else ks)})
    cuts, tasks = list(train_feats), list(train_labels)
    if n_classes is None:
        n_classes = {t: int(max(train_labels[t].max(), test_labels[t].max())) + 1 for t in tasks}
    nc = [n_classes[t] for t in tasks]
    y_train = torch.stack([train_labels[t].long() for t in tasks], 1).to(device)
    y_test = torch.stack([test_labels[t].long() for t in tasks], 1).to(device)
    fit_d, val_d = fit_idx.to(device), val_idx.to(device)
    refit_d = None if refit_idx is None else refit_idx.to(device)
    y_bank = y_train if refit_d is None else y_train[refit_d]
    n_val = len(val_idx)
    results: dict[tuple[str, str], KnnProbeResult] = {}
    for cut in cuts:
        pulse = None
        if progress is not None:
            def pulse(cut: str = cut) -> None:
                progress(0, f"knn: {cut}")
        plan = _stream_plan(train_feats[cut].shape, test_feats[cut].shape[0], max(ks), chunk_size, memory_budget,
                            bank_chunk)
        if plan is None:  # in memory: normalised tensors on the device
            train_n, block = _normalize(train_feats[cut], device), 0
            bank, fit_bank, val_queries = train_n if refit_d is None else train_n[refit_d], train_n[fit_d], train_n[val_d]
            test_queries = _normalize(test_feats[cut], device)
        else:  # streamed: row sources read chunk by chunk from where the features live
            chunk, block = plan
            full = RowSource(train_feats[cut], device, chunk)
            fit_bank, val_queries = full.subset(fit_idx.cpu()), full.subset(val_idx.cpu())
            bank = full if refit_idx is None else full.subset(refit_idx.cpu())
            test_queries = RowSource(test_feats[cut], device, chunk)
        val_hits = _multi_task_correct(
            fit_bank, y_train[fit_d], val_queries, y_train[val_d], [ks] * len(tasks), temperature, nc, chunk_size, block,
            pulse)
        val_correct = [{k: int(h.sum()) for k, h in per_k.items()} for per_k in val_hits]
        chosen = []
        for ti in range(len(tasks)):
            # max over (count, k): ties -> larger k
            chosen.append(max(ks, key=lambda k: (val_correct[ti][k], k)))
        test_hits = _multi_task_correct(
            bank, y_bank, test_queries, y_test, [[k] for k in chosen], temperature, nc, chunk_size, block, pulse)
        n_test, n_bank = y_test.shape[0], y_bank.shape[0]
        for ti, task in enumerate(tasks):
            k = chosen[ti]
            hits = test_hits[ti][k].cpu()
            results[(cut, task)] = KnnProbeResult(
                k=k,
                val_accuracy=val_correct[ti][k] / n_val,
                accuracy=float(hits.sum()) / n_test,
                val_accuracies={kk: val_correct[ti][kk] / n_val for kk in ks},
                k_used=min(k, n_bank),
                correct=hits,
                val_correct=val_hits[ti][k].cpu(),
            )
        if progress is not None:
            progress(len(tasks), f"knn: {cut}")
    return results


def _stream_plan(train_shape, n_test: int, k_max: int, chunk_size: int, budget: int | None,
                 bank_chunk: int | None) -> tuple[int, int] | None:
    """(bank rows per chunk, queries per bank pass) when a cut must be searched streamed, else None.

    In memory the search holds the normalised train features and their fit / val copies (2 N D), the test
    features, and a chunk's similarities and top-k workspace against the whole bank (2 x chunk_size x N), in
    float32. Streamed, a quarter of the budget holds a block of normalised queries and their running top k_max
    (value and index, 12 bytes each), half the bank chunk (raw gather and normalised copy, 8 D bytes a row) and
    the similarities (8 x chunk_size bytes a row)."""
    n, d = int(train_shape[0]), int(train_shape[1])
    if bank_chunk is None:
        if budget is None or 4 * (2 * n * d + n_test * d + 2 * chunk_size * n) <= budget:
            return None
        bank_chunk = max(chunk_size, budget // 2 // (8 * d + 8 * chunk_size))
    query_block = n if budget is None else max(chunk_size, budget // 4 // (4 * d + 12 * k_max))
    return int(bank_chunk), int(query_block)


class KnnHead(Head):
    """The k-NN probe as a sweep head: k chosen on validation from `ks`."""

    name, hparam = "knn", "k"

    def __init__(self, ks: Sequence[int] | None = None, temperature: float = DEFAULT_TEMPERATURE,
                 chunk_size: int = DEFAULT_CHUNK_SIZE, memory_budget: int | None = None):
        self.ks, self.temperature, self.chunk_size, self.memory_budget = ks, temperature, chunk_size, memory_budget

    def fit(self, train_feats, train_labels, test_feats, test_labels, *, fit_idx, val_idx, n_classes, device, tick,
            refit_idx=None):
        res = fit_knn_probes(train_feats, train_labels, test_feats, test_labels, fit_idx=fit_idx, val_idx=val_idx,
                             ks=self.ks, temperature=self.temperature, n_classes=n_classes, device=device,
                             chunk_size=self.chunk_size, memory_budget=self.memory_budget, progress=tick,
                             refit_idx=refit_idx)
        return {(cut, task): ProbeResult(cut, task, self.name, r.accuracy, r.val_accuracy, self.hparam, float(r.k),
                                         int(r.k_used), n_classes[task],
                                         search={float(k): v for k, v in r.val_accuracies.items()}, correct=r.correct,
                                         val_correct=r.val_correct)
                for (cut, task), r in res.items()}


__all__ = ["DEFAULT_KS", "DEFAULT_TEMPERATURE", "KnnHead", "KnnProbeResult", "fit_knn_probes", "knn_predict"]

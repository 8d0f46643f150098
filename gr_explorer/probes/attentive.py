"""Attentive probes: multi-query cross-attention over a cut's tokens, for many cuts, tasks and settings at once.

The head is the efficient multi-query form of attentive probing (Psomas et al. 2025, arXiv 2506.10178; written
here from the paper's idea): M learned queries attend over an image's T tokens directly in the feature space
(no key, query or value projection), a_m = softmax_t(q_m . x_t / sqrt(C)), and query m pools its own share of
the channels (channel group m, about C / M wide) with its attention; the pooled vector [C] feeds a linear
classifier. Parameters per head: M C + C K + K. The queries start small, so the attention starts uniform and
the head starts as a linear classifier on the mean token; a cut that is a vector (pool, projector layers, the
pixels baseline) is one token, where the head is a linear classifier trained with AdamW.

Tokens are standardised per channel with the statistics of the rows being fitted (over rows and tokens), so
one learning-rate grid serves cuts of any scale.

Training: every (cut, task, learning rate, weight decay) is one head. AdamW (decoupled weight decay on the
queries and the classifier weights, none on the bias) on minibatches of `batch_size` rows, in one seeded order
per epoch that every head shares; the validation accuracy of every head is measured after every epoch and a
head's weights at its best epoch are kept (ties: the earlier epoch); a head stops counting once `patience`
epochs passed without improvement, and the loop ends when all heads stopped or after `max_epochs`.

Batching (the linear probe's idea: many heads on the same features): heads of cuts with the same token shape
[T, C] live in one tensor and run as batched matmuls (a ViT's blocks all share one); every head of a chunk of
cuts is one optimisation (one loop, one data order, one AdamW step). Adam's update is elementwise, so a head
follows the same trajectory alone or batched, up to the order of float sums. The AdamW step is written out
(`adamw_step`, checked against torch.optim.AdamW in the tests) because each head has its own learning rate and
weight decay inside one tensor, which torch's optimisers (one rate per parameter group) cannot express.

Selection and refit: per (cut, task), the (learning rate, weight decay) with the best validation accuracy (ties:
the smaller rate, then the larger decay) and its best epoch count E; the head is then trained afresh on the
refit rows (all train rows by default) for E epochs with the same initialisation and scored on test. When the
refit rows are the fit rows (a few-shot draw), that training is the search's own, so its weights are reused.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

from ..config import ATTENTIVE_PATIENCE, SweepConfig
from .base import Head, ProbeResult

#: the defaults are the sweep settings' (declared once, in config.py)
DEFAULT_LRS: tuple[float, ...] = SweepConfig.spec("attentive_lr").default
DEFAULT_WDS: tuple[float, ...] = SweepConfig.spec("attentive_wd").default
DEFAULT_QUERIES: int = SweepConfig.spec("attentive_queries").default
DEFAULT_EPOCHS: int = SweepConfig.spec("attentive_epochs").default
PATIENCE = ATTENTIVE_PATIENCE  # epochs without a better validation accuracy after which a head stops
BATCH_SIZE = 256
#: standard deviation of the initial queries: the attention starts (nearly) uniform
QUERY_INIT = 0.02
BETAS, EPS = (0.9, 0.999), 1e-8
#: live float32 copies per attention score in a step (scores, softmax, their gradients)
SCORE_COPIES = 4
#: rows of a float64 chunk when standardising (bounds that pass to ~64 MB at T x C = 1,000)
STAT_BYTES = 64 * 2**20


# ----------------------------------------------------------------------------------------------
# the optimiser


def adamw_step(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], state: list[dict], step: int,
               lr: torch.Tensor, wd: Sequence[torch.Tensor | float]) -> None:
    """One AdamW step (torch.optim.AdamW's update, amsgrad off) with a learning rate and a weight decay per head.

    `lr` and each `wd` broadcast against their parameter (a head dimension kept, the rest 1). In place.
    """
    b1, b2 = BETAS
    c1, c2 = 1 - b1 ** step, 1 - b2 ** step
    for p, g, s, decay in zip(params, grads, state, wd):
        if not s:
            s["m"], s["v"] = torch.zeros_like(p), torch.zeros_like(p)
        m, v = s["m"], s["v"]
        p.mul_(1 - lr * decay)
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        p.sub_(lr * (m / c1) / ((v / c2).sqrt() + EPS))


# ----------------------------------------------------------------------------------------------
# the heads of one group of cuts (same token shape)


@dataclass
class _Group:
    """Cuts of one token shape [T, C] and their heads: parameters [G, P, ...], P head columns (tasks x settings),
    each (cut, column) with its own learning rate and weight decay (`lr`, `wd` [G, P])."""

    cuts: list[str]
    T: int
    C: int
    M: int
    K: int
    task_of: torch.Tensor  # [P]: the task (index) of each head column
    lr: torch.Tensor  # [G, P]
    wd: torch.Tensor  # [G, P]
    mean: torch.Tensor | None = None  # [G, C]: standardisation of the rows being fitted
    inv: torch.Tensor | None = None
    params: list[torch.Tensor] = field(default_factory=list)  # Q [G, P, M, Cp], W [G, P, Cp, K], b [G, P, K]

    @property
    def P(self) -> int:
        return len(self.task_of)

    @property
    def Cp(self) -> int:
        """Channels padded to a multiple of M (zero channels get zero gradients and stay zero)."""
        return self.M * math.ceil(self.C / self.M)

    def init(self, seed: int, tasks: list[str], device: torch.device) -> None:
        """Queries drawn per (seed, cut, task), the same whatever else is trained beside them; classifier at zero."""
        G, P, Cp = len(self.cuts), self.P, self.Cp
        Q = torch.zeros((G, P, self.M, Cp))
        for gi, cut in enumerate(self.cuts):
            for ti, task in enumerate(tasks):
                gen = torch.Generator().manual_seed(_seed_of(seed, cut, task))
                Q[gi, self.task_of == ti, :, :self.C] = QUERY_INIT * torch.randn((self.M, self.C), generator=gen)
        self.params = [Q.to(device), torch.zeros((G, P, Cp, self.K), device=device),
                       torch.zeros((G, P, self.K), device=device)]
        for p in self.params:
            p.requires_grad_(True)

    def logits(self, X: torch.Tensor, params: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Standardised tokens X [G, B, T, Cp] -> logits [G, P, B, K]."""
        Q, W, b = params if params is not None else self.params
        G, B, T, Cp = X.shape
        P, M = self.P, self.M
        # scores [G, P M, B T]: the softmax runs over the last, contiguous axis; the 1/sqrt(C) scale goes on Q (small)
        scores = torch.bmm(Q.reshape(G, P * M, Cp) / math.sqrt(self.C), X.reshape(G, B * T, Cp).transpose(1, 2))
        att = scores.view(G, P, M, B, T).softmax(dim=-1)
        pooled = torch.einsum("gpmbt,gbtmd->gpbmd", att, X.view(G, B, T, M, Cp // M)).reshape(G, P, B, Cp)
        return torch.einsum("gpbc,gpck->gpbk", pooled, W) + b[:, :, None, :]

    def step_bytes(self, batch: int) -> int:
        """Peak bytes of one training step (float32): tokens, attention scores and their gradients, pooled vectors."""
        return 4 * len(self.cuts) * batch * (2 * self.T * self.Cp + SCORE_COPIES * self.T * self.P * self.M
                                             + 3 * self.P * (self.Cp + self.K))

    def adamw(self, grads, state: list[dict], step: int) -> None:
        """AdamW on Q and W (decayed) and b (not decayed), each head with its own rate and decay."""
        lr4, wd4 = self.lr[:, :, None, None], self.wd[:, :, None, None]
        adamw_step(self.params[:2], grads[:2], state[:2], step, lr4, [wd4, wd4])
        adamw_step(self.params[2:], grads[2:], state[2:], step, self.lr[:, :, None], [0.0])


def _seed_of(seed: int, cut: str, task: str) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(f"{cut}\x00{task}".encode())) % (2**63 - 1)


def _channel_stats(x: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and 1/std (0 where constant) of x[rows] over rows and tokens, in float64 chunks."""
    n, T, C = len(rows), x.shape[1], x.shape[2]
    step = max(1, STAT_BYTES // (8 * T * C))
    total = torch.zeros(C, dtype=torch.float64)
    for s in range(0, n, step):
        total += x[rows[s:s + step]].to(torch.float64).sum((0, 1))
    mean = total / (n * T)
    sq = torch.zeros(C, dtype=torch.float64)
    for s in range(0, n, step):
        sq += (x[rows[s:s + step]].to(torch.float64) - mean).square_().sum((0, 1))
    std = (sq / (n * T)).sqrt()
    const = std <= 1e-7 * mean.abs().clamp_min(1e-30) + 1e-12
    inv = torch.where(const, torch.zeros_like(std), 1.0 / torch.where(const, torch.ones_like(std), std))
    return mean.float(), inv.float()


# ----------------------------------------------------------------------------------------------
# one optimisation of many heads


class _Trainer:
    """The groups of one chunk of cuts trained together: one data order, one loop, one AdamW step per minibatch."""

    def __init__(self, groups: list[_Group], y: torch.Tensor, class_mask: torch.Tensor, device: torch.device,
                 batch_size: int, seed: int):
        self.groups, self.y, self.device = groups, y, device  # y [N_train, tasks] on the CPU
        self.class_mask = class_mask.to(device)  # [tasks, K]
        self.batch_size, self.seed = batch_size, seed

    def standardise(self, tokens: Mapping[str, torch.Tensor], rows: torch.Tensor) -> None:
        for g in self.groups:
            stats = [_channel_stats(tokens[c], rows) for c in g.cuts]
            g.mean = torch.stack([m for m, _ in stats]).to(self.device)
            g.inv = torch.stack([i for _, i in stats]).to(self.device)

    def batch(self, g: _Group, tokens: Mapping[str, torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
        """Standardised tokens of `rows` for every cut of a group: [G, B, T, Cp] float32 on the device."""
        X = torch.stack([tokens[c][rows] for c in g.cuts]).to(self.device, torch.float32)
        X = (X - g.mean[:, None, None, :]) * g.inv[:, None, None, :]
        return F.pad(X, (0, g.Cp - g.C)) if g.Cp != g.C else X

    def masked(self, g: _Group, logits: torch.Tensor) -> torch.Tensor:
        return logits.masked_fill(~self.class_mask[g.task_of.to(self.device)][None, :, None, :], float("-inf"))

    def loss(self, g: _Group, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Sum over heads of each head's mean cross-entropy (each head's gradient is its own loss's)."""
        logits = self.masked(g, g.logits(X))
        G, P, B, K = logits.shape
        target = y[:, g.task_of.to(self.device)].T.expand(G, P, B)
        return F.cross_entropy(logits.reshape(-1, K), target.reshape(-1), reduction="none").view(G, P, B).mean(-1).sum()

    @torch.no_grad()
    def hits(self, g: _Group, tokens: Mapping[str, torch.Tensor], y: torch.Tensor, rows: torch.Tensor,
             params: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Correct predictions [G, P, len(rows)] (bool) of a group's heads; y [N, tasks] of `tokens`' rows."""
        out = []
        for s in range(0, len(rows), self.batch_size):
            r = rows[s:s + self.batch_size]
            pred = self.masked(g, g.logits(self.batch(g, tokens, r), params)).argmax(-1)
            out.append(pred == y[r][:, g.task_of].T.to(self.device)[None])
        return torch.cat(out, dim=2)

    def train(self, tokens: Mapping[str, torch.Tensor], rows: torch.Tensor, epochs: int, *,
              val_rows: torch.Tensor | None = None, stop_at: dict[int, torch.Tensor] | None = None,
              patience: int = PATIENCE, each_epoch=None) -> dict[int, tuple]:
        """Train every group's heads on `rows` (minibatches in one seeded order per epoch).

        Early stopping (`val_rows`): per group (params at each head's best epoch, best epoch [G, P], validation hits
        there [G, P], still improving at the end [G, P]). Fixed epochs (`stop_at`: per group [G, P] epoch counts): the
        params after each head's count. Keyed by id(group).
        """
        state = {id(g): [{}, {}, {}] for g in self.groups}
        best = {id(g): [p.detach().clone() for p in g.params] for g in self.groups}
        zeros = {id(g): torch.zeros((len(g.cuts), g.P), dtype=torch.long, device=self.device) for g in self.groups}
        best_epoch = {k: v.clone() for k, v in zeros.items()}
        best_hits = {k: v - 1 for k, v in zeros.items()}
        done = {id(g): False for g in self.groups}
        gen = torch.Generator().manual_seed(int(self.seed))
        step = epoch = 0
        while epoch < epochs and not all(done.values()):
            epoch += 1
            order = rows[torch.randperm(len(rows), generator=gen)]
            for s in range(0, len(order), self.batch_size):
                r = order[s:s + self.batch_size]
                y = self.y[r].to(self.device)
                step += 1
                for g in self.groups:
                    if not done[id(g)]:
                        grads = torch.autograd.grad(self.loss(g, self.batch(g, tokens, r), y), g.params)
                        with torch.no_grad():
                            g.adamw(grads, state[id(g)], step)
            for g in self.groups:
                k = id(g)
                if done[k]:
                    continue
                if stop_at is not None:
                    _keep(best[k], g.params, stop_at[k] == epoch)
                    done[k] = bool((stop_at[k] <= epoch).all())
                    continue
                hits = self.hits(g, tokens, self.y, val_rows).sum(-1)
                better = hits > best_hits[k]
                best_hits[k] = torch.where(better, hits, best_hits[k])
                best_epoch[k] = torch.where(better, torch.full_like(best_epoch[k], epoch), best_epoch[k])
                _keep(best[k], g.params, better)
                done[k] = bool((epoch - best_epoch[k] >= patience).all())
            if each_epoch is not None:
                each_epoch(epoch)
        return {id(g): (best[id(g)], best_epoch[id(g)], best_hits[id(g)], epoch - best_epoch[id(g)] < patience)
                for g in self.groups}


def _keep(best: list[torch.Tensor], params: list[torch.Tensor], where: torch.Tensor) -> None:
    """best = params where `where` [G, P] holds (in place)."""
    with torch.no_grad():
        for b, p in zip(best, params):
            b.copy_(torch.where(where.view(*where.shape, *([1] * (p.ndim - 2))), p, b))


# ----------------------------------------------------------------------------------------------
# the probe


@dataclass
class AttentiveProbeResult:
    """One (cut, task): the chosen (lr, wd) and epoch count, validation accuracy per (lr, wd), test accuracy."""

    lr: float
    wd: float
    epochs: int
    val_accuracy: float
    accuracy: float
    val_accuracies: dict[tuple[float, float], float] = field(default_factory=dict)
    converged: bool = True  # stopped early: the validation accuracy had stopped improving before max_epochs
    correct: torch.Tensor | None = None  # bool [n_test]
    val_correct: torch.Tensor | None = None  # bool [n_val]: validation hits of the chosen (lr, wd) at its best epoch


def _plan(shapes: dict[tuple[int, int], list[str]], step_bytes, budget: int) -> list[list[tuple[tuple[int, int], list[str]]]]:
    """Chunks of [(token shape, cuts)] whose summed step bytes stay within `budget` (at least one cut a chunk)."""
    chunks, cur, used = [], {}, 0
    for shape, cuts in shapes.items():
        per_cut = step_bytes(shape)
        for c in cuts:
            if cur and used + per_cut > budget:
                chunks.append(list(cur.items()))
                cur, used = {}, 0
            cur.setdefault(shape, []).append(c)
            used += per_cut
    if cur:
        chunks.append(list(cur.items()))
    return chunks


def fit_attentive_probes(
    train_tokens: Mapping[str, torch.Tensor],
    train_labels: Mapping[str, torch.Tensor],
    test_tokens: Mapping[str, torch.Tensor],
    test_labels: Mapping[str, torch.Tensor],
    *,
    fit_idx: torch.Tensor,
    val_idx: torch.Tensor,
    lrs: Sequence[float] = DEFAULT_LRS,
    wds: Sequence[float] = DEFAULT_WDS,
    queries: int = DEFAULT_QUERIES,
    max_epochs: int = DEFAULT_EPOCHS,
    patience: int = PATIENCE,
    batch_size: int = BATCH_SIZE,
    n_classes: Mapping[str, int] | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
    memory_budget: int = 2 * 2**30,
    progress=None,
    refit_idx: torch.Tensor | None = None,
) -> dict[tuple[str, str], AttentiveProbeResult]:
    """Fit the attentive probe for every (cut, task) on tokens [N, T, C] (any float dtype, memory-mapped is fine).

    Cuts are trained in chunks whose steps fit `memory_budget` bytes (all cuts of one token shape batched in one
    tensor); `progress(n_done, message)` after each chunk may raise to stop. See the module docstring.
    """
    device = torch.device(device)
    cuts, tasks = list(train_tokens), list(train_labels)
    if n_classes is None:
        n_classes = {t: int(max(train_labels[t].max(), test_labels[t].max())) + 1 for t in tasks}
    grid = [(float(lr), float(wd)) for lr in sorted(lrs) for wd in sorted(wds, reverse=True)]
    H, K = len(grid), max(n_classes[t] for t in tasks)
    class_mask = torch.zeros((len(tasks), K), dtype=torch.bool)
    for ti, t in enumerate(tasks):
        class_mask[ti, :n_classes[t]] = True
    y_train = torch.stack([train_labels[t].long().cpu() for t in tasks], 1)
    y_test = torch.stack([test_labels[t].long().cpu() for t in tasks], 1)
    fit_idx, val_idx = fit_idx.cpu(), val_idx.cpu()
    refit = torch.arange(y_train.shape[0]) if refit_idx is None else refit_idx.cpu()
    reuse = refit_idx is not None and torch.equal(refit, fit_idx)
    test_rows = torch.arange(y_test.shape[0])
    search_task = torch.arange(len(tasks)).repeat_interleave(H)  # head column p = task * H + setting
    lr_grid = torch.tensor([lr for lr, _ in grid]).repeat(len(tasks))
    wd_grid = torch.tensor([wd for _, wd in grid]).repeat(len(tasks))
    shapes: dict[tuple[int, int], list[str]] = {}
    for c in cuts:
        shapes.setdefault((int(train_tokens[c].shape[1]), int(train_tokens[c].shape[2])), []).append(c)

    def step_bytes(shape):
        return _Group(["-"], *shape, queries, K, search_task, lr_grid[None], wd_grid[None]).step_bytes(
            min(batch_size, len(fit_idx)))

    def each_epoch(epoch):
        if progress is not None:
            progress(0, f"attentive: epoch {epoch}")  # lets a cancel stop between epochs

    results: dict[tuple[str, str], AttentiveProbeResult] = {}
    for chunk in _plan(shapes, step_bytes, memory_budget):
        def group(shape, names, task_of, lr, wd):
            g = _Group(names, *shape, queries, K, task_of, lr.to(device), wd.to(device))
            g.init(seed, tasks, device)
            return g

        search = [group(shape, names, search_task, lr_grid.expand(len(names), -1), wd_grid.expand(len(names), -1))
                  for shape, names in chunk]
        trainer = _Trainer(search, y_train, class_mask, device, batch_size, seed)
        trainer.standardise(train_tokens, fit_idx)
        found = trainer.train(train_tokens, fit_idx, max_epochs, val_rows=val_idx, patience=patience, each_epoch=each_epoch)
        chosen = {}
        for g in search:
            _, epoch, hits, improving = found[id(g)]
            G = len(g.cuts)
            by_setting = hits.view(G, len(tasks), H)
            h = by_setting.argmax(-1)  # first max: the smaller rate, then the larger decay
            col = torch.arange(len(tasks), device=h.device) * H + h
            chosen[id(g)] = (h.cpu(), epoch.gather(1, col).cpu(), by_setting.cpu(), improving.gather(1, col).cpu(), col)
        picked = []  # the chosen (lr, wd) heads at their best epoch: their validation hits, image by image
        for g in search:
            col = chosen[id(g)][4]
            params = [p.gather(1, col.view(*col.shape, *([1] * (p.ndim - 2))).expand(-1, -1, *p.shape[2:]))
                      for p in found[id(g)][0]]
            picked.append(_Group(g.cuts, g.T, g.C, queries, K, torch.arange(len(tasks)), g.lr.gather(1, col),
                                 g.wd.gather(1, col), g.mean, g.inv, params))
        val_hits = [trainer.hits(g2, train_tokens, y_train, val_idx).cpu() for g2 in picked]  # [G, tasks, n_val]
        if reuse:  # the refit would repeat the search's own training: take its weights at the chosen epoch
            final = picked
        else:
            final = []
            refits = [group((g.T, g.C), g.cuts, torch.arange(len(tasks)), g.lr.gather(1, chosen[id(g)][4]),
                            g.wd.gather(1, chosen[id(g)][4])) for g in search]
            trainer2 = _Trainer(refits, y_train, class_mask, device, batch_size, seed)
            trainer2.standardise(train_tokens, refit)
            stop_at = {id(g2): chosen[id(g)][1].to(device) for g, g2 in zip(search, refits)}
            epochs = int(max(int(chosen[id(g)][1].max()) for g in search))
            trained = trainer2.train(train_tokens, refit, epochs, stop_at=stop_at, each_epoch=each_epoch)
            for g2 in refits:
                g2.params = trained[id(g2)][0]
                final.append(g2)
        for g, g2, val in zip(search, final, val_hits):
            hits = trainer.hits(g2, test_tokens, y_test, test_rows).cpu()  # [G, tasks, n_test]
            h, epochs, by_setting, improving, _ = chosen[id(g)]
            n_val, n_test = len(val_idx), len(test_rows)
            for gi, cut in enumerate(g.cuts):
                for ti, task in enumerate(tasks):
                    lr, wd = grid[int(h[gi, ti])]
                    results[(cut, task)] = AttentiveProbeResult(
                        lr=lr, wd=wd, epochs=int(epochs[gi, ti]),
                        val_accuracy=float(by_setting[gi, ti, h[gi, ti]]) / n_val,
                        accuracy=float(hits[gi, ti].sum()) / n_test,
                        val_accuracies={grid[j]: float(by_setting[gi, ti, j]) / n_val for j in range(H)},
                        converged=not bool(improving[gi, ti]), correct=hits[gi, ti].clone(),
                        val_correct=val[gi, ti].clone())
        if progress is not None:
            done = [c for _, names in chunk for c in names]
            progress(len(done) * len(tasks), f"attentive: {', '.join(done)}")
    return {(c, t): results[(c, t)] for c in cuts for t in tasks}


class AttentiveHead(Head):
    """The attentive probe as a sweep head: (learning rate, weight decay) and the epoch count chosen on validation."""

    name, hparam, inputs = "attentive", "lr", "tokens"

    def __init__(self, lrs: Sequence[float] = DEFAULT_LRS, wds: Sequence[float] = DEFAULT_WDS,
                 queries: int = DEFAULT_QUERIES, max_epochs: int = DEFAULT_EPOCHS, seed: int = 0,
                 memory_budget: int = 2 * 2**30, patience: int = PATIENCE, batch_size: int = BATCH_SIZE):
        self.lrs, self.wds, self.queries, self.max_epochs = tuple(lrs), tuple(wds), queries, max_epochs
        self.seed, self.memory_budget, self.patience, self.batch_size = seed, memory_budget, patience, batch_size

    def fit(self, train_feats, train_labels, test_feats, test_labels, *, fit_idx, val_idx, n_classes, device, tick,
            refit_idx=None):
        res = fit_attentive_probes(train_feats, train_labels, test_feats, test_labels, fit_idx=fit_idx, val_idx=val_idx,
                                   lrs=self.lrs, wds=self.wds, queries=self.queries, max_epochs=self.max_epochs,
                                   patience=self.patience, batch_size=self.batch_size, n_classes=n_classes,
                                   device=device, seed=self.seed, memory_budget=self.memory_budget, progress=tick,
                                   refit_idx=refit_idx)
        return {(cut, task): ProbeResult(cut, task, self.name, r.accuracy, r.val_accuracy, self.hparam, r.lr, r.lr,
                                         n_classes[task], r.converged, r.epochs, dict(r.val_accuracies), r.correct,
                                         r.val_correct, also={"wd": r.wd})
                for (cut, task), r in res.items()}

    def unconverged(self, results) -> str:
        text = super().unconverged(results)
        return text.replace("did not converge", f"was still improving on validation after {self.max_epochs} epochs", 1)


__all__ = ["AttentiveHead", "AttentiveProbeResult", "adamw_step", "fit_attentive_probes"]

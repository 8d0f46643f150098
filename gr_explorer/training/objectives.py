"""Training objectives: the loss that sits on the projector output (the cut `projL`, or `pool` without projector).

Each objective is a small nn.Module with one surface, so the loop does not
care which one it runs:

* `setup(model, n_classes)` builds what the objective owns (BYOL's predictor
  and momentum target, the supervised classifier) once the model exists;
* `forward(model, views, labels)` returns the scalar loss;
* `step_end(model, step, total_steps)` runs after each optimiser step (BYOL's EMA);
* `lr_scales()` maps the parameters it trains at a multiple of the learning rate to that multiple (BYOL's predictor).

The pure loss functions (`nt_xent`, `label_aligned_nt_xent`, `vicreg_loss`,
`barlow_twins_loss`, `byol_loss`) are exported on their own so tests can check them against
straightforward reference formulas.
"""

from __future__ import annotations

import copy
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import TrainingError, did_you_mean

# ----------------------------------------------------------------------------------------------
# pure losses


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's NT-Xent over 2B embeddings [z1; z2]: row i's positive is its pair, every other row a negative."""
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, target)


def _off_diagonal(m: torch.Tensor) -> torch.Tensor:
    return m[~torch.eye(m.shape[0], dtype=torch.bool, device=m.device)]


def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, sim_coeff: float = 25.0, std_coeff: float = 25.0,
                cov_coeff: float = 1.0, eps: float = 1e-4) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """VICReg (Bardes et al. 2022, official code): invariance (MSE) + variance hinge on std + off-diagonal covariance."""
    z1, z2 = z1.float(), z2.float()
    n, d = z1.shape
    inv = F.mse_loss(z1, z2)
    c1, c2 = z1 - z1.mean(0), z2 - z2.mean(0)
    std1, std2 = torch.sqrt(c1.var(0) + eps), torch.sqrt(c2.var(0) + eps)
    var = F.relu(1 - std1).mean() / 2 + F.relu(1 - std2).mean() / 2
    cov1, cov2 = c1.T @ c1 / (n - 1), c2.T @ c2 / (n - 1)
    cov = _off_diagonal(cov1).pow(2).sum() / d + _off_diagonal(cov2).pow(2).sum() / d
    loss = sim_coeff * inv + std_coeff * var + cov_coeff * cov
    return loss, {"invariance": inv.detach(), "variance": var.detach(), "covariance": cov.detach()}


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 5e-3, eps: float = 1e-5) -> torch.Tensor:
    """Barlow Twins: cross-correlation of batch-standardised embeddings pushed to the identity."""
    z1, z2 = z1.float(), z2.float()
    n = z1.shape[0]
    z1 = (z1 - z1.mean(0)) / torch.sqrt(z1.var(0, unbiased=False) + eps)
    z2 = (z2 - z2.mean(0)) / torch.sqrt(z2.var(0, unbiased=False) + eps)
    c = z1.T @ z2 / n
    on = (torch.diagonal(c) - 1).pow(2).sum()
    off = _off_diagonal(c).pow(2).sum()
    return on + lambd * off


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """2 - 2 cos(p, z) averaged over the batch (z is the stop-gradient target)."""
    return (2 - 2 * F.cosine_similarity(p.float(), z.float().detach(), dim=-1)).mean()


def label_aligned_nt_xent(z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor, p: float,
                          temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent whose positive is, with weight p, another image of the anchor's class -- averaged over ALL of them.

    Rows are [z1; z2], two views of the same B images, so rows i and i + B
    show one image. Row i's loss is

        (1 - p) * SimCLR's row loss (positive: its other view; negatives: every other row)
        + p * mean over c in C(i) of  -log e^{s_ic} / (e^{s_ic} + sum_{n in N(i)} e^{s_in}),

    with s = cos / temperature, C(i) the rows of the OTHER images of i's class
    and N(i) the rows of the other classes (same-class rows are neither
    positives nor negatives of that term, as in SupCon). A row whose class
    has no other image in the batch keeps SimCLR's loss. p = 0 is SimCLR;
    p = 1 is SupCon with the positives kept out of each other's denominators.

    Every classmate rather than one sampled per anchor: same expected loss,
    far less gradient noise (see `LabelAligned` for why that decides whether
    training leaves the collapsed start).
    """
    b = z1.shape[0]
    if labels.shape != (b,):
        raise TrainingError(f"label_aligned_nt_xent needs one label per image: labels of shape ({b},), got {tuple(labels.shape)}.")
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = 2 * b
    sim = z @ z.T / temperature
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    own = torch.cat([torch.arange(b, n), torch.arange(0, b)]).to(z.device)
    simclr = F.cross_entropy(sim.masked_fill(eye, float("-inf")), own, reduction="none")
    if p == 0:
        return simclr.mean()
    lab = labels.to(z.device).repeat(2)
    same = lab[:, None] == lab[None, :]
    classmates = same.clone()
    classmates[torch.arange(n, device=z.device), own] = False
    classmates &= ~eye
    lse_neg = torch.logsumexp(sim.masked_fill(same, float("-inf")), dim=1, keepdim=True)  # -inf: no other class
    pair_loss = torch.logaddexp(sim, lse_neg) - sim  # [n, n]: -log of e^{s_ic} against the other classes
    n_mates = classmates.sum(1)
    aligned = pair_loss.masked_fill(~classmates, 0.0).sum(1) / n_mates.clamp_min(1)
    rows = torch.where(n_mates > 0, (1 - p) * simclr + p * aligned, simclr)
    return rows.mean()


# ----------------------------------------------------------------------------------------------
# objectives


class Objective(nn.Module):
    """Base: two views of one image, loss on the model output."""

    name = "objective"
    needs_labels = False
    n_views = 2

    def setup(self, model: nn.Module, n_classes: int | None = None) -> None:
        pass

    def lr_scales(self) -> dict[nn.Parameter, float]:
        return {}

    def forward(self, model: nn.Module, views: Sequence[torch.Tensor], labels: torch.Tensor | None = None) -> torch.Tensor:
        """Loss of a batch (`views`: one augmented copy of the batch per view; `labels`: its label task)."""
        z1, z2 = self._embed(model, views)
        return self.loss(z1, z2)

    @staticmethod
    def _embed(model, views):
        """Both views in ONE forward pass (so BatchNorm sees one batch, and it is faster)."""
        z = model(torch.cat(list(views)))
        return z.chunk(len(views))

    def loss(self, z1, z2):  # pragma: no cover - interface
        raise NotImplementedError

    def step_end(self, model: nn.Module, step: int, total_steps: int) -> None:
        pass

    def describe(self) -> dict:
        return {"name": self.name}


class SimCLR(Objective):
    name = "simclr"

    def __init__(self, temperature: float = 0.5, **_):
        super().__init__()
        self.temperature = float(temperature)

    def loss(self, z1, z2):
        return nt_xent(z1, z2, self.temperature)

    def describe(self):
        return {"name": self.name, "temperature": self.temperature}


class VICReg(Objective):
    name = "vicreg"

    def __init__(self, sim_coeff: float = 25.0, std_coeff: float = 25.0, cov_coeff: float = 1.0, **_):
        super().__init__()
        self.coeffs = (float(sim_coeff), float(std_coeff), float(cov_coeff))

    def loss(self, z1, z2):
        return vicreg_loss(z1, z2, *self.coeffs)[0]

    def describe(self):
        return {"name": self.name, "sim_coeff": self.coeffs[0], "std_coeff": self.coeffs[1], "cov_coeff": self.coeffs[2]}


class BarlowTwins(Objective):
    name = "barlow"

    def __init__(self, barlow_lambda: float = 5e-3, **_):
        super().__init__()
        self.lambd = float(barlow_lambda)

    def loss(self, z1, z2):
        return barlow_twins_loss(z1, z2, self.lambd)

    def describe(self):
        return {"name": self.name, "lambda": self.lambd}


def _out_dim(model) -> int:
    return int(model.cuts[-1].dim)


class BYOL(Objective):
    """Online model + predictor chase a momentum (EMA) copy of the model; cosine schedule tau_base -> 1."""

    name = "byol"

    def __init__(self, byol_tau: float = 0.99, byol_predictor_hidden: int = 512, byol_predictor_lr: float = 1.0, **_):
        super().__init__()
        self.tau_base, self.hidden, self.predictor_lr = float(byol_tau), int(byol_predictor_hidden), float(byol_predictor_lr)
        self.tau = self.tau_base
        self.predictor: nn.Module | None = None
        self.target: nn.Module | None = None

    def setup(self, model, n_classes=None):
        d = _out_dim(model)
        dev = next(model.parameters()).device
        self.predictor = nn.Sequential(nn.Linear(d, self.hidden, bias=False), nn.BatchNorm1d(self.hidden),
                                       nn.ReLU(inplace=True), nn.Linear(self.hidden, d)).to(dev)
        self.target = copy.deepcopy(model).requires_grad_(False)

    def forward(self, model, views, labels=None):
        x = torch.cat(list(views))
        p1, p2 = self.predictor(model(x)).chunk(2)
        with torch.no_grad():
            self.target.train(model.training)
            t1, t2 = self.target(x).chunk(2)
        return byol_loss(p1, t2) + byol_loss(p2, t1)

    def lr_scales(self):
        return {p: self.predictor_lr for p in self.predictor.parameters()}

    @torch.no_grad()
    def step_end(self, model, step, total_steps):
        """EMA update with tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2 (BYOL's schedule)."""
        self.tau = 1 - (1 - self.tau_base) * (math.cos(math.pi * step / max(1, total_steps)) + 1) / 2
        for pt, po in zip(self.target.parameters(), model.parameters()):
            pt.mul_(self.tau).add_(po.detach(), alpha=1 - self.tau)
        for bt, bo in zip(self.target.buffers(), model.buffers()):
            bt.copy_(bo)

    def describe(self):
        return {"name": self.name, "tau_base": self.tau_base, "predictor_hidden": self.hidden,
                "predictor_lr": self.predictor_lr}


class Supervised(Objective):
    """Cross-entropy of a linear classifier on the projector output (one augmented view per image)."""

    name = "supervised"
    needs_labels = True
    n_views = 1

    def __init__(self, **_):
        super().__init__()
        self.classifier: nn.Module | None = None

    def setup(self, model, n_classes=None):
        if not n_classes or n_classes < 2:
            raise TrainingError(f"The supervised objective needs a label task with at least two classes, got {n_classes}.")
        self.classifier = nn.Linear(_out_dim(model), int(n_classes)).to(next(model.parameters()).device)

    def forward(self, model, views, labels=None):
        return F.cross_entropy(self.classifier(model(views[0])).float(), labels)


class LabelAligned(SimCLR):
    """NT-Xent whose positive is, with weight p, another image of the same class (`label_aligned_nt_xent`).

    The two views show the same images, as in SimCLR; the other images of a
    class are already in the batch and serve as the label-aligned positives.
    p = 0 is SimCLR exactly; p = 1 is SupCon-like (every positive is another image of the class).

    Why every classmate and not one sampled per anchor (the first version, which
    stayed at chance on shapes v1): for features that do not depend on the class,
    a random classmate is no closer than a negative, so that part of the loss is
    the Jensen gap log E e^{s/T} - E s/T >= 0, zero only when all similarities are
    equal: whatever the labels, it pulls every output together. When a fresh
    network shows no class signal (shapes v1 `shape`: between-class share of the
    output variance at its chance floor) that pull wins: the output's mean cosine
    went 0.33 -> 0.95 within 60 steps, exactly as with shuffled labels, and the
    gradients fell 50-200x. Both forms have the same expected loss, but at the
    collapsed state the one-classmate gradient is ~5x noisier, and that noise
    hides the weak class direction: with 1 or 4 classmates per anchor the output
    stayed collapsed, with all of them (~50 at batch 128, 5 classes) it escaped
    after 100-250 steps (sooner at higher temperature) and learned the class.
    Where the class is visible at initialisation (digits, CIFAR-10, shapes
    `color` without colour jitter) both forms train from the first steps.
    """

    name = "label_aligned"
    needs_labels = True

    def __init__(self, temperature: float = 0.5, p: float = 0.5, **_):
        super().__init__(temperature)
        if not 0.0 <= float(p) <= 1.0:
            raise TrainingError(f"Label-aligned weight p={p!r} is invalid. Valid: a number in [0, 1] (0 = SimCLR, 1 = SupCon-like).")
        self.p = float(p)

    def forward(self, model, views, labels=None):
        z1, z2 = self._embed(model, views)
        if self.p == 0:
            return nt_xent(z1, z2, self.temperature)
        return label_aligned_nt_xent(z1, z2, labels, self.p, self.temperature)

    def describe(self):
        return {"name": self.name, "temperature": self.temperature, "p": self.p, "positives": "all classmates in the batch"}


OBJECTIVES: dict[str, type[Objective]] = {c.name: c for c in (SimCLR, VICReg, BYOL, BarlowTwins, Supervised, LabelAligned)}


def make_objective(name: str, **options) -> Objective:
    """Objective by registry name; options not used by it are ignored (one TrainConfig serves all)."""
    if name not in OBJECTIVES:
        raise TrainingError(f"Unknown objective {name!r}. {did_you_mean(name, OBJECTIVES)}")
    return OBJECTIVES[name](**options)

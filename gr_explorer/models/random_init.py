"""The random-init baseline: the same architecture, preprocessing and cuts with seeded random weights.

Why: a guillotine curve means little until it stands next to the same network
that never trained. Loaders attach `Model.rebuild` (a zoo or file checkpoint
rebuilds from its card, a timm model through timm with pretrained=False);
for a wrapped module the fallback re-initialises every submodule that knows
how (`reset_parameters`) and draws any other parameter from N(0, 0.02^2),
timm's default for tokens and embeddings.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ..names import random_label
from .model import Model


def draw_seed(seed: int, draw: int) -> int:
    """The weight seed of draw `draw` (1, 2, ...) of a sweep seeded `seed`: draw 1 is `seed` itself (the single
    `random-init` twin), later draws distinct 32-bit seeds spawned from (seed, draw)."""
    if draw <= 1:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(draw)]).generate_state(1)[0])


def random_inits(model: Model, seed: int, draws: int) -> list[Model]:
    """The random-init twins a sweep measures: none, one (`random-init`, named `<model> [random init]`) or `draws`
    seeded ones (`random-init:N`, named `<model> [random init #d]`; draw #1 has the single twin's weights)."""
    if draws <= 1:
        return [random_init(model, seed)] if draws == 1 else []
    return [random_init(model, draw_seed(seed, d), draw=d) for d in range(1, draws + 1)]


def random_init(model: Model, seed: int, draw: int | None = None) -> Model:
    """A fresh Model of `model`'s architecture whose weights are a deterministic function of `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        twin = model.rebuild() if model.rebuild is not None else _reinitialised_copy(model)
    twin.name = random_label(model.name, draw)
    twin.kind, twin.baseline_for = "random_init", model.name
    twin.card = dict(model.card)
    twin.weights_source = f"random init (seed {seed})"
    twin.rebuild = model.rebuild
    return twin.eval()


def _reinitialised_copy(model: Model) -> Model:
    twin = copy.deepcopy(model)
    covered = set()
    for m in twin.modules():
        if m is not twin and hasattr(m, "reset_parameters") and callable(m.reset_parameters):
            m.reset_parameters()
            covered.update(id(p) for p in m.parameters(recurse=False))
    with torch.no_grad():
        for p in twin.parameters():
            if id(p) not in covered:
                nn.init.normal_(p, std=0.02)
    twin._weights_hash = None
    return twin

"""Small builders shared by tests: a zoo-format checkpoint with a projector, a tiny dataset."""

from __future__ import annotations

import torch

from gr_explorer.data.base import Dataset
from gr_explorer.models import (
    Model,
    Preprocessing,
    SmallResNet,
    build_projector,
    save_checkpoint,
)
from gr_explorer.models.backbones import IntermediatesBackbone


def tiny_model(width: int = 8, projector: str = "32-32-16", seed: int = 0) -> Model:
    torch.manual_seed(seed)
    module = SmallResNet(width=width, depths=(1, 1, 1))
    # Non-trivial BN statistics so eval-mode outputs differ from train-mode ones.
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    proj = build_projector(projector, module.num_features)
    pre = Preprocessing(input_size=16, mean=(0.5, 0.4, 0.3), std=(0.25, 0.25, 0.25))
    return Model(IntermediatesBackbone(module), proj, pre, name="tiny")


def tiny_card(projector: str = "32-32-16", width: int = 8) -> dict:
    return {"architecture": {"backbone": {"type": "resnet_small", "width": width, "depths": [1, 1, 1]},
                             "projector": {"spec": projector, "norm": "bn", "act": "relu"}},
            "objective": "none (random weights, for tests)"}


def saved_tiny(tmp_path, name: str = "tiny", projector: str = "32-32-16"):
    model = tiny_model(projector=projector)
    path = save_checkpoint(model, tmp_path / f"{name}.safetensors", tiny_card(projector))
    return model, path


def random_dataset(n_train: int = 64, n_test: int = 32, size: int = 16, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    tr = torch.randint(0, 256, (n_train, 3, size, size), dtype=torch.uint8, generator=g)
    te = torch.randint(0, 256, (n_test, 3, size, size), dtype=torch.uint8, generator=g)
    # The label is the brightness of the red channel: learnable from any cut.
    ytr = (tr[:, 0].float().mean((1, 2)) > 127).long()
    yte = (te[:, 0].float().mean((1, 2)) > 127).long()
    return Dataset("random", tr, te, {"red": ytr}, {"red": yte}, {"red": ["dark", "bright"]}, params={"seed": seed, "n": n_train})

"""A small ResNet for 32x32 inputs (CIFAR-style stem), fast enough to train on a CPU.

It speaks timm's `forward_intermediates` / `forward_head` protocol so the same
backbone adapter serves it and any timm model.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """Stem (3x3 conv) then len(depths) stages doubling width and halving resolution after the first."""

    def __init__(self, width: int = 16, depths: tuple[int, ...] = (1, 1, 1, 1)):
        super().__init__()
        self.width, self.depths = width, tuple(depths)
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.feature_info = [dict(module="stem", num_chs=width, reduction=1)]
        stages, cin = [], width
        for i, d in enumerate(self.depths):
            cout = width * 2**i
            blocks = [BasicBlock(cin if j == 0 else cout, cout, (1 if i == 0 else 2) if j == 0 else 1) for j in range(d)]
            stages.append(nn.Sequential(*blocks))
            self.feature_info.append(dict(module=f"layer{i + 1}", num_chs=cout, reduction=2**i))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.num_features = cin

    def forward_intermediates(self, x, indices=None, stop_early=False, intermediates_only=False, **_):
        n = len(self.feature_info)
        take = set(range(n)) if indices is None else {i % n for i in indices}
        last = max(take) if (stop_early or intermediates_only) else n - 1
        out = []
        x = self.stem(x)
        if 0 in take:
            out.append(x)
        for i, stage in enumerate(self.stages, start=1):
            if i > last:
                break
            x = stage(x)
            if i in take:
                out.append(x)
        return out if intermediates_only else (x, out)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = True) -> torch.Tensor:
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.forward_head(x)

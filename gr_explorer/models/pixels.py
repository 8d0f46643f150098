"""The `pixels` baseline: probes on the raw (resized, normalised, flattened) pixels, as a one-cut Model.

Why a Model: the baseline then goes through the same extraction, cache and
probes as any network, so it is measured exactly the same way. Images are
average-pooled to at most 32 x 32 (3,072 dims), the size where a linear
probe on pixels is still cheap; smaller images keep their native size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import IntermediatesBackbone
from .model import Model
from .preprocessing import Preprocessing

NAME = "pixels"
MAX_SIDE = 32  # 3 x 32 x 32 = 3,072 dims at most


class PixelBackbone(nn.Module):
    """No weights: one stage, `pixels`, the image pooled to side x side and flattened."""

    def __init__(self, side: int):
        super().__init__()
        self.side = int(side)
        self.feature_info = [dict(module=NAME, num_chs=3 * self.side**2, reduction=1)]
        self.num_features = 3 * self.side**2

    def _pixels(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.side or x.shape[-2] != self.side:
            x = F.adaptive_avg_pool2d(x, self.side)
        return x.flatten(1)

    def forward_intermediates(self, x, indices=None, stop_early=False, intermediates_only=False, **_):
        out = self._pixels(x)
        return [out] if intermediates_only else (out, [out])

    def forward_head(self, x: torch.Tensor, pre_logits: bool = True) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._pixels(x)


def pixels_model(image_side: int) -> Model:
    """The pixels baseline for images of `image_side` x `image_side` (no resizing beyond the pooling)."""
    side = min(int(image_side), MAX_SIDE)
    pre = Preprocessing(input_size=int(image_side), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    card = {"source": "baseline", "weights": "none (raw pixels)", "pixels_side": side}
    return Model(IntermediatesBackbone(PixelBackbone(side), readout="mean"), None, pre, name=NAME, card=card,
                 weights_source="none (raw pixels)", pool=False, kind="pixels")

"""Cuts: the named places where a model can be cut, and how a cut's output becomes a vector."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

READOUTS = ("cls", "mean", "cls+mean")


@dataclass(frozen=True)
class Cut:
    """One cut. `depth` is its position in forward order (0..n-1) across backbone and projector."""

    name: str
    depth: int
    part: str  # "backbone" or "projector"
    dim: int

    def as_dict(self) -> dict:
        return asdict(self)


def pool_map(x: torch.Tensor, readout: str = "mean", num_prefix_tokens: int = 0) -> torch.Tensor:
    """Turn a cut's raw output into one vector per image.

    NCHW maps are globally average-pooled; token sequences [B, L, C] use the
    readout (`cls` = first prefix token, `mean` = mean of the patch tokens,
    `cls+mean` = both concatenated); vectors pass through.
    """
    if x.ndim == 4:
        return x.mean(dim=(2, 3))
    if x.ndim == 3:
        patches = x[:, num_prefix_tokens:]
        if readout == "mean" or num_prefix_tokens == 0:
            return patches.mean(dim=1)
        if readout == "cls":
            return x[:, 0]
        return torch.cat([x[:, 0], patches.mean(dim=1)], dim=1)
    if x.ndim == 2:
        return x
    return x.flatten(1)

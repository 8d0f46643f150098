"""Cuts: the named places where a model can be cut, and how a cut's output becomes a vector."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..errors import ModelSpecError
from ..names import READOUTS


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
        return pool_tokens(x[:, num_prefix_tokens:], x[:, :num_prefix_tokens], readout)
    if x.ndim == 2:
        return x
    return x.flatten(1)


def pool_tokens(patches: torch.Tensor, prefix: torch.Tensor, readout: str = "mean") -> torch.Tensor:
    """The readout of a token sequence given as patch tokens [B, L, C] and prefix tokens [B, P, C] (P may be 0).

    Models that hand the two back separately (timm's forward_intermediates) are pooled without first joining
    them, which would copy every block's whole output.
    """
    if readout == "mean" or prefix.shape[1] == 0:
        return patches.mean(dim=1)
    if readout == "cls":
        return prefix[:, 0]
    return torch.cat([prefix[:, 0], patches.mean(dim=1)], dim=1)


def check_readout(readout: str | None) -> None:
    """The one check of a readout name on the model side (None: the checkpoint's own)."""
    if readout is not None and readout not in READOUTS:
        raise ModelSpecError(f"Unknown readout {readout!r}. Valid: {', '.join(READOUTS)}.")

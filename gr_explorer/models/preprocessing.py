"""Model-side preprocessing, applied to uint8 batches on the extraction device."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Preprocessing:
    """What a model expects: square input size and per-channel normalisation."""

    input_size: int = 32
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    interpolation: str = "bilinear"

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        return cls(
            input_size=int(d.get("input_size", 32)),
            mean=tuple(float(v) for v in d.get("mean", (0.5, 0.5, 0.5))),
            std=tuple(float(v) for v in d.get("std", (0.5, 0.5, 0.5))),
            interpolation=str(d.get("interpolation", "bilinear")),
        )

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, 3, H, W] -> normalised float [B, 3, S, S]."""
        return self.normalize(self.to_unit(images))

    def to_unit(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 -> float in [0, 1] at the input size (training augments between this and `normalize`)."""
        x = images.float().div_(255.0)
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            mode = self.interpolation if self.interpolation in ("bilinear", "bicubic", "nearest") else "bilinear"
            kw = {} if mode == "nearest" else {"align_corners": False, "antialias": True}
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode=mode, **kw)
        return x

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std

"""The `pixels` baseline: probes on the raw (resized, normalised, flattened) pixels, as a one-cut Model.

Why a Model: the baseline then goes through the same extraction, cache and
probes as any network, so it is measured exactly the same way. Images are
average-pooled to at most 32 x 32 (3,072 dims); smaller images keep their
native size.

Why the linear probe sees `principal_components` of the pixels, not the 3,072
pixels themselves: a linear probe on 3,072 standardised, strongly correlated pixels is
the slowest fit of a sweep by far (its solver needs 10-40x the iterations of a
cut's, and each is 20x wider: issue 29 saw 336 s click-to-chart against 23-31 s
without the baseline), yet the answer it gives (how far raw pixels get) lives in the
pixels' leading principal components. So the linear probe gets the standardised
pixels projected on their top COMPONENTS principal directions, found on the
train images alone (no labels), and rotated by a normalised Hadamard matrix so
that every column has the same variance: the probe's own standardisation is
then a single scale (C is chosen on validation anyway), and its L2 penalty acts
on the components as it would on the pixels, instead of whitening them (which
weights the noisy trailing components like the leading ones). The cost is that
of one more cut of that width; `benchmarks/bench_pixels.py` measures it and
checks its accuracy against scikit-learn's probe on the full pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.linalg import hadamard
from torch import nn

from .backbones import IntermediatesBackbone
from .model import Model
from .preprocessing import Preprocessing

NAME = "pixels"
MAX_SIDE = 32  # 3 x 32 x 32 = 3,072 dims at most
#: principal components of the pixels the probes see: the width of a typical cut (a power of two, for the rotation)
COMPONENTS = 128
#: the probes that see the components: the linear probe's solver is what 3,072 correlated pixels make slow; the
#: k-NN probe costs the same on 3,072 dims and would answer a different question on components (cosine similarity
#: of centred, standardised components, not of the images), so it keeps the pixels
PIXEL_COMPONENT_PROBES = ("linear",)
#: train rows the components are found on (evenly strided beyond it: pixel statistics settle long before)
FIT_ROWS = 10_000
#: rows projected at a time (features of a million images are memory-mapped, never loaded whole)
CHUNK_ROWS = 65_536


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


def principal_components(train: torch.Tensor, test: torch.Tensor, k: int = COMPONENTS, seed: int = 0
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) pixels [N, D] -> their top principal components [N, k'], rotated to equal variance.

    Standardised with the train split's mean and std (as the probes standardise), the principal directions
    found on at most FIT_ROWS train rows (seeded randomised SVD, torch.svd_lowrank), every row projected and
    rotated by the normalised k' x k' Hadamard matrix; k' is k, or the largest power of two below the number of
    fit rows when there are fewer. With D <= k' the pixels are returned as they are. Deterministic for a seed;
    float32.
    """
    fit = train[:: max(1, train.shape[0] // FIT_ROWS)].to(torch.float64)
    k = min(k, 2 ** int(torch.tensor(max(1, fit.shape[0] - 1)).log2().floor()))
    if train.shape[1] <= k:
        return train, test
    mean, std = fit.mean(0), fit.std(0, unbiased=False)
    inv = torch.where(std > 1e-12, 1.0 / std.clamp_min(1e-12), torch.zeros_like(std)).float()
    mean = mean.float()
    fit = (fit.float() - mean) * inv
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _, _, V = torch.svd_lowrank(fit, q=min(k + 10, *fit.shape), niter=2)
    basis = V[:, :k] @ torch.from_numpy(hadamard(k) / k**0.5).float()  # [D, k]

    def project(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([((x[i:i + CHUNK_ROWS].float() - mean) * inv) @ basis for i in range(0, x.shape[0], CHUNK_ROWS)])

    return project(train), project(test)

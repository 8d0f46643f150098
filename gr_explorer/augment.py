"""Batched SSL augmentations on the training device: one call per batch, no per-image Python loop.

Why batched tensors: on a CPU the per-image PIL/torchvision pipeline costs more
than the small network itself, and on a GPU it starves it. Every random draw
comes from one `torch.Generator`, so a seed fixes the views exactly.

Pipeline (SimCLR order; each step is per-image random with its own mask):
random resized crop -> horizontal flip -> colour jitter (with probability
`color_jitter_p`) -> grayscale -> Gaussian blur. Inputs and outputs are float
images in [0, 1], [B, 3, H, W]; normalisation is the caller's (model's) job.

Deliberate differences from torchvision, documented so that results can be read:

* crop: the aspect ratio is drawn log-uniformly from `crop_ratio` intersected
  with [s, 1/s] for the drawn area fraction s, so the crop always fits inside
  the image (no rejection loop) and `crop_scale=(1, 1)` is the identity;
* colour jitter: brightness, contrast, saturation, hue always in that order
  (torchvision shuffles the order per call); strength `s` gives SimCLR's
  factors (0.8 s, 0.8 s, 0.8 s, 0.2 s).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .errors import TrainingError

_GRAY = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths for one run (all probabilities in [0, 1])."""

    crop_scale: tuple[float, float] = (0.3, 1.0)  # area fraction range of the random resized crop
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect ratio range
    flip_p: float = 0.5  # horizontal flip: removes left/right orientation
    color_jitter: float = 0.8  # strength s (0 = off): brightness/contrast/saturation 0.8 s, hue 0.2 s
    color_jitter_p: float = 0.8  # probability that an image is jittered
    gray_p: float = 0.2  # grayscale probability: removes colour
    blur_p: float = 0.0  # Gaussian blur probability
    blur_sigma: tuple[float, float] = (0.1, 1.5)  # blur sigma range, pixels

    def __post_init__(self):
        for name in ("flip_p", "color_jitter_p", "gray_p", "blur_p"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise TrainingError(f"Augmentation {name}={v!r} is not a probability. Valid: a number in [0, 1].")
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise TrainingError(f"crop_scale={self.crop_scale!r} is invalid. Valid: two numbers 0 < min <= max <= 1, e.g. (0.3, 1.0).")
        if not 0.0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise TrainingError(f"crop_ratio={self.crop_ratio!r} is invalid. Valid: 0 < min <= max, e.g. (0.75, 1.333).")
        if self.color_jitter < 0:
            raise TrainingError(f"color_jitter={self.color_jitter!r} is invalid. Valid: a strength >= 0 (0.5 mild, 0.8 SimCLR, 1.0 strong).")
        if not 0.0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise TrainingError(f"blur_sigma={self.blur_sigma!r} is invalid. Valid: 0 < min <= max (pixels).")

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, device=device)


def _mask(n: int, p: float, g: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) < p


def random_resized_crop(x: torch.Tensor, scale, ratio, g: torch.Generator) -> torch.Tensor:
    """Per-image crop of area fraction in `scale`, resized back to the input size (one grid_sample)."""
    b, dev = x.shape[0], x.device
    s = _uniform(b, scale[0], scale[1], g, dev)
    # log-ratio range clipped to [log s, -log s] so that both sides fit: w = sqrt(s r) <= 1, h = sqrt(s / r) <= 1.
    lo = torch.maximum(torch.full_like(s, math.log(ratio[0])), s.log())
    hi = torch.minimum(torch.full_like(s, math.log(ratio[1])), -s.log())
    hi = torch.maximum(hi, lo)
    r = (lo + (hi - lo) * torch.rand(b, generator=g, device=dev)).exp()
    w, h = (s * r).sqrt().clamp(max=1.0), (s / r).sqrt().clamp(max=1.0)
    cx = (1 - w) * (2 * torch.rand(b, generator=g, device=dev) - 1)  # centre in normalised [-1, 1] coordinates
    cy = (1 - h) * (2 * torch.rand(b, generator=g, device=dev) - 1)
    theta = torch.zeros(b, 2, 3, device=dev, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w, cx, h, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def hflip(x: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    m = _mask(x.shape[0], p, g, x.device).view(-1, 1, 1, 1)
    return torch.where(m, x.flip(-1), x)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, [B, 1, H, W]."""
    w = torch.tensor(_GRAY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def random_grayscale(x: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    m = _mask(x.shape[0], p, g, x.device).view(-1, 1, 1, 1)
    return torch.where(m, grayscale(x).expand_as(x), x)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, gg, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp_min(1e-8), torch.zeros_like(maxc))
    d = delta.clamp_min(1e-8)
    h = torch.where(maxc == r, ((gg - b) / d) % 6, torch.where(maxc == gg, (b - r) / d + 2, (r - gg) / d + 4))
    h = torch.where(delta > 0, h / 6.0, torch.zeros_like(h)) % 1.0
    return torch.stack([h, s, maxc], 1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    k = (torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1) + h.unsqueeze(1) * 6.0) % 6.0
    return v.unsqueeze(1) - v.unsqueeze(1) * s.unsqueeze(1) * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)


def color_jitter(x: torch.Tensor, strength: float, p: float, g: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation (factors in [1 - 0.8 s, 1 + 0.8 s]) then hue shift in [-0.2 s, 0.2 s]."""
    if strength <= 0 or p <= 0:
        return x
    b, dev = x.shape[0], x.device
    f = 0.8 * strength
    bri, con, sat = (_uniform(b, max(0.0, 1 - f), 1 + f, g, dev).view(-1, 1, 1, 1) for _ in range(3))
    hue = _uniform(b, -min(0.5, 0.2 * strength), min(0.5, 0.2 * strength), g, dev).view(-1, 1, 1)
    m = _mask(b, p, g, dev).view(-1, 1, 1, 1)
    y = (x * bri).clamp(0, 1)
    mean = grayscale(y).mean((2, 3), keepdim=True)
    y = ((y - mean) * con + mean).clamp(0, 1)
    gray = grayscale(y)
    y = ((y - gray) * sat + gray).clamp(0, 1)
    hsv = rgb_to_hsv(y)
    hsv = torch.stack([(hsv[:, 0] + hue) % 1.0, hsv[:, 1], hsv[:, 2]], 1)
    y = hsv_to_rgb(hsv).clamp(0, 1)
    return torch.where(m, y, x)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable blur with one sigma per image (grouped conv, reflect padding)."""
    b, c, hh, ww = x.shape
    half = max(1, min(int(math.ceil(2 * float(sigma.max()))), (min(hh, ww) - 1) // 2))
    t = torch.arange(-half, half + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t.view(1, -1) / sigma.view(-1, 1)) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # [B*C, K]
    y = x.reshape(1, b * c, hh, ww)
    y = F.conv2d(F.pad(y, (half, half, 0, 0), mode="reflect"), k.view(b * c, 1, 1, -1), groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, half, half), mode="reflect"), k.view(b * c, 1, -1, 1), groups=b * c)
    return y.view(b, c, hh, ww)


def random_blur(x: torch.Tensor, p: float, sigma_range, g: torch.Generator) -> torch.Tensor:
    if p <= 0:
        return x
    b = x.shape[0]
    sigma = _uniform(b, sigma_range[0], sigma_range[1], g, x.device).to(x.dtype)
    m = _mask(b, p, g, x.device).view(-1, 1, 1, 1)
    return torch.where(m, gaussian_blur(x, sigma), x)


def augment(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """One random view of every image of a float [B, 3, H, W] batch in [0, 1]."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise TrainingError(f"augment() needs float images [B, 3, H, W], got shape {tuple(x.shape)}.")
    x = random_resized_crop(x, cfg.crop_scale, cfg.crop_ratio, g)
    if cfg.flip_p > 0:
        x = hflip(x, cfg.flip_p, g)
    x = color_jitter(x, cfg.color_jitter, cfg.color_jitter_p, g)
    if cfg.gray_p > 0:
        x = random_grayscale(x, cfg.gray_p, g)
    return random_blur(x, cfg.blur_p, cfg.blur_sigma, g)

"""Procedural 32x32 shapes with six independent attributes, one task each.

Why procedural: it is the one dataset that needs no files, and each attribute
is a task whose fate along the network is predictable from the SSL
augmentations (see DESIGN.md), so the guillotine effect shows up in minutes.

Attributes (sampled independently; each one exactly balanced: the labels are
an independent random permutation of `arange(n) % n_classes`):

- `shape`: circle, square, triangle, plus, ring. Outlines differ at every
  scale, position and rotation, so a random crop or flip keeps them: the
  class-like attribute that SSL keeps.
- `color`: the foreground hue, one of six (red .. magenta, 60 degrees apart,
  +-8 degrees jitter, random saturation and value). Colour jitter and
  grayscale augmentations remove it.
- `orientation`: the heading of the shape, right/up/left/down (+-20 degrees
  jitter). Every shape has a round "bite" cut out of it on its heading side
  (a notch in the circle and the square, a truncated tip of the triangle, a
  short arm of the plus, the opening of the ring), so the heading is visible
  even for the rotation-symmetric shapes. A horizontal flip swaps right and
  left; rot90 moves every heading by one bin.
- `size`: small/medium/large radius bins (3.4-4.2, 4.9-5.7, 6.4-7.2 px).
- `position`: the quadrant of the shape centre (+-1.5 px jitter); crops and
  flips move it.
- `background`: dark/grey/light background level (+-0.05 jitter).

Each image also gets Gaussian pixel noise (sigma 0.03). Rendering is
vectorised: a signed distance to each shape is evaluated on the pixel grid of
a whole chunk of images at once and turned into anti-aliased coverage, so
there is no per-image Python loop (10,000 images take well under a second).
"""

from __future__ import annotations

import numpy as np
import torch

# Bump when the rendering changes: it is part of Dataset.params, so cached
# features of older renderings are not reused.
GENERATOR_VERSION = 1
IMAGE_SIZE = 32
DEFAULT_N_TRAIN = 8000
DEFAULT_N_TEST = 2000

CLASSES: dict[str, list[str]] = {
    "shape": ["circle", "square", "triangle", "plus", "ring"],
    "color": ["red", "yellow", "green", "cyan", "blue", "magenta"],
    "orientation": ["right", "up", "left", "down"],
    "size": ["small", "medium", "large"],
    "position": ["top-left", "top-right", "bottom-left", "bottom-right"],
    "background": ["dark", "grey", "light"],
}
TASKS = list(CLASSES)

_SIZE_BINS = ((3.4, 4.2), (4.9, 5.7), (6.4, 7.2))
_BACKGROUND = (0.10, 0.45, 0.80)
# Bite (centre along the heading, radius), in units of the shape radius.
_BITE = {"circle": (0.95, 0.42), "square": (0.82, 0.40), "triangle": (1.10, 0.45), "plus": (1.10, 0.45), "ring": (1.00, 0.50)}
_CHUNK = 2048


def _box(u, v, a, b):
    qx, qy = np.abs(u) - a, np.abs(v) - b
    return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)


def _sdf(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance (shape-radius units, negative inside) in the shape's own frame, heading +u."""
    if kind == "circle":
        d = np.hypot(u, v) - 0.85
    elif kind == "square":
        d = _box(u, v, 0.72, 0.72)
    elif kind == "triangle":  # vertex on the heading, circumradius 1 (inradius 0.5)
        d = np.maximum(np.maximum(-u, 0.5 * u + 0.866 * v), 0.5 * u - 0.866 * v) - 0.5
    elif kind == "plus":
        d = np.minimum(_box(u, v, 1.0, 0.3), _box(u, v, 0.3, 1.0))
    elif kind == "ring":
        d = np.abs(np.hypot(u, v) - 0.725) - 0.225
    else:  # pragma: no cover - CLASSES and this function are kept together
        raise AssertionError(kind)
    bc, br = _BITE[kind]
    return np.maximum(d, br - np.hypot(u - bc, v))


def _hsv_to_rgb(h, s, v):
    """Vectorised HSV -> RGB, h in [0, 1)."""
    k = (np.array([5.0, 3.0, 1.0])[None, :] + h[:, None] * 6.0) % 6.0
    return v[:, None] - v[:, None] * s[:, None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def generate(n: int, seed: int, stream: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, np.ndarray]]:
    """Render n images from the (seed, stream) random stream.

    Returns uint8 images [n, 3, 32, 32], one label tensor per task, and the
    continuous per-image parameters (centre, radius, angle, colour) so that
    tests can check that each attribute is visible.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(stream), GENERATOR_VERSION]))
    labels = {t: rng.permutation(np.arange(n) % len(c)) for t, c in CLASSES.items()}

    size_lo = np.array([b[0] for b in _SIZE_BINS])[labels["size"]]
    size_hi = np.array([b[1] for b in _SIZE_BINS])[labels["size"]]
    radius = rng.uniform(size_lo, size_hi)
    q = labels["position"]
    cx = np.where(q % 2 == 0, 8.0, 24.0) + rng.uniform(-1.5, 1.5, n)
    cy = np.where(q < 2, 8.0, 24.0) + rng.uniform(-1.5, 1.5, n)
    angle = np.deg2rad(labels["orientation"] * 90.0 + rng.uniform(-20.0, 20.0, n))
    hue = ((labels["color"] * 60.0 + rng.uniform(-8.0, 8.0, n)) % 360.0) / 360.0
    fg = _hsv_to_rgb(hue, rng.uniform(0.7, 1.0, n), rng.uniform(0.75, 1.0, n))
    bg = np.array(_BACKGROUND)[labels["background"]] + rng.uniform(-0.05, 0.05, n)
    noise_seed = rng.integers(2**63)

    # Pixel centres; y grows downwards in the image, so "up" is -y.
    grid = np.arange(IMAGE_SIZE, dtype=np.float32) + 0.5
    gx, gy = grid[None, None, :], grid[None, :, None]
    out = np.empty((n, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    noise_rng = np.random.default_rng(noise_seed)
    kinds = CLASSES["shape"]
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(start + _CHUNK, n))
        r = radius[sl, None, None].astype(np.float32)
        dx = (gx - cx[sl, None, None].astype(np.float32)) / r
        dy = (cy[sl, None, None].astype(np.float32) - gy) / r
        c = np.cos(angle[sl])[:, None, None].astype(np.float32)
        s = np.sin(angle[sl])[:, None, None].astype(np.float32)
        u, v = dx * c + dy * s, -dx * s + dy * c
        sdf = np.empty_like(u, dtype=np.float32)
        shape = labels["shape"][sl]
        for k, kind in enumerate(kinds):
            m = shape == k
            if m.any():
                sdf[m] = _sdf(kind, u[m], v[m])
        cover = np.clip(0.5 - sdf * r, 0.0, 1.0)[:, None]  # pixel units -> anti-aliased coverage
        b = bg[sl, None, None, None].astype(np.float32)
        img = b + (fg[sl, :, None, None].astype(np.float32) - b) * cover
        img += 0.03 * noise_rng.standard_normal(img.shape, dtype=np.float32)
        out[sl] = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)

    meta = {"cx": cx, "cy": cy, "radius": radius, "angle": angle, "hue": hue, "fg": fg, "bg": bg}
    return torch.from_numpy(out), {t: torch.from_numpy(y).long() for t, y in labels.items()}, meta


def load(*, n_train: int | None, n_test: int | None, seed: int, **_):
    """Train and test come from two fixed streams of the same seed, at exactly the requested sizes."""
    n_train = DEFAULT_N_TRAIN if n_train is None else n_train
    n_test = DEFAULT_N_TEST if n_test is None else n_test
    x_tr, y_tr, _ = generate(n_train, seed, stream=0)
    x_te, y_te, _ = generate(n_test, seed, stream=1)
    params = {"generator_version": GENERATOR_VERSION, "n_train": n_train, "n_test": n_test}
    return x_tr, x_te, y_tr, y_te, {t: list(c) for t, c in CLASSES.items()}, params

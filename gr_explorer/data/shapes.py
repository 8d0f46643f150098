"""Procedural 32x32 scenes: one large textured object among clutter, five attributes, one task each.

Why procedural: it is the one dataset that needs no files, and each attribute
is a task whose fate along an SSL network follows from the standard
augmentations (see DESIGN.md), so the guillotine effect shows up in minutes.

Attributes of the main object (each exactly balanced: the labels are an
independent random permutation of `arange(n) % n_classes`):

- `shape`: circle, square, triangle, plus, star, upright +-20 degrees.
- `texture`: solid, stripes, dots, checks, at a random angle and phase and a
  fixed period (6-8 px). Every texture has the same mean brightness.
- `size`: small / medium / large radius (7.0-8.4, 9.2-10.6, 11.4-13.0 px, i.e.
  22-41% of the side), centre within +-5 px of the image centre.
- `color`: one of six hues (red .. magenta, +-8 degrees, saturation 0.6-1,
  value 0.6-0.85).
- `light`: the side the object is lit from, left or right: a brightness ramp
  across the object (+-60% per radius) pointing within +-45 degrees of
  horizontal.

Distractors: a pale background of random hue whose luma is kept at least
0.35 away from the object's (so the outline survives grayscale views), with
two low-frequency luminance waves; two small solid clutter shapes (same
kinds as the object, any hue, radius 2.5-4 px, behind it); a lighting
gradient of random direction over the whole image; Gaussian pixel noise.

What the standard SSL augmentations (training/augment.py) do to each task:

- colour jitter (hue +-0.16 turn at strength 0.8) and grayscale REMOVE
  `color`: the two views of an image disagree on hue.
- the horizontal flip REMOVES `light`: it swaps left and right in one view
  only. Jitter and crops keep it (a ramp stays a ramp).
- crops KEEP `shape` and `texture`. The object is large and near the centre:
  with crop areas 0.5-1 of the image, 99.99% of crops contain its centre, the
  median crop keeps all of it and 95% keep at least 77% of its disc (area
  0.3-1: 1.6% lose the centre, 5% keep under 53%). Jitter and grayscale do
  not touch outlines or patterns.
- crops PARTLY REMOVE `size`: a crop of area fraction s zooms by 1/sqrt(s),
  up to 1.41x for s >= 0.5, more than the 1.2-1.3x step between size bins, so
  the absolute size of a view is unreliable; size relative to the texture
  period, the clutter and the crop survives.
- crops REMOVE position (they shift the object by up to a third of the
  side), so position is a nuisance, not a task; global average pooling at
  every cut hides most of it anyway.

Why the tasks are not read off raw pixels: the object moves by +-5 px and
changes size, so a pixel template of a shape is blurred over every class;
texture angle and phase are uniform, so every texture has the same mean image;
the light ramp competes with a global gradient of random direction. Linear
probes on standardised raw pixels (seed 1, 2,000 train / 1,000 test, C chosen
on a validation split; the library's probe, scikit-learn LogisticRegression in
brackets) score shape 0.351 (0.337; chance 0.20), texture 0.237 (0.257;
0.25), size 0.680 (0.680; 0.33), light 0.579 (0.588; 0.50). Colour is the
exception, by design: it is a per-pixel attribute, raw pixels read it at
0.982 (0.989), and what it shows is how the augmentations erase it along the
projector, not a gain over pixels. A randomly initialised SmallResNet (width
16, seeds 0/1/2, best cut chosen on validation) reads colour at once (0.92-0.94)
but not shape (0.36-0.38), texture (0.37-0.39), size (0.64-0.72) or light
(0.56-0.66): shape needs the outline seen as a whole and texture needs pattern
detectors, which is what SSL training has to learn.

Rendering is vectorised: signed distances to each shape are evaluated on the
pixel grid of a whole chunk of images at once (clutter in small windows) and
turned into anti-aliased coverage; there is no per-image Python loop (10,000
images take about 1.3 s of CPU time).
"""

from __future__ import annotations

import numpy as np
import torch

from ..progress import Progress, Reporter, ShouldStop
from ..threads import map_ordered

# Bump when the rendering changes: it is part of Dataset.params, so cached
# features of older renderings are not reused.
GENERATOR_VERSION = 2
IMAGE_SIZE = 32
DEFAULT_N_TRAIN = 8000
DEFAULT_N_TEST = 2000
#: bytes one generated image holds while a split is rendered: its pixels and its drawn parameters (measured with
#: tracemalloc: 470 bytes of parameters per image at 20,000 images; the chunks being rendered add ~100 MB)
BYTES_PER_IMAGE = 3 * IMAGE_SIZE**2 + 512

CLASSES: dict[str, list[str]] = {
    "shape": ["circle", "square", "triangle", "plus", "star"],
    "texture": ["solid", "stripes", "dots", "checks"],
    "size": ["small", "medium", "large"],
    "color": ["red", "yellow", "green", "cyan", "blue", "magenta"],
    "light": ["left", "right"],
}
TASKS = list(CLASSES)

SIZE_BINS = ((7.0, 8.4), (9.2, 10.6), (11.4, 13.0))  # object radius in pixels (22-41% of the side)
CENTRE_JITTER = 5.0  # object centre: image centre +- this many pixels on each axis
ROTATION_JITTER = 20.0  # degrees around the upright pose
TEXTURE_AMPLITUDE = 0.7  # brightness swing of the pattern, as a fraction of the object colour
LIGHT_SLOPE = 0.6  # brightness change per object radius along the light direction
LUMA_GAP = 0.35  # |background luma - mean object luma| >= this: the outline survives grayscale views
BG_WAVE_AMPLITUDE = 0.08  # relative luminance swing of each of the two background waves
GRADIENT_MAX = 0.25  # largest relative brightness change of the lighting gradient, centre to edge
N_CLUTTER = 2
CLUTTER_RADIUS = (2.5, 4.0)
# Upright pose in the shape's frame (angle of +u): flat base for square and triangle, axis-aligned plus, star tip up.
_UPRIGHT = {"circle": 0.0, "square": np.pi / 4, "triangle": np.pi / 2, "plus": 0.0, "star": np.pi / 2}
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as the grayscale augmentation
_STRIPE_PERIOD, _CHECK_PERIOD, _DOT_PERIOD, _DOT_RADIUS = 6.0, 8.0, 6.0, 1.6
_CHUNK = 1024
_CLUTTER_WINDOW = 6  # half-width in pixels of the window a clutter piece is drawn in (> 1.1 x its largest radius)


# ---------------------------------------------------------------- signed distances (negative inside)

def _box(u, v, a, b):
    qx, qy = np.abs(u) - a, np.abs(v) - b
    return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)


def _star(u, v, k: int, r_out: float, r_in: float):
    """k-fold star or regular polygon: fold the angle into one half-sector, then measure to its one edge.

    The edge runs from the tip (r_out, angle 0) to the inner vertex (r_in, angle pi/k);
    r_in = r_out cos(pi/k) gives a regular polygon.
    """
    rho = np.hypot(u, v)
    half = np.pi / k
    theta = np.abs((np.arctan2(v, u) + half) % (2 * half) - half)
    qx, qy = rho * np.cos(theta), rho * np.sin(theta)
    ax, bx, by = r_out, r_in * np.cos(half), r_in * np.sin(half)
    ex, ey = bx - ax, by
    t = np.clip(((qx - ax) * ex + qy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
    dist = np.hypot(qx - ax - t * ex, qy - t * ey)
    # inside = on the origin's side of the edge line (the origin's cross product is ey * ax > 0)
    return np.where(ex * qy - ey * (qx - ax) > 0, -dist, dist)


def _sdf(kind: str, u, v):
    """Signed distance in radius units, shape in its own frame (a tip or corner on +u)."""
    if kind == "circle":
        return np.hypot(u, v) - 0.8
    if kind == "square":
        return _star(u, v, 4, 0.95, 0.95 * np.cos(np.pi / 4))
    if kind == "triangle":
        return _star(u, v, 3, 1.1, 0.55)
    if kind == "plus":
        return np.minimum(_box(u, v, 0.95, 0.3), _box(u, v, 0.3, 0.95))
    if kind == "star":
        return _star(u, v, 5, 1.05, 0.45)
    raise AssertionError(kind)  # pragma: no cover - CLASSES and this function are kept together


def _render_kinds(kind_idx, u, v):
    out = np.empty_like(u)
    for k, kind in enumerate(CLASSES["shape"]):
        m = kind_idx == k
        if m.any():
            out[m] = _sdf(kind, u[m], v[m])
    return out


# ---------------------------------------------------------------- textures: p in [0, 1], 1 = dark ink

def _pattern(kind: str, a, b):
    """Pattern value and its mean, a/b pixel coordinates along the texture's axes (phase included)."""
    if kind == "stripes":
        return np.clip(0.5 + 1.5 * np.sin(2 * np.pi * a / _STRIPE_PERIOD), 0, 1), 0.5
    if kind == "checks":
        w = np.sin(2 * np.pi * a / _CHECK_PERIOD) * np.sin(2 * np.pi * b / _CHECK_PERIOD)
        return np.clip(0.5 + 2.0 * w, 0, 1), 0.5
    if kind == "dots":
        da = ((a / _DOT_PERIOD + 0.5) % 1.0 - 0.5) * _DOT_PERIOD
        db = ((b / _DOT_PERIOD + 0.5) % 1.0 - 0.5) * _DOT_PERIOD
        return np.clip(0.5 + _DOT_RADIUS - np.hypot(da, db), 0, 1), np.pi * _DOT_RADIUS**2 / _DOT_PERIOD**2
    return np.zeros_like(a), 0.0  # solid


def _hsv_to_rgb(h, s, v):
    """Vectorised HSV -> RGB, h in [0, 1) (any shape; RGB on a new last axis)."""
    k = (np.array([5.0, 3.0, 1.0]) + np.asarray(h)[..., None] * 6.0) % 6.0
    v, s = np.asarray(v)[..., None], np.asarray(s)[..., None]
    return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


# ---------------------------------------------------------------- the generator

def _draw(n: int, rng: np.random.Generator) -> tuple[dict, dict]:
    """Labels and every continuous parameter of n scenes."""
    labels = {t: rng.permutation(np.arange(n) % len(c)) for t, c in CLASSES.items()}
    lo, hi = np.array(SIZE_BINS).T
    light_dir = np.where(labels["light"] == 0, np.pi, 0.0) + rng.uniform(-np.pi / 4, np.pi / 4, n)
    p = {
        "cx": IMAGE_SIZE / 2 + rng.uniform(-CENTRE_JITTER, CENTRE_JITTER, n),
        "cy": IMAGE_SIZE / 2 + rng.uniform(-CENTRE_JITTER, CENTRE_JITTER, n),
        "radius": rng.uniform(lo[labels["size"]], hi[labels["size"]]),
        "angle": (np.array([_UPRIGHT[k] for k in CLASSES["shape"]])[labels["shape"]]
                  + np.deg2rad(rng.uniform(-ROTATION_JITTER, ROTATION_JITTER, n))),
        "hue": ((labels["color"] * 60.0 + rng.uniform(-8.0, 8.0, n)) % 360.0) / 360.0,
        "saturation": rng.uniform(0.6, 1.0, n),
        "value": rng.uniform(0.6, 0.85, n),
        "texture_angle": rng.uniform(0, np.pi, n),
        "texture_phase": rng.uniform(0, 24.0, (n, 2)),
        "light_angle": light_dir,  # direction towards the light, image y up
        # background hue, saturation and a provisional value (replaced below to keep LUMA_GAP)
        "bg_hsv": np.stack([rng.uniform(0, 1, n), rng.uniform(0, 0.35, n), rng.uniform(0.25, 0.8, n)], 1),
        "bg_waves": rng.uniform(0, 1, (n, 2, 3)),  # per wave: direction, wavelength, phase (unit draws)
        "gradient": np.stack([rng.uniform(0, GRADIENT_MAX, n), rng.uniform(0, 2 * np.pi, n)], 1),  # strength, direction
        "clutter_kind": rng.integers(0, len(CLASSES["shape"]), (n, N_CLUTTER)),
        "clutter_xy": rng.uniform(1.0, IMAGE_SIZE - 1.0, (n, N_CLUTTER, 2)),
        "clutter_radius": rng.uniform(*CLUTTER_RADIUS, (n, N_CLUTTER)),
        "clutter_angle": rng.uniform(0, 2 * np.pi, (n, N_CLUTTER)),
        "clutter_hsv": np.stack([rng.uniform(0, 1, (n, N_CLUTTER)), rng.uniform(0.5, 1.0, (n, N_CLUTTER)),
                                 rng.uniform(0.4, 0.95, (n, N_CLUTTER))], -1),
        "noise_seed": rng.integers(2**63),
    }
    p["fg"] = _hsv_to_rgb(p["hue"], p["saturation"], p["value"])
    # Background luma: uniform over [0.06, object - gap] u [object + gap, 0.9] (blue objects get light
    # backgrounds, yellow ones either), so grayscale and desaturated views still show the outline.
    obj = (p["fg"] @ _LUMA) * (1 - TEXTURE_AMPLITUDE / 2)
    per_value = _hsv_to_rgb(p["bg_hsv"][:, 0], p["bg_hsv"][:, 1], np.ones(n)) @ _LUMA
    dark = np.maximum(obj - LUMA_GAP - 0.06, 0.0)  # widths of the two allowed intervals
    light = np.maximum(0.9 - (obj + LUMA_GAP), 0.0)
    t = rng.uniform(0, 1, n) * (dark + light)
    p["bg_luma"] = np.where(t < dark, 0.06 + t, obj + LUMA_GAP + (t - dark))
    p["bg_hsv"][:, 2] = np.clip(p["bg_luma"] / per_value, 0.0, 1.0)
    return labels, p


def _cover(sdf_px):
    """Anti-aliased coverage from a signed distance in pixels."""
    return np.clip(0.5 - sdf_px, 0.0, 1.0)


def _col(values: np.ndarray, sl: slice) -> np.ndarray:
    """Per-image parameters of a chunk as float32 [m, 1, 1], to broadcast over the pixel grid."""
    return values[sl].astype(np.float32)[:, None, None]


def _render(labels: dict, p: dict, sl: slice, gx, gy, noise: np.ndarray) -> np.ndarray:
    """One chunk of images: background, clutter, object, lighting, noise -> uint8 [m, 3, H, W]."""
    f32 = np.float32
    m = sl.stop - sl.start

    # background: low-saturation colour x (1 + two low-frequency luminance waves)
    bg = _hsv_to_rgb(*p["bg_hsv"][sl].T).astype(f32)  # [m, 3]
    waves = np.zeros((m, IMAGE_SIZE, IMAGE_SIZE), f32)
    for w in range(2):  # sin(kx x + ky y + phase), separable: two [m, 32] factors per term
        d, lam, ph = (p["bg_waves"][sl, w, i].astype(f32)[:, None] for i in range(3))
        k = f32(2 * np.pi) / (f32(10.0) + f32(14.0) * lam)
        ax, ay = k * np.cos(d * f32(np.pi)) * gx[0], k * np.sin(d * f32(np.pi)) * gy[0, :, 0] + f32(2 * np.pi) * ph
        waves += np.sin(ay)[:, :, None] * np.cos(ax)[:, None, :] + np.cos(ay)[:, :, None] * np.sin(ax)[:, None, :]
    waves *= f32(BG_WAVE_AMPLITUDE)
    img = bg[:, :, None, None] * (1 + waves[:, None])

    # clutter, behind the object: each piece's coverage is computed in a small window around it and
    # scattered into a padded map (a full-grid distance per piece would cost 7x more)
    pad, side = _CLUTTER_WINDOW, IMAGE_SIZE + 2 * _CLUTTER_WINDOW
    offs = np.arange(-pad, pad + 1)
    for c in range(p["clutter_xy"].shape[1]):
        xy = p["clutter_xy"][sl, c].astype(f32)
        ix, iy = np.floor(xy[:, 0]).astype(np.int64), np.floor(xy[:, 1]).astype(np.int64)
        r, a = _col(p["clutter_radius"][:, c], sl), _col(p["clutter_angle"][:, c], sl)
        dx = (ix[:, None, None] + offs[None, None, :] + f32(0.5) - xy[:, 0, None, None]) / r
        dy = (xy[:, 1, None, None] - (iy[:, None, None] + offs[None, :, None] + f32(0.5))) / r
        u, v = dx * np.cos(a) + dy * np.sin(a), -dx * np.sin(a) + dy * np.cos(a)
        cov = np.zeros((m, side, side), f32)
        flat = (np.arange(m)[:, None, None] * side * side + (iy[:, None, None] + pad + offs[None, :, None]) * side
                + ix[:, None, None] + pad + offs[None, None, :])
        cov.reshape(-1)[flat.ravel()] = _cover(_render_kinds(p["clutter_kind"][sl, c], u, v) * r).ravel()
        rgb = _hsv_to_rgb(*p["clutter_hsv"][sl, c].T).astype(f32)[:, :, None, None]
        img += (rgb - img) * cov[:, None, pad:-pad, pad:-pad]

    # the object: shape coverage, textured and lit colour
    r, a = _col(p["radius"], sl), _col(p["angle"], sl)
    dx, dy = gx - _col(p["cx"], sl), _col(p["cy"], sl) - gy  # pixels, y up
    u, v = (dx * np.cos(a) + dy * np.sin(a)) / r, (-dx * np.sin(a) + dy * np.cos(a)) / r
    cov = _cover(_render_kinds(labels["shape"][sl], u, v) * r)
    ta = _col(p["texture_angle"], sl)
    ph = p["texture_phase"][sl].astype(f32)
    ta_u = dx * np.cos(ta) + dy * np.sin(ta) + ph[:, 0, None, None]
    ta_v = -dx * np.sin(ta) + dy * np.cos(ta) + ph[:, 1, None, None]
    shade = np.empty((m, IMAGE_SIZE, IMAGE_SIZE), f32)
    tex = labels["texture"][sl]
    for k, kind in enumerate(CLASSES["texture"]):
        sel = tex == k
        if sel.any():
            pat, mean = _pattern(kind, ta_u[sel], ta_v[sel])
            shade[sel] = 1 - TEXTURE_AMPLITUDE / 2 - TEXTURE_AMPLITUDE * (pat - mean)
    la = _col(p["light_angle"], sl)
    shade *= np.clip(1 + LIGHT_SLOPE * (dx * np.cos(la) + dy * np.sin(la)) / r, 0.3, 1.6)
    fg = p["fg"][sl].astype(f32)[:, :, None, None] * shade[:, None]
    img += (fg - img) * cov[:, None]

    # global lighting gradient and sensor noise
    g, gd = _col(p["gradient"][:, 0], sl), _col(p["gradient"][:, 1], sl)
    half = IMAGE_SIZE / 2
    ramp = 1 + g * ((gx - half) * np.cos(gd) + (half - gy) * np.sin(gd)) / half
    img *= ramp[:, None]
    img += f32(0.03) * noise
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def generate(n: int, seed: int, stream: int, report: Reporter | None = None
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, np.ndarray]]:
    """Render n images from the (seed, stream) random stream.

    Returns uint8 images [n, 3, 32, 32], one label tensor per task, and the
    continuous per-image parameters (centre, radius, angles, colours, clutter)
    so that tests can check that each attribute is visible. `report` ticks once
    per chunk of images (and may raise progress.Cancelled there).
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(stream), GENERATOR_VERSION]))
    labels, p = _draw(n, rng)
    grid = np.arange(IMAGE_SIZE, dtype=np.float32) + 0.5  # pixel centres; image y grows downwards
    gx, gy = grid[None, None, :], grid[None, :, None]
    noise_rng = np.random.default_rng(p["noise_seed"])
    out = np.empty((n, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    chunks = [slice(start, min(start + _CHUNK, n)) for start in range(0, n, _CHUNK)]
    # chunks render on threads; their sensor noise is drawn here, in chunk order, so the images do not depend
    # on the number of threads
    jobs = ((labels, p, sl, gx, gy, noise_rng.standard_normal((sl.stop - sl.start, 3, IMAGE_SIZE, IMAGE_SIZE),
                                                               dtype=np.float32)) for sl in chunks)
    for sl, img in zip(chunks, map_ordered(_render, jobs)):
        out[sl] = img
        if report is not None:
            report.tick(1, f"{'train' if stream == 0 else 'test'} images {sl.stop:,}/{n:,}")
    return torch.from_numpy(out), {t: torch.from_numpy(y).long() for t, y in labels.items()}, p


def load(*, n_train: int | None, n_test: int | None, seed: int, progress: Progress | None = None,
         should_stop: ShouldStop | None = None, **_):
    """Train and test come from two fixed streams of the same seed, at exactly the requested sizes.

    Reports ProgressEvent('generate', chunks done, chunks) and stops between chunks when `should_stop()` says so."""
    n_train = DEFAULT_N_TRAIN if n_train is None else n_train
    n_test = DEFAULT_N_TEST if n_test is None else n_test
    report = Reporter(progress, should_stop, "generate", -(-n_train // _CHUNK) + -(-n_test // _CHUNK), "")
    report.emit(f"rendering {n_train:,} + {n_test:,} shapes images")
    x_tr, y_tr, _ = generate(n_train, seed, stream=0, report=report)
    x_te, y_te, _ = generate(n_test, seed, stream=1, report=report)
    params = {"generator_version": GENERATOR_VERSION, "n_train": n_train, "n_test": n_test}
    return x_tr, x_te, y_tr, y_te, {t: list(c) for t, c in CLASSES.items()}, params

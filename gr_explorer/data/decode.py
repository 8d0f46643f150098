"""Any image PIL can open -> 8-bit RGB by stated rules, or a refusal that says why.

Why not `img.convert("RGB")` alone: it clips 16-bit and float images (a 32-bit
float TIFF in [0, 1] becomes black and white), and it drops alpha, keeping
whatever colour happens to sit under transparent pixels. The rules, per PIL
mode (the first frame of a multi-frame file: GIF, APNG, multi-page TIFF):

- `1`, `L`, `P`, `RGB`, `RGBX`, `CMYK`, `YCbCr`, `HSV`: PIL's own conversion
  (1 -> 0/255; CMYK without a colour profile: R = (255 - C)(255 - K) / 255;
  YCbCr full-range JPEG/JFIF; HSV the usual hexcone).
- `LAB` (CIE L*a*b*, D50 as in ICC): to sRGB through LittleCMS with its exact
  (not table-interpolated) pipeline; out-of-gamut colours clipped.
- Alpha (`LA`, `La`, `PA`, `RGBA`, `RGBa`, `P` with a transparent colour):
  composited over BACKGROUND (white, what viewers and browsers show), so the
  colour under a fully transparent pixel never reaches the model; `La`/`RGBa`
  hold premultiplied colour.
- 16-bit (`I;16`, `I;16B`, `I;16L`, `I;16N`): round(v * 255 / 65535), so
  65535 -> 255 (not clipped at 255).
- `I` (32-bit signed; how PNG and TIFF 16-bit greyscale often load): read on
  the same 16-bit scale; a value outside 0..65535 has no fixed scale and is
  refused.
- `F` (32-bit float): [0, 1] -> round(255 v); values that do not round into
  0..255, NaN or infinity are refused (a float image in 0..255, or in any
  other range, has no scale we could pick without guessing per image).
- Any other mode is refused. Embedded colour (ICC) profiles and EXIF
  orientation are not applied: pixels are read as stored.

A refusal is UndecodableImage (a ValueError); the image-folder reader names
the file in its DatasetError. VERSION is part of every image folder's cache
key: change it with any rule here.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageCms

VERSION = "2"
BACKGROUND = 255  # white, on every channel
_VIA_PIL = ("1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", "HSV")
_SIXTEEN = ("I;16", "I;16B", "I;16L", "I;16N")
_ALPHA = {"LA": False, "PA": False, "RGBA": False, "La": True, "RGBa": True}  # mode -> premultiplied
MODES = (*_VIA_PIL, *_SIXTEEN, *_ALPHA, "I", "F", "LAB")


class UndecodableImage(ValueError):
    """An image whose pixels have no 8-bit RGB reading under the rules above."""


def to_rgb8(img: Image.Image) -> np.ndarray:
    """uint8 [H, W, 3] of the image's current (first) frame by the rules in this module's docstring."""
    mode = img.mode
    if mode == "P" and ("transparency" in img.info or (img.palette is not None and img.palette.mode == "RGBA")):
        mode, img = "PA", img.convert("RGBA")
    if mode in _VIA_PIL:
        return np.asarray(img.convert("RGB"))
    if mode in _ALPHA:
        return _composite(img, premultiplied=_ALPHA[mode])
    if mode in _SIXTEEN or mode == "I":
        v = np.asarray(img).astype(np.int64)
        if mode == "I" and v.size and (v.min() < 0 or v.max() > 65535):
            raise UndecodableImage(f"32-bit integer pixels from {v.min()} to {v.max()}: valid are 0..65535 (read "
                                   f"as 16-bit); save the image as 8- or 16-bit")
        return _grey((v * 255 + 32767) // 65535)  # round(v * 255 / 65535): never a tie (65535 is odd)
    if mode == "F":
        v = np.asarray(img, dtype=np.float64)
        q = np.rint(v * 255.0)
        if not np.isfinite(q).all() or (q.size and (q.min() < 0 or q.max() > 255)):
            finite = v[np.isfinite(v)]
            shown = f"from {finite.min():.4g} to {finite.max():.4g}" if finite.size else "none finite"
            raise UndecodableImage(f"32-bit float pixels {shown}{', with NaN or infinity' if finite.size < v.size else ''}: "
                                   f"valid are floats in [0, 1] (scaled by 255); scale the image into [0, 1] or save "
                                   f"it as 8- or 16-bit")
        return _grey(q)
    if mode == "LAB":
        return np.asarray(ImageCms.applyTransform(img, _lab_to_srgb()))
    raise UndecodableImage(f"image mode {mode!r} is not supported; valid modes: {', '.join(MODES)}")


def _grey(v: np.ndarray) -> np.ndarray:
    return np.repeat(v.astype(np.uint8)[..., None], 3, axis=2)


def _composite(img: Image.Image, premultiplied: bool) -> np.ndarray:
    """Alpha over BACKGROUND, rounded to nearest (exact integer arithmetic: no ties, as 255 is odd)."""
    if img.mode == "PA":
        img = img.convert("RGBA")
    a = np.asarray(img).astype(np.int64)
    colour, alpha = a[..., :-1], a[..., -1:]
    if premultiplied:  # colour already holds C * alpha / 255
        out = np.minimum(colour + (BACKGROUND * (255 - alpha) + 127) // 255, 255)
    else:
        out = (colour * alpha + BACKGROUND * (255 - alpha) + 127) // 255
    return np.ascontiguousarray(np.broadcast_to(out, (*out.shape[:2], 3)), dtype=np.uint8)


@lru_cache(maxsize=1)
def _lab_to_srgb():
    """LittleCMS Lab (D50) -> sRGB, computed exactly per pixel (NOOPTIMIZE: its default 8-bit lookup table is off by
    up to 22 levels in dark, saturated colours)."""
    return ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB",
                                   flags=ImageCms.Flags.NOOPTIMIZE)

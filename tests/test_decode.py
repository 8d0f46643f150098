"""Every PIL image mode decodes to the right 8-bit RGB values (data.decode), in memory and through real files.

The references are NumPy formulas written here from the rules' definitions (JFIF YCbCr, naive CMYK, colorsys
HSV, CIE L*a*b* D50 -> sRGB, alpha over white, 16-bit and float scaling), not calls into the code under test.
"""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
from PIL import Image

from gr_explorer.data import decode, load_dataset
from gr_explorer.data.decoders import decode_pil
from gr_explorer.errors import DatasetError

SIZE = (16, 12)  # width, height: 16 is a whole number of bytes for mode 1
W, H = SIZE
WHITE = 255.0


def _rng(mode: str) -> np.random.Generator:
    return np.random.default_rng(sum(map(ord, mode)))


def sample(mode: str) -> Image.Image:
    """A random image of `mode` (every value of its range likely present)."""
    rng = _rng(mode)
    if mode == "F":
        return Image.frombytes("F", SIZE, rng.uniform(0, 1, (H, W)).astype(np.float32).tobytes())
    if mode == "I":
        return Image.frombytes("I", SIZE, rng.integers(0, 65536, (H, W)).astype(np.int32).tobytes())
    if mode.startswith("I;16"):
        order = {"I;16B": ">u2", "I;16L": "<u2", "I;16": "<u2", "I;16N": "=u2"}[mode]
        return Image.frombytes(mode, SIZE, rng.integers(0, 65536, (H, W)).astype(order).tobytes())
    if mode == "1":
        return Image.frombytes("1", SIZE, rng.integers(0, 256, H * W // 8, dtype=np.uint8).tobytes())
    bands = Image.getmodebands(mode)
    raw = rng.integers(0, 256, (H, W, bands), dtype=np.uint8)
    if mode in ("La", "RGBa"):  # premultiplied: colour <= alpha
        raw[..., :-1] = (raw[..., :-1].astype(int) * raw[..., -1:] // 255).astype(np.uint8)
    img = Image.frombytes(mode, SIZE, raw.tobytes())
    if mode in ("P", "PA"):
        img.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tobytes())
    return img


def palette_with_transparency() -> Image.Image:
    img = sample("P")
    img.info["transparency"] = int(np.asarray(img)[0, 0])
    return img


def palette_rgba() -> Image.Image:
    rng = _rng("P rgba")
    img = Image.frombytes("P", SIZE, rng.integers(0, 256, (H, W), dtype=np.uint8).tobytes())
    img.putpalette(rng.integers(0, 256, 1024, dtype=np.uint8).tobytes(), rawmode="RGBA")
    return img


# -- references -------------------------------------------------------------------------------------------------
def _over_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return np.rint(colour * alpha / 255.0 + WHITE * (1 - alpha / 255.0))


def _rgb(a: np.ndarray) -> np.ndarray:
    return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a


def _palette(img: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """(colour table [256, 3], alpha table [256]) of a P or PA image."""
    if img.palette.mode == "RGBA":
        table = np.frombuffer(bytes(img.getpalette("RGBA")), np.uint8).reshape(-1, 4).astype(float)
        colour, alpha = table[:, :3], table[:, 3]
    else:
        colour = np.array(img.getpalette("RGB"), float).reshape(-1, 3)
        alpha = np.full(len(colour), 255.0)
    colour = np.vstack([colour, np.zeros((256 - len(colour), 3))]) if len(colour) < 256 else colour
    alpha = np.concatenate([alpha, np.full(256 - len(alpha), 255.0)]) if len(alpha) < 256 else alpha
    t = img.info.get("transparency")
    if isinstance(t, int):
        alpha = alpha.copy()
        alpha[t] = 0
    elif isinstance(t, bytes):
        alpha = alpha.copy()
        alpha[:len(t)] = np.frombuffer(t, np.uint8)
    return colour, alpha


def _lab_to_srgb(raw: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D50, PIL's 8-bit layout: L * 255 / 100, a and b signed bytes) -> XYZ -> Bradford to D65 -> sRGB."""
    lum = raw[..., 0] / 255.0 * 100
    a, b = raw[..., 1].view(np.int8).astype(float), raw[..., 2].view(np.int8).astype(float)
    fy = (lum + 16) / 116
    f = np.stack([fy + a / 500, fy, fy - b / 200], -1)
    d = 6 / 29
    xyz = np.where(f > d, f ** 3, 3 * d * d * (f - 4 / 29)) * np.array([0.96422, 1.0, 0.82521])
    bradford = np.array([[0.9555766, -0.0230393, 0.0631636], [-0.0282895, 1.0099416, 0.0210077],
                         [0.0122982, -0.0204830, 1.3299098]])
    to_rgb = np.array([[3.2404542, -1.5371385, -0.4985314], [-0.9692660, 1.8760108, 0.0415560],
                       [0.0556434, -0.2040259, 1.0572252]])
    lin = np.clip(xyz @ bradford.T @ to_rgb.T, 0, 1)
    return np.rint(255 * np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055))


def reference(img: Image.Image) -> tuple[np.ndarray, int]:
    """(expected uint8 [H, W, 3] as float, tolerance in levels) for any mode."""
    mode, raw = img.mode, np.asarray(img)
    if mode == "1":
        return _rgb(raw.astype(float) * 255), 0
    if mode in ("L", "RGB"):
        return _rgb(raw.astype(float)), 0
    if mode == "RGBX":
        return raw[..., :3].astype(float), 0
    if mode in ("LA", "RGBA"):
        return _rgb(_over_white(raw[..., :-1].astype(float), raw[..., -1:].astype(float)).squeeze(-1)
                    if mode == "LA" else _over_white(raw[..., :3].astype(float), raw[..., 3:].astype(float))), 0
    if mode in ("La", "RGBa"):  # premultiplied: C = c * 255 / a, then over white: c + 255 - a
        c, a = raw[..., :-1].astype(float), raw[..., -1:].astype(float)
        out = np.clip(np.rint(c + WHITE * (1 - a / 255.0)), 0, 255)
        return _rgb(out.squeeze(-1)) if mode == "La" else out, 0
    if mode in ("P", "PA"):
        colour, alpha = _palette(img)
        if mode == "P":
            return _over_white(colour[raw], alpha[raw][..., None]), 0
        return _over_white(colour[raw[..., 0]], raw[..., 1:2].astype(float)), 0  # PA: the A band is the alpha
    if mode == "CMYK":
        c = raw.astype(float)
        return np.rint((255 - c[..., :3]) * (255 - c[..., 3:]) / 255), 0
    if mode == "YCbCr":
        y, cb, cr = (raw[..., i].astype(float) for i in range(3))
        rgb = np.stack([y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128),
                        y + 1.772 * (cb - 128)], -1)
        return np.clip(np.rint(rgb), 0, 255), 1
    if mode == "HSV":
        rgb = [colorsys.hsv_to_rgb(*(p / 255.0)) for p in raw.reshape(-1, 3)]
        return np.rint(np.array(rgb) * 255).reshape(raw.shape), 1
    if mode == "LAB":
        return _lab_to_srgb(raw), 1
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        return _rgb(np.rint(raw.astype(float) * 255 / 65535)), 0
    if mode == "F":
        return _rgb(np.rint(raw.astype(float) * 255)), 0
    raise AssertionError(f"no reference rule for PIL mode {mode!r}: decide how it decodes (data/decode.py) and add one")


def _check(img: Image.Image, got: np.ndarray) -> None:
    want, tol = reference(img)
    assert got.dtype == np.uint8 and got.shape == (img.height, img.width, 3), (got.dtype, got.shape)
    diff = np.abs(got.astype(float) - want)
    assert diff.max() <= tol, f"{img.mode}: off by up to {diff.max()} levels (tolerance {tol})"


# -- the table: every mode PIL has, in memory --------------------------------------------------------------------
@pytest.mark.parametrize("mode", Image.MODES)
def test_every_pil_mode_decodes_to_its_reference(mode):
    img = sample(mode)
    _check(img, decode.to_rgb8(img))


@pytest.mark.parametrize("make", [palette_with_transparency, palette_rgba], ids=["P+transparency", "P rgba palette"])
def test_palettes_with_alpha_are_composited(make):
    img = make()
    got = decode.to_rgb8(img)
    _check(img, got)
    _, alpha = _palette(img)
    assert (alpha[np.asarray(img)] < 255).any()  # a (partly) transparent pixel really is tested


def test_every_mode_has_a_rule():
    """A PIL mode without a rule here (a new Pillow) must be decided, not silently decoded by convert('RGB')."""
    assert set(Image.MODES) <= set(decode.MODES), sorted(set(Image.MODES) - set(decode.MODES))


# -- through real files: every (mode, format) that Pillow can write ------------------------------------------------
FORMATS = {"PNG": ".png", "TIFF": ".tif", "GIF": ".gif", "JPEG": ".jpg", "BMP": ".bmp", "WEBP": ".webp"}
#: combinations that a Pillow able to write them must keep supporting (what users' files come as)
MUST_WRITE = {("F", "TIFF"), ("I", "TIFF"), ("I;16", "PNG"), ("I;16", "TIFF"), ("I;16B", "TIFF"), ("LA", "PNG"),
              ("RGBA", "PNG"), ("P", "PNG"), ("P", "GIF"), ("PA", "TIFF"), ("CMYK", "JPEG"), ("CMYK", "TIFF"),
              ("LAB", "TIFF"), ("YCbCr", "TIFF"), ("1", "PNG"), ("L", "JPEG"), ("RGB", "WEBP")}


def _write(img: Image.Image, path, fmt: str) -> bool:
    try:
        img.save(path, fmt)
        return True
    except (OSError, ValueError, KeyError, TypeError):  # Pillow cannot write this mode in this format
        return False


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("mode", Image.MODES)
def test_every_mode_through_every_format_pillow_writes(tmp_path, mode, fmt):
    path = tmp_path / f"img{FORMATS[fmt]}"
    if not _write(sample(mode), path, fmt):
        assert (mode, fmt) not in MUST_WRITE
        pytest.skip(f"Pillow cannot write mode {mode} as {fmt}")
    got = decode_pil(path, None)
    assert isinstance(got, np.ndarray), got
    with Image.open(path) as stored:
        stored.load()
        _check(stored, got)  # what the file holds (a lossy format's own pixels), decoded by the rules


def test_the_issue_case_a_float_tiff_in_unit_range_is_not_black(tmp_path):
    v = np.linspace(0, 1, W * H, dtype=np.float32).reshape(H, W)
    Image.frombytes("F", SIZE, v.tobytes()).save(tmp_path / "f.tif")
    got = decode_pil(tmp_path / "f.tif", None)
    assert np.array_equal(got[..., 0], np.rint(v.astype(float) * 255).astype(np.uint8)) and got.max() == 255
    assert len(np.unique(got)) > 100  # not {0, 255}: PIL's convert("RGB") gave black and white


@pytest.mark.parametrize("fmt, frames_kw", [("GIF", {}), ("PNG", {}), ("TIFF", {})])
def test_multi_frame_files_give_their_first_frame(tmp_path, fmt, frames_kw):
    first, second = Image.new("RGB", SIZE, (200, 30, 60)), Image.new("RGB", SIZE, (10, 220, 90))
    path = tmp_path / f"anim{FORMATS[fmt]}"
    first.save(path, fmt, save_all=True, append_images=[second], **frames_kw)
    with Image.open(path) as img:
        assert getattr(img, "n_frames", 1) == 2
        ref = np.asarray(img.convert("RGB")).copy()  # frame 0 as stored (GIF quantises it)
    got = decode_pil(path, None)
    assert np.array_equal(got, ref) and abs(int(got[0, 0, 1]) - 30) <= 8


@pytest.mark.parametrize("values, why", [
    (np.full((H, W), 3.0), "from 3 to 3"),
    (np.linspace(-0.5, 1, W * H).reshape(H, W), "from -0.5 to 1"),
    (np.where(np.eye(H, W) > 0, np.nan, 0.5), "with NaN"),
    (np.linspace(0, 255, W * H).reshape(H, W), "from 0 to 255"),
])
def test_floats_outside_the_unit_range_are_refused(values, why):
    img = Image.frombytes("F", SIZE, values.astype(np.float32).tobytes())
    with pytest.raises(decode.UndecodableImage, match=why):
        decode.to_rgb8(img)


@pytest.mark.parametrize("lo, hi", [(-1, 100), (0, 70000)])
def test_32_bit_integers_outside_16_bits_are_refused(lo, hi):
    img = Image.frombytes("I", SIZE, np.linspace(lo, hi, W * H).astype(np.int32).tobytes())
    with pytest.raises(decode.UndecodableImage, match="valid are 0..65535"):
        decode.to_rgb8(img)


def test_a_file_that_cannot_be_decoded_is_refused_by_name(tmp_path):
    root = tmp_path / "imgs"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", SIZE, (i * 40, 0, 0)).save(root / c / f"{i}.png")
    Image.frombytes("F", SIZE, np.full((H, W), 7.5, np.float32).tobytes()).save(root / "b" / "hdr.tif")
    ds = load_dataset(f"imagefolder:{root}")
    with pytest.raises(DatasetError, match=r"b/hdr\.tif \(UndecodableImage: 32-bit float pixels from 7\.5 to 7\.5"):
        ds.splits["train"].materialize()
        ds.splits["test"].materialize()


def test_an_unknown_mode_is_refused():
    class Odd:
        mode, info, palette = "BGR;99", {}, None

    with pytest.raises(decode.UndecodableImage, match="not supported; valid modes"):
        decode.to_rgb8(Odd())

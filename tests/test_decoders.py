"""Decoders for image folders: torchvision on the CPU equals PIL, the GPU path's routing and fallbacks."""

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gr_explorer.data import decoders as decode
from gr_explorer.data import load_dataset
from gr_explorer.data.decoders import CudaJpegBatches, decode_file, jpeg_frame, resolve_decoder
from gr_explorer.errors import ConfigError, DatasetError
from gr_explorer.features import extract_features
from helpers import tiny_model

#: file kind -> (how PIL writes it, what jpeg_frame says, whether nvJPEG takes it)
KINDS = {
    "jpeg 4:2:0": (dict(format="JPEG", quality=90), "baseline"),
    "jpeg 4:2:2": (dict(format="JPEG", quality=85, subsampling=1), "baseline"),
    "jpeg 4:4:4": (dict(format="JPEG", quality=75, subsampling=0), "baseline"),
    "jpeg grey": (dict(format="JPEG", mode="L"), "baseline"),
    "jpeg progressive": (dict(format="JPEG", progressive=True), "progressive"),
    "jpeg cmyk": (dict(format="JPEG", mode="CMYK"), "other"),
    "png": (dict(format="PNG"), "not-jpeg"),
    "png palette": (dict(format="PNG", mode="P"), "not-jpeg"),
}


def _picture(seed: int, hw=(37, 53)) -> np.ndarray:
    """A photo-like image: a smooth gradient plus texture (JPEG's blocks and chroma subsampling both matter)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, hw[1])[None, :, None] * np.ones((hw[0], 1, 3)) * rng.uniform(0.3, 1, 3)
    return (0.6 * ramp + 0.4 * rng.integers(0, 256, (*hw, 3))).astype(np.uint8)


def _save(path: Path, kind: str, seed: int = 0, hw=(37, 53)) -> Path:
    opts = dict(KINDS[kind][0])
    img = Image.fromarray(_picture(seed, hw))
    mode = opts.pop("mode", None)
    if mode is not None:
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **opts)
    return path


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("size", [None, 24])
def test_torchvision_cpu_decodes_every_kind_bit_identically_to_pil(tmp_path, kind, size):
    """Both run libjpeg-turbo with its defaults (integer IDCT, fancy upsampling) and both resize with PIL, so the
    pixels are equal bit for bit, not just close; files that are not JPEGs go to PIL itself."""
    path = _save(tmp_path / f"x.{'png' if 'png' in kind else 'jpg'}", kind)
    assert jpeg_frame(path.read_bytes()) == KINDS[kind][1]
    want, got = decode_file(path, size, "pil"), decode_file(path, size, "torchvision-cpu")
    assert isinstance(got, np.ndarray) and got.dtype == np.uint8 and got.shape == want.shape
    assert np.array_equal(got, want)


def test_jpeg_frame_reads_only_the_headers():
    assert jpeg_frame(b"\xff\xd8\xff") == "not-jpeg"  # too short to be anything
    assert jpeg_frame(b"GIF89a....") == "not-jpeg"
    assert jpeg_frame(b"\xff\xd8\xff\xc3\x00\x0b\x08") == "other"  # lossless frame
    assert jpeg_frame(b"\xff\xd8\x00\x00\x00\x00") == "other"  # garbage after SOI


def test_a_corrupt_jpeg_is_an_error_naming_the_file_with_either_cpu_decoder(tmp_path):
    path = _save(tmp_path / "x.jpg", "jpeg 4:2:0")
    path.write_bytes(path.read_bytes()[:200])
    for decoder in ("pil", "torchvision-cpu"):
        assert isinstance(decode_file(path, None, decoder), Exception)


def _folder(root: Path, kinds=("jpeg 4:2:0",), per_class: int = 6, hw=(37, 53)) -> Path:
    i = 0
    for c in ("a", "b"):
        for split, n in (("train", per_class), ("test", per_class // 2)):
            for _ in range(n):
                kind = kinds[i % len(kinds)]
                _save(root / split / c / f"{i:03d}.{'png' if 'png' in kind else 'jpg'}", kind, seed=i, hw=hw)
                i += 1
    return root


def test_streamed_extraction_with_torchvision_cpu_equals_pil_and_shares_its_cache(tmp_path):
    from gr_explorer.cache import FeatureCache

    root = _folder(tmp_path / "imgs", kinds=tuple(KINDS))
    ds = load_dataset(f"imagefolder:{root}", image_size=16)
    cache = FeatureCache(tmp_path / "cache")
    pil = extract_features(tiny_model(), ds, cache=cache, batch_size=5, workers=0, decoder="pil")
    again = extract_features(tiny_model(), ds, cache=cache, batch_size=5, workers=2, decoder="torchvision-cpu")
    assert again.forward_batches == 0 and again.key == pil.key  # the same pixels, so the same entry
    fresh = extract_features(tiny_model(), ds, cache=False, batch_size=5, workers=2, decoder="torchvision-cpu")
    for name in pil.train:
        assert torch.equal(fresh.train[name], pil.train[name]) and torch.equal(fresh.test[name], pil.test[name])


def test_decoder_choice_is_checked_and_auto_is_pil_off_cuda():
    cpu = torch.device("cpu")
    assert resolve_decoder("auto", cpu) == "pil" and resolve_decoder("torchvision-cpu", cpu) == "torchvision-cpu"
    with pytest.raises(ConfigError, match=r"decoder=torchvision-cuda decodes on a CUDA device.*Valid here: auto, pil"):
        resolve_decoder("torchvision-cuda", cpu)
    with pytest.raises(ConfigError, match=r"decoder='nvjpeg' is invalid\. Valid: auto, pil, torchvision-cpu, "):
        resolve_decoder("nvjpeg", cpu)


def _gpu_path_batches(ds, split: str, batch: int, device="cpu", threads: int = 2):
    images = ds.splits[split]
    starts = list(range(0, len(images), batch))
    return list(CudaJpegBatches(images, torch.device(device), threads)(starts, batch))


@pytest.mark.parametrize("size", [None, 16])
def test_gpu_path_routes_files_and_matches_pil(tmp_path, size):
    """The GPU path's logic run on the CPU (torchvision's batched decode_jpeg takes device='cpu' too): baseline
    JPEGs go to the one batched call, PNG / progressive / CMYK files are decoded on the reading threads. At the
    native size every pixel equals PIL's; resized, the tensor rule (antialiased bilinear, as for in-memory
    datasets) differs from PIL's resize by rounding: at most 1 grey level."""
    root = _folder(tmp_path / "imgs", kinds=tuple(KINDS))
    ds = load_dataset(f"imagefolder:{root}", image_size=size)
    calls = []
    real = decode.decode_bytes
    decode.decode_bytes, orig = (lambda data, s: calls.append(jpeg_frame(data)) or real(data, s)), real
    try:
        got = _gpu_path_batches(ds, "train", 5)
    finally:
        decode.decode_bytes = orig
    assert sorted(set(calls)) == ["not-jpeg", "other", "progressive"]  # the baseline JPEGs never left the batch
    x = torch.cat([b for _, b, failed in got if not failed])
    want = ds.train_images
    assert x.shape == want.shape and x.dtype == torch.uint8
    diff = (x.int() - want.int()).abs()
    assert int(diff.max()) <= (0 if size is None else 1)


def test_gpu_path_falls_back_file_by_file_and_names_a_broken_file(tmp_path, monkeypatch):
    root = _folder(tmp_path / "imgs")
    ds = load_dataset(f"imagefolder:{root}")
    real = decode.decode_jpeg

    def no_batches(data, *a, **kw):  # nvJPEG refusing batched decoding (the GPU path must not depend on it)
        if isinstance(data, list):
            raise RuntimeError("nvjpegDecodeBatched failed (simulated)")
        return real(data, *a, **kw)

    monkeypatch.setattr(decode, "decode_jpeg", no_batches)
    monkeypatch.setattr(decode, "_warned", set())
    with pytest.warns(UserWarning, match="Batched GPU JPEG decoding failed.*file by file"):
        got = _gpu_path_batches(ds, "train", 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _gpu_path_batches(ds, "train", 4)  # warned once only
    assert torch.equal(torch.cat([b for _, b, _ in got]), ds.train_images)
    broken = root / "train" / "b" / sorted(p.name for p in (root / "train" / "b").iterdir())[1]
    broken.write_bytes(broken.read_bytes()[:150])
    ds = load_dataset(f"imagefolder:{root}", image_size=16)  # a size given: no header is read up front
    failed = [f for _, _, f in _gpu_path_batches(ds, "train", 4) if f]
    names = [ds.splits["train"].rel_paths[i] for f in failed for i, _ in f]
    assert names == [f"train/b/{broken.name}"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_decoding_is_within_two_grey_levels_of_pil_and_extracts(tmp_path):
    """nvJPEG's IDCT and upsampling are not libjpeg-turbo's: pixels may differ by a grey level or two."""
    root = _folder(tmp_path / "imgs", kinds=tuple(KINDS), hw=(64, 80))
    ds = load_dataset(f"imagefolder:{root}")
    got = _gpu_path_batches(ds, "train", 4, device="cuda")
    x = torch.cat([b.cpu() for _, b, failed in got if not failed])
    diff = (x.int() - ds.train_images.int()).abs()
    assert int(diff.max()) <= 2 and float(diff.float().mean()) < 0.5, (int(diff.max()), float(diff.float().mean()))
    ds16 = load_dataset(f"imagefolder:{root}", image_size=16)
    gpu = extract_features(tiny_model(), ds16, cache=False, batch_size=5, device="cuda", decoder="auto")
    cpu = extract_features(tiny_model(), ds16, cache=False, batch_size=5, device="cuda", decoder="pil")
    assert gpu.key != cpu.key  # other pixels, another cache entry
    for name in cpu.train:  # bf16 features of images a grey level apart
        torch.testing.assert_close(gpu.train[name].float(), cpu.train[name].float(), rtol=5e-2, atol=5e-2)


def test_decoding_a_broken_folder_file_is_a_dataset_error_with_the_name(tmp_path):
    root = _folder(tmp_path / "imgs")
    victim = next((root / "test" / "a").iterdir())
    victim.write_bytes(victim.read_bytes()[:150])
    ds = load_dataset(f"imagefolder:{root}", image_size=16)
    with pytest.raises(DatasetError, match=rf"could not be decoded as images: test/a/{victim.name}"):
        extract_features(tiny_model(), ds, cache=False, workers=0, decoder="torchvision-cpu")


def test_pil_decode_of_bytes_and_of_path_agree(tmp_path):
    path = _save(tmp_path / "x.png", "png palette")
    assert np.array_equal(decode.decode_pil(path, 20), decode.decode_pil(io.BytesIO(path.read_bytes()), 20))

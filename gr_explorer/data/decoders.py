"""Decoding image files: PIL, torchvision on the CPU, or batched JPEG decoding on the GPU (nvJPEG).

Why a GPU decoder: on an image folder the limit is decoding, not the network (about 1,000 ImageNet JPEGs/s with
8 CPU workers in a peer's published benchmark, against ~7,600 images/s for ViT-B/16 on one H100). With
`torchvision-cuda`, CPU threads only read the files; each batch's JPEGs are decoded by one batched
`torchvision.io.decode_jpeg(..., device="cuda")` call and resized on the GPU.

The decoders (the `decoder` setting):
* `pil`: PIL decodes and resizes (`resize_pil`) in DataLoader workers; the reference.
* `torchvision-cpu`: JPEGs decoded by torchvision's libjpeg-turbo, everything else by PIL, resized by PIL. For
  8-bit JPEGs the pixels equal PIL's bit for bit (both run libjpeg-turbo's default integer IDCT and fancy
  upsampling; the tests check baseline, 4:4:4/4:2:2/4:2:0, greyscale, progressive and CMYK files), so its
  features share PIL's cache entries.
* `torchvision-cuda`: baseline JPEGs (sequential Huffman, 8-bit, greyscale or YCbCr, what nvJPEG decodes) on
  the GPU, resized there with the tensor rule of `resize_crop`; every other file (PNG, progressive or CMYK JPEGs
  ...) is decoded on the CPU threads as `torchvision-cpu` does. The GPU's IDCT and resize differ from PIL's by
  a grey level or two, so these features have their own cache key.
* `auto`: `torchvision-cuda` when extracting on CUDA and nvJPEG works there, else `pil`.
"""

from __future__ import annotations

import io
import warnings
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from ..errors import ConfigError
from ..names import DECODERS
from ..threads import map_ordered
from .decode import to_rgb8
from .resize import resize_crop, resize_pil

_SOF_OTHER = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # lossless, hierarchical, arithmetic
_warned: set[str] = set()


def _sized(arr: np.ndarray, size: int | None) -> np.ndarray:
    if size is not None and arr.shape[:2] != (size, size):
        arr = np.asarray(resize_pil(Image.fromarray(arr), size))
    return arr


def decode_pil(source: Path | io.BytesIO, size: int | None) -> np.ndarray | Exception:
    """HWC uint8 RGB at `size` (shorter side resized, centre crop) or native size; the exception if it fails."""
    try:
        with Image.open(source) as img:
            img.load()
            arr = to_rgb8(img)  # every PIL mode by data/decode.py's rules
        return _sized(arr, size)
    except Exception as e:  # PIL raises OSError, ValueError, SyntaxError ... for bad files
        return e


def jpeg_frame(data: bytes | np.ndarray) -> str:
    """What kind of file the bytes hold: 'baseline' (a sequential Huffman JPEG, 8-bit, greyscale or YCbCr: what
    nvJPEG decodes), 'progressive', 'other' (any other JPEG: lossless, arithmetic, 12-bit, CMYK/YCCK, Adobe RGB,
    or a header that cannot be read) or 'not-jpeg'. Reads the marker segments up to the frame header only."""
    b = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    n = len(b)
    if n < 4 or b[0] != 0xFF or b[1] != 0xD8:
        return "not-jpeg"
    i, adobe_rgb = 2, False
    while i + 4 <= n:
        if b[i] != 0xFF:
            return "other"
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        length = (b[i + 2] << 8) | b[i + 3]
        if marker == 0xEE and length >= 12 and i + 15 <= n and bytes(b[i + 4:i + 9]) == b"Adobe":
            adobe_rgb = b[i + 15] == 0  # transform 0: RGB or CMYK stored as is
        if marker in (0xC0, 0xC1, 0xC2):
            if i + 10 > n:
                return "other"
            precision, components = b[i + 4], b[i + 9]
            if precision != 8 or components not in (1, 3) or (components == 3 and adobe_rgb):
                return "other"
            return "progressive" if marker == 0xC2 else "baseline"
        if marker in _SOF_OTHER or marker == 0xDA:  # another frame type, or a scan before any frame header
            return "other"
        i += 2 + length
    return "other"


def decode_bytes(data: np.ndarray, size: int | None) -> np.ndarray | Exception:
    """`torchvision-cpu` on a file's bytes: JPEGs by torchvision (PIL's pixels), anything else by PIL."""
    if jpeg_frame(data) != "not-jpeg":
        try:
            img = decode_jpeg(torch.from_numpy(data), mode=ImageReadMode.RGB)
            return _sized(img.permute(1, 2, 0).numpy(), size)
        except RuntimeError:
            pass  # a JPEG torchvision refuses: PIL may still read it (and names the problem if not)
    return decode_pil(io.BytesIO(data.tobytes()), size)


def decode_file(path: Path, size: int | None, decoder: str = "pil") -> np.ndarray | Exception:
    """One file on the CPU with a CPU decoder (`torchvision-cuda`'s CPU side is `torchvision-cpu`)."""
    if decoder == "pil":
        return decode_pil(path, size)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        return e
    return decode_bytes(data, size)


@lru_cache(maxsize=None)
def cuda_jpeg_works(device: str) -> bool:
    """Whether torchvision decodes a JPEG on this CUDA device (nvJPEG present and working)."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 60)).save(buf, "JPEG")
    try:
        decode_jpeg(torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8), device=device)
        return True
    except Exception:  # no nvJPEG in this build, a driver problem ...: the CPU decoders remain
        return False


def resolve_decoder(name: str, device: torch.device) -> str:
    """`auto` -> torchvision-cuda on a CUDA device where nvJPEG works, else pil; torchvision-cuda needs CUDA."""
    if name not in DECODERS:
        raise ConfigError(f"decoder={name!r} is invalid. Valid: {', '.join(DECODERS)}.")
    if name == "auto":
        return "torchvision-cuda" if device.type == "cuda" and cuda_jpeg_works(str(device)) else "pil"
    if name == "torchvision-cuda" and device.type != "cuda":
        raise ConfigError(f"decoder=torchvision-cuda decodes on a CUDA device, but this run extracts on {device}. "
                          "Valid here: auto, pil, torchvision-cpu.")
    return name


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, stacklevel=3)


class CudaJpegBatches:
    """Batches of a streamed folder decoded on the GPU: (first index, uint8 [B, 3, H, W] on `device`, failures).

    `images` is a FileImages (root, rel_paths, size, shape). Threads read each batch's files (at most 2 x
    `threads` batches ahead) and decode the files nvJPEG cannot take on the CPU; the main thread decodes the
    batch's JPEGs in one call on the GPU and resizes them there. A batched call that fails is retried file by
    file, each file that nvJPEG refuses then decoded on the CPU (warned once). `failures` lists
    (index, reason) of files no decoder could read.
    """

    def __init__(self, images, device: torch.device, threads: int):
        self.images, self.device, self.threads = images, device, max(1, threads)
        self.size = images.size
        self.hw = tuple(images.shape[1:])

    def _read(self, start: int, stop: int) -> list:
        """On a CPU thread: per file, its bytes as a tensor (a baseline JPEG for the GPU), or its decoded HWC array."""
        out = []
        for i in range(start, stop):
            try:
                data = np.fromfile(self.images.root / self.images.rel_paths[i], dtype=np.uint8)
            except OSError as e:
                out.append(e)
                continue
            out.append(torch.from_numpy(data) if jpeg_frame(data) == "baseline" else decode_bytes(data, self.size))
        return out

    def __call__(self, starts: Sequence[int], batch_size: int) -> Iterator[tuple[int, torch.Tensor | None, list]]:
        n = len(self.images)
        reads = map_ordered(self._read, ((s, min(s + batch_size, n)) for s in starts), self.threads)
        for start, items in zip(starts, reads):
            x, failed = self._assemble(items)
            yield start, x, [(start + j, why) for j, why in failed]

    def _decode_gpu(self, blobs: list[torch.Tensor]) -> list[torch.Tensor | Exception]:
        try:
            return decode_jpeg(blobs, mode=ImageReadMode.RGB, device=self.device)
        except RuntimeError as e:
            _warn_once("batch", f"Batched GPU JPEG decoding failed ({str(e).splitlines()[0][:200]}); decoding that "
                                "batch file by file, on the CPU where the GPU refuses a file.")
        out = []
        for blob in blobs:
            try:
                out.append(decode_jpeg(blob, mode=ImageReadMode.RGB, device=self.device))
            except RuntimeError:
                try:
                    out.append(decode_jpeg(blob, mode=ImageReadMode.RGB).to(self.device))
                except RuntimeError as e:
                    out.append(e)
        return out

    def _assemble(self, items: list) -> tuple[torch.Tensor | None, list]:
        failed = [(j, f"{type(a).__name__}: {a}") for j, a in enumerate(items) if isinstance(a, Exception)]
        on_gpu = [j for j, a in enumerate(items) if isinstance(a, torch.Tensor)]
        decoded = dict(zip(on_gpu, self._decode_gpu([items[j] for j in on_gpu]))) if on_gpu else {}
        failed += [(j, f"{type(a).__name__}: {a}") for j, a in decoded.items() if isinstance(a, Exception)]
        if failed:
            return None, sorted(failed)
        out = torch.empty((len(items), 3, *self.hw), dtype=torch.uint8, device=self.device)
        by_shape: dict[tuple, list[int]] = defaultdict(list)
        for j, img in decoded.items():
            by_shape[tuple(img.shape[-2:])].append(j)
        for hw, js in by_shape.items():  # one resize call per distinct size (one for a folder of equal sizes)
            group = torch.stack([decoded[j] for j in js])
            if self.size is not None:
                group = resize_crop(group, self.size)
            elif hw != self.hw:
                return None, [(j, f"ValueError: decoded size {hw} differs from the folder's {self.hw}") for j in js]
            out[js] = group
        for j, a in enumerate(items):
            if isinstance(a, np.ndarray):
                if a.shape[:2] != self.hw:
                    return None, [(j, f"ValueError: decoded size {a.shape[:2]} differs from the folder's {self.hw}")]
                out[j] = torch.tensor(a).permute(2, 0, 1).to(self.device)  # PIL's arrays are read-only
        return out, []

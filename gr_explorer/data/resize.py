"""One rule for making image sizes uniform: resize the shorter side, then centre-crop a square.

Shared by the tensor loaders, the PIL decoder of image folders and the GPU
decoder (data/decoders.py), so that `image_size` means the same thing for every
dataset: the same resized size and crop window (`_geometry`), with PIL's or
torch's antialiased bilinear filter (they differ by rounding, at most a grey level).
"""

from __future__ import annotations

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from ..threads import map_ordered

_CHUNK = 512  # images per thread task (torch resizes one batch on one core)


def _geometry(h: int, w: int, size: int) -> tuple[int, int, int, int]:
    """(resized height, resized width, crop top, crop left): shorter side to `size`, centred square crop."""
    scale = size / min(w, h)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    return nh, nw, (nh - size) // 2, (nw - size) // 2


def resize_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> uint8 [N, 3, size, size] (antialiased bilinear) on the images' device, in one call."""

    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images
    nh, nw, top, left = _geometry(h, w, size)
    return F.resize(images, [nh, nw], antialias=True)[..., top:top + size, left:left + size].contiguous()


def resize_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> uint8 [N, 3, size, size] (antialiased bilinear), chunks resized on threads."""
    if tuple(images.shape[-2:]) == (size, size) or images.shape[0] <= _CHUNK:
        return resize_crop(images, size)
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=images.dtype)
    starts = range(0, images.shape[0], _CHUNK)
    for start, part in zip(starts, map_ordered(resize_crop, ((images[s:s + _CHUNK], size) for s in starts))):
        out[start:start + part.shape[0]] = part
    return out


def resize_pil(img: Image.Image, size: int) -> Image.Image:
    """The same rule for one PIL image."""
    w, h = img.size
    if (w, h) == (size, size):
        return img
    nh, nw, top, left = _geometry(h, w, size)
    img = img.resize((nw, nh), Image.BILINEAR)
    return img.crop((left, top, left + size, top + size))

"""One rule for making image sizes uniform: resize the shorter side, then centre-crop a square.

Shared by the tensor loaders and the PIL decoder of image folders so that
`image_size` means the same thing for every dataset.
"""

from __future__ import annotations

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from ..threads import map_ordered

_CHUNK = 512  # images per thread task (torch resizes one batch on one core)


def resize_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> uint8 [N, 3, size, size] (antialiased bilinear), chunks resized on threads."""

    if tuple(images.shape[-2:]) == (size, size):
        return images

    def one(chunk: torch.Tensor) -> torch.Tensor:
        return F.center_crop(F.resize(chunk, size, antialias=True), [size, size])

    if images.shape[0] <= _CHUNK:
        return one(images).contiguous()
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=images.dtype)
    starts = range(0, images.shape[0], _CHUNK)
    for start, part in zip(starts, map_ordered(one, ((images[s:s + _CHUNK],) for s in starts))):
        out[start:start + part.shape[0]] = part
    return out


def resize_pil(img: Image.Image, size: int) -> Image.Image:
    """The same rule for one PIL image."""
    w, h = img.size
    if (w, h) == (size, size):
        return img
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))

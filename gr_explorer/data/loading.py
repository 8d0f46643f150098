"""Reading a split in batches: in memory by slicing, or streamed through DataLoader workers.

Why workers: an image folder of a million files cannot be decoded up front into
one tensor; each worker decodes and resizes its images, batches arrive pinned
(for CUDA) and prefetched while the model runs on the previous one, and memory
stays flat whatever the number of images. A derived task's view applies its
transform to the marked images of each batch as it arrives. Batches are cut at
the same boundaries whoever reads them, so a torchrun rank that reads every
W-th batch sees exactly the batches a single process would.
"""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import torch

from ..errors import DatasetError
from .base import BASE, Dataset
from .decoders import CudaJpegBatches


def default_workers() -> int:
    """Decode workers for streamed images: the cores there are, up to 8, leaving one for the main process."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


class _Items(torch.utils.data.Dataset):
    """Item i of a streamed split: the decoded HWC array, or the exception that decoding raised (reported by name)."""

    def __init__(self, images, decoder: str = "pil"):
        self.images, self.decoder = images, decoder

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return i, self.images.decode_one(i, self.decoder)


def _collate(items):
    """In the worker: one uint8 batch, or the names of the files that failed (stacking then happens in the main process)."""
    failed = [(i, f"{type(a).__name__}: {a}") for i, a in items if isinstance(a, Exception)]
    if failed:
        return None, failed
    return torch.from_numpy(np.stack([a for _, a in items]).transpose(0, 3, 1, 2).copy()), []


def batch_starts(n: int, batch_size: int, rank: int = 0, world: int = 1) -> list[int]:
    """First index of every batch this rank reads: batches rank, rank + world, ... of the global sequence."""
    return list(range(0, n, batch_size))[rank::world]


def read_batches(dataset: Dataset, split: str, batch_size: int, view: str = BASE, *, workers: int | None = None,
                 pin: bool = False, rank: int = 0, world: int = 1, decoder: str = "pil",
                 device: torch.device | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """(first index, uint8 batch [B, 3, H, W]) for this rank's batches of a split, in order.

    `decoder`: a resolved decoder of data/decoders.py for streamed folders; `torchvision-cuda` yields batches
    already on `device` (files read on `workers` threads), the others decode in DataLoader workers."""
    images = dataset.splits[split]
    n = len(images)
    starts = batch_starts(n, batch_size, rank, world)
    marks = None if view == BASE else (dataset.train_labels if split == "train" else dataset.test_labels)[view].bool()

    def finish(start: int, x: torch.Tensor) -> torch.Tensor:
        if marks is not None:
            x = dataset.transform_view(view, x, marks[start:start + x.shape[0]])
        return x.pin_memory() if pin and x.device.type == "cpu" and not x.is_pinned() else x

    if not images.streams:
        for s in starts:
            yield s, finish(s, images.get(slice(s, min(s + batch_size, n))))
        return
    workers = default_workers() if workers is None else workers
    if decoder == "torchvision-cuda":
        loader = ((x, failed) for _, x, failed in CudaJpegBatches(images, device, workers)(starts, batch_size))
    else:
        loader = torch.utils.data.DataLoader(
            _Items(images, decoder), batch_sampler=[list(range(s, min(s + batch_size, n))) for s in starts],
            num_workers=workers, collate_fn=_collate, pin_memory=pin and marks is None,
            prefetch_factor=4 if workers else None)
    try:
        for s, (x, failed) in zip(starts, loader):
            if failed:
                raise images.failure(failed)
            yield s, finish(s, x)
    except DatasetError:
        raise
    except RuntimeError as e:  # a worker died (e.g. out of memory): say so plainly
        raise DatasetError(f"Reading images of {dataset.name!r} failed in a DataLoader worker ({e}). "
                           "Try fewer workers (--workers 0 decodes in the main process).") from e

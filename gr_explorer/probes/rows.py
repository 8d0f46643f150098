"""Features that probes read in row chunks, so that a million images need not be in memory at once.

Why: at ImageNet scale one cut's packed float32 features are 1.28M x 769 x 4 B = 3.9 GB, a linear probe's
[N, problems, classes] activations are several times that, and the k-NN bank is 1.28M rows. A `RowSource`
leaves a cut's features where they are (a float16 memory map on disk) or copies them once to the device in
their storage dtype, when the budget allows, and hands out float32 chunks of rows on the device; `PackedRows`
does the same for the linear probe's standardised, bias-augmented blocks. Memory is then bounded by the chunk,
not by N; what the probes compute is the same up to the order in which float sums are added.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch


class RowSource:
    """Rows `rows` (positions into `x`; all rows when None) of one cut's features `x` [N, D], read as float32
    chunks of `chunk` rows on `device`. `resident`: copy `x` to the device once, in its own dtype (a float16
    store stays float16 there); otherwise every read gathers from `x` where it lives (e.g. a memory map)."""

    def __init__(self, x: torch.Tensor, device: torch.device, chunk: int, resident: bool = False,
                 rows: torch.Tensor | None = None):
        self.x = x.to(device) if resident else x
        self.device, self.chunk, self.resident = device, max(1, int(chunk)), resident
        self.rows = None if rows is None else rows.to(self.x.device)
        self.n = int(x.shape[0] if rows is None else rows.shape[0])
        self.dim = int(x.shape[1])

    def subset(self, rows: torch.Tensor) -> "RowSource":
        """The same features, rows `rows` of this source's rows (no copy)."""
        rows = rows.to(self.x.device)
        src = type(self).__new__(type(self))
        src.__dict__.update(self.__dict__)
        src.rows = rows if self.rows is None else self.rows[rows]
        src.n = int(rows.shape[0])
        return src

    def read(self, start: int, stop: int) -> torch.Tensor:
        x = self.x[start:stop] if self.rows is None else self.x[self.rows[start:stop]]
        return x.to(device=self.device, dtype=torch.float32)

    def take(self, positions: torch.Tensor) -> torch.Tensor:
        """float32 rows at `positions` (into this source's rows) on the device."""
        positions = positions.to(self.x.device)
        idx = positions if self.rows is None else self.rows[positions]
        return self.x[idx].to(device=self.device, dtype=torch.float32)

    def chunks(self, rows: int | None = None) -> Iterator[tuple[int, int, torch.Tensor]]:
        """(start, stop, float32 rows) in chunks of `rows` (default: the source's chunk)."""
        step = rows or self.chunk
        for start in range(0, self.n, step):
            stop = min(start + step, self.n)
            yield start, stop, self.read(start, stop)


def pack(feats: Sequence[torch.Tensor], stats: Sequence[tuple[torch.Tensor, torch.Tensor]], device: torch.device,
         dtype: torch.dtype) -> torch.Tensor:
    """Standardise each cut with its (mean, 1/std) and pack into [G, N, 1 + D_max]: column 0 is the constant 1 of
    the bias, then the features, zero-padded on the right for smaller cuts."""
    n = feats[0].shape[0]
    d_max = max(x.shape[1] for x in feats)
    out = torch.zeros((len(feats), n, 1 + d_max), dtype=dtype, device=device)
    out[:, :, 0] = 1.0
    for g, (x, (mean, inv)) in enumerate(zip(feats, stats)):
        d = x.shape[1]
        out[g, :, 1 : 1 + d] = (x.to(device=device, dtype=torch.float32) - mean.to(device)) * inv.to(device)
    return out


class PackedRows:
    """A linear-probe block [G, N, 1 + D_max] (see `pack`) that exists only chunk by chunk: rows come from one
    RowSource per cut, standardised and packed as they are read. Stands in for the packed tensor in the solver."""

    def __init__(self, sources: Sequence[RowSource], stats: Sequence[tuple[torch.Tensor, torch.Tensor]],
                 dtype: torch.dtype):
        self.sources, self.stats, self.dtype = list(sources), list(stats), dtype
        self.device = self.sources[0].device
        self.shape = (len(self.sources), self.sources[0].n, 1 + max(s.dim for s in self.sources))

    def read(self, start: int, stop: int) -> torch.Tensor:
        return pack([s.read(start, stop) for s in self.sources], self.stats, self.device, self.dtype)

    def take(self, positions: torch.Tensor) -> torch.Tensor:
        return pack([s.take(positions) for s in self.sources], self.stats, self.device, self.dtype)

    def chunks(self) -> Iterator[tuple[int, int, torch.Tensor]]:
        n, step = self.shape[1], self.sources[0].chunk
        for start in range(0, n, step):
            stop = min(start + step, n)
            yield start, stop, self.read(start, stop)


Block = torch.Tensor | PackedRows


def row_chunks(X: Block) -> Iterator[tuple[int, int, torch.Tensor]]:
    """(start, stop, rows) of a packed block: the whole tensor at once, or a PackedRows chunk by chunk."""
    if isinstance(X, torch.Tensor):
        yield 0, X.shape[1], X
    else:
        yield from X.chunks()


def strided_rows(X: Block, step: int) -> torch.Tensor:
    """Rows 0, step, 2 step ... of a packed block, as one tensor [G, n, 1 + D]."""
    if isinstance(X, torch.Tensor):
        return X[:, ::step]
    return X.take(torch.arange(0, X.shape[1], step))


def all_finite(x: torch.Tensor, rows: int = 1 << 16) -> bool:
    """Whether every value of [N, D] `x` is finite, checked `rows` rows at a time (no N x D mask in memory)."""
    return all(bool(torch.isfinite(x[s:s + rows]).all()) for s in range(0, x.shape[0], rows))


def count_nonfinite_rows(x: torch.Tensor, rows: int = 1 << 16) -> int:
    return sum(int((~torch.isfinite(x[s:s + rows])).any(1).sum()) for s in range(0, x.shape[0], rows))

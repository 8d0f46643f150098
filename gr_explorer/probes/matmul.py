"""Products and eigen-decompositions whose float sums do not depend on the number of CPU threads.

Why: on the CPU, BLAS splits a long reduction (the k of an [m, k] x [k, n] product) between threads when the
output is small, and LAPACK's eigh splits its blocked updates the same way. The partial sums then add in another
order, the last bits of a linear probe's gradient differ, the L-BFGS iterates drift apart, and a sweep with
OMP_NUM_THREADS=1 chose another C than the same sweep with 2 threads (issue 23, item 7). Here every reduction
longer than `BLOCK` is cut into fixed blocks of `BLOCK` (no BLAS splits a reduction that short; measured
bit-identical with 1, 2, 3, 8 and 16 threads over 93 shapes), whose products are added in a fixed order, and eigh
runs on one thread. The blocks depend only on the shapes, so the result is the same whatever the thread count.
On CUDA the plain product is used (the thread count plays no part there, and one launch beats many).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import torch

#: longest reduction computed in one product on the CPU (see the module docstring)
BLOCK = 256
_one_thread = threading.Lock()


def bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """torch.bmm(a, b) ([G, m, k] x [G, k, n]) with the k-sum in fixed blocks on the CPU (thread-count independent)."""
    k = a.shape[2]
    if a.device.type != "cpu" or k <= BLOCK:
        return torch.bmm(a, b)
    out = torch.bmm(a[:, :, :BLOCK], b[:, :BLOCK])
    for s in range(BLOCK, k, BLOCK):
        out.add_(torch.bmm(a[:, :, s:s + BLOCK], b[:, s:s + BLOCK]))
    return out


def mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b for 2-D tensors, as `bmm` (thread-count independent on the CPU)."""
    return bmm(a.unsqueeze(0), b.unsqueeze(0))[0]


@contextmanager
def single_thread():
    """Run the body on one intra-op thread (restored after). Serialised: the thread count is process-wide."""
    with _one_thread:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def eigh(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.linalg.eigh, on one thread on the CPU (LAPACK's result depends on the thread count)."""
    if m.device.type != "cpu":
        return torch.linalg.eigh(m)
    with single_thread():
        return torch.linalg.eigh(m)


__all__ = ["BLOCK", "bmm", "eigh", "mm", "single_thread"]

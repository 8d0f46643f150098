"""The validation split shared by every probe, cut and task (same seed -> same split)."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from ..errors import ProbeError


def validation_size(n: int, val_fraction: float) -> int:
    """Images in the validation part of n train images: the fraction rounded, at least 1 and at most n - 1."""
    return min(max(int(round(float(val_fraction) * n)), 1), n - 1)


def validation_split(
    labels: Mapping[str, torch.Tensor] | torch.Tensor, val_fraction: float = 0.2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split train indices into (fit, val), stratified on the tasks' labels.

    One split serves all tasks: samples are ordered by their labels (first task
    first, then the next task within each of its classes, ...; random order inside
    a group) and every (1/val_fraction)-th one is taken by systematic sampling with
    a random offset. So the first task is stratified exactly (each class gives
    floor or ceil of its share), the others approximately, and a class with at
    least two samples keeps at least one in the fit part of the first task.
    Returns two sorted LongTensors on the CPU.
    """
    if isinstance(labels, torch.Tensor):
        labels = {"labels": labels}
    if not labels:
        raise ProbeError("validation_split needs at least one task's labels. Valid: a dict task -> LongTensor [N].")
    if not (0.0 < float(val_fraction) < 1.0):
        raise ProbeError(f"val_fraction={val_fraction!r} is out of range. Valid: a number strictly between 0 and 1 (e.g. 0.2).")
    cols = [np.asarray(torch.as_tensor(y).cpu()).reshape(-1) for y in labels.values()]
    n = len(cols[0])
    n_val = validation_size(n, val_fraction)
    if n < 2:
        raise ProbeError(f"The train split has {n} sample(s); a validation split needs at least 2. Valid: N >= 2 train samples.")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    # np.lexsort sorts by the last key first, so reverse to make the first task primary.
    order = np.lexsort([c[perm] for c in reversed(cols)])
    ordered = perm[order]
    pos = np.floor((np.arange(n_val) + rng.random()) * (n / n_val)).astype(np.int64)
    pos = np.minimum(pos, n - 1)
    is_val = np.zeros(n, dtype=bool)
    is_val[ordered[pos]] = True
    val = np.flatnonzero(is_val)
    fit = np.flatnonzero(~is_val)
    return torch.from_numpy(fit), torch.from_numpy(val)

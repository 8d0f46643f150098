"""Run independent chunks of CPU work on threads, results in order: for loading big in-memory datasets.

Why threads: the heavy steps (numpy rendering, torch resizing, hashing) release the GIL, and a 50,000-image
224-px dataset is gigabytes that one core takes tens of seconds to render, resize and fingerprint.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator

import torch


def map_ordered(fn: Callable, args: Iterable[tuple], workers: int | None = None) -> Iterator:
    """fn(*a) for each a of `args`, in order; `args` is consumed lazily, at most 2 x workers ahead."""
    workers = torch.get_num_threads() if workers is None else workers
    if workers <= 1:
        for a in args:
            yield fn(*a)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="gr_explorer-load") as pool:
        pending: deque = deque()
        try:
            for a in args:
                pending.append(pool.submit(fn, *a))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()

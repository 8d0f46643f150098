"""Feature extraction: ONE forward pass per batch captures every requested cut, written to disk as produced.

Features are pooled to one vector per image and cut and written, batch by
batch, into the on-disk store (cache.py) under a content key of everything that
can change a feature byte (weights, the view's pixels, architecture and its
settings, preprocessing, readout, pooling, storage dtype, batch size, and the
arithmetic: library versions, device, precision; see `base_key`); what a sweep
gets back are memory-mapped tensors, so RAM never
holds more than a batch and whatever the probes page in. An identical second
run does no forward pass; a run with more cuts computes only the new ones. A
derived task's view (see data.base) is extracted separately.

Speed on a GPU: the next batch is copied host-to-device while this one runs,
and each batch's features go device-to-host asynchronously into pinned
buffers that a writer thread puts on disk, so the GPU never waits for the
disk (all cuts cost 1.06x a plain forward for ViT-B/16 and ResNet-50 on an
H100; benchmarks/README.md). Under torchrun, rank r extracts batches r, r+W,
... (the same batch boundaries as one process, no padded duplicates), writes
them to its own staging files in a folder named for this job, and rank 0
merges them into the entry that everyone then reads. The forward itself
(torch.compile, channels_last, a batch that fills the GPU) is forward.py's;
decoding streamed JPEGs on the GPU is data/decoders.py's.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import tempfile
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .cache import DTYPES, SPLITS, FeatureCache, content_key
from .data.base import BASE, Dataset
from .data.decoders import resolve_decoder
from .data.loading import batch_starts, read_batches
from .device import numerics, resolve_device
from .distributed import World
from .errors import CacheError, NotCached
from .files import owned_name
from .forward import CutForward, auto_batch_size, use_auto_batch, use_channels_last, use_compile
from .hashing import module_config_digest
from .models import Column, Cut, Model
from .models.readout import TOKEN_STORAGE, is_token_grid
from .names import TOKENS_READOUT
from .progress import Progress, Reporter, ShouldStop


@dataclass
class Features:
    """Pooled features of one model on one view of a dataset: {column: [N, dim]} for train and test (memory-mapped).

    A column is a cut read out one way (models.Column); with one readout and the norm off (the default) there
    is one column per cut, named after the cut. `entries` maps each column to its cache entry: columns that
    compute the same thing (a vector cut in several readout curves) share one entry and one tensor.
    """

    cuts: list[Cut]
    train: dict[str, torch.Tensor]
    test: dict[str, torch.Tensor]
    key: str
    view: str = BASE
    cached_cuts: list[str] = field(default_factory=list)
    forward_batches: int = 0
    columns: list[Column] = field(default_factory=list)
    entries: dict[str, str] = field(default_factory=dict)
    #: token-level features for the attentive probe (extract_features(tokens=n)): {split: {cut: [N, T, C] float16}}
    tokens: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    def token_curve(self, norm: str = "off") -> "Features":
        """The attentive probe's curve: the first curve's columns relabelled readout `tokens` (and `norm`), holding each
        cut's tokens [N, T, C] (a cut without tokens, a vector, as it is)."""
        first = self.first_curve()

        def pick(split: str, vectors: dict) -> dict:
            return {c.name: self.tokens.get(split, {}).get(c.cut.name, vectors[c.name]) for c in first.columns}

        return replace(first, columns=[replace(c, readout=TOKENS_READOUT, norm=norm) for c in first.columns],
                       train=pick("train", first.train), test=pick("test", first.test))

    def token_bytes(self) -> int:
        """What the token-level features take on disk (and what the attentive probe may page in)."""
        return sum(x.numel() * x.element_size() for split in self.tokens.values() for x in split.values())

    def shared(self) -> dict[str, str]:
        """{column: the first column with the same cache entry}: such columns hold the same features (a vector cut
        in several readout curves), so one probe fit serves them all."""
        first: dict[str, str] = {}
        return {c.name: first.setdefault(self.entries.get(c.name, c.name), c.name) for c in self.columns}

    def distinct(self) -> list[str]:
        """The columns to fit probes on: one per distinct cache entry, in column order."""
        return list(dict.fromkeys(self.shared().values()))

    def expand(self, results) -> list:
        """(column, result) for every column, in column order, from results (`.cut` = column name) of `distinct()`."""
        shared = self.shared()
        by_column: dict[str, list] = {}
        for r in results:
            by_column.setdefault(r.cut, []).append(r)
        return [(c, r) for c in self.columns for r in by_column[shared[c.name]]]

    def first_curve(self) -> "Features":
        """Only the columns of the first readout curve (named after their cuts): what label-free diagnostics describe."""
        first = [c for c in self.columns if c.name == c.cut.name]
        return replace(self, train={c.name: self.train[c.name] for c in first},
                       test={c.name: self.test[c.name] for c in first}, columns=first)


def base_key(model: Model, dataset: Dataset, device: torch.device, view: str = BASE, storage: str = "float32",
             batch_size: int = 256, job_numerics: list[dict] | None = None, decoder: str = "pil",
             auto_batch: bool = False) -> str:
    """The content key of one model's features on one view: every input that can change a feature byte.

    Weights, architecture (its settings too: `module_config_digest`), readout and preprocessing, the view's pixels,
    pooling, storage dtype, and the arithmetic: `device.numerics` (library versions, CPU instruction set or GPU,
    bf16 autocast on CUDA) and the batch size. Why the batch size: PyTorch does not promise that a row's result
    is bitwise the same in batches of other sizes (the kernels cuBLAS, cuDNN, oneDNN and MKL pick depend on the
    batch dimension, notably under CUDA bf16 autocast where GEMMs may split their reductions), and the last,
    partial batch differs with it too; so features computed with `--batch-size 8` are never served to a run with
    12. (On this project's CPU, batch sizes 8/12/48 and 1 or 2 threads gave bitwise equal features for SmallResNet,
    resnet18 and vit_tiny; the key does not rely on that.) The thread count is not in the key: measured bitwise
    equal as above, and torchrun ranks (one thread each) must share entries with a one-process run. Under torchrun
    `job_numerics` is the set of every rank's numerics (one entry when all machines are alike, as for one process).
    With an automatic batch size (CUDA only, forward.py) the key holds the requested size and the marker: the size
    used follows the GPU's free memory and is recorded in the entry's meta. Streamed JPEGs decoded on the GPU
    (`decoder='torchvision-cuda'`) differ from PIL's pixels by a grey level or two, so they key apart; the CPU
    decoders give PIL's pixels and share its entries.
    """
    parts = {
        "weights": model.weights_hash(),
        "model": model.describe(),
        "modules": module_config_digest(model.backbone.module, model.projector),
        "dataset": dataset.fingerprint(view),
        "pooling": "gap",
        "storage": storage,
        "batch_size": batch_size,
        "numerics": job_numerics or [numerics(device)],
    }
    if auto_batch:
        parts["auto_batch"] = True
    if decoder == "torchvision-cuda":
        parts["decoder"] = decoder
    return content_key(parts)


def _scratch_store() -> FeatureCache:
    """A private store for `cache=False`: removed when the process no longer needs it."""
    root = tempfile.mkdtemp(prefix="gr_explorer_features_")
    store = FeatureCache(root)
    weakref.finalize(store, shutil.rmtree, root, True)
    return store


def extract_features(model: Model, dataset: Dataset, cuts: Sequence[str] | None = None, *, view: str = BASE,
                     device: str | torch.device | None = None, batch_size: int = 256,
                     cache: FeatureCache | None | bool = None, progress: Progress | None = None,
                     should_stop: ShouldStop | None = None, workers: int | None = None, storage: str = "float32",
                     world: World | None = None, compile: str = "off", channels_last: str = "off",
                     auto_batch: str = "off", decoder: str = "pil", detail: str = "block",
                     readouts: Sequence[str] | None = None, norm: str = "off", tokens: int | None = None,
                     cached_only: bool = False) -> Features:
    """Features at `cuts` (all cuts of `detail` when None) of one view. `cache=False`: a private scratch store.

    `readouts` (None: the model's own) and `norm` (off, on, both) make one column per (readout, norm, cut), all
    from the same forward pass (Model.columns says which combinations a model supports).
    `storage`: float32, or float16 (half the disk; probes compute in float32). `workers`: decode workers for
    streamed image folders (None: automatic). `compile`, `channels_last`: auto|on|off, `auto_batch`: auto|off
    (see forward.py; all off here unless asked, a sweep's settings default to auto). `decoder`: how streamed
    image folders are decoded, auto|pil|torchvision-cpu|torchvision-cuda (see data/decoders.py). Reports
    ProgressEvent('extract', batches, total, model) and stops between batches when `should_stop()` is true
    (progress.Cancelled; cuts already stored stay stored). `tokens`: also keep each token or map cut's tokens
    (at most this many per image, see Model.token_columns), stored as float16, in `Features.tokens`, from the same
    forward pass. `cached_only`: raise NotCached instead of running a forward pass when a column is not in the
    cache (a page restoring a shared link).
    """
    device = resolve_device(device)
    world = world or World.current()
    wanted = model.resolve_cuts(cuts, detail)
    vectors = model.columns(wanted, readouts, norm)
    columns = vectors + (model.token_columns(wanted, tokens, norm) if tokens else [])
    grow_batch = use_auto_batch(auto_batch, device)
    streams = any(dataset.splits[s].streams for s in SPLITS)
    decoder = resolve_decoder(decoder, device) if streams else "pil"
    store = _scratch_store() if cache is False else (cache if isinstance(cache, FeatureCache) else FeatureCache())
    # Every rank's arithmetic, and a staging name all ranks of this job share (rank 0's: unique per job and call).
    shared = world.gather((numerics(device), owned_name("job")))
    job_numerics = sorted({json.dumps(n, sort_keys=True) for n, _ in shared})
    key = base_key(model, dataset, device, view, storage, batch_size, [json.loads(n) for n in job_numerics], decoder,
                   grow_batch)
    entries = {c.name: content_key({"base": key, "cut": c.cut.name, "readout": c.applied.pooling, "norm": c.applied.norm})
               for c in columns}
    unique: dict[str, Column] = {}  # entry key -> the first column that needs it
    for c in columns:
        unique.setdefault(entries[c.name], c)
    got, cached = {}, []
    for k, c in unique.items():
        hit = store.get(k)
        if hit is not None:
            got[k] = hit
            cached.append(c.name)
    if world.size > 1:  # another job may publish an entry between two ranks' looks: rank 0's look decides for all
        agreed = set(world.gather(cached)[0])
        for name in set(cached) - agreed:
            del got[entries[name]]
        for name in agreed - set(cached):
            hit = store.get(entries[name])
            if hit is None:
                raise CacheError(f"The feature cache {str(store.root)!r}: rank 0 found the entry of {name!r} but "
                                 f"rank {world.rank} does not; every rank must see the same cache folder.")
            got[entries[name]] = hit
        cached = [c.name for c in unique.values() if c.name in agreed]
    missing = [c for k, c in unique.items() if k not in got]
    if missing and cached_only:
        raise NotCached(f"{model.name}: {len(missing)} of {len(unique)} feature columns are not in the cache "
                        f"({', '.join(c.name for c in missing[:4])}{' ...' if len(missing) > 4 else ''}).")
    forward = None
    report = Reporter(progress if world.rank == 0 else None, should_stop, "extract", 1, model.name)
    if missing:
        n_images = dataset.n_train + dataset.n_test
        forward = CutForward(model, missing, device, compile=use_compile(compile, device, n_images // world.size),
                             channels_last=use_channels_last(channels_last, model, device),
                             interrupt=None if should_stop is None else lambda: report.tick(0, "forward pass"))
        if grow_batch:  # every rank must cut the same batches
            batch_size = world.agree_min(auto_batch_size(forward, dataset.splits["train"].shape, batch_size,
                                                         max(dataset.n_train, dataset.n_test)), device)
        forward.graph_batch = batch_size  # one compiled graph for every batch of both splits
    n_batches = {s: len(batch_starts(_n(dataset, s), batch_size, world.rank, world.size)) for s in SPLITS}
    report.total = sum(n_batches.values()) if missing else 1
    report.emit(f"{view} view" if view != BASE else "")
    if missing:
        keys = {c.name: entries[c.name] for c in missing}
        try:
            written = _extract_once(forward, dataset, view, keys, batch_size, store, storage, workers, decoder, world,
                                    report, shared[0][1], cache)
        finally:
            forward.close()
        for c in missing:
            got[entries[c.name]] = written[c.name]
    else:
        report.tick(1, "all cuts from the cache")
    grids = {s: {c.cut.name: _as_tokens(got[entries[c.name]][s], model.width(c.cut.name)) for c in columns[len(vectors):]}
             for s in SPLITS} if tokens else {}
    return Features(wanted, {c.name: got[entries[c.name]]["train"] for c in vectors},
                    {c.name: got[entries[c.name]]["test"] for c in vectors}, key, view,
                    [n for n in cached if n in {c.name for c in vectors}], report.done if missing else 0, vectors,
                    {c.name: entries[c.name] for c in vectors}, grids)


def _as_tokens(rows: torch.Tensor, channels: int) -> torch.Tensor:
    """Stored token rows [N, T x C] as [N, T, C] (a view: nothing is copied)."""
    return rows.view(rows.shape[0], rows.shape[1] // channels, channels)


def _extract_once(forward, dataset, view, keys, batch_size, store, storage, workers, decoder, world, report, job,
                  cache):
    """`_extract` into the store, or into a scratch store when the cache cannot be written (warned)."""
    try:
        return _extract(forward, dataset, view, keys, batch_size, store, storage, workers, decoder, world, report, job)
    except OSError as e:  # the store cannot be written: warn, and recompute into a scratch store
        if cache is False or world.size > 1:  # torchrun ranks hand over their rows through the shared folder
            raise
        warnings.warn(f"The feature cache {str(store.root)!r} could not be written ({e.strerror or e}); "
                      "features are computed but not cached.", stacklevel=3)
        return _extract(forward, dataset, view, keys, batch_size, _scratch_store(), storage, workers, decoder, world,
                        report, job)


def _n(dataset: Dataset, split: str) -> int:
    return dataset.n_train if split == "train" else dataset.n_test


def _extract(forward: CutForward, dataset, view, keys, batch_size, store, storage, workers, decoder, world, report,
             job):
    """Run the batches of this rank, write them, publish the entries (rank 0 merges under torchrun); read them back.

    Under torchrun the ranks' shards go to `.staging/<job>/`, a folder named by rank 0 for this job and call, so
    jobs sharing a cache folder (even with the same key) never read each other's rows; it is removed when the
    entries are published or the extraction fails.
    """
    model, names = forward.model, forward.names
    meta = {c.name: {"model": model.name, "dataset": dataset.name, "view": view, "cut": c.cut.name,
                     "readout": c.applied.pooling, "norm": c.applied.norm, "batch_size": batch_size}
            for c in forward.columns}
    job_dir = store.staging_dir() / job
    storage_of = {c.name: TOKEN_STORAGE if is_token_grid(c.applied.pooling) else storage for c in forward.columns}
    writers = {c: store.writer(keys[c], meta[c], storage_of[c]) for c in names} if world.size == 1 else \
        {c: ShardWriter(job_dir, keys[c], world.rank, storage_of[c]) for c in names}
    try:
        for split in SPLITS:
            _run(forward, dataset, split, view, writers, batch_size, storage, workers, decoder, world, report)
        if world.size == 1:
            for c in names:
                writers[c].commit()
        else:
            for c in names:
                writers[c].close()
            world.barrier()
            if world.rank == 0:
                for c in names:
                    merge_shards(store, job_dir, keys[c], meta[c], storage_of[c], world.size,
                                 {s: _n(dataset, s) for s in SPLITS}, batch_size)
            world.barrier()
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    finally:
        if world.rank == 0:
            shutil.rmtree(job_dir, ignore_errors=True)
    out = {}
    for c in names:
        got = store.get(keys[c], verify=False)  # just written by us (or by rank 0 after the barrier)
        if got is None:
            raise OSError(f"feature entry for cut {c!r} vanished from {store.root}")
        out[c] = got
    return out


@torch.no_grad()
def _run(forward: CutForward, dataset: Dataset, split: str, view: str, writers: dict, batch_size: int, storage: str,
         workers: int | None, decoder: str, world, report: Reporter) -> None:
    device = forward.device
    n = _n(dataset, split)
    cuda = device.type == "cuda"
    sink = _AsyncSink(writers, split, n, storage) if cuda else _DirectSink(writers, split, n)
    batches = read_batches(dataset, split, batch_size, view, workers=workers, pin=cuda, rank=world.rank, world=world.size,
                           decoder=decoder, device=device)
    try:
        nxt = next(batches, None)
        if nxt is not None:
            nxt = (nxt[0], nxt[1].to(device, non_blocking=True))
        while nxt is not None:
            start, x = nxt
            nxt = next(batches, None)
            if nxt is not None:  # queue the next copy before computing on this batch
                nxt = (nxt[0], nxt[1].to(device, non_blocking=True))
            sink.put(start, forward(x))
            report.tick(1, f"{split} batch")
    except BaseException:
        sink.stop()  # no write may still be running when the caller removes the entries
        raise
    sink.close()


class _DirectSink:
    """CPU: each batch's rows go straight into the entries' files."""

    def __init__(self, writers: dict, split: str, n: int):
        self.writers, self.split, self.n = writers, split, n
        self.opened = False

    def _open(self, feats):
        for name, f in feats.items():
            self.writers[name].open(self.split, self.n, f.shape[1])
        self.opened = True

    def put(self, start: int, feats: dict[str, torch.Tensor]) -> None:
        if not self.opened:
            self._open(feats)
        for name, f in feats.items():
            self.writers[name].write(self.split, start, f.float().numpy())

    def stop(self) -> None:
        """After a failure or cancellation: nothing is left running."""

    def close(self) -> None:
        if not self.opened:  # no batch at all on this rank: still open empty arrays
            for w in self.writers.values():
                w.open_empty(self.split, self.n)


class _AsyncSink(_DirectSink):
    """CUDA: features go device-to-host into pinned buffers without waiting, and a writer thread puts them on disk.

    The main thread only queues work on the GPU, so the GPU never waits for a copy, the disk or the checksum;
    `DEPTH` buffer sets bound the pinned memory and hold the main thread back if the disk falls behind.
    Features are cast to the storage dtype on the GPU (float16 storage moves half the bytes).
    """

    DEPTH = 3  # batches in flight

    def __init__(self, writers: dict, split: str, n: int, storage: str):
        super().__init__(writers, split, n)
        self.dtype = DTYPES[storage]
        self.free: queue.SimpleQueue = queue.SimpleQueue()
        self.made = 0
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="gr_explorer-writer")
        self.jobs: list = []

    def _buffers(self, feats: dict[str, torch.Tensor], b: int) -> dict[str, torch.Tensor]:
        if self.made < self.DEPTH and self.free.empty():
            self.made += 1
            return {k: torch.empty((b, f.shape[1]), dtype=self.dtype, pin_memory=True) for k, f in feats.items()}
        return self.free.get()  # blocks while the writer is DEPTH batches behind

    def put(self, start: int, feats: dict[str, torch.Tensor]) -> None:
        if not self.opened:
            self._open(feats)
        self._check_jobs()
        b = next(iter(feats.values())).shape[0]
        bufs = self._buffers(feats, b)
        for name, f in feats.items():
            bufs[name][:b].copy_(f.to(self.dtype), non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self.jobs.append(self.pool.submit(self._write, event, start, b, bufs))

    def _write(self, event, start: int, b: int, bufs: dict[str, torch.Tensor]) -> None:
        try:
            event.synchronize()
            for name, buf in bufs.items():
                self.writers[name].write(self.split, start, buf[:b].numpy())
        finally:
            self.free.put(bufs)

    def _check_jobs(self) -> None:
        """Re-raise the first error of a finished write here, in the main thread."""
        while self.jobs and self.jobs[0].done():
            self.jobs.pop(0).result()

    def stop(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        try:
            for job in self.jobs:
                job.result()
        finally:
            self.pool.shutdown(wait=True)
        super().close()


class ShardWriter:
    """One rank's rows of one cut, in its batch order, in its job's staging folder that only rank 0's merge reads."""

    def __init__(self, job_dir: Path, key: str, rank: int, storage: str):
        job_dir.mkdir(parents=True, exist_ok=True)
        self.paths = {s: shard_path(job_dir, key, s, rank) for s in SPLITS}
        self.storage, self.files, self.dims = storage, {}, {}

    def open(self, split: str, n: int, dim: int) -> None:
        self.files[split] = open(self.paths[split], "wb")
        self.dims[split] = dim

    def open_empty(self, split: str, n: int) -> None:
        self.files[split] = open(self.paths[split], "wb")

    def write(self, split: str, start: int, rows: np.ndarray) -> None:
        self.files[split].write(np.ascontiguousarray(rows, dtype=self.storage).tobytes())

    def close(self) -> None:
        for f in self.files.values():
            f.close()

    def abort(self) -> None:
        self.close()
        for p in self.paths.values():
            p.unlink(missing_ok=True)


def shard_path(job_dir: Path, key: str, split: str, rank: int) -> Path:
    return job_dir / f"{key}.{split}.rank{rank}.part"


def merge_shards(store: FeatureCache, job_dir: Path, key: str, meta: dict, storage: str, world_size: int,
                 sizes: dict[str, int], batch_size: int) -> None:
    """Rank 0: interleave the ranks' staging files back into global batch order and publish the entry."""
    writer = store.writer(key, meta, storage)
    item = np.dtype(storage).itemsize
    paths = {split: [shard_path(job_dir, key, split, r) for r in range(world_size)] for split in SPLITS}
    try:
        for split in SPLITS:
            n = sizes[split]
            readers = [open(p, "rb") for p in paths[split]]
            try:
                dim = next((os.path.getsize(p) // item // max(1, _rows_of(r, world_size, n, batch_size))
                            for r, p in enumerate(paths[split]) if os.path.getsize(p)), 0)
                writer.open(split, n, dim)
                for b, start in enumerate(range(0, n, batch_size)):
                    rows = min(batch_size, n - start)
                    buf = readers[b % world_size].read(rows * dim * item)
                    if len(buf) != rows * dim * item:
                        raise OSError(f"rank {b % world_size}'s shard of {key[:12]} is incomplete")
                    writer.write(split, start, np.frombuffer(buf, dtype=storage).reshape(rows, dim))
                if any(f.read(1) for f in readers):
                    raise OSError(f"a rank's shard of {key[:12]} holds more rows than its batches")
            finally:
                for f in readers:
                    f.close()
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    finally:
        for p in paths["train"] + paths["test"]:
            p.unlink(missing_ok=True)


def _rows_of(rank: int, world: int, n: int, batch_size: int) -> int:
    return sum(min(batch_size, n - s) for s in batch_starts(n, batch_size, rank, world))

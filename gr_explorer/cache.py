"""On-disk feature store: one entry per (content key, cut), written while it is extracted, read memory-mapped.

Why on disk and memory-mapped: the features of a large sweep (13 cuts x 768
dims of a ViT-B over ImageNet is ~51 GB) need not fit in RAM; extraction
writes each batch's rows straight into the entry's files, and probes read one
chunk of cuts at a time. Entry layout: a folder `<key>/` holding `train.bin`
and `test.bin` (raw row-major arrays, float32 or float16) and `meta.json`
(key, shapes, dtype, checksums), written last.

Trust: an entry is used only if `meta.json` parses, names the key asked for
(an entry copied under another name is a miss), and the files have the stated
sizes and checksums; so an interrupted write (or a torchrun rank killed
mid-run), a truncated file or a misplaced folder is a miss, never a wrong
answer. Files being written carry a `.part` suffix and are never read. A
damaged entry in a read-only cache is skipped, not fatal.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .files import atomic_write
from .hashing import json_digest

VERSION = "3"
SPLITS = ("train", "test")
DTYPES = {"float32": torch.float32, "float16": torch.float16}


def default_cache_dir() -> Path:
    return Path(os.environ.get("GR_EXPLORER_CACHE") or Path.home() / ".cache" / "gr_explorer" / "features")


def content_key(parts: dict) -> str:
    return json_digest({"v": VERSION, **parts})


def _file_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _map(path: Path, shape: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
    """A read-only view of a raw array file (private mapping: pages load on demand, nothing is copied up front)."""
    n = shape[0] * shape[1]
    if n == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.from_file(str(path), shared=False, size=n, dtype=dtype).view(shape)


class EntryWriter:
    """Rows of one cut's train and test features, written as they are produced; `commit()` makes the entry real.

    Rows go to plain files with positioned writes (no memory map to fault in, nothing to msync), and rows that
    arrive in order are checksummed as they are written, so `commit()` does not read the files back. No fsync:
    after a crash an entry whose data did not reach the disk fails its checksum on the next `get`, a miss.
    """

    def __init__(self, cache: "FeatureCache", key: str, meta: dict, dtype: str = "float32"):
        self.cache, self.key, self.meta, self.dtype = cache, key, dict(meta), np.dtype(dtype)
        self.tmp = Path(tempfile.mkdtemp(dir=cache.staging_dir(), prefix=f"{key[:16]}-"))
        self.files: dict[str, int] = {}  # split -> file descriptor
        self.hashes: dict[str, tuple | None] = {}  # split -> (running hash, next row); None once out of order

    def open(self, split: str, n: int, dim: int) -> None:
        fd = os.open(self.tmp / f"{split}.bin.part", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self.files[split] = fd
        os.ftruncate(fd, n * dim * self.dtype.itemsize)
        self.meta[f"{split}_shape"] = [n, dim]
        self.hashes[split] = (hashlib.blake2b(digest_size=20), 0)

    def write(self, split: str, start: int, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        n, dim = self.meta[f"{split}_shape"]
        if rows.ndim != 2 or rows.shape[1] != dim or start < 0 or start + rows.shape[0] > n:
            raise ValueError(f"rows {tuple(rows.shape)} at {start} do not fit the {split} array [{n}, {dim}]")
        data = memoryview(rows).cast("B")
        offset = start * dim * self.dtype.itemsize
        while data:  # pwrite may write less than asked
            done = os.pwrite(self.files[split], data, offset)
            data, offset = data[done:], offset + done
        running = self.hashes.get(split)
        if running is not None:
            h, nxt = running
            if start == nxt:
                h.update(rows)
                self.hashes[split] = (h, nxt + rows.shape[0])
            else:  # out of order: hash the file at commit
                self.hashes[split] = None

    def _close_files(self) -> None:
        for fd in self.files.values():
            os.close(fd)
        self.files.clear()

    def commit(self) -> Path:
        """Checksum, then publish the folder under its key in one rename (the first complete writer wins)."""
        self._close_files()
        sums = {}
        for split in SPLITS:
            (self.tmp / f"{split}.bin.part").rename(self.tmp / f"{split}.bin")
            running, n = self.hashes.get(split), self.meta[f"{split}_shape"][0]
            sums[split] = running[0].hexdigest() if running is not None and running[1] == n else \
                _file_hash(self.tmp / f"{split}.bin")
        atomic_write(self.tmp / "meta.json", json.dumps({"key": self.key, "dtype": self.dtype.name, "checksums": sums,
                                                         **self.meta}))
        dest = self.cache.entry_dir(self.key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(self.tmp, dest)
        except OSError:  # another process published this entry first (same key, same content): keep theirs
            shutil.rmtree(self.tmp, ignore_errors=True)
            if self.cache.get(self.key) is None:  # theirs is damaged: replace it
                shutil.rmtree(dest, ignore_errors=True)
                raise
        return dest

    def abort(self) -> None:
        self._close_files()
        shutil.rmtree(self.tmp, ignore_errors=True)


class FeatureCache:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    def entry_dir(self, key: str) -> Path:
        return self.root / key[:2] / key

    def staging_dir(self) -> Path:
        d = self.root / ".staging"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def writer(self, key: str, meta: dict | None = None, dtype: str = "float32") -> EntryWriter:
        return EntryWriter(self, key, meta or {}, dtype)

    def get(self, key: str, verify: bool = True) -> dict[str, torch.Tensor] | None:
        """{'train': [N, D], 'test': [M, D]} memory-mapped, or None when absent or not trustworthy."""
        d = self.entry_dir(key)
        if not (d / "meta.json").exists():
            return None
        try:
            meta = json.loads((d / "meta.json").read_text())
            if meta.get("key") != key:
                raise ValueError("entry bound to another key")
            dtype = DTYPES[meta["dtype"]]
            out = {}
            for s in SPLITS:
                path, shape = d / f"{s}.bin", tuple(meta[f"{s}_shape"])
                if path.stat().st_size != shape[0] * shape[1] * torch.finfo(dtype).bits // 8:
                    raise ValueError("size mismatch")
                if verify and _file_hash(path) != meta["checksums"][s]:
                    raise ValueError("checksum mismatch")
                out[s] = _map(path, shape, dtype)
            return out
        except Exception:  # unreadable, tampered or misplaced entry: a miss (and dropped, where we may)
            shutil.rmtree(d, ignore_errors=True)
            return None

    def get_table(self, key: str):
        """A small table (e.g. a model's diagnostics) stored under `key`, or None; bound to its key like features."""

        p = self.root / key[:2] / f"{key}.json"
        if not p.exists():
            return None
        try:
            blob = json.loads(p.read_text())
            if blob.get("key") != key or json_digest(blob["records"]) != blob.get("checksum"):
                raise ValueError("key or checksum mismatch")
            return pd.DataFrame.from_records(blob["records"], columns=blob["columns"])
        except Exception:  # unreadable, tampered or misplaced: a miss
            return None

    def put_table(self, key: str, table) -> Path:
        records = json.loads(table.to_json(orient="records"))
        blob = {"key": key, "columns": list(table.columns), "records": records, "checksum": json_digest(records)}
        return atomic_write(self.root / key[:2] / f"{key}.json", json.dumps(blob))

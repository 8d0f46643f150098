"""On-disk feature store: one entry per (content key, cut), written while it is extracted, read memory-mapped.

Why on disk and memory-mapped: the features of a large sweep (13 cuts x 768
dims of a ViT-B over ImageNet is ~51 GB) need not fit in RAM; extraction
writes each batch's rows straight into the entry's files, and probes read one
chunk of cuts at a time. Entry layout: a folder `<key>/` holding `train.bin`
and `test.bin` (raw row-major arrays, float32 or float16) and `meta.json`
(the index: key, dtype, shapes, the rows' digests, and one checksum over all of
it), written last.

Trust: an entry is used only if `meta.json` parses, its checksum matches the
index fields (so an edit of dtype or shape that keeps the byte count is caught,
not read as other numbers), it names the key asked for (an entry copied under
another name is a miss), and the files have the stated sizes and digests; so an
interrupted write (or a torchrun rank killed mid-run), a truncated file or a
misplaced folder is a miss, never a wrong answer. The checksum guards against
damage and hand edits, not against someone who recomputes it. A bad entry is
dropped with a warning naming the cache folder and recomputed (skipped where
the cache is read-only); a folder that cannot be read right now (permissions,
too many open files, an I/O error) is not a bad entry: that raises CacheError
and nothing is dropped. Files being written live in `.staging/` under names
unique per process (`files.owned_name`) and are never read; staging left by a
process killed outright is removed later (`files.remove_orphans`).

Size cap (`max_bytes`, the app's cache under its data root): after every
entry or table is published, the least recently used ones (by the time of
their last write or hit) are removed until the folder fits, never one this
store has written or read since it was made (a sweep's own entries stay while
it runs; a removed entry that another process still has memory-mapped stays
readable to it).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .errors import CacheError
from .files import atomic_write, expand_user, owned_name, remove_orphans
from .hashing import json_digest

VERSION = "4"
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
        self.tmp = cache.staging_dir() / owned_name(key[:16])
        self.tmp.mkdir()
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
        atomic_write(self.tmp / "meta.json", json.dumps(sealed({**self.meta, "key": self.key, "dtype": self.dtype.name,
                                                                "rows": sums})))
        dest = self.cache.entry_dir(self.key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(self.tmp, dest)
        except OSError:  # another process published this entry first (same key, same content): keep theirs
            shutil.rmtree(self.tmp, ignore_errors=True)
            if self.cache.get(self.key) is None:  # theirs is damaged: replace it
                shutil.rmtree(dest, ignore_errors=True)
                raise
        self.cache._pinned.add(self.key)
        self.cache.evict()
        return dest

    def abort(self) -> None:
        self._close_files()
        shutil.rmtree(self.tmp, ignore_errors=True)


class FeatureCache:
    def __init__(self, root: str | os.PathLike | None = None, max_bytes: int | None = None):
        self.root = expand_user(root, "feature cache folder (--cache-dir)", CacheError) if root is not None \
            else default_cache_dir()
        self._pruned = False
        self.max_bytes = max_bytes
        self._pinned: set[str] = set()  # keys written or read through this store: never evicted by it

    def entry_dir(self, key: str) -> Path:
        return self.root / key[:2] / key

    def staging_dir(self) -> Path:
        d = self.root / ".staging"
        d.mkdir(parents=True, exist_ok=True)
        if not self._pruned:  # once per store: what processes killed outright left behind
            self._pruned = True
            remove_orphans(d)
        return d

    def writer(self, key: str, meta: dict | None = None, dtype: str = "float32") -> EntryWriter:
        return EntryWriter(self, key, meta or {}, dtype)

    def get(self, key: str, verify: bool = True) -> dict[str, torch.Tensor] | None:
        """{'train': [N, D], 'test': [M, D]} memory-mapped, or None when absent or bad (a bad entry is dropped).

        `verify=False` checks the index and the file sizes but does not re-hash the rows (for an entry this
        process has just written). Raises CacheError when the folder cannot be read now (not the entry's fault).
        """
        d = self.entry_dir(key)
        try:
            raw = (d / "meta.json").read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise self._unreadable(d, e) from e
        try:
            meta = check_index(raw, key)
            dtype = DTYPES[meta["dtype"]]
            out = {}
            for s in SPLITS:
                path, shape = d / f"{s}.bin", tuple(meta[f"{s}_shape"])
                try:
                    size = path.stat().st_size
                except (FileNotFoundError, NotADirectoryError):
                    raise BadEntry(f"{s}.bin is missing") from None
                if size != shape[0] * shape[1] * torch.finfo(dtype).bits // 8:
                    raise BadEntry(f"{s}.bin has {size} bytes, not those of {meta['dtype']} {list(shape)}")
                if verify and _file_hash(path) != meta["rows"][s]:
                    raise BadEntry(f"{s}.bin does not match its checksum")
                out[s] = _map(path, shape, dtype)
            self._used(key, d / "meta.json")
            return out
        except BadEntry as e:
            self._drop(d, key, str(e))
            return None
        except OSError as e:
            raise self._unreadable(d, e) from e
        except RuntimeError as e:  # torch.from_file: the map itself failed (memory, open files)
            raise self._unreadable(d, OSError(errno.EIO, str(e))) from e

    def _used(self, key: str, marker: Path) -> None:
        """Remember `key` as this store's (never evicted by it) and mark it as just used (its LRU time)."""
        self._pinned.add(key)
        if self.max_bytes is not None:
            try:
                os.utime(marker)
            except OSError:  # a read-only cache: its order is the write order
                pass

    def usage(self) -> list[tuple[float, int, Path, str]]:
        """(last use, bytes, path, key) of every entry and table in the cache, least recently used first."""
        out = []
        try:
            shards = [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        except FileNotFoundError:
            return out
        for shard in shards:
            for p in shard.iterdir():
                try:
                    if p.is_dir():
                        size = sum(f.stat().st_size for f in p.iterdir())
                        out.append(((p / "meta.json").stat().st_mtime, size, p, p.name))
                    elif p.suffix == ".json":
                        st = p.stat()
                        out.append((st.st_mtime, st.st_size, p, p.stem))
                except OSError:  # being written or removed by another process right now
                    continue
        return sorted(out, key=lambda t: t[0])

    def evict(self) -> list[str]:
        """Remove least recently used entries until the cache holds at most `max_bytes` (none of this store's own).
        Returns the keys removed."""
        if self.max_bytes is None:
            return []
        entries = self.usage()
        total = sum(size for _, size, _, _ in entries)
        gone = []
        for _, size, path, key in entries:
            if total <= self.max_bytes:
                break
            if key in self._pinned:
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            total -= size
            gone.append(key)
        return gone

    def _unreadable(self, entry: Path, e: OSError) -> CacheError:
        return CacheError(f"The feature cache {str(self.root)!r} cannot be read now ({e.strerror or e}; entry "
                          f"{entry.name[:16]}...): nothing was dropped or trusted. Valid: a cache folder this process "
                          f"can read (--cache-dir / $GR_EXPLORER_CACHE), or --no-cache.")

    def _drop(self, entry: Path, key: str, why: str) -> None:
        shutil.rmtree(entry, ignore_errors=True)
        what = "dropped and recomputed" if not entry.exists() else "skipped (the cache cannot be written)"
        warnings.warn(f"The feature cache {str(self.root)!r} held a bad entry {key[:16]}... ({why}); it is {what}.",
                      stacklevel=3)

    def get_table(self, key: str):
        """A small table (e.g. a model's diagnostics) stored under `key`, or None; bound to its key like features."""

        p = self.root / key[:2] / f"{key}.json"
        if not p.exists():
            return None
        try:
            blob = json.loads(p.read_text())
            if blob.get("key") != key or _table_digest(key, blob["columns"], blob["records"]) != blob.get("checksum"):
                raise ValueError("key or checksum mismatch")
            table = pd.DataFrame.from_records(blob["records"], columns=blob["columns"])
        except Exception:  # unreadable, tampered or misplaced: a miss
            return None
        self._used(key, p)
        return table

    def put_table(self, key: str, table) -> Path:
        records = json.loads(table.to_json(orient="records"))
        columns = list(table.columns)
        blob = {"key": key, "columns": columns, "records": records, "checksum": _table_digest(key, columns, records)}
        path = atomic_write(self.root / key[:2] / f"{key}.json", json.dumps(blob))
        self._pinned.add(key)
        self.evict()
        return path


def _table_digest(key: str, columns: list, records: list) -> str:
    return json_digest({"key": key, "columns": columns, "records": records})


class BadEntry(ValueError):
    """An entry that is not what its index says (a reason for dropping it, never for trusting it)."""


def sealed(index: dict) -> dict:
    """The index with `checksum`: one digest over every field, taken as JSON will read it back."""
    index = json.loads(json.dumps(index))
    index.pop("checksum", None)
    return {**index, "checksum": json_digest(index)}


def check_index(raw: bytes, key: str) -> dict:
    """The parsed meta.json of `key`'s entry, or BadEntry saying what is wrong with it."""
    try:
        meta = json.loads(raw)
    except ValueError as e:  # includes bad UTF-8
        raise BadEntry(f"meta.json is not JSON ({e})") from None
    if not isinstance(meta, dict) or sealed(meta).get("checksum") != meta.get("checksum"):
        raise BadEntry("meta.json does not match its checksum (edited or damaged)")
    if meta.get("key") != key:
        raise BadEntry("the entry is bound to another key")
    if meta.get("dtype") not in DTYPES:
        raise BadEntry(f"unknown dtype {meta.get('dtype')!r}")
    rows = meta.get("rows")
    for s in SPLITS:
        shape = meta.get(f"{s}_shape")
        if not (isinstance(shape, list) and len(shape) == 2 and all(type(v) is int and v >= 0 for v in shape)):
            raise BadEntry(f"bad {s}_shape {shape!r}")
        if not (isinstance(rows, dict) and isinstance(rows.get(s), str)):
            raise BadEntry(f"no digest of the {s} rows")
    return meta

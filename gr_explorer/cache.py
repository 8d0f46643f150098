"""On-disk feature cache: one safetensors file per (content key, cut), written atomically.

An entry is trusted only if it parses, its stored checksum matches its
tensors and its stored key matches the key asked for (so an entry copied or
renamed under another key is a miss), so an interrupted write, a file
truncated later or a misplaced file is a miss, never a wrong answer. A
damaged entry in a read-only cache is skipped, not fatal.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .files import atomic_write
from .hashing import json_digest, tensor_digest

VERSION = "2"


def default_cache_dir() -> Path:
    return Path(os.environ.get("GR_EXPLORER_CACHE") or Path.home() / ".cache" / "gr_explorer" / "features")


def content_key(parts: dict) -> str:
    return json_digest({"v": VERSION, **parts})


class FeatureCache:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> dict[str, torch.Tensor] | None:
        from safetensors import safe_open

        p = self.path(key)
        if not p.exists():
            return None
        try:
            with safe_open(str(p), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            if meta.get("key") != key or meta.get("checksum") != tensor_digest(tensors):
                raise ValueError("key or checksum mismatch")
            return tensors
        except Exception:  # unreadable, tampered or misplaced entry: a miss (and dropped, where we may)
            try:
                p.unlink(missing_ok=True)
            except OSError:
                pass
            return None

    def get_table(self, key: str):
        """A small table (e.g. a model's diagnostics) stored under `key`, or None; bound to its key like features."""
        import pandas as pd

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

    def put(self, key: str, tensors: dict[str, torch.Tensor], meta: dict | None = None) -> Path:
        from safetensors.torch import save_file

        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        metadata = {"key": key, "checksum": tensor_digest(tensors), "meta": json.dumps(meta or {}, default=str)}
        return atomic_write(self.path(key), lambda tmp: save_file(tensors, tmp, metadata=metadata))

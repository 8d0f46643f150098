"""On-disk feature cache: one safetensors file per (content key, cut), written atomically.

An entry is trusted only if it parses and its stored checksum matches, so a
write that was interrupted (or a file truncated later) is a miss, never a
wrong answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

VERSION = "1"


def default_cache_dir() -> Path:
    return Path(os.environ.get("GR_EXPLORER_CACHE") or Path.home() / ".cache" / "gr_explorer" / "features")


def content_key(parts: dict) -> str:
    blob = json.dumps({"v": VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].contiguous()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class FeatureCache:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

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
            if meta.get("checksum") != _checksum(tensors):
                raise ValueError("checksum mismatch")
            return tensors
        except Exception:  # unreadable or tampered entry: drop it and recompute
            p.unlink(missing_ok=True)
            return None

    def put(self, key: str, tensors: dict[str, torch.Tensor], meta: dict | None = None) -> Path:
        from safetensors.torch import save_file

        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        metadata = {"checksum": _checksum(tensors), "meta": json.dumps(meta or {}, default=str)}
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata=metadata)
            os.replace(tmp, p)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return p

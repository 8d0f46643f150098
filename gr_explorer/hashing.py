"""Content digests: what the feature cache, checkpoints and datasets are keyed on.

One helper per kind of content, so that "the same content" means the same
thing everywhere (dtype and shape are part of a tensor's identity).
"""

from __future__ import annotations

import hashlib
import inspect
import json
from typing import Iterable, Mapping

import torch

from .threads import map_ordered


def tensor_digest(tensors: Mapping[str, torch.Tensor] | Iterable[torch.Tensor], length: int = 64) -> str:
    """sha256 over named (sorted by name) or ordered tensors: name, dtype, shape and bytes."""
    h = hashlib.sha256()
    items = sorted(tensors.items()) if isinstance(tensors, Mapping) else enumerate(tensors)
    for name, t in items:
        t = t.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous()
        h.update(str(name).encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        if t.numel():
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()[:length]


def large_tensor_digest(t: torch.Tensor, length: int = 64, block: int = 1 << 26) -> str:
    """sha256 of the sha256s of a CPU tensor's 64 MB blocks, hashed on threads; dtype and shape included.

    For datasets held in memory: 50,000 images of 224 px are 7.5 GB, which one core hashes in tens of seconds.
    """
    data = t.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    blocks = ((data[s:s + block],) for s in range(0, len(data), block))
    for d in map_ordered(lambda b: hashlib.sha256(b).digest(), blocks):
        h.update(d)
    return h.hexdigest()[:length]


def json_digest(obj, length: int = 64) -> str:
    """sha256 of a JSON-able object with sorted keys (non-JSON values by str())."""
    blob = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def file_digest(path, length: int = 64) -> str:
    """sha256 of a file's bytes, read in chunks: names the exact weights a model came from."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]


def bytes_digest(*parts: bytes, length: int = 64) -> str:
    """sha256 over length-prefixed byte strings (so (a, bc) and (ab, c) differ)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return h.hexdigest()[:length]


_PLAIN = (bool, int, float, str, type(None))


def _setting(v):
    """A module attribute that is a setting (a number, a flag, a name, a function): its JSON form, else None."""
    if isinstance(v, _PLAIN):
        return v
    if isinstance(v, (tuple, list)) and all(isinstance(x, _PLAIN) for x in v):
        return list(v)
    if inspect.isfunction(v) or inspect.isbuiltin(v):
        return f"{getattr(v, '__module__', '')}.{v.__qualname__}"
    return None


def module_config_digest(*modules, length: int = 32) -> str:
    """Every submodule's type and plain settings (kernel sizes, head counts, eps, flags, activation functions).

    What shapes a forward pass besides the weights: two ViTs that differ only in their number of attention heads
    have weights of the same shapes. Private attributes and the train/eval flag are left out (they change while
    a model is used, not what it computes once in eval mode).
    """
    items = []
    for i, module in enumerate(modules):
        if module is None:
            continue
        for name, m in module.named_modules():
            conf = {}
            for k, v in sorted(vars(m).items()):
                if k.startswith("_") or k == "training":
                    continue
                setting = _setting(v)
                if setting is not None:
                    conf[k] = setting
            items.append((i, name, f"{type(m).__module__}.{type(m).__qualname__}", conf))
    return json_digest(items, length=length)

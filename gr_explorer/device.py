"""Pick the compute device once, the same way everywhere (CUDA, then MPS, then CPU)."""

from __future__ import annotations

import contextlib

import torch

from .errors import GRExplorerError


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """`None`/'auto' picks the best available device; an explicit one must exist."""
    if isinstance(name, torch.device):
        return name
    if name is None or name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise GRExplorerError(f"Unknown device {name!r}. Valid: auto, cpu, cuda, cuda:N, mps.") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GRExplorerError(f"Device {name!r} was asked for but CUDA is not available here. Use --device cpu or auto.")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise GRExplorerError(f"Device {name!r} was asked for but MPS is not available here. Use --device cpu or auto.")
    return dev


def autocast(device: torch.device):
    """bf16 autocast on CUDA (fast, and safe for feature extraction); a no-op elsewhere."""

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()

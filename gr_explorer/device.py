"""Pick the compute device once, the same way everywhere (CUDA, then MPS, then CPU)."""

from __future__ import annotations

import contextlib
import platform
from importlib import metadata

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


def numerics(device: torch.device) -> dict:
    """What decides the bytes of a forward pass besides its inputs: library versions, the device and its precision.

    PyTorch gives no bitwise guarantee across releases or platforms (its "Numerical accuracy" notes): kernels
    are chosen per CPU instruction set and per GPU, and cuDNN / cuBLAS pick algorithms by GPU and library
    version. The feature cache keys on this, so a hit is the bytes a fresh run here would compute.
    """
    try:
        timm_version = metadata.version("timm")
    except metadata.PackageNotFoundError:  # pragma: no cover - timm is a dependency
        timm_version = None
    out = {"torch": torch.__version__, "timm": timm_version,
           "precision": "bf16 autocast" if device.type == "cuda" else "fp32"}
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        out["device"] = f"{torch.cuda.get_device_name(index)} sm{major}{minor}"
        out["cuda"], out["cudnn"] = torch.version.cuda, torch.backends.cudnn.version()
    elif device.type == "mps":
        out["device"] = f"mps macOS {platform.mac_ver()[0]} {platform.machine()}"
    else:
        out["device"] = f"cpu {torch.backends.cpu.get_cpu_capability()} {platform.machine()}"
    return out

"""Load a released `.pth` without running pickled code.

Official releases keep non-tensor objects next to the weights: DINO's
`argparse.Namespace` args, optimizer and scaler states, epoch counters, numpy
scalars in logs. `torch.load(weights_only=True)` refuses every class it does
not know; we allow-list a few that only hold data (building them runs no code
from the file) and nothing else. When a checkpoint still needs another class,
the error names it, as torch reported it, and says what to do.
"""

from __future__ import annotations

import argparse
import pathlib
import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError


def _numpy_globals() -> list:
    """numpy scalars, dtypes and arrays: data only (object arrays hold already-unpickled items)."""
    core = getattr(np, "_core", None) or np.core
    out = []
    for mod in ("numpy.core", "numpy._core"):  # numpy 1.x and 2.x name the same objects differently
        out += [(core.multiarray.scalar, f"{mod}.multiarray.scalar"),
                (core.multiarray._reconstruct, f"{mod}.multiarray._reconstruct")]
    out += [np.dtype, np.ndarray]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        out += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType") and isinstance(getattr(dtypes, n), type)]
    return out


def _path_globals() -> list:
    """Paths in saved args (`--output_dir`): rebuilding one makes a path object, nothing else."""
    out = []
    for mod in ("pathlib", "pathlib._local"):  # Python < 3.13 and >= 3.13
        out += [(pathlib.PosixPath, f"{mod}.PosixPath"), (pathlib.PurePosixPath, f"{mod}.PurePosixPath"),
                (pathlib.PureWindowsPath, f"{mod}.PureWindowsPath"),
                (pathlib.PureWindowsPath, f"{mod}.WindowsPath")]  # cannot be built on POSIX: kept as a pure path
    return out


def allowed_globals() -> list:
    """The allow-list, in torch's `add_safe_globals` form (a class, or (object, pickled name))."""
    return [argparse.Namespace, *_path_globals(), *_numpy_globals()]


def allowed_names() -> list[str]:
    names = []
    for g in allowed_globals():
        names.append(g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}")
    return sorted(set(names))


def safe_torch_load(path: str | Path):
    """`torch.load(weights_only=True)` with the allow-list; a CheckpointError naming what blocked it otherwise."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(allowed_globals()):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        blocked = _blocked_globals(path, e)
        raise CheckpointError(
            f"Refused to load {str(path)!r}: it is not a plain weights file (unpickling it would run code or construct "
            f"arbitrary objects). Blocked: {blocked}. gr-explorer allows only tensors, plain containers and "
            "argparse.Namespace, pathlib paths and numpy scalars/arrays. If you trust the file, re-save just its "
            "state dict (torch.save(ckpt['state_dict'], 'weights.pth')) or convert it to .safetensors."
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"Checkpoint {str(path)!r} is corrupt or truncated: {e}.") from e


def _blocked_globals(path: Path, err: Exception) -> str:
    """The globals torch would not build, from its own scan (zip checkpoints) or its error message."""
    allowed = set(allowed_names())
    try:
        names = [n for n in torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) if n not in allowed]
        if names:
            return ", ".join(sorted(names))
    except Exception:  # legacy (non-zip) pickles cannot be scanned; torch's message still names the global
        pass
    return str(err).split("\n")[0][:300]

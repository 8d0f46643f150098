"""Projector heads from a spec string, with one cut after each block.

Convention: `"512-512-128"` builds Linear(d,512)+BN+ReLU, Linear(512,512)+BN+ReLU,
Linear(512,128) -- hidden blocks are Linear+norm+activation, the last block is a
bare Linear (the SSL loss sees its output). Cuts `proj1..projL` are the outputs
of blocks 1..L, so `projL` is the projector output. `"none"` means no projector.
"""

from __future__ import annotations

from torch import nn

from ..errors import ModelSpecError

NORMS = ("bn", "ln", "none")
ACTS = ("relu", "gelu")


def parse_projector_spec(spec: str | None) -> list[int]:
    if spec is None or str(spec).strip().lower() in ("", "none"):
        return []
    try:
        widths = [int(w) for w in str(spec).split("-")]
    except ValueError:
        widths = []
    if not widths or any(w <= 0 for w in widths):
        raise ModelSpecError(f"Bad projector spec {spec!r}. Valid: 'none' or positive widths joined by '-', e.g. '512-512-128'.")
    return widths


def build_projector(spec: str | None, in_dim: int, norm: str = "bn", act: str = "relu") -> nn.Sequential | None:
    widths = parse_projector_spec(spec)
    if not widths:
        return None
    if norm not in NORMS:
        raise ModelSpecError(f"Unknown projector norm {norm!r}. Valid: {', '.join(NORMS)}.")
    if act not in ACTS:
        raise ModelSpecError(f"Unknown projector activation {act!r}. Valid: {', '.join(ACTS)}.")
    blocks, d = [], in_dim
    for i, w in enumerate(widths):
        last = i == len(widths) - 1
        layers: list[nn.Module] = [nn.Linear(d, w, bias=last or norm == "none")]
        if not last:
            if norm == "bn":
                layers.append(nn.BatchNorm1d(w))
            elif norm == "ln":
                layers.append(nn.LayerNorm(w))
            layers.append(nn.ReLU(inplace=True) if act == "relu" else nn.GELU())
        blocks.append(nn.Sequential(*layers))
        d = w
    return nn.Sequential(*blocks)

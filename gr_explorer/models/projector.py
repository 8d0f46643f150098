"""Projector heads as blocks, with one cut after each block.

Convention: `"512-512-128"` builds Linear(d,512)+BN+ReLU, Linear(512,512)+BN+ReLU,
Linear(512,128) -- hidden blocks are Linear+norm+activation, the last block is a
bare Linear (the SSL loss sees its output). Cuts `proj1..projL` are the outputs
of blocks 1..L, so `projL` is the projector output. `"none"` means no projector.

Official releases need more than that spec string can say (DINO's Linear+GELU
blocks, its L2-normalised bottleneck, Barlow Twins' and MoCo v3's affine-free
final BatchNorm, Linears without bias). Those heads are described layer by
layer as JSON-able dicts (`{"type": "linear", "in": 384, "out": 2048, "bias": true}`,
`{"type": "bn", "dim": 2048, "affine": false}`, `gelu`, `l2norm` ...) grouped into blocks, stored in the card
as `architecture.projector.blocks`, and rebuilt by `build_projector_blocks`.
A block always starts at a Linear: Linear[+norm][+activation].
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelSpecError
from ..names import PROJECTOR_ACTS, PROJECTOR_NORMS

NORMS, ACTS = PROJECTOR_NORMS, PROJECTOR_ACTS
LAYER_TYPES = ("linear", "bn", "ln", "relu", "gelu", "l2norm")


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


class L2Norm(nn.Module):
    """Unit L2 norm over the feature dimension (DINO normalises its bottleneck before the last layer)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1, p=2)


# -- layer-by-layer description (card `architecture.projector.blocks`) ----------
def build_layer(spec: dict) -> nn.Module:
    kind = spec.get("type")
    if kind == "linear":
        return nn.Linear(int(spec["in"]), int(spec["out"]), bias=bool(spec.get("bias", True)))
    if kind == "bn":
        return nn.BatchNorm1d(int(spec["dim"]), eps=float(spec.get("eps", 1e-5)), affine=bool(spec.get("affine", True)))
    if kind == "ln":
        return nn.LayerNorm(int(spec["dim"]), eps=float(spec.get("eps", 1e-5)), elementwise_affine=bool(spec.get("affine", True)))
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "gelu":
        return nn.GELU(approximate=spec.get("approximate", "none"))
    if kind == "l2norm":
        return L2Norm()
    raise ModelSpecError(f"Unknown projector layer type {kind!r} in the checkpoint card. Valid: {', '.join(LAYER_TYPES)}.")


def build_projector_blocks(blocks: Sequence[Sequence[dict]]) -> nn.Sequential | None:
    """Card `architecture.projector.blocks` -> Sequential of blocks (one cut per block)."""
    if not blocks:
        return None
    return nn.Sequential(*[nn.Sequential(*[build_layer(s) for s in block]) for block in blocks])


def describe_blocks(blocks: Sequence[Sequence[dict]]) -> str:
    """Short human summary, e.g. `384 -> [2048 gelu] -> [2048 gelu] -> [256 l2norm] -> [65536]`."""
    if not blocks:
        return "none"
    parts = [str(blocks[0][0].get("in", "?"))]
    for block in blocks:
        lin = next((s for s in block if s.get("type") == "linear"), {})
        extra = []
        for s in block:
            if s.get("type") == "bn":
                extra.append("bn" if s.get("affine", True) else "bn(no affine)")
            elif s.get("type") in ("ln", "relu", "gelu", "l2norm"):
                extra.append(s["type"])
        parts.append(f"[{lin.get('out', '?')}{' ' + ' '.join(extra) if extra else ''}]")
    return " -> ".join(parts)


# -- grouping a flat head into blocks --------------------------------------------
def _is_layer_start(m: nn.Module) -> bool:
    """A module that opens a block: a Linear, or any leaf with a 2-D weight (a linear map)."""
    w = getattr(m, "weight", None)
    return isinstance(m, nn.Linear) or (isinstance(w, torch.Tensor) and w.ndim == 2 and not list(m.children()))


def group_into_blocks(modules: Iterable[nn.Module]) -> nn.Sequential:
    """Flat Linear, BN, ReLU, Linear ... -> blocks Linear[+norm][+act], one cut after each.

    A child that is itself a container (e.g. an nn.Sequential block) stays one
    block; leaf children are grouped so that every Linear after the first
    starts a new block, i.e. a block ends after each non-final activation.
    Leaf modules before the first Linear (Flatten, Dropout) join the first block.
    """
    blocks: list[list[nn.Module]] = []
    open_block: list[nn.Module] = []
    for m in modules:
        if list(m.children()):
            if open_block:
                blocks.append(open_block)
                open_block = []
            blocks.append([m])
            continue
        if _is_layer_start(m) and any(_is_layer_start(x) for x in open_block):
            blocks.append(open_block)
            open_block = []
        open_block.append(m)
    if open_block:
        blocks.append(open_block)
    return nn.Sequential(*[b[0] if len(b) == 1 and list(b[0].children()) else nn.Sequential(*b) for b in blocks])

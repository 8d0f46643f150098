"""Sub-block cuts: points inside a pre-norm transformer block, captured by hooks that stop nothing.

For a block `x -> a = x + s1(attn(norm1(x))) -> y = a + s2(mlp(norm2(a)))` (timm's ViT/DeiT/DINO/DINOv2 and
register `Block`, EVA's `EvaBlock`, BEiT's `Block`; s1/s2 are LayerScale, `gamma_*` or nothing):

* `<block>.attn_out`: `a`, the residual stream after attention = the *input* of `norm2`;
* `<block>.mlp_hidden`: the MLP hidden activation after its activation (and GLU gate), before `fc2` = the
  *input* of `mlp.fc2` (4x the width for a standard MLP);
* `<block>`: `y`, the block output (a block-level cut already).

Forward pre-hooks on `norm2` and `mlp.fc2` see exactly these tensors, so they cost no extra compute. A block
is offered these cuts only when it has that structure and behaves as a pre-norm block: on a small random
input its output equals `a + s2(mlp(norm2(a)))` with `a` the captured input of `norm2` (post-norm blocks such as
timm's ResPostBlock or EVA's EvaBlockPostNorm fail this and get no sub-block cuts). The check runs on the
block's own weights; on the meta device (listing cuts without weights) only the timm classes above, which
the tests check against a hand-written forward, are accepted.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

ATTN_OUT, MLP_HIDDEN = "attn_out", "mlp_hidden"
#: sub-block cut suffix -> (submodule whose input it is), in forward order
POINTS = {ATTN_OUT: "norm2", MLP_HIDDEN: "mlp.fc2"}
#: pre-norm block classes accepted without the numeric check (meta-device listing)
KNOWN_PRENORM = ("timm.models.vision_transformer.Block", "timm.models.eva.EvaBlock", "timm.models.beit.Block")

_verified: dict[type, bool] = {}


def _qualname(block: nn.Module) -> str:
    return f"{type(block).__module__}.{type(block).__qualname__}"


def _mlp_residual(block: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """`a + s2(mlp(norm2(a)))`, the second half of a pre-norm block (eval: drop path is the identity)."""
    h = block.mlp(block.norm2(a))
    if isinstance(getattr(block, "ls2", None), nn.Module):
        h = block.ls2(h)
    elif isinstance(getattr(block, "gamma_2", None), torch.Tensor):
        h = block.gamma_2 * h
    return a + h


def _behaves_prenorm(block: nn.Module) -> bool:
    """True when the block's output is `a + s2(mlp(norm2(a)))` for the captured input `a` of norm2."""
    p = next(iter(block.parameters()), None)
    if p is not None and p.device.type == "meta":
        return _qualname(block) in KNOWN_PRENORM
    width = block.mlp.fc1.in_features if hasattr(getattr(block.mlp, "fc1", None), "in_features") else None
    width = width or getattr(block.norm2, "normalized_shape", [None])[-1]
    if not width:
        return False
    seen = []
    handle = block.norm2.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    was_training = block.training
    try:
        block.eval()
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, 5, int(width), generator=g).to(p.device if p is not None else "cpu",
                                                           p.dtype if p is not None else torch.float32)
        with torch.no_grad():
            y = block(x)
            if len(seen) != 1 or not isinstance(y, torch.Tensor) or y.shape != x.shape:
                return False
            return bool(torch.allclose(y, _mlp_residual(block, seen[0]), rtol=1e-4, atol=1e-5))
    except Exception:  # a block that cannot run on a plain [B, L, C] input is not one we can cut inside
        return False
    finally:
        handle.remove()
        block.train(was_training)


def block_points(block: nn.Module) -> dict[str, nn.Module] | None:
    """{attn_out: norm2, mlp_hidden: mlp.fc2} for a pre-norm transformer block (their inputs are the cuts), else None."""
    mlp = getattr(block, "mlp", None)
    if not (isinstance(getattr(block, "attn", None), nn.Module) and isinstance(getattr(block, "norm2", None), nn.Module)
            and isinstance(mlp, nn.Module) and isinstance(getattr(mlp, "fc2", None), nn.Module)):
        return None
    key = type(block)
    if not _verified.get(key):  # a class that passed once passes for every instance (same forward code)
        ok = _behaves_prenorm(block)
        if not ok:
            return None
        if next(iter(block.parameters()), torch.empty(0)).device.type != "meta":
            _verified[key] = True
    return {ATTN_OUT: block.norm2, MLP_HIDDEN: mlp.fc2}


def sub_block_points(module: nn.Module, stages: list[str]) -> tuple[list[str], dict[str, nn.Module]]:
    """Every cut name at sub-block detail in forward order (`s.attn_out`, `s.mlp_hidden`, `s` for each block stage
    `s`; other stages as they are) and {sub-block cut: submodule whose input it is}."""
    names, points = [], {}
    modules = dict(module.named_modules())
    for s in stages:
        pts = block_points(modules[s]) if s in modules else None
        for suffix, m in (pts or {}).items():
            names.append(f"{s}.{suffix}")
            points[f"{s}.{suffix}"] = m
        names.append(s)
    return names, points


def parent_stage(name: str) -> str:
    """`blocks.5.mlp_hidden` -> `blocks.5`."""
    return name.rsplit(".", 1)[0]


def capture_inputs(points: dict[str, nn.Module], store: Callable[[str, torch.Tensor], None]) -> list:
    """Forward pre-hooks that hand each point's input tensor to `store(name, tensor)`; returns the handles."""
    def make(name):
        def hook(_mod, args):
            store(name, args[0])
        return hook

    return [m.register_forward_pre_hook(make(n)) for n, m in points.items()]

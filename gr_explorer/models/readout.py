"""Readouts: how a cut's tensor becomes one vector per image, with the model's final norm applied or not.

A cut's raw output is one of three kinds, and each kind has its own readouts:

* tokens `[B, L, C]` (ViT blocks; timm hands them back as a (patch tokens, prefix tokens) pair):
  `cls` (the class token), `mean` (mean of the patch tokens: class, distillation and register tokens left out),
  `cls+mean` (both, concatenated: DINOv2's linear evaluation), `max` (per-channel max over the patch tokens),
  `registers` (mean of the register tokens), `all-tokens-mean` (mean over every token, prefix included);
* feature maps `[B, C, H, W]` (CNN stages): `avg` or `max` spatial pooling;
* vectors `[B, D]` (the pooled output, projector layers): nothing to read out, the vector itself.

The attentive probe reads a cut's tokens rather than one vector: the token readout `tokens:<n>` keeps the prefix
tokens and the patch tokens (or a map's spatial positions) average-pooled to a grid of at most n tokens in all,
flattened to one row of T x C per image (T tokens, C channels), so the feature store keeps its [N, D] rows.

Where the prefix tokens sit is read from the model (timm's `num_prefix_tokens`, `num_reg_tokens` or the shape
of `reg_token`, `cls_token`), never guessed: timm puts the class token first, then any distillation token,
then the registers (`_pos_embed`); `no_embed_class` only changes where positions are added, not this order.

The final norm (`norm=on`) is the model's own: timm's `model.norm`, applied to every token before the readout
exactly as `forward_intermediates(norm=True)` applies it; for models that pool first and normalise after
(`global_pool='avg'` ViTs keep an Identity `norm` and a real `fc_norm`), `fc_norm` applied to each
C-wide piece of the pooled vector, as the model's own `forward_head` does. It applies only to cuts in the
residual stream (block outputs and `attn_out`); see `Model.columns` for the cuts it passes through.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelSpecError
from ..names import MAP_READOUTS, READOUT_NORMS, READOUTS, TOKEN_READOUTS

__all__ = ["MAP_READOUTS", "NORMS", "READOUTS", "TOKEN_READOUTS", "check_token_readout"]

NORMS = READOUT_NORMS  # declared in names.py, with READOUTS, TOKEN_READOUTS and MAP_READOUTS
#: the readout of a cut that already is a vector (pool, projector layers)
VECTOR = "-"
TOKENS, MAP, VECTOR_KIND = "tokens", "map", "vector"
#: the pooling name of a token-level readout: `tokens:<most tokens kept>`
TOKEN_GRID = "tokens:"
#: how token-level features are stored: they are wide, and the attentive probe computes in float32 anyway
TOKEN_STORAGE = "float16"


def token_pooling(max_tokens: int) -> str:
    return f"{TOKEN_GRID}{int(max_tokens)}"


def is_token_grid(pooling: str) -> bool:
    return pooling.startswith(TOKEN_GRID)


@dataclass(frozen=True)
class Readout:
    """What is computed for one cut: the pooling (`-` for a vector cut) and whether the final norm is applied."""

    pooling: str
    norm: bool = False


@dataclass(frozen=True)
class TokenLayout:
    """The leading non-patch tokens of a token sequence: `num_prefix` in all, the last `num_reg` of them registers,
    the first one the class token when `has_cls`."""

    num_prefix: int = 0
    num_reg: int = 0
    has_cls: bool = False

    def readouts(self) -> tuple[str, ...]:
        """The token readouts this layout supports, in TOKEN_READOUTS order."""
        missing = set() if self.has_cls else {"cls", "cls+mean"}
        if self.num_reg == 0:
            missing.add("registers")
        return tuple(r for r in TOKEN_READOUTS if r not in missing)

    def describe(self) -> str:
        return (f"{self.num_prefix} prefix token(s): {'a class token' if self.has_cls else 'no class token'}, "
                f"{self.num_reg} register(s)")


def token_layout(module: nn.Module, num_prefix_tokens: int | None = None) -> TokenLayout:
    """The token layout of `module`, read from its attributes (timm's names); `num_prefix_tokens` is the
    caller's declaration for a module that does not say (wrap_module), whose first prefix token is then
    read as its class token."""
    n = int(getattr(module, "num_prefix_tokens", 0) or 0) if num_prefix_tokens is None else int(num_prefix_tokens)
    reg = getattr(module, "num_reg_tokens", None)
    if reg is None:
        token = getattr(module, "reg_token", None)
        reg = int(token.shape[1]) if isinstance(token, torch.Tensor) else 0
    reg = min(int(reg or 0), n)
    if hasattr(module, "cls_token"):
        has_cls = getattr(module, "cls_token") is not None and n > reg
    else:
        has_cls = n > reg
    return TokenLayout(n, reg, has_cls)


@dataclass(frozen=True)
class FinalNorm:
    """The model's final norm and where it acts: on every token (`tokens`) or on the pooled vector (`pooled`)."""

    module: nn.Module
    where: str
    width: int


def final_norm(module: nn.Module) -> FinalNorm | None:
    """`module.norm` when it is a real norm over the channels (timm ViTs, EVA), else `module.fc_norm` (applied
    after pooling), else None. An Identity, or a norm that is not per token (BatchNorm), does not count."""
    for attr, where in (("norm", "tokens"), ("fc_norm", "pooled")):
        m = getattr(module, attr, None)
        shape = getattr(m, "normalized_shape", None)
        if isinstance(m, nn.Module) and not isinstance(m, nn.Identity) and shape is not None:
            width = shape if isinstance(shape, int) else shape[-1] if len(shape) == 1 else None
            if width is not None:
                return FinalNorm(m, where, int(width))
    return None


def kind_of(raw) -> str:
    """tokens, map or vector: what a cut's raw output is."""
    if isinstance(raw, (tuple, list)) or raw.ndim == 3:
        return TOKENS
    return MAP if raw.ndim == 4 else VECTOR_KIND


def split_tokens(raw, layout: TokenLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """(patch tokens, prefix tokens) of a token cut, whether it came joined [B, L, C] or as timm's pair."""
    if isinstance(raw, (tuple, list)):
        return raw[0], raw[1]
    return raw[:, layout.num_prefix:], raw[:, :layout.num_prefix]


def read_tokens(patches: torch.Tensor, prefix: torch.Tensor, pooling: str, layout: TokenLayout) -> torch.Tensor:
    """One vector per image from patch tokens [B, N, C] and prefix tokens [B, P, C] (P may be 0)."""
    if pooling == "mean":
        return patches.mean(dim=1)
    if pooling == "cls":
        return prefix[:, 0]
    if pooling == "cls+mean":
        return torch.cat([prefix[:, 0], patches.mean(dim=1)], dim=1)
    if pooling == "max":
        return patches.amax(dim=1)
    if pooling == "registers":
        return prefix[:, layout.num_prefix - layout.num_reg:layout.num_prefix].mean(dim=1)
    if pooling == "all-tokens-mean":  # sums, not a concatenation: no copy of the whole sequence
        return (patches.sum(dim=1) + prefix.sum(dim=1)) / (patches.shape[1] + prefix.shape[1])
    raise ValueError(f"unknown token readout {pooling!r}")


def read_map(x: torch.Tensor, pooling: str) -> torch.Tensor:
    if pooling == "avg":
        return x.mean(dim=(2, 3))
    if pooling == "max":
        return x.amax(dim=(2, 3))
    raise ValueError(f"unknown map readout {pooling!r}")


def _grid(x: torch.Tensor, most: int) -> torch.Tensor:
    """Patch tokens [B, N, C] average-pooled to at most `most` tokens: on their square grid when N is a square, else
    along the sequence. Fewer tokens than that are kept as they are."""
    B, N, C = x.shape
    most = max(1, most)
    if N <= most:
        return x
    side = math.isqrt(N)
    if side * side == N:
        g = max(1, math.isqrt(most))
        pooled = F.adaptive_avg_pool2d(x.transpose(1, 2).reshape(B, C, side, side), (g, g))
        return pooled.flatten(2).transpose(1, 2)
    return F.adaptive_avg_pool1d(x.transpose(1, 2), most).transpose(1, 2)


def read_token_grid(raw, pooling: str, layout: TokenLayout, norm: FinalNorm | None, apply_norm: bool) -> torch.Tensor:
    """A cut's tokens for the attentive probe, flattened: [B, T x C] (prefix tokens first, then the pooled grid)."""
    most = int(pooling[len(TOKEN_GRID):])
    kind = kind_of(raw)
    if kind == MAP:
        B, C, H, W = raw.shape
        g = max(1, math.isqrt(most))
        x = raw if H * W <= most else F.adaptive_avg_pool2d(raw, (min(H, g), min(W, g)))
        return x.flatten(2).transpose(1, 2).flatten(1)
    if kind == VECTOR_KIND:
        return raw if raw.ndim == 2 else raw.flatten(1)
    patches, prefix = split_tokens(raw, layout)
    if apply_norm and norm is not None:  # per token, whether the model applies it before or after pooling
        patches, prefix = norm.module(patches), norm.module(prefix)
    tokens = torch.cat([prefix, _grid(patches, most - prefix.shape[1])], dim=1)
    return tokens.flatten(1)


def read(raw, readouts: Sequence[Readout], layout: TokenLayout, norm: FinalNorm | None) -> dict[Readout, torch.Tensor]:
    """Every requested readout of one cut's raw output, computed as soon as the output exists (nothing wide kept).

    The per-token norm is computed once per cut however many readouts use it.
    """
    grids = {r: read_token_grid(raw, r.pooling, layout, norm, r.norm) for r in readouts if is_token_grid(r.pooling)}
    readouts = [r for r in readouts if r not in grids]
    kind = kind_of(raw)
    if kind == VECTOR_KIND:
        v = raw if raw.ndim == 2 else raw.flatten(1)
        return {**grids, **{r: v for r in readouts}}
    if kind == MAP:
        return {**grids, **{r: read_map(raw, r.pooling) for r in readouts}}
    patches, prefix = split_tokens(raw, layout)
    normed = None
    out = dict(grids)
    for r in readouts:
        if r.norm and norm is not None and norm.where == "tokens":
            if normed is None:
                normed = (norm.module(patches), norm.module(prefix))
            v = read_tokens(*normed, r.pooling, layout)
        else:
            v = read_tokens(patches, prefix, r.pooling, layout)
            if r.norm and norm is not None:  # fc_norm: after pooling, on each C-wide piece (cls+mean has two)
                v = norm.module(v.unflatten(1, (-1, norm.width))).flatten(1)
        out[r] = v
    return out


def check_token_readout(readout: str | None) -> None:
    """The one check of a model's own token readout (a checkpoint card's, load_model's); None: the card's own."""
    if readout is not None and readout not in TOKEN_READOUTS:
        raise ModelSpecError(f"Unknown readout {readout!r}. Valid: {', '.join(TOKEN_READOUTS)}.")

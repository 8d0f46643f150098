"""Model = backbone adapter + optional projector, with its cuts listed in forward order."""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
from torch import nn

from ..errors import CutError, ReadoutError, did_you_mean
from ..hashing import tensor_digest
from ..names import TOKENS_READOUT
from .backbones import BackboneAdapter
from .cuts import Column, Cut
from .preprocessing import Preprocessing
from .readout import (
    MAP,
    MAP_READOUTS,
    NORMS,
    TOKENS,
    VECTOR,
    VECTOR_KIND,
    Readout,
    kind_of,
    read,
    token_pooling,
)
from .subblock import MLP_HIDDEN

POOL = "pool"
#: cut_detail settings: block/stage outputs only, or also the points inside each transformer block
DETAILS = ("block", "sub-block")


class Model(nn.Module):
    """The thing a sweep probes. `forward_cuts` captures every requested cut in one pass.

    Cut order: backbone stages, then `pool` (the pooled backbone output, the
    projector's input), then `proj1..projL` (see projector.py for the convention).
    `cut_list("sub-block")` adds `<block>.attn_out` and `<block>.mlp_hidden` before each transformer
    block (subblock.py); `columns` reads each cut out one or more ways (readout.py).

    `weights_source` says where the weights came from, for tables and plots:
    `pretrained (...)`, `random init`, `<file> sha256:<12 hex>`, or
    `none (meta device: shapes only)` for a model built only to list its cuts.

    `kind` says what a sweep measures it as (names.KINDS): the `model` itself, or a baseline
    (`random_init`, `pixels`); a baseline's `baseline_for` names the model it stands next to.
    """

    def __init__(self, backbone: BackboneAdapter, projector: nn.Sequential | None = None,
                 preprocessing: Preprocessing | None = None, name: str = "custom", card: dict | None = None,
                 weights_source: str | None = None, *, pool: bool = True, rebuild: Callable[[], "Model"] | None = None,
                 kind: str = "model", baseline_for: str = ""):
        super().__init__()
        self.backbone = backbone
        self.projector = projector
        self.preprocessing = preprocessing or Preprocessing()
        self.name = name
        self.card = dict(card or {})
        self.weights_source = str(weights_source or self.card.get("weights_source") or "unknown")
        self.has_pool = pool
        self.kind, self.baseline_for = kind, baseline_for
        #: builds the same architecture with fresh random weights (under the caller's RNG seed); see random_init
        self.rebuild = rebuild
        self._weights_hash: str | None = None
        self.eval()
        self.cuts = self._probe_cuts()

    # -- cuts -----------------------------------------------------------------
    @property
    def cut_names(self) -> list[str]:
        return [c.name for c in self.cuts]

    @property
    def projector_names(self) -> list[str]:
        return [f"proj{i + 1}" for i in range(len(self.projector) if self.projector is not None else 0)]

    def _probe(self, names: list[str]) -> list[Cut]:
        """Feature dims (and each cut's kind and channel width) by one tiny forward pass: robust for any architecture."""
        s = self.preprocessing.input_size
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device if any(True for _ in self.parameters()) else torch.device("cpu")

        def record(name, raw):
            t = raw[0] if isinstance(raw, (tuple, list)) else raw
            self._shape[name] = (kind_of(raw), int(t.shape[1] if t.ndim in (2, 4) else t.shape[-1]))
            return self.backbone.pooled(name, raw)

        with torch.no_grad():
            feats = self._forward(torch.zeros(2, 3, s, s, device=device), names, record)
        self.train(was_training)
        return [Cut(n, d, "projector" if n.startswith("proj") and n in self.projector_names else "backbone", int(feats[n].shape[1]))
                for d, n in enumerate(names)]

    def _probe_cuts(self) -> list[Cut]:
        self._shape: dict[str, tuple[str, int]] = {}
        self._detail_cuts: list[Cut] | None = None
        return self._probe(self.backbone.stage_names + ([POOL] if self.has_pool else []) + self.projector_names)

    def cut_list(self, detail: str = "block") -> list[Cut]:
        """Every cut at this detail, in forward order: `block` (block/stage outputs, pool, projector layers) or
        `sub-block` (also `<block>.attn_out` and `<block>.mlp_hidden` before each transformer block's output).
        `depth` counts the cuts of the list it belongs to."""
        if detail == "block":
            return list(self.cuts)
        if detail != "sub-block":
            raise CutError(f"Unknown cut detail {detail!r}. Valid: {', '.join(DETAILS)}.")
        if self._detail_cuts is None:
            names, points = self.backbone.detail()
            if not points:
                raise CutError(f"Model {self.name!r} has no sub-block cuts: none of its stages ({', '.join(self.backbone.stage_names)}) "
                               "is a pre-norm transformer block (norm1/attn, norm2/mlp.fc2, as in timm's ViT, DeiT, DINOv2, "
                               "EVA and BEiT). Valid: cut_detail=block.")
            self._detail_cuts = self._probe(names + ([POOL] if self.has_pool else []) + self.projector_names)
        return list(self._detail_cuts)

    def resolve_cuts(self, names: Sequence[str] | None = None, detail: str = "block") -> list[Cut]:
        """Requested cut names -> Cut objects in forward order (all cuts of `detail` when None).

        Naming a sub-block cut (`blocks.5.mlp_hidden`) switches to the sub-block detail, whose depths count it.
        """
        block = {c.name for c in self.cuts}
        if names and detail == "block" and any(n not in block for n in names):
            sub = self.backbone.detail()[1] if self.backbone.stage_names else {}
            if any(n in sub for n in names):
                detail = "sub-block"
        cuts = self.cut_list(detail)
        if names is None or len(names) == 0:
            return cuts
        by_name = {c.name: c for c in cuts}
        for n in names:
            if n not in by_name:
                raise CutError(f"Model {self.name!r} has no cut {n!r}. {did_you_mean(n, self._all_names())}")
        wanted = set(names)
        return [c for c in cuts if c.name in wanted]

    def _all_names(self) -> list[str]:
        """Block-level cut names, then the sub-block ones where the model has them (for error messages)."""
        try:
            extra = [c.name for c in self.cut_list("sub-block") if c.name not in self.cut_names]
        except CutError:
            extra = []
        return self.cut_names + extra

    def cut_kind(self, cut: str) -> str:
        """tokens, map or vector: what the cut's raw output is (a resolved cut's name)."""
        return self._shape[cut][0]

    def width(self, cut: str) -> int:
        """The cut's channel width before any readout (4x the model width for mlp_hidden)."""
        return self._shape[cut][1]

    # -- readouts -------------------------------------------------------------
    def own_readout(self) -> str:
        """The readout the model uses when a sweep asks for none: its token readout, `avg` for maps, `-` for vectors."""
        kinds = {k for k, _ in self._shape.values()}
        if TOKENS in kinds:
            return self.backbone.own_readout(TOKENS).pooling
        return "avg" if MAP in kinds else VECTOR

    def readouts_for(self, kind: str) -> tuple[str, ...]:
        """The readouts a cut of this kind supports on this model."""
        return self.backbone.layout.readouts() if kind == TOKENS else MAP_READOUTS if kind == MAP else (VECTOR,)

    def norm_applies(self, cut: Cut) -> bool:
        """The final norm acts on this cut: a token cut of the residual stream (a block output or attn_out) as wide
        as the norm. mlp_hidden (not in the stream), pool (already normalised by the model's head), projector
        layers, feature maps and models without a final norm pass through unchanged."""
        norm = self.backbone.norm
        kind, width = self.cut_kind(cut.name), self.width(cut.name)
        return (norm is not None and kind == TOKENS and cut.part == "backbone" and cut.name != POOL
                and not cut.name.endswith(f".{MLP_HIDDEN}") and width == norm.width)

    def columns(self, cuts: Sequence[Cut], readouts: Sequence[str] | None = None, norm: str = "off") -> list[Column]:
        """The feature columns of `cuts`: one per (readout, norm) curve and cut, curves in the order asked.

        Refused (ReadoutError naming what is valid) where a readout does not exist for a requested cut's kind on
        this model (no class token, no registers, token readouts on feature maps) or where `norm` on/both would
        change no requested cut. Requested cuts that are all vectors (the pixels baseline) make one curve, `-`, and
        refuse readouts or the norm (they would change nothing).
        """
        if norm not in NORMS:
            raise ReadoutError(f"Unknown readout_norm {norm!r}. Valid: {', '.join(NORMS)}.")
        kinds = {c.name: self.cut_kind(c.name) for c in cuts}
        if all(k == VECTOR_KIND for k in kinds.values()):
            if readouts or norm != "off":
                raise ReadoutError(f"The requested cuts of {self.name!r} ({', '.join(kinds)}) are vectors already: readouts "
                                   "and the final norm act on token and feature-map cuts only. Valid: no readout and "
                                   "readout_norm=off, or ask for block/stage cuts too.")
            return [Column(c.name, c, VECTOR, "off", Readout(VECTOR)) for c in cuts]
        asked = list(dict.fromkeys(readouts)) if readouts else None
        for r in asked or []:
            for c in cuts:
                valid = self.readouts_for(kinds[c.name])
                if kinds[c.name] != VECTOR_KIND and r not in valid:
                    what = (f"its token cuts have {self.backbone.layout.describe()}" if kinds[c.name] == TOKENS
                            else "its stage cuts are feature maps")
                    raise ReadoutError(f"Readout {r!r} does not apply to cut {c.name!r} of {self.name!r}: {what}. "
                                       f"Valid: {', '.join(valid)}.")
        norms = {"off": [False], "on": [True], "both": [False, True]}[norm]
        if True in norms:
            if self.backbone.norm is None:
                raise ReadoutError(f"{self.name!r} has no final norm (no `norm` or `fc_norm` over its channels), so "
                                   f"readout_norm={norm!r} would change nothing. Valid: readout_norm=off.")
            if not any(self.norm_applies(c) for c in cuts):
                raise ReadoutError(f"The final norm of {self.name!r} applies to none of the requested cuts "
                                   f"({', '.join(c.name for c in cuts)}): it acts on block outputs and attn_out cuts "
                                   "only. Valid: readout_norm=off, or ask for those cuts.")
        out = []
        for i, (r, on) in enumerate((r, on) for r in (asked or [None]) for on in norms):
            label = r or self.own_readout()
            for c in cuts:
                k = kinds[c.name]
                pooling = VECTOR if k == VECTOR_KIND else (r or (self.backbone.own_readout(k).pooling))
                applied = Readout(pooling, on and self.norm_applies(c))
                name = c.name if i == 0 else f"{c.name}@{label}" + ("@norm" if on else "")
                out.append(Column(name, c, label, "on" if on else "off", applied))
        return out

    def token_columns(self, cuts: Sequence[Cut], max_tokens: int, norm: str = "off") -> list[Column]:
        """The token-level columns the attentive probe reads: one per token or map cut (a vector cut is its own single
        token), named `<cut>@tokens`, at most `max_tokens` tokens each, the final norm applied where `norm` is on (with
        `both`: the first curve's, off). Their rows are `token_shape(cut)` flattened."""
        on = norm == "on"
        return [Column(f"{c.name}@{TOKENS_READOUT}", c, TOKENS_READOUT, "on" if on else "off",
                       Readout(token_pooling(max_tokens), on and self.norm_applies(c)))
                for c in cuts if self.cut_kind(c.name) != VECTOR_KIND]

    # -- forward --------------------------------------------------------------
    def _forward(self, x: torch.Tensor, names: Sequence[str], reduce=None) -> dict[str, torch.Tensor]:
        wanted = set(names)
        proj = self.projector_names
        proj_wanted = [i for i, n in enumerate(proj) if n in wanted]
        need_out = POOL in wanted or bool(proj_wanted)
        stages = [s for s in names if s not in proj and s != POOL]
        feats, out = self.backbone.forward_cuts(x, stages, need_out, reduce)
        keep = reduce or (lambda _name, v: v)
        if POOL in wanted:
            feats[POOL] = keep(POOL, out)
        if proj_wanted:
            h = out
            for i, block in enumerate(self.projector):
                if i > max(proj_wanted):
                    break
                h = block(h)
                if i in proj_wanted:
                    feats[proj[i]] = keep(proj[i], h)
        return feats

    def forward_cuts(self, x: torch.Tensor, names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Preprocessed batch -> {cut name: [B, dim]} for every requested cut, one forward pass, the model's own readout."""
        cuts = self.resolve_cuts(names)
        return self._forward(x, [c.name for c in cuts])

    def forward_readouts(self, x: torch.Tensor, columns: Sequence[Column]) -> dict[tuple[str, Readout], torch.Tensor]:
        """Preprocessed batch -> {(cut, applied readout): [B, dim]} for every column, one forward pass.

        Every readout of a cut is computed in the hook that sees it, so a wide cut (mlp_hidden) is never kept whole.
        """
        plan: dict[str, list[Readout]] = {}
        for col in columns:
            rs = plan.setdefault(col.cut.name, [])
            if col.applied not in rs:
                rs.append(col.applied)
        layout, norm = self.backbone.layout, self.backbone.norm
        feats = self._forward(x, list(plan), lambda name, raw: read(raw, plan[name], layout, norm))
        return {(name, r): v for name, got in feats.items() for r, v in got.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Projector output (or the pooled backbone output without projector): what an SSL loss sees."""
        h = self.backbone(x)
        return self.projector(h) if self.projector is not None else h

    # -- identity -------------------------------------------------------------
    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """Flat `backbone.*` / `projector.*` state dict: the checkpoint layout."""
        sd = {f"backbone.{k}": v for k, v in self.backbone.module.state_dict().items()}
        if self.projector is not None:
            sd.update({f"projector.{k}": v for k, v in self.projector.state_dict().items()})
        return sd

    def weights_hash(self) -> str:
        """Content hash of all weights (part of the feature-cache key), computed once: a loaded Model is frozen.

        Code that changes the weights in place (training) builds its own Model and saves a new checkpoint.
        """
        if self._weights_hash is None:
            self._weights_hash = tensor_digest(self.export_state_dict(), length=32)
        return self._weights_hash

    def load_state_dict(self, *args, **kwargs):
        self._weights_hash = None
        return super().load_state_dict(*args, **kwargs)

    def describe(self) -> dict:
        """What identifies this model's features besides its weights (for the cache key)."""
        return {"arch": type(self.backbone.module).__name__, "readout": self.backbone.readout,
                "preprocessing": self.preprocessing.as_dict(), "cuts": [c.as_dict() for c in self.cuts]}

    def renamed(self, name: str) -> "Model":
        """A shallow copy under another name (same modules, so no extra memory)."""
        other = copy.copy(self)
        other.name = name
        return other

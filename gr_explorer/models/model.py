"""Model = backbone adapter + optional projector, with its cuts listed in forward order."""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
from torch import nn

from ..errors import CutError, did_you_mean
from ..hashing import tensor_digest
from .backbones import BackboneAdapter
from .cuts import Cut
from .preprocessing import Preprocessing

POOL = "pool"


class Model(nn.Module):
    """The thing a sweep probes. `forward_cuts` captures every requested cut in one pass.

    Cut order: backbone stages, then `pool` (the pooled backbone output, the
    projector's input), then `proj1..projL` (see projector.py for the convention).

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

    def _probe_cuts(self) -> list[Cut]:
        """Feature dims by one tiny forward pass: robust for any architecture."""
        s = self.preprocessing.input_size
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device if any(True for _ in self.parameters()) else torch.device("cpu")
        names = self.backbone.stage_names + ([POOL] if self.has_pool else []) + self.projector_names
        with torch.no_grad():
            feats = self._forward(torch.zeros(2, 3, s, s, device=device), names)
        self.train(was_training)
        return [Cut(n, d, "projector" if n.startswith("proj") and n in self.projector_names else "backbone", int(feats[n].shape[1]))
                for d, n in enumerate(names)]

    def resolve_cuts(self, names: Sequence[str] | None = None) -> list[Cut]:
        """Requested cut names -> Cut objects in forward order (all cuts when None)."""
        if names is None or len(names) == 0:
            return list(self.cuts)
        by_name = {c.name: c for c in self.cuts}
        for n in names:
            if n not in by_name:
                raise CutError(f"Model {self.name!r} has no cut {n!r}. {did_you_mean(n, by_name)}")
        wanted = set(names)
        return [c for c in self.cuts if c.name in wanted]

    # -- forward --------------------------------------------------------------
    def _forward(self, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
        wanted = set(names)
        proj = self.projector_names
        proj_wanted = [i for i, n in enumerate(proj) if n in wanted]
        need_out = POOL in wanted or bool(proj_wanted)
        stages = [s for s in self.backbone.stage_names if s in wanted]
        feats, out = self.backbone.forward_cuts(x, stages, need_out)
        if POOL in wanted:
            feats[POOL] = out
        if proj_wanted:
            h = out
            for i, block in enumerate(self.projector):
                if i > max(proj_wanted):
                    break
                h = block(h)
                if i in proj_wanted:
                    feats[proj[i]] = h
        return feats

    def forward_cuts(self, x: torch.Tensor, names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Preprocessed batch -> {cut name: [B, dim]} for every requested cut, one forward pass."""
        cuts = self.resolve_cuts(names)
        return self._forward(x, [c.name for c in cuts])

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

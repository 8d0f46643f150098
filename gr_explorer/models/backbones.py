"""Backbone adapters: one way to get every requested stage output from ONE forward pass.

`IntermediatesBackbone` serves any module with timm's `forward_intermediates`
protocol (timm CNNs and ViTs, our SmallResNet); `HookBackbone` serves any
other `nn.Module` by hooking the named submodules.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import CutError, ModelSpecError, did_you_mean
from .cuts import check_readout, pool_map, pool_tokens


class _Stop(Exception):
    """Raised from a hook once every wanted output is captured, to skip the rest of the network."""


class BackboneAdapter(nn.Module):
    """Common surface: `stage_names`, `forward_cuts(x, stages, need_out)`, `forward(x)` -> pooled output."""

    module: nn.Module
    stage_names: list[str]
    readout: str = "mean"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_cuts(x, [], need_out=True)[1]

    def forward_cuts(self, x, stages: Sequence[str], need_out: bool):  # pragma: no cover - interface
        raise NotImplementedError

    def _check(self, stages: Sequence[str]) -> None:
        for s in stages:
            if s not in self.stage_names:
                raise CutError(f"Unknown backbone stage {s!r}. {did_you_mean(s, self.stage_names)}")


class IntermediatesBackbone(BackboneAdapter):
    def __init__(self, module: nn.Module, readout: str = "cls"):
        super().__init__()
        if not hasattr(module, "forward_intermediates"):
            raise ModelSpecError(
                f"{type(module).__name__} has no forward_intermediates(); wrap it with HookBackbone "
                "(gr_explorer.models.wrap_module) and name the submodules to cut at."
            )
        check_readout(readout)
        self.module = module
        self.readout = readout
        self.num_prefix_tokens = int(getattr(module, "num_prefix_tokens", 0) or 0)
        self.tokens = hasattr(module, "blocks") and hasattr(module, "patch_embed")
        self.stage_names = [str(f["module"]) for f in _feature_info(module)]

    def forward_cuts(self, x: torch.Tensor, stages: Sequence[str], need_out: bool):
        self._check(stages)
        idx = sorted(self.stage_names.index(s) for s in stages)
        kwargs = dict(indices=idx or [0], stop_early=not need_out, intermediates_only=not need_out)
        if self.tokens:
            kwargs.update(output_fmt="NLC", return_prefix_tokens=self.num_prefix_tokens > 0)
        res = self.module.forward_intermediates(x, **kwargs)
        final, inter = (None, res) if not need_out else res
        feats = {}
        for i, t in zip(idx, inter):
            if isinstance(t, (tuple, list)):  # (patch tokens, prefix tokens)
                feats[self.stage_names[i]] = pool_tokens(t[0], t[1], self.readout)
            else:
                feats[self.stage_names[i]] = pool_map(t, self.readout, self.num_prefix_tokens)
        out = None
        if need_out:
            out = self.module.forward_head(final, pre_logits=True)
            out = pool_map(out, self.readout, self.num_prefix_tokens)
        return feats, out


def _feature_info(module: nn.Module) -> list[dict]:
    info = getattr(module, "feature_info", None)
    if info is None:
        raise ModelSpecError(f"{type(module).__name__} has forward_intermediates() but no feature_info to name its stages.")
    if hasattr(info, "get_dicts"):
        return info.get_dicts()
    return list(info)


class HookBackbone(BackboneAdapter):
    """Any nn.Module: stage outputs captured by forward hooks.

    The pooled output is the output of the submodule named `pool` (e.g.
    `"avgpool"` of a torchvision ResNet; the forward stops there, so a
    classifier or projector that the module still carries never runs), or,
    without `pool`, whatever calling the module returns.
    """

    def __init__(self, module: nn.Module, stages: Sequence[str], readout: str = "mean", num_prefix_tokens: int = 0,
                 pool: str | None = None):
        super().__init__()
        check_readout(readout)
        names = dict(module.named_modules())
        for s in list(stages) + ([pool] if pool is not None else []):
            if s not in names or s == "":
                raise CutError(f"Module {type(module).__name__} has no submodule {s!r} to cut at. {did_you_mean(s, [n for n in names if n])}")
        self.module = module
        self.stage_names = list(stages)
        self.readout = readout
        self.num_prefix_tokens = num_prefix_tokens
        self.pool = pool
        self._stage_modules = {s: names[s] for s in stages}  # plain dict: not re-registered as submodules
        self._pool_module = names[pool] if pool is not None else None

    def forward_cuts(self, x: torch.Tensor, stages: Sequence[str], need_out: bool):
        self._check(stages)
        wanted = set(stages)
        feats: dict[str, torch.Tensor] = {}
        pooled: list[torch.Tensor] = []

        def done() -> bool:
            return wanted.issubset(feats) and (not need_out or bool(pooled))

        def make_hook(name):
            def hook(_mod, _inp, output):
                if isinstance(output, (tuple, list)):
                    output = output[0]
                feats[name] = pool_map(output, self.readout, self.num_prefix_tokens)
                if (not need_out or self.pool is not None) and done():
                    raise _Stop
            return hook

        def pool_hook(_mod, _inp, output):
            if isinstance(output, (tuple, list)):
                output = output[0]
            pooled.append(output)
            if done():
                raise _Stop

        handles = [self._stage_modules[s].register_forward_hook(make_hook(s)) for s in wanted]
        if need_out and self._pool_module is not None:
            handles.append(self._pool_module.register_forward_hook(pool_hook))
        out = None
        try:
            out = self.module(x)
        except _Stop:
            pass
        finally:
            for h in handles:
                h.remove()
        if need_out:
            if self.pool is not None:
                if not pooled:
                    raise ModelSpecError(f"The pool submodule {self.pool!r} of {type(self.module).__name__} never ran in the forward pass.")
                out = pooled[0]
            if not torch.is_tensor(out):
                raise ModelSpecError(f"{type(self.module).__name__}(x) must return a tensor to be used as a backbone, got "
                                     f"{type(out).__name__}; name the submodule whose output is the pooled feature with pool=...")
            out = pool_map(out, self.readout, self.num_prefix_tokens)
        return feats, out

"""Backbone adapters: one way to get every requested stage output from ONE forward pass.

`IntermediatesBackbone` serves any module with timm's `forward_intermediates`
protocol (timm CNNs and ViTs, our SmallResNet); `HookBackbone` serves any
other `nn.Module` by hooking the named submodules.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from ..errors import CutError, ModelSpecError, did_you_mean
from .readout import Readout, TokenLayout, check_token_readout, final_norm, kind_of, read, token_layout
from .subblock import capture_inputs, parent_stage, sub_block_points

#: reduce(cut name, raw output) -> what the adapter stores for that cut (see Model.forward_readouts)
Reduce = Callable[[str, object], object]


class _Stop(Exception):
    """Raised from a hook once every wanted output is captured, to skip the rest of the network."""


class BackboneAdapter(nn.Module):
    """Common surface: `stage_names`, `forward_cuts(x, stages, need_out, reduce)`, `forward(x)` -> pooled output.

    `readout` is the model's own token readout (the checkpoint card's, else cls; mean where there is no class
    token): the one used when a sweep asks for none, and for a token sequence that the backbone itself returns
    as its output. `layout` and `norm` say where the prefix tokens are and which final norm the model has.
    """

    module: nn.Module
    stage_names: list[str]
    readout: str = "mean"
    layout: TokenLayout = TokenLayout()
    norm = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_cuts(x, [], need_out=True)[1]

    def forward_cuts(self, x, stages: Sequence[str], need_out: bool, reduce: Reduce | None = None):  # pragma: no cover
        raise NotImplementedError

    def own_readout(self, kind: str) -> Readout:
        """The model's own readout of a cut of this kind (tokens, map or vector)."""
        if kind == "tokens":
            r = self.readout if self.readout in self.layout.readouts() else "mean"
            return Readout(r)
        return Readout("avg" if kind == "map" else "-")

    def pooled(self, name: str, raw):
        """A cut read out the model's own way (what `reduce=None` stores)."""
        if isinstance(raw, torch.Tensor) and raw.ndim not in (3, 4):
            return raw if raw.ndim == 2 else raw.flatten(1)
        r = self.own_readout(kind_of(raw))
        return read(raw, [r], self.layout, self.norm)[r]

    def detail(self) -> tuple[list[str], dict[str, nn.Module]]:
        """(every cut name at sub-block detail, in forward order; {sub-block cut: the submodule whose input it is})."""
        if getattr(self, "_detail", None) is None:
            self._detail = sub_block_points(self.module, list(self.stage_names))
        return self._detail

    def _check(self, stages: Sequence[str]) -> None:
        for s in stages:
            if s not in self.stage_names and s not in self.detail()[1]:
                raise CutError(f"Unknown backbone stage {s!r}. {did_you_mean(s, self.detail()[0])}")


class IntermediatesBackbone(BackboneAdapter):
    def __init__(self, module: nn.Module, readout: str = "cls"):
        super().__init__()
        if not hasattr(module, "forward_intermediates"):
            raise ModelSpecError(
                f"{type(module).__name__} has no forward_intermediates(); wrap it with HookBackbone "
                "(gr_explorer.models.wrap_module) and name the submodules to cut at."
            )
        check_token_readout(readout)
        self.module = module
        self.readout = readout
        self.layout = token_layout(module)
        self.num_prefix_tokens = self.layout.num_prefix
        self.norm = final_norm(module)
        self.tokens = hasattr(module, "blocks") and hasattr(module, "patch_embed")
        self.stage_names = [str(f["module"]) for f in _feature_info(module)]

    def forward_cuts(self, x: torch.Tensor, stages: Sequence[str], need_out: bool, reduce: Reduce | None = None):
        self._check(stages)
        reduce = reduce or self.pooled
        feats = {}
        subs = {s: self.detail()[1][s] for s in stages if s not in self.stage_names}
        whole = [s for s in stages if s in self.stage_names]
        idx = sorted({self.stage_names.index(s) for s in whole} | {self.stage_names.index(parent_stage(s)) for s in subs})
        kwargs = dict(indices=idx or [0], stop_early=not need_out, intermediates_only=not need_out)
        if self.tokens:
            kwargs.update(output_fmt="NLC", return_prefix_tokens=self.num_prefix_tokens > 0)
        handles = capture_inputs(subs, lambda name, t: feats.__setitem__(name, reduce(name, t)))
        try:
            res = self.module.forward_intermediates(x, **kwargs)
        finally:
            for h in handles:
                h.remove()
        final, inter = (None, res) if not need_out else res
        for i, t in zip(idx, inter):
            if self.stage_names[i] in whole:
                feats[self.stage_names[i]] = reduce(self.stage_names[i], t)
        out = None
        if need_out:
            out = self.pooled("pool", self.module.forward_head(final, pre_logits=True))
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
    classifier or projector that the module still carries never runs), or its
    input with `pool_input=True` (the input of a projector the module calls last),
    or, without `pool`, whatever calling the module returns. `num_prefix_tokens`:
    None reads it from the module (timm's attribute, else 0).
    """

    def __init__(self, module: nn.Module, stages: Sequence[str], readout: str = "mean", num_prefix_tokens: int | None = None,
                 pool: str | None = None, pool_input: bool = False):
        super().__init__()
        check_token_readout(readout)
        names = dict(module.named_modules())
        for s in list(stages) + ([pool] if pool is not None else []):
            if s not in names or s == "":
                raise CutError(f"Module {type(module).__name__} has no submodule {s!r} to cut at. {did_you_mean(s, [n for n in names if n])}")
        self.module = module
        self.stage_names = list(stages)
        self.readout = readout
        self.layout = token_layout(module, num_prefix_tokens)
        self.num_prefix_tokens = self.layout.num_prefix
        self.norm = final_norm(module)
        self.pool = pool
        self.pool_input = pool_input
        self._stage_modules = {s: names[s] for s in stages}  # plain dict: not re-registered as submodules
        self._pool_module = names[pool] if pool is not None else None

    def forward_cuts(self, x: torch.Tensor, stages: Sequence[str], need_out: bool, reduce: Reduce | None = None):
        self._check(stages)
        reduce = reduce or self.pooled
        wanted = set(stages)
        feats: dict[str, torch.Tensor] = {}
        pooled: list[torch.Tensor] = []

        def done() -> bool:
            return wanted.issubset(feats) and (not need_out or bool(pooled))

        def store(name, output):
            if isinstance(output, (tuple, list)):
                output = output[0]
            feats[name] = reduce(name, output)
            if (not need_out or self.pool is not None) and done():
                raise _Stop

        def make_hook(name):
            return lambda _mod, _inp, output: store(name, output)

        def pool_hook(_mod, inp, output=None):
            output = inp if self.pool_input else output
            if isinstance(output, (tuple, list)):
                output = output[0]
            pooled.append(output)
            if done():
                raise _Stop

        subs = {s: self.detail()[1][s] for s in wanted if s not in self._stage_modules}
        handles = [self._stage_modules[s].register_forward_hook(make_hook(s)) for s in wanted if s in self._stage_modules]
        handles += capture_inputs(subs, store)
        if need_out and self._pool_module is not None:
            handles.append(self._pool_module.register_forward_pre_hook(pool_hook) if self.pool_input
                           else self._pool_module.register_forward_hook(pool_hook))
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
            out = self.pooled("pool", out)
        return feats, out

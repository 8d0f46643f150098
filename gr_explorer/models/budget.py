"""How big a model is, measured before it is built: parameters and FLOPs per image, on the meta device.

Why: a server builds whatever an untrusted user names. One uploaded 1 KB card (`{"type": "timm", "name":
"vit_tiny_patch16_224", "kwargs": {"depth": 20000}}`) tied a server up for 12 minutes at 2 GB before a generic
error, and anyone could repeat it. On the meta device modules have shapes but no memory, yet building 20,000
blocks still takes minutes of Python, so the build runs under hooks that count every parameter as it is
registered and stop it as soon as the parameter budget or the build-time budget is passed (a parameter hook is
process-wide; it counts only on the thread that measures). FLOPs are then counted by torch's FlopCounterMode
over one meta forward pass (backbone and projector) at the model's own input size.

`model_size(spec, budget)` returns the size or raises ResourceError naming the model, the limit and the size
(a lower bound when the build was stopped); it never allocates a weight.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import timm
import torch
from torch.nn.modules import module as nn_module
from torch.utils.flop_counter import FlopCounterMode

from ..errors import ModelSpecError, ResourceError
from ..files import expand_user
from . import zoo_dir
from .card_check import check_card
from .checkpoint import build_model, read_card

_local = threading.local()


@dataclass(frozen=True)
class Budget:
    """Limits of one model: parameters, forward FLOPs per image, and seconds its meta build may take (None: none)."""

    max_params: int | None = None
    max_flops: float | None = None
    max_build_s: float | None = 30.0


@dataclass(frozen=True)
class Size:
    params: int
    flops: float  # one image, forward through backbone and projector, at `input_size`
    input_size: int


class _Stop(Exception):
    """Raised inside a hook to stop a build that passed its budget."""


def _count(module, name, param) -> None:
    state = getattr(_local, "state", None)
    if state is None or param is None:
        return
    state["params"] += param.numel()
    if state["max_params"] is not None and state["params"] > state["max_params"]:
        raise _Stop("params")
    if state["max_s"] is not None and time.perf_counter() - state["t0"] > state["max_s"]:
        raise _Stop("time")


@contextmanager
def _counting(budget: Budget):
    """Count parameters registered on this thread; stop the build past the budget."""
    _local.state = {"params": 0, "max_params": budget.max_params, "max_s": budget.max_build_s,
                    "t0": time.perf_counter()}
    handle = nn_module.register_module_parameter_registration_hook(_count)
    try:
        yield _local.state
    finally:
        handle.remove()
        _local.state = None


def _build(spec: str):
    """The model of a zoo:, file: or timm: spec on the meta device (no weights read, nothing downloaded)."""
    scheme, _, rest = spec.partition(":")
    if scheme == "timm":
        name = rest.strip()
        if not timm.is_model(name) and not timm.is_model(name.split(".")[0]):
            raise ModelSpecError(f"Unknown timm model {name!r}.")
        with torch.device("meta"):
            module = timm.create_model(name, pretrained=False, num_classes=0)
        size = int((getattr(module, "pretrained_cfg", None) or {}).get("input_size", (3, 224, 224))[-1])
        return module, size
    if scheme in ("zoo", "file"):
        path = zoo_dir() / f"{rest}.safetensors" if scheme == "zoo" else expand_user(rest, "checkpoint file",
                                                                                      ModelSpecError)
        card = read_card(path)
        check_card(card, repr(spec))
        with torch.device("meta"):
            model = build_model(card, name=spec)
        return model, model.preprocessing.input_size
    raise ModelSpecError(f"The size of {spec!r} cannot be measured before it is built. Valid: zoo:, file: or timm: "
                         "models.")


def model_size(spec: str, budget: Budget = Budget()) -> Size:
    """Parameters and FLOPs per image of `spec`, or ResourceError when it passes `budget` (checked while building)."""
    try:
        with _counting(budget) as state:
            module, size = _build(spec)
    except _Stop as e:
        if str(e) == "params":
            raise ResourceError(f"{spec} has more than {budget.max_params:,} parameters (at least {state['params']:,} "
                                f"before its build was stopped), beyond this server's limit. Valid: a model of at most "
                                f"{budget.max_params:,} parameters.") from None
        raise ResourceError(f"{spec} took more than {budget.max_build_s:g} s just to lay out its "
                            f"{state['params']:,}+ parameters (no weights yet), beyond this server's limit. Valid: a "
                            f"smaller architecture.") from None
    params = sum(p.numel() for p in module.parameters())
    if budget.max_params is not None and params > budget.max_params:
        raise ResourceError(f"{spec} has {params:,} parameters, beyond this server's limit of {budget.max_params:,}. "
                            f"Valid: a model of at most {budget.max_params:,} parameters.")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(torch.empty(1, 3, size, size, device="meta"))
    flops = float(counter.get_total_flops())
    if budget.max_flops is not None and flops > budget.max_flops:
        raise ResourceError(f"{spec} needs {flops / 1e9:,.1f} GFLOPs per {size} px image, beyond this server's limit of "
                            f"{budget.max_flops / 1e9:,.1f} GFLOPs. Valid: a smaller model or input size.")
    return Size(int(params), flops, size)


__all__ = ["Budget", "Size", "model_size"]

"""Models: load a model spec (`zoo:`, `timm:`, `file:`) or wrap your own nn.Module."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

from torch import nn

from ..errors import ModelSpecError, did_you_mean
from ..files import expand_user
from ..names import READOUTS, SCHEMES
from .adapters import load_release
from .backbones import HookBackbone, IntermediatesBackbone
from .checkpoint import (
    build_model,
    is_release,
    load_checkpoint,
    read_card,
    save_checkpoint,
)
from .cuts import Column, Cut
from .model import POOL, Model
from .pixels import pixels_model
from .preprocessing import Preprocessing
from .projector import build_projector, group_into_blocks, parse_projector_spec
from .pyspec import load_py_model
from .random_init import random_init, random_inits, random_label
from .readout import check_token_readout
from .resnet_small import SmallResNet
from .timm_models import load_timm

#: model spec schemes (names.SCHEMES): `custom:<name>` records a Model object built in Python (wrap_module) in
#: run.json; `py:<file.py>:<function>` builds one from a Python file (models/pyspec.py)

__all__ = ["SCHEMES", "Column", "Cut", "Model", "Preprocessing", "SmallResNet", "POOL", "READOUTS", "load_model", "wrap_module",
           "list_zoo", "zoo_dir", "build_model", "pixels_model", "random_init", "random_inits", "random_label", "build_projector",
           "parse_projector_spec", "load_checkpoint", "save_checkpoint", "read_card", "group_into_blocks", "model_for_cuts"]


def zoo_dir() -> Path:
    """The shipped checkpoints: `pretrained/` at the repository root (override with GR_EXPLORER_ZOO)."""
    return Path(os.environ.get("GR_EXPLORER_ZOO") or Path(__file__).resolve().parents[2] / "pretrained")


def list_zoo() -> dict[str, str]:
    """{name: one-line description} of every shipped checkpoint."""
    out = {}
    d = zoo_dir()
    for p in sorted(d.glob("*.safetensors")) if d.exists() else []:
        try:
            card = read_card(p)
        except Exception:  # a broken card should not hide the others; loading it reports the problem
            card = {}
        out[p.stem] = str(card.get("description", ""))
    return out


def load_model(spec: str, *, weights: str | None = None, readout: str | None = None, seed: int = 0,
               stages: Sequence[str] | None = None, projector: str | None = None) -> Model:
    """`zoo:<name>`, `timm:<name>[.<tag>]` or `file:<path>` -> Model with ordered cuts.

    `weights` applies to timm models (pretrained, random, or a file); random weights are drawn from `seed`.
    `readout` (ViT tokens: cls, mean, cls+mean): None keeps the checkpoint card's, or cls.
    `stages` / `projector` name the cuts of a `py:` model (see pyspec).
    """
    if isinstance(spec, Model):
        return spec
    scheme, _, rest = str(spec).partition(":")
    if not rest or scheme not in SCHEMES:
        raise ModelSpecError(f"Bad model spec {spec!r}. Valid forms: zoo:<name> (one of: {', '.join(list_zoo()) or 'none shipped'}), "
                             "timm:<name>[.<tag>] (e.g. timm:resnet18.a1_in1k), file:<path to .safetensors>, "
                             "py:<file.py>:<function>.")
    check_token_readout(readout)
    if scheme == "py":
        return load_py_model(rest, weights=weights, stages=stages, projector=projector, readout=readout, seed=seed)
    if scheme == "custom":
        raise ModelSpecError(f"{spec!r} names a model built in Python (wrap_module); it cannot be loaded from a spec. "
                             "Pass the Model object itself (sweep(model, ...) / run_sweep(config, models=[model])).")
    if scheme in ("zoo", "file"):
        if weights not in (None, "", "pretrained", "random"):
            raise ModelSpecError(f"weights={weights!r} applies to timm models only; {spec!r} carries its own weights. "
                                 "Valid for zoo: and file: models: pretrained (the checkpoint's weights) or random.")
        if scheme == "zoo":
            zoo = list_zoo()
            if rest not in zoo:
                raise ModelSpecError(f"Unknown zoo model {rest!r}. {did_you_mean(rest, zoo) if zoo else 'No checkpoints in ' + str(zoo_dir()) + '.'}")
            model = load_checkpoint(zoo_dir() / f"{rest}.safetensors", readout=readout, name=spec)
        else:
            path = expand_user(rest, "checkpoint file", ModelSpecError)
            model = (load_release(path, name=spec, readout=readout) if is_release(path)
                     else load_checkpoint(path, readout=readout, name=spec))
        return random_init(model, seed) if weights == "random" else model

    return load_timm(rest, weights=weights, readout=readout or "cls", seed=seed)


def model_for_cuts(spec: str, *, weights: str | None = None, readout: str | None = None, seed: int = 0, **py) -> Model:
    """The model as far as listing its cuts needs: a timm model without `weights` is built on the
    meta device (no download, works offline, dims still exact); other specs load as usual."""
    scheme, _, rest = str(spec).partition(":")
    if scheme == "timm" and rest and weights in (None, ""):
        check_token_readout(readout)
        return load_timm(rest, weights="meta", readout=readout or "cls")
    return load_model(spec, weights=weights, readout=readout, seed=seed, **py)


def wrap_module(backbone: nn.Module, stages: Sequence[str] | None = None, projector: nn.Sequential | None = None, *,
                preprocessing: Preprocessing | None = None, pool: str | None = None, readout: str = "mean",
                num_prefix_tokens: int | None = None, name: str = "custom", weights_source: str = "in-memory module") -> Model:
    """Your own architecture as a Model.

    `stages` names submodules whose outputs become cuts (ignored when the
    backbone has timm's `forward_intermediates`). `pool` names the submodule
    whose output is the pooled backbone feature (e.g. `"avgpool"` of a
    torchvision ResNet, so an `fc` that now holds a projector is not mistaken
    for it); without it, `backbone(x)` must return the pooled representation
    (or a map/tokens that get pooled). `projector` is a Sequential: blocks stay
    blocks, and a flat one (Linear, BN, ReLU, Linear ...) is grouped into
    Linear[+norm][+act] blocks, one cut after each. Pass `preprocessing`: the
    default (32 px, mean/std 0.5) is rarely what your weights expect.
    """
    if preprocessing is None:
        d = Preprocessing()
        warnings.warn(f"wrap_module: no preprocessing given, using the defaults input_size={d.input_size}, mean={d.mean}, "
                      f"std={d.std}, interpolation={d.interpolation!r}; pass preprocessing=Preprocessing(...) with what "
                      "the weights were trained on.", UserWarning, stacklevel=2)
    if projector is not None:
        if not isinstance(projector, nn.Sequential):
            raise ModelSpecError(f"projector must be an nn.Sequential (of layers or of blocks), got {type(projector).__name__}.")
        projector = group_into_blocks(projector.children())
    if stages is None and pool is None and hasattr(backbone, "forward_intermediates"):
        adapter = IntermediatesBackbone(backbone, readout=readout)
    else:
        adapter = HookBackbone(backbone, stages or [], readout=readout, num_prefix_tokens=num_prefix_tokens, pool=pool)
    return Model(adapter, projector, preprocessing, name=name, card={"source": "wrap_module"}, weights_source=weights_source)

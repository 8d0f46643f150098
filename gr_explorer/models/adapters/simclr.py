"""SimCLR-style state dicts, plain or DDP/DataParallel-wrapped (`module.` prefix).

Two public PyTorch SimCLR layouts, optionally inside `{"state_dict": ...}` or
`{"model": ...}` with `arch`/`epoch`/`optimizer` entries:

* sthalles/SimCLR: `backbone.*` is a torchvision ResNet whose `fc` was turned
  into the projector `Sequential(Linear(d, d), ReLU, Linear(d, out_dim))`
  (`backbone.fc.0`, `backbone.fc.2`). `backbone(x)` returns the projector
  output, not the pooled feature: here `pool` is the global average pool.
* Spijkervet/SimCLR (and any `encoder.*`/`backbone.*` + `projector.*` dict):
  a torchvision ResNet with `fc` = Identity, and a flat projector
  (Linear without bias, ReLU, Linear without bias).

Both train on `ToTensor()` images without mean/std normalisation, and neither
records the input size: 32 px is assumed for a 3x3 (CIFAR) stem -- padding 1,
the common CIFAR ResNet -- and 224 px otherwise. Override with --input-size etc.
"""

from __future__ import annotations

from ..preprocessing import Preprocessing
from .common import (
    Release,
    backbone_spec,
    drop_module_prefix,
    has_prefix,
    is_state_dict,
    parse_sequential,
    strip_prefix,
    to_blocks,
)

NAME = "simclr"
TITLE = "SimCLR-style (DDP) state dict: sthalles/SimCLR backbone.fc projector, or encoder/backbone + projector"
BRANCHES: tuple[str, ...] = ()
DEFAULT_BRANCH = None
SOURCES = (
    "sthalles/SimCLR@1848fc9 models/resnet_simclr.py (ResNetSimCLR: backbone.fc = Sequential(Linear, ReLU, fc))",
    "sthalles/SimCLR@1848fc9 simclr.py + utils.py (save_checkpoint dict: epoch, arch, state_dict, optimizer)",
    "sthalles/SimCLR@1848fc9 data_aug/contrastive_learning_dataset.py (ToTensor only: no normalisation)",
    "Spijkervet/SimCLR@2738efa simclr/simclr.py (encoder with fc=Identity, projector Linear(no bias)-ReLU-Linear(no bias))",
    "Spijkervet/SimCLR@2738efa model.py save_model (model.module.state_dict() under DataParallel), "
    "simclr/modules/resnet_hacks.py (CIFAR stem 3x3 stride 1 padding 1, no max-pool)",
)
EXAMPLE = "gr-explorer convert checkpoint_0100.pth.tar --format simclr --input-size 96 --out simclr_stl10.safetensors"

_WRAPPERS = ("state_dict", "model")
_BACKBONES = ("backbone.", "encoder.")
_HEADS = ("projector.", "projection_head.", "head.")


def _sd(obj) -> dict | None:
    for k in _WRAPPERS:
        if isinstance(obj, dict) and is_state_dict(obj.get(k)):
            return drop_module_prefix(obj[k])
    return drop_module_prefix(obj) if is_state_dict(obj) else None


def _layout(sd: dict) -> tuple[str, str] | None:
    """(backbone prefix, head prefix) or None."""
    for b in _BACKBONES:
        if not has_prefix(sd, b):
            continue
        if f"{b}fc.0.weight" in sd:
            return b, f"{b}fc."
        for h in _HEADS:
            if has_prefix(sd, h):
                return b, h
    return None


def match(obj) -> bool:
    sd = _sd(obj)
    return sd is not None and _layout(sd) is not None


def extract(obj, *, arch: str | None = None, branch: str | None = None) -> Release:
    sd = _sd(obj)
    bb, head_prefix = _layout(sd)
    backbone_sd = {k: v for k, v in strip_prefix(sd, bb).items() if not k.startswith("fc.")}
    spec = backbone_spec(backbone_sd, arch=arch, cifar_padding=1)
    blocks, projector_sd = to_blocks(parse_sequential(strip_prefix(sd, head_prefix), "relu", head_prefix.rstrip(".")))
    size = 32 if "stem" in spec else 224
    pre = Preprocessing(input_size=size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), interpolation="bilinear")
    why = (f"SimCLR ports train on ToTensor() without normalisation; input size not recorded in the checkpoint, "
           f"{size} px assumed from the {'3x3 CIFAR' if size == 32 else '7x7 ImageNet'} stem")
    notes = [f"backbone from {bb.rstrip('.')}, projector from {head_prefix.rstrip('.')}"]
    if isinstance(obj, dict) and isinstance(obj.get("arch"), str):
        notes.append(f"release arch: {obj['arch']}")
    return Release(NAME, spec, backbone_sd, blocks, projector_sd, pre, why, "cls", notes=notes)

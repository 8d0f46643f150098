"""Barlow Twins `checkpoint.pth` (facebookresearch/barlowtwins): `{"epoch", "model", "optimizer"}`.

`model` is the DDP state dict of `BarlowTwins`: `module.backbone.*` (torchvision
resnet50, `fc` = Identity), `module.projector.*` (flat: Linear without bias,
BatchNorm1d, ReLU per hidden layer; a last Linear without bias) and
`module.bn.*`, the final BatchNorm1d(affine=False) whose output the
cross-correlation loss sees. That BN (running statistics only) closes the last
block: cuts `proj1`, `proj2` (Linear+BN+ReLU), `proj3` (Linear + affine-free BN).
"""

from __future__ import annotations

from .common import (
    Release,
    backbone_spec,
    drop_module_prefix,
    has_prefix,
    imagenet,
    is_state_dict,
    layer_from_params,
    parse_sequential,
    strip_prefix,
    to_blocks,
)

NAME = "barlow"
TITLE = "Barlow Twins checkpoint.pth (ResNet-50 + 8192-8192-8192 projector + final affine-free BN)"
BRANCHES: tuple[str, ...] = ()
DEFAULT_BRANCH = None
SOURCES = (
    "facebookresearch/barlowtwins@8e8d284 main.py (BarlowTwins module: backbone, projector, bn affine=False; "
    "checkpoint dict; DDP + SyncBatchNorm)",
    "facebookresearch/barlowtwins@8e8d284 evaluate.py (Resize 256 + CenterCrop 224, ImageNet mean/std)",
    "facebookresearch/barlowtwins@8e8d284 hubconf.py (torchvision resnet50 backbone)",
)
EXAMPLE = "gr-explorer convert checkpoint.pth --format barlow --out barlow_rn50.safetensors"


def _model(obj) -> dict | None:
    sd = obj.get("model") if isinstance(obj, dict) else None
    return drop_module_prefix(sd) if is_state_dict(sd) else None


def match(obj) -> bool:
    sd = _model(obj)
    return sd is not None and has_prefix(sd, "backbone.") and has_prefix(sd, "projector.") and "bn.running_mean" in sd


def extract(obj, *, arch: str | None = None, branch: str | None = None) -> Release:
    sd = _model(obj)
    backbone_sd = strip_prefix(sd, "backbone.")
    spec = backbone_spec(backbone_sd, arch=arch)
    layers = parse_sequential(strip_prefix(sd, "projector."), "relu", "projector")
    layers.append(layer_from_params(strip_prefix(sd, "bn."), "relu", "bn"))  # BatchNorm1d(affine=False): no weight, no bias
    blocks, projector_sd = to_blocks(layers)
    return Release(NAME, spec, backbone_sd, blocks, projector_sd, imagenet("bilinear"),
                   "Barlow Twins evaluate.py: Resize(256) + CenterCrop(224), ImageNet mean/std", "cls")

"""VICReg full checkpoints (facebookresearch/vicreg): `{"epoch", "model", "optimizer"}`.

`model` is the DDP state dict of `VICReg`: `module.backbone.*` (VICReg's own
resnet.py: torchvision's ResNet key names; its ConstantPad2d(1) before a
padding-2 conv1 equals torchvision/timm's padding-3 conv1) and
`module.projector.*`, a flat Sequential: Linear(+bias), BatchNorm1d, ReLU per
hidden layer of `--mlp` (8192-8192-8192 for the release), then a Linear
without bias. Cuts: ResNet stages, `pool` (2048-d), `proj1`, `proj2` (Linear+BN+ReLU),
`proj3` (the 8192-d embedding the VICReg loss sees).
"""

from __future__ import annotations

from .common import (
    Release,
    backbone_spec,
    drop_module_prefix,
    has_prefix,
    imagenet,
    is_state_dict,
    parse_sequential,
    strip_prefix,
    to_blocks,
)

NAME = "vicreg"
TITLE = "VICReg full checkpoint (ResNet-50 + 8192-8192-8192 expander)"
BRANCHES: tuple[str, ...] = ()
DEFAULT_BRANCH = None
SOURCES = (
    "facebookresearch/vicreg@4e12602 main_vicreg.py (VICReg module, Projector(), checkpoint dict, DDP + SyncBatchNorm)",
    "facebookresearch/vicreg@4e12602 resnet.py (ResNet: padding layer + conv1 padding 2, Bottleneck, key names)",
    "facebookresearch/vicreg@4e12602 evaluate.py (loads state_dict['model'] minus 'module.backbone.'; "
    "Resize 256 + CenterCrop 224, ImageNet mean/std)",
)
EXAMPLE = "gr-explorer convert resnet50_fullckpt.pth --format vicreg --out vicreg_rn50.safetensors"


def _model(obj) -> dict | None:
    sd = obj.get("model") if isinstance(obj, dict) else None
    return drop_module_prefix(sd) if is_state_dict(sd) else None


def match(obj) -> bool:
    sd = _model(obj)
    if sd is None or not (has_prefix(sd, "backbone.") and has_prefix(sd, "projector.")) or "bn.running_mean" in sd:
        return False
    head = parse_sequential(strip_prefix(sd, "projector."), "relu", "projector")
    linears = [s for s, _ in head if s["type"] == "linear"]
    # VICReg's signature: hidden Linears with bias, the last one without.
    return bool(linears) and not linears[-1]["bias"] and all(s["bias"] for s in linears[:-1])


def extract(obj, *, arch: str | None = None, branch: str | None = None) -> Release:
    sd = _model(obj)
    backbone_sd = strip_prefix(sd, "backbone.")
    spec = backbone_spec(backbone_sd, arch=arch)
    blocks, projector_sd = to_blocks(parse_sequential(strip_prefix(sd, "projector."), "relu", "projector"))
    return Release(NAME, spec, backbone_sd, blocks, projector_sd, imagenet("bilinear"),
                   "VICReg evaluate.py: Resize(256) + CenterCrop(224), ImageNet mean/std", "cls")

"""solo-learn Lightning checkpoints (vturrisi/solo-learn): `state_dict` of a BaseMethod subclass.

Keys: `backbone.*` (torchvision resnet18/50 with `fc` = Identity; on CIFAR the
stem is Conv2d(3, 64, 3, stride 1, padding 2) and no max-pool -- padding 2 as
in solo/methods/base.py; or a timm ViT), `projector.*` (a flat Sequential:
Linear, [BatchNorm1d], ReLU ..., method by method) or, for DINO, `head.mlp.*` +
`head.last_layer.*`. Momentum copies (`momentum_backbone.*`,
`momentum_projector.*`, `momentum_head.*`), the online `classifier.*`,
`predictor.*`, `prototypes.*` and queues are ignored. solo-learn stores its
config in args.json next to the checkpoint, not in it: the dataset (and so the
preprocessing) is inferred from the stem / ViT grid -- CIFAR statistics at 32 px,
ImageNet statistics otherwise; STL-10 models (96 px, CIFAR statistics) need
`--input-size 96 --mean 0.4914,0.4823,0.4466 --std 0.247,0.243,0.261`.
"""

from __future__ import annotations

from ...errors import CheckpointError
from ..preprocessing import Preprocessing
from .common import (
    Release,
    backbone_spec,
    dino_head_layers,
    has_prefix,
    imagenet,
    is_state_dict,
    parse_sequential,
    strip_prefix,
    to_blocks,
)

NAME = "solo"
TITLE = "solo-learn Lightning checkpoint (backbone.*, projector.* or DINO head.*; momentum copies ignored)"
BRANCHES: tuple[str, ...] = ()
DEFAULT_BRANCH = None
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)
SOURCES = (
    "vturrisi/solo-learn@9187ea3 solo/methods/base.py (backbone, fc=Identity, CIFAR conv1 3x3 stride 1 padding 2, "
    "maxpool=Identity, classifier)",
    "vturrisi/solo-learn@9187ea3 solo/methods/{simclr,vicreg,barlow_twins,byol,mocov3,simsiam,nnclr,swav,mocov2plus}.py "
    "(projector Sequentials, momentum_projector)",
    "vturrisi/solo-learn@9187ea3 solo/methods/dino.py (DINOHead mlp + weight-normalised last_layer, momentum_head)",
    "vturrisi/solo-learn@9187ea3 solo/backbones/resnet/resnet.py, solo/backbones/vit/vit.py (torchvision ResNets, timm ViTs)",
    "vturrisi/solo-learn@9187ea3 solo/data/classification_dataloader.py (CIFAR / STL / ImageNet eval transforms)",
    "vturrisi/solo-learn@9187ea3 solo/utils/checkpointer.py (trainer.save_checkpoint; args.json beside it)",
)
EXAMPLE = "gr-explorer convert simclr-cifar10-ep=999.ckpt --format solo --out solo_simclr_c10.safetensors"


def _sd(obj) -> dict | None:
    sd = obj.get("state_dict") if isinstance(obj, dict) else None
    return sd if is_state_dict(sd) else None


def match(obj) -> bool:
    sd = _sd(obj)
    return sd is not None and has_prefix(sd, "backbone.") and not has_prefix(sd, "projection_head.") and \
        (has_prefix(sd, "projector.") or has_prefix(sd, "head.last_layer."))


def extract(obj, *, arch: str | None = None, branch: str | None = None) -> Release:
    sd = _sd(obj)
    backbone_sd = strip_prefix(sd, "backbone.")
    spec = backbone_spec(backbone_sd, arch=arch, cifar_padding=2)
    if has_prefix(sd, "projector."):
        layers = parse_sequential(strip_prefix(sd, "projector."), "relu", "projector")
    elif has_prefix(sd, "head.last_layer."):
        layers = dino_head_layers(strip_prefix(sd, "head."), "head")
    else:  # pragma: no cover - match() requires one of them
        raise CheckpointError("solo-learn checkpoint without projector.* or head.*")
    blocks, projector_sd = to_blocks(layers)
    size = int(spec.get("kwargs", {}).get("img_size", 32 if "stem" in spec else 224))
    if size <= 64:
        pre = Preprocessing(input_size=size, mean=CIFAR_MEAN, std=CIFAR_STD, interpolation="bilinear")
        why = f"solo-learn CIFAR pipeline (inferred from the {size}-px {'stem' if 'stem' in spec else 'ViT grid'}): CIFAR mean/std"
    else:
        pre = imagenet("bilinear", size)
        why = "solo-learn ImageNet pipeline (inferred: no CIFAR stem): Resize(256) + CenterCrop(224), ImageNet mean/std"
    return Release(NAME, spec, backbone_sd, blocks, projector_sd, pre, why, "cls",
                   notes=["momentum copies, classifier and predictor ignored"])

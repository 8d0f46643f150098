"""DINO full checkpoints (facebookresearch/dino): `teacher` + `student` state dicts and `args`.

Each branch is `backbone.*` (a DINO ViT -- timm's key names -- or a torchvision
ResNet with `fc` removed) plus `head.*`, the DINO head: `mlp` (Linear+GELU
hidden layers, optional BN), L2 normalisation, and `last_layer`, a
weight-normalised Linear without bias (`weight_g`/`weight_v`, folded here into
one weight). Student keys carry DDP's `module.` prefix; so does the ResNet-50
teacher (DDP-wrapped for its SyncBatchNorm). The released ResNet-50 head is a
2-layer MLP with hidden width 4096 and a plain `last_layer.weight`
(facebookresearch/dino#189), so the head is read from the weights, not from
main_dino.py's defaults.

Cuts: backbone stages, `pool` (ViT: final norm + CLS token; ResNet: global
average pool), then one cut per head block: `proj1..` the hidden Linear+GELU
blocks, the bottleneck Linear + L2 norm (256-d), and the last layer (65536-d).
"""

from __future__ import annotations

from .common import (
    Release,
    backbone_spec,
    dino_head_layers,
    drop_module_prefix,
    imagenet,
    is_state_dict,
    strip_prefix,
    to_blocks,
)

NAME = "dino"
TITLE = "DINO full checkpoint: teacher/student ViT-S/16, ViT-S/8, ViT-B/16, ViT-B/8, ResNet-50 + DINO head"
BRANCHES = ("teacher", "student")
DEFAULT_BRANCH = "teacher"  # the released backbones and the paper's numbers are the teacher's
SOURCES = (
    "facebookresearch/dino@7c446df main_dino.py (student/teacher construction, DDP wrapping, save_dict keys)",
    "facebookresearch/dino@7c446df vision_transformer.py (VisionTransformer, DINOHead)",
    "facebookresearch/dino@7c446df utils.py (MultiCropWrapper: backbone.fc/head -> Identity)",
    "facebookresearch/dino@7c446df eval_linear.py (Resize 256 bicubic, CenterCrop 224, ImageNet mean/std)",
    "facebookresearch/dino issues #30, #65 (old key names projection_head/prototypes), #189 (ResNet-50 head)",
)
EXAMPLE = "gr-explorer convert dino_deitsmall16_pretrain_full_checkpoint.pth --format dino --out dino_vits16.safetensors"


def match(obj) -> bool:
    return isinstance(obj, dict) and is_state_dict(obj.get("teacher")) and is_state_dict(obj.get("student")) and \
        any(k.split("backbone.")[0] in ("", "module.") for k in obj["teacher"])


def extract(obj, *, arch: str | None = None, branch: str | None = None) -> Release:
    branch = branch or DEFAULT_BRANCH
    sd = drop_module_prefix(obj[branch])
    backbone_sd = strip_prefix(sd, "backbone.")
    spec = backbone_spec(backbone_sd, arch=arch)
    blocks, projector_sd = to_blocks(dino_head_layers(strip_prefix(sd, "head."), f"{branch}.head"))
    notes = [f"{branch} branch of a DINO full checkpoint"]
    return Release(NAME, spec, backbone_sd, blocks, projector_sd, imagenet("bicubic"),
                   "DINO eval_linear.py: Resize(256, bicubic) + CenterCrop(224), ImageNet mean/std", "cls", branch, notes)

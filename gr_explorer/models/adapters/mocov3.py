"""MoCo v3 checkpoints (facebookresearch/moco-v3): `{"epoch", "arch", "state_dict", "optimizer", "scaler"}`.

`state_dict` is DDP's: `module.base_encoder.*`, `module.momentum_encoder.*`,
`module.predictor.*`. The encoder is a torchvision ResNet whose `fc` is the
projector (Linear no bias, BN, ReLU, Linear no bias, BN affine=False) or a timm
ViT whose `head` is the projector (3 layers, same pattern). MoCo v3's
`vit_small` has 12 heads (timm's has 6): the head count comes from `arch`.
The predictor (query branch only) is not part of the cut path. Cuts: backbone
stages, `pool`, one cut per projector block, the last one ending in the
affine-free BN whose output the contrastive loss normalises.
"""

from __future__ import annotations

from ...errors import CheckpointError
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

NAME = "mocov3"
TITLE = "MoCo v3 checkpoint (ResNet-50 or ViT-S/B, base or momentum encoder + projector)"
BRANCHES = ("student", "teacher")  # student = base_encoder, teacher = momentum_encoder
DEFAULT_BRANCH = "student"  # main_lincls.py evaluates the base encoder
SOURCES = (
    "facebookresearch/moco-v3@c349e6e moco/builder.py (MoCo, _build_mlp, MoCo_ResNet fc / MoCo_ViT head projectors)",
    "facebookresearch/moco-v3@c349e6e main_moco.py (save_checkpoint dict: epoch, arch, state_dict, optimizer, scaler)",
    "facebookresearch/moco-v3@c349e6e vits.py (vit_small: 12 heads; sin-cos pos_embed stored as a parameter; vit_conv_*)",
    "facebookresearch/moco-v3@c349e6e main_lincls.py (module.base_encoder. prefix; Resize 256 + CenterCrop 224, ImageNet mean/std)",
)
EXAMPLE = "gr-explorer convert vit-s-300ep.pth.tar --format mocov3 --out mocov3_vits.safetensors"


def _sd(obj) -> dict | None:
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    return drop_module_prefix(sd) if is_state_dict(sd) else None


def match(obj) -> bool:
    sd = _sd(obj)
    return sd is not None and has_prefix(sd, "base_encoder.")


def extract(obj, *, arch: str | None = None, branch: str | None = None) -> Release:
    branch = branch or DEFAULT_BRANCH
    sd = _sd(obj)
    enc = strip_prefix(sd, "momentum_encoder." if branch == "teacher" else "base_encoder.")
    release_arch = str(obj.get("arch", "")) if isinstance(obj, dict) else ""
    if release_arch.startswith("vit_conv"):
        raise CheckpointError(f"MoCo v3 {release_arch} uses a convolutional stem (vits.py ConvStem) that timm does not "
                              "build; only vit_small, vit_base and ResNets are supported.")
    head_key = "head." if has_prefix(enc, "head.") and "patch_embed.proj.weight" in enc else "fc."
    head = strip_prefix(enc, head_key)
    backbone_sd = {k: v for k, v in enc.items() if not k.startswith(head_key)}
    vit = "patch_embed.proj.weight" in backbone_sd
    spec = backbone_spec(backbone_sd, arch=arch, vit_heads=12 if vit else None)  # every MoCo v3 ViT has 12 heads
    blocks, projector_sd = to_blocks(parse_sequential(head, "relu", head_key.rstrip(".")))
    notes = [f"{'momentum' if branch == 'teacher' else 'base'} encoder; the predictor is not included"]
    if release_arch:
        notes.append(f"release arch: {release_arch}")
    return Release(NAME, spec, backbone_sd, blocks, projector_sd, imagenet("bilinear"),
                   "MoCo v3 main_lincls.py: Resize(256) + CenterCrop(224), ImageNet mean/std", "cls", branch, notes)

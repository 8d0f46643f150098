"""Lightning checkpoints of lightly's benchmark models (lightly-ai/lightly benchmarks/imagenet).

`state_dict` holds the LightningModule's attributes: `backbone.*` (torchvision
resnet50 with `fc` = Identity, or `backbone.vit.*` for the ViT benchmarks'
MaskedVisionTransformerTIMM around a timm ViT) and `projection_head.layers.*`,
lightly's ProjectionHead: blocks of Linear (bias only without BN), optional
BatchNorm1d, activation. DINO's head adds `projection_head.last_layer.*`
(weight-normalised, folded) after an L2 normalisation, with GELU hidden
activations; every other lightly head uses ReLU. Momentum/EMA copies
(`teacher_*`, `student_*`, `key_*`), the online classifier and queues are
ignored unless a branch asks for them: `--teacher` reads `teacher_backbone` /
`teacher_projection_head` where they exist (BYOL), and in lightly's DINO the
plain `backbone`/`projection_head` are the teacher; `--student` reads
`student_*` where they exist (DINO).
"""

from __future__ import annotations

from ...errors import CheckpointError
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

NAME = "lightly"
TITLE = "Lightning checkpoint of a lightly benchmark model (backbone.*, projection_head.*)"
BRANCHES = ("teacher", "student")
DEFAULT_BRANCH = None  # `backbone` + `projection_head`, what the benchmark's forward() and evals use
SOURCES = (
    "lightly-ai/lightly@e8d317f benchmarks/imagenet/resnet50/{simclr,vicreg,barlowtwins,byol,dino,mocov2,swav}.py "
    "(attribute names, torchvision resnet50 with fc=Identity, save_hyperparameters)",
    "lightly-ai/lightly@e8d317f benchmarks/imagenet/vitb16/dino.py (MaskedVisionTransformerTIMM(vit=vit_small_patch16_224))",
    "lightly-ai/lightly@e8d317f lightly/models/modules/heads.py (ProjectionHead.layers, bias = not batch_norm, "
    "SimCLR/BYOL/VICReg/BarlowTwins/DINO heads, DINO last_layer weight_norm + L2 normalize)",
    "lightly-ai/lightly@e8d317f lightly/models/modules/masked_vision_transformer_timm.py (vit + mask_token)",
    "lightly-ai/lightly@e8d317f benchmarks/imagenet/resnet50/main.py and vitb16/main.py "
    "(val transform Resize 256 + CenterCrop 224, IMAGENET_NORMALIZE)",
)
EXAMPLE = "gr-explorer convert epoch=99-step=500400.ckpt --format lightly --out lightly_simclr.safetensors"


def _sd(obj) -> dict | None:
    sd = obj.get("state_dict") if isinstance(obj, dict) else None
    return sd if is_state_dict(sd) else None


def match(obj) -> bool:
    sd = _sd(obj)
    return sd is not None and has_prefix(sd, "backbone.") and has_prefix(sd, "projection_head.")


def _prefixes(sd: dict, branch: str | None) -> tuple[str, str]:
    if branch == "teacher" and has_prefix(sd, "teacher_backbone."):
        return "teacher_backbone.", "teacher_projection_head."
    if branch == "student" and has_prefix(sd, "student_backbone."):
        return "student_backbone.", "student_projection_head."
    if branch == "teacher" and not has_prefix(sd, "student_backbone."):
        raise CheckpointError("This lightly checkpoint has no teacher copy (no teacher_backbone.* nor student_backbone.*).")
    if branch == "student" and not has_prefix(sd, "teacher_backbone."):
        raise CheckpointError("This lightly checkpoint has no student copy (no student_backbone.* nor teacher_backbone.*).")
    return "backbone.", "projection_head."


def extract(obj, *, arch: str | None = None, branch: str | None = None) -> Release:
    sd = _sd(obj)
    bb_prefix, head_prefix = _prefixes(sd, branch)
    backbone_sd = strip_prefix(sd, bb_prefix)
    if has_prefix(backbone_sd, "vit."):  # MaskedVisionTransformerTIMM: the timm ViT plus an unused mask token
        backbone_sd = strip_prefix(backbone_sd, "vit.")
    spec = backbone_spec(backbone_sd, arch=arch)
    head = strip_prefix(sd, head_prefix)
    if has_prefix(head, "last_layer."):
        layers = dino_head_layers(head, head_prefix.rstrip("."))
    else:
        layers = parse_sequential(strip_prefix(head, "layers."), "relu", f"{head_prefix}layers")
    blocks, projector_sd = to_blocks(layers)
    notes = [f"backbone from {bb_prefix.rstrip('.')}, head from {head_prefix.rstrip('.')}"]
    hp = obj.get("hyper_parameters")
    if isinstance(hp, dict):
        notes.append("hyper_parameters: " + ", ".join(f"{k}={v}" for k, v in hp.items() if isinstance(v, (int, float, str, bool))))
    return Release(NAME, spec, backbone_sd, blocks, projector_sd, imagenet("bilinear"),
                   "lightly benchmarks main.py val transform: Resize(256) + CenterCrop(224), IMAGENET_NORMALIZE", "cls",
                   branch, notes)

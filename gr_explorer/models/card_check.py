"""Checks of a checkpoint card before anything is built from it.

Why: a card is user input (an upload, a file someone sent). Out-of-range sizes
must become a message naming the field, not a traceback or a 240 GB
allocation, and no card field may make timm open a file (a card must not be
able to probe whether a server path exists). A card without `preprocessing`
loads with a warning that names the defaults it falls back to.
"""

from __future__ import annotations

import math
import warnings

import timm

from ..augment import AugmentConfig
from ..errors import CheckpointError, TrainingError
from ..names import TOKEN_READOUTS
from .preprocessing import Preprocessing
from .projector import ACTS, LAYER_TYPES, NORMS

MAX_WIDTH = 65536  # projector / layer widths (DINO's 65536-d last layer is the largest real one)
MAX_RESNET_WIDTH = 1024
MAX_BLOCKS_PER_STAGE = 64
INPUT_SIZES = (8, 1024)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
#: a CIFAR-style ResNet stem (`architecture.backbone.stem`): field -> (lowest, highest) integer, or bool
STEM_FIELDS = {"kernel_size": (1, 15), "stride": (1, 4), "padding": (0, 7), "maxpool": bool}
MAX_PROJECTOR_BLOCKS = 64
#: projector layers (`architecture.projector.blocks`): type -> field -> what it takes ('width', 'bool', 'eps' or
#: the allowed names); the required fields in LAYER_REQUIRED
LAYER_FIELDS = {"linear": {"in": "width", "out": "width", "bias": "bool", "weight_norm_folded": "bool"},
                "bn": {"dim": "width", "eps": "eps", "affine": "bool"}, "ln": {"dim": "width", "eps": "eps", "affine": "bool"},
                "relu": {}, "gelu": {"approximate": ("none", "tanh")}, "l2norm": {}}
LAYER_REQUIRED = {"linear": ("in", "out"), "bn": ("dim",), "ln": ("dim",)}
#: timm.create_model keyword arguments that read files or fetch weights: never taken from a card.
FORBIDDEN_TIMM_KWARGS = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path", "cache_dir",
                         "pretrained_strict", "features_only")


def _fail(where: str, field: str, value, valid: str) -> CheckpointError:
    return CheckpointError(f"Checkpoint card {where}: {field}={value!r} is invalid. Valid: {valid}.")


def _int_in(v, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_card(card: dict, where: str) -> None:
    """Raise CheckpointError naming the first bad field; warn when preprocessing falls back to defaults."""
    if not isinstance(card, dict):
        raise CheckpointError(f"Checkpoint card {where} must be a JSON object.")
    arch = card.get("architecture")
    if not isinstance(arch, dict) or not isinstance(arch.get("backbone"), dict):
        raise _fail(where, "architecture.backbone", (arch or {}).get("backbone") if isinstance(arch, dict) else arch,
                    "an object such as {\"type\": \"resnet_small\", \"width\": 16, \"depths\": [1, 1, 1, 1]}")
    _check_backbone(arch["backbone"], where)
    _check_projector(arch.get("projector"), where)
    _check_preprocessing(card, where)
    _check_augmentations(card.get("augmentations"), where)
    readout = card.get("readout", "cls")

    if readout not in TOKEN_READOUTS:
        raise _fail(where, "readout", readout, ", ".join(TOKEN_READOUTS))


def _check_backbone(bb: dict, where: str) -> None:
    kind = bb.get("type")
    if kind == "resnet_small":
        width, depths = bb.get("width", 16), bb.get("depths", [1, 1, 1, 1])
        if not _int_in(width, 1, MAX_RESNET_WIDTH):
            raise _fail(where, "architecture.backbone.width", width, f"an integer from 1 to {MAX_RESNET_WIDTH}")
        if not (isinstance(depths, list) and 1 <= len(depths) <= 8 and all(_int_in(d, 1, MAX_BLOCKS_PER_STAGE) for d in depths)):
            raise _fail(where, "architecture.backbone.depths", depths,
                        f"a list of 1 to 8 block counts, each from 1 to {MAX_BLOCKS_PER_STAGE}, e.g. [1, 1, 1, 1]")
    elif kind == "timm":
        name = bb.get("name")
        if not isinstance(name, str) or not timm.is_model(name.split(".")[0]):
            raise _fail(where, "architecture.backbone.name", name, "a timm architecture name, e.g. resnet50 or vit_small_patch16_224")
        kwargs = bb.get("kwargs", {}) or {}
        if not isinstance(kwargs, dict):
            raise _fail(where, "architecture.backbone.kwargs", kwargs, "an object of timm.create_model keyword arguments")
        bad = [k for k in kwargs if k in FORBIDDEN_TIMM_KWARGS or not _plain(kwargs[k])]
        if bad:
            raise _fail(where, f"architecture.backbone.kwargs.{bad[0]}", kwargs[bad[0]],
                        f"architecture keyword arguments with plain values (numbers, strings, lists); "
                        f"not {', '.join(FORBIDDEN_TIMM_KWARGS)}, which would read files")
        _check_stem(bb.get("stem"), where)
    else:
        raise _fail(where, "architecture.backbone.type", kind, "resnet_small, timm")


def _plain(v) -> bool:
    if isinstance(v, (bool, int, float, str)) or v is None:
        return not (isinstance(v, str) and ("/" in v or "\\" in v))  # no paths
    if isinstance(v, (list, tuple)):
        return all(_plain(x) for x in v)
    return False


def _check_projector(p, where: str) -> None:
    if p is None:
        return
    if not isinstance(p, dict):
        raise _fail(where, "architecture.projector", p, "null, {\"spec\": \"512-512-128\", ...} or {\"blocks\": [...]}")
    if "blocks" in p:
        blocks = p["blocks"]
        if not (isinstance(blocks, list) and len(blocks) <= MAX_PROJECTOR_BLOCKS
                and all(isinstance(b, list) and b for b in blocks)):
            raise _fail(where, "architecture.projector.blocks", blocks,
                        f"a list of at most {MAX_PROJECTOR_BLOCKS} blocks, each a non-empty list of layers")
        for i, block in enumerate(blocks):
            for j, layer in enumerate(block):
                _check_layer(layer, f"architecture.projector.blocks[{i}][{j}]", where)
        return
    spec = p.get("spec")
    widths = str(spec).split("-") if spec is not None else []
    if str(spec).strip().lower() not in ("", "none") and not all(w.isdigit() and 1 <= int(w) <= MAX_WIDTH for w in widths):
        raise _fail(where, "architecture.projector.spec", spec, f"'none' or widths from 1 to {MAX_WIDTH} joined by '-', e.g. 512-512-128")

    if p.get("norm", "bn") not in NORMS:
        raise _fail(where, "architecture.projector.norm", p.get("norm"), ", ".join(NORMS))
    if p.get("act", "relu") not in ACTS:
        raise _fail(where, "architecture.projector.act", p.get("act"), ", ".join(ACTS))


def _check_stem(stem, where: str) -> None:
    """A CIFAR-style ResNet stem: a small conv1 (kernel, stride, padding) and whether the max-pool stays."""
    if stem is None:
        return
    field = "architecture.backbone.stem"
    valid = ("an object such as {\"kernel_size\": 3, \"stride\": 1, \"padding\": 1, \"maxpool\": false} ("
             + ", ".join(f"{k} {v[0]}-{v[1]}" for k, v in STEM_FIELDS.items() if isinstance(v, tuple)) + ")")
    if not isinstance(stem, dict) or "kernel_size" not in stem:
        raise _fail(where, field, stem, valid)
    for key, value in stem.items():
        rule = STEM_FIELDS.get(key)
        ok = rule is not None and (isinstance(value, bool) if rule is bool else _int_in(value, *rule))
        if not ok:
            raise _fail(where, f"{field}.{key}", value, valid)


def _check_layer(layer, field: str, where: str) -> None:
    """One projector layer: a known type with its fields, each of the right kind."""
    if not isinstance(layer, dict) or layer.get("type") not in LAYER_TYPES:
        raise _fail(where, f"{field}.type", layer.get("type") if isinstance(layer, dict) else layer,
                    f"one of {', '.join(LAYER_TYPES)}")
    kind = layer["type"]
    fields = LAYER_FIELDS[kind]
    for key in LAYER_REQUIRED.get(kind, ()):
        if key not in layer:
            raise _fail(where, f"{field}.{key}", None, f"an integer from 1 to {MAX_WIDTH} (a {kind} layer needs it)")
    for key, value in layer.items():
        if key == "type":
            continue
        rule = fields.get(key)
        if rule is None:
            valid = f"the fields of a {kind} layer: {', '.join(fields) or 'none'}"
            raise _fail(where, f"{field}.{key}", value, valid)
        if rule == "width":
            ok, valid = _int_in(value, 1, MAX_WIDTH), f"an integer from 1 to {MAX_WIDTH}"
        elif rule == "bool":
            ok, valid = isinstance(value, bool), "true or false"
        elif rule == "eps":
            ok, valid = _finite(value) and 0 < value <= 1, "a number in (0, 1], e.g. 1e-5"
        else:
            ok, valid = value in rule, ", ".join(rule)
        if not ok:
            raise _fail(where, f"{field}.{key}", value, valid)


def _check_augmentations(aug, where: str) -> None:
    """The training augmentations a card records (the invariance diagnostic replays them)."""
    if aug is None:
        return
    names = list(AugmentConfig.__dataclass_fields__)
    if not isinstance(aug, dict) or set(aug) - set(names):
        extra = sorted(set(aug) - set(names)) if isinstance(aug, dict) else []
        raise _fail(where, f"augmentations.{extra[0]}" if extra else "augmentations", aug[extra[0]] if extra else aug,
                    f"an object with the fields {', '.join(names)}")
    try:
        AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in aug.items()})
    except (TrainingError, TypeError, ValueError) as e:
        why = str(e) if isinstance(e, TrainingError) else \
            "Valid: numbers, and pairs of numbers for crop_scale, crop_ratio and blur_sigma."
        raise CheckpointError(f"Checkpoint card {where}: augmentations {aug!r} is invalid: {why}") from None


def _check_preprocessing(card: dict, where: str) -> None:
    pre = card.get("preprocessing")
    if pre is None:
        d = Preprocessing()
        warnings.warn(f"Checkpoint card {where} has no 'preprocessing': using the defaults input_size={d.input_size}, "
                      f"mean={list(d.mean)}, std={list(d.std)}, interpolation={d.interpolation}. Add them to the card "
                      "if the model was trained otherwise.", stacklevel=4)
        return
    if not isinstance(pre, dict):
        raise _fail(where, "preprocessing", pre, "an object with input_size, mean, std, interpolation")
    size = pre.get("input_size", 32)
    if not _int_in(size, *INPUT_SIZES):
        raise _fail(where, "preprocessing.input_size", size, f"an integer from {INPUT_SIZES[0]} to {INPUT_SIZES[1]}")
    for key in ("mean", "std"):
        v = pre.get(key, [0.5, 0.5, 0.5])
        if not (isinstance(v, list) and len(v) == 3 and all(_finite(x) for x in v)):
            raise _fail(where, f"preprocessing.{key}", v, "a list of 3 numbers, one per RGB channel")
        if key == "std" and any(x <= 0 for x in v):
            raise _fail(where, "preprocessing.std", v, "3 positive numbers")
    if pre.get("interpolation", "bilinear") not in INTERPOLATIONS:
        raise _fail(where, "preprocessing.interpolation", pre.get("interpolation"), ", ".join(INTERPOLATIONS))

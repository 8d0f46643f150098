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

from ..errors import CheckpointError
from ..names import TOKEN_READOUTS
from .preprocessing import Preprocessing
from .projector import ACTS, NORMS

MAX_WIDTH = 65536  # projector / layer widths (DINO's 65536-d last layer is the largest real one)
MAX_RESNET_WIDTH = 1024
MAX_BLOCKS_PER_STAGE = 64
INPUT_SIZES = (8, 1024)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
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
        if not isinstance(blocks, list) or not all(isinstance(b, list) and b for b in blocks):
            raise _fail(where, "architecture.projector.blocks", blocks, "a list of blocks, each a non-empty list of layers")
        for i, block in enumerate(blocks):
            for layer in block:
                for key in ("in", "out", "dim"):
                    if isinstance(layer, dict) and key in layer and not _int_in(layer[key], 1, MAX_WIDTH):
                        raise _fail(where, f"architecture.projector.blocks[{i}].{key}", layer[key],
                                    f"an integer from 1 to {MAX_WIDTH}")
        return
    spec = p.get("spec")
    widths = str(spec).split("-") if spec is not None else []
    if str(spec).strip().lower() not in ("", "none") and not all(w.isdigit() and 1 <= int(w) <= MAX_WIDTH for w in widths):
        raise _fail(where, "architecture.projector.spec", spec, f"'none' or widths from 1 to {MAX_WIDTH} joined by '-', e.g. 512-512-128")

    if p.get("norm", "bn") not in NORMS:
        raise _fail(where, "architecture.projector.norm", p.get("norm"), ", ".join(NORMS))
    if p.get("act", "relu") not in ACTS:
        raise _fail(where, "architecture.projector.act", p.get("act"), ", ".join(ACTS))


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

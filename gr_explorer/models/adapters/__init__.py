"""Official SSL releases with their projector heads -> gr-explorer models.

timm and torch.hub ship backbones only; the heads live in the methods' own full
checkpoints. One small module per layout recognises a checkpoint, maps its
backbone onto a timm model and its projector onto gr-explorer blocks (one cut
per block), and names the release's evaluation preprocessing. `load_release`
makes a Model directly (what `file:<checkpoint.pth>` uses); `convert_release`
also returns the card that `gr-explorer convert` writes next to the weights.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ...errors import CheckpointError, ModelSpecError, did_you_mean
from ...hashing import file_digest
from ..checkpoint import FORMAT, assemble
from ..model import Model
from ..projector import describe_blocks
from ..safe_load import safe_torch_load
from . import barlow, dino, lightly, mocov3, simclr, solo, vicreg
from .common import LOAD_WITH_CODE, Release, describe_keys

#: Detection order: most specific layouts first (simclr accepts the most).
LAYOUTS = (dino, mocov3, barlow, vicreg, lightly, solo, simclr)
FORMATS = {m.NAME: m for m in LAYOUTS}

__all__ = ["FORMATS", "LAYOUTS", "Release", "convert_release", "detect_layout", "load_release", "safe_torch_load"]


def detect_layout(obj, path: str = "checkpoint"):
    for m in LAYOUTS:
        if m.match(obj):
            return m
    raise CheckpointError(
        f"{path!r} has no gr-explorer card and matches none of the known layouts (tried: {', '.join(FORMATS)}). "
        f"Its top-level keys: {describe_keys(obj)}. Use `gr-explorer convert --format <layout> --arch <timm name>` "
        "for a known layout with another timm backbone; a backbone-only state dict of a timm model loads with --model "
        "timm:<name> --weights <file>; any other architecture with --model py:<file.py>:<function> --weights <file> "
        "(or wrap_module() in Python).")


def _extract(obj, path: Path, fmt: str, arch: str | None, branch: str | None) -> Release:
    if fmt == "auto":
        layout = detect_layout(obj, str(path))
    elif fmt in FORMATS:
        layout = FORMATS[fmt]
        if not layout.match(obj):
            raise CheckpointError(f"{str(path)!r} is not a {fmt} checkpoint ({layout.TITLE}). Its top-level keys: "
                                  f"{describe_keys(obj)}. Try --format auto.")
    else:
        raise ModelSpecError(f"Unknown checkpoint format {fmt!r}. {did_you_mean(fmt, ['auto', *FORMATS])}")
    if branch is not None and branch not in layout.BRANCHES:
        valid = ", ".join(layout.BRANCHES) or "none (the checkpoint holds one copy)"
        raise ModelSpecError(f"Layout {layout.NAME} has no {branch!r} branch. Valid: {valid}.")
    return layout.extract(obj, arch=arch, branch=branch)


def _json_args(obj) -> dict:
    """The release's saved args (argparse.Namespace), kept as provenance where they are plain values."""
    args = obj.get("args") if isinstance(obj, dict) else None
    items = vars(args) if hasattr(args, "__dict__") else args if isinstance(args, dict) else {}
    out = {}
    for k, v in items.items():
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            v = str(v)
        out[str(k)] = v
    return out


def convert_release(path: str | Path, *, format: str = "auto", arch: str | None = None, branch: str | None = None,
                    preprocessing: dict | None = None, readout: str | None = None, name: str | None = None) -> tuple[Model, dict]:
    """A release checkpoint -> (Model, card). `preprocessing` overrides fields of the release's own."""
    path = Path(path)
    if not path.exists():
        raise ModelSpecError(f"Checkpoint file {str(path)!r} does not exist.")
    obj = safe_torch_load(path)
    rel = _extract(obj, path, format, arch, branch)
    pre = rel.preprocessing
    source = rel.preprocessing_source
    if preprocessing:
        pre = dataclasses.replace(pre, **{k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in preprocessing.items()})
        source = f"user override of {sorted(preprocessing)}; release default: {rel.preprocessing_source}"
    fixed = rel.backbone.get("kwargs", {}).get("img_size")
    if fixed and "input_size" not in (preprocessing or {}):  # a ViT's position embedding fixes its input size
        pre = dataclasses.replace(pre, input_size=int(fixed))
    if fixed and pre.input_size != fixed:
        raise ModelSpecError(f"This ViT's position embedding fixes its input size at {fixed} px; got input size {pre.input_size}.")
    digest = file_digest(path)
    card = {
        "format": FORMAT,
        "name": name or path.stem.split(".")[0],
        "description": f"{rel.layout} release {path.name}{' (' + rel.branch + ')' if rel.branch else ''}: "
                       f"timm:{rel.backbone['name']} + projector {describe_blocks(rel.blocks)}",
        "architecture": {"backbone": rel.backbone,
                         "projector": {"blocks": rel.blocks, "summary": describe_blocks(rel.blocks)} if rel.blocks else None},
        "preprocessing": pre.as_dict(),
        "readout": readout or rel.readout,
        "source": {"file": path.name, "sha256": digest, "layout": rel.layout, "branch": rel.branch,
                   "preprocessing": source, "notes": rel.notes, "args": _json_args(obj),
                   "verified_against": list(FORMATS[rel.layout].SOURCES)},
    }
    weights = {f"backbone.{k}": v for k, v in rel.backbone_sd.items()}
    weights.update({f"projector.{k}": v for k, v in rel.projector_sd.items()})
    try:
        model = assemble(card, weights, name=name or str(path), readout=readout, where=str(path))
    except (CheckpointError, RuntimeError) as e:  # RuntimeError: the head does not fit the backbone's output
        what = str(e) if isinstance(e, CheckpointError) else f"The head does not fit the output of timm:{rel.backbone['name']} ({e})."
        hint = (f"--arch {arch} does not fit these weights; for an architecture timm does not have, {LOAD_WITH_CODE}" if arch
                else "Pass --arch <timm model name> if the backbone is another timm architecture, or --format for another layout.")
        raise CheckpointError(f"{what} Read as layout {rel.layout}. {hint}") from e
    model.weights_source = f"{path.name} sha256:{digest[:12]}"
    return model, card


def load_release(path: str | Path, *, format: str = "auto", arch: str | None = None, branch: str | None = None,
                 readout: str | None = None, name: str | None = None) -> Model:
    """`file:<release.pth>`: the release as a Model, layout auto-detected."""
    return convert_release(path, format=format, arch=arch, branch=branch, readout=readout, name=name)[0]

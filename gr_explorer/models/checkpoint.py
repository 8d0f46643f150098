"""The checkpoint format: `<name>.safetensors` (weights) + `<name>.json` (the card).

Card keys: `format`, `name`, `architecture` ({backbone: {...}, projector: {spec,
norm, act} | {blocks: [[layer, ...], ...]} | null}), `preprocessing`, `readout`,
and free-form provenance: `objective`, `training`, `command`, `dataset`,
`results`, `source` (converted releases). Loading never unpickles code:
safetensors, or `torch.load(weights_only=True)` with a small allow-list of data
types for .pt/.pth files. A .pth without a card is tried as an official SSL
release (see adapters/).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import CheckpointError, ModelSpecError
from ..files import atomic_write
from ..hashing import file_digest
from .backbones import IntermediatesBackbone
from .card_check import check_card
from .model import Model
from .preprocessing import Preprocessing
from .projector import build_projector, build_projector_blocks
from .resnet_small import SmallResNet
from .safe_load import safe_torch_load

FORMAT = "gr-explorer/1"
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar")
BACKBONE_TYPES = ("resnet_small", "timm")


def build_backbone_module(arch: dict) -> torch.nn.Module:
    """Backbone nn.Module (random weights) from the card's `architecture.backbone`."""
    kind = arch.get("type")
    if kind == "resnet_small":
        return SmallResNet(width=int(arch.get("width", 16)), depths=tuple(arch.get("depths", (1, 1, 1, 1))))
    if kind == "timm":
        kwargs = arch.get("kwargs") or {}
        try:
            module = timm.create_model(arch["name"], pretrained=False, num_classes=0, **kwargs)
        except (TypeError, ValueError, KeyError, AssertionError, RuntimeError) as e:  # a keyword timm does not take
            raise CheckpointError(f"timm cannot build {arch['name']!r} with the card's keyword arguments {kwargs}: "
                                  f"{type(e).__name__}: {e}. Valid: keyword arguments that timm's {arch['name']} "
                                  f"accepts.") from None
        if arch.get("stem"):
            _patch_stem(module, arch["stem"], arch["name"])
        return module
    raise CheckpointError(f"Unknown backbone type {kind!r} in the checkpoint card. Valid: {', '.join(BACKBONE_TYPES)}.")


def _patch_stem(module: nn.Module, stem: dict, name: str) -> None:
    """CIFAR-style ResNet stem (small stride-1 conv1, no max-pool), as solo-learn and SimCLR ports train them."""
    c = getattr(module, "conv1", None)
    if not isinstance(c, nn.Conv2d):
        raise CheckpointError(f"The card's architecture.backbone.stem patches a ResNet's conv1, and timm's {name!r} has "
                              "none. Valid: a stem only on ResNet backbones (e.g. resnet18, resnet50).")
    module.conv1 = nn.Conv2d(c.in_channels, c.out_channels, int(stem["kernel_size"]), int(stem.get("stride", 1)),
                             int(stem.get("padding", 1)), bias=False)
    if not stem.get("maxpool", True):
        module.maxpool = nn.Identity()


def build_model(card: dict, name: str | None = None, readout: str | None = None) -> Model:
    """A randomly initialised Model with the card's architecture (weights loaded separately)."""
    check_card(card, repr(name or card.get("name") or "checkpoint"))
    arch = card["architecture"]
    module = build_backbone_module(arch["backbone"])
    backbone = IntermediatesBackbone(module, readout=readout or card.get("readout", "cls"))
    p = arch.get("projector") or {}
    if p.get("blocks"):
        projector = build_projector_blocks(p["blocks"])
    else:
        projector = build_projector(p.get("spec"), backbone_out_dim(module), p.get("norm", "bn"), p.get("act", "relu")) if p else None
    pre = Preprocessing.from_dict(card.get("preprocessing", {}))
    return Model(backbone, projector, pre, name=name or card.get("name", "checkpoint"), card=card,
                 weights_source=card.get("weights_source"), rebuild=lambda: build_model(card, name, readout))


def backbone_out_dim(module: torch.nn.Module) -> int:
    return int(getattr(module, "head_hidden_size", None) or getattr(module, "num_features"))


def save_checkpoint(model: Model, path: str | os.PathLike, card: dict, dtype: str = "float32") -> Path:
    """Write weights and card next to each other, each atomically. Returns the .safetensors path.

    `dtype="float16"` stores floating-point weights at half the size (they load back into float32 modules);
    whatever was measured on the model should be measured on the stored weights.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    card = {"format": FORMAT, "name": path.stem, "preprocessing": model.preprocessing.as_dict(),
            "readout": model.backbone.readout, **card}
    store = {"float32": None, "float16": torch.float16}[dtype]
    tensors = {k: (v.to(store) if store is not None and v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in model.export_state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": FORMAT}))
    atomic_write(path.with_suffix(".json"), json.dumps(card, indent=2, default=str))
    return path


def read_card(path: Path) -> dict:
    card_path = path.with_suffix(".json")
    if not card_path.exists():
        raise CheckpointError(f"Checkpoint {str(path)!r} has no card: expected {str(card_path)!r} next to it "
                              "(gr-explorer checkpoints are <name>.safetensors + <name>.json).")
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"Checkpoint card {str(card_path)!r} is not valid JSON: {e}.") from e
    if not isinstance(card, dict):
        raise CheckpointError(f"Checkpoint card {str(card_path)!r} must hold a JSON object.")
    return card


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from .safetensors, or .pt/.pth with weights_only=True (pickled code is refused, never run)."""
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"Checkpoint {str(path)!r} is corrupt or truncated and cannot be read as safetensors: {e}.") from e
    if path.suffix in TORCH_SUFFIXES:
        obj = safe_torch_load(path)
        if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
            raise CheckpointError(f"Checkpoint {str(path)!r} must hold a dict of tensors (a state dict).")
        return obj
    raise CheckpointError(f"Unsupported checkpoint file {str(path)!r}. Valid: .safetensors (preferred), .pt, .pth, .ckpt, .tar.")


def is_release(path: Path) -> bool:
    """A PyTorch file (.pth, .pt, .ckpt, .tar) without a card: read as an official SSL release (models.adapters)."""
    return path.suffix in TORCH_SUFFIXES and not path.with_suffix(".json").exists()


def load_checkpoint(path: str | os.PathLike, readout: str | None = None, name: str | None = None) -> Model:
    """Model from a checkpoint file (or its card path); weights must match the card exactly.

    (A PyTorch file without a card is an official SSL release: `is_release`, loaded by models.adapters.)
    """
    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    if not path.exists():
        raise ModelSpecError(f"Checkpoint file {str(path)!r} does not exist.")
    card = read_card(path)
    card["weights_source"] = f"{path.name} sha256:{file_digest(path)[:12]}"  # these bytes, not the card's claim
    return assemble(card, read_weights(path), name=name or path.stem, readout=readout, where=str(path))


def assemble(card: dict, weights: dict[str, torch.Tensor], name: str | None = None, readout: str | None = None,
             where: str = "checkpoint") -> Model:
    """Card + flat `backbone.*`/`projector.*` weights -> Model; the weights must fit the card exactly.

    The architecture is built on the meta device and the weights are assigned to
    it, so no time or memory goes into a random init that would be overwritten.
    """
    with torch.device("meta"):
        model = build_model(card, name=name, readout=readout)
    expected = model.export_state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    bad = [k for k in expected if k in weights and tuple(weights[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or bad:
        bb = (card.get("architecture") or {}).get("backbone") or {}
        arch = f"timm:{bb['name']} {bb.get('kwargs') or ''}".strip() if bb.get("type") == "timm" else bb.get("type")
        raise CheckpointError(f"Checkpoint {where!r} does not match its card's architecture ({arch}): "
                              f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                              f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, "
                              f"shape mismatch {bad[:5]}.")
    typed = {k: v.to(expected[k].dtype) for k, v in weights.items()}
    model.backbone.module.load_state_dict(_under(typed, "backbone."), assign=True)
    if model.projector is not None:
        model.projector.load_state_dict(_under(typed, "projector."), assign=True)
    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):  # a non-persistent buffer: build for real
        model = build_model(card, name=name, readout=readout)
        model.backbone.module.load_state_dict(_under(typed, "backbone."))
        if model.projector is not None:
            model.projector.load_state_dict(_under(typed, "projector."))
    model.eval()
    return model


def _under(weights: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}

"""The checkpoint format: `<name>.safetensors` (weights) + `<name>.json` (the card).

Card keys: `format`, `name`, `architecture` ({backbone: {...}, projector: {spec,
norm, act} | null}), `preprocessing`, `readout`, and free-form provenance:
`objective`, `training`, `command`, `dataset`, `results`. Loading never
unpickles: safetensors, or `torch.load(weights_only=True)` for .pt/.pth files.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from ..errors import CheckpointError, ModelSpecError
from .backbones import IntermediatesBackbone
from .model import Model
from .preprocessing import Preprocessing
from .projector import build_projector
from .resnet_small import SmallResNet

FORMAT = "gr-explorer/1"
BACKBONE_TYPES = ("resnet_small", "timm")


def build_backbone_module(arch: dict) -> torch.nn.Module:
    """Backbone nn.Module (random weights) from the card's `architecture.backbone`."""
    kind = arch.get("type")
    if kind == "resnet_small":
        return SmallResNet(width=int(arch.get("width", 16)), depths=tuple(arch.get("depths", (1, 1, 1, 1))))
    if kind == "timm":
        import timm

        return timm.create_model(arch["name"], pretrained=False, num_classes=0, **arch.get("kwargs", {}))
    raise CheckpointError(f"Unknown backbone type {kind!r} in the checkpoint card. Valid: {', '.join(BACKBONE_TYPES)}.")


def build_model(card: dict, name: str | None = None, readout: str | None = None) -> Model:
    """A randomly initialised Model with the card's architecture (weights loaded separately)."""
    arch = card.get("architecture") or {}
    if "backbone" not in arch:
        raise CheckpointError(f"Checkpoint card for {name or card.get('name')!r} has no architecture.backbone.")
    module = build_backbone_module(arch["backbone"])
    backbone = IntermediatesBackbone(module, readout=readout or card.get("readout", "cls"))
    p = arch.get("projector") or {}
    projector = build_projector(p.get("spec"), backbone_out_dim(module), p.get("norm", "bn"), p.get("act", "relu")) if p else None
    pre = Preprocessing.from_dict(card.get("preprocessing", {}))
    return Model(backbone, projector, pre, name=name or card.get("name", "checkpoint"), card=card,
                 rebuild=lambda: build_model(card, name, readout))


def backbone_out_dim(module: torch.nn.Module) -> int:
    return int(getattr(module, "head_hidden_size", None) or getattr(module, "num_features"))


def save_checkpoint(model: Model, path: str | os.PathLike, card: dict) -> Path:
    """Write weights and card next to each other, each atomically. Returns the .safetensors path."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    card = {"format": FORMAT, "name": path.stem, "preprocessing": model.preprocessing.as_dict(),
            "readout": model.backbone.readout, **card}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.export_state_dict().items()}
    _atomic(path, lambda tmp: save_file(tensors, tmp, metadata={"format": FORMAT}))
    _atomic(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(card, indent=2, default=str)))
    return path


def _atomic(dest: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a checkpoint is meant to be shared
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"Checkpoint {str(path)!r} is corrupt or truncated and cannot be read as safetensors: {e}.") from e
    if path.suffix in (".pt", ".pth", ".bin", ".ckpt"):
        import pickle

        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise CheckpointError(
                f"Refused to load {str(path)!r}: it is not a plain weights file (unpickling it would run code or "
                "construct arbitrary objects). Save a state dict of tensors, or convert it to .safetensors."
            ) from e
        except (RuntimeError, EOFError, OSError, ValueError) as e:
            raise CheckpointError(f"Checkpoint {str(path)!r} is corrupt or truncated: {e}.") from e
        if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
            raise CheckpointError(f"Checkpoint {str(path)!r} must hold a dict of tensors (a state dict).")
        return obj
    raise CheckpointError(f"Unsupported checkpoint file {str(path)!r}. Valid: .safetensors (preferred), .pt, .pth.")


def load_checkpoint(path: str | os.PathLike, readout: str | None = None, name: str | None = None) -> Model:
    """Model from a checkpoint file (or its card path); weights must match the card exactly."""
    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    if not path.exists():
        raise ModelSpecError(f"Checkpoint file {str(path)!r} does not exist.")
    card = read_card(path)
    weights = read_weights(path)
    model = build_model(card, name=name or path.stem, readout=readout)
    expected = model.export_state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"Checkpoint {str(path)!r} does not match its card's architecture: "
                              f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                              f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}.")
    bad = [k for k in expected if tuple(weights[k].shape) != tuple(expected[k].shape)]
    if bad:
        raise CheckpointError(f"Checkpoint {str(path)!r}: tensor shapes differ from the card's architecture for {bad[:5]}.")
    back = {k[len("backbone."):]: v for k, v in weights.items() if k.startswith("backbone.")}
    model.backbone.module.load_state_dict(back)
    if model.projector is not None:
        model.projector.load_state_dict({k[len("projector."):]: v for k, v in weights.items() if k.startswith("projector.")})
    model.eval()
    return model

"""What every release adapter shares: unwrapping, prefixes, backbone and head recognition.

An adapter turns a release's state dict into a `Release`: a timm backbone
(name + kwargs, recognised from the weights' own shapes, never guessed from
the file name), the projector as gr-explorer blocks (see projector.py), the
weights renamed to the zoo layout, and the release's evaluation preprocessing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import timm
import torch

from ...errors import CheckpointError
from ..preprocessing import Preprocessing

#: what to do with weights of an architecture that no timm model matches: load them with their own code
LOAD_WITH_CODE = ("load the weights with the code that defines the network: gr-explorer sweep --model "
                  "py:<file.py>:<function> --weights <this file> --stages <submodules to cut at> [--projector <head "
                  "submodule>] (models/pyspec.py), or wrap_module() in Python.")
OWN_CODE = "No timm model has this architecture, so --arch cannot load it; " + LOAD_WITH_CODE
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet(interpolation: str = "bilinear", size: int = 224) -> Preprocessing:
    return Preprocessing(input_size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation=interpolation)


@dataclass
class Release:
    """A recognised checkpoint, ready to become a Model (see adapters.assemble)."""

    layout: str
    backbone: dict                      # card architecture.backbone
    backbone_sd: dict[str, torch.Tensor]
    blocks: list[list[dict]]            # projector blocks (projector.py layer specs)
    projector_sd: dict[str, torch.Tensor]
    preprocessing: Preprocessing
    preprocessing_source: str           # where the numbers come from (the release's eval transform, or a default)
    readout: str = "cls"
    branch: str | None = None
    notes: list[str] = field(default_factory=list)


# -- state dicts ---------------------------------------------------------------
def is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) for k in obj) and \
        sum(torch.is_tensor(v) for v in obj.values()) >= max(1, len(obj) // 2)


def describe_keys(obj, n: int = 12) -> str:
    """Top-level keys (and a few nested state-dict keys) for error messages."""
    if not isinstance(obj, dict):
        return f"a {type(obj).__name__}, not a dict"
    keys = list(obj)
    text = ", ".join(repr(k) for k in keys[:n]) + (" ..." if len(keys) > n else "")
    for k in keys:
        if is_state_dict(obj[k]):
            inner = list(obj[k])
            text += f"; {k!r} holds {len(inner)} tensors, e.g. " + ", ".join(repr(x) for x in inner[:6])
            break
    return text


def strip_prefix(sd: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def drop_module_prefix(sd: dict) -> dict:
    """DataParallel/DDP wrappers prefix every key with `module.`; drop it where present."""
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}


def has_prefix(sd: dict, prefix: str) -> bool:
    return any(k.startswith(prefix) for k in sd)


# -- backbones -----------------------------------------------------------------
_RESNETS = {(False, (2, 2, 2, 2)): "resnet18", (False, (3, 4, 6, 3)): "resnet34", (True, (3, 4, 6, 3)): "resnet50",
            (True, (3, 4, 23, 3)): "resnet101", (True, (3, 8, 36, 3)): "resnet152"}
_VIT_SIZES = {192: ("tiny", 3), 384: ("small", 6), 768: ("base", 12), 1024: ("large", 16)}


def backbone_spec(sd: dict, *, arch: str | None = None, vit_heads: int | None = None, cifar_padding: int = 1) -> dict:
    """Card `architecture.backbone` for a torchvision/timm-named ResNet or ViT state dict.

    Recognised from the weights' shapes; whether they fit exactly is checked when
    the model is assembled (checkpoint.assemble names missing/unexpected keys).
    """
    if "patch_embed.proj.weight" in sd and "blocks.0.attn.qkv.weight" in sd:
        spec = _vit_spec(sd, arch, vit_heads)
    elif "conv1.weight" in sd and "layer1.0.conv1.weight" in sd:
        spec = _resnet_spec(sd, arch, cifar_padding)
    elif arch:
        spec = {"type": "timm", "name": arch, "kwargs": {}}
    else:
        raise CheckpointError("The backbone weights are neither a torchvision/timm ResNet nor a timm/DINO ViT "
                              f"(keys start {', '.join(list(sd)[:5])}). {OWN_CODE}")
    return spec


def _resnet_spec(sd: dict, arch: str | None, cifar_padding: int) -> dict:
    bottleneck = "layer1.0.conv3.weight" in sd
    depths = tuple(len({k.split(".")[1] for k in sd if k.startswith(f"layer{i}.")}) for i in range(1, 5))
    name = arch or _RESNETS.get((bottleneck, depths))
    width = sd["conv1.weight"].shape[0]
    if name is None or (arch is None and width != 64):
        raise CheckpointError(f"ResNet with {'bottleneck' if bottleneck else 'basic'} blocks {list(depths)} and a "
                              f"{width}-channel stem is not one of {', '.join(sorted(set(_RESNETS.values())))}. {OWN_CODE}")
    spec = {"type": "timm", "name": name, "kwargs": {}}
    k = sd["conv1.weight"].shape[-1]
    if k != 7:  # CIFAR-style stem: small stride-1 conv and no max-pool (cannot be read from weights: padding per layout)
        spec["stem"] = {"kernel_size": int(k), "stride": 1, "padding": int(cifar_padding), "maxpool": False}
    return spec


def _vit_spec(sd: dict, arch: str | None, vit_heads: int | None) -> dict:
    embed, _, p, _ = sd["patch_embed.proj.weight"].shape
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    prefix = 1 if "cls_token" in sd else 0
    n = sd["pos_embed"].shape[1] - prefix
    grid = int(round(math.sqrt(n)))
    if grid * grid != n:
        raise CheckpointError(f"ViT position embedding has {n} patch positions, not a square grid.")
    kwargs: dict = {"img_size": grid * p}
    if arch:
        name = arch
    else:
        if embed not in _VIT_SIZES:
            raise CheckpointError(f"ViT with width {embed} is not tiny/small/base/large (192/384/768/1024). {OWN_CODE}")
        size, heads = _VIT_SIZES[embed]

        name = f"vit_{size}_patch{p}_224"
        if not timm.is_model(name):
            name, kwargs["patch_size"] = f"vit_{size}_patch16_224", int(p)
        if depth != (24 if size == "large" else 12):
            kwargs["depth"] = depth
        if vit_heads and vit_heads != heads:
            kwargs["num_heads"] = int(vit_heads)
        hidden = sd["blocks.0.mlp.fc1.weight"].shape[0]
        if hidden != 4 * embed:
            kwargs["mlp_ratio"] = hidden / embed
        if "blocks.0.attn.qkv.bias" not in sd:
            kwargs["qkv_bias"] = False
    if arch and vit_heads:
        kwargs["num_heads"] = int(vit_heads)
    return {"type": "timm", "name": name, "kwargs": kwargs}


# -- heads -----------------------------------------------------------------------
def fold_weight_norm(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """nn.utils.weight_norm (dim=0): weight = g * v / ||v||, the norm taken per output row."""
    norm = v.flatten(1).norm(dim=1).view(-1, *([1] * (v.ndim - 1)))
    return v * (g / norm)


def layer_from_params(params: dict, act: str, where: str) -> tuple[dict, dict]:
    """One layer's parameters -> (layer spec, params): Linear, BatchNorm1d (affine or not) or a folded weight-norm Linear."""
    if not params:
        return {"type": act}, {}
    g = params.get("weight_g", params.get("parametrizations.weight.original0"))
    v = params.get("weight_v", params.get("parametrizations.weight.original1"))
    if v is not None and g is not None:
        w = fold_weight_norm(g.float(), v.float()).to(v.dtype)
        out = {"weight": w, **({"bias": params["bias"]} if "bias" in params else {})}
        return {"type": "linear", "in": w.shape[1], "out": w.shape[0], "bias": "bias" in params, "weight_norm_folded": True}, out
    w = params.get("weight")
    if "running_mean" in params:
        dim = params["running_mean"].shape[0]
        out = dict(params)
        out.setdefault("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        return {"type": "bn", "dim": int(dim), "affine": w is not None, "eps": 1e-5}, out
    if w is not None and w.ndim == 2:
        return {"type": "linear", "in": w.shape[1], "out": w.shape[0], "bias": "bias" in params}, dict(params)
    raise CheckpointError(f"Head layer {where} with parameters {sorted(params)} is not a Linear, BatchNorm1d or a "
                          "weight-normalised Linear; its type cannot be read from the weights.")


def parse_sequential(sd: dict, act: str, where: str) -> list[tuple[dict, dict]]:
    """A flat nn.Sequential's state dict (`0.weight`, `1.running_mean` ...) -> [(layer spec, params)].

    Parameter-free positions (gaps between indices) are the head's activation
    `act` -- which the weights cannot tell, so each layout names it from its source.
    """
    if not sd:
        return []
    if not all(k.split(".")[0].isdigit() for k in sd):  # a single module (e.g. DINO's 1-layer `mlp`)
        return [layer_from_params(sd, act, where)]
    idx = {int(k.split(".")[0]) for k in sd}
    layers = []
    for i in range(max(idx) + 1):
        params = strip_prefix(sd, f"{i}.")
        layers.append(layer_from_params(params, act, f"{where}.{i}"))
    return layers


def to_blocks(layers: list[tuple[dict, dict]]) -> tuple[list[list[dict]], dict]:
    """[(spec, params)] -> blocks (a new block at each Linear after the first) and the `b.l.param` state dict."""
    blocks: list[list[tuple[dict, dict]]] = []
    for spec, params in layers:
        if spec["type"] == "linear" and blocks and any(s["type"] == "linear" for s, _ in blocks[-1]):
            blocks.append([])
        if not blocks:
            blocks.append([])
        blocks[-1].append((spec, params))
    specs = [[s for s, _ in b] for b in blocks]
    sd = {f"{bi}.{li}.{k}": v for bi, b in enumerate(blocks) for li, (_, params) in enumerate(b) for k, v in params.items()}
    return specs, sd


def dino_head_layers(head: dict, where: str) -> list[tuple[dict, dict]]:
    """DINO head (`mlp.*` + `last_layer.*`): the MLP (GELU), L2 normalisation, the (weight-normalised) last Linear.

    Older DINO releases named them `projection_head.*` / `prototypes.*` (facebookresearch/dino#30, #65).
    """
    mlp = strip_prefix(head, "mlp.") or strip_prefix(head, "projection_head.") or strip_prefix(head, "layers.")
    last = strip_prefix(head, "last_layer.") or strip_prefix(head, "prototypes.")
    if not mlp or not last:
        raise CheckpointError(f"{where} is not a DINO head: expected mlp.* and last_layer.* weights, got {sorted(head)[:6]}.")
    layers = parse_sequential(mlp, "gelu", f"{where}.mlp")
    layers.append(({"type": "l2norm"}, {}))
    spec, params = layer_from_params(last, "gelu", f"{where}.last_layer")
    if spec["type"] != "linear":
        raise CheckpointError(f"{where}.last_layer is not a Linear layer.")
    return layers + [(spec, params)]

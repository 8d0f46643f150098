"""Official SSL release layouts -> gr-explorer models.

Each test writes a synthetic checkpoint in one release's exact layout (the real
architecture at the real key names, random weights, the release's non-tensor
entries, saved with torch.save as the release does), loads or converts it, and
checks the cuts and their dims, then checks the features at every cut against
a reference forward pass written here with plain torch ops on the state dict
(not the adapter's or timm's modules).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from gr_explorer.cli import main
from gr_explorer.errors import CheckpointError, ModelSpecError
from gr_explorer.models import Preprocessing, load_model, model_for_cuts, wrap_module
from gr_explorer.models.adapters import convert_release

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


# -- synthetic release pieces -------------------------------------------------------------------------------------
def _randomise_norms(module: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN/LN statistics and affine parameters, so eval-mode normalisation matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.num_batches_tracked.fill_(1000)
                if m.affine:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5 + 0.5)
                    m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.2 - 0.1)
            elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.2 - 0.1)
    return module


def _resnet(name: str = "resnet50", seed: int = 0, cifar_padding: int | None = None) -> dict:
    """torchvision ResNet (what DINO, VICReg, Barlow, MoCo v3, lightly, solo-learn and SimCLR ports use), fc removed."""
    torch.manual_seed(seed)
    net = getattr(torchvision.models, name)()
    if cifar_padding is not None:  # solo-learn / SimCLR CIFAR stem
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=cifar_padding, bias=False)
        net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return _randomise_norms(net, seed).state_dict()


def _vit(embed: int = 384, patch: int = 16, img: int = 32, depth: int = 12, heads: int = 6, seed: int = 0) -> dict:
    """A DINO/timm ViT state dict (cls_token, pos_embed, patch_embed.proj, blocks.i.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,fc2}, norm)."""
    import timm

    torch.manual_seed(seed)
    net = timm.create_model(f"vit_small_patch{patch}_224", pretrained=False, num_classes=0, img_size=img,
                            embed_dim=embed, depth=depth, num_heads=heads)
    with torch.no_grad():
        net.cls_token.normal_(0, 0.5)
        net.pos_embed.normal_(0, 0.5)
    return _randomise_norms(net, seed).state_dict()


def _prefixed(prefix: str, sd: dict) -> dict:
    return {f"{prefix}{k}": v.clone() for k, v in sd.items()}


def _optimizer_state(n: int = 2) -> dict:
    p = [nn.Parameter(torch.randn(3)) for _ in range(n)]
    opt = torch.optim.AdamW(p, lr=0.1)
    sum(x.sum() for x in p).backward()
    opt.step()
    return opt.state_dict()


def _x(n: int = 2, size: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# -- independent reference forward passes (plain torch ops on the state dict) ---------------------------------------
def _bn(x, sd, p, eps=1e-5):
    return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd.get(f"{p}.weight"), sd.get(f"{p}.bias"),
                        False, 0.0, eps)


def ref_resnet(sd: dict, x: torch.Tensor, cifar_padding: int | None = None) -> dict:
    out = {}
    if cifar_padding is None:
        h = F.relu(_bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), sd, "bn1"))
    else:
        h = F.relu(_bn(F.conv2d(x, sd["conv1.weight"], stride=1, padding=cifar_padding), sd, "bn1"))
    out["act1"] = h.mean((2, 3))
    if cifar_padding is None:
        h = F.max_pool2d(h, 3, 2, 1)
    for li in range(1, 5):
        for bi in sorted({int(k.split(".")[1]) for k in sd if k.startswith(f"layer{li}.")}):
            p, stride = f"layer{li}.{bi}", 2 if li > 1 and bi == 0 else 1
            if f"{p}.conv3.weight" in sd:  # bottleneck, stride on the 3x3 conv (torchvision)
                y = F.relu(_bn(F.conv2d(h, sd[f"{p}.conv1.weight"]), sd, f"{p}.bn1"))
                y = F.relu(_bn(F.conv2d(y, sd[f"{p}.conv2.weight"], stride=stride, padding=1), sd, f"{p}.bn2"))
                y = _bn(F.conv2d(y, sd[f"{p}.conv3.weight"]), sd, f"{p}.bn3")
            else:
                y = F.relu(_bn(F.conv2d(h, sd[f"{p}.conv1.weight"], stride=stride, padding=1), sd, f"{p}.bn1"))
                y = _bn(F.conv2d(y, sd[f"{p}.conv2.weight"], padding=1), sd, f"{p}.bn2")
            idt = _bn(F.conv2d(h, sd[f"{p}.downsample.0.weight"], stride=stride), sd, f"{p}.downsample.1") \
                if f"{p}.downsample.0.weight" in sd else h
            h = F.relu(y + idt)
        out[f"layer{li}"] = h.mean((2, 3))
    out["pool"] = h.mean((2, 3))
    return out


def ref_vit(sd: dict, x: torch.Tensor, heads: int) -> dict:
    w = sd["patch_embed.proj.weight"]
    t = F.conv2d(x, w, sd["patch_embed.proj.bias"], stride=w.shape[-1]).flatten(2).transpose(1, 2)
    t = torch.cat([sd["cls_token"].expand(len(x), -1, -1), t], 1) + sd["pos_embed"]
    b, n, d = t.shape
    out = {}
    for i in range(len({k.split(".")[1] for k in sd if k.startswith("blocks.")})):
        q = f"blocks.{i}."
        y = F.layer_norm(t, (d,), sd[q + "norm1.weight"], sd[q + "norm1.bias"], 1e-6)
        qkv = F.linear(y, sd[q + "attn.qkv.weight"], sd[q + "attn.qkv.bias"]).view(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        att = ((qkv[0] @ qkv[1].transpose(-2, -1)) * (d // heads) ** -0.5).softmax(-1)
        t = t + F.linear((att @ qkv[2]).transpose(1, 2).reshape(b, n, d), sd[q + "attn.proj.weight"], sd[q + "attn.proj.bias"])
        y = F.layer_norm(t, (d,), sd[q + "norm2.weight"], sd[q + "norm2.bias"], 1e-6)
        t = t + F.linear(F.gelu(F.linear(y, sd[q + "mlp.fc1.weight"], sd[q + "mlp.fc1.bias"])), sd[q + "mlp.fc2.weight"], sd[q + "mlp.fc2.bias"])
        out[f"blocks.{i}"] = t[:, 0]
    out["pool"] = F.layer_norm(t, (d,), sd["norm.weight"], sd["norm.bias"], 1e-6)[:, 0]
    return out


def _lin(h, sd, p):
    return F.linear(h, sd[f"{p}.weight"], sd.get(f"{p}.bias"))


def _assert_features(model, ref: dict, x: torch.Tensor):
    with torch.no_grad():
        got = model.forward_cuts(x)
    assert set(got) == set(ref), (sorted(got), sorted(ref))
    for name, want in ref.items():
        scale = float(want.abs().max()) or 1.0
        torch.testing.assert_close(got[name], want, rtol=1e-4, atol=1e-4 * scale, msg=name)


# -- DINO ------------------------------------------------------------------------------------------------------------
def _dino_head(in_dim: int, hidden: int, bottleneck: int, out_dim: int, nlayers: int = 3, use_bn: bool = False,
               weight_norm: bool = True, seed: int = 0) -> dict:
    """DINOHead as in dino/vision_transformer.py: mlp (Linear, [BN], GELU ..., Linear) + last_layer (weight-normalised)."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden)] + ([nn.BatchNorm1d(hidden)] if use_bn else []) + [nn.GELU()]
    for _ in range(nlayers - 2):
        layers += [nn.Linear(hidden, hidden)] + ([nn.BatchNorm1d(hidden)] if use_bn else []) + [nn.GELU()]
    layers.append(nn.Linear(hidden, bottleneck))
    mlp = _randomise_norms(nn.Sequential(*layers), seed)
    last = nn.Linear(bottleneck, out_dim, bias=False)
    if weight_norm:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            last = nn.utils.weight_norm(last)
        with torch.no_grad():
            last.weight_g.uniform_(0.5, 2.0)  # a learned g (norm_last_layer=False) must be folded in too
    return {**_prefixed("mlp.", mlp.state_dict()), **_prefixed("last_layer.", last.state_dict())}


def _ref_dino_head(head: dict, h: torch.Tensor) -> dict:
    out, i, k = {}, 0, 1
    idx = sorted({int(key.split(".")[1]) for key in head if key.startswith("mlp.")})
    while i <= max(idx):
        h = _lin(h, head, f"mlp.{i}")
        i += 1
        if f"mlp.{i}.running_mean" in head:
            h = _bn(h, head, f"mlp.{i}")
            i += 1
        if i <= max(idx):  # GELU sits at the next index
            h = F.gelu(h)
            i += 1
            out[f"proj{k}"] = h
            k += 1
    h = F.normalize(h, dim=-1)
    out[f"proj{k}"] = h
    if "last_layer.weight_v" in head:
        v, g = head["last_layer.weight_v"], head["last_layer.weight_g"]
        w = g * v / v.norm(dim=1, keepdim=True)
    else:
        w = head["last_layer.weight"]
    out[f"proj{k + 1}"] = h @ w.T
    return out


def _dino_checkpoint(path: Path, backbone: dict, head: dict, teacher_module_prefix: bool) -> Path:
    teacher = {**_prefixed("backbone.", backbone), **_prefixed("head.", head)}
    student = {f"module.{k}": v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v.clone() for k, v in teacher.items()}
    if teacher_module_prefix:  # the ResNet-50 teacher is DDP-wrapped for its SyncBatchNorm (main_dino.py)
        teacher = {f"module.{k}": v for k, v in teacher.items()}
    args = argparse.Namespace(arch="vit_small", patch_size=16, out_dim=128, norm_last_layer=False, use_bn_in_head=False,
                              global_crops_scale=(0.4, 1.0), lr=0.0005, output_dir=Path("/tmp/dino_out"), seed=0, dist_url="env://")
    torch.save({"student": student, "teacher": teacher, "optimizer": _optimizer_state(), "epoch": 100, "args": args,
                "dino_loss": {"center": torch.randn(1, 128)},
                "fp16_scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 7}},
               path)
    return path


def test_dino_vits16_teacher_and_student(tmp_path):
    backbone = _vit()
    head = _dino_head(384, 64, 16, 128)
    path = _dino_checkpoint(tmp_path / "dino_deitsmall16_pretrain_full_checkpoint.pth", backbone, head, False)
    model = load_model(f"file:{path}")  # auto-detected, teacher by default
    assert model.cut_names == [f"blocks.{i}" for i in range(12)] + ["pool", "proj1", "proj2", "proj3", "proj4"]
    assert [c.dim for c in model.cuts] == [384] * 13 + [64, 64, 16, 128]
    assert [c.part for c in model.cuts] == ["backbone"] * 13 + ["projector"] * 4
    assert model.preprocessing == Preprocessing(32, *IMAGENET, "bicubic")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert model.weights_source == f"{path.name} sha256:{digest[:12]}"
    x = _x()
    ref = ref_vit(backbone, x, heads=6)
    ref.update(_ref_dino_head(head, ref["pool"]))
    _assert_features(model, ref, x)

    student, card = convert_release(path, format="dino", branch="student")
    sd = torch.load(path, weights_only=False)["student"]  # our own file: reading it back for the reference is safe
    s_back = {k[len("module.backbone."):]: v for k, v in sd.items() if k.startswith("module.backbone.")}
    s_head = {k[len("module.head."):]: v for k, v in sd.items() if k.startswith("module.head.")}
    ref = ref_vit(s_back, x, heads=6)
    ref.update(_ref_dino_head(s_head, ref["pool"]))
    _assert_features(student, ref, x)
    assert card["source"]["branch"] == "student" and card["source"]["args"]["arch"] == "vit_small"
    assert card["source"]["args"]["output_dir"] == "/tmp/dino_out"
    assert card["architecture"]["projector"]["summary"] == "384 -> [64 gelu] -> [64 gelu] -> [16 l2norm] -> [128]"


def test_dino_resnet50_released_head(tmp_path):
    # The released ResNet-50 head (facebookresearch/dino#189): 2-layer MLP, plain last_layer.weight; here with BN too.
    backbone = _resnet("resnet50")
    head = _dino_head(2048, 64, 16, 96, nlayers=2, use_bn=True, weight_norm=False)
    path = _dino_checkpoint(tmp_path / "dino_resnet50_pretrain_full_checkpoint.pth", backbone, head, True)
    model = load_model(f"file:{path}")
    assert model.cut_names == ["act1", "layer1", "layer2", "layer3", "layer4", "pool", "proj1", "proj2", "proj3"]
    assert [c.dim for c in model.cuts] == [64, 256, 512, 1024, 2048, 2048, 64, 16, 96]
    x = _x(2, 64)
    ref = ref_resnet(backbone, x)
    ref.update(_ref_dino_head(head, ref["pool"]))
    _assert_features(model.eval(), ref, x)
    assert model.card["architecture"]["backbone"]["name"] == "resnet50"


@pytest.mark.slow
def test_dino_vits16_release_sizes(tmp_path):
    """The real release shapes: ViT-S/16 at 224 px, head 2048-2048-256 + the 65536-d weight-normalised last layer."""
    backbone = _vit(img=224)
    head = _dino_head(384, 2048, 256, 65536)
    path = _dino_checkpoint(tmp_path / "dino_full.pth", backbone, head, False)
    out = tmp_path / "dino_vits16.safetensors"
    assert main(["convert", str(path), "--out", str(out)]) == 0
    model = load_model(f"file:{out}")
    assert [c.dim for c in model.cuts][-5:] == [384, 2048, 2048, 256, 65536]
    assert model.preprocessing.input_size == 224
    x = _x(2, 224)
    ref = ref_vit(backbone, x, heads=6)
    ref.update(_ref_dino_head(head, ref["pool"]))
    _assert_features(model, ref, x)


# -- VICReg / Barlow Twins -------------------------------------------------------------------------------------------
def _vicreg_projector(widths: list[int], seed: int = 0) -> nn.Sequential:
    """main_vicreg.py Projector(): Linear+BN+ReLU per hidden layer, last Linear without bias."""
    torch.manual_seed(seed)
    layers, f = [], [2048] + widths
    for i in range(len(f) - 2):
        layers += [nn.Linear(f[i], f[i + 1]), nn.BatchNorm1d(f[i + 1]), nn.ReLU(True)]
    layers.append(nn.Linear(f[-2], f[-1], bias=False))
    return _randomise_norms(nn.Sequential(*layers), seed)


def _ref_mlp(head: dict, h: torch.Tensor, n_linear: int, final_bn: dict | None = None) -> dict:
    """Flat Linear, BN, ReLU, ... Linear head (indices 0,1,3,4,6 ...) applied by hand, one output per block."""
    out = {}
    for j in range(n_linear):
        h = _lin(h, head, f"{3 * j}")
        if j < n_linear - 1:
            h = F.relu(_bn(h, head, f"{3 * j + 1}"))
        out[f"proj{j + 1}"] = h
    if final_bn is not None:
        out[f"proj{n_linear}"] = F.batch_norm(h, final_bn["running_mean"], final_bn["running_var"], None, None, False, 0.0, 1e-5)
    return out


@pytest.mark.parametrize("widths", [pytest.param([96, 96, 96], id="small"),
                                    pytest.param([8192, 8192, 8192], id="release", marks=pytest.mark.slow)])
def test_vicreg_full_checkpoint(tmp_path, widths):
    backbone = _resnet("resnet50")
    proj = _vicreg_projector(widths)
    model_sd = {**_prefixed("module.backbone.", backbone), **_prefixed("module.projector.", proj.state_dict())}
    path = tmp_path / "resnet50_fullckpt.pth"
    torch.save({"epoch": 1000, "model": model_sd, "optimizer": _optimizer_state()}, path)
    model = load_model(f"file:{path}")
    assert model.card["source"]["layout"] == "vicreg"
    assert model.cut_names == ["act1", "layer1", "layer2", "layer3", "layer4", "pool", "proj1", "proj2", "proj3"]
    assert [c.dim for c in model.cuts][-4:] == [2048] + widths
    assert model.preprocessing == Preprocessing(224, *IMAGENET, "bilinear")
    x = _x(2, 64)
    ref = ref_resnet(backbone, x)
    ref.update(_ref_mlp(proj.state_dict(), ref["pool"], 3))
    _assert_features(model, ref, x)
    if widths[0] < 1000:  # a wrong --arch is caught, and the error says what to do
        with pytest.raises(CheckpointError, match=r"does not match .*timm:resnet101.*missing \[.backbone.layer3.*--arch"):
            convert_release(path, arch="resnet101")


def test_barlow_twins_checkpoint_with_affine_free_bn(tmp_path):
    backbone = _resnet("resnet50", seed=1)
    torch.manual_seed(1)
    sizes = [2048, 80, 80, 80]
    layers = []
    for i in range(len(sizes) - 2):  # barlowtwins main.py: Linear(bias=False), BN, ReLU ... Linear(bias=False)
        layers += [nn.Linear(sizes[i], sizes[i + 1], bias=False), nn.BatchNorm1d(sizes[i + 1]), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(sizes[-2], sizes[-1], bias=False))
    proj = _randomise_norms(nn.Sequential(*layers), 1)
    bn = _randomise_norms(nn.BatchNorm1d(sizes[-1], affine=False), 2)
    model_sd = {**_prefixed("module.backbone.", backbone), **_prefixed("module.projector.", proj.state_dict()),
                **_prefixed("module.bn.", bn.state_dict())}
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 1000, "model": model_sd, "optimizer": _optimizer_state()}, path)
    out = tmp_path / "barlow.safetensors"
    assert main(["convert", str(path), "--out", str(out)]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["source"]["layout"] == "barlow" and card["source"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert card["architecture"]["projector"]["blocks"][-1] == [
        {"type": "linear", "in": 80, "out": 80, "bias": False}, {"type": "bn", "dim": 80, "affine": False, "eps": 1e-5}]
    model = load_model(f"file:{out}")
    assert [c.dim for c in model.cuts][-4:] == [2048, 80, 80, 80]
    x = _x(2, 64)
    ref = ref_resnet(backbone, x)
    ref.update(_ref_mlp(proj.state_dict(), ref["pool"], 3, final_bn=bn.state_dict()))
    _assert_features(model, ref, x)
    assert model.weights_source.startswith("barlow.safetensors sha256:")


# -- lightly ---------------------------------------------------------------------------------------------------------
def _lightning(state_dict: dict, **extra) -> dict:
    """What Lightning's trainer.save_checkpoint writes around a LightningModule's state dict."""
    return {"epoch": 99, "global_step": 500400, "pytorch-lightning_version": "2.4.0", "state_dict": state_dict,
            "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 100, "completed": 99}}}},
            "callbacks": {"EarlyStopping{'monitor': 'train_loss', 'mode': 'min'}": {"wait_count": 0, "stopped_epoch": 0,
                                                                                    "best_score": torch.tensor(1.5), "patience": 10 ** 12}},
            "optimizer_states": [_optimizer_state()], "lr_schedulers": [{"last_epoch": 99, "base_lrs": [0.3], "_step_count": 100}],
            **extra}


def test_lightly_simclr_resnet50(tmp_path):
    backbone = _resnet("resnet50", seed=2)
    torch.manual_seed(2)
    # lightly SimCLRProjectionHead(batch_norm=True): (Linear no bias, BN, ReLU), (Linear no bias, BN)
    head = _randomise_norms(nn.Sequential(nn.Linear(2048, 72, bias=False), nn.BatchNorm1d(72), nn.ReLU(),
                                          nn.Linear(72, 24, bias=False), nn.BatchNorm1d(24)), 2)
    sd = {**_prefixed("backbone.", backbone), **_prefixed("projection_head.layers.", head.state_dict()),
          "online_classifier.classification_head.weight": torch.randn(1000, 2048),
          "online_classifier.classification_head.bias": torch.zeros(1000)}
    path = tmp_path / "epoch=99-step=500400.ckpt"
    torch.save(_lightning(sd, hparams_name="kwargs", hyper_parameters={"batch_size_per_device": 128, "num_classes": 1000,
                                                                        "knn_k": 200, "knn_t": 0.1}), path)
    model = load_model(f"file:{path}")
    assert model.card["source"]["layout"] == "lightly"
    assert [c.dim for c in model.cuts][-3:] == [2048, 72, 24]
    x = _x(2, 64)
    ref = ref_resnet(backbone, x)
    hs = head.state_dict()
    ref["proj1"] = F.relu(_bn(_lin(ref["pool"], hs, "0"), hs, "1"))
    ref["proj2"] = _bn(_lin(ref["proj1"], hs, "3"), hs, "4")
    _assert_features(model, ref, x)


def test_lightly_dino_vit_teacher_and_student(tmp_path):
    teacher_vit, student_vit = _vit(seed=3), _vit(seed=4)
    t_head = _dino_head(384, 48, 16, 64, seed=3)
    s_head = _dino_head(384, 48, 16, 64, seed=4)

    def lightly_head(h):  # lightly DINOProjectionHead: layers.{0,2,4} + last_layer
        return {k.replace("mlp.", "layers."): v for k, v in h.items()}

    sd = {**_prefixed("backbone.vit.", teacher_vit), "backbone.mask_token": torch.zeros(1, 1, 384),
          **_prefixed("projection_head.", lightly_head(t_head)),
          **_prefixed("student_backbone.vit.", student_vit), "student_backbone.mask_token": torch.zeros(1, 1, 384),
          **_prefixed("student_projection_head.", lightly_head(s_head))}
    path = tmp_path / "dino_vit.ckpt"
    torch.save(_lightning(sd, hyper_parameters={"batch_size_per_device": 64, "num_classes": 1000}), path)
    x = _x()
    for branch, vit, head in ((None, teacher_vit, t_head), ("teacher", teacher_vit, t_head), ("student", student_vit, s_head)):
        model, _ = convert_release(path, branch=branch)
        assert [c.dim for c in model.cuts][-5:] == [384, 48, 48, 16, 64]
        ref = ref_vit(vit, x, heads=6)
        ref.update(_ref_dino_head(head, ref["pool"]))
        _assert_features(model, ref, x)


# -- solo-learn ------------------------------------------------------------------------------------------------------
def test_solo_learn_cifar_resnet18_momentum_ignored(tmp_path):
    backbone = _resnet("resnet18", seed=5, cifar_padding=2)
    torch.manual_seed(5)
    # solo/methods/vicreg.py projector: Linear, BN, ReLU, Linear, BN, ReLU, Linear
    proj = _randomise_norms(nn.Sequential(nn.Linear(512, 40), nn.BatchNorm1d(40), nn.ReLU(), nn.Linear(40, 40),
                                          nn.BatchNorm1d(40), nn.ReLU(), nn.Linear(40, 20)), 5)
    sd = {**_prefixed("backbone.", backbone), **_prefixed("projector.", proj.state_dict()),
          **_prefixed("momentum_backbone.", {k: torch.zeros_like(v) for k, v in backbone.items()}),
          "classifier.weight": torch.randn(10, 512), "classifier.bias": torch.zeros(10)}
    path = tmp_path / "vicreg-cifar10-ep=999.ckpt"
    # numpy scalars/arrays, as callbacks and loggers leave them
    torch.save(_lightning(sd, extra_state={"best_acc": np.float64(0.91), "hist": np.arange(3, dtype=np.int64)}), path)
    model = load_model(f"file:{path}")
    assert model.card["source"]["layout"] == "solo"
    assert model.cut_names == ["act1", "layer1", "layer2", "layer3", "layer4", "pool", "proj1", "proj2", "proj3"]
    assert [c.dim for c in model.cuts] == [64, 64, 128, 256, 512, 512, 40, 40, 20]
    assert model.preprocessing == Preprocessing(32, (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261), "bilinear")
    x = _x(2, 32)
    ref = ref_resnet(backbone, x, cifar_padding=2)
    ref.update(_ref_mlp(proj.state_dict(), ref["pool"], 3))
    _assert_features(model, ref, x)


# -- MoCo v3 ---------------------------------------------------------------------------------------------------------
def _moco_mlp(num_layers: int, in_dim: int, mlp_dim: int, out_dim: int, seed: int) -> nn.Sequential:
    """moco/builder.py _build_mlp(last_bn=True)."""
    torch.manual_seed(seed)
    mlp = []
    for i in range(num_layers):
        d1, d2 = in_dim if i == 0 else mlp_dim, out_dim if i == num_layers - 1 else mlp_dim
        mlp.append(nn.Linear(d1, d2, bias=False))
        mlp += [nn.BatchNorm1d(d2), nn.ReLU(inplace=True)] if i < num_layers - 1 else [nn.BatchNorm1d(d2, affine=False)]
    return _randomise_norms(nn.Sequential(*mlp), seed)


def test_mocov3_vit_small_has_12_heads(tmp_path):
    base, momentum = _vit(heads=12, seed=6), _vit(heads=12, seed=7)
    head = _moco_mlp(3, 384, 56, 24, seed=6)
    predictor = _moco_mlp(2, 24, 56, 24, seed=8)
    sd = {**_prefixed("module.base_encoder.", base), **_prefixed("module.base_encoder.head.", head.state_dict()),
          **_prefixed("module.momentum_encoder.", momentum),
          **_prefixed("module.momentum_encoder.head.", _moco_mlp(3, 384, 56, 24, seed=7).state_dict()),
          **_prefixed("module.predictor.", predictor.state_dict())}
    path = tmp_path / "vit-s-300ep.pth.tar"
    torch.save({"epoch": 300, "arch": "vit_small", "state_dict": sd, "optimizer": _optimizer_state(),
                "scaler": {"scale": 32768.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 3}},
               path)
    model = load_model(f"file:{path}")
    assert model.card["source"]["layout"] == "mocov3" and model.card["architecture"]["backbone"]["kwargs"]["num_heads"] == 12
    assert [c.dim for c in model.cuts][-4:] == [384, 56, 56, 24]
    x = _x()
    ref = ref_vit(base, x, heads=12)
    hs = head.state_dict()
    ref["proj1"] = F.relu(_bn(_lin(ref["pool"], hs, "0"), hs, "1"))
    ref["proj2"] = F.relu(_bn(_lin(ref["proj1"], hs, "3"), hs, "4"))
    ref["proj3"] = _bn(_lin(ref["proj2"], hs, "6"), hs, "7")  # BatchNorm1d(affine=False)
    _assert_features(model, ref, x)
    # With timm's default 6 heads the numbers would differ: the head count is not cosmetic.
    assert not torch.allclose(ref_vit(base, x, heads=6)["pool"], ref["pool"], atol=1e-3)


# -- SimCLR ports ----------------------------------------------------------------------------------------------------
def test_simclr_sthalles_ddp_backbone_fc_projector(tmp_path):
    """The user story: a torchvision ResNet whose fc became the projector; `pool` must be the pooled feature, not fc."""
    torch.manual_seed(9)
    net = torchvision.models.resnet18(num_classes=32)
    dim = net.fc.in_features
    net.fc = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), net.fc)  # models/resnet_simclr.py
    _randomise_norms(net, 9)
    sd = {f"module.backbone.{k}": v for k, v in net.state_dict().items()}  # DDP-wrapped ResNetSimCLR
    path = tmp_path / "checkpoint_0100.pth.tar"
    torch.save({"epoch": 100, "arch": "resnet18", "state_dict": sd, "optimizer": _optimizer_state()}, path)
    model = load_model(f"file:{path}")
    assert model.card["source"]["layout"] == "simclr"
    assert model.cut_names == ["act1", "layer1", "layer2", "layer3", "layer4", "pool", "proj1", "proj2"]
    assert [c.dim for c in model.cuts][-3:] == [512, 512, 32]
    assert model.preprocessing == Preprocessing(224, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "bilinear")  # ToTensor() only
    x = _x(2, 64)
    bb = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    ref = ref_resnet(bb, x)
    fc = {k[3:]: v for k, v in net.state_dict().items() if k.startswith("fc.")}
    ref["proj1"] = F.relu(_lin(ref["pool"], fc, "0"))
    ref["proj2"] = _lin(ref["proj1"], fc, "2")
    _assert_features(model, ref, x)
    net.eval()
    with torch.no_grad():
        assert torch.allclose(net(x), model.forward_cuts(x, ["proj2"])["proj2"], atol=1e-4)  # backbone(x) is proj2, not pool


def test_simclr_spijkervet_encoder_projector_cifar_stem(tmp_path):
    backbone = _resnet("resnet18", seed=10, cifar_padding=1)
    torch.manual_seed(10)
    proj = nn.Sequential(nn.Linear(512, 512, bias=False), nn.ReLU(), nn.Linear(512, 64, bias=False))  # simclr/simclr.py
    path = tmp_path / "checkpoint_100.tar"
    torch.save({**_prefixed("encoder.", backbone), **_prefixed("projector.", proj.state_dict())}, path)
    model = load_model(f"file:{path}")
    assert model.preprocessing.input_size == 32 and model.card["architecture"]["backbone"]["stem"]["padding"] == 1
    x = _x(2, 32)
    ref = ref_resnet(backbone, x, cifar_padding=1)
    ps = proj.state_dict()
    ref["proj1"] = F.relu(_lin(ref["pool"], ps, "0"))
    ref["proj2"] = _lin(ref["proj1"], ps, "2")
    _assert_features(model, ref, x)


# -- safety, detection and the CLI -----------------------------------------------------------------------------------
class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_release_whose_pickle_runs_code_is_refused_and_never_run(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / "dino_full.pth"
    torch.save({"teacher": {"backbone.cls_token": torch.zeros(1)}, "student": {}, "args": _RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match=r"Refused to load .*dino_full.pth.*Blocked: .*system"):
        load_model(f"file:{path}")
    assert main(["convert", str(path), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "Blocked:" in capsys.readouterr().err
    assert not marker.exists()


def test_unknown_layout_lists_layouts_tried_and_keys(tmp_path):
    path = tmp_path / "mystery.pth"
    torch.save({"net": {"conv.weight": torch.zeros(2, 3, 3, 3)}, "epoch": 3}, path)
    with pytest.raises(CheckpointError, match=r"matches none of the known layouts \(tried: dino, mocov3, barlow, vicreg, "
                                              r"lightly, solo, simclr\).*'net', 'epoch'.*conv.weight"):
        load_model(f"file:{path}")
    with pytest.raises(CheckpointError, match=r"is not a dino checkpoint"):
        convert_release(path, format="dino")
    with pytest.raises(ModelSpecError, match=r"Unknown checkpoint format 'dinov9'"):
        convert_release(path, format="dinov9")


def test_convert_cli_student_and_zoo_formats(tmp_path, capsys, monkeypatch):
    backbone = _vit(seed=11)
    head = _dino_head(384, 32, 8, 40, seed=11)
    path = _dino_checkpoint(tmp_path / "dino.pth", backbone, head, False)
    out = tmp_path / "zoo" / "dino_s.safetensors"
    assert main(["convert", str(path), "--format", "dino", "--student", "--readout", "mean", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "layout dino (student)" in printed and "proj4" in printed
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["readout"] == "mean" and card["source"]["file"] == "dino.pth" and card["preprocessing"]["interpolation"] == "bicubic"
    monkeypatch.setenv("GR_EXPLORER_ZOO", str(out.parent))
    zoo = load_model("zoo:dino_s")
    direct = load_model(f"file:{out}")
    assert zoo.cut_names == direct.cut_names and zoo.weights_hash() == direct.weights_hash()
    with pytest.raises(ModelSpecError, match=r"Layout dino has no 'momentum' branch. Valid: teacher, student"):
        convert_release(path, branch="momentum")
    assert main(["zoo", "--formats"]) == 0
    formats = capsys.readouterr().out
    for name in ("dino", "vicreg", "barlow", "lightly", "solo", "mocov3", "simclr"):
        assert f"\n{name} " in "\n" + formats


# -- wrap_module and cuts without weights ---------------------------------------------------------------------------
def test_wrap_module_groups_flat_projector_and_uses_named_pool():
    torch.manual_seed(12)
    net = torchvision.models.resnet18(num_classes=16)
    net.fc = nn.Sequential(nn.Linear(512, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 16))
    _randomise_norms(net, 12)
    pre = Preprocessing(32, (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261))
    model = wrap_module(net, stages=["layer1", "layer4"], projector=net.fc, pool="avgpool", preprocessing=pre)
    assert model.cut_names == ["layer1", "layer4", "pool", "proj1", "proj2", "proj3"]
    assert [c.dim for c in model.cuts] == [64, 512, 512, 64, 64, 16]
    x = _x(2, 32)
    ref = ref_resnet({k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}, x)
    fc = {k[3:]: v for k, v in net.state_dict().items() if k.startswith("fc.")}
    want = {"layer1": ref["layer1"], "layer4": ref["layer4"], "pool": ref["pool"]}
    want["proj1"] = F.relu(_bn(_lin(ref["pool"], fc, "0"), fc, "1"))
    want["proj2"] = F.relu(_lin(want["proj1"], fc, "3"))
    want["proj3"] = _lin(want["proj2"], fc, "5")
    _assert_features(model, want, x)
    assert model.weights_source == "in-memory module"


def test_wrap_module_warns_when_preprocessing_defaults_are_used():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.warns(UserWarning, match=r"no preprocessing given.*input_size=32.*mean=\(0.5, 0.5, 0.5\)"):
        wrap_module(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wrap_module(net, preprocessing=Preprocessing(16))


def test_cuts_of_timm_models_need_no_weights(capsys):
    # conftest sets HF_HUB_OFFLINE=1 and nothing is cached: pretrained weights cannot be had.
    model = model_for_cuts("timm:resnet50.a1_in1k")
    assert [(c.name, c.dim) for c in model.cuts] == [("act1", 64), ("layer1", 256), ("layer2", 512), ("layer3", 1024),
                                                     ("layer4", 2048), ("pool", 2048)]
    assert model.weights_source == "none (meta device: shapes only)"
    assert main(["cuts", "--model", "timm:vit_small_patch16_224.dino"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[-1].split() == ["12", "pool", "backbone", "384"] and "meta device" in err
    assert load_model("timm:resnet18", weights="random", seed=2).weights_source == "random init (seed 2)"

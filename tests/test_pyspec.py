"""`py:<file.py>:<function>` models: the issue's third-party CIFAR SimCLR checkpoint, strict weights, refusals."""

import re
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from gr_explorer.cli import main
from gr_explorer.errors import CheckpointError, ModelSpecError
from gr_explorer.models import load_model

#: A third-party-style CIFAR ResNet for SimCLR, as such repos write it: 3 stages of 16/32/64 channels,
#: parameter-free zero-padding shortcuts (option A), a 64->64 `fc` inside the backbone, a 2-layer head.
CIFAR_RESNET = '''
import torch
import torch.nn.functional as F
from torch import nn

preprocessing = dict(input_size=32, mean=[0.4914, 0.4822, 0.4465], std=[0.247, 0.243, 0.261])


class Shortcut(nn.Module):
    def __init__(self, pad):
        super().__init__()
        self.pad = pad

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = Shortcut((cout - cin) // 2) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = nn.Sequential(BasicBlock(16, 16, 1))
        self.layer2 = nn.Sequential(BasicBlock(16, 32, 2))
        self.layer3 = nn.Sequential(BasicBlock(32, 64, 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 64)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = ResNet()

    def forward(self, x):
        return self.model(x)


class SimCLR(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = Backbone()
        self.projection_head = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32))

    def forward(self, x):
        return self.projection_head(self.backbone(x))


def build():
    return SimCLR()


def build_pair():
    net = SimCLR()
    return net.backbone.model, net.projection_head
'''
STAGES = ["backbone.model.layer1", "backbone.model.layer2", "backbone.model.layer3"]


@pytest.fixture
def release(tmp_path):
    """The .py file and a DataParallel-style checkpoint of trained-looking (non-default) weights."""
    src = tmp_path / "cifar_resnet.py"
    src.write_text(CIFAR_RESNET)
    ns = {}
    exec(compile(CIFAR_RESNET, str(src), "exec"), ns)
    torch.manual_seed(123)
    net = ns["build"]()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    sd = {f"module.{k}": v for k, v in net.state_dict().items()}
    assert any(k.startswith("module.backbone.model.") for k in sd) and any(k.startswith("module.projection_head.") for k in sd)
    torch.save({"state_dict": sd, "epoch": 200}, tmp_path / "simclr.pth")
    return src, tmp_path / "simclr.pth", net.eval()


def _x(n=3):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(5))


def test_third_party_cifar_simclr_loads_through_py_and_weights(release):
    src, pth, net = release
    model = load_model(f"py:{src}:build", weights=str(pth), stages=STAGES, projector="projection_head")
    assert model.cut_names == [*STAGES, "pool", "proj1", "proj2"]
    assert [c.dim for c in model.cuts] == [16, 32, 64, 64, 64, 32]
    assert model.preprocessing.input_size == 32 and model.weights_source.startswith("simclr.pth sha256:")
    r = net.backbone.model
    x = _x()
    with torch.no_grad():  # the truncated forward of the trained network, by hand
        h = F.relu(r.bn1(r.conv1(x)))
        ref = {}
        for name in ("layer1", "layer2", "layer3"):
            h = getattr(r, name)(h)
            ref[f"backbone.model.{name}"] = h.mean((2, 3))
        ref["pool"] = r.fc(h.mean((2, 3)))  # the projector's input: the backbone's own 64->64 fc output
        ref["proj1"] = F.relu(net.projection_head[0](ref["pool"]))
        ref["proj2"] = net.projection_head(ref["pool"])
        got = model.forward_cuts(x)
    for name, want in ref.items():
        torch.testing.assert_close(got[name], want, msg=name)
    # (backbone, projector) from the function: the same weights land in the same places
    pair = load_model(f"py:{src}:build_pair", weights=str(pth), stages=["layer1", "layer2", "layer3"])
    with torch.no_grad():
        torch.testing.assert_close(pair.forward_cuts(x)["proj2"], ref["proj2"])


def test_random_init_twin_rebuilds_the_function(release):
    from gr_explorer.models import random_init

    src, pth, _ = release
    model = load_model(f"py:{src}:build", weights=str(pth), stages=STAGES, projector="projection_head")
    twin = random_init(model, seed=0)
    assert twin.cut_names == model.cut_names and twin.name.endswith("[random init]")
    assert twin.weights_hash() != model.weights_hash()
    assert twin.weights_hash() == random_init(model, seed=0).weights_hash()


def test_weights_that_do_not_match_list_missing_and_unexpected_keys(release, tmp_path):
    src, pth, net = release
    sd = torch.load(pth, weights_only=True)["state_dict"]
    sd.pop("module.backbone.model.layer3.0.bn2.running_var")
    sd["module.backbone.model.extra.weight"] = torch.zeros(3)
    sd["module.projection_head.2.weight"] = torch.zeros(16, 64)
    bad = tmp_path / "bad.pth"
    torch.save(sd, bad)
    with pytest.raises(CheckpointError) as e:
        load_model(f"py:{src}:build", weights=str(bad), stages=STAGES, projector="projection_head")
    msg = str(e.value)
    assert "prefix 'module.'" in msg
    assert re.search(r"missing from the file \(1\): backbone.model.layer3.0.bn2.running_var", msg)
    assert re.search(r"unexpected in the file \(1\): module.backbone.model.extra.weight", msg)
    assert re.search(r"shape mismatch \(1\): projection_head.2.weight: file \[16, 64\] vs model \[32, 64\]", msg)


def test_cli_sweep_with_py_model_and_a_bad_stage(release, tmp_path, capsys):
    src, pth, _ = release
    common = ["sweep", "--model", f"py:{src}:build", "--weights", str(pth), "--projector", "projection_head",
              "--dataset", "shapes", "--n-train", "40", "--n-test", "20", "--tasks", "shape", "--no-cache", "--quiet"]
    assert main([*common, "--stages", ",".join(STAGES), "--baseline", "random-init", "--readout", "avg,max"]) == 0
    out = capsys.readouterr().out
    assert "backbone.model.layer2" in out and "proj2" in out
    assert main([*common, "--stages", "backbone.model.layer4"]) == 2
    err = capsys.readouterr().err
    assert "no submodule 'backbone.model.layer4'" in err and "backbone.model.layer3" in err and "Traceback" not in err


@pytest.mark.parametrize("spec, match", [
    ("py:nope.py:build", r"py: model file 'nope.py' does not exist"),
    ("py:{src}", r"Bad py: model spec.*Valid form: py:<path/to/file.py>:<function>"),
    ("py:{src}:bild", r"has no function 'bild'.*Did you mean 'build'"),
])
def test_bad_py_specs(spec, match, release):
    src, _, _ = release
    with pytest.raises(ModelSpecError, match=match):
        load_model(spec.format(src=src), stages=STAGES)


def test_py_models_are_refused_inside_the_app_server_unless_allowed(release, monkeypatch):
    src, pth, _ = release
    runtime = types.ModuleType("streamlit.runtime")
    runtime.exists = lambda: True
    monkeypatch.setitem(sys.modules, "streamlit.runtime", runtime)
    with pytest.raises(ModelSpecError, match=r"run Python code.*not allow.*GR_EXPLORER_ALLOW_PY_MODELS=1"):
        load_model(f"py:{src}:build", weights=str(pth), stages=STAGES, projector="projection_head")
    monkeypatch.setenv("GR_EXPLORER_ALLOW_PY_MODELS", "1")
    assert load_model(f"py:{src}:build", weights=str(pth), stages=STAGES, projector="projection_head").cut_names[-1] == "proj2"


@pytest.mark.parametrize("fmt", ["auto", "simclr"])
def test_convert_points_to_py_when_no_timm_model_fits(release, tmp_path, capsys, fmt):
    _, pth, _ = release
    assert main(["convert", str(pth), "--format", fmt, "--out", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "--model py:<file.py>:<function> --weights <this file>" in err and "pass --arch" not in err
    # following --arch with a timm model that does not fit ends in a message, not a traceback
    assert main(["convert", str(pth), "--format", "simclr", "--arch", "resnet18", "--out", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--arch resnet18 does not fit" in err and "py:<file.py>" in err

"""Models: cuts in forward order, features at a cut == a truncated forward pass, safe loading, clear errors."""

import pickle

import pytest
import torch
from torch import nn

from gr_explorer.errors import CheckpointError, CutError, ModelSpecError, OfflineError
from gr_explorer.models import Preprocessing, load_model, wrap_module
from helpers import saved_tiny, tiny_card, tiny_model


def _x(n=3, size=16, seed=1):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_zoo_format_cuts_equal_truncated_forward(tmp_path):
    model, path = saved_tiny(tmp_path)
    loaded = load_model(f"file:{path}")
    assert loaded.cut_names == ["stem", "layer1", "layer2", "layer3", "pool", "proj1", "proj2", "proj3"]
    assert [c.part for c in loaded.cuts] == ["backbone"] * 5 + ["projector"] * 3
    assert [c.depth for c in loaded.cuts] == list(range(8))
    assert [c.dim for c in loaded.cuts] == [8, 8, 16, 32, 32, 32, 32, 16]
    x = _x()
    net, proj = model.backbone.module, model.projector
    with torch.no_grad():
        h = net.stem(x)
        ref = {"stem": h.mean((2, 3))}
        for i, stage in enumerate(net.stages):
            h = stage(h)
            ref[f"layer{i + 1}"] = h.mean((2, 3))
        ref["pool"] = h.mean((2, 3))
        z = ref["pool"]
        for i, block in enumerate(proj):
            z = block(z)
            ref[f"proj{i + 1}"] = z
        got = loaded.forward_cuts(x)
        for name, want in ref.items():
            torch.testing.assert_close(got[name], want, msg=name)
            # A single cut asked for alone (early stop) gives the same numbers.
            torch.testing.assert_close(loaded.forward_cuts(x, [name])[name], want, msg=name)
    assert loaded.weights_hash() == model.weights_hash()


def test_timm_resnet_cuts_equal_truncated_forward():
    model = load_model("timm:resnet18", weights="random")
    assert model.cut_names == ["act1", "layer1", "layer2", "layer3", "layer4", "pool"]
    assert [c.dim for c in model.cuts] == [64, 64, 128, 256, 512, 512]
    net = model.backbone.module
    x = _x(2, 64)
    with torch.no_grad():
        h = net.act1(net.bn1(net.conv1(x)))
        ref = {"act1": h.mean((2, 3))}
        h = net.maxpool(h)
        for name in ("layer1", "layer2", "layer3", "layer4"):
            h = getattr(net, name)(h)
            ref[name] = h.mean((2, 3))
        ref["pool"] = net.global_pool(h).flatten(1)
        got = model.forward_cuts(x)
    for name, want in ref.items():
        torch.testing.assert_close(got[name], want, msg=name)


@pytest.mark.parametrize("readout", ["cls", "mean", "cls+mean"])
def test_timm_vit_block_cuts_equal_truncated_forward(readout):
    model = load_model("timm:vit_tiny_patch16_224", weights="random", readout=readout)
    assert model.cut_names == [f"blocks.{i}" for i in range(12)] + ["pool"]
    net = model.backbone.module
    x = _x(2, 224)
    with torch.no_grad():
        t = net.norm_pre(net.patch_drop(net._pos_embed(net.patch_embed(x))))
        ref = {}
        for i, blk in enumerate(net.blocks):
            t = blk(t)
            cls, mean = t[:, 0], t[:, net.num_prefix_tokens:].mean(1)
            ref[f"blocks.{i}"] = {"cls": cls, "mean": mean, "cls+mean": torch.cat([cls, mean], 1)}[readout]
        ref["pool"] = net.forward_head(net.norm(t), pre_logits=True)
        got = model.forward_cuts(x, ["blocks.0", "blocks.5", "blocks.11", "pool"])
    assert model.cuts[0].dim == (384 if readout == "cls+mean" else 192)
    for name in got:
        torch.testing.assert_close(got[name], ref[name], msg=name)


def test_wrap_module_with_hooks_equals_truncated_forward():
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    projector = nn.Sequential(nn.Sequential(nn.Linear(6, 5), nn.ReLU()), nn.Sequential(nn.Linear(5, 3)))
    model = wrap_module(backbone, stages=["1", "3"], projector=projector, preprocessing=Preprocessing(input_size=12))
    assert model.cut_names == ["1", "3", "pool", "proj1", "proj2"]
    x = _x(2, 12)
    with torch.no_grad():
        got = model.forward_cuts(x)
        torch.testing.assert_close(got["1"], backbone[:2](x).mean((2, 3)))
        torch.testing.assert_close(got["3"], backbone[:4](x).mean((2, 3)))
        torch.testing.assert_close(got["pool"], backbone(x))
        torch.testing.assert_close(got["proj2"], projector(backbone(x)))
        # Early stop through the hook: only the first stage is needed.
        torch.testing.assert_close(model.forward_cuts(x, ["1"])["1"], backbone[:2](x).mean((2, 3)))


def test_unknown_cut_names_valid_cuts():
    model = tiny_model()
    with pytest.raises(CutError, match=r"no cut 'layer9'.*Valid: stem, layer1.*proj3"):
        model.resolve_cuts(["layer9"])


@pytest.mark.parametrize("spec, match", [
    ("resnet18", r"Bad model spec 'resnet18'.*zoo:<name>.*timm:<name>.*file:<path"),
    ("hub:resnet18", r"Bad model spec 'hub:resnet18'"),
    ("timm:resnet_does_not_exist", r"Unknown timm model 'resnet_does_not_exist'.*Valid:"),
    ("zoo:nope", r"Unknown zoo model 'nope'"),
    ("file:/no/such/file.safetensors", r"does not exist"),
])
def test_bad_model_specs(spec, match):
    with pytest.raises(ModelSpecError, match=match):
        load_model(spec)


def test_offline_pretrained_timm_weights_give_clear_error():
    # conftest sets HF_HUB_OFFLINE=1; nothing is cached for this model.
    with pytest.raises(OfflineError, match=r"timm:resnet18.*--weights <file"):
        load_model("timm:resnet18")


def test_timm_weights_from_file(tmp_path):
    from safetensors.torch import save_file

    src = load_model("timm:resnet18", weights="random")
    f = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in src.backbone.module.state_dict().items()}, str(f))
    again = load_model("timm:resnet18", weights=str(f))
    assert again.weights_hash() == src.weights_hash()


def test_corrupt_and_truncated_checkpoints(tmp_path):
    _, path = saved_tiny(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"corrupt or truncated"):
        load_model(f"file:{path}")
    path.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match=r"corrupt or truncated"):
        load_model(f"file:{path}")


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused_and_not_run(tmp_path):
    import json

    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = marker
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"backbone.x": evil}, f)
    path.with_suffix(".json").write_text(json.dumps(tiny_card()))
    with pytest.raises(CheckpointError, match=r"Refused to load .*evil.pt.*would run code"):
        load_model(f"file:{path}")
    assert not marker.exists()


def test_checkpoint_without_card_or_with_mismatched_weights(tmp_path):
    import json

    _, path = saved_tiny(tmp_path)
    card = path.with_suffix(".json")
    good = card.read_text()
    card.write_text(json.dumps(tiny_card(projector="64-16")))
    with pytest.raises(CheckpointError, match=r"does not match its card"):
        load_model(f"file:{path}")
    card.write_text("{broken json")
    with pytest.raises(CheckpointError, match=r"not valid JSON"):
        load_model(f"file:{path}")
    card.unlink()
    with pytest.raises(CheckpointError, match=r"has no card"):
        load_model(f"file:{path}")
    card.write_text(good)
    assert load_model(f"file:{path}").cut_names[-1] == "proj3"


def test_pt_state_dict_with_card_loads(tmp_path):
    model, path = saved_tiny(tmp_path)
    pt = tmp_path / "tiny2.pt"
    torch.save(model.export_state_dict(), pt)
    pt.with_suffix(".json").write_text(path.with_suffix(".json").read_text())
    assert load_model(f"file:{pt}").weights_hash() == model.weights_hash()


def test_zoo_lists_and_loads(tmp_path, monkeypatch):
    model, path = saved_tiny(tmp_path, name="mini")
    monkeypatch.setenv("GR_EXPLORER_ZOO", str(tmp_path))
    from gr_explorer.models import list_zoo

    assert "mini" in list_zoo()
    assert load_model("zoo:mini").weights_hash() == model.weights_hash()

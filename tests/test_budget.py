"""A model's size is measured before it is built (issue 23, item 5): parameters and FLOPs on the meta device.

References: the parameters of the same architecture built for real, and a hand count of a ViT's matmul FLOPs.
The hostile card of the issue (ViT-Tiny with depth 20,000: 12 minutes and 2 GB on the server) is refused within
seconds, its build stopped once the parameter or time budget is passed.
"""

from __future__ import annotations

import json
import time

import pytest
import timm

from gr_explorer.errors import ResourceError
from gr_explorer.models.budget import Budget, model_size
from helpers import saved_tiny


def test_parameters_and_flops_match_references():
    size = model_size("timm:vit_tiny_patch16_224")
    real = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    assert size.params == sum(p.numel() for p in real.parameters()) and size.input_size == 224
    n, d, depth, patch = 197, 192, 12, 16  # tokens (196 patches + class token), width, blocks, patch side
    per_block = 2 * n * d * 3 * d + 2 * n * d * d + 2 * 2 * n * n * d + 2 * 2 * n * d * 4 * d  # qkv, proj, attn, mlp
    embed = 2 * (n - 1) * d * 3 * patch * patch
    assert size.flops == pytest.approx(depth * per_block + embed, rel=1e-3)


def test_checkpoint_cards_are_measured_from_the_card_alone(tmp_path):
    model, path = saved_tiny(tmp_path)
    size = model_size(f"file:{path}")
    assert size.params == sum(p.numel() for p in model.parameters()) and size.input_size == 16


def _deep_card(tmp_path, depth=20000):
    _, path = saved_tiny(tmp_path, "deep")
    card = json.loads(path.with_suffix(".json").read_text())
    card["architecture"] = {"backbone": {"type": "timm", "name": "vit_tiny_patch16_224", "kwargs": {"depth": depth}},
                            "projector": None}
    path.with_suffix(".json").write_text(json.dumps(card))
    return path


def test_the_hostile_card_is_refused_within_seconds(tmp_path):
    path = _deep_card(tmp_path)
    t0 = time.perf_counter()
    with pytest.raises(ResourceError, match=r"has more than 100,000,000 parameters \(at least 100,\d{3},\d{3} before its "
                                            r"build was stopped\).*Valid: a model of at most 100,000,000 parameters"):
        model_size(f"file:{path}", Budget(max_params=100_000_000))
    assert time.perf_counter() - t0 < 30  # building all 20,000 blocks on the meta device takes minutes
    with pytest.raises(ResourceError, match=r"took more than 0\.5 s just to lay out its [\d,]+\+ parameters"):
        model_size(f"file:{path}", Budget(max_params=None, max_build_s=0.5))


def test_flops_and_parameter_limits_name_the_model_and_the_limit():
    with pytest.raises(ResourceError, match=r"timm:vit_tiny_patch16_224 has more than 1,000,000 parameters \(at least "
                                            r"1,\d{3},\d{3} before its build was stopped\), beyond this server's limit"):
        model_size("timm:vit_tiny_patch16_224", Budget(max_params=1_000_000, max_build_s=None))
    with pytest.raises(ResourceError, match=r"timm:resnet18 needs 3\.6 GFLOPs per 224 px image, beyond this server's "
                                            r"limit of 1\.0 GFLOPs"):
        model_size("timm:resnet18", Budget(max_flops=1e9))

"""Sub-block cuts, readouts and the final norm against hand-written reference forwards.

Each reference recomputes a transformer block step by step from its weights (LayerNorm, qkv, softmax
attention, projection, layer scale, fc1, GELU, fc2) instead of calling the block, so it shares no code
with the hooks it checks. Tolerance: the library's path runs timm's fused attention
(scaled_dot_product_attention) while the reference forms softmax(QK^T / sqrt(d)) V explicitly; both are
float32 with O(1) activations, so they differ by float32 rounding accumulated over a few hundred-term dot
products (measured max |diff| 1.0e-6 over every sub-block cut of ViT-Tiny). atol=1e-4 leaves a 100x margin, still
far below anything a wrong tensor (another point of the block, another token, a missing layer scale or
norm) would give: those differ by O(0.1) or more.
"""

import math
import re

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from gr_explorer.errors import CutError, ReadoutError
from gr_explorer.features import extract_features
from gr_explorer.models import Preprocessing, load_model, model_for_cuts, wrap_module
from gr_explorer.models.readout import TOKEN_READOUTS
from helpers import random_dataset, tiny_model

ATOL = 1e-4


def _x(n=2, size=224, seed=1):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _ln(m, x):
    return F.layer_norm(x, m.normalized_shape, m.weight, m.bias, m.eps)


def _scale(ls, h):
    return h * ls.gamma if hasattr(ls, "gamma") else h


def _attention(attn, x):
    b, n, c = x.shape
    h = attn.num_heads
    qkv = (x @ attn.qkv.weight.T + (attn.qkv.bias if attn.qkv.bias is not None else 0)).reshape(b, n, 3, h, c // h)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(c // h), dim=-1)
    o = (w @ v).transpose(1, 2).reshape(b, n, c)
    return o @ attn.proj.weight.T + attn.proj.bias


def reference_points(blk, t):
    """(attn_out, mlp_hidden, block output) of a timm pre-norm Block, recomputed from its weights."""
    a = t + _scale(blk.ls1, _attention(blk.attn, _ln(blk.norm1, t)))
    hidden = F.gelu(_ln(blk.norm2, a) @ blk.mlp.fc1.weight.T + blk.mlp.fc1.bias)
    y = a + _scale(blk.ls2, hidden @ blk.mlp.fc2.weight.T + blk.mlp.fc2.bias)
    return a, hidden, y


def reference_tokens(net, x):
    """{cut: full token sequence [B, L, C]} at every sub-block cut of a timm VisionTransformer."""
    t = net.norm_pre(net.patch_drop(net._pos_embed(net.patch_embed(x))))
    out = {}
    for i, blk in enumerate(net.blocks):
        a, hidden, t = reference_points(blk, t)
        out[f"blocks.{i}.attn_out"], out[f"blocks.{i}.mlp_hidden"], out[f"blocks.{i}"] = a, hidden, t
    return out


def by_hand(tokens, readout, n_prefix, n_reg):
    """A readout from a full token sequence, slicing by the model's own token counts."""
    prefix, patches = tokens[:, :n_prefix], tokens[:, n_prefix:]
    return {"cls": lambda: prefix[:, 0], "mean": lambda: patches.mean(1),
            "cls+mean": lambda: torch.cat([prefix[:, 0], patches.mean(1)], 1), "max": lambda: patches.amax(1),
            "registers": lambda: prefix[:, n_prefix - n_reg:].mean(1), "all-tokens-mean": lambda: tokens.mean(1)}[readout]()


def check_columns(model, x, cuts, readouts, norm, ref, norm_fn=lambda t: t):
    net = model.backbone.module
    cols = model.columns(model.resolve_cuts(cuts), readouts, norm)
    with torch.no_grad():
        got = model.forward_readouts(x, cols)
    for c in cols:
        if c.applied.pooling == "-":  # a vector cut (pool): checked by the caller
            continue
        tokens = ref[c.cut.name]
        if c.applied.norm:
            tokens = norm_fn(tokens)
        want = by_hand(tokens, c.applied.pooling, net.num_prefix_tokens, getattr(net, "num_reg_tokens", 0))
        torch.testing.assert_close(got[(c.cut.name, c.applied)], want, atol=ATOL, rtol=ATOL, msg=c.name)
    return cols


def test_vit_tiny_sub_block_cuts_equal_a_hand_written_forward():
    model = load_model("timm:vit_tiny_patch16_224", weights="random")
    net = model.backbone.module
    names = [c.name for c in model.cut_list("sub-block")]
    assert names == [n for i in range(12) for n in (f"blocks.{i}.attn_out", f"blocks.{i}.mlp_hidden", f"blocks.{i}")] + ["pool"]
    assert [c.depth for c in model.cut_list("sub-block")] == list(range(37))
    assert {c.name: c.dim for c in model.cut_list("sub-block")}["blocks.3.mlp_hidden"] == 768  # 4 x 192
    assert model.cut_names == [f"blocks.{i}" for i in range(12)] + ["pool"]  # the default list is unchanged
    x = _x()
    with torch.no_grad():
        ref = reference_tokens(net, x)
    cuts = ["blocks.0.attn_out", "blocks.0.mlp_hidden", "blocks.0", "blocks.5.attn_out", "blocks.5.mlp_hidden",
            "blocks.11.attn_out", "blocks.11.mlp_hidden", "blocks.11"]
    cols = check_columns(model, x, cuts, ["cls", "mean", "max", "all-tokens-mean", "cls+mean"], "off", ref)
    assert len(cols) == 5 * len(cuts)
    # A single sub-block cut asked alone (the forward stops after its block) gives the same numbers.
    check_columns(model, x, ["blocks.5.mlp_hidden"], ["mean"], "off", ref)


def test_norm_on_equals_the_final_norm_by_hand_and_timms_forward_intermediates():
    model = load_model("timm:vit_tiny_patch16_224", weights="random")
    net = model.backbone.module
    x = _x()
    with torch.no_grad():
        ref = reference_tokens(net, x)
        timm_normed = net.forward_intermediates(x, indices=[4, 11], norm=True, output_fmt="NLC", intermediates_only=True,
                                                return_prefix_tokens=True)
    cuts = ["blocks.4.attn_out", "blocks.4.mlp_hidden", "blocks.4", "blocks.11", "pool"]
    cols = check_columns(model, x, cuts, ["cls", "mean"], "both", ref, norm_fn=lambda t: _ln(net.norm, t))
    normed = [c for c in cols if c.applied.norm]
    assert {c.cut.name for c in normed} == {"blocks.4.attn_out", "blocks.4", "blocks.11"}  # mlp_hidden, pool pass through
    with torch.no_grad():
        got = model.forward_readouts(x, cols)
    from gr_explorer.models.readout import Readout

    for i, name in ((0, "blocks.4"), (1, "blocks.11")):  # timm's own norm=True intermediates, read out the same way
        patches, prefix = timm_normed[i]
        torch.testing.assert_close(got[(name, Readout("mean", True))], patches.mean(1), atol=ATOL, rtol=ATOL)
        torch.testing.assert_close(got[(name, Readout("cls", True))], prefix[:, 0], atol=ATOL, rtol=ATOL)
    # The last block, normed and read at the class token, is what the model's own head pools.
    torch.testing.assert_close(got[("pool", Readout("-"))], _ln(net.norm, ref["blocks.11"])[:, 0], atol=ATOL, rtol=ATOL)


def test_fc_norm_models_normalise_the_pooled_vector():
    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, global_pool="avg", fc_norm=True,
                            img_size=32, patch_size=8, depth=2)
    assert isinstance(net.norm, nn.Identity)
    model = wrap_module(net, preprocessing=Preprocessing(input_size=32))
    x = _x(3, 32)
    with torch.no_grad():
        ref = reference_tokens(net, x)
    cols = model.columns(model.resolve_cuts(["blocks.1", "blocks.1.attn_out"]), ["mean", "cls+mean"], "on")
    with torch.no_grad():
        got = model.forward_readouts(x, cols)
    for c in cols:
        v = by_hand(ref[c.cut.name], c.applied.pooling, 1, 0)
        want = torch.cat([_ln(net.fc_norm, p) for p in v.split(192, dim=1)], 1)  # fc_norm on each 192-wide piece
        torch.testing.assert_close(got[(c.cut.name, c.applied)], want, atol=ATOL, rtol=ATOL, msg=c.name)


def test_register_model_sub_block_cuts_and_registers_readout():
    torch.manual_seed(0)
    net = timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, num_classes=0, img_size=56, depth=3)
    assert (net.num_prefix_tokens, net.num_reg_tokens) == (5, 4)
    model = wrap_module(net, preprocessing=Preprocessing(input_size=56))
    assert model.backbone.layout.readouts() == TOKEN_READOUTS
    x = _x(2, 56)
    with torch.no_grad():
        ref = reference_tokens(net, x)
        t0 = net._pos_embed(net.patch_embed(x))
    # The slice the registers readout takes holds the register tokens (at the input: the raw reg_token, since
    # this model adds no position embedding to prefix tokens), and the class token comes first.
    torch.testing.assert_close(t0[:, 5 - 4:5], net.reg_token.expand(2, -1, -1))
    torch.testing.assert_close(t0[:, 0], net.cls_token[:, 0].expand(2, -1))
    cuts = ["blocks.0.attn_out", "blocks.1.mlp_hidden", "blocks.2", "blocks.2.attn_out"]
    check_columns(model, x, cuts, ["registers", "mean", "cls", "all-tokens-mean"], "both", ref,
                  norm_fn=lambda t: _ln(net.norm, t))
    # LayerScale is in these blocks: leaving it out of the reference would not match.
    assert not torch.allclose(net.blocks[0].ls1.gamma, torch.ones_like(net.blocks[0].ls1.gamma))


def test_eva02_sub_block_cuts_with_rope_glu_mlp_and_fc_norm():
    """EVA-02 (rotary embeddings in attention, a gated MLP, fc_norm after pooling): attention is called as the
    block's own module (it needs the rope), everything after it is recomputed by hand."""
    torch.manual_seed(0)
    net = timm.create_model("eva02_tiny_patch14_224", pretrained=False, num_classes=0, img_size=56, depth=2)
    model = wrap_module(net, preprocessing=Preprocessing(input_size=56))
    assert model.backbone.norm.where == "pooled"  # global_pool='avg': an Identity `norm` and a real fc_norm
    x = _x(2, 56)
    ref = {}
    with torch.no_grad():
        t, rope = net._pos_embed(net.patch_embed(x))
        for i, blk in enumerate(net.blocks):
            a = t + blk.attn(_ln(blk.norm1, t), rope=rope) * (blk.gamma_1 if blk.gamma_1 is not None else 1)
            h = _ln(blk.norm2, a) @ blk.mlp.fc1.weight.T + blk.mlp.fc1.bias
            x1, x2 = h.chunk(2, dim=-1)
            hidden = x1 * F.silu(x2) if blk.mlp.gate_last else F.silu(x1) * x2  # GluMlp: which half gates
            t = a + (hidden @ blk.mlp.fc2.weight.T + blk.mlp.fc2.bias) * (blk.gamma_2 if blk.gamma_2 is not None else 1)
            ref[f"blocks.{i}.attn_out"], ref[f"blocks.{i}.mlp_hidden"], ref[f"blocks.{i}"] = a, hidden, t
    assert ref["blocks.0.mlp_hidden"].shape[-1] == 512
    cols = model.columns(model.resolve_cuts(list(ref)), ["mean", "cls"], "both")
    with torch.no_grad():
        got = model.forward_readouts(x, cols)
    for c in cols:
        want = by_hand(ref[c.cut.name], c.applied.pooling, 1, 0)
        if c.applied.norm:
            want = _ln(net.fc_norm, want)
        torch.testing.assert_close(got[(c.cut.name, c.applied)], want, atol=ATOL, rtol=ATOL, msg=c.name)
    assert {c.cut.name for c in cols if c.applied.norm} == {"blocks.0.attn_out", "blocks.0", "blocks.1.attn_out", "blocks.1"}


def test_deit_distilled_reads_the_class_token_first_and_leaves_both_prefix_tokens_out_of_the_mean():
    torch.manual_seed(0)
    net = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, num_classes=0, img_size=32, depth=2)
    model = wrap_module(net, preprocessing=Preprocessing(input_size=32))
    assert (net.num_prefix_tokens, model.backbone.layout.readouts()) == (2, ("cls", "mean", "cls+mean", "max", "all-tokens-mean"))
    x = _x(2, 32)
    with torch.no_grad():
        ref = reference_tokens(net, x)
        t0 = net._pos_embed(net.patch_embed(x))
    torch.testing.assert_close(t0[:, 0], (net.cls_token + net.pos_embed[:, :1])[:, 0].expand(2, -1))  # class token first
    check_columns(model, x, ["blocks.1.attn_out", "blocks.1.mlp_hidden", "blocks.1"], ["cls", "mean", "all-tokens-mean"],
                  "both", ref, norm_fn=lambda t: _ln(net.norm, t))


class OwnPreNormBlock(nn.Module):
    """A pre-norm block written from scratch (torch's MultiheadAttention), not a timm class."""

    def __init__(self, dim=16, heads=2):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential()
        self.mlp.fc1, self.mlp.act, self.mlp.fc2 = nn.Linear(dim, 3 * dim), nn.GELU(), nn.Linear(3 * dim, dim)

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class OwnPostNormBlock(OwnPreNormBlock):
    def forward(self, x):
        x = self.norm1(x + self.attn(x, x, x, need_weights=False)[0])
        return self.norm2(x + self.mlp(x))


class TinyTokens(nn.Module):
    """A wrapped token model: patch conv, a class token, two blocks, a final norm; returns the class token."""

    def __init__(self, block=OwnPreNormBlock, dim=16):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, 4, 4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.blocks = nn.Sequential(block(dim), block(dim))
        self.norm = nn.LayerNorm(dim)

    def tokens(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), t], 1)

    def forward(self, x):
        return self.norm(self.blocks(self.tokens(x)))[:, 0]


def test_wrapped_module_sub_block_cuts_equal_a_hand_written_forward():
    torch.manual_seed(0)
    net = TinyTokens().eval()
    model = wrap_module(net, stages=["blocks.0", "blocks.1"], num_prefix_tokens=1, preprocessing=Preprocessing(input_size=16))
    assert [c.name for c in model.cut_list("sub-block")] == ["blocks.0.attn_out", "blocks.0.mlp_hidden", "blocks.0",
                                                            "blocks.1.attn_out", "blocks.1.mlp_hidden", "blocks.1", "pool"]
    x = _x(3, 16)
    ref = {}
    with torch.no_grad():
        t = net.tokens(x)
        for i, blk in enumerate(net.blocks):
            h = _ln(blk.norm1, t)
            w = blk.attn.in_proj_weight
            q, k, v = (h @ w[j * 16:(j + 1) * 16].T + blk.attn.in_proj_bias[j * 16:(j + 1) * 16] for j in range(3))
            heads = [torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / math.sqrt(8), -1) @ v[..., s]
                     for s in (slice(0, 8), slice(8, 16))]
            a = t + torch.cat(heads, -1) @ blk.attn.out_proj.weight.T + blk.attn.out_proj.bias
            hidden = F.gelu(_ln(blk.norm2, a) @ blk.mlp.fc1.weight.T + blk.mlp.fc1.bias)
            t = a + hidden @ blk.mlp.fc2.weight.T + blk.mlp.fc2.bias
            ref[f"blocks.{i}.attn_out"], ref[f"blocks.{i}.mlp_hidden"], ref[f"blocks.{i}"] = a, hidden, t
    model.backbone.module.num_prefix_tokens = 1  # by_hand reads the counts from the module
    model.backbone.module.num_reg_tokens = 0
    check_columns(model, x, list(ref), ["cls", "mean", "max"], "both", ref, norm_fn=lambda t: _ln(net.norm, t))


def test_post_norm_blocks_get_no_sub_block_cuts():
    torch.manual_seed(0)
    model = wrap_module(TinyTokens(OwnPostNormBlock), stages=["blocks.0", "blocks.1"], num_prefix_tokens=1,
                        preprocessing=Preprocessing(input_size=16))
    with pytest.raises(CutError, match=r"no sub-block cuts.*Valid: cut_detail=block"):
        model.cut_list("sub-block")
    with pytest.raises(CutError, match=r"no cut 'blocks.0.attn_out'.*Valid: blocks.0, blocks.1, pool"):
        model.resolve_cuts(["blocks.0.attn_out"])


@pytest.mark.parametrize("spec, cuts, readouts, norm, match", [
    ("timm:vit_tiny_patch16_224", None, ["registers"], "off",
     r"Readout 'registers' does not apply.*1 prefix token.*0 register.*Valid: cls, mean, cls\+mean, max, all-tokens-mean"),
    ("timm:vit_medium_patch16_gap_256", None, ["cls+mean"], "off",
     r"'cls\+mean' does not apply.*no class token.*Valid: mean, max, all-tokens-mean"),
    ("timm:resnet18", None, ["cls"], "off", r"feature maps\. Valid: avg, max"),
    ("timm:resnet18", None, None, "on", r"has no final norm.*Valid: readout_norm=off"),
    ("timm:vit_tiny_patch16_224", ["blocks.2.mlp_hidden", "pool"], None, "both",
     r"applies to none of the requested cuts.*Valid: readout_norm=off"),
    ("tiny", None, ["mean"], "off", r"feature maps\. Valid: avg, max"),
])
def test_readouts_and_norm_a_model_lacks_are_refused_naming_the_valid_ones(spec, cuts, readouts, norm, match):
    model = tiny_model() if spec == "tiny" else model_for_cuts(spec)  # timm: built on the meta device
    with pytest.raises(ReadoutError, match=match):
        model.columns(model.resolve_cuts(cuts), readouts, norm)


def test_cnn_stages_read_avg_and_max():
    model = tiny_model()
    x = torch.randn(2, 3, 16, 16)
    cols = model.columns(model.resolve_cuts(["layer1", "pool", "proj1"]), ["avg", "max"])
    with torch.no_grad():
        got = model.forward_readouts(x, cols)
        h = model.backbone.module.stages[0](model.backbone.module.stem(x))
    from gr_explorer.models.readout import Readout

    torch.testing.assert_close(got[("layer1", Readout("avg"))], h.mean((2, 3)))
    torch.testing.assert_close(got[("layer1", Readout("max"))], h.amax((2, 3)))
    assert {c.applied.pooling for c in cols if c.cut.name in ("pool", "proj1")} == {"-"}  # vectors pass through


class _Counter:
    def __init__(self, module):
        self.n = 0
        module.register_forward_hook(lambda *_: setattr(self, "n", self.n + 1))


def test_every_readout_and_norm_comes_from_one_forward_pass_per_batch_and_is_cached_per_readout():
    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=16, patch_size=8, depth=2)
    model = wrap_module(net, preprocessing=Preprocessing(input_size=16))
    ds = random_dataset(n_train=20, n_test=10)
    model.cut_list("sub-block")  # the one-off probe of the sub-block dims is not counted
    calls = _Counter(net.patch_embed)
    f = extract_features(model, ds, None, detail="sub-block", readouts=["cls", "mean"], norm="both", batch_size=8, cache=None)
    assert calls.n == f.forward_batches == 3 + 2  # ceil(20/8) + ceil(10/8)
    assert len(f.columns) == 4 * 7 and len(set(f.entries.values())) == 4 * 4 + 2 * 2 + 1  # norm-passing cuts stored once
    assert f.train["blocks.1"].shape == (20, 192) and f.train["blocks.1.mlp_hidden@mean@norm"].shape == (20, 768)
    assert f.train["pool@mean@norm"] is f.train["pool"]  # a vector cut: one entry shared by every curve
    # The same model, one readout more: only its columns are computed, the rest come from the cache.
    g = extract_features(model, ds, None, detail="sub-block", readouts=["cls", "max"], norm="off", batch_size=8, cache=None)
    assert set(g.cached_cuts) >= {"blocks.0", "blocks.1.mlp_hidden", "pool"} and "blocks.0@max" not in g.cached_cuts
    torch.testing.assert_close(g.train["blocks.1"], f.train["blocks.1"])


@pytest.mark.parametrize("args, message", [
    (["--cuts", "blocks.5.mlp_hiden"], r"no cut 'blocks.5.mlp_hiden'.*Valid: blocks.0, .*pool, blocks.0.attn_out, "
                                       r"blocks.0.mlp_hidden.*Did you mean 'blocks.5.mlp_hidden'"),
    (["--readout", "registers"], r"Readout 'registers' does not apply.*Valid: cls, mean, cls\+mean, max, all-tokens-mean"),
    (["--readout", "cls,average"], r"readout=\['cls', 'average'\] is invalid.*Valid: .*cls, mean, cls\+mean, max, registers, "
                                   r"all-tokens-mean, avg"),
    (["--readout-norm", "yes"], r"readout_norm='yes' is invalid\. Valid: off, on, both"),
    (["--cut-detail", "fine"], r"cut_detail='fine' is invalid\. Valid: block, sub-block"),
    (["--stages", "layer1"], r"stages/projector name the cuts of a py: model"),
])
def test_cli_bad_cuts_and_readouts_exit_2_with_the_valid_names(args, message, capsys):
    from gr_explorer.cli import main

    rc = main(["sweep", "--model", "timm:vit_tiny_patch16_224", "--weights", "random", "--dataset", "shapes",
               "--n-train", "20", "--n-test", "10", "--tasks", "shape", "--no-cache", "--quiet", *args])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert re.search(message, err.replace("\n", " ")), err


def test_cli_sub_block_sweep_gives_a_row_per_cut_readout_and_norm(tmp_path, capsys):
    """The issue's 'done when', small: every sub-block cut, norm off and on, two readouts, in one run."""
    import pandas as pd

    from gr_explorer.cli import main

    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=16, patch_size=8, depth=3)
    src = tmp_path / "vit.py"
    torch.save(net.state_dict(), tmp_path / "vit.pth")
    src.write_text("import timm\npreprocessing = dict(input_size=16)\n\ndef build():\n    return timm.create_model("
                   "'vit_tiny_patch16_224', pretrained=False, num_classes=0, img_size=16, patch_size=8, depth=3)\n")
    out = tmp_path / "out"
    assert main(["sweep", "--model", f"py:{src}:build", "--weights", str(tmp_path / "vit.pth"), "--dataset", "shapes",
                 "--n-train", "60", "--n-test", "30", "--image-size", "16", "--tasks", "shape", "--cut-detail", "sub-block",
                 "--readout", "cls,mean", "--readout-norm", "both", "--out", str(out), "--quiet"]) == 0
    t = pd.read_csv(out / "results.csv")
    assert len(t) == 4 * (3 * 3 + 1) and set(zip(t["readout"], t["norm"])) == {("cls", "off"), ("cls", "on"),
                                                                               ("mean", "off"), ("mean", "on")}
    s = pd.read_csv(out / "summary.csv")
    assert len(s) == 4 and {"readout", "norm"} <= set(s.columns)
    # mlp_hidden and pool pass the norm through: equal rows in both norm curves
    for cut in ("blocks.1.mlp_hidden", "pool"):
        g = t[t["cut"] == cut].set_index(["readout", "norm"])["accuracy"]
        assert g[("cls", "off")] == g[("cls", "on")] and g[("mean", "off")] == g[("mean", "on")]
    assert (t.loc[t["cut"] == "blocks.1.mlp_hidden", "dim"] == 768).all()


def test_python_sweep_with_sub_block_cuts_readouts_and_both_norms():
    from gr_explorer import guillotine_summary, sweep

    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=16, patch_size=8, depth=2)
    model = wrap_module(net, preprocessing=Preprocessing(input_size=16), name="vit")
    table = sweep(model, "shapes", tasks=["shape"], n_train=60, n_test=30, image_size=16, cut_detail="sub-block",
                  readout=["cls", "mean"], readout_norm="both", cache=False, bootstrap=200)
    assert len(table) == 4 * 7 and table.groupby(["readout", "norm"]).size().tolist() == [7] * 4
    assert table["depth"].max() == 6 and table.loc[table["cut"] == "blocks.1", "depth"].iloc[0] == 5
    summary = guillotine_summary(table, 200)
    assert len(summary) == 4 and set(summary["last_cut"]) == {"pool"}
    from gr_explorer.plots import accuracy_vs_depth, cut_task_heatmap

    curves = [t for t in accuracy_vs_depth(table, summary=summary).data if (t.meta or {}).get("role") == "curve"]
    # one model: its curves are named by their reading alone (the model is named when there are several)
    assert sorted(t.meta["model"] for t in curves) == ["cls", "cls · norm", "mean", "mean · norm"]
    assert all(len(t.x) == 7 for t in curves)
    heat = cut_task_heatmap(table, "vit")  # the model's first curve, not an average over its curves
    first = table[(table["readout"] == "cls") & (table["norm"] == "off")].sort_values("depth")["accuracy"].to_numpy()
    np.testing.assert_allclose(heat.data[0].z[0], first)


def test_diagnostics_describe_the_first_readout_curve(tmp_path):
    from gr_explorer import SweepConfig, run_sweep
    from helpers import saved_tiny

    _, path = saved_tiny(tmp_path)

    def metrics(readout):
        cfg = SweepConfig(models=[f"file:{path}"], tasks=["shape"], n_train=60, n_test=30, readout=readout,
                          metrics=["rankme", "invariance"], bootstrap=100)
        r = run_sweep(cfg, cache=False)
        assert r.metrics.groupby(["cut", "metric", "augmentation"]).size().max() == 1
        assert set(zip(r.metric_selection["model"], r.metric_selection["task"])) == {(r.table["model"].iloc[0], "shape")}
        return r.metrics.sort_values(["cut", "metric", "augmentation"])["value"].to_numpy()

    own, max_first, max_only = metrics(None), metrics(["max", "avg"]), metrics(["max"])
    np.testing.assert_allclose(max_first, max_only)  # a second curve changes nothing about the first one's metrics
    assert not np.allclose(own, max_first)  # ... and the first curve is what they describe (max, not the own avg)
    np.testing.assert_allclose(metrics(["avg", "max"]), own)

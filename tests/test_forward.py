"""The extraction forward near the hardware limit: compile (and its fallback), channels_last, auto batch, SDPA."""

import pytest
import timm
import torch

from gr_explorer import forward as fwd
from gr_explorer.config import SweepConfig
from gr_explorer.errors import ConfigError
from gr_explorer.features import extract_features
from gr_explorer.forward import CutForward, attention_kernels, fit_batch, use_channels_last, use_compile
from gr_explorer.models import Model, Preprocessing
from gr_explorer.models.backbones import IntermediatesBackbone
from helpers import random_dataset, tiny_model

CPU = torch.device("cpu")


def _tiny_vit(depth: int = 2) -> Model:
    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", img_size=32, depth=depth, num_classes=0)
    return Model(IntermediatesBackbone(net), None, Preprocessing(input_size=32), name="tiny_vit")


def _batches(seed: int = 3, sizes=(8, 8, 5), size: int = 16):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (b, 3, size, size), dtype=torch.uint8, generator=g) for b in sizes]


@pytest.mark.parametrize("make", [tiny_model, _tiny_vit], ids=["cnn+projector", "vit"])
def test_compiled_forward_gives_the_eager_features_short_batch_included(make):
    """aot_eager traces the model through dynamo and AOT autograd and runs the same ATen kernels, so the features
    are bit-identical; the short last batch goes through the padded graph."""
    model = make()
    size = model.preprocessing.input_size
    eager = CutForward(model, model.cut_names, CPU)
    compiled = CutForward(model, model.cut_names, CPU, compile=True, backend="aot_eager")
    for x in _batches(size=size):
        want, got = eager(x), compiled(x)
        assert compiled.is_compiled and compiled.graph_batch == 8
        assert list(got) == model.cut_names
        for name in want:
            assert got[name].shape == want[name].shape and torch.equal(got[name], want[name]), name


@pytest.mark.slow
def test_inductor_compiled_features_match_eager_within_float32_rounding():
    """Inductor generates fused C++ kernels: sums (BN, pooling, matmul epilogues) are added in another order, so
    float32 results differ by rounding only, a few ulps per op (measured 3e-7 on values up to 0.56). The
    tolerance, 1e-5 absolute and 1e-4 relative, is ~100 ulps: far below any difference a bug would make."""
    model = tiny_model()
    eager = CutForward(model, model.cut_names, CPU)
    compiled = CutForward(model, model.cut_names, CPU, compile=True)
    for x in _batches():
        want, got = eager(x), compiled(x)
        assert compiled.is_compiled
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-5, msg=name)


def test_a_model_that_fails_to_compile_is_extracted_eagerly_and_warned_about_once(monkeypatch):
    monkeypatch.setattr(fwd, "_warned", set())

    def broken_backend(gm, example_inputs):
        raise RuntimeError("no C compiler here")

    model = tiny_model()
    eager = CutForward(model, model.cut_names, CPU)
    with pytest.warns(UserWarning, match=r"torch.compile failed for tiny \(.*no C compiler here.*\); extracting without it"):
        broken = CutForward(model, model.cut_names, CPU, compile=True, backend=broken_backend)
        x = _batches()[0]
        got = broken(x)
    assert not broken.is_compiled
    for name, want in eager(x).items():
        assert torch.equal(got[name], want)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the same model failing again is not warned twice
        again = CutForward(model, model.cut_names, CPU, compile=True, backend=broken_backend)
        again(x)


def test_extraction_with_compile_on_equals_eager(monkeypatch, tmp_path):
    """The compile setting through extract_features (inductor swapped for aot_eager, which needs no C compiler and
    seconds instead of a minute): same features, and a split of 50 at batch 16 ends in a padded batch."""
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real(fn, **{**kw, "backend": "aot_eager"}))
    ds = random_dataset(n_train=50, n_test=20)
    off = extract_features(tiny_model(), ds, batch_size=16, cache=False)
    on = extract_features(tiny_model(), ds, batch_size=16, cache=False, compile="on")
    for name in off.train:
        assert torch.equal(on.train[name], off.train[name]) and torch.equal(on.test[name], off.test[name])


def test_compile_auto_is_for_big_cuda_runs_only():
    cuda = torch.device("cuda")
    assert not use_compile("auto", CPU, 10**7) and not use_compile("off", cuda, 10**7)
    assert not use_compile("auto", cuda, fwd.COMPILE_MIN_IMAGES - 1) and use_compile("auto", cuda, fwd.COMPILE_MIN_IMAGES)
    assert use_compile("on", CPU, 1)
    with pytest.raises(ConfigError, match=r"compile='yes' is invalid\. Valid: auto, on, off"):
        use_compile("yes", CPU, 1)


def test_channels_last_auto_is_for_cnns_on_cuda_and_keeps_the_features():
    cnn, vit, cuda = tiny_model(), _tiny_vit(), torch.device("cuda")
    assert use_channels_last("auto", cnn, cuda) and not use_channels_last("auto", vit, cuda)
    assert not use_channels_last("auto", cnn, CPU) and use_channels_last("on", cnn, CPU)
    assert not use_channels_last("off", cnn, cuda)
    x = _batches()[0]
    want = CutForward(tiny_model(), cnn.cut_names, CPU)(x)
    got = CutForward(cnn, cnn.cut_names, CPU, channels_last=True)(x)
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in cnn.parameters() if p.ndim == 4)
    for name in want:  # NHWC convolutions add in another order: float32 rounding only
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("case, start, cap, per_image, oom_above, budget, want, tries", [
    ("grows until a double would cross the budget", 16, 4096, 100, None, 50_000, 256, [16, 32, 64, 128, 256]),
    ("backs off from an out-of-memory error", 16, 4096, 100, 300, 10**9, 256, [16, 32, 64, 128, 256, 512]),
    ("stops at the cap", 16, 100, 100, None, 10**9, 100, [16, 32, 64, 100]),
    ("halves a start that does not fit", 256, 4096, 100, 100, 10**9, 64, [256, 128, 64]),
    ("over budget at the start: halves", 256, 4096, 1000, None, 100_000, 64, [256, 128, 64]),
])
def test_auto_batch_size_rule(case, start, cap, per_image, oom_above, budget, want, tries):
    tried = []

    def try_batch(b):
        tried.append(b)
        if oom_above is not None and b > oom_above:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return per_image * b

    assert fit_batch(try_batch, start, cap, budget) == want, case
    assert tried == tries, case


def test_auto_batch_is_for_cuda_and_keeps_the_given_batch_on_the_cpu():
    assert fwd.use_auto_batch("auto", torch.device("cuda")) and not fwd.use_auto_batch("auto", CPU)
    assert not fwd.use_auto_batch("off", torch.device("cuda"))
    with pytest.raises(ConfigError, match=r"auto_batch='on' is invalid\. Valid: auto, off"):
        extract_features(tiny_model(), random_dataset(), cache=False, auto_batch="on")
    model = tiny_model()
    assert fwd.auto_batch_size(CutForward(model, model.cut_names, CPU), (3, 16, 16), 37, 10**6) == 37


def test_attention_kernel_report_reads_the_profiler():
    """timm's ViT attention runs SDPA (on the CPU: the flash kernel for CPU); with fused_attn off it is an explicit
    softmax; a CNN has none."""
    vit = _tiny_vit(depth=2)
    assert attention_kernels(vit) == {"flash (cpu)": 2}
    for block in vit.backbone.module.blocks:
        block.attn.fused_attn = False
    assert attention_kernels(vit) == {"none": 2}
    assert attention_kernels(tiny_model()) == {}


def test_sweep_settings_name_the_library_choices():
    help_text = {name: spec.help for name, spec in SweepConfig.declared()}
    assert f"{fwd.COMPILE_MIN_IMAGES:,}+" in help_text["compile"]
    defaults = SweepConfig.defaults()
    assert [defaults[k] for k in ("compile", "channels_last", "auto_batch", "decoder")] == ["auto"] * 4
    for field, bad in (("compile", "yes"), ("channels_last", "nhwc"), ("auto_batch", "on"), ("decoder", "nvjpeg")):
        with pytest.raises(ConfigError, match=rf"{field}='{bad}' is invalid\. Valid: auto"):
            SweepConfig(models=["zoo:simclr"], **{field: bad})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_forward_runs_bf16_sdpa_and_an_auto_batch_that_fits():
    from gr_explorer.models import load_model

    vit = load_model("timm:vit_base_patch16_224", weights="random")
    cuda = torch.device("cuda")
    kernels = attention_kernels(vit, cuda)
    assert set(kernels) & {"flash", "memory-efficient", "cudnn"} and sum(kernels.values()) == 12, kernels
    forward = CutForward(vit, vit.cut_names, cuda)
    b = fwd.auto_batch_size(forward, (3, 224, 224), 64, 10**6)
    assert 64 <= b <= fwd.MAX_BATCH
    out = forward(torch.zeros((b, 3, 224, 224), dtype=torch.uint8, device=cuda))
    assert out["pool"].dtype == torch.bfloat16 and out["pool"].shape == (b, 768)

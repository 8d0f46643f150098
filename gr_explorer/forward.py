"""The extraction forward near the hardware limit: torch.compile, channels_last, a batch that fills the GPU.

Why: capturing every cut costs 1.06x a plain forward on an H100 (benchmarks/README (a)), so the forward pass
itself is what is left to speed up. What this module adds around `Model.forward_cuts`, each one a setting:

* compile: `torch.compile` of the whole step (uint8 -> float, normalisation, forward, pooling of every cut)
  as one graph, so inductor fuses the elementwise work around the matmuls. Compiling costs tens of seconds the
  first time a model and batch shape are seen; inductor keeps the compiled code in its on-disk cache
  (`TORCHINDUCTOR_CACHE_DIR`, by default `/tmp/torchinductor_<user>`; point it at a lasting folder to keep it
  across reboots), so a later run of the same model and batch shape compiles from that cache in seconds.
  `auto` compiles on CUDA only when the run is big enough to earn that back (COMPILE_MIN_IMAGES). Any error
  while compiling or running the compiled graph is warned about once per model and the run goes on eagerly.
  The last, short batch is padded to the compiled batch size (eval-mode rows are independent), so one graph
  serves a whole run instead of a second compile for the remainder.
* channels_last: NHWC weights and inputs for convolutional models on CUDA (cuDNN's fast layout for tensor
  cores: ResNet-50 extraction 1.23 -> 0.92 s per 10,000 images on an H100, benchmarks/README (a)); ViTs gain
  nothing from it, so `auto` leaves token models alone.
* auto batch: on CUDA, the batch grows by doubling from the given size while the measured peak memory stays
  under MEMORY_FRACTION of the GPU, and backs off from an out-of-memory error; the CPU keeps the given size.
* `attention_kernels`: which scaled-dot-product-attention kernel a model's attention really runs (flash,
  memory-efficient, cuDNN, math, or none: explicit matmul + softmax), read off the profiler's op names.
"""

from __future__ import annotations

import threading
import warnings
from typing import Callable, Sequence

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from .device import autocast
from .errors import ConfigError
from .models import Column, Model
from .names import AUTO_OFF, AUTO_ON_OFF

COMPILE_MODES = CHANNELS_LAST_MODES = AUTO_ON_OFF  # declared in names.py
AUTO_BATCH_MODES = AUTO_OFF
#: `compile=auto` compiles only extractions of at least this many images. An estimate until measured on a GPU
#: (benchmarks/gpu_check.sh prints the break-even): a cold ViT-B/16 compile takes ~30-60 s; at ~7,600 images/s
#: eager, a 1.3x faster graph saves ~3 s per 100,000 images, so a cold compile pays from ~1M images and a cached
#: one (a few seconds) from ~100,000-200,000.
COMPILE_MIN_IMAGES = 250_000
#: auto batch: the largest peak share of the GPU's memory a batch may use
MEMORY_FRACTION = 0.8
#: auto batch: never more images per batch than this (throughput is flat long before; pinned buffers grow with it)
MAX_BATCH = 4096

#: SDPA kernels by the profiler's aten op name (CUDA and CPU)
SDPA_KERNELS = {
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash (cpu)",
    "aten::_scaled_dot_product_efficient_attention": "memory-efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_attention_math": "math",
    "aten::_scaled_dot_product_fused_attention_overrideable": "fused (backend-specific)",
}

_warned: set[str] = set()


def _check(name: str, value: str, valid: Sequence[str]) -> None:
    if value not in valid:
        raise ConfigError(f"{name}={value!r} is invalid. Valid: {', '.join(valid)}.")


def use_compile(mode: str, device: torch.device, n_images: int) -> bool:
    """on: always; off: never; auto: on CUDA for runs of at least COMPILE_MIN_IMAGES images."""
    _check("compile", mode, COMPILE_MODES)
    return mode == "on" or (mode == "auto" and device.type == "cuda" and n_images >= COMPILE_MIN_IMAGES)


def is_convolutional(model: Model) -> bool:
    """A CNN (convolutions beyond a ViT's patch embedding): the models channels_last helps."""
    if getattr(model.backbone, "tokens", False) or getattr(model.backbone, "num_prefix_tokens", 0):
        return False
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def use_channels_last(mode: str, model: Model, device: torch.device) -> bool:
    """on: always; off: never; auto: convolutional models on CUDA."""
    _check("channels_last", mode, CHANNELS_LAST_MODES)
    return mode == "on" or (mode == "auto" and device.type == "cuda" and is_convolutional(model))


def use_auto_batch(mode: str, device: torch.device) -> bool:
    """auto: grow the batch on CUDA (the CPU keeps the batch size it was given); off: never."""
    _check("auto_batch", mode, AUTO_BATCH_MODES)
    return mode == "auto" and device.type == "cuda"


class CutForward:
    """uint8 batch on the device -> {column: [B, dim]} under the device's autocast, compiled or eager.

    `cuts`: the columns to compute (models.Column: a cut read out one way), or cut names (read out the model's
    own way). Built once per extraction (so a model compiles once per run, not once per split). `backend` is
    torch.compile's (inductor; the tests also use aot_eager, which traces without generating code).
    """

    def __init__(self, model: Model, cuts: Sequence[str] | Sequence[Column], device: torch.device, *,
                 compile: bool = False, channels_last: bool = False, backend: str = "inductor",
                 interrupt: Callable[[], None] | None = None):
        cuts = list(cuts)
        self.columns = model.columns(model.resolve_cuts(cuts)) if cuts and isinstance(cuts[0], str) else cuts
        self.model, self.names, self.device = model, [c.name for c in self.columns], device
        self.channels_last = channels_last
        model.eval().to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        self.compiled: Callable | None = torch.compile(self.eager, backend=backend, dynamic=False) if compile else None
        #: the batch size the compiled graph is built for (smaller batches are padded to it); None: the first one's
        self.graph_batch: int | None = None
        self._hooks = [] if interrupt is None or compile else _interrupt_hooks(model, interrupt)

    def close(self) -> None:
        """Remove the interrupt hooks (the model may be shared with other runs)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []

    @property
    def is_compiled(self) -> bool:
        return self.compiled is not None

    def eager(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with autocast(self.device):
            x = self.model.preprocessing(x)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            out = self.model.forward_readouts(x, self.columns)
            return {c.name: out[(c.cut.name, c.applied)] for c in self.columns}

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.compiled is not None:
            try:
                return self._run_compiled(x)
            except torch.OutOfMemoryError:
                raise  # the eager forward would not fit either
            except Exception as e:  # dynamo, inductor and the C/C++/Triton toolchains raise many types
                self._fall_back(e)
        return self.eager(x)

    def _run_compiled(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        b = x.shape[0]
        if self.graph_batch is None:
            self.graph_batch = b
        if b < self.graph_batch:  # the last, short batch: pad it rather than compile a second graph
            pad = x.new_zeros((self.graph_batch - b, *x.shape[1:]))
            return {k: v[:b] for k, v in self.compiled(torch.cat([x, pad])).items()}
        return self.compiled(x)

    def _fall_back(self, e: Exception) -> None:
        self.compiled = None
        if self.model.name not in _warned:
            _warned.add(self.model.name)
            cause = getattr(e, "inner_exception", None) or e.__cause__ or e  # dynamo wraps the backend's error
            first = (str(cause).strip().splitlines() or [""])[0][:300]
            warnings.warn(f"torch.compile failed for {self.model.name} ({type(cause).__name__}: {first}); extracting "
                          "without it (same features, eager speed). Set compile=off to skip the attempt.", stacklevel=4)


def _interrupt_hooks(model: Model, interrupt: Callable[[], None]) -> list:
    """Call `interrupt()` (which raises to stop) before every module's forward, on this thread only.

    Why: one batch of a large model on a CPU can take minutes, so a cancel checked between batches is not
    enough. The hooks fire only for the thread that registered them, because a model is shared by every
    session of the app and another session's forward must not stop on this one's cancel. The check costs
    well under a microsecond per module; compiled graphs get no hooks (they would break the graph)."""
    owner = threading.get_ident()

    def hook(module, args) -> None:
        if threading.get_ident() == owner:
            interrupt()

    return [m.register_forward_pre_hook(hook) for m in model.modules()]


def fit_batch(try_batch: Callable[[int], int], start: int, cap: int, budget: int) -> int:
    """The batch size to use: doubling from `start` (at most `cap`) while `try_batch(b)`, the bytes batch b needs
    (which grow in proportion to b), stays under `budget`; a batch that runs out of memory or over budget ends
    the growth at the last good one, and one whose double would cross the budget is not tried. If `start`
    itself does not fit, it is halved until one does (down to 1)."""
    good, b = None, max(1, start)
    while True:
        try:
            peak = try_batch(b)
        except torch.OutOfMemoryError:
            peak = None
        if peak is None or peak > budget:
            if good is not None:
                return good
            if b == 1:
                return 1
            b = max(1, b // 2)
            continue
        good = b
        if b >= cap or good < start or peak * 2 > budget:  # doubling again would cross the budget
            return good
        b = min(2 * b, cap)


def auto_batch_size(forward: CutForward, image_shape: Sequence[int], start: int, n_images: int) -> int:
    """On CUDA: the largest batch (doubling from `start`, at most MAX_BATCH and no more than the images there are)
    whose forward peaks under MEMORY_FRACTION of the GPU's memory, not counting what other processes hold."""
    device = forward.device
    if device.type != "cuda":
        return start
    free, total = torch.cuda.mem_get_info(device)
    others = total - free - torch.cuda.memory_reserved(device)
    budget = int(MEMORY_FRACTION * total) - max(0, others)
    cap = max(start, min(MAX_BATCH, n_images))
    base = torch.cuda.memory_allocated(device)  # the weights and whatever else is already held

    def try_batch(b: int) -> int:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        try:
            forward.eager(torch.zeros((b, *image_shape), dtype=torch.uint8, device=device))
            torch.cuda.synchronize(device)
            return torch.cuda.max_memory_allocated(device) - base
        finally:
            torch.cuda.empty_cache()

    with torch.no_grad():
        return fit_batch(try_batch, start, cap, budget - base)


def attention_kernels(model: Model, device: torch.device | str = "cpu", batch: int = 2) -> dict[str, int]:
    """{kernel: calls} of the scaled-dot-product-attention kernels one forward of `batch` images runs, under the
    device's autocast; {"none": n} counts softmax calls when attention is computed without SDPA (e.g. timm's
    `fused_attn=False`), and {} means the model has no attention."""
    device = torch.device(device)
    fwd = CutForward(model, [model.cut_names[-1]], device)
    s = model.preprocessing.input_size
    x = torch.zeros((batch, 3, s, s), dtype=torch.uint8, device=device)
    with profile(activities=[ProfilerActivity.CPU]) as prof:  # aten ops are recorded on the CPU side for CUDA too
        fwd(x)
    calls = {e.key: e.count for e in prof.key_averages()}
    found = {SDPA_KERNELS[k]: n for k, n in calls.items() if k in SDPA_KERNELS}
    if not found and calls.get("aten::softmax"):
        found["none"] = calls["aten::softmax"]
    return found

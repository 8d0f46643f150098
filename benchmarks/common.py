"""Shared set-up for the benchmarks: CIFAR-10 from ../shared/data and the two models measured."""

from __future__ import annotations

import time
from pathlib import Path

import torch

CIFAR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"


def cifar10(n_train: int, n_test: int, seed: int = 0):
    from gr_explorer.data import load_dataset

    if not CIFAR.exists():
        raise SystemExit(f"{CIFAR} not found: the benchmarks read CIFAR-10 PNGs from ../shared/data/cifar10.")
    return load_dataset(f"imagefolder:{CIFAR}", n_train=n_train, n_test=n_test, seed=seed)


def zoo_format_model():
    """The shipped zoo:simclr when present, else the same architecture with random weights."""
    from gr_explorer.models import build_model, list_zoo, load_model

    if "simclr" in list_zoo():
        return load_model("zoo:simclr")
    card = {"architecture": {"backbone": {"type": "resnet_small", "width": 16, "depths": [1, 1, 1, 1]},
                             "projector": {"spec": "512-512-128", "norm": "bn", "act": "relu"}},
            "preprocessing": {"input_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}}
    return build_model(card, name="resnet_small(random)")


def resnet18(input_size: int):
    from dataclasses import replace

    from gr_explorer.models import load_model

    model = load_model("timm:resnet18", weights="random")
    model.preprocessing = replace(model.preprocessing, input_size=input_size)
    return model


class Timer:
    def __enter__(self):
        self.t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t


def sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_of(fns: dict, repeats: int, device: torch.device | None = None) -> dict[str, float]:
    """Seconds of each zero-argument function, best of `repeats`, run interleaved so that drift or other jobs'
    load hit all alike (the GPU is synchronised around each run when `device` is CUDA)."""
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            if device is not None:
                sync(device)
            t = time.perf_counter()
            fn()
            if device is not None:
                sync(device)
            best[k] = min(best[k], time.perf_counter() - t)
    return best


def proc_status(field: str) -> int:
    """Bytes of a /proc/self/status memory field: VmRSS now, VmHWM its peak (unlike ru_maxrss, VmHWM is not
    inherited across exec, so a child process reports its own peak)."""
    with open("/proc/self/status") as f:
        return 1024 * next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

"""TrainConfig: one training run as data, and its exact `gr-explorer train` command line.

Every field is a CLI flag (`--field-name`, generated from the dataclass), so the
card's command reproduces the run and the app, the CLI and the library all
speak the same settings. `to_command()` writes only the fields that differ
from their defaults, plus `--objective` and `--out`.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import MISSING, asdict, dataclass, field, fields

from ..errors import did_you_mean
from .augment import AugmentConfig
from .errors import TrainingError

OPTIMIZERS = ("adamw", "sgd")


def _f(default, help: str, kind: str, **kw):
    """A dataclass field whose metadata says how it is spelled and parsed on the command line."""
    meta = {"help": help, "kind": kind, **kw}
    if isinstance(default, (list, dict, tuple)) and not isinstance(default, tuple):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    # what to train
    objective: str = _f("simclr", "simclr, vicreg, byol, barlow, supervised, label_aligned", "str")
    dataset: str = _f("shapes", "dataset spec: shapes, digits, cifar10, imagefolder:<path> ...", "str")
    n_train: int | None = _f(8000, "training images (stratified subsample; shapes: generated at this size)", "int")
    data_seed: int = _f(0, "dataset seed (shapes: which images are generated)", "int")
    image_size: int | None = _f(None, "resize images to this size (default: the dataset's size)", "int")
    label_task: str | None = _f(None, "task whose labels supervised / label_aligned use, e.g. shape", "str")
    p: float = _f(0.5, "label_aligned: weight of the positives that are the other images of the anchor's class (0 = SimCLR, 1 = SupCon-like)", "float")
    # architecture
    backbone: str = _f("resnet_small", "resnet_small, or a timm model name (timm:<name> or <name>), random init", "str")
    width: int = _f(16, "resnet_small: channels of the first stage (doubled per stage)", "int")
    depths: tuple[int, ...] = _f((1, 1, 1, 1), "resnet_small: blocks per stage, comma-separated", "ints")
    backbone_kwargs: dict = _f({}, "timm backbones: JSON kwargs for timm.create_model, e.g. '{\"img_size\": 32}'", "json")
    projector: str = _f("512-512-128", "projector widths joined by '-', last = output; 'none' for no projector", "str")
    projector_norm: str = _f("bn", "projector hidden-layer norm: bn, ln, none", "str")
    projector_act: str = _f("relu", "projector hidden-layer activation: relu, gelu", "str")
    # augmentations (see augment.py)
    crop_scale: tuple[float, float] = _f((0.3, 1.0), "random resized crop area range, 'min,max'", "floats")
    crop_ratio: tuple[float, float] = _f((3 / 4, 4 / 3), "random resized crop aspect-ratio range, 'min,max'", "floats")
    flip_p: float = _f(0.5, "horizontal flip probability", "float")
    color_jitter: float = _f(0.8, "colour jitter strength s (0 off; SimCLR 0.8)", "float")
    color_jitter_p: float = _f(0.8, "probability of colour jitter", "float")
    gray_p: float = _f(0.2, "grayscale probability", "float")
    blur_p: float = _f(0.0, "Gaussian blur probability", "float")
    blur_sigma: tuple[float, float] = _f((0.1, 1.5), "blur sigma range in pixels, 'min,max'", "floats")
    # optimisation
    optimizer: str = _f("adamw", "adamw or sgd (momentum 0.9, nesterov)", "str")
    lr: float = _f(2e-3, "peak learning rate (linear warm-up, then cosine decay to 0)", "float")
    weight_decay: float = _f(1e-4, "weight decay (not applied to norms and biases)", "float")
    warmup_epochs: float = _f(0.5, "linear warm-up length in epochs", "float")
    batch_size: int = _f(256, "images per step (each gives two views for the SSL objectives)", "int")
    epochs: int = _f(6, "passes over the training images", "int")
    max_steps: int | None = _f(None, "stop after this many steps (default: all epochs)", "int")
    time_budget: float | None = _f(None, "seconds the run may take: after timing a few steps, --epochs is lowered to the "
                                         "whole epochs that fit (the card records the epochs used)", "float")
    seed: int = _f(0, "seed of the weights, the batch order and the augmentations", "int")
    device: str = _f("auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps", "str")
    # objective hyper-parameters
    temperature: float = _f(0.5, "simclr / label_aligned: NT-Xent temperature", "float")
    barlow_lambda: float = _f(5e-3, "barlow: weight of the off-diagonal term", "float")
    sim_coeff: float = _f(25.0, "vicreg: invariance coefficient", "float")
    std_coeff: float = _f(25.0, "vicreg: variance coefficient", "float")
    cov_coeff: float = _f(1.0, "vicreg: covariance coefficient", "float")
    byol_tau: float = _f(0.99, "byol: base EMA momentum of the target (cosine schedule to 1)", "float")
    byol_predictor_hidden: int = _f(512, "byol: hidden width of the predictor MLP", "int")
    byol_predictor_lr: float = _f(1.0, "byol: the predictor's learning rate as a multiple of --lr (a predictor that "
                                       "adapts faster than the network it predicts; SimSiam, DirectPred)", "float")
    # output
    out: str = _f("runs/train/model.safetensors", "checkpoint path (.safetensors; the card is written next to it)", "str")
    save_dtype: str = _f("float32", "how the checkpoint stores its weights: float32, or float16 (half the size; --eval "
                                    "measures the stored weights)", "str")
    description: str | None = _f(None, "one-line description for the card (default: generated)", "str")
    eval: bool = _f(False, "after training, sweep all cuts with linear probes on held-out data; results go in the card", "bool")
    eval_n_train: int = _f(2000, "--eval: probe training images", "int")
    eval_n_test: int = _f(1000, "--eval: probe test images (the dataset's test split)", "int")
    eval_seed: int | None = _f(None, "--eval: dataset seed (default data_seed + 1: images the training never saw)", "int")
    eval_tasks: list[str] | None = _f(None, "--eval: comma-separated tasks (default: all)", "strs")

    def __post_init__(self):
        self.depths = tuple(int(d) for d in self.depths)
        self.crop_scale, self.crop_ratio, self.blur_sigma = (tuple(float(v) for v in t) for t in (self.crop_scale, self.crop_ratio, self.blur_sigma))
        if isinstance(self.eval_tasks, str):
            self.eval_tasks = [t for t in self.eval_tasks.split(",") if t]

    # -- views ----------------------------------------------------------------
    def augmentations(self) -> AugmentConfig:
        return AugmentConfig(crop_scale=self.crop_scale, crop_ratio=self.crop_ratio, flip_p=self.flip_p,
                             color_jitter=self.color_jitter, color_jitter_p=self.color_jitter_p, gray_p=self.gray_p,
                             blur_p=self.blur_p, blur_sigma=self.blur_sigma)

    def objective_options(self) -> dict:
        return {"temperature": self.temperature, "p": self.p, "barlow_lambda": self.barlow_lambda, "sim_coeff": self.sim_coeff,
                "std_coeff": self.std_coeff, "cov_coeff": self.cov_coeff, "byol_tau": self.byol_tau,
                "byol_predictor_hidden": self.byol_predictor_hidden, "byol_predictor_lr": self.byol_predictor_lr}

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        extra = sorted(set(d) - known)
        if extra:
            raise TrainingError(f"Unknown training setting(s) {extra}. {did_you_mean(extra[0], sorted(known))}")
        return cls(**d)

    # -- checks -----------------------------------------------------------------
    def validate(self) -> None:
        """Fail before any work, naming the bad setting and the valid values."""
        from .objectives import OBJECTIVES

        if self.objective not in OBJECTIVES:
            raise TrainingError(f"Unknown objective {self.objective!r}. {did_you_mean(self.objective, OBJECTIVES)}")
        if OBJECTIVES[self.objective].needs_labels and not self.label_task:
            raise TrainingError(f"Objective {self.objective!r} needs labels: pass --label-task <task> (e.g. shape for the shapes dataset).")
        if self.optimizer not in OPTIMIZERS:
            raise TrainingError(f"Unknown optimizer {self.optimizer!r}. Valid: {', '.join(OPTIMIZERS)}.")
        for name in ("batch_size", "epochs", "width"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name} must be >= 1, got {getattr(self, name)!r}.")
        if self.batch_size < 2:
            raise TrainingError(f"batch_size must be >= 2 (the SSL losses contrast images of a batch), got {self.batch_size}.")
        if not self.depths or any(d < 1 for d in self.depths):
            raise TrainingError(f"depths={list(self.depths)!r} is invalid. Valid: blocks per stage, each >= 1, e.g. 1,1,1,1.")
        if self.save_dtype not in ("float32", "float16"):
            raise TrainingError(f"save_dtype={self.save_dtype!r} is invalid. Valid: float32, float16.")
        if self.time_budget is not None and not self.time_budget > 0:
            raise TrainingError(f"time_budget must be a positive number of seconds or unset, got {self.time_budget!r}.")
        if self.max_steps is not None and self.max_steps < 1:
            raise TrainingError(f"max_steps must be >= 1 or unset, got {self.max_steps!r}.")
        if not self.byol_predictor_lr > 0:
            raise TrainingError(f"byol_predictor_lr must be > 0 (a multiple of lr), got {self.byol_predictor_lr!r}.")
        if self.lr <= 0 or self.weight_decay < 0 or self.warmup_epochs < 0:
            raise TrainingError(f"Need lr > 0, weight_decay >= 0, warmup_epochs >= 0; got lr={self.lr}, "
                                f"weight_decay={self.weight_decay}, warmup_epochs={self.warmup_epochs}.")
        if not 0.0 <= self.p <= 1.0:
            raise TrainingError(f"p={self.p!r} is invalid. Valid: a weight in [0, 1] (0 = SimCLR, 1 = every positive another image of the class).")
        self.augmentations()  # validates the augmentation settings

    # -- command line -------------------------------------------------------------
    def to_command(self) -> str:
        """The `gr-explorer train ...` line that rebuilds exactly this config."""
        parts = ["gr-explorer", "train"]
        for f in fields(self):
            value = getattr(self, f.name)
            default = f.default if f.default is not MISSING else f.default_factory()
            if f.name not in ("objective", "out") and _same(value, default):
                continue
            flag = "--" + f.name.replace("_", "-")
            kind = f.metadata["kind"]
            if kind == "bool":
                if value:
                    parts.append(flag)
                continue
            if value is None:
                continue
            parts += [flag, format_value(kind, value)]
        return " ".join(shlex.quote(p) for p in parts)


def _same(a, b) -> bool:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return list(a) == list(b)
    return a == b


def format_value(kind: str, value) -> str:
    if kind in ("ints", "floats", "strs"):
        return ",".join(_num(v) for v in value)
    if kind == "json":
        return json.dumps(value, separators=(",", ":"))
    return _num(value)


def _num(v) -> str:
    return repr(v) if isinstance(v, float) else str(v)


def parse_value(kind: str, text: str, name: str):
    """Flag text -> value (the shared flag parser), with a TrainingError naming the flag and the expected form."""
    from ..flags import parse_flag

    value = parse_flag(kind, text, "--" + name.replace("_", "-"), TrainingError)
    return list(value) if kind == "strs" else value


def config_fields():
    """(name, kind, help, default) of every TrainConfig field, in declaration order."""
    for f in fields(TrainConfig):
        default = f.default if f.default is not MISSING else f.default_factory()
        yield f.name, f.metadata["kind"], f.metadata["help"], default

"""The training loop: config -> trained Model -> checkpoint in the zoo format (+ card).

Short on purpose (nanoGPT style): load images once onto the device, then per
step draw a batch, make the views with batched augmentations, compute the
objective, step the optimiser. Deterministic on CPU for a given seed: the
weights come from torch.manual_seed(seed), the batch order and every
augmentation from explicit generators. bf16 autocast on CUDA.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import timm
import torch

from ..augment import augment
from ..data import dataset_tasks, image_bytes, load_dataset
from ..device import autocast, resolve_device
from ..errors import GRExplorerError, TrainingError, did_you_mean
from ..files import check_writable, expand_user
from ..limits import check_memory, size_text
from ..models import Model, Preprocessing, build_model, save_checkpoint
from .config import TrainConfig
from .evaluate import evaluate
from .live import LiveProbes, OnProbe
from .objectives import make_objective

#: progress(step, epoch, loss): called after every optimiser step (step counts from 1, epoch from 0).
Progress = Callable[[int, int, float], None]


@dataclass
class TrainResult:
    model: Model
    path: Path
    card: dict
    losses: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    stopped_early: bool = False


# ----------------------------------------------------------------------------------------------
# pieces


def check_train_memory(config: TrainConfig, available: int | None = None) -> None:
    """The training images fit in memory (they are held there, and on the device, for the whole run): TrainingError
    naming n_train otherwise (limits.check_memory)."""
    need, _ = image_bytes(config.dataset, config.n_train, 1, config.image_size)
    per, _ = image_bytes(config.dataset, 1, 1, config.image_size)
    spec = TrainConfig.spec("n_train")
    setting = f"n_train={config.n_train:,} ({spec.flag_name}, '{spec.widget_label}' in the app)" if config.n_train \
        else "n_train=all"
    check_memory(need, f"the {config.dataset} training images ({size_text(need)})", setting, per, TrainingError,
                 available)


def load_train_dataset(config: TrainConfig, should_stop: Callable[[], bool] | None = None):
    """The dataset the run trains on (its train split); label task checked against the dataset's tasks, and its
    size against this machine's memory, before any image is made."""
    check_train_memory(config)
    tasks = None
    if config.label_task:
        valid = dataset_tasks(config.dataset)
        if config.label_task not in valid:
            raise TrainingError(f"Label task {config.label_task!r} is not a task of dataset {config.dataset!r}. {did_you_mean(config.label_task, valid)}")
        tasks = [config.label_task]
    return load_dataset(config.dataset, tasks=tasks, n_train=config.n_train, n_test=None, seed=config.data_seed,
                        image_size=config.image_size, should_stop=should_stop)


def architecture(config: TrainConfig) -> dict:
    """The card's `architecture` entry (what checkpoint.build_model rebuilds)."""
    if config.backbone == "resnet_small":
        backbone = {"type": "resnet_small", "width": config.width, "depths": list(config.depths)}
    else:
        name = config.backbone.removeprefix("timm:")
        if not timm.is_model(name):
            raise TrainingError(f"Unknown backbone {config.backbone!r}: neither resnet_small nor a timm model name. "
                                f"{did_you_mean(name, ['resnet_small', *timm.list_models()])}")
        backbone = {"type": "timm", "name": name, "kwargs": dict(config.backbone_kwargs)}
    projector = None
    if str(config.projector).strip().lower() not in ("", "none"):
        projector = {"spec": config.projector, "norm": config.projector_norm, "act": config.projector_act}
    return {"backbone": backbone, "projector": projector}


def data_preprocessing(images: torch.Tensor, input_size: int) -> Preprocessing:
    """Per-channel mean/std of the training images: what the model will expect at probe time."""
    x = images[: 20000].float().div_(255.0)
    mean = x.mean((0, 2, 3))
    std = x.std((0, 2, 3)).clamp_min(1e-3)
    return Preprocessing(input_size=input_size, mean=tuple(round(float(v), 4) for v in mean),
                         std=tuple(round(float(v), 4) for v in std))


def build_train_model(config: TrainConfig, preprocessing: Preprocessing) -> Model:
    """Random-init Model built exactly the way a checkpoint is loaded (checkpoint.build_model)."""
    torch.manual_seed(config.seed)
    card = {"architecture": architecture(config), "preprocessing": preprocessing.as_dict(), "readout": "cls"}
    try:
        return build_model(card, name=Path(config.out).stem)
    except GRExplorerError as e:
        raise TrainingError(str(e)) from e


def make_optimizer(config: TrainConfig, params, lr_scales: dict | None = None) -> torch.optim.Optimizer:
    """Weight decay on weights only (not on norm scales and biases); `lr_scales` maps parameters trained at a
    multiple of the learning rate to it (each group's `lr_scale`, applied by the schedule)."""
    scales = lr_scales or {}
    groups: dict[tuple[bool, float], list] = {}
    for p in params:
        if p.requires_grad:
            groups.setdefault((p.ndim >= 2, float(scales.get(p, 1.0))), []).append(p)
    groups = [{"params": ps, "weight_decay": config.weight_decay if decay else 0.0, "lr_scale": scale}
              for (decay, scale), ps in sorted(groups.items(), key=lambda kv: (not kv[0][0], kv[0][1]))]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=config.lr)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """The schedule's learning rate on every group, times the group's `lr_scale` (make_optimizer)."""
    for group in opt.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warm-up to `peak`, then cosine decay to 0."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def plan(config: TrainConfig, n_images: int) -> tuple[int, int, int]:
    """(batch size, steps per epoch, total steps): full batches only, so BatchNorm never sees a tiny batch."""
    bs = min(config.batch_size, n_images)
    if bs < 2:
        raise TrainingError(f"Dataset {config.dataset!r} has {n_images} training image(s); training needs at least 2.")
    per_epoch = n_images // bs
    total = per_epoch * config.epochs
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    return bs, per_epoch, total


# ----------------------------------------------------------------------------------------------
# the loop


def check_output(config: TrainConfig) -> Path:
    """Prove, before any work, that the checkpoint can be written at `config.out` (not a folder, its folder writable)."""
    out = expand_user(config.out, "checkpoint path (--out)", TrainingError)
    if out.is_dir():
        raise TrainingError(f"The checkpoint path (--out) {config.out!r} is a folder. Valid: a file path such as "
                            f"{str(out / 'model.safetensors')!r}.")
    check_writable(out.parent, f"folder of the checkpoint path (--out) {config.out!r}, i.e.")
    return out


def train(config: TrainConfig, progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
          dataset=None, on_probe: OnProbe | None = None) -> TrainResult:
    """Train, save the checkpoint + card at `config.out`, optionally evaluate on held-out data.

    `should_stop()` is polled after every step; when it returns True (or on
    Ctrl-C) the run stops and the checkpoint is still written, with
    `training.stopped_early` set in the card (and no --eval sweep). `dataset`
    replaces loading `config.dataset` (its train split is used). With `probe_every`, every cut is probed on a
    held-out set before the first step, every N epochs and after the last step (training/live.py);
    `on_probe(table, summary)` hears each probe step.
    """
    check_output(config)
    device = resolve_device(config.device)
    t0 = time.perf_counter()
    ds = dataset if dataset is not None else load_train_dataset(config, should_stop)
    run = _Run(config, ds, device, t0)
    live = LiveProbes(config, on_probe) if config.probe_every else None
    try:
        run.steps(progress, should_stop, live)
    except KeyboardInterrupt:  # Ctrl-C: keep what was learned
        run.stopped = run.interrupted = True
        run.pending.clear()
    seconds = time.perf_counter() - t0
    config, model = run.config, run.model.eval()
    card = make_card(config, ds, run.objective, run.losses, run.step, run.total, run.per_epoch, run.bs, seconds,
                     run.stopped, device)
    if run.interrupted:
        card["training"]["stopped_by"] = "KeyboardInterrupt"
    if live is not None:
        live.write_figures()
        card["live_probes"] = live.card()
        card["training"]["live_probe_seconds"] = round(live.seconds, 2)
    path = save_checkpoint(model, config.out, card, config.save_dtype)
    if config.eval and not run.stopped:  # a stopped run is saved as is; sweep it by hand if wanted
        card["results"] = evaluate(f"file:{path}", config)
        path = save_checkpoint(model, config.out, card, config.save_dtype)
    return TrainResult(model=model, path=path, card=card, losses=run.losses, steps=run.step, seconds=seconds,
                       stopped_early=run.stopped)


class _Run:
    """The state of one training run: model, objective, optimiser, generators, and where the loop is."""

    def __init__(self, config: TrainConfig, ds, device: torch.device, t0: float):
        self.config, self.device, self.t0 = config, device, t0
        images = ds.train_images
        self.labels = ds.train_labels[config.label_task].to(device) if config.label_task else None
        n_classes = len(ds.classes[config.label_task]) if config.label_task else None
        self.pre = data_preprocessing(images, config.image_size or int(images.shape[-1]))
        self.model = build_train_model(config, self.pre).to(device).train()
        self.objective = make_objective(config.objective, **config.objective_options())
        self.objective.setup(self.model, n_classes)
        self.opt = make_optimizer(config, list(self.model.parameters()) + list(self.objective.parameters()),
                                  self.objective.lr_scales())
        self.aug = config.augmentations()
        self.images = images.to(device)
        self.bs, self.per_epoch, self.total = plan(config, self.images.shape[0])
        self.warmup = int(round(config.warmup_epochs * self.per_epoch))
        self.order_gen = torch.Generator().manual_seed(config.seed)  # batch order (CPU: same order on every device)
        self.aug_gen = torch.Generator(device=device).manual_seed(config.seed + 1)  # views
        self.losses: list[float] = []
        self.pending: list[tuple[int, int, torch.Tensor]] = []  # (step, epoch, loss on the device) not read back
        # Reading a loss back waits for the device; on a GPU do it every few steps so the GPU never idles.
        self.read_every = 1 if device.type == "cpu" else 16
        self.step = self.epoch = 0
        self.stopped = self.interrupted = False
        self.timed_from: float | None = None

    def read_back(self, progress: Progress | None) -> None:
        for s, e, value in self.pending:
            v = float(value)
            if not math.isfinite(v):
                raise TrainingError(f"The {self.config.objective} loss became {v} at step {s}; lower the learning rate "
                                    f"(--lr, now {self.config.lr}) or use --optimizer adamw.")
            self.losses.append(v)
            if progress is not None:
                progress(s, e, v)
        self.pending.clear()

    def one_step(self, idx: torch.Tensor) -> torch.Tensor:
        config = self.config
        set_lr(self.opt, lr_at(self.step, self.total, self.warmup, config.lr))
        x = self.pre.to_unit(self.images[idx])
        y = self.labels[idx] if self.labels is not None else None
        views = [self.pre.normalize(augment(x, self.aug, self.aug_gen)) for _ in range(self.objective.n_views)]
        with autocast(self.device):
            loss = self.objective(self.model, views, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        self.objective.step_end(self.model, self.step, self.total)
        return loss.detach()

    def steps(self, progress: Progress | None, should_stop: Callable[[], bool] | None,
              live: LiveProbes | None = None) -> None:
        if live is not None:
            live.probe(self.model, 0, 0, should_stop)  # the random init: where every curve starts
        while self.step < self.total and not self.stopped:
            perm = torch.randperm(self.images.shape[0], generator=self.order_gen).to(self.device)
            for i in range(self.per_epoch):
                if self.step >= self.total:
                    break
                loss = self.one_step(perm[i * self.bs:(i + 1) * self.bs])
                self.pending.append((self.step, self.epoch, loss))
                if len(self.pending) >= self.read_every or self.step >= self.total:
                    self.read_back(progress)
                self.check_budget()
                if should_stop is not None and self.step < self.total and should_stop():
                    self.stopped = True
                    break
            self.epoch += 1
            if live is not None and not self.stopped and (live.due(self.epoch) or self.step >= self.total):
                self.read_back(progress)
                live.probe(self.model, self.step / self.per_epoch, self.step, should_stop)
                self.stopped = should_stop is not None and should_stop()  # a stop pressed during the probe step
        self.read_back(progress)

    def check_budget(self) -> None:
        """With a time budget: time a few steps, then fix the epochs that fit (a new config records them)."""
        if not self.config.time_budget:
            return
        if self.step == TIMING_STEPS[0]:
            self.timed_from = time.perf_counter()
        elif self.step == TIMING_STEPS[1] and self.timed_from is not None:
            now = time.perf_counter()
            per_step = (now - self.timed_from) / (TIMING_STEPS[1] - TIMING_STEPS[0])
            self.config, self.total = fit_budget(self.config, now - self.t0, per_step, self.per_epoch, self.step)


@dataclass(frozen=True)
class StepTiming:
    """What a training run costs on this machine now: setting up (building the model and its optimiser), making or
    loading each training image, and each optimiser step. A run of `steps` steps on `n_images` images takes about
    `seconds(steps, n_images)`."""

    per_step: float
    per_image: float
    setup: float

    def seconds(self, steps: int, n_images: int) -> float:
        return self.setup + self.per_image * n_images + self.per_step * steps


def time_training(config: TrainConfig, steps: int = 3) -> StepTiming:
    """This machine's StepTiming for `config` now: the dataset of two batches loaded, the run set up, one warm-up
    step, then `steps` timed.

    Why measured: a step's cost depends on the architecture, the batch, the objective and how busy the machine
    is, so a fixed figure in the app would be wrong somewhere; and the images (generated `shapes`, decoded files)
    and the set-up are part of what a user waits for. The run is the real one (model, objective, augmentations,
    optimiser) on a few batches of the real dataset, so it is what `train` will do."""
    small = replace(config, n_train=config.batch_size * 2, epochs=steps + 1, max_steps=None, time_budget=None,
                    eval=False)
    t0 = time.perf_counter()
    ds = load_train_dataset(small)
    t1 = time.perf_counter()
    run = _Run(small, ds, resolve_device(config.device), time.perf_counter())
    t2 = time.perf_counter()
    idx = torch.arange(run.bs, device=run.device)
    run.one_step(idx)  # warm-up: first-call allocations and kernel choices
    t3 = time.perf_counter()
    for _ in range(steps):
        float(run.one_step(idx))  # read back: the device has finished the step
    per_step = (time.perf_counter() - t3) / steps
    return StepTiming(per_step=per_step, per_image=(t1 - t0) / max(1, ds.n_train), setup=t2 - t1)


#: with a time budget, steps (from, to) timed to decide how many epochs fit (before warm-up ends)
TIMING_STEPS = (3, 13)


def fit_budget(config: TrainConfig, elapsed: float, per_step: float, per_epoch: int, step: int) -> tuple[TrainConfig, int]:
    """(config with the whole epochs that fit the time budget, at least 1, at most the planned ones; its total steps).

    The new config has no time budget, so the card's command reproduces the run with --epochs.
    """
    left = config.time_budget - elapsed
    epochs = max(1, min(config.epochs, int((step + left / per_step) // per_epoch)))
    fitted = replace(config, epochs=epochs, time_budget=None)
    total = per_epoch * epochs
    return fitted, (min(total, config.max_steps) if config.max_steps is not None else total)


#: what a stopped run's description says (see make_card)
INCOMPLETE_MARK = "[INCOMPLETE]"


def describe_run(config: TrainConfig) -> str:
    """Default one-line description for the card."""
    obj = config.objective if config.objective != "label_aligned" else f"label_aligned p={config.p:g}"
    if config.label_task:
        obj += f" ({config.label_task})"
    bb = f"SmallResNet w{config.width} {'-'.join(map(str, config.depths))}" if config.backbone == "resnet_small" else config.backbone
    aug = f"jitter {config.color_jitter:g}@{config.color_jitter_p:g}, gray {config.gray_p:g}, flip {config.flip_p:g}, crop {config.crop_scale[0]:g}-{config.crop_scale[1]:g}"
    return (f"{obj}; {bb} + projector {config.projector}; {config.dataset} {config.n_train or 'all'} imgs x {config.epochs} ep; {aug}")


def make_card(config, ds, objective, losses, steps, total, per_epoch, bs, seconds, stopped, device) -> dict:
    """The checkpoint's card. A run stopped before its last planned step says so: `complete` is false and the
    description ends with INCOMPLETE_MARK, so no reader (Compare's seed groups, the zoo's README) takes it for the
    recipe it did not finish."""
    per_epoch_loss = [sum(losses[i:i + per_epoch]) / len(losses[i:i + per_epoch]) for i in range(0, len(losses), per_epoch)]
    description = config.description or describe_run(config)
    if stopped:
        description += f" {INCOMPLETE_MARK}: stopped at step {steps:,} of {total:,}"
    return {
        "description": description,
        "complete": not stopped,
        "architecture": architecture(config),
        "objective": config.objective,
        "objective_params": objective.describe(),
        "augmentations": config.augmentations().as_dict(),
        "config": config.as_dict(),
        "command": config.to_command(),
        "dataset": {"spec": config.dataset, "split": "train", "n_images": int(ds.n_train), "seed": config.data_seed,
                    "label_task": config.label_task, "params": ds.params},
        "training": {"steps": steps, "planned_steps": total, "batch_size": bs, "epochs_done": round(steps / max(1, per_epoch), 3),
                     "wall_time_s": round(seconds, 2), "final_loss": losses[-1] if losses else None,
                     "loss_per_epoch": [round(v, 5) for v in per_epoch_loss], "stopped_early": bool(stopped),
                     "device": str(device), "torch": torch.__version__,
                     "images_per_s": round(steps * bs / seconds, 1) if seconds > 0 else None},
    }

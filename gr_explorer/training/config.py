"""TrainConfig: one training run as data, every setting declared once (see settings.py), and its exact command.

The declarations generate the `gr-explorer train` flags, the card's `config`
JSON, the Train page's widget defaults, ranges and help, and the checks that
run when a TrainConfig is built. `to_command()` writes only the settings that
differ from their defaults, plus `--objective` and `--out`, so a card's
command rebuilds its run exactly. A TrainConfig is frozen: code that changes a
setting (a time budget fixing the epochs) makes a new one with `replace`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..augment import AugmentConfig
from ..errors import TrainingError
from ..names import (
    LABELLED_OBJECTIVES,
    OBJECTIVES,
    OPTIMIZERS,
    PROJECTOR_ACTS,
    PROJECTOR_NORMS,
    STORAGE_DTYPES,
)
from ..settings import (
    DEVICE,
    MAX_IMAGES,
    SEED,
    Flag,
    Interval,
    Items,
    JSONObject,
    Null,
    Options,
    Settings,
    Text,
    setting,
)

PROBABILITY = Interval(float, 0, 1)
POSITIVE = Interval(float, 0, None, "neither")
NON_NEGATIVE = Interval(float, 0, None)


def _pair(rule: Interval, example: str) -> Items:
    return Items(rule, unique=False, length=2, example=example)


@dataclass(frozen=True)
class TrainConfig(Settings):
    error = TrainingError
    what = "training settings"

    # what to train
    objective: str = setting("simclr", ", ".join(OBJECTIVES), Options(OBJECTIVES), label="Objective")
    dataset: str = setting("shapes", "dataset spec: shapes, digits, cifar10, imagefolder:<path> ...",
                           Text("a dataset spec, e.g. shapes"), label="Dataset")
    n_train: int | None = setting(8000, "training images (stratified subsample; shapes: generated at this size)",
                                  Interval(int, 2, MAX_IMAGES), Null("null / 'all' for the whole split", word="all"),
                                  label="Training images")
    data_seed: int = setting(0, "dataset seed (shapes: which images are generated)", SEED,
                             seed=True, label="Data seed")
    image_size: int | None = setting(None, "resize images to this size (default: the dataset's size)",
                                     Interval(int, 8, 4096), Null("null for the dataset's size"), label="Image size")
    label_task: str | None = setting(None, "task whose labels supervised / label_aligned use, e.g. shape",
                                     Null("null (no labels)"), Text("a task name"), label="Label task")
    p: float = setting(0.5, "label_aligned: weight of the positives that are the other images of the anchor's class "
                            "(0 = SimCLR, 1 = SupCon-like)", PROBABILITY, label="Same-class positive pairs (p)")
    # architecture
    backbone: str = setting("resnet_small", "resnet_small, or a timm model name (timm:<name> or <name>), random init",
                            Text("resnet_small or a timm model name"), label="Backbone")
    width: int = setting(16, "resnet_small: channels of the first stage (doubled per stage)", Interval(int, 1, 1024),
                         label="Backbone width (SmallResNet)")
    depths: tuple[int, ...] = setting((1, 1, 1, 1), "resnet_small: blocks per stage, comma-separated",
                                      Items(Interval(int, 1, 64), "blocks per stage", unique=False, example="1,1,1,1"),
                                      label="Blocks per stage")
    backbone_kwargs: dict = setting({}, "timm backbones: JSON kwargs for timm.create_model, e.g. '{\"img_size\": 32}'",
                                    JSONObject(), app=False)
    projector: str = setting("512-512-128", "projector widths joined by '-', last = output; 'none' for no projector",
                             Text("'none' or positive widths joined by '-', e.g. '512-512-128'",
                                  pattern=r"(?i)\s*(none|[0-9]*[1-9][0-9]*(-[0-9]*[1-9][0-9]*)*)\s*"), label="Projector")
    projector_norm: str = setting("bn", "projector hidden-layer norm: " + ", ".join(PROJECTOR_NORMS),
                                  Options(PROJECTOR_NORMS), label="Projector norm")
    projector_act: str = setting("relu", "projector hidden-layer activation: " + ", ".join(PROJECTOR_ACTS),
                                 Options(PROJECTOR_ACTS), label="Projector activation")
    # augmentations (see augment.py)
    crop_scale: tuple[float, float] = setting((0.3, 1.0), "random resized crop area range, 'min,max'",
                                              _pair(Interval(float, 0, 1, "right"), "0.3,1"),
                                              label="Random crop: area range")
    crop_ratio: tuple[float, float] = setting((3 / 4, 4 / 3), "random resized crop aspect-ratio range, 'min,max'",
                                              _pair(POSITIVE, "0.75,1.333"), label="Random crop: aspect ratios")
    flip_p: float = setting(0.5, "horizontal flip probability", PROBABILITY, label="Horizontal flip probability")
    color_jitter: float = setting(0.8, "colour jitter strength s (0 off; SimCLR 0.8)", Interval(float, 0, 10),
                                  label="Colour jitter strength")
    color_jitter_p: float = setting(0.8, "probability of colour jitter", PROBABILITY, label="Colour jitter probability")
    gray_p: float = setting(0.2, "grayscale probability", PROBABILITY, label="Grayscale probability")
    blur_p: float = setting(0.0, "Gaussian blur probability", PROBABILITY, label="Blur probability")
    blur_sigma: tuple[float, float] = setting((0.1, 1.5), "blur sigma range in pixels, 'min,max'",
                                              _pair(POSITIVE, "0.1,1.5"), label="Blur sigma range")
    # optimisation
    optimizer: str = setting("adamw", "adamw or sgd (momentum 0.9, nesterov)", Options(OPTIMIZERS), label="Optimizer")
    lr: float = setting(2e-3, "peak learning rate (linear warm-up, then cosine decay to 0)", POSITIVE,
                        label="Learning rate")
    weight_decay: float = setting(1e-4, "weight decay (not applied to norms and biases)", NON_NEGATIVE,
                                  label="Weight decay")
    warmup_epochs: float = setting(0.5, "linear warm-up length in epochs", NON_NEGATIVE, label="Warm-up epochs")
    batch_size: int = setting(256, "images per step (each gives two views for the SSL objectives; at least 2: the "
                                   "SSL losses contrast the images of a batch)", Interval(int, 2, None),
                              label="Batch size")
    epochs: int = setting(6, "passes over the training images", Interval(int, 1, None), label="Epochs")
    max_steps: int | None = setting(None, "stop after this many steps (default: all epochs)", Interval(int, 1, None),
                                    Null("null (all epochs)"), label="Max steps")
    time_budget: float | None = setting(None, "seconds the run may take: after timing a few steps, --epochs is lowered "
                                              "to the whole epochs that fit (the card records the epochs used)",
                                        POSITIVE, Null("null (no budget)"), bookkeeping=True, app=False)
    seed: int = setting(0, "seed of the weights, the batch order and the augmentations", SEED,
                        seed=True, label="Seed")
    device: str = setting("auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps", DEVICE,
                          bookkeeping=True, label="Device")
    # objective hyper-parameters
    temperature: float = setting(0.5, "simclr / label_aligned: NT-Xent temperature", POSITIVE, label="Temperature")
    barlow_lambda: float = setting(5e-3, "barlow: weight of the off-diagonal term", NON_NEGATIVE, app=False)
    sim_coeff: float = setting(25.0, "vicreg: invariance coefficient", NON_NEGATIVE, app=False)
    std_coeff: float = setting(25.0, "vicreg: variance coefficient", NON_NEGATIVE, app=False)
    cov_coeff: float = setting(1.0, "vicreg: covariance coefficient", NON_NEGATIVE, app=False)
    byol_tau: float = setting(0.99, "byol: base EMA momentum of the target (cosine schedule to 1)", PROBABILITY,
                              app=False)
    byol_predictor_hidden: int = setting(512, "byol: hidden width of the predictor MLP", Interval(int, 1, None),
                                         app=False)
    byol_predictor_lr: float = setting(1.0, "byol: the predictor's learning rate as a multiple of --lr (a predictor "
                                            "that adapts faster than the network it predicts; SimSiam, DirectPred)",
                                       POSITIVE, app=False)
    # output
    out: str = setting("runs/train/model.safetensors", "checkpoint path (.safetensors; the card is written next to it)",
                       Text("a file path"), bookkeeping=True, app=False)
    save_dtype: str = setting("float32", "how the checkpoint stores its weights: float32, or float16 (half the size; "
                                         "--eval measures the stored weights)", Options(STORAGE_DTYPES),
                              bookkeeping=True, app=False)
    description: str | None = setting(None, "one-line description for the card (default: generated)",
                                      Null("null (generated)"), Text(), bookkeeping=True, app=False)
    eval: bool = setting(False, "after training, sweep all cuts with linear probes on held-out data; results go in the "
                                "card", Flag(), bookkeeping=True, app=False)
    eval_n_train: int = setting(2000, "--eval: probe training images", Interval(int, 3, MAX_IMAGES), bookkeeping=True,
                                app=False)
    eval_n_test: int = setting(1000, "--eval: probe test images (the dataset's test split)", Interval(int, 1, MAX_IMAGES),
                               bookkeeping=True, app=False)
    eval_seed: int | None = setting(None, "--eval: dataset seed (default data_seed + 1: images the training never saw)",
                                    SEED, Null("null (data_seed + 1)"), bookkeeping=True, app=False)
    eval_tasks: tuple[str, ...] | None = setting(None, "--eval: comma-separated tasks (default: all)",
                                                 Null("null (all tasks)"), Items(Text("a task name"), "task names"),
                                                 bookkeeping=True, app=False)
    # live probes (training/live.py)
    probe_every: int | None = setting(None, "probe every cut on a fixed held-out set every N epochs while training (and "
                                            "before the first step and after the last): accuracy vs depth and the "
                                            "guillotine gain as they form, written to <out>.probes.csv",
                                      Null("null (off)"), Interval(int, 1, None), bookkeeping=True,
                                      label="Probe every N epochs")
    probe_n_train: int = setting(1000, "live probes: probe training images (a draw the training never sees, the "
                                       "dataset seed of --eval-seed)", Interval(int, 3, None), bookkeeping=True,
                                 label="Live probe: train images")
    probe_n_test: int = setting(500, "live probes: probe test images", Interval(int, 1, None), bookkeeping=True,
                                label="Live probe: test images")
    probe_tasks: tuple[str, ...] | None = setting(None, "live probes: comma-separated tasks (default: all)",
                                                  Null("null (all tasks)"), Items(Text("a task name"), "task names"),
                                                  bookkeeping=True, app=False)

    def cross_checks(self):
        if self.objective in LABELLED_OBJECTIVES and not self.label_task:
            yield (f"Objective {self.objective!r} needs labels: pass --label-task <task> (e.g. shape for the shapes "
                   "dataset).")
        try:
            self.augmentations()
        except TrainingError as e:
            yield str(e)

    # -- views ----------------------------------------------------------------
    def augmentations(self) -> AugmentConfig:
        return AugmentConfig(crop_scale=self.crop_scale, crop_ratio=self.crop_ratio, flip_p=self.flip_p,
                             color_jitter=self.color_jitter, color_jitter_p=self.color_jitter_p, gray_p=self.gray_p,
                             blur_p=self.blur_p, blur_sigma=self.blur_sigma)

    def objective_options(self) -> dict:
        return {"temperature": self.temperature, "p": self.p, "barlow_lambda": self.barlow_lambda,
                "sim_coeff": self.sim_coeff, "std_coeff": self.std_coeff, "cov_coeff": self.cov_coeff,
                "byol_tau": self.byol_tau, "byol_predictor_hidden": self.byol_predictor_hidden,
                "byol_predictor_lr": self.byol_predictor_lr}

    def to_command(self) -> str:
        """The `gr-explorer train ...` line that rebuilds exactly this config."""
        return super().to_command(["gr-explorer", "train"], always=("objective", "out"))

    @classmethod
    def not_design(cls) -> tuple[str, ...]:
        """Settings that do not change a design: the seeds and where / how a run is written or evaluated."""
        return tuple(name for name, spec in cls.declared() if spec.bookkeeping or spec.seed)

    @classmethod
    def not_recipe(cls) -> tuple[str, ...]:
        """Settings that are not part of a recipe (where and how a run is written and evaluated)."""
        return tuple(name for name, spec in cls.declared() if spec.bookkeeping)

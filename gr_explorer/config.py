"""SweepConfig: one sweep as data, every setting declared once (see settings.py).

The declarations are the single source of the `gr-explorer sweep` flags, of
run.json (versioned; v1 and v2 files load), of the app's widget defaults and
of the help texts. Building a SweepConfig checks every field against its
rules, so a bad value fails before any work, naming the field and what is
valid. Checks that need the data or the models themselves (is this a task of
that dataset?) run once where the sweep starts (run.check_references).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ConfigError
from .names import (
    AUTO_OFF,
    AUTO_ON_OFF,
    BASELINES,
    CUT_DETAILS,
    DECODERS,
    FIGURE_FORMATS,
    FINGERPRINTS,
    MAP_READOUTS,
    MAX_DRAWS,
    METRICS,
    ON_OFF,
    PROBES,
    RANDOM_INIT,
    READOUT_NORMS,
    READOUTS,
    SCHEMES,
    STORAGE_DTYPES,
    TOKEN_READOUTS,
)
from .settings import DEVICE, IMAGES, SEED, Count, Interval, Items, Null, Options, Settings, Text, setting

#: run.json schema version written by this code; versions read: RUN_VERSIONS.
RUN_VERSION = 2
RUN_VERSIONS = (1, 2)
MODEL_SPEC = Text("a model spec", pattern=rf"({'|'.join(map(re.escape, SCHEMES))}):\s*\S.*")
ALL = Null("null / 'all' for the whole split", word="all")
#: epochs without a better validation accuracy after which the attentive probe stops (probes.attentive)
ATTENTIVE_PATIENCE = 10
#: a combined cut: the last K block/stage outputs, the K best single cuts by validation, or cut names joined by '+'
COMBINE = Text("lastK or bestK (K >= 2), or two or more cut names joined by '+' (e.g. layer3+layer4)",
               pattern=r"(last|best)([2-9]|[1-9]\d+)|[^,+\s]+(\+[^,+\s]+)+")
#: bootstrap resamples: 1,000 give intervals stable to about 0.005; 100,000 is already far beyond any use
MAX_BOOTSTRAP = 100_000


@dataclass(frozen=True)
class SweepConfig(Settings):
    """The whole run as data: run.json holds it, and running it again gives the same numbers."""

    error = ConfigError
    json_tag = "gr_explorer_run"
    json_version = RUN_VERSION
    json_versions = RUN_VERSIONS
    what = "run config"

    models: tuple[str, ...] = setting(
        None, "model spec: zoo:<name>, timm:<name>[.<tag>], file:<path>, py:<file.py>:<function> (repeat or "
              "comma-separate)",
        Items(MODEL_SPEC, "model specs: zoo:<name>, timm:<name>[.<tag>], file:<path>, py:<file.py>:<function>"),
        required=True, flag="--model",
        label="Models")
    dataset: str = setting(
        "shapes", "dataset spec: shapes, digits, cifar10, cifar100, stl10, fashion_mnist, imagefolder:<path>",
        Text("a dataset spec, e.g. shapes, digits, cifar10 or imagefolder:<path>"), label="Dataset")
    tasks: tuple[str, ...] | None = setting(
        None, "comma-separated tasks (default: all base tasks); derived: hflip, rot90, grayscale, hue",
        Null("null (all base tasks)"), Items(Text("a task name"), "task names"), label="Tasks")
    cuts: tuple[str, ...] | None = setting(
        None, "comma-separated cut names (default: all; see `gr-explorer cuts`)",
        Null("null (all cuts)"), Items(Text("a cut name"), "cut names"), label="Cuts")
    probes: tuple[str, ...] = setting(
        ("linear",), "comma-separated probes: " + ", ".join(PROBES),
        Items(Options(PROBES), "probes", example="linear,knn"), flag="--probe", label="Probes")
    n_train: int | None = setting(
        2000, "stratified train subsample size ('all' for the whole split)", IMAGES, ALL,
        label="Train images")
    n_test: int | None = setting(
        1000, "stratified test subsample size ('all' for the whole split)", IMAGES, ALL,
        label="Test images")
    seed: int = setting(
        0, "seed of the subsample, the validation split, the bootstrap and random weights",
        SEED, label="Seed")
    device: str = setting("auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps", DEVICE, label="Device")
    batch_size: int = setting(256, "images per forward pass", Interval(int, 1, None, example=256), label="Batch size")
    readout: tuple[str, ...] | None = setting(
        None, "comma-separated readouts, one curve each from the same forward pass: " + ", ".join(TOKEN_READOUTS)
        + " for token cuts; " + ", ".join(MAP_READOUTS) + " for CNN stages (default: the model's own: the "
        "checkpoint's, else cls, avg for CNNs)",
        Null("null (the model's own)"), Items(Options(READOUTS), "readouts", example="cls,mean"), label="Readouts")
    weights: str | None = setting(
        None, "timm weights: pretrained (default), random (seeded by --seed), or a file path; py: models: a state dict "
        "file (.pth/.pt/.safetensors) or random",
        Null("null (pretrained)"), Text("'pretrained', 'random' or a weights file path"), label="Weights")
    data_root: str | None = setting(
        None, "where torchvision datasets live / are downloaded", Null(), Text(), app=False, bookkeeping=True)
    image_size: int | None = setting(
        None, "resize images to this size before the model's own preprocessing",
        Interval(int, 8, 4096), Null("null for the native size"), label="Image size")
    val_fraction: float = setting(
        0.2, "fraction of the train images held out to choose probe hyper-parameters and the best cut",
        Interval(float, 0, 1, "neither", example=0.2), label="Validation fraction")
    linear_grid: tuple[float, ...] | None = setting(
        None, "comma-separated inverse L2 strengths C for the linear probe",
        Null("null (the default grid)"),
        Items(Interval(float, 0, None, "neither"), "positive numbers", unique=False, example="0.01,0.1,1,10"),
        label="Linear probe C grid")
    knn_ks: tuple[int, ...] | None = setting(
        None, "comma-separated k for the k-NN probe", Null("null (the default ks)"),
        Items(Interval(int, 1, None), "positive integers", unique=False, example="5,10,20"), flag="--knn-k",
        label="k-NN k grid")
    knn_temperature: float = setting(
        0.07, "k-NN vote temperature", Interval(float, 0, None, "neither", example=0.07), label="k-NN temperature")
    attentive_lr: tuple[float, ...] = setting(
        (0.03, 0.1), "comma-separated AdamW learning rates the attentive probe tries (each with every weight decay; "
                      "the pair is chosen on validation)",
        Items(Interval(float, 0, None, "neither"), "positive numbers", example="0.01,0.1"),
        label="Attentive probe learning rates")
    attentive_wd: tuple[float, ...] = setting(
        (1e-4, 0.1), "comma-separated AdamW weight decays the attentive probe tries",
        Items(Interval(float, 0, None), "numbers >= 0", example="0.0001,0.01"), label="Attentive probe weight decays")
    attentive_queries: int = setting(
        4, "learned queries of the attentive probe: each attends over a cut's tokens and pools its share of the channels",
        Interval(int, 1, 64), label="Attentive probe queries")
    attentive_epochs: int = setting(
        100, "most epochs of the attentive probe; it stops early once validation accuracy has not improved for "
             f"{ATTENTIVE_PATIENCE} epochs",
        Interval(int, 1, 10000), label="Attentive probe epochs")
    attentive_tokens: int = setting(
        64, "tokens kept per image and cut for the attentive probe: prefix (class, register) tokens plus the patch "
            "tokens or spatial positions average-pooled to a grid of at most this many; stored as float16 in the cache",
        Interval(int, 1, 4096), label="Attentive probe tokens")
    combine: tuple[str, ...] = setting(
        (), "combined cuts, each probed like one cut on its cuts' concatenated features (comma-separated): lastK (the "
            "last K block/stage outputs), bestK (the K best single cuts by validation accuracy, per task and probe), "
            "or cut names joined by '+'",
        Items(COMBINE, "combined cuts (lastK or bestK with K >= 2, or cut names joined by '+')", min_len=0, example="last4,best4,layer3+layer4"), label="Combined cuts")
    combine_standardize: str = setting(
        "on", "before concatenating, z-score each cut's columns and scale each cut to unit total variance (so every "
              "cut weighs the same in the k-NN's cosine similarity; the linear probe standardises every column anyway): "
              "on, off", Options(ON_OFF), label="Standardise each combined cut")
    shots: tuple = setting(
        (), "few-shot curves: labelled train images per class (comma-separated; 'all' is the ordinary sweep), each drawn "
            "--tries times from the probe's fit split", Items(Count(), "shots per class (positive integers or 'all')", min_len=0,
                                                             example="1,5,10,all"), label="Shots per class")
    fractions: tuple[float, ...] = setting(
        (), "data-fraction curves: fractions of the probe's fit split (comma-separated), each drawn --tries times",
        Items(Interval(float, 0, 1, "right"), "fractions in (0, 1]", min_len=0, example="0.01,0.1,1"),
        label="Train fractions")
    tries: int = setting(5, "seeded draws per shot count and per fraction", Interval(int, 1, 100), label="Tries")
    baselines: tuple[str, ...] = setting(
        (), "comma-separated baselines measured the same way: " + ", ".join(BASELINES) + f"; {RANDOM_INIT}:N measures "
            f"N seeded random inits (N from 2 to {MAX_DRAWS}) and compares the model with their mean, the spread "
            "between them included in the intervals",
        Items(Options(BASELINES, counted=(RANDOM_INIT,), count=Interval(int, 2, MAX_DRAWS)), "baselines", min_len=0),
        flag="--baseline", label="Baselines")
    metrics: tuple[str, ...] = setting(
        (), "comma-separated label-free diagnostics: " + ", ".join(METRICS),
        Items(Options(METRICS), "metrics", min_len=0), label="Diagnostics")
    bootstrap: int = setting(
        1000, "bootstrap resamples of the test images for the 95% intervals (their indices, 8 bytes x resamples x test "
              "images, must fit in --memory-budget)", Interval(int, 100, MAX_BOOTSTRAP, example=1000),
        label="Bootstrap resamples")
    workers: int | None = setting(
        None, "DataLoader workers decoding image folders (default: one per core, up to 8; 0 decodes in the main process)",
        Null("null (automatic)"), Interval(int, 0, 64), app=False)
    feature_dtype: str = setting(
        "float32", "how features are stored on disk: float32, or float16 (half the disk; probes compute in float32)",
        Options(STORAGE_DTYPES), label="Feature storage")
    memory_budget: int = setting(
        2 * 2**30, "bytes one chunk of probe fits may use; bigger sweeps run in more chunks",
        Interval(int, 2**20, None, example=2 * 2**30), app=False)
    fingerprint: str = setting(
        "stat", "how an image folder's files are recognised in the feature cache: stat (path, size and modification "
        "time; trusts that a file rewritten with the same size and mtime is unchanged, and reuses its old features) or "
        "content (a hash of every chosen file's bytes, read in parallel: catches such edits)",
        Options(FINGERPRINTS), app=False)
    compile: str = setting(
        "auto", "torch.compile the extraction forward: auto (on CUDA, for runs of 250,000+ images), on, off; a model "
        "that fails to compile runs eagerly (warned once)", Options(AUTO_ON_OFF), app=False)
    channels_last: str = setting(
        "auto", "NHWC memory format for convolutional models: auto (on CUDA), on, off", Options(AUTO_ON_OFF), app=False)
    auto_batch: str = setting(
        "auto", "on CUDA, grow the extraction batch from --batch-size while it fits in ~80% of the GPU's memory: auto, "
        "off", Options(AUTO_OFF), app=False)
    decoder: str = setting(
        "auto", "how image-folder files are decoded: auto (JPEGs on the GPU when extracting on CUDA, else pil), pil, "
        "torchvision-cpu, torchvision-cuda", Options(DECODERS), app=False)
    cut_detail: str = setting(
        "block", "which cuts 'all cuts' means: block (block/stage outputs, pool, projector) or sub-block (also "
        "<block>.attn_out and <block>.mlp_hidden inside each transformer block)", Options(CUT_DETAILS),
        label="Cut detail")
    readout_norm: str = setting(
        "off", "apply the model's final norm to block outputs and attn_out before the readout: off, on, or both (two "
        "curves from the same forward pass)", Options(READOUT_NORMS), label="Final norm")
    stages: tuple[str, ...] | None = setting(
        None, "py: models: comma-separated submodule names whose outputs are cuts", Null(),
        Items(Text("a submodule name"), "submodule names of the py: model", example="layer1,layer2,layer3"), app=False)
    projector: str | None = setting(
        None, "py: models: the submodule that is the projector (its input is the pool cut, each of its layers a cut)",
        Null(), Text("a submodule name"), app=False)
    figures: tuple[str, ...] = setting(
        ("html",), "comma-separated formats of the figures written to --out (figure.*, heatmap.*): html, png, svg (png "
        "and svg need Chrome or Chromium)", Items(Options(FIGURE_FORMATS), "figure formats", example="png,svg,html"),
        app=False, bookkeeping=True)

    def cross_checks(self):
        twins = [b for b in self.baselines if b.partition(":")[0] == RANDOM_INIT]
        if self.weights == "random" and twins:
            yield (f"baselines={twins[0]} with weights=random would measure the same random network twice. "
                   "Valid: drop one of them.")
        if len(twins) > 1:
            yield (f"baselines names the random-init baseline twice ({', '.join(twins)}). Valid: one of "
                   f"{RANDOM_INIT} (one draw) or {RANDOM_INIT}:N (N draws).")
        if (self.stages is not None or self.projector is not None) and not any(m.startswith("py:") for m in self.models):
            yield ("stages/projector name the cuts of a py: model; no model here is one. Valid: leave them unset, or add "
                   "--model py:<file.py>:<function>.")

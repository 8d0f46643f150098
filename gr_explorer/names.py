"""The registry of names the whole tool speaks: each name declared once, with its display label and help.

Why a module of plain data at the bottom of the import graph: settings validate
against these names (config, training config), the library dispatches on them
(probes, diagnostics, objectives, readouts) and the CLI and the app show their
labels, so they must be importable by every layer without importing torch or
any package they describe. A package that implements a name checks at import
time that it implements exactly the names declared here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    """One name: how tables and widgets label it, and a sentence of help."""

    label: str
    help: str = ""


def labels(registry: dict[str, Entry]) -> dict[str, str]:
    return {k: e.label for k, e in registry.items()}


def label_of(registry: dict[str, Entry], name: str) -> str:
    """The display label of a name, or the name itself when the registry does not know it."""
    entry = registry.get(name)
    return entry.label if entry is not None else name


#: model spec schemes; `custom:<name>` records a Model object built in Python (wrap_module) in run.json
SCHEMES: dict[str, Entry] = {
    "zoo": Entry("shipped checkpoint", "zoo:<name>, a checkpoint shipped in pretrained/"),
    "timm": Entry("timm model", "timm:<name>[.<tag>], any timm model with forward_intermediates()"),
    "file": Entry("checkpoint file", "file:<path>, a gr-explorer checkpoint or an official SSL release"),
    "custom": Entry("built in Python", "custom:<name>, a Model object passed to sweep()/run_sweep() (wrap_module)"),
    "py": Entry("a Python file", "py:<file.py>:<function>, a function that builds the module (models/pyspec.py)"),
}

PROBES: dict[str, Entry] = {
    "linear": Entry("linear", "multinomial logistic regression (L2 strength picked on a validation split)"),
    "knn": Entry("k-NN", "cosine k-NN with exp(sim / T) weighted votes (k picked on a validation split)"),
    "attentive": Entry("attentive", "multi-query cross-attention over a cut's tokens or spatial positions, trained "
                                    "with AdamW (learning rate and weight decay picked on a validation split, early "
                                    "stopping on it)"),
}
#: the readout label of the attentive probe's rows: it reads every (pooled) token of a cut, not one readout
TOKENS_READOUT = "tokens"

#: what a row of the results stands for: the model itself or one of the references measured the same way
KINDS: dict[str, Entry] = {
    "model": Entry("model"),
    "random_init": Entry("random init", "the same architecture and preprocessing with seeded random weights"),
    "pixels": Entry("raw pixels", "a probe on the raw pixels (the input)"),
}

#: the random-init baseline: one seeded draw (`random-init`) or N draws (`random-init:N`, N from 2 to MAX_DRAWS)
RANDOM_INIT = "random-init"
#: the draws offered by name (the app's choice). Three is the fewest that estimate the spread between draws at all
#: (2 degrees of freedom); each draw costs one more forward pass and probe fit, as much as the model itself
DEFAULT_DRAWS = 3
MAX_DRAWS = 20
#: baselines a sweep can add; `random-init:N` for any N from 2 to MAX_DRAWS is accepted too (config.py)
BASELINES: dict[str, Entry] = {
    RANDOM_INIT: Entry("random init", KINDS["random_init"].help),
    f"{RANDOM_INIT}:{DEFAULT_DRAWS}": Entry(f"random init, {DEFAULT_DRAWS} draws",
                                            f"{DEFAULT_DRAWS} seeded random inits; the spread between them widens "
                                            "every interval against random init"),
    "pixels": Entry("raw pixels", KINDS["pixels"].help),
}
BASELINE_KIND = {RANDOM_INIT: "random_init", "pixels": "pixels"}
#: the results' `baseline` column for each kind ('' for the model itself)
KIND_BASELINE = {"model": "", **{kind: name for name, kind in BASELINE_KIND.items()}}


def random_init_draws(baselines) -> int:
    """How many random-init twins a list of baselines asks for: 0, 1 (`random-init`) or N (`random-init:N`)."""
    for b in baselines:
        name, sep, n = b.partition(":")
        if name == RANDOM_INIT:
            return int(n) if sep else 1
    return 0


_RANDOM_SUFFIX = re.compile(r" \[random init(?: #(\d+))?\]$")


def random_label(name: str, draw: int | None = None) -> str:
    """`zoo:simclr` -> `zoo:simclr [random init]`, or `zoo:simclr [random init #2]` for draw 2 (idempotent)."""
    if random_suffix(name):
        return name
    return f"{name} [random init]" if draw is None else f"{name} [random init #{draw}]"


def random_suffix(name: str) -> str:
    """The ` [random init]` / ` [random init #d]` tail of a twin's name ('' for any other name)."""
    m = _RANDOM_SUFFIX.search(name)
    return m.group(0) if m else ""


def draw_of(name: str) -> int | None:
    """The draw number of a twin's name (`... [random init #2]` -> 2); None for a single twin or any other name."""
    m = _RANDOM_SUFFIX.search(name)
    return int(m.group(1)) if m and m.group(1) else None

METRICS: dict[str, Entry] = {
    "rankme": Entry("RankMe", "effective rank of the features (Garrido et al. 2023)"),
    "alpha_req": Entry("alpha-ReQ", "decay of the eigenspectrum (Agrawal et al. 2022)"),
    "stable_rank": Entry("stable rank", "squared Frobenius over squared spectral norm"),
    "nesum": Entry("NESum", "sum of eigenvalues over the largest (He & Ozay 2022)"),
    "cka": Entry("CKA", "linear CKA between cuts"),
    "invariance": Entry("invariance", "invariance of each cut to each training augmentation"),
}
SPECTRAL_METRICS = ("rankme", "alpha_req", "stable_rank", "nesum")

#: how a cut's output becomes one vector (models/readout.py): token readouts for ViT blocks, pooling for CNN maps
READOUTS: dict[str, Entry] = {
    "cls": Entry("CLS token", "the class token"),
    "mean": Entry("mean of patches", "the mean of the patch tokens (class, distillation and register tokens left out)"),
    "cls+mean": Entry("CLS + mean", "both concatenated (DINOv2's linear evaluation)"),
    "max": Entry("max", "per-channel max over the patch tokens (CNN maps: max pooling)"),
    "registers": Entry("registers", "the mean of the register tokens"),
    "all-tokens-mean": Entry("mean of all tokens", "the mean over every token, prefix included"),
    "avg": Entry("average pooling", "CNN maps: spatial average"),
}
TOKEN_READOUTS = ("cls", "mean", "cls+mean", "max", "registers", "all-tokens-mean")
MAP_READOUTS = ("avg", "max")
#: the model's final norm on intermediate cuts: off, on, or both (two rows per cut from one forward pass)
READOUT_NORMS = ("off", "on", "both")
#: how finely a transformer is cut: block outputs, or inside blocks too (after attention, the MLP hidden activation)
CUT_DETAILS = ("block", "sub-block")

DERIVED_TASKS: dict[str, Entry] = {
    "hflip": Entry("hflip", "was the image flipped left-right?"),
    "rot90": Entry("rot90", "was the image rotated by 90 degrees?"),
    "grayscale": Entry("grayscale", "was the image turned grey?"),
    "hue": Entry("hue", "was the hue shifted?"),
}

OBJECTIVES: dict[str, Entry] = {
    "simclr": Entry("SimCLR", "NT-Xent between two views of each image"),
    "vicreg": Entry("VICReg", "variance, invariance and covariance terms"),
    "byol": Entry("BYOL", "a predictor chasing a momentum target"),
    "barlow": Entry("Barlow Twins", "cross-correlation of the two views pushed to the identity"),
    "supervised": Entry("supervised", "cross-entropy on a label task"),
    "label_aligned": Entry("label-aligned", "SimCLR whose positive pairs are (partly) two images of one class"),
}
#: objectives that need a label task
LABELLED_OBJECTIVES = ("supervised", "label_aligned")

OPTIMIZERS: dict[str, Entry] = {
    "adamw": Entry("AdamW"),
    "sgd": Entry("SGD", "momentum 0.9, Nesterov"),
}
PROJECTOR_NORMS = ("bn", "ln", "none")
PROJECTOR_ACTS = ("relu", "gelu")
#: how features and checkpoints can be stored
STORAGE_DTYPES = ("float32", "float16")
#: how an image folder's files are recognised in the feature cache: path, size and mtime; or their bytes
FINGERPRINTS = ("stat", "content")
#: extraction speed switches (forward.py): auto (decided from the device and the run), on, off
AUTO_ON_OFF = ("auto", "on", "off")
AUTO_OFF = ("auto", "off")
ON_OFF = ("on", "off")
#: formats a figure can be written in (export.py): png and svg need Chrome or Chromium
FIGURE_FORMATS = ("html", "png", "svg")
#: how image-folder files are decoded (data/decoders.py)
DECODERS = ("auto", "pil", "torchvision-cpu", "torchvision-cuda")

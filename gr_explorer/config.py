"""SweepConfig: one sweep as data, validated once, in one place.

Its field metadata is the single source of the CLI flags (`cli.py` generates
them), of the run.json schema (`to_json` / `from_dict`, versioned) and of the
app's widget defaults (`SweepConfig.defaults()`), so the three cannot drift.
Every field is checked in `__post_init__`; a bad value raises ConfigError
naming the field, the value and what is valid, before any work starts.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from .errors import ConfigError, did_you_mean

#: run.json schema version written by this code; versions read: RUN_VERSIONS.
RUN_VERSION = 2
RUN_VERSIONS = (1, 2)
BASELINES = ("random-init", "pixels")
#: label-free diagnostics (gr_explorer.diagnostics.METRICS, repeated here so that reading a config imports no torch)
METRICS = ("rankme", "alpha_req", "stable_rank", "nesum", "cka", "invariance")
DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _f(default, help: str, kind: str, *, flag: str | None = None, check=None, app: bool = True):
    """A field whose metadata says how the CLI spells and parses it and how it is checked.

    kind: str | strs (comma list) | int | count (int >= 1, or 'all') | float | floats | ints.
    check(value) -> None or the 'valid: ...' text when the value is bad.
    """
    meta = {"help": help, "kind": kind, "flag": flag, "check": check, "app": app}
    if isinstance(default, list):
        return field(default_factory=lambda d=default: tuple(d), metadata=meta)
    return field(default=default, metadata=meta)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int_at_least(lo: int, example: int):
    return lambda v: None if _is_int(v) and v >= lo else f"an integer >= {lo} (e.g. {example})"


def _count(v):
    return None if v is None or (_is_int(v) and v >= 1) else "an integer >= 1, or null / 'all' for the whole split"


def _strings(what: str, allowed=None, optional: bool = False, example: str = ""):
    def check(v):
        if v is None and optional:
            return None
        valid = f"a non-empty list of {what}" + (f" from: {', '.join(allowed)}" if allowed else "") + (f" (e.g. {example})" if example else "")
        if not isinstance(v, tuple) or not v or not all(isinstance(s, str) and s.strip() for s in v):
            return valid
        if allowed is not None:
            bad = [s for s in v if s not in allowed]
            if bad:
                import difflib

                close = difflib.get_close_matches(bad[0], allowed, n=1)
                return valid + (f"; did you mean {close[0]!r} for {bad[0]!r}?" if close else "")
        if len(set(v)) != len(v):
            return valid + ", each named once"
        return None
    return check


def _maybe_empty(check):
    return lambda v: None if v == () else check(v)


def _models(v):
    from .models import SCHEMES

    base = "a non-empty list of model specs: zoo:<name>, timm:<name>[.<tag>], file:<path>, py:<file.py>:<function>"
    if not isinstance(v, tuple) or not v or not all(isinstance(s, str) for s in v):
        return base
    for s in v:
        scheme, _, rest = s.partition(":")
        if scheme not in SCHEMES or not rest.strip():
            return f"{base} ({s!r} is not one)"
    if len(set(v)) != len(v):
        return base + ", each named once"
    return None


def _dataset(v):
    from .data import list_datasets

    if not isinstance(v, str) or not v.strip():
        return f"a dataset spec: {', '.join(list_datasets())}"
    return None


def _device(v):
    return None if isinstance(v, str) and DEVICE_RE.match(v) else "auto, cpu, cuda, cuda:N or mps"


def _readout(v):
    from .models.readout import READOUTS

    return _strings("readouts", READOUTS, optional=True, example="cls,mean")(v)


def _choice(*options):
    return lambda v: None if v in options else ", ".join(options)


def _stages(v):
    return None if v is None or (isinstance(v, tuple) and v and all(isinstance(s, str) and s.strip() for s in v)) \
        else "null, or a non-empty list of submodule names of the py: model (e.g. layer1,layer2,layer3)"


def _weights(v):
    return None if v is None or (isinstance(v, str) and v.strip()) else "null (pretrained), 'pretrained', 'random' or a weights file path"


def _optional_str(v):
    return None if v is None or (isinstance(v, str) and v.strip()) else "a non-empty string, or null"


def _image_size(v):
    return None if v is None or (_is_int(v) and 8 <= v <= 4096) else "an integer from 8 to 4096, or null for the native size"


def _fraction(v):
    return None if _num(v) and 0.0 < v < 1.0 else "a number strictly between 0 and 1 (e.g. 0.2)"


def _grid(v):
    ok = v is None or (isinstance(v, tuple) and v and all(_num(c) and c > 0 for c in v))
    return None if ok else "null (the default grid) or a non-empty list of positive numbers, e.g. 0.01,0.1,1,10"


def _ks(v):
    ok = v is None or (isinstance(v, tuple) and v and all(_is_int(k) and k >= 1 for k in v))
    return None if ok else "null (the default ks) or a non-empty list of positive integers, e.g. 5,10,20"


def _positive(v):
    return None if _num(v) and v > 0 else "a positive number (e.g. 0.07)"


def _workers(v):
    return None if v is None or (_is_int(v) and 0 <= v <= 64) else "null (automatic) or an integer from 0 to 64"


def _feature_dtype(v):
    return None if v in ("float32", "float16") else "float32, float16"


def _probes():
    from .probes import PROBES

    return _strings("probes", PROBES, example="linear,knn")


@dataclass(frozen=True)
class SweepConfig:
    """The whole run as data: run.json holds it, and running it again gives the same numbers."""

    models: tuple[str, ...] = _f(MISSING, "model spec: zoo:<name>, timm:<name>[.<tag>], file:<path>, py:<file.py>:<function> (repeat or "
                                 "comma-separate)",
                                 "strs", flag="--model", check=_models)
    dataset: str = _f("shapes", "dataset spec: shapes, digits, cifar10, cifar100, stl10, fashion_mnist, imagefolder:<path>",
                      "str", check=_dataset)
    tasks: tuple[str, ...] | None = _f(None, "comma-separated tasks (default: all base tasks); derived: hflip, rot90, "
                                       "grayscale, hue", "strs", check=_strings("task names", optional=True))
    cuts: tuple[str, ...] | None = _f(None, "comma-separated cut names (default: all; see `gr-explorer cuts`)", "strs",
                                      check=_strings("cut names", optional=True))
    probes: tuple[str, ...] = _f(["linear"], "comma-separated probes: linear, knn", "strs", flag="--probe", check=None)
    n_train: int | None = _f(2000, "stratified train subsample size ('all' for the whole split)", "count", check=_count)
    n_test: int | None = _f(1000, "stratified test subsample size ('all' for the whole split)", "count", check=_count)
    seed: int = _f(0, "seed of the subsample, the validation split, the bootstrap and random weights", "int",
                   check=_int_at_least(0, 0))
    device: str = _f("auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps", "str", check=_device)
    batch_size: int = _f(256, "images per forward pass", "int", check=_int_at_least(1, 256))
    readout: tuple[str, ...] | None = _f(None, "comma-separated readouts, one curve each from the same forward pass: "
                                         "cls, mean, cls+mean, max, registers, all-tokens-mean for token cuts; avg, max "
                                         "for CNN stages (default: the model's own: the checkpoint's, else cls, avg for "
                                         "CNNs)", "strs", check=_readout)
    weights: str | None = _f(None, "timm weights: pretrained (default), random (seeded by --seed), or a file path; py: "
                             "models: a .pth/.safetensors state dict (default: the weights build() gives) or random",
                             "str", check=_weights)
    data_root: str | None = _f(None, "where torchvision datasets live / are downloaded", "str", check=_optional_str, app=False)
    image_size: int | None = _f(None, "resize images to this size before the model's own preprocessing", "int",
                                check=_image_size)
    val_fraction: float = _f(0.2, "fraction of the train images held out to choose probe hyper-parameters and the best cut",
                             "float", check=_fraction)
    linear_grid: tuple[float, ...] | None = _f(None, "comma-separated inverse L2 strengths C for the linear probe",
                                               "floats", check=_grid)
    knn_ks: tuple[int, ...] | None = _f(None, "comma-separated k for the k-NN probe", "ints", flag="--knn-k", check=_ks)
    knn_temperature: float = _f(0.07, "k-NN vote temperature", "float", check=_positive)
    baselines: tuple[str, ...] = _f([], "comma-separated baselines measured the same way: random-init, pixels", "strs",
                                    flag="--baseline", check=_maybe_empty(_strings("baselines", BASELINES)))
    metrics: tuple[str, ...] = _f([], "comma-separated label-free diagnostics: " + ", ".join(METRICS), "strs",
                                  check=_maybe_empty(_strings("metrics", METRICS)))
    bootstrap: int = _f(1000, "bootstrap resamples of the test images for the 95% intervals", "int",
                        check=_int_at_least(100, 1000))
    workers: int | None = _f(None, "DataLoader workers decoding image folders (default: one per core, up to 8; "
                             "0 decodes in the main process)", "int", check=_workers, app=False)
    feature_dtype: str = _f("float32", "how features are stored on disk: float32, or float16 (half the disk; probes "
                            "compute in float32)", "str", check=_feature_dtype)
    memory_budget: int = _f(2 * 2**30, "bytes one chunk of probe fits may use; bigger sweeps run in more chunks", "int",
                            check=_int_at_least(2**20, 2 * 2**30), app=False)
    cut_detail: str = _f("block", "which cuts 'all cuts' means: block (block/stage outputs, pool, projector) or sub-block "
                         "(also <block>.attn_out and <block>.mlp_hidden inside each transformer block)", "str",
                         check=_choice("block", "sub-block"))
    readout_norm: str = _f("off", "apply the model's final norm to block outputs and attn_out before the readout: off, "
                           "on, or both (two curves from the same forward pass)", "str", check=_choice("off", "on", "both"))
    stages: tuple[str, ...] | None = _f(None, "py: models: comma-separated submodule names whose outputs are cuts",
                                        "strs", check=_stages, app=False)
    projector: str | None = _f(None, "py: models: the submodule that is the projector (its input is the pool cut, each "
                               "of its layers a cut)", "str", check=_optional_str, app=False)

    def __post_init__(self):
        for f in fields(self):
            value = _normalise(getattr(self, f.name))
            if f.metadata["kind"] == "strs" and isinstance(value, str):
                value = (value,)
            object.__setattr__(self, f.name, value)
        problems = []
        for f in fields(self):
            check = _probes() if f.name == "probes" else f.metadata["check"]
            why = check(getattr(self, f.name)) if check else None
            if why:
                end = "" if why.endswith(("?", ".")) else "."
                problems.append(f"{f.name}={_show(getattr(self, f.name))} is invalid. Valid: {why}{end}")
        if not problems:
            problems += self._cross_checks()
        if problems:
            raise ConfigError(" ".join(problems))

    def _cross_checks(self) -> list[str]:
        from .data import DERIVED_TASKS, dataset_tasks
        from .errors import DatasetError

        out = []
        try:
            base = dataset_tasks(self.dataset)
        except DatasetError as e:
            return [f"dataset={self.dataset!r} is invalid: {e}"]
        if self.tasks is not None:
            valid = [*base, *DERIVED_TASKS]
            bad = [t for t in self.tasks if t not in valid]
            if bad:
                out.append(f"tasks: {bad[0]!r} is not a task of dataset {self.dataset!r}. {did_you_mean(bad[0], valid)}")
        if (self.stages is not None or self.projector is not None) and not any(m.startswith("py:") for m in self.models):
            out.append("stages/projector name the cuts of a py: model; no model here is one. Valid: leave them unset, "
                       "or add --model py:<file.py>:<function>.")
        if self.weights == "random" and "random-init" in self.baselines:
            out.append("baselines=random-init with weights=random would measure the same random network twice. "
                       "Valid: drop one of them.")
        return out

    # -- views ----------------------------------------------------------------
    @classmethod
    def defaults(cls) -> dict:
        """Every field's default (the app's widgets start from these, as the CLI does)."""
        return {f.name: (f.default if f.default is not MISSING else f.default_factory()) for f in fields(cls)
                if not (f.default is MISSING and f.default_factory is MISSING)}

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def to_json(self) -> str:
        return json.dumps({"gr_explorer_run": RUN_VERSION, **self.as_dict()}, indent=2)

    def replace(self, **changes) -> "SweepConfig":
        return SweepConfig.from_dict({**self.as_dict(), **changes})

    @classmethod
    def from_dict(cls, d: dict, source: str = "the run config") -> "SweepConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"{source} must be a JSON object with at least a 'models' list (as written by gr-explorer sweep).")
        version = d.get("gr_explorer_run", RUN_VERSION)
        if version not in RUN_VERSIONS:
            raise ConfigError(f"{source} has gr_explorer_run={version!r}, a version this gr-explorer cannot read. "
                              f"Valid: {', '.join(map(str, RUN_VERSIONS))}.")
        known = [f.name for f in fields(cls)]
        extra = sorted(set(d) - set(known) - {"gr_explorer_run"})
        if extra:
            raise ConfigError(f"Unknown key(s) {extra} in {source}. {did_you_mean(extra[0], known)}")
        if "models" not in d:
            raise ConfigError(f"{source} has no 'models' list. Valid: e.g. {{\"models\": [\"zoo:simclr\"]}}.")
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def load(cls, path: str | Path) -> "SweepConfig":
        p = Path(path)
        try:
            d = json.loads(p.read_text())
        except FileNotFoundError as e:
            raise ConfigError(f"Run config {str(p)!r} does not exist.") from e
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"Run config {str(p)!r} cannot be read: {e}.") from e
        except json.JSONDecodeError as e:
            raise ConfigError(f"Run config {str(p)!r} is not valid JSON: {e}.") from e
        return cls.from_dict(d, source=f"Run config {str(p)!r}")


def _normalise(v):
    """Lists become tuples (frozen, hashable); a single string stays a string except where a list is meant."""
    return tuple(v) if isinstance(v, list) else v


def _show(v) -> str:
    return repr(list(v)) if isinstance(v, tuple) else repr(v)


def config_fields():
    """(name, kind, help, default, flag, app) of every SweepConfig field, in declaration order."""
    for f in fields(SweepConfig):
        default = f.default if f.default is not MISSING else (f.default_factory() if f.default_factory is not MISSING else None)
        flag = f.metadata["flag"] or "--" + f.name.replace("_", "-")
        yield f.name, f.metadata["kind"], f.metadata["help"], default, flag, f.metadata["app"]

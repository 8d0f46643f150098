"""Is there enough data for a finding? The sample-size rules of a sweep, checked before and after the work.

Why: a tool that says where to cut must not turn a handful of images into a finding. `--n-test 1` used to report
chance 1.0 and "1.000 [1.000, 1.000]" as a 95% interval; with ten digits every validation accuracy was 0 and the
"best cut chosen on validation" was the tie-break; a class with one image never reached the test split; and
`--knn-k 100000` was silently cut to the size of the train split. The rules, per task of each dataset view:

* every class of the task has images in both splits (a class that is never tested is not measured);
* every class has at least `MIN_TEST_PER_CLASS` test images (5: the usual floor for a per-class count; with fewer,
  one image moves that class's share of the accuracy by more than 20 points, and a bootstrap of a handful of
  images gives intervals such as [1.000, 1.000] that claim a certainty the sample cannot give);
* every class has at least `MIN_VAL_PER_CLASS` validation images (2), so that choosing C, k and the best cut
  compares something;
* after the fits, a curve whose validation accuracies are all 0 has chosen nothing (its best cut is the tie-break).

A task that breaks a rule keeps its rows in results.csv, with the reason in their `note` column; the summary marks
its curves `enough_data=False` (never a clear gain), and every table shows "not enough data" instead of a best cut.
The sweep's notes also state every value that was clamped (sample sizes beyond a split, a validation fraction below
one image, a k beyond the fit split). Memory that the settings alone would ask for (the bootstrap's resampled
indices) is checked before any feature is extracted.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .errors import ConfigError
from .limits import size_text
from .probes import ProbeResult, validation_size, validation_split
from .stats import Resampler

MIN_TEST_PER_CLASS = 5
MIN_VAL_PER_CLASS = 2
NOT_ENOUGH = "not enough data"
_SHOW = 3


def check_bootstrap(resamples: int, n_test: int, budget: int) -> None:
    """ConfigError, before any work, when the bootstrap's resampled indices would not fit in `budget` bytes."""
    need = Resampler.nbytes(n_test, resamples)
    if need > budget:
        fit = max(0, budget // (8 * max(1, n_test)))
        raise ConfigError(f"bootstrap={resamples:,} resamples of {n_test:,} test images need {size_text(need)} for "
                          f"their indices, more than memory_budget={budget:,} bytes ({size_text(budget)}). Valid: at most "
                          f"{fit:,} resamples for {n_test:,} test images (e.g. --bootstrap 1000), fewer test images, "
                          f"or a larger --memory-budget.")


def _names(classes: Sequence[str], ids) -> str:
    ids = list(ids)
    shown = ", ".join(repr(classes[i]) if i < len(classes) else str(i) for i in ids[:_SHOW])
    return shown + (f" and {len(ids) - _SHOW} more" if len(ids) > _SHOW else "")


def task_shortfalls(train_labels: Mapping[str, torch.Tensor], test_labels: Mapping[str, torch.Tensor],
                    classes: Mapping[str, Sequence[str]], val_fraction: float, seed: int) -> dict[str, str]:
    """task -> why its numbers are not a finding (tasks with enough data are left out).

    The validation split is the probes' own (`validation_split` of the same labels, fraction and seed)."""
    _, val_idx = validation_split(dict(train_labels), val_fraction, seed)
    out = {}
    for task, y_train in train_labels.items():
        names = list(classes.get(task) or [])
        k = max(len(names), int(y_train.max()) + 1, int(test_labels[task].max()) + 1 if len(test_labels[task]) else 0)
        counts = {split: np.bincount(np.asarray(y.cpu()), minlength=k)
                  for split, y in (("train", y_train), ("test", test_labels[task]), ("validation", y_train[val_idx]))}
        missing = {s: np.flatnonzero(c == 0) for s, c in counts.items() if s != "validation"}
        if len(missing["train"]) or len(missing["test"]):
            split = "train" if len(missing["train"]) else "test"
            out[task] = (f"{NOT_ENOUGH}: {len(missing[split])} of {k} classes of {task!r} have no {split} images "
                         f"({_names(names, missing[split])}); a class that is not in both splits is not measured. "
                         f"Valid: every class in both splits (larger --n-train / --n-test, or more images of it).")
            continue
        few = np.flatnonzero(counts["test"] < MIN_TEST_PER_CLASS)
        if len(few):
            least = int(counts["test"].min())
            out[task] = (f"{NOT_ENOUGH}: {len(few)} of {k} classes of {task!r} have fewer than {MIN_TEST_PER_CLASS} test "
                         f"images ({_names(names, few)}; the fewest: {least}). Valid: >= {MIN_TEST_PER_CLASS} test "
                         f"images per class, e.g. --n-test {MIN_TEST_PER_CLASS * k} or more for {k} balanced classes.")
            continue
        few = np.flatnonzero(counts["validation"] < MIN_VAL_PER_CLASS)
        if len(few):
            n_val = int(counts["validation"].sum())
            out[task] = (f"{NOT_ENOUGH}: the validation split ({n_val} image{'s' if n_val != 1 else ''}, "
                         f"val_fraction={val_fraction:g}) has fewer "
                         f"than {MIN_VAL_PER_CLASS} images of {len(few)} of {k} classes of {task!r} "
                         f"({_names(names, few)}), too few to choose a hyper-parameter or a cut. Valid: "
                         f">= {MIN_VAL_PER_CLASS} validation images per class (a larger --n-train or --val-fraction).")
    return out


def clamp_notes(requested: Mapping[str, int | None], available: Mapping[str, int], n_train: int,
                val_fraction: float) -> list[str]:
    """What the run used instead of what was asked for: sample sizes beyond a split, a validation split under one image.

    `requested`: {'n_train': ..., 'n_test': ...} as set; `available`: the sizes the dataset really has."""
    out = []
    for name, want in requested.items():
        have = available[name]
        if want is not None and want > have:
            out.append(f"{name}={want:,} is more than the {have:,} images of that split: all {have:,} were used.")
    exact, used = val_fraction * n_train, validation_size(n_train, val_fraction) if n_train >= 2 else 0
    if n_train >= 2 and used != round(exact):
        out.append(f"val_fraction={val_fraction:g} of {n_train:,} train images is {exact:.3g} images: {used:,} "
                   f"validation image(s) were used.")
    return out


def probe_clamps(results: Sequence[ProbeResult], n_fit: int, n_train: int) -> list[str]:
    """Each k-NN k tried beyond the fit split: what validation and the test vote used instead (once per value)."""
    ks = sorted({int(k) for r in results if r.probe == "knn" for k in r.search if int(k) > n_fit})
    return [f"knn k={k:,} is more than the train split holds: validation used k={n_fit:,} (the fit split's size), "
            f"the test vote k={min(k, n_train):,} where it was chosen." for k in ks]


def chose_nothing(curve: pd.DataFrame) -> bool:
    """A curve whose validation accuracies are all 0: its 'best cut' would be the tie-break, not a choice."""
    v = curve["val_accuracy"].to_numpy(dtype=float)
    return len(v) > 0 and bool(np.all(v == 0))


NOTHING_CHOSEN = (f"{NOT_ENOUGH}: every cut scored 0 on the validation images, so no cut was chosen (the shallowest "
                  f"would only be the tie-break). Valid: more train images (--n-train) or a larger --val-fraction.")

__all__ = ["MIN_TEST_PER_CLASS", "MIN_VAL_PER_CLASS", "NOT_ENOUGH", "NOTHING_CHOSEN", "check_bootstrap", "chose_nothing",
           "clamp_notes", "probe_clamps", "task_shortfalls"]

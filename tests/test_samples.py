"""Small samples are never presented as findings; clamped values are stated (issue 23, item 6).

Each case runs the real CLI or library on a sample that is too small, and checks the counts behind the verdict
independently (NumPy bincounts of the labels the run used), that the summary marks the curve enough_data=False with
the reason, that no table shows a best cut or an interval for it, and that a clamp is stated with both values.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch

from gr_explorer.cli import main
from gr_explorer.config import SweepConfig
from gr_explorer.probes import validation_split
from gr_explorer.run import run_sweep
from gr_explorer.samples import MIN_TEST_PER_CLASS, MIN_VAL_PER_CLASS, NOT_ENOUGH, task_shortfalls
from gr_explorer.summary import guillotine_summary, summary_view
from helpers import saved_tiny


@pytest.fixture
def tiny(tmp_path):
    return saved_tiny(tmp_path)[1]


def _sweep(tiny, **kw):
    return run_sweep(SweepConfig(models=[f"file:{tiny}"], **kw), cache=False)


def test_one_test_image_is_not_a_finding(tiny, capsys):
    """--n-test 1 used to print chance 1.0 and '1.000 [1.000, 1.000]' as a 95% interval."""
    assert main(["sweep", "--model", f"file:{tiny}", "--n-train", "200", "--n-test", "1", "--tasks", "shape",
                 "--no-cache", "--quiet"]) == 0
    out, err = capsys.readouterr()
    best_line = next(line for line in out.splitlines() if " shape " in line and "linear" in line)
    assert NOT_ENOUGH in best_line and "[1.000, 1.000]" not in out
    # the per-cut table shows no accuracy of that task, and says why
    table = out.split("Best cut")[0]
    assert "shape: not enough data, its accuracies are not shown" in out and "stem" in table
    assert not re.search(r"\b[01]\.0\b", table) and "—" in table
    assert "note: task 'shape': not enough data: 4 of 5 classes of 'shape' have no test images" in err
    result = _sweep(tiny, n_train=200, n_test=1, tasks=["shape"])
    y = result.dataset.test_labels["shape"].numpy()
    assert (np.bincount(y, minlength=5) == 0).sum() == 4  # the reference count behind the message
    s = result.summary
    assert not s["enough_data"].any() and not s["clear_gain"].any()
    assert s["note"].str.contains("have no test images").all()
    assert (result.table["note"] != "").all()
    view = summary_view(s)
    assert set(view["best cut"]) == {NOT_ENOUGH} and set(view["best"]) == {"—"} and set(view["gain"]) == {"—"}


def test_too_few_test_images_per_class(tiny):
    result = _sweep(tiny, n_train=200, n_test=12, tasks=["shape", "light"])
    counts = {t: np.bincount(result.dataset.test_labels[t].numpy()) for t in ("shape", "light")}
    assert counts["shape"].min() < MIN_TEST_PER_CLASS <= counts["light"].min()  # 12 over 5 vs 2 classes
    s = result.summary.set_index("task")
    assert not s.loc["shape", "enough_data"] and f"fewer than {MIN_TEST_PER_CLASS} test images" in s.loc["shape", "note"]
    assert s.loc["light", "enough_data"] and s.loc["light", "note"] == ""


def test_validation_too_small_to_choose(tiny, capsys):
    """digits with 10 train images: 2 validation images for 10 classes; --val-fraction 0.001: 1 image."""
    result = run_sweep(SweepConfig(models=[f"file:{tiny}"], dataset="digits", n_train=10, n_test=300), cache=False)
    _, val = validation_split(result.dataset.train_labels, 0.2, 0)
    per_class = np.bincount(result.dataset.train_labels["digit"][val].numpy(), minlength=10)
    assert per_class.max() < MIN_VAL_PER_CLASS
    (row,) = result.summary.itertuples()
    assert not row.enough_data and "too few to choose a hyper-parameter or a cut" in row.note
    assert main(["sweep", "--model", f"file:{tiny}", "--n-train", "300", "--n-test", "200", "--tasks", "shape",
                 "--val-fraction", "0.001", "--no-cache", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "note: val_fraction=0.001 of 300 train images is 0.3 images: 1 validation image(s) were used." in err
    assert "the validation split (1 image, val_fraction=0.001) has fewer than 2 images" in err
    assert NOT_ENOUGH in out


def test_all_validation_accuracies_zero_choose_nothing():
    """A curve whose every cut scored 0 on validation has no best cut (it would be the tie-break)."""
    rows = [{"model": "m", "task": "t", "probe": "linear", "cut": c, "depth": d, "part": "backbone", "accuracy": a,
             "val_accuracy": v, "chance": 0.5, "n_test": 4, "baseline": "", "correct": np.array(k, dtype=bool)}
            for c, d, a, v, k in (("a", 0, 0.5, 0.0, [1, 1, 0, 0]), ("b", 1, 0.75, 0.0, [1, 1, 1, 0]))]
    rows += [{**r, "task": "u", "val_accuracy": 0.5 * i} for i, r in enumerate(rows)]
    s = guillotine_summary(pd.DataFrame(rows), resamples=200).set_index("task")
    assert not s.loc["t", "enough_data"] and "every cut scored 0 on the validation images" in s.loc["t", "note"]
    assert not s.loc["t", "clear_gain"]
    assert s.loc["u", "enough_data"] and s.loc["u", "best_cut"] == "b"


def test_a_class_missing_from_a_split(tmp_path, tiny):
    """An image folder class with one image never reaches the test split (the fixed hash split needs two)."""
    from PIL import Image

    for k, (c, n) in enumerate((("cat", 30), ("dog", 30), ("owl", 1))):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((16, 16, 3), (7 * i + 80 * k) % 256, dtype=np.uint8)).save(tmp_path / "imgs" / c / f"{i}.png")
    result = _sweep(tiny, dataset=f"imagefolder:{tmp_path / 'imgs'}", n_train=None, n_test=None)
    assert np.bincount(result.dataset.test_labels["label"].numpy(), minlength=3)[2] == 0
    (row,) = result.summary.itertuples()
    assert not row.enough_data and "1 of 3 classes of 'label' have no test images ('owl')" in row.note


def test_clamped_values_are_stated(tiny, capsys):
    """--knn-k beyond the train split and --n-train beyond a fixed split are used as far as they go, and said."""
    assert main(["sweep", "--model", f"file:{tiny}", "--dataset", "digits", "--n-train", "100000", "--n-test", "200",
                 "--probe", "knn", "--knn-k", "5,100000", "--cuts", "pool", "--no-cache", "--quiet"]) == 0
    _, err = capsys.readouterr()
    from sklearn.datasets import load_digits

    n_digits = len(load_digits().target)
    train = next(line for line in err.splitlines() if line.startswith("note: n_train="))
    n = int(train.split("the ")[1].split(" images")[0].replace(",", ""))
    assert 0 < n < n_digits and f"note: n_train=100,000 is more than the {n:,} images of that split: all {n:,} were " \
                                  f"used." == train
    n_fit = n - round(0.2 * n)
    assert (f"note: knn k=100,000 is more than the train split holds: validation used k={n_fit:,} (the fit split's "
            f"size), the test vote k={n:,} where it was chosen.") in err


def test_enough_data_is_left_alone(tiny):
    """The rules do not touch a sample that is large enough (the golden sweep's size)."""
    result = _sweep(tiny, n_train=300, n_test=200, tasks=["shape", "color"], cuts=["pool"])
    assert result.summary["enough_data"].all() and (result.summary["note"] == "").all() and result.notes == []
    labels = result.dataset
    assert task_shortfalls(labels.train_labels, labels.test_labels, labels.classes, 0.2, 0) == {}
    assert torch.bincount(labels.test_labels["color"]).min() >= MIN_TEST_PER_CLASS

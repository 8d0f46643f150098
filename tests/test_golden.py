"""Refactors change no number: a fixed sweep and a fixed training run reproduce files made by an earlier main.

tests/golden/ holds what commit 8fa4012 (before the settings layer and the typed seams, issue 22) wrote for the
two commands below, run with one thread (OMP_NUM_THREADS=1); the probe numbers were regenerated once, by the commit
after 6e6a585 (the probes' float sums in fixed blocks, issue 23 item 7), and the raw-pixels baseline's linear rows
(with the summary's pixels_accuracy) again when cc6bc58 moved that probe to the pixels' principal components (issue
29, merged with main), with the same commands, restricted to the columns and keys below:

    gr-explorer sweep --model zoo:simclr --dataset shapes --n-train 300 --n-test 200 --probe linear,knn
        --baseline random-init,pixels --cuts stem,layer2,layer4,pool,proj1,proj3 --bootstrap 200 --no-cache --out DIR
    gr-explorer train --objective simclr --n-train 256 --epochs 1 --batch-size 64 --eval --eval-n-train 200
        --eval-n-test 100 --out DIR/model.safetensors

Every column, key and weight the golden files have must come out byte for byte the same (columns or keys that
later work adds are not part of the comparison); the training card's wall-clock fields and output path are
not results and are left out.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from safetensors.torch import load_file

from gr_explorer.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden"
SWEEP = ["sweep", "--model", "zoo:simclr", "--dataset", "shapes", "--n-train", "300", "--n-test", "200", "--probe",
         "linear,knn", "--baseline", "random-init,pixels", "--cuts", "stem,layer2,layer4,pool,proj1,proj3",
         "--bootstrap", "200", "--no-cache", "--quiet"]
TRAIN = ["train", "--objective", "simclr", "--n-train", "256", "--epochs", "1", "--batch-size", "64", "--eval",
         "--eval-n-train", "200", "--eval-n-test", "100", "--quiet"]
NOT_RESULTS = {"wall_time_s", "images_per_s", "torch"}


def _cli(args: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "GR_EXPLORER_ZOO": str(ROOT / "pretrained")}
    done = subprocess.run([sys.executable, "-m", "gr_explorer", *args], env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


def _same_columns(new: Path, old: Path) -> None:
    """The new file, restricted to the golden file's columns in its order, is the golden file byte for byte."""
    golden = old.read_text()
    columns = pd.read_csv(io.StringIO(golden)).columns.tolist()
    ours = pd.read_csv(new, keep_default_na=False, dtype=str)
    assert list(ours.columns[:len(columns)]) == columns or set(columns) <= set(ours.columns)
    text = ours[columns].to_csv(index=False)
    ref = pd.read_csv(io.StringIO(golden), keep_default_na=False, dtype=str).to_csv(index=False)
    assert text == ref, f"{new.name} differs from {old}"


def test_a_fixed_sweep_reproduces_the_golden_files(tmp_path):
    _cli([*SWEEP, "--out", str(tmp_path / "out")])
    for name in ("results.csv", "summary.csv", "search.csv"):
        _same_columns(tmp_path / "out" / name, GOLDEN / "sweep" / name)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    golden = json.loads((GOLDEN / "sweep" / "run.json").read_text())
    assert {k: run[k] for k in golden} == golden


@pytest.mark.slow
def test_a_fixed_training_run_reproduces_the_golden_card_and_weights(tmp_path):
    out = tmp_path / "model.safetensors"
    _cli([*TRAIN, "--out", str(out)])
    card = json.loads(out.with_suffix(".json").read_text())
    golden = json.loads((GOLDEN / "train_model.json").read_text())
    old_out = golden["config"]["out"]
    golden["command"] = golden["command"].replace(old_out, str(out))
    golden["config"]["out"] = str(out)
    for d in (card, golden):
        for k in NOT_RESULTS:
            d["training"].pop(k, None)
    # settings declared after the golden card (e.g. the live probes') are recorded at their defaults, which change
    # nothing; every setting the golden card has keeps its value
    new = {k: v for k, v in card["config"].items() if k not in golden["config"]}
    assert new == {k: TrainConfig.spec(k).default for k in new}, new
    card["config"] = {k: card["config"][k] for k in golden["config"]}
    assert {k: card[k] for k in golden if k != "results"} == {k: v for k, v in golden.items() if k != "results"}
    assert {k: card["results"]["sweep"][k] for k in golden["results"]["sweep"]} == golden["results"]["sweep"]
    assert card["results"]["held_out"] == golden["results"]["held_out"]
    for part in ("table", "summary"):
        ours, ref = card["results"][part], golden["results"][part]
        assert len(ours) == len(ref) and [{k: row[k] for k in r} for row, r in zip(ours, ref)] == ref
    weights = {k: hashlib.sha256(v.contiguous().numpy().tobytes()).hexdigest() for k, v in sorted(load_file(out).items())}
    assert weights == json.loads((GOLDEN / "train_weights_sha256.json").read_text())

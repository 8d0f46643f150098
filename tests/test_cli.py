"""The gr-explorer CLI end to end: sweep writes its files, --config reproduces the numbers, errors are clear."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from gr_explorer.cli import main
from gr_explorer.data import load_dataset
from helpers import saved_tiny


def test_sweep_end_to_end_and_config_reproduces(tmp_path, capsys):
    _, path = saved_tiny(tmp_path)
    out = tmp_path / "demo"
    rc = main(["sweep", "--model", f"file:{path}", "--dataset", "shapes", "--tasks", "shape,color,hflip",
               "--probe", "linear,knn", "--n-train", "300", "--n-test", "100", "--seed", "1", "--out", str(out),
               "--save-features", "--metrics", "rankme,cka", "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "Best cut (chosen on validation)" in printed and "proj3" in printed and "[95% CI]" in printed
    first = pd.read_csv(out / "results.csv")
    assert len(first) == 8 * 3 * 2 and set(first["task"]) == {"shape", "color", "hflip"}
    assert {"accuracy_ci_low", "accuracy_ci_high", "chance", "converged", "val_accuracy"} <= set(first.columns)
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 3 * 2 and {"best_cut", "gain", "gain_ci_low", "gain_ci_high", "last_cut"} <= set(summary.columns)
    search = pd.read_csv(out / "search.csv")
    assert set(search["hparam"]) == {"C", "k"} and search["chosen"].sum() == len(first)
    assert "plotly" in (out / "figure.html").read_text()[:5000].lower()
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics["metric"]) == {"rankme", "rankme_frac"} and len(metrics) == 2 * 8  # per cut (pixels: none)
    cka = pd.read_csv(out / "cka.csv")
    assert len(cka) == 8 * 8 and np.allclose(cka.loc[cka["cut_a"] == cka["cut_b"], "cka"], 1.0)
    sel = pd.read_csv(out / "metric_selection.csv")
    assert set(sel["task"]) == {"shape", "color", "hflip"} and "Does a label-free metric" in printed
    cfg = json.loads((out / "run.json").read_text())
    assert cfg["models"] == [f"file:{path}"] and cfg["tasks"] == ["shape", "color", "hflip"] and cfg["seed"] == 1

    # Saved features: documented layout, labels equal the dataset's.
    (npz,) = list((out / "features").glob("*.npz"))
    arr = np.load(npz)
    assert list(arr["cuts"]) == ["stem", "layer1", "layer2", "layer3", "pool", "proj1", "proj2", "proj3"]
    assert arr["train__proj3"].shape == (300, 16) and arr["test__stem"].shape == (100, 8)
    assert arr["train__proj3__hflip"].shape == (300, 16)  # the hflip task's own view of the images
    ds = load_dataset("shapes", tasks=["shape", "color", "hflip"], n_train=300, n_test=100, seed=1)
    assert np.array_equal(arr["train_labels__hflip"], ds.train_labels["hflip"].numpy())

    # --config reproduces the same numbers, recomputed from scratch (no cache).
    out2 = tmp_path / "again"
    assert main(["sweep", "--config", str(out / "run.json"), "--out", str(out2), "--no-cache", "--quiet"]) == 0
    second = pd.read_csv(out2 / "results.csv")
    pd.testing.assert_frame_equal(first, second)


@pytest.mark.parametrize("args, message", [
    (["sweep", "--model", "zoo:does_not_exist"], r"Unknown zoo model 'does_not_exist'"),
    (["sweep", "--model", "FILE", "--cuts", "layer9", "--n-train", "50", "--n-test", "20"], r"no cut 'layer9'.*Valid: stem"),
    (["sweep", "--model", "FILE", "--dataset", "mnist"], r"Unknown dataset 'mnist'"),
    (["sweep", "--model", "FILE", "--tasks", "colour"], r"colour"),
    (["sweep", "--model", "FILE", "--probe", "svm"], r"probes=\['svm'\] is invalid\. Valid: .*linear, knn"),
    (["sweep"], r"No model given"),
    (["sweep", "--config", "/no/such/run.json"], r"does not exist"),
    (["sweep", "--model", "FILE", "--batch-size", "0"], r"batch_size=0 is invalid\. Valid: an integer >= 1"),
    (["sweep", "--model", "FILE", "--batch-size", "-3"], r"batch_size=-3 is invalid"),
    (["sweep", "--model", "FILE", "--linear-grid", "abc"], r"--linear-grid 'abc' is invalid\. Valid: comma-separated numbers"),
    (["sweep", "--model", "FILE", "--knn-k", "1.5"], r"--knn-k '1\.5' is invalid\. Valid: comma-separated integers"),
    (["sweep", "--model", "FILE", "--baseline", "randominit"], r"baselines=\['randominit'\] is invalid.*random-init"),
])
def test_cli_errors_are_messages_not_tracebacks(tmp_path, capsys, args, message):
    import re

    _, path = saved_tiny(tmp_path)
    args = [f"file:{path}" if a == "FILE" else a for a in args]
    assert main(args + ["--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and re.search(message, err, re.S) and "Traceback" not in err


def test_config_with_null_field_is_refused_before_work(tmp_path, capsys):
    import json as _json

    _, path = saved_tiny(tmp_path)
    cfg = tmp_path / "run.json"
    cfg.write_text(_json.dumps({"models": [f"file:{path}"], "batch_size": None}))
    assert main(["sweep", "--config", str(cfg), "--quiet"]) == 2
    assert "batch_size=None is invalid" in capsys.readouterr().err


def test_unwritable_out_fails_before_extraction(tmp_path, capsys, monkeypatch):
    import gr_explorer.run as run

    _, path = saved_tiny(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    monkeypatch.setattr(run, "extract_features", lambda *a, **k: pytest.fail("extraction started"))
    assert main(["sweep", "--model", f"file:{path}", "--out", str(blocker / "out"), "--quiet"]) == 2
    assert "output folder (--out)" in capsys.readouterr().err


def test_cuts_command(tmp_path, capsys):
    _, path = saved_tiny(tmp_path)
    assert main(["cuts", "--model", f"file:{path}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["0", "stem", "backbone", "8"]
    assert lines[-1].split() == ["7", "proj3", "projector", "16"]


def test_datasets_command(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "shapes" in out and "imagefolder:<path>" in out and "hflip" in out


@pytest.mark.parametrize("command", ["sweep", "cuts", "zoo", "datasets", "train", "convert"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines; join them
    assert e.value.code == 0 and "usage: gr-explorer" in out
    # each flag states its default at most once, and never as 'None' (a flag whose default is 'not given')
    assert "(default: None)" not in out
    assert all(flag_help.count("(default:") <= 1 for flag_help in re.split(r" --?[a-z]", out))


def test_sigterm_mid_sweep_exits_cleanly_and_leaves_the_earlier_out_whole(tmp_path):
    """SIGTERM (a scheduler's time limit, `kill`) while the sweep works: exit code 143, a message instead of a
    traceback, and the --out folder of the earlier run exactly as it was (nothing of the stopped run published)."""
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time
    from pathlib import Path

    _, path = saved_tiny(tmp_path)
    out = tmp_path / "out"
    args = ["sweep", "--model", f"file:{path}", "--dataset", "shapes", "--tasks", "shape,color", "--out", str(out)]
    assert main([*args, "--n-train", "60", "--n-test", "30", "--quiet"]) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "gr_explorer", *args, "--n-train", "3000", "--n-test", "1500"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(lambda: proc.stderr.read(1), "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 300
    while "extract" not in "".join(err) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # mid-sweep: the dataset is made and features are being extracted
    assert proc.poll() is None, "".join(err)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 128 + signal.SIGTERM
    reader.join(10)
    text = "".join(err)
    assert "terminated (SIGTERM)" in text and "Traceback" not in text
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != "feature-cache")
    assert left == sorted(["out", path.name, path.with_suffix(".json").name])  # no staging folder beside --out


def test_a_library_warning_is_one_line_like_the_notes(tmp_path, capsys):
    """A damaged cache entry is dropped with a 'warning:' line naming the cache, not Python's source path and line."""
    _, path = saved_tiny(tmp_path)
    args = ["sweep", "--model", f"file:{path}", "--dataset", "shapes", "--tasks", "shape", "--n-train", "60",
            "--n-test", "30", "--cuts", "pool", "--cache-dir", str(tmp_path / "c"), "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    (meta,) = (tmp_path / "c").rglob("meta.json")
    meta.write_text(meta.read_text().replace('"pool"', '"pool "'))  # a hand edit: the checksum no longer matches
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert re.search(rf"^warning: The feature cache {re.escape(repr(str(tmp_path / 'c')))} held a bad entry", err, re.M), err
    assert "UserWarning" not in err and "features.py" not in err
    assert (pd.read_csv(tmp_path / "a" / "results.csv")["accuracy"] == pd.read_csv(tmp_path / "b" / "results.csv")["accuracy"]).all()

"""Bad inputs get a clear message (exit code 2, naming the input and what is valid), never a traceback.

One table per family: every sweep flag, every run.json field, every checkpoint-card field, and the
file-system failures a user meets. Each case is (input, expected message fragment).
"""

from __future__ import annotations

import json
import os
import re

import pytest

from gr_explorer.cli import main
from helpers import saved_tiny

FLAG_CASES = [
    (["--model", "zoo:nope"], r"Unknown zoo model 'nope'"),
    (["--model", "hub:x"], r"models=\['hub:x'\] is invalid\. Valid: a non-empty list of model specs"),
    (["--dataset", "mnist"], r"Unknown dataset 'mnist'"),
    (["--dataset", "imagefolder:"], r"needs a folder: imagefolder:<path>"),
    (["--tasks", "colour"], r"'colour' is not a task of dataset 'shapes'.*Did you mean 'color'"),
    (["--cuts", "layer9"], r"no cut 'layer9'.*Valid: stem"),
    (["--probe", "svm"], r"probes=\['svm'\] is invalid\. Valid: .*linear, knn"),
    (["--n-train", "0"], r"n_train=0 is invalid\. Valid: an integer >= 1, or null / 'all'"),
    (["--n-train", "many"], r"--n-train 'many' is invalid\. Valid: an integer >= 1 or 'all'"),
    (["--n-test", "-5"], r"n_test=-5 is invalid"),
    (["--seed", "-1"], r"seed=-1 is invalid\. Valid: an integer >= 0"),
    (["--seed", "1.5"], r"--seed '1\.5' is invalid\. Valid: an integer"),
    (["--device", "tpu"], r"device='tpu' is invalid\. Valid: auto, cpu, cuda, cuda:N or mps"),
    (["--batch-size", "0"], r"batch_size=0 is invalid\. Valid: an integer >= 1"),
    (["--batch-size", "-3"], r"batch_size=-3 is invalid"),
    (["--batch-size", "big"], r"--batch-size 'big' is invalid\. Valid: an integer"),
    (["--readout", "average"], r"readout=\['average'\] is invalid\. Valid: .*cls, mean, cls\+mean, max, registers, all-tokens-mean, avg"),
    (["--image-size", "3"], r"image_size=3 is invalid\. Valid: an integer from 8 to 4096"),
    (["--val-fraction", "1.5"], r"val_fraction=1\.5 is invalid\. Valid: a number strictly between 0 and 1"),
    (["--linear-grid", "abc"], r"--linear-grid 'abc' is invalid\. Valid: comma-separated numbers"),
    (["--linear-grid", "0.1,-1"], r"linear_grid=\[0\.1, -1\.0\] is invalid\. Valid: .*positive numbers"),
    (["--knn-k", "1.5"], r"--knn-k '1\.5' is invalid\. Valid: comma-separated integers"),
    (["--knn-k", "0,5"], r"knn_ks=\[0, 5\] is invalid\. Valid: .*positive integers"),
    (["--knn-temperature", "0"], r"knn_temperature=0\.0 is invalid\. Valid: a positive number"),
    (["--baseline", "randominit"], r"baselines=\['randominit'\] is invalid.*did you mean 'random-init'"),
    (["--metrics", "rank"], r"metrics=\['rank'\] is invalid.*rankme"),
    (["--bootstrap", "10"], r"bootstrap=10 is invalid\. Valid: an integer >= 100"),
    (["--weights", "random", "--baseline", "random-init"], r"would measure the same random network twice"),
    (["--baseline", "random-init:1"], r"baselines=\['random-init:1'\] is invalid\. Valid: .*random-init:N \(N: an integer "
                                     r"from 2 to 20\)"),
    (["--baseline", "random-init:50"], r"baselines=\['random-init:50'\] is invalid"),
    (["--baseline", "random-init:three"], r"baselines=\['random-init:three'\] is invalid"),
    (["--baseline", "pixels:3"], r"baselines=\['pixels:3'\] is invalid"),
    (["--baseline", "random-init,random-init:3"], r"names the random-init baseline twice.*Valid: one of random-init"),
    (["--weights", "random", "--baseline", "random-init:3"], r"random-init:3 with weights=random would measure"),
    (["--tasks", "digit,grayscale", "--dataset", "digits"], r"'grayscale' is meaningless for 'digits'"),
]


@pytest.fixture
def tiny(tmp_path):
    return saved_tiny(tmp_path)[1]


def _run(args, capsys):
    code = main(args + ["--quiet"]) if args[0] == "sweep" else main(args)
    err = capsys.readouterr().err
    return code, err


def _check(code, err, fragment):
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err, err
    assert re.search(fragment, err, re.S), (fragment, err)


@pytest.mark.parametrize("args, fragment", FLAG_CASES, ids=[" ".join(a) for a, _ in FLAG_CASES])
def test_every_flag(tiny, tmp_path, capsys, args, fragment):
    base = ["sweep", "--model", f"file:{tiny}", "--n-train", "40", "--n-test", "20", "--no-cache"]
    if "--model" in args:
        base = ["sweep", "--n-train", "40", "--n-test", "20", "--no-cache"]
    _check(*_run(base + args, capsys), fragment)


CONFIG_CASES = [
    ("not json {", r"is not valid JSON"),
    ('["zoo:simclr"]', r"must be a JSON object"),
    ('{"dataset": "shapes"}', r"has no 'models' list"),
    ('{"models": ["zoo:simclr"], "colour": 1}', r"Unknown key\(s\) \['colour'\]"),
    ('{"gr_explorer_run": 99, "models": ["zoo:simclr"]}', r"gr_explorer_run=99, a version this gr-explorer cannot read"),
    ('{"models": ["zoo:simclr"], "batch_size": null}', r"batch_size=None is invalid"),
    ('{"models": ["zoo:simclr"], "n_train": "10"}', r"n_train='10' is invalid"),
    ('{"models": ["zoo:simclr"], "probes": "svm"}', r"probes=\['svm'\] is invalid"),
    ('{"models": ["zoo:simclr"], "knn_ks": [1.5]}', r"knn_ks=\[1\.5\] is invalid"),
    ('{"models": ["zoo:simclr"], "val_fraction": true}', r"val_fraction=True is invalid"),
    ('{"models": [], "dataset": "shapes"}', r"models=\[\] is invalid"),
    ('{"models": ["zoo:simclr", "zoo:simclr"]}', r"each named once"),
]


@pytest.mark.parametrize("text, fragment", CONFIG_CASES, ids=[t for t, _ in CONFIG_CASES])
def test_every_run_json_field(tmp_path, capsys, text, fragment):
    cfg = tmp_path / "run.json"
    cfg.write_text(text)
    _check(*_run(["sweep", "--config", str(cfg)], capsys), fragment)


CARD_CASES = [
    (("preprocessing", "input_size"), 0, r"preprocessing\.input_size=0 is invalid\. Valid: an integer from 8 to 1024"),
    (("preprocessing", "input_size"), 100000, r"preprocessing\.input_size=100000 is invalid"),
    (("preprocessing", "mean"), [0.5, 0.5], r"preprocessing\.mean=\[0\.5, 0\.5\] is invalid\. Valid: a list of 3 numbers"),
    (("preprocessing", "std"), "0.5", r"preprocessing\.std='0\.5' is invalid"),
    (("preprocessing", "std"), [0.5, 0, 0.5], r"preprocessing\.std=\[0\.5, 0, 0\.5\] is invalid\. Valid: 3 positive numbers"),
    (("preprocessing", "interpolation"), "lanczos9", r"preprocessing\.interpolation='lanczos9' is invalid"),
    (("architecture", "backbone", "width"), -8, r"architecture\.backbone\.width=-8 is invalid"),
    (("architecture", "backbone", "width"), 10**6, r"architecture\.backbone\.width=1000000 is invalid"),
    (("architecture", "backbone", "depths"), [1, 0, 1], r"architecture\.backbone\.depths=\[1, 0, 1\] is invalid"),
    (("architecture", "backbone", "type"), "vgg", r"architecture\.backbone\.type='vgg' is invalid\. Valid: resnet_small, timm"),
    (("architecture", "projector", "spec"), "32--16", r"architecture\.projector\.spec='32--16' is invalid"),
    (("architecture", "projector", "spec"), "32-999999", r"architecture\.projector\.spec='32-999999' is invalid"),
    (("architecture", "projector", "norm"), "gn", r"architecture\.projector\.norm='gn' is invalid\. Valid: bn, ln, none"),
    (("readout",), "avg", r"readout='avg' is invalid\. Valid: cls, mean, cls\+mean, max, registers, all-tokens-mean"),
    (("architecture",), None, r"architecture\.backbone=None is invalid"),
]


@pytest.mark.parametrize("path, value, fragment", CARD_CASES, ids=[".".join(p) + "=" + str(v) for p, v, _ in CARD_CASES])
def test_every_card_field(tiny, capsys, path, value, fragment):
    card_path = tiny.with_suffix(".json")
    card = json.loads(card_path.read_text())
    node = card
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    card_path.write_text(json.dumps(card))
    _check(*_run(["cuts", "--model", f"file:{tiny}"], capsys), fragment)


def test_timm_card_cannot_make_timm_read_a_file(tiny, tmp_path, capsys):
    card_path = tiny.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["architecture"]["backbone"] = {"type": "timm", "name": "resnet18", "kwargs": {"checkpoint_path": "/etc/passwd"}}
    card_path.write_text(json.dumps(card))
    _check(*_run(["cuts", "--model", f"file:{tiny}"], capsys), r"kwargs\.checkpoint_path=.* is invalid.*would read files")


def test_card_without_preprocessing_warns_with_the_defaults(tiny):
    from gr_explorer.models import load_model

    card_path = tiny.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card.pop("preprocessing")
    card_path.write_text(json.dumps(card))
    with pytest.warns(UserWarning, match=r"no 'preprocessing': using the defaults input_size=32, mean=\[0\.5, 0\.5, 0\.5\]"):
        load_model(f"file:{tiny}")


def test_card_readout_is_honoured(tmp_path):
    from gr_explorer.models import load_model
    from gr_explorer.models.checkpoint import build_model, save_checkpoint

    card = {"architecture": {"backbone": {"type": "timm", "name": "test_vit"}, "projector": None},
            "preprocessing": {"input_size": 160, "mean": [0.5] * 3, "std": [0.5] * 3}, "readout": "mean"}
    path = save_checkpoint(build_model(card, name="v"), tmp_path / "v.safetensors", card)
    assert load_model(f"file:{path}").backbone.readout == "mean"
    assert load_model(f"file:{path}", readout="cls").backbone.readout == "cls"


def test_file_system_failures(tiny, tmp_path, capsys):
    """Missing, corrupt and mismatched files; folders that cannot be written fail before any work."""
    cases = []
    cases.append((["sweep", "--model", f"file:{tmp_path / 'missing.safetensors'}"], r"does not exist"))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    bad.with_suffix(".json").write_text(tiny.with_suffix(".json").read_text())
    cases.append((["cuts", "--model", f"file:{bad}"], r"corrupt or truncated"))
    nocard = tmp_path / "nocard.safetensors"
    nocard.write_bytes(tiny.read_bytes())
    cases.append((["cuts", "--model", f"file:{nocard}"], r"has no card"))
    badjson = tmp_path / "badjson.safetensors"
    badjson.write_bytes(tiny.read_bytes())
    badjson.with_suffix(".json").write_text("{oops")
    cases.append((["cuts", "--model", f"file:{badjson}"], r"is not valid JSON"))
    mism = tmp_path / "mism.safetensors"
    mism.write_bytes(tiny.read_bytes())
    card = json.loads(tiny.with_suffix(".json").read_text())
    card["architecture"]["projector"]["spec"] = "64-16"
    mism.with_suffix(".json").write_text(json.dumps(card))
    cases.append((["cuts", "--model", f"file:{mism}"], r"does not match its card's architecture"))
    cases.append((["sweep", "--model", f"file:{tiny}", "--dataset", f"imagefolder:{tmp_path / 'nowhere'}"], r"does not exist"))
    only_train = tmp_path / "imgs"
    (only_train / "train" / "a").mkdir(parents=True)
    cases.append((["sweep", "--model", f"file:{tiny}", "--dataset", f"imagefolder:{only_train}"], r"no held-out folder"))
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    if os.access(ro, os.W_OK):  # root ignores permission bits: use a path under a file instead
        ro = tiny / "sub"
    cases.append((["sweep", "--model", f"file:{tiny}", "--out", str(ro / "out")], r"output folder \(--out\) .* cannot be written"))
    cases.append((["sweep", "--model", f"file:{tiny}", "--cache-dir", str(ro / "cache")],
                  r"feature cache folder .* cannot be written"))
    for args, fragment in cases:
        _check(*_run(args, capsys), fragment)


def test_damaged_entry_in_a_read_only_cache_is_a_miss(tmp_path):
    from gr_explorer.cache import FeatureCache
    from gr_explorer.features import extract_features
    from helpers import random_dataset, tiny_model

    cache = FeatureCache(tmp_path / "c")
    ds = random_dataset()
    extract_features(tiny_model(), ds, ["pool"], cache=cache)
    (entry,) = list((tmp_path / "c").rglob("train.bin"))
    entry.write_bytes(entry.read_bytes()[:40])
    for d in (entry.parent, tmp_path / "c"):
        os.chmod(d, 0o500)
    try:
        again = extract_features(tiny_model(), ds, ["pool"], cache=cache)
        assert again.cached_cuts == [] and again.forward_batches > 0
    finally:
        for d in (entry.parent, tmp_path / "c"):
            os.chmod(d, 0o700)

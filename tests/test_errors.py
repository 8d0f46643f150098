"""Bad inputs get a clear message (exit code 2, naming the input and what is valid), never a traceback or a hang.

One table per family: every sweep flag (sizes, seeds and paths included), every run.json field, --config files that
are not settings files (a pipe, a device, a folder, a huge or deeply nested file), every checkpoint-card field, train
and convert outputs that cannot be written (refused before the work), image folders that loop, block or cannot be
read, and the file-system failures a user meets: 150 cases in all. Each case is (input, expected message fragment).
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
    (["--n-train", "0"], r"n_train=0 is invalid\. Valid: an integer from 1 to 100000000, or null / 'all'"),
    (["--n-train", "many"], r"--n-train 'many' is invalid\. Valid: an integer >= 1 or 'all'"),
    (["--n-test", "-5"], r"n_test=-5 is invalid"),
    (["--seed", "-1"], r"seed=-1 is invalid\. Valid: an integer from 0 to 4294967295"),
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
    (["--bootstrap", "10"], r"bootstrap=10 is invalid\. Valid: an integer from 100 to 100000"),
    (["--weights", "random", "--baseline", "random-init"], r"would measure the same random network twice"),
    (["--baseline", "random-init:1"], r"baselines=\['random-init:1'\] is invalid\. Valid: .*random-init:N \(N: an integer "
                                     r"from 2 to 20\)"),
    (["--baseline", "random-init:50"], r"baselines=\['random-init:50'\] is invalid"),
    (["--baseline", "random-init:three"], r"baselines=\['random-init:three'\] is invalid"),
    (["--baseline", "pixels:3"], r"baselines=\['pixels:3'\] is invalid"),
    (["--baseline", "random-init,random-init:3"], r"names the random-init baseline twice.*Valid: one of random-init"),
    (["--weights", "random", "--baseline", "random-init:3"], r"random-init:3 with weights=random would measure"),
    (["--tasks", "digit,grayscale", "--dataset", "digits"], r"'grayscale' is meaningless for 'digits'"),
    # issue 23, item 8: sizes that reached NumPy as a MemoryError, seeds that overflowed later, other settings
    (["--n-train", "1000000000000"], r"n_train=1000000000000 is invalid\. Valid: an integer from 1 to 100000000"),
    (["--n-test", "100000001"], r"n_test=100000001 is invalid\. Valid: an integer from 1 to 100000000"),
    (["--n-train", "-1"], r"n_train=-1 is invalid"),
    (["--n-train", "30000000"], r"n_train=30,000,000 \(--n-train, .*\) is too large for this machine: the shapes images "
                                r"\(.* train \+ .* test\) would need about .* of memory.*Valid: at most about [\d,]+ images"),
    (["--n-train", "1000", "--n-test", "1000", "--image-size", "4096"],
     r"n_train=1,000 .* at image_size=4,096 is too large for this machine: .*would need about 101 GB of memory"),
    (["--bootstrap", "10000000000"], r"bootstrap=10000000000 is invalid\. Valid: an integer from 100 to 100000"),
    (["--bootstrap", "100000", "--memory-budget", "1048576"],
     r"bootstrap=100,000 resamples of 20 test images need 16\.0 MB for their indices, more than "
     r"memory_budget=1,048,576 bytes \(1\.0 MB\)\. Valid: at most 6,553 resamples"),
    (["--seed", "9223372036854775808"], r"seed=9223372036854775808 is invalid\. Valid: an integer from 0 to 4294967295"),
    (["--seed", "9300000000000", "--metrics", "invariance"], r"seed=9300000000000 is invalid\. Valid: an integer from 0"),
    (["--seed", "4294967296"], r"seed=4294967296 is invalid\. Valid: an integer from 0 to 4294967295"),
    (["--cache-dir", "~nosuchuser/x"], r"feature cache folder \(--cache-dir\) '~nosuchuser/x' starts with '~nosuchuser', "
                                      r"the home folder of a user this machine does not know\. Valid: ~/\.\.\., an absolute"),
    (["--out", "~nosuchuser/out"], r"output folder \(--out\) '~nosuchuser/out' starts with '~nosuchuser'.*Valid: ~/"),
    (["--dataset", "imagefolder:~nosuchuser/imgs"], r"image folder '~nosuchuser/imgs' starts with '~nosuchuser'"),
    (["--model", "file:~nosuchuser/m.safetensors"], r"checkpoint file '~nosuchuser/m\.safetensors' starts with"),
    (["--dataset", "cifar10", "--data-root", "~nosuchuser/data"], r"torchvision data folder .*'~nosuchuser/data' starts"),
    (["--val-fraction", "0"], r"val_fraction=0\.0 is invalid\. Valid: a number strictly between 0 and 1"),
    (["--knn-temperature", "-1"], r"knn_temperature=-1\.0 is invalid\. Valid: a positive number"),
    (["--memory-budget", "10"], r"memory_budget=10 is invalid\. Valid: an integer >= 1048576"),
    (["--workers", "100"], r"workers=100 is invalid\. Valid: .*an integer from 0 to 64"),
    (["--feature-dtype", "float64"], r"feature_dtype='float64' is invalid\. Valid: float32, float16"),
    (["--fingerprint", "hash"], r"fingerprint='hash' is invalid\. Valid: stat, content"),
    (["--figures", "gif"], r"figures=\['gif'\] is invalid\. Valid: .*html"),
    (["--cut-detail", "all"], r"cut_detail='all' is invalid\. Valid: block, sub-block"),
    (["--readout-norm", "maybe"], r"readout_norm='maybe' is invalid\. Valid: off, on, both"),
    (["--compile", "yes"], r"compile='yes' is invalid\. Valid: auto, on, off"),
    (["--channels-last", "sometimes"], r"channels_last='sometimes' is invalid\. Valid: auto, on, off"),
    (["--auto-batch", "on"], r"auto_batch='on' is invalid\. Valid: auto, off"),
    (["--decoder", "ffmpeg"], r"decoder='ffmpeg' is invalid\. Valid: auto, pil"),
    (["--image-size", "5000"], r"image_size=5000 is invalid\. Valid: an integer from 8 to 4096"),
    (["--linear-grid", "0"], r"linear_grid=\[0\.0\] is invalid\. Valid: .*positive numbers"),
    (["--stages", "layer1"], r"stages/projector name the cuts of a py: model; no model here is one"),
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
    if "--cache-dir" in args:
        base.remove("--no-cache")
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
    ("[" * 100000 + "]" * 100000, r"nested too deeply to be a settings file\. Valid: a JSON object of settings"),
    ('{"models": ["zoo:simclr"], "seed": 18446744073709551616}', r"seed=18446744073709551616 is invalid\. Valid: an "
                                                                 r"integer from 0 to 4294967295"),
    ('{"models": ["zoo:simclr"], "bootstrap": 1e12}', r"bootstrap=1000000000000\.0 is invalid\. Valid: an integer"),
    ('{"models": ["zoo:simclr"], "n_test": 100000000000}', r"n_test=100000000000 is invalid\. Valid: an integer from 1"),
    ('{"models": ["zoo:simclr"], "memory_budget": -1}', r"memory_budget=-1 is invalid"),
    ('{"models": ["zoo:simclr"], "dataset": 5}', r"dataset=5 is invalid\. Valid: a dataset spec"),
]


@pytest.mark.parametrize("text, fragment", CONFIG_CASES, ids=[t[:60] for t, _ in CONFIG_CASES])
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
    # issue 23, item 8: card fields that reached torch or timm unchecked (one only after a whole sweep)
    (("architecture", "backbone"), {"type": "timm", "name": "resnet18", "stem": {"kernel_size": "abc"}},
     r"architecture\.backbone\.stem\.kernel_size='abc' is invalid\. Valid: an object such as \{\"kernel_size\": 3"),
    (("architecture", "backbone"), {"type": "timm", "name": "resnet18", "stem": {"kernel_size": 0}},
     r"stem\.kernel_size=0 is invalid\. Valid: .*kernel_size 1-15"),
    (("architecture", "backbone"), {"type": "timm", "name": "resnet18", "stem": {"kernel_size": 3, "dilation": 2}},
     r"stem\.dilation=2 is invalid"),
    (("architecture", "backbone"), {"type": "timm", "name": "resnet18", "stem": {"stride": 1}},
     r"architecture\.backbone\.stem=\{'stride': 1\} is invalid"),
    (("architecture", "backbone"), {"type": "timm", "name": "resnet18", "stem": "3x3"},
     r"architecture\.backbone\.stem='3x3' is invalid"),
    (("architecture", "backbone"), {"type": "timm", "name": "resnet18", "stem": {"kernel_size": 3, "maxpool": "no"}},
     r"stem\.maxpool='no' is invalid"),
    (("architecture", "backbone"), {"type": "timm", "name": "vit_tiny_patch16_224", "stem": {"kernel_size": 3}},
     r"stem patches a ResNet's conv1, and timm's 'vit_tiny_patch16_224' has none\. Valid: a stem only on ResNet"),
    (("architecture", "backbone"), {"type": "timm", "name": "resnet18", "kwargs": {"nonsense_kw": 1}},
     r"timm cannot build 'resnet18' with the card's keyword arguments \{'nonsense_kw': 1\}.*Valid: keyword arguments"),
    (("architecture", "projector"), {"blocks": [[{"type": "linear", "in": 64, "out": 8}, {"type": "weird"}]]},
     r"projector\.blocks\[0\]\[1\]\.type='weird' is invalid\. Valid: one of linear, bn, ln, relu, gelu, l2norm"),
    (("architecture", "projector"), {"blocks": [[{"type": "linear", "in": 64, "out": 8},
                                                 {"type": "gelu", "approximate": "bogus"}]]},
     r"blocks\[0\]\[1\]\.approximate='bogus' is invalid\. Valid: none, tanh"),
    (("architecture", "projector"), {"blocks": [[{"type": "linear", "in": 64}]]},
     r"blocks\[0\]\[0\]\.out=None is invalid\. Valid: an integer from 1 to 65536 \(a linear layer needs it\)"),
    (("architecture", "projector"), {"blocks": [[{"type": "linear", "in": 64, "out": 8, "bias": "yes"}]]},
     r"blocks\[0\]\[0\]\.bias='yes' is invalid\. Valid: true or false"),
    (("architecture", "projector"), {"blocks": [[{"type": "linear", "in": 0, "out": 8}]]},
     r"blocks\[0\]\[0\]\.in=0 is invalid\. Valid: an integer from 1 to 65536"),
    (("architecture", "projector"), {"blocks": [[{"type": "linear", "in": 64, "out": 8}, {"type": "bn", "dim": 8,
                                                                                         "eps": -1}]]},
     r"blocks\[0\]\[1\]\.eps=-1 is invalid\. Valid: a number in \(0, 1\]"),
    (("architecture", "projector"), {"blocks": [[{"type": "linear", "in": 64, "out": 8}, {"type": "relu",
                                                                                         "inplace": True}]]},
     r"blocks\[0\]\[1\]\.inplace=True is invalid\. Valid: the fields of a relu layer: none"),
    (("architecture", "projector"), {"blocks": "abc"}, r"architecture\.projector\.blocks='abc' is invalid"),
    (("architecture", "projector"), {"blocks": [[]]}, r"architecture\.projector\.blocks=\[\[\]\] is invalid"),
    (("augmentations",), {"nope": 1}, r"augmentations\.nope=1 is invalid\. Valid: an object with the fields crop_scale"),
    (("augmentations",), {"flip_p": 2}, r"augmentations \{'flip_p': 2\} is invalid: Augmentation flip_p=2 is not a "
                                        r"probability\. Valid: a number in \[0, 1\]"),
    (("augmentations",), {"crop_scale": "ab"}, r"augmentations .* is invalid: Valid: numbers, and pairs of numbers"),
    (("augmentations",), [1, 2], r"augmentations=\[1, 2\] is invalid\. Valid: an object with the fields"),
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


# ----------------------------------------------------------------------------------------------
# issue 23, item 8: --config that is not a file (a pipe used to hang, /dev/zero never ended), train and convert
# outputs that cannot be written (found before the work), image folders that loop, cannot be read or hold pipes


def _special_config(kind: str, tmp_path):
    if kind == "named pipe":
        path = tmp_path / "pipe.json"
        os.mkfifo(path)
        return path
    if kind == "device":
        return "/dev/zero"
    if kind == "folder":
        return tmp_path
    if kind == "huge":
        path = tmp_path / "huge.json"
        path.write_text('{"models": ["zoo:simclr"], "pad": "' + "x" * (2 << 20) + '"}')
        return path
    return tmp_path / "missing.json"


SPECIAL_CONFIGS = [
    ("named pipe", r"Run config '.*pipe\.json' is a named pipe, not a file\. Valid: a JSON file"),
    ("device", r"Run config '/dev/zero' is a device or socket, not a file\. Valid: a JSON file"),
    ("folder", r"Run config '.*' is a folder, not a file\. Valid: a JSON file"),
    ("huge", r"Run config '.*huge\.json' has 2,097,1\d\d bytes, more than a settings file ever needs\. Valid: a JSON "
             r"file of at most 1,048,576 bytes"),
    ("missing", r"Run config '.*missing\.json' does not exist"),
]


@pytest.mark.parametrize("kind, fragment", SPECIAL_CONFIGS, ids=[k for k, _ in SPECIAL_CONFIGS])
def test_config_that_is_not_a_settings_file_is_refused_without_reading_it(tmp_path, capsys, kind, fragment):
    import time

    t0 = time.perf_counter()
    _check(*_run(["sweep", "--config", str(_special_config(kind, tmp_path))], capsys), fragment)
    assert time.perf_counter() - t0 < 10  # a pipe is never opened (it would block), /dev/zero never read


def _release(folder):
    """A VICReg-layout release (torchvision ResNet-18 backbone + a small projector), as the adapters read it."""
    import torch
    import torchvision
    from torch import nn

    torch.manual_seed(0)
    net = torchvision.models.resnet18()
    net.fc = nn.Identity()
    proj = nn.Sequential(nn.Linear(512, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 16))
    sd = {**{f"module.backbone.{k}": v for k, v in net.state_dict().items()},
          **{f"module.projector.{k}": v for k, v in proj.state_dict().items()}}
    path = folder / "resnet18_fullckpt.pth"
    torch.save({"epoch": 1, "model": sd}, path)
    return path


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return _release(tmp_path_factory.mktemp("release"))


def _under_a_file(tmp_path):
    (tmp_path / "a_file").write_text("x")
    return tmp_path / "a_file" / "sub"


OUTPUT_CASES = [  # (command builder, fragment, the work that must not start)
    ("train --out below a file", lambda t, r: ["train", "--n-train", "64", "--epochs", "1", "--out",
                                               str(_under_a_file(t) / "m.safetensors")],
     r"folder of the checkpoint path \(--out\) .*a_file/sub/m\.safetensors.* cannot be written .*Valid: a folder",
     "gr_explorer.training.cli.load_train_dataset"),
    ("train --out a folder", lambda t, r: ["train", "--n-train", "64", "--epochs", "1", "--out", str(t)],
     r"checkpoint path \(--out\) '.*' is a folder\. Valid: a file path", "gr_explorer.training.cli.load_train_dataset"),
    ("train --seed 2^63", lambda t, r: ["train", "--seed", str(2**63), "--out", str(t / "m.safetensors")],
     r"seed=9223372036854775808 is invalid\. Valid: an integer from 0 to 4294967295", None),
    ("train --data-seed 2^32", lambda t, r: ["train", "--data-seed", str(2**32), "--out", str(t / "m.safetensors")],
     r"data_seed=4294967296 is invalid\. Valid: an integer from 0 to 4294967295", None),
    ("train --n-train 1e12", lambda t, r: ["train", "--n-train", str(10**12), "--out", str(t / "m.safetensors")],
     r"n_train=1000000000000 is invalid\. Valid: an integer from 2 to 100000000", None),
    ("train --eval-n-test 1e9", lambda t, r: ["train", "--eval-n-test", str(10**9), "--out", str(t / "m.safetensors")],
     r"eval_n_test=1000000000 is invalid\. Valid: an integer from 1 to 100000000", None),
    ("train --out ~nosuchuser", lambda t, r: ["train", "--out", "~nosuchuser/m.safetensors"],
     r"checkpoint path \(--out\) '~nosuchuser/m\.safetensors' starts with '~nosuchuser'",
     "gr_explorer.training.cli.load_train_dataset"),
    ("convert into a folder below a file", lambda t, r: ["convert", str(r), "--out",
                                                         str(_under_a_file(t) / "x.safetensors")],
     r"folder of the output checkpoint \(--out\) .* cannot be written", "gr_explorer.models.convert.convert_release"),
    ("convert --out not .safetensors", lambda t, r: ["convert", str(r), "--out", str(t / "x.txt")],
     r"--out must name a \.safetensors file, got '.*x\.txt'\. Valid: e\.g\.", "gr_explorer.models.convert.convert_release"),
    ("convert --arch of another family", lambda t, r: ["convert", str(r), "--arch", "vit_small_patch16_224", "--out",
                                                       str(t / "x.safetensors")],
     r"The head does not fit the output of timm:vit_small_patch16_224 .*--arch vit_small_patch16_224 does not fit these "
     r"weights", None),
    ("convert --arch of another depth", lambda t, r: ["convert", str(r), "--arch", "resnet34", "--out",
                                                      str(t / "x.safetensors")],
     r"does not match its card's architecture \(timm:resnet34.*--arch resnet34 does not fit these weights", None),
    ("convert --arch unknown", lambda t, r: ["convert", str(r), "--arch", "nosuch_net", "--out", str(t / "x.safetensors")],
     r"architecture\.backbone\.name='nosuch_net' is invalid\. Valid: a timm architecture name", None),
    ("cuts --seed 2^80", lambda t, r: ["cuts", "--model", "timm:resnet18", "--weights", "random", "--seed", str(2**80)],
     r"seed=1208925819614629174706176 is invalid\. Valid: an integer from 0 to 4294967295", None),
    ("cuts --seed -5", lambda t, r: ["cuts", "--model", "timm:resnet18", "--weights", "random", "--seed", "-5"],
     r"seed=-5 is invalid\. Valid: an integer from 0 to 4294967295", None),
    ("convert a missing file", lambda t, r: ["convert", str(t / "none.pth"), "--out", str(t / "x.safetensors")],
     r"Checkpoint file '.*none\.pth' does not exist", None),
]


@pytest.mark.parametrize("build, fragment, work", [c[1:] for c in OUTPUT_CASES], ids=[c[0] for c in OUTPUT_CASES])
def test_train_and_convert_refuse_before_the_work(tmp_path, capsys, monkeypatch, release, build, fragment, work):
    if work is not None:  # the refusal must come first: the work itself would fail this test
        monkeypatch.setattr(work, lambda *a, **k: pytest.fail(f"{work} ran before the refusal"))
    _check(*_run(build(tmp_path, release), capsys), fragment)


def _images(folder, classes=("cat", "dog"), n=6):
    import numpy as np
    from PIL import Image

    for k, c in enumerate(classes):
        (folder / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full((16, 16, 3), 30 * i + 100 * k, dtype=np.uint8)).save(folder / c / f"{i}.png")
    return folder


def _loop_below(root):
    (root / "cat" / "sub").symlink_to(root / "cat", target_is_directory=True)


def _loop_to_top(root):
    (root / "dog" / "up").symlink_to(root, target_is_directory=True)


def _pipe(root):
    os.mkfifo(root / "cat" / "x.png")


def _device(root):
    (root / "cat" / "z.png").symlink_to("/dev/zero")


def _broken(root):
    (root / "dog" / "gone.png").symlink_to(root / "nowhere.png")


def _self_link(root):
    (root / "dog" / "me.png").symlink_to(root / "dog" / "me.png")


def _unreadable(root, monkeypatch):
    """A class folder this process cannot list: chmod 000 where permissions apply, else (root) a refusing scandir."""
    target = root / "dog"
    os.chmod(target, 0)
    if os.access(target, os.R_OK):  # root ignores permission bits
        real = os.scandir

        def scandir(path="."):
            if os.path.realpath(path) == os.path.realpath(target):
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)
        monkeypatch.setattr(os, "scandir", scandir)


IMAGE_FOLDER_CASES = [
    ("symlink loop below", _loop_below, r"'cat/sub' is a symbolic link to a folder above it \(a loop\)\. Valid: class "
                                        r"folders that hold images"),
    ("symlink loop to the top", _loop_to_top, r"'dog/up' is a symbolic link to a folder above it \(a loop\)"),
    ("named pipe as an image", _pipe, r"contains 1 entry that is neither files nor folders \(named pipes, devices, "
                                      r"sockets or links that lead nowhere\): cat/x\.png\. Valid: image files"),
    ("/dev/zero as an image", _device, r"neither files nor folders .*: cat/z\.png"),
    ("broken link", _broken, r"neither files nor folders .*: dog/gone\.png"),
    ("link to itself", _self_link, r"neither files nor folders .*: dog/me\.png"),
    ("unreadable class folder", _unreadable, r"'dog' cannot be read \(Permission denied\)\. Valid: class folders this "
                                             r"process can read"),
]


@pytest.mark.parametrize("make, fragment", [c[1:] for c in IMAGE_FOLDER_CASES], ids=[c[0] for c in IMAGE_FOLDER_CASES])
def test_image_folders_that_loop_block_or_cannot_be_read(tiny, tmp_path, capsys, monkeypatch, make, fragment):
    import inspect

    root = _images(tmp_path / "imgs")
    make(*(root, monkeypatch)[:len(inspect.signature(make).parameters)])
    try:
        _check(*_run(["sweep", "--model", f"file:{tiny}", "--dataset", f"imagefolder:{root}", "--no-cache"], capsys),
               fragment)
    finally:
        os.chmod(root / "dog", 0o755)


def test_confined_image_folder_refuses_links_out_at_every_level(tmp_path):
    """With `confine` (the app's data roots) a link out is refused wherever it sits; a link that stays inside works."""
    from gr_explorer.data import load_dataset
    from gr_explorer.errors import DatasetError

    inside, outside = tmp_path / "root", _images(tmp_path / "outside")
    confine = (inside.resolve(),)
    cases = {}
    a = _images(inside / "class_link")
    (a / "bird").symlink_to(outside / "cat", target_is_directory=True)
    cases["class_link"] = "'bird'"
    b = _images(inside / "file_link")
    (b / "cat" / "x.png").symlink_to(outside / "dog" / "0.png")
    cases["file_link"] = "'cat/x.png'"
    c = _images(inside / "deep_link")
    (c / "cat" / "deeper").mkdir()
    (c / "cat" / "deeper" / "y.png").symlink_to(outside / "dog" / "1.png")
    cases["deep_link"] = "'cat/deeper/y.png'"
    d = inside / "split_link"
    _images(d / "test")
    (d / "train").symlink_to(outside, target_is_directory=True)
    cases["split_link"] = "'train'"
    for name, entry in cases.items():
        with pytest.raises(DatasetError, match=rf"{entry} is a symbolic link that leads outside the app's data folder"):
            load_dataset(f"imagefolder:{inside / name}", confine=confine)
        load_dataset(f"imagefolder:{inside / name}")  # without confine (the CLI) the same folder loads
    ok = _images(inside / "ok")
    (ok / "bird").symlink_to(inside / "class_link" / "dog", target_is_directory=True)  # a link that stays inside
    ds = load_dataset(f"imagefolder:{ok}", confine=confine)
    assert ds.classes["label"] == ["bird", "cat", "dog"]

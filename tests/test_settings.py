"""The settings layer: every setting declared once, and the CLI flag, the JSON key and the app default follow it.

Each check is a class over every declared setting of both settings classes (sweep and training), so a setting
added tomorrow is covered without a new test.
"""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from gr_explorer.cli import build_parser
from gr_explorer.config import SweepConfig
from gr_explorer.diagnostics import METRICS as IMPLEMENTED_METRICS
from gr_explorer.errors import ConfigError, TrainingError
from gr_explorer.names import METRICS, OBJECTIVES, PROBES
from gr_explorer.probes import HEADS
from gr_explorer.settings import Interval, Items, Null, Options, Text, format_flag, parse_flag
from gr_explorer.training.config import TrainConfig
from gr_explorer.training.objectives import OBJECTIVES as IMPLEMENTED_OBJECTIVES

CLASSES = {"sweep": (SweepConfig, {"models": ("zoo:simclr",)}), "train": (TrainConfig, {})}
ALL = [(kind, name) for kind, (cls, _) in CLASSES.items() for name, _ in cls.declared()]


def _parser(kind: str):
    sub = build_parser()._subparsers._group_actions[0].choices
    return sub[kind]


def _bad_value(spec):
    """A value every rule of the setting refuses (the wrong type for its kind, or past its bound)."""
    for r in spec.rules:
        if isinstance(r, Interval):
            return (r.lo - 1) if r.lo is not None else (r.hi + 1)
        if isinstance(r, Options):
            return "no-such-" + next(iter(r.names))
        if isinstance(r, Items):
            return () if r.min_len else ("no-such-" + next(iter(getattr(r.rule, "names", ["item"]))),)
    return 3.5  # a number where text (or a JSON object, or a switch) is declared


@pytest.mark.parametrize("kind, name", ALL, ids=[f"{k}.{n}" for k, n in ALL])
def test_each_setting_is_declared_once_and_every_view_follows(kind, name):
    cls, required = CLASSES[kind]
    spec = cls.spec(name)
    assert spec.help and spec.rules, "declared with help and rules"
    obj = cls(**required)
    if name not in required:
        assert getattr(obj, name) == spec.default, "the object's default is the declaration's"
        assert cls.defaults()[name] == spec.default, "the app's defaults are the declaration's"
        assert spec.accepts(spec.default), "the default satisfies the declared rules"
    assert name in json.loads(obj.to_json()), "the JSON key is the field"
    flag = _parser(kind)._option_string_actions.get(spec.flag_name)
    if spec.cli:
        assert flag is not None and flag.dest == name, f"{spec.flag_name} sets {name}"
        shown = spec.default_text()
        if shown and name not in required:
            assert f"(default: {shown})" in flag.help.replace("%%", "%")
    bad = _bad_value(spec)
    with pytest.raises(cls.error, match=rf"\b{name}="):
        cls(**{**required, name: bad})


@pytest.mark.parametrize("kind, name", ALL, ids=[f"{k}.{n}" for k, n in ALL])
def test_flag_words_round_trip_every_default(kind, name):
    cls, required = CLASSES[kind]
    spec = cls.spec(name)
    value = required.get(name, spec.default)
    if value is None or spec.kind == "bool":
        return
    word = format_flag(spec.kind, value)
    assert parse_flag(spec.kind, word, spec.flag_name) == value


def test_a_default_changed_in_the_declaration_changes_the_flag_the_json_and_the_app(monkeypatch):
    from streamlit.testing.v1 import AppTest

    spec = SweepConfig.spec("n_train")
    monkeypatch.setattr(spec, "default", 777)
    assert SweepConfig(models=["zoo:simclr"]).n_train == 777
    assert json.loads(SweepConfig(models=["zoo:simclr"]).to_json())["n_train"] == 777
    help_text = _parser("sweep")._option_string_actions["--n-train"].help
    assert "(default: 777)" in help_text
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "streamlit_app.py"), default_timeout=300).run()
    assert not at.exception, at.exception
    widget = next(w for w in at.number_input if w.key == "ex_n_train")
    assert widget.value == 777


def test_setting_rules_name_the_field_and_what_is_valid():
    with pytest.raises(ConfigError, match=r"n_train=0 is invalid\. Valid: an integer from 1 to 100000000, or null / 'all'"):
        SweepConfig(models=["zoo:simclr"], n_train=0)
    with pytest.raises(ConfigError, match=r"probes=\['svm'\] is invalid\. Valid: a non-empty list of probes from: "
                                          r"linear, knn"):
        SweepConfig(models=["zoo:simclr"], probes=["svm"])
    with pytest.raises(TrainingError, match=r"crop_scale=\[0\.5, 0\.2\] is invalid|crop_scale=\(0\.5, 0\.2\)"):
        TrainConfig(crop_scale=(0.5, 0.2))
    with pytest.raises(TrainingError, match=r"projector='512-x' is invalid"):
        TrainConfig(projector="512-x")
    with pytest.raises(TrainingError, match=r"needs labels: pass --label-task"):
        TrainConfig(objective="supervised")


def test_rule_descriptions():
    assert Interval(int, 1, None).describe() == "an integer >= 1"
    assert Interval(float, 0, 1, "neither").describe() == "a number strictly between 0 and 1"
    assert Interval(float, 0, None, "neither").describe() == "a positive number"
    assert Interval(int, 8, 4096).accepts(8) and not Interval(int, 8, 4096).accepts(4097)
    assert not Interval(int, 0, None).accepts(True), "a bool is not an integer setting"
    assert not Interval(float, 0, 1).accepts(float("nan"))
    assert Items(Options(("a", "b")), "letters").accepts(("a", "b")) and not Items(Options(("a",))).accepts(("a", "a"))
    assert Null().accepts(None) and not Text().accepts("  ")


def test_bookkeeping_and_seed_settings_come_from_the_declarations():
    assert set(TrainConfig.not_design()) >= {"seed", "data_seed", "out", "eval", "device"}
    assert "seed" not in TrainConfig.not_recipe() and "out" in TrainConfig.not_recipe()
    assert "objective" not in TrainConfig.not_design() and "projector" not in TrainConfig.not_design()


def test_a_training_config_is_never_changed_in_place():
    cfg = TrainConfig(epochs=10, time_budget=60.0)
    with pytest.raises(FrozenInstanceError):
        cfg.epochs = 1
    from gr_explorer.training.loop import fit_budget

    fitted, total = fit_budget(cfg, elapsed=10.0, per_step=1.0, per_epoch=10, step=13)
    assert (cfg.epochs, cfg.time_budget) == (10, 60.0)
    assert (fitted.epochs, fitted.time_budget, total) == (6, None, 60)


@pytest.mark.parametrize("registry, implemented", [(PROBES, HEADS), (OBJECTIVES, IMPLEMENTED_OBJECTIVES),
                                                   (METRICS, IMPLEMENTED_METRICS)], ids=["probes", "objectives", "metrics"])
def test_every_declared_name_is_implemented_and_nothing_else(registry, implemented):
    assert list(registry) == list(implemented) or set(registry) == set(implemented)

"""The shipped zoo: its cards hold what the weights give, and the findings it is shipped for hold (or say they don't).

Fast tests check what a clean checkout ships (every model loads with its cuts; every card records its command,
its held-out sweep with baselines and intervals; pretrained/README.md is generated from the cards). The slow
tests re-measure the cards' held-out sweeps from the weights, once per dataset, and check the issue's targets on
those fresh numbers: best cut chosen on validation, 95% bootstrap intervals, next to the random-init twin.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pandas as pd
import pytest

from gr_explorer.config import SweepConfig
from gr_explorer.models import list_zoo, load_model, zoo_dir
from gr_explorer.run import run_sweep
from gr_explorer.verdict import BORDERLINE, CLEAR_GAIN, NO_CLEAR_GAIN

SSL_DESIGNS = ("simclr", "simclr_proj_none", "simclr_proj1", "simclr_proj3_wide")  # shipped with seeds 0, 1, 2
SHAPES_SSL = ["simclr", "vicreg", "byol", "barlow", "simclr_proj_none", "simclr_proj1", "simclr_proj3_wide"]
SHAPES = SHAPES_SSL + ["supervised", "label_aligned_p05", "label_aligned_p1"]
SEEDED = [f"{d}_s{s}" for d in SSL_DESIGNS + ("label_aligned_p05", "label_aligned_p1") for s in (1, 2)]
# the targets hold for every SSL model, so every seed of a design is checked, not only seed 0
SHAPES_SSL_ALL = SHAPES_SSL + [f"{d}_s{s}" for d in SSL_DESIGNS for s in (1, 2)]
SHAPES_SSL_2PLUS = [m for m in SHAPES_SSL_ALL if not m.startswith(("simclr_proj_none", "simclr_proj1"))]  # 2+ layers
CIFAR = ["cifar10_simclr", "cifar10_vicreg", "cifar10_supervised", "cifar10_simclr_proj_none", "cifar10_label_aligned_p1"]
CIFAR_SEEDED = [f"{d}_s{s}" for d in ("cifar10_simclr", "cifar10_label_aligned_p1") for s in (1, 2)]


def _card(name: str) -> dict:
    return json.loads((zoo_dir() / f"{name}.json").read_text())


def _shipped(names):
    return [n for n in names if n in list_zoo()]


# ---------------------------------------------------------------------------------------------- fast


def test_every_zoo_model_loads_with_its_cuts_and_its_card_records_how_it_was_made():
    missing = [n for n in SHAPES + SEEDED + CIFAR + CIFAR_SEEDED if n not in list_zoo()]
    assert not missing, f"zoo checkpoints missing from {zoo_dir()}: {missing} (retrain: pretrained/retrain.sh)"
    for name in list_zoo():
        card = _card(name)
        model = load_model(f"zoo:{name}")
        assert model.cut_names[:6] == ["stem", "layer1", "layer2", "layer3", "layer4", "pool"], name
        assert card["command"].startswith("gr-explorer train") and card["config"] and card["description"], name
        assert (zoo_dir() / f"{name}.safetensors").stat().st_size < 4 * 2**20, name  # float16 weights
        res = card["results"]
        assert {"random-init", "pixels"} <= {r["baseline"] for r in res["table"]}, name  # measured next to baselines
        for r in res["summary"]:
            assert r["best_ci_low"] <= r["best_accuracy"] <= r["best_ci_high"], (name, r["task"])
            assert r["gain_ci_low"] <= r["gain"] <= r["gain_ci_high"], (name, r["task"])


def test_readme_is_generated_from_the_cards():
    """pretrained/README.md is exactly what make_readme.py writes from the shipped cards (never typed by hand)."""
    done = subprocess.run([sys.executable, str(zoo_dir() / "make_readme.py"), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_output_geometry_matches_numpy():
    """pretrained/output_geometry.py (the sparsity figures of ABLATIONS.md) against NumPy formulas, on a
    non-negative code with a dead channel and pairs of images whose active channels do not overlap."""
    import importlib.util

    import numpy as np
    import torch

    spec = importlib.util.spec_from_file_location("output_geometry", zoo_dir() / "output_geometry.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = np.random.default_rng(0)
    x = rng.exponential(size=(40, 12)) * (rng.random((40, 12)) < 0.3)
    x[:, 5] = 0.0
    x[0], x[1] = 0.0, 0.0
    x[0, 0], x[1, 1] = 1.0, 2.0  # disjoint: cosine exactly 0
    x = x[np.abs(x).sum(1) > 0]
    g = mod.geometry(torch.from_numpy(x))
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    cos = (z @ z.T)[~np.eye(len(z), dtype=bool)]
    s = np.linalg.svd(x, compute_uv=False)  # RankMe: singular values of the uncentred features
    p = s / s.sum() + 1e-7
    assert g["zeros"] == pytest.approx((x == 0).mean()) and g["dead"] == int((x == 0).all(0).sum()) >= 1
    assert g["cos_mean"] == pytest.approx(cos.mean()) and g["cos_p90"] == pytest.approx(np.quantile(cos, 0.9))
    assert g["cos_zero"] == pytest.approx((np.abs(cos) < 1e-12).mean()) and g["cos_zero"] > 0
    assert g["rankme"] == pytest.approx(np.exp(-(p * np.log(p)).sum()))


# ---------------------------------------------------------------------------------------------- slow: re-measured


def _fresh(names: list[str]) -> pd.DataFrame:
    """The cards' held-out sweep, run again from the weights (one sweep for all models with the same settings)."""
    sweep = dict(_card(names[0])["results"]["sweep"])
    res = run_sweep(SweepConfig.from_dict({**sweep, "models": [f"zoo:{n}" for n in names]}), cache=False)
    s = res.summary.assign(model=res.summary["model"].str.removeprefix("zoo:"))
    return s.set_index(["model", "task", "probe"])


@pytest.fixture(scope="module")
def shapes():
    names = _shipped(SHAPES + SEEDED)
    s = _fresh(names)
    print("\n" + s.reset_index()[["model", "task", "best_cut", "best_accuracy", "last_cut", "last_accuracy", "gain",
                                  "gain_ci_low", "gain_ci_high", "random_init_accuracy"]].round(3).to_string())
    return s


@pytest.mark.slow
def test_cards_report_what_the_weights_give(shapes):
    """Each card's stored summary equals the fresh measurement (up to thread-count rounding in the probes)."""
    worst = []
    for name in _shipped(SHAPES + SEEDED):
        for r in _card(name)["results"]["summary"]:
            if r["baseline"]:
                continue
            fresh = shapes.loc[(name, r["task"], r["probe"])]
            worst.append((abs(fresh["best_accuracy"] - r["best_accuracy"]), name, r["task"]))
            assert abs(fresh["best_accuracy"] - r["best_accuracy"]) <= 0.02, (name, r["task"], fresh["best_accuracy"],
                                                                               r["best_accuracy"])
    print("largest difference card vs fresh:", max(worst))


def _row(s, model, task="shape"):
    return s.loc[(model, task, "linear")]


def _verdict(r, want: str, what: str) -> None:
    """Check a gain's verdict, with borderline as its own state: a gain whose bound sits within 5 test images of 0
    (or that re-choosing the cut undoes) can land on either side of 0 on another machine, so it is reported as an
    expected failure with its numbers, never as a pass or a failure that flips by machine."""
    numbers = (f"{what}: gain {r['gain']:+.3f} [{r['gain_ci_low']:+.3f}, {r['gain_ci_high']:+.3f}], with the choice of cut "
               f"[{r['gain_choice_ci_low']:+.3f}, {r['gain_choice_ci_high']:+.3f}] ({r['best_cut']} vs {r['last_cut']})")
    if r["gain_verdict"] == BORDERLINE:
        pytest.xfail(f"borderline, {numbers}")
    assert r["gain_verdict"] == want, numbers


def _unmet(models: list[str], why: dict[str, str], borderline: dict[str, str] | None = None) -> list:
    """Targets the shipped weights measurably miss: strict xfails that quote the card, so a retrained model that
    meets the target turns the test red until the mark goes (the closing note and pretrained/README.md say why).

    `borderline` misses sit within the probes' thread-count rounding of the target (card and fresh measurement
    differ by up to 0.002 there), so a fresh run may land on either side: non-strict xfails."""
    borderline = borderline or {}

    def mark(m):
        if m in why:
            return pytest.param(m, marks=pytest.mark.xfail(strict=True, reason=why[m]))
        if m in borderline:
            return pytest.param(m, marks=pytest.mark.xfail(strict=False, reason=borderline[m]))
        return m
    return [mark(m) for m in models]


#: measured on the shipped cards (held-out shapes seed 1, 2,000 / 1,000, linear probe, validation-selected cut)
SHAPE_UNMET = {
    "simclr_proj_none": "shape 0.749 [0.722, 0.775] at layer3 (seeds 1, 2: 0.765, 0.799): SimCLR without a projector "
                        "stays below the 0.80 target after 20 epochs, though far above random init (0.379); 40 epochs "
                        "(0.843-0.885) or temperature 0.25 (0.822-0.898) reach it but take a 3-layer seed's shape "
                        "gain to about 0; crops of area 0.3-1 or width 32 lower it (0.515, 0.662); a 32-dimensional "
                        "projector output at 0.25 keeps a clear gain on 4-5 of 6 GPU seeds, not all "
                        "(pretrained/ABLATIONS.md)",
    "simclr_proj_none_s1": "shape 0.765 [0.738, 0.790] at layer3: seed 1 of SimCLR without a projector, below 0.80 "
                           "after 20 epochs like seed 0 (0.880 after 40, pretrained/ABLATIONS.md)",
}
SHAPE_BORDERLINE = {
    "simclr_proj_none_s2": "shape 0.799 [0.774, 0.822] at layer3 on the card (0.799 fresh): 0.001 below the 0.80 target",
    "simclr_proj3_wide_s1": "shape 0.799 [0.775, 0.823] at proj1 on the card (0.798 fresh): 0.001-0.002 below the 0.80 "
                            "target",
}


@pytest.mark.slow
@pytest.mark.parametrize("model", _unmet(SHAPES_SSL_ALL, SHAPE_UNMET, SHAPE_BORDERLINE))
def test_ssl_models_learn_shape_well_above_their_random_init(shapes, model):
    """Target: best-cut shape accuracy >= 0.80 and >= the random-init twin's best cut + 0.25."""
    r = _row(shapes, model)
    assert r["best_accuracy"] >= 0.80 and r["best_accuracy"] >= r["random_init_accuracy"] + 0.25, \
        f"{model}: shape {r['best_accuracy']:.3f} at {r['best_cut']}, random init {r['random_init_accuracy']:.3f}"


@pytest.mark.slow
@pytest.mark.parametrize("model", SHAPES_SSL_2PLUS)
def test_cutting_off_a_deep_projector_gains_on_shape(shapes, model):
    """Target: the last projector cut is below the best cut, with a paired 95% gain interval above 0 (a clear gain;
    a borderline one is reported as such)."""
    r = _row(shapes, model)
    assert r["last_cut"].startswith("proj")
    _verdict(r, CLEAR_GAIN, model)


@pytest.mark.slow
@pytest.mark.parametrize("model", SHAPES_SSL_ALL)
def test_colour_is_erased_along_the_projector(shapes, model):
    """Colour (removed by the augmentations) is best read early and clearly lower at the last cut."""
    r = _row(shapes, model, "color")
    assert not r["best_cut"].startswith("proj") and r["gain_ci_low"] > 0.2, \
        f"{model}: colour best {r['best_cut']} {r['best_accuracy']:.3f}, last {r['last_accuracy']:.3f}"


@pytest.mark.slow
@pytest.mark.parametrize("model", ["label_aligned_p1", "label_aligned_p1_s1", "label_aligned_p1_s2"])
def test_label_aligned_p1_trains(shapes, model):
    """Target, for each seed: its loss falls >= 20% from the first epoch, and its shape best cut >= random init + 0.25."""
    losses = _card(model)["training"]["loss_per_epoch"]
    assert losses[-1] <= 0.8 * losses[0], losses
    r = _row(shapes, model)
    assert r["best_accuracy"] >= r["random_init_accuracy"] + 0.25, (r["best_accuracy"], r["random_init_accuracy"])


@pytest.mark.slow
def test_label_aligned_positives_shrink_the_shape_gain(shapes):
    """Aligning the positives with the shape label (p = 0, 0.5, 1) makes cutting less necessary for shape.

    Measured over seeds where shipped: the gain of p=1 is below that of SimCLR (p=0) with the seeds' intervals apart.
    """
    def gains(stem):
        return [_row(shapes, m)["gain"] for m in _shipped([stem, f"{stem}_s1", f"{stem}_s2"])]

    p0, p05, p1 = gains("simclr"), gains("label_aligned_p05"), gains("label_aligned_p1")
    print(f"shape gain, p=0 {p0}, p=0.5 {p05}, p=1 {p1}")
    assert max(p1) < min(p0), (p0, p05, p1)


@pytest.mark.slow
def test_supervised_reads_its_own_task_at_the_output_but_not_colour(shapes):
    shape, color = _row(shapes, "supervised"), _row(shapes, "supervised", "color")
    assert color["gain_verdict"] == CLEAR_GAIN and color["gain"] > 0.2, color.to_dict()
    assert shape["last_accuracy"] >= shape["best_accuracy"] - 0.02, shape.to_dict()
    _verdict(shape, NO_CLEAR_GAIN, "supervised shape")


@pytest.mark.slow
@pytest.mark.shared_data
def test_cifar10_simclr_beats_its_random_init_and_cutting_helps():
    """Target: CIFAR-10 SimCLR best cut >= random init + 0.10, with a guillotine gain interval above 0; the
    label-aligned model (p = 1) learns the label and gains clearly less by cutting (intervals apart)."""
    from conftest import SHARED_DATA

    if not (SHARED_DATA / "cifar10").is_dir():
        pytest.skip("../shared/data/cifar10 is absent")
    names = _shipped(CIFAR + CIFAR_SEEDED)
    s = _fresh(names)
    r = _row(s, "cifar10_simclr", "label")
    print("\n" + s.reset_index()[["model", "best_cut", "best_accuracy", "best_ci_low", "best_ci_high", "last_cut",
                                  "last_accuracy", "gain", "gain_ci_low", "gain_ci_high",
                                  "random_init_accuracy"]].round(3).to_string())
    assert r["best_accuracy"] >= r["random_init_accuracy"] + 0.10 and r["gain_ci_low"] > 0, r.to_dict()
    assert not math.isnan(r["pixels_accuracy"])
    # the label-aligned finding on real images: positives that share the label leave less to gain by cutting
    la = _row(s, "cifar10_label_aligned_p1", "label")
    assert la["best_accuracy"] >= la["random_init_accuracy"] + 0.25 and la["gain_ci_high"] < r["gain_ci_low"], la.to_dict()
    # ... and over seeds: every label-aligned seed trains (loss -20% or more, label learned) and gains less than
    # every SimCLR seed
    seeds = {d: _shipped([d, f"{d}_s1", f"{d}_s2"]) for d in ("cifar10_simclr", "cifar10_label_aligned_p1")}
    for m in seeds["cifar10_label_aligned_p1"]:
        losses, row = _card(m)["training"]["loss_per_epoch"], _row(s, m, "label")
        assert losses[-1] <= 0.8 * losses[0] and row["best_accuracy"] >= row["random_init_accuracy"] + 0.25, m
    gains = {d: [_row(s, m, "label")["gain"] for m in ms] for d, ms in seeds.items()}
    assert max(gains["cifar10_label_aligned_p1"]) < min(gains["cifar10_simclr"]), gains


@pytest.mark.slow
def test_about_page_walkthrough_quotes_what_the_default_run_gives(tmp_path):
    """Every number of the About page's demo, re-measured: the default Explore run, the derived tasks, step 3."""
    from gr_explorer.app.about import DEMO, DEMO_DERIVED, DEMO_DRAWS, DEMO_NOJITTER, DEMO_RUN
    from gr_explorer.cli import main

    got = {}
    res = run_sweep(SweepConfig(**DEMO_RUN), cache=False)
    s = res.summary.set_index(["model", "task"])
    t = res.table[res.table["baseline"] == ""].set_index(["task", "cut"])["accuracy"]
    c, sh, li = s.loc[("zoo:simclr", "color")], s.loc[("zoo:simclr", "shape")], s.loc[("zoo:simclr", "light")]
    got.update(color_stem=t[("color", "stem")], color_last=c["last_accuracy"], color_random=c["random_init_accuracy"],
               color_gain=100 * c["gain"], color_gain_low=100 * c["gain_ci_low"], color_gain_high=100 * c["gain_ci_high"],
               shape_best=sh["best_accuracy"], shape_best_cut=sh["best_cut"], shape_last=sh["last_accuracy"],
               shape_last_cut=sh["last_cut"], shape_gain=100 * sh["gain"], shape_gain_low=100 * sh["gain_ci_low"],
               shape_gain_high=100 * sh["gain_ci_high"], shape_random=sh["random_init_accuracy"],
               shape_chance=sh["chance"], light_best=li["best_accuracy"], light_best_cut=li["best_cut"],
               light_last=li["last_accuracy"], light_chance=li["chance"])
    tw, tx = s.loc[("zoo:simclr [random init]", "shape")], s.loc[("zoo:simclr", "texture")]
    got.update(shape_random_cut=tw["best_cut"], shape_random_last=tw["last_accuracy"], shape_random_gain=100 * tw["gain"],
               shape_random_gain_low=100 * tw["gain_ci_low"], shape_random_gain_high=100 * tw["gain_ci_high"],
               shape_training_gain=100 * sh["gain_over_random_init_gain"],
               shape_training_gain_low=100 * sh["gain_over_random_init_gain_ci_low"],
               shape_training_gain_high=100 * sh["gain_over_random_init_gain_ci_high"],
               color_random_gain=100 * c["random_init_gain"], color_training_gain=100 * c["gain_over_random_init_gain"],
               color_training_gain_low=100 * c["gain_over_random_init_gain_ci_low"],
               color_training_gain_high=100 * c["gain_over_random_init_gain_ci_high"],
               shape_p=sh["p_chosen"], texture_best_cut=tx["best_cut"], texture_p=tx["p_chosen"],
               texture_best_low=tx["best_ci_low"], texture_choice_low=tx["best_choice_ci_low"])
    dr = run_sweep(SweepConfig(**DEMO_DRAWS), cache=False).summary.set_index(["model", "task"]).loc[("zoo:simclr", "shape")]
    got.update(draws_shape_gain=100 * dr["random_init_gain"], draws_shape_gain_sd=100 * dr["random_init_gain_sd"],
               draws_shape_training_gain=100 * dr["gain_over_random_init_gain"],
               draws_shape_training_gain_low=100 * dr["gain_over_random_init_gain_ci_low"],
               draws_shape_training_gain_high=100 * dr["gain_over_random_init_gain_ci_high"])
    d = run_sweep(SweepConfig(**DEMO_DERIVED), cache=False)
    ds = d.summary.set_index("task")
    dt = d.table.set_index(["task", "cut"])["accuracy"]
    got.update(gray_stem=dt[("grayscale", "stem")], gray_last=ds.loc["grayscale", "last_accuracy"],
               hue_best=ds.loc["hue", "best_accuracy"], hue_best_cut=ds.loc["hue", "best_cut"],
               hue_last=ds.loc["hue", "last_accuracy"], hflip_max=d.table.loc[d.table["task"] == "hflip", "accuracy"].max())
    out = tmp_path / "nojitter.safetensors"
    assert main(["train", *DEMO_NOJITTER, "--out", str(out), "--quiet"]) == 0
    nj = run_sweep(SweepConfig(models=[f"file:{out}"], tasks=["color"]), cache=False).summary.iloc[0]
    got["nojitter_color_last"] = nj["last_accuracy"]
    for key, quoted in DEMO.items():
        if isinstance(quoted, str):
            assert got[key] == quoted, (key, got[key], quoted)
        else:  # quoted to the digits the page shows; a retrained step-3 model may differ by a few points
            tol = 0.05 if key == "nojitter_color_last" else (0.15 if "gain" in key else 0.0015)
            assert abs(got[key] - quoted) <= tol, (key, got[key], quoted)

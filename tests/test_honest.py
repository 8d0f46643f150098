"""Honest comparisons (issue 28; issue 23 item 9): the gain training caused, the choice of cut in the interval, borderline
verdicts, intervals for the points a label-free metric costs, and the random-init baseline as N seeded draws.

Every number is checked against an independent reference: the per-image correctness vectors a sweep saved, NumPy
bootstraps written out here with their own index draws, and synthetic features whose best cut is known.
"""

from __future__ import annotations

import copy
import importlib.util
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from gr_explorer.app.compare import short_gain
from gr_explorer.app.results import summary_frame
from gr_explorer.choice import choose_cuts
from gr_explorer.config import SweepConfig
from gr_explorer.diagnostics.selection import metric_vs_accuracy
from gr_explorer.models import load_model, random_init, random_inits, zoo_dir
from gr_explorer.names import random_label
from gr_explorer.plots import accuracy_vs_depth
from gr_explorer.probes import run_probes, validation_split
from gr_explorer.run import run_sweep, with_intervals
from gr_explorer.stats import Resampler, versus_draws
from gr_explorer.summary import guillotine_summary, p_chosen, summary_view
from gr_explorer.verdict import BORDERLINE, CLEAR_GAIN, NO_CLEAR_GAIN, gain_verdict, margin
from helpers import saved_tiny


def _draws(seed: int, n: int, b: int) -> np.ndarray:
    """The bootstrap's image draws, written out independently of stats.Resampler: B x n indices from the documented
    seed sequence (seed, 0x5EED[, stream])."""
    return np.random.default_rng(np.random.SeedSequence([seed, 0x5EED])).integers(0, n, size=(b, n))


# ---------------------------------------------------------------------------------------------- a real small sweep


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    """A tiny checkpoint on shapes with its random-init twin: every row carries its per-image hits."""
    _, path = saved_tiny(tmp_path_factory.mktemp("tiny"))
    cfg = SweepConfig(models=[f"file:{path}"], tasks=["shape", "color"], n_train=300, n_test=200, seed=2,
                      baselines=["random-init"], bootstrap=400)
    return run_sweep(cfg, cache=False)


def test_the_gain_training_caused_equals_a_direct_computation_from_saved_correctness(tiny_sweep, tmp_path):
    """Model gain minus twin gain, each at its own validation-chosen best cut and last cut, from the four per-image
    correctness vectors saved to disk; its interval from a NumPy paired bootstrap over the same test images."""
    res = tiny_sweep
    t = res.table
    model = res.models[0]
    twin = random_label(model)
    for task in ("shape", "color"):
        saved = {}
        for name in (model, twin):
            rows = t[(t["model"] == name) & (t["task"] == task)].sort_values("depth")
            best = rows.iloc[int(np.argmax(rows["val_accuracy"].to_numpy()))]  # first max in depth order: shallower
            np.savez(tmp_path / "hits.npz", best=best["correct"], last=rows.iloc[-1]["correct"])
            with np.load(tmp_path / "hits.npz") as f:
                saved[name] = (f["best"].astype(float), f["last"].astype(float))
        (mb, ml), (tb, tl) = saved[model], saved[twin]
        direct = (mb.mean() - ml.mean()) - (tb.mean() - tl.mean())
        idx = _draws(res.config.seed, len(mb), res.config.bootstrap)
        boot = (mb[idx].mean(1) - ml[idx].mean(1)) - (tb[idx].mean(1) - tl[idx].mean(1))
        lo, hi = np.quantile(boot, [0.025, 0.975])
        r = res.summary.set_index(["model", "task"]).loc[(model, task)]
        assert r["gain_over_random_init_gain"] == pytest.approx(direct, abs=1e-12)
        assert r["random_init_gain"] == pytest.approx(tb.mean() - tl.mean(), abs=1e-12)
        assert (r["gain_over_random_init_gain_ci_low"], r["gain_over_random_init_gain_ci_high"]) == \
            pytest.approx((lo, hi), abs=1e-6)  # the resampler sums in float32
        assert r["random_init_draws"] == 1


def test_a_model_that_is_its_own_twin_owes_nothing_to_training(tmp_path):
    """The same weights measured as the model and as its 'random-init' twin: 0 gained by training, interval [0, 0]."""
    model = load_model(f"file:{saved_tiny(tmp_path)[1]}")
    twin = copy.deepcopy(model)
    twin.name, twin.kind, twin.baseline_for = random_label(model.name), "random_init", model.name
    cfg = SweepConfig(models=[f"file:{tmp_path / 'tiny.safetensors'}"], tasks=["shape"], n_train=200, n_test=100,
                      bootstrap=200)
    s = run_sweep(cfg, models=[model, twin], cache=False).summary.set_index("model").loc[model.name]
    assert s["gain_over_random_init_gain"] == 0.0
    assert s["gain_over_random_init_gain_ci_low"] <= 0.0 <= s["gain_over_random_init_gain_ci_high"]
    assert s["gain_over_random_init_gain_verdict"] == "no clear difference"
    assert s["over_random_init"] == 0.0


def test_the_interval_with_the_choice_of_cut_contains_the_fixed_one(tiny_sweep):
    """It contains the fixed-cut interval's centre, is at least as wide, and p_chosen sums to 1 on every curve."""
    s = tiny_sweep.summary
    assert s["p_chosen"].notna().all()
    for r in s.itertuples():
        centre = (r.best_ci_low + r.best_ci_high) / 2
        assert r.best_choice_ci_low <= centre <= r.best_choice_ci_high
        assert r.best_choice_ci_high - r.best_choice_ci_low >= r.best_ci_high - r.best_ci_low
        assert r.gain_choice_ci_low <= r.gain_ci_low and r.gain_choice_ci_high >= r.gain_ci_high
    t = tiny_sweep.table
    sums = t.groupby(["model", "task", "probe"])["p_chosen"].sum()
    assert np.allclose(sums, 1.0)
    best = t.merge(s[["model", "task", "probe", "best_cut", "p_chosen"]], on=["model", "task", "probe"], suffixes=("", "_s"))
    best = best[best["cut"] == best["best_cut"]]
    assert np.allclose(best["p_chosen"], best["p_chosen_s"])


def test_choice_resampling_matches_a_numpy_loop():
    """p_chosen and the re-chosen cut's accuracies equal a loop over joint (validation, test) draws written in NumPy."""
    rng = np.random.default_rng(5)
    L, n_val, n_test, B = 4, 80, 120, 300
    val = rng.random((L, n_val)) < np.array([0.5, 0.62, 0.6, 0.4])[:, None]
    test = rng.random((L, n_test)) < np.array([0.5, 0.65, 0.6, 0.45])[:, None]
    test_r, val_r = Resampler(n_test, B, seed=3), Resampler(n_val, B, seed=3, stream=1)
    choice = choose_cuts(val, test_r.accuracies(test), val_r)
    iv = np.random.default_rng(np.random.SeedSequence([3, 0x5EED, 1])).integers(0, n_val, size=(B, n_val))
    it = _draws(3, n_test, B)
    chosen = np.array([np.argmax(val[:, iv[b]].mean(1)) for b in range(B)])  # argmax: the first (shallower) max
    acc = np.array([test[chosen[b], it[b]].mean() for b in range(B)])
    gain = acc - np.array([test[-1, it[b]].mean() for b in range(B)])
    assert np.allclose(choice.p_chosen, np.bincount(chosen, minlength=L) / B)
    assert np.allclose(choice.accuracy, acc) and np.allclose(choice.gain, gain)
    assert 0.05 < choice.p_chosen[1] < 0.95  # two close cuts: the choice really varies here


def _probe_table(feats: dict, labels: torch.Tensor, test_feats: dict, test_labels: torch.Tensor) -> pd.DataFrame:
    """A sweep-like table (one model, one task, linear probe) from run_probes on given features."""
    rows = run_probes(["linear"], feats, {"y": labels}, test_feats, {"y": test_labels})
    return pd.DataFrame([{"model": "m", "task": "y", "probe": "linear", "cut": r.cut, "depth": d, "accuracy": r.accuracy,
                          "val_accuracy": r.val_accuracy, "n_test": len(test_labels), "chance": 0.5,
                          "correct": r.correct.numpy(), "val_correct": r.val_correct.numpy()}
                         for d, r in enumerate(rows)])


def test_p_chosen_is_one_for_a_dominant_cut():
    """Synthetic features: one cut carries the label, the others are noise; it is chosen in every resample."""
    g = torch.Generator().manual_seed(0)
    y, yt = torch.randint(0, 2, (400,), generator=g), torch.randint(0, 2, (300,), generator=g)
    feats = {c: torch.randn(400, 6, generator=g) for c in ("a", "b", "c", "d")}
    test = {c: torch.randn(300, 6, generator=g) for c in feats}
    feats["b"][:, 0] += 4 * (2 * y - 1)
    test["b"][:, 0] += 4 * (2 * yt - 1)
    t = with_intervals(_probe_table(feats, y, test, yt), 500, 0)
    assert t["val_correct"].map(len).eq(80).all()
    p = p_chosen(t, 500, 0)
    assert p.tolist() == [0.0, 1.0, 0.0, 0.0]
    assert p_chosen(t.set_axis([7] * len(t)), 500, 0).tolist() == p.tolist()  # row labels need not be unique
    s = guillotine_summary(t, 500, 0).iloc[0]
    assert s["best_cut"] == "b" and s["p_chosen"] == 1.0
    assert (s["best_choice_ci_low"], s["best_choice_ci_high"]) == (s["best_ci_low"], s["best_ci_high"])


def test_validation_hits_are_what_validation_accuracy_counts():
    """Both heads return the per-image validation hits of the chosen hyper-parameter (also in row chunks)."""
    g = torch.Generator().manual_seed(1)
    y = {"a": torch.randint(0, 3, (240,), generator=g)}
    yt = {"a": torch.randint(0, 3, (90,), generator=g)}
    feats = {c: torch.randn(240, 5, generator=g) + s * y["a"][:, None] for c, s in (("c1", 0.3), ("c2", 1.0))}
    test = {c: torch.randn(90, 5, generator=g) for c in feats}
    _, val_idx = validation_split(y, 0.2, 0)
    for r in run_probes(["linear", "knn"], feats, y, test, yt):
        assert r.val_correct.dtype == torch.bool and len(r.val_correct) == len(val_idx)
        assert int(r.val_correct.sum()) / len(val_idx) == r.val_accuracy
    from gr_explorer.probes import fit_linear_probes

    fit_idx, val_idx = validation_split(y, 0.2, 0)
    for warm in (False, True):
        out = fit_linear_probes(feats, y, test, yt, fit_idx=fit_idx, val_idx=val_idx, warm_start=warm, rows_per_chunk=64)
        assert all(int(r.val_correct.sum()) / len(val_idx) == r.val_accuracy for r in out.values())


# ---------------------------------------------------------------------------------------------- borderline


def _borderline_table() -> pd.DataFrame:
    """Two cuts on 1,000 test images: the best gets right 8 images the last misses and nothing else differs, so the
    gain's paired interval sits a few images above 0 (well within 5 images of it)."""
    rng = np.random.default_rng(0)
    last = rng.random(1000) < 0.6
    best = last.copy()
    best[np.flatnonzero(~last)[:8]] = True
    val = rng.random(200) < 0.5
    rows = [{"model": "m", "task": "shape", "probe": "linear", "cut": c, "depth": d, "part": "backbone", "dim": 4,
             "accuracy": float(h.mean()), "val_accuracy": v, "chance": 0.2, "n_test": 1000, "correct": h,
             "val_correct": val if c == "layer" else ~val, "baseline": ""}
            for d, (c, h, v) in enumerate((("layer", best, 0.9), ("proj", last, 0.5)))]
    t = pd.DataFrame(rows)
    return t.assign(accuracy_ci_low=t["accuracy"] - 0.03, accuracy_ci_high=t["accuracy"] + 0.03)


def test_a_borderline_gain_reads_borderline_everywhere_it_is_shown():
    t = _borderline_table()
    s = guillotine_summary(t, 1000, 0)
    r = s.iloc[0]
    assert 0 < r["gain_ci_low"] <= margin(1000) < r["gain_ci_high"] and r["clear_gain"]  # clear by the old rule ...
    assert r["gain_verdict"] == BORDERLINE  # ... but within 5 test images of 0
    # CLI (summary_view), plot legend, hover and label, app table and grid, cards' README row
    assert summary_view(s)["gain"].iloc[0].endswith("(borderline)")
    fig = accuracy_vs_depth(t, summary=s)
    curve = next(tr for tr in fig.data if (tr.meta or {}).get("role") == "curve")
    star = next(tr for tr in fig.data if (tr.meta or {}).get("role") == "best")
    assert curve.name.endswith(": borderline") and "borderline (" in star.hovertemplate
    assert not [a for a in fig.layout.annotations if a.name == "shape"]  # no gain label beside the star
    assert summary_frame(s)["guillotine gain"].iloc[0].startswith("borderline (+0.8 pts [")
    assert short_gain(r["gain"], r["gain_ci_low"], r["gain_ci_high"], r["clear_gain"], r["gain_verdict"]) == BORDERLINE
    spec = importlib.util.spec_from_file_location("make_readme", zoo_dir() / "make_readme.py")
    readme = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(readme)
    card_row = {**r.to_dict(), "random_init_accuracy": 0.3, "over_random_init": None, "pixels_accuracy": 0.2}
    assert "(borderline)" in readme._row(card_row, n_test=1000)


@pytest.mark.parametrize("lo, hi, choice_lo, n, want", [
    (0.003, 0.02, float("nan"), 1000, BORDERLINE),  # lower bound within 5 images of 0
    (-0.004, 0.03, float("nan"), 1000, BORDERLINE),  # just below 0, within the margin
    (0.006, 0.03, float("nan"), 1000, CLEAR_GAIN),  # beyond the margin
    (0.006, 0.03, -0.001, 1000, BORDERLINE),  # clear only with the cut held fixed
    (0.006, 0.03, 0.001, 1000, CLEAR_GAIN),
    (-0.006, 0.03, float("nan"), 1000, NO_CLEAR_GAIN),
    (0.0, 0.0, float("nan"), 1000, NO_CLEAR_GAIN),  # best cut = last cut: nothing to gain, not borderline
    (-0.003, 0.004, float("nan"), 1000, NO_CLEAR_GAIN),  # the whole interval within the margin: no gain to speak of
    (0.03, 0.2, float("nan"), 100, BORDERLINE),  # 5 images of 100 are 5 points
])
def test_the_borderline_rule(lo, hi, choice_lo, n, want):
    assert gain_verdict(lo, hi, margin(n), choice_lo) == want


# ---------------------------------------------------------------------------------------------- metric choices


def test_points_lost_to_a_metric_have_the_numpy_paired_bootstrap_interval():
    rng = np.random.default_rng(4)
    n, B = 300, 500
    hits = [rng.random(n) < p for p in (0.5, 0.7, 0.8, 0.6)]
    res = pd.DataFrame({"model": "m", "cut": [f"c{i}" for i in range(4)], "depth": range(4), "task": "t",
                        "probe": "linear", "accuracy": [h.mean() for h in hits], "val_accuracy": [0.5, 0.7, 0.8, 0.6],
                        "n_test": n, "correct": hits})
    metrics = pd.DataFrame({"model": "m", "cut": [f"c{i}" for i in range(4)], "metric": "rankme",
                            "value": [1.0, 4.0, 2.0, 3.0], "augmentation": ""})
    r = metric_vs_accuracy(res, metrics, B, seed=7).iloc[0]
    assert (r["val_cut"], r["metric_cut"]) == ("c2", "c1")
    idx = _draws(7, n, B)
    diff = hits[2][idx].mean(1) - hits[1][idx].mean(1)
    assert r["accuracy_lost"] == pytest.approx(hits[2].mean() - hits[1].mean())
    assert (r["accuracy_lost_ci_low"], r["accuracy_lost_ci_high"]) == pytest.approx(tuple(np.quantile(diff, [0.025, 0.975])),
                                                                                     abs=1e-6)  # the resampler sums in float32
    same = metric_vs_accuracy(res, metrics.assign(value=[1.0, 2.0, 4.0, 3.0]), B, seed=7).iloc[0]
    assert (same["accuracy_lost"], same["accuracy_lost_ci_low"], same["accuracy_lost_ci_high"]) == (0.0, 0.0, 0.0)
    assert np.isnan(metric_vs_accuracy(res.drop(columns="correct"), metrics).iloc[0]["accuracy_lost_ci_low"])


# ---------------------------------------------------------------------------------------------- random-init:N


def test_random_init_draws_are_seeded_and_distinct(tmp_path):
    model = load_model(f"file:{saved_tiny(tmp_path)[1]}")
    a, b = random_inits(model, 4, 3), random_inits(model, 4, 3)
    assert [m.name for m in a] == [f"{model.name} [random init #{d}]" for d in (1, 2, 3)]
    assert [m.weights_hash() for m in a] == [m.weights_hash() for m in b]  # seeded
    assert len({m.weights_hash() for m in a} | {model.weights_hash()}) == 4  # distinct, and none is the model
    assert a[0].weights_hash() == random_init(model, 4).weights_hash()  # draw 1 is the single `random-init` twin
    assert all(m.kind == "random_init" and m.baseline_for == model.name for m in a)
    assert [m.name for m in random_inits(model, 4, 1)] == [random_label(model.name)]


def test_versus_draws_folds_the_spread_between_draws_into_the_interval():
    """Without test noise the interval is the t interval of the draws' mean (scipy); with one draw, the paired one."""
    B = 200_000
    points = np.array([0.10, 0.16, 0.07])
    lo, hi = versus_draws(np.full(B, 0.30), np.tile(points, (B, 1)), points, seed=1)
    half = stats.t.ppf(0.975, 2) * points.std(ddof=1) / math.sqrt(3)
    assert (lo, hi) == pytest.approx((0.30 - points.mean() - half, 0.30 - points.mean() + half), rel=0.02)
    rng = np.random.default_rng(0)
    a, b = rng.random(400) < 0.7, rng.random(400) < 0.6
    r = Resampler(400, 300, 2)
    acc = r.accuracies(np.stack([a, b]))
    assert versus_draws(acc[:, 0], acc[:, 1:], np.array([b.mean()])) == pytest.approx(r.difference_interval(a, b))
    assert versus_draws(np.full(B, 0.3), np.tile(points, (B, 1)), points, seed=1) == \
        versus_draws(np.full(B, 0.3), np.tile(points, (B, 1)), points, seed=1)


def test_a_sweep_with_random_init_draws_compares_with_their_mean(tmp_path):
    """random-init:3: three twins, the first the single twin; the summary stands next to their mean, its interval
    wider than against one draw; the plot draws their band."""
    _, path = saved_tiny(tmp_path)
    base = dict(models=[f"file:{path}"], tasks=["shape"], n_train=200, n_test=100, seed=1, bootstrap=300)
    one = run_sweep(SweepConfig(**base, baselines=["random-init"]), cache=False)
    three = run_sweep(SweepConfig(**base, baselines=["random-init:3"]), cache=False)
    model = f"file:{path}"
    t = three.table
    twins = [f"{model} [random init #{d}]" for d in (1, 2, 3)]
    assert list(dict.fromkeys(t["model"])) == [model, *twins]
    first = t[t["model"] == twins[0]]["accuracy"].to_numpy()
    assert np.array_equal(first, one.table[one.table["model"] == random_label(model)]["accuracy"].to_numpy())
    s = three.summary.set_index("model")
    r = s.loc[model]
    best = np.array([s.loc[m, "best_accuracy"] for m in twins])
    gains = np.array([s.loc[m, "gain"] for m in twins])
    assert r["random_init_draws"] == 3 and r["random_init_accuracy"] == pytest.approx(best.mean())
    assert r["random_init_accuracy_sd"] == pytest.approx(best.std(ddof=1))
    assert r["random_init_gain"] == pytest.approx(gains.mean())
    assert r["gain_over_random_init_gain"] == pytest.approx(r["gain"] - gains.mean())
    assert r["over_random_init_ci_low"] <= r["over_random_init"] <= r["over_random_init_ci_high"]
    fig = accuracy_vs_depth(t, summary=three.summary)
    band = [tr for tr in fig.data if (tr.meta or {}).get("role") == "random-init-band"]
    (mean,) = [tr for tr in fig.data if (tr.meta or {}).get("role") == "random-init"]
    acc = np.stack([t[t["model"] == m].sort_values("depth")["accuracy"].to_numpy() for m in twins])
    assert len(band) == 1 and np.allclose(mean.y, acc.mean(0))
    assert np.allclose(band[0].y, np.r_[acc.max(0), acc.min(0)[::-1]])

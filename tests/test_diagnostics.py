"""Label-free diagnostics against independent references (NumPy SVD, N x N Gram CKA, scipy, hand-built tables)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from torch import nn

from gr_explorer.diagnostics import (
    METRICS,
    DiagnosticError,
    augmentation_invariance,
    cka_between_models,
    cka_matrix,
    compute_diagnostics,
    invariance_scores,
    metric_vs_accuracy,
    spectral_metrics,
)
from gr_explorer.diagnostics.moments import cross_frobenius
from gr_explorer.diagnostics.spectral import floor_ratio
from gr_explorer.features import extract_features
from gr_explorer.models import Preprocessing, wrap_module
from helpers import random_dataset, tiny_model

CPU = torch.device("cpu")
EPS = 1e-7


# -- NumPy references, straight from the formulas (SVD of the data matrix) -------------------------------------
def ref_rankme(x: np.ndarray) -> float:
    s = np.linalg.svd(x, compute_uv=False)  # min(N, D) singular values, no centring (Garrido et al.)
    p = s / s.sum() + EPS
    return float(np.exp(-(p * np.log(p)).sum()))


def ref_stable_rank(x: np.ndarray) -> float:
    return float(np.linalg.norm(x, "fro") ** 2 / np.linalg.norm(x, 2) ** 2)


def ref_centred_eig(x: np.ndarray) -> np.ndarray:
    xc = x - x.mean(0)
    return np.linalg.svd(xc, compute_uv=False) ** 2 / x.shape[0]


def ref_nesum(x: np.ndarray) -> float:
    e = ref_centred_eig(x)
    return float(e.sum() / e.max())


def ref_alpha(x: np.ndarray) -> float:
    n, d = x.shape
    e = ref_centred_eig(x)[: min(d, n - 1)]
    e = e[e > floor_ratio(d) * e[0]]
    slope = np.polyfit(np.log(np.arange(1, e.size + 1)), np.log(e), 1)[0]
    return float(-slope)


def metrics_of(x: np.ndarray) -> dict[str, float]:
    return spectral_metrics(torch.from_numpy(x), CPU)


def with_singular_values(n: int, d: int, s: np.ndarray, seed: int, centred: bool = False) -> np.ndarray:
    """N x D matrix with exactly the singular values s (optionally with zero column means)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, len(s)))
    if centred:
        a -= a.mean(0)
    u = np.linalg.qr(a)[0]
    v = np.linalg.qr(rng.standard_normal((d, len(s))))[0]
    return (u * s) @ v.T


# -- spectral metrics --------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(300, 24), (40, 64)])  # N > D and N < D
def test_spectral_metrics_match_numpy_svd_on_random_features(shape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape) * rng.uniform(0.1, 3.0, shape[1]) + rng.uniform(0, 2, shape[1])  # non-zero mean
    got = metrics_of(x)
    assert got["rankme"] == pytest.approx(ref_rankme(x), rel=1e-9)
    assert got["stable_rank"] == pytest.approx(ref_stable_rank(x), rel=1e-9)
    assert got["nesum"] == pytest.approx(ref_nesum(x), rel=1e-9)
    assert got["alpha_req"] == pytest.approx(ref_alpha(x), rel=1e-7)
    cap = min(shape)
    for m in ("rankme", "stable_rank", "nesum"):
        assert got[f"{m}_frac"] == pytest.approx(got[m] / cap, rel=1e-12)
    # The two spectra really differ: the uncentred one carries the mean direction.
    assert got["stable_rank"] < got["nesum"]


def test_spectral_metrics_on_low_rank_matrices():
    n, d, r = 200, 30, 5
    x = with_singular_values(n, d, np.full(r, 3.0), seed=2)
    got = metrics_of(x)
    # The paper's formula adds eps to all min(N, D) normalised singular values, the 25 zero ones included.
    p = np.r_[np.full(r, 1 / r), np.zeros(d - r)] + EPS
    assert got["rankme"] == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-9)
    assert got["rankme"] == pytest.approx(ref_rankme(x), rel=1e-9)
    assert got["rankme"] == pytest.approx(r, rel=(d - r) * EPS * 17)  # eps' whole effect: (D - r) eps |log eps|
    assert got["stable_rank"] == pytest.approx(r, rel=1e-9)
    # Full rank with equal singular values: RankMe is r to 1e-6 (no zero singular values to pad).
    assert metrics_of(with_singular_values(n, r, np.full(r, 0.5), seed=3))["rankme"] == pytest.approx(r, rel=1e-6)
    # A centred matrix with singular values k^(-alpha/2): eigenvalues follow k^-alpha exactly, NESum = sum / max.
    alpha, k = 1.3, np.arange(1, d + 1)
    xc = with_singular_values(n, d, k ** (-alpha / 2), seed=4, centred=True)
    got = metrics_of(xc)
    assert got["alpha_req"] == pytest.approx(alpha, rel=1e-8)
    assert got["nesum"] == pytest.approx((k ** -alpha).sum(), rel=1e-9)
    assert got["alpha_req"] == pytest.approx(ref_alpha(xc), rel=1e-8)
    # Rank 4 of 30: only the 4 resolvable eigenvalues enter the alpha fit (zeros are not log(0)).
    x4 = with_singular_values(n, d, np.array([4.0, 2.0, 1.0, 0.5]), seed=5, centred=True)
    assert metrics_of(x4)["alpha_req"] == pytest.approx(ref_alpha(x4), rel=1e-8)


def test_constant_features_give_nan_not_an_error():
    got = metrics_of(np.ones((50, 8)))
    assert np.isnan(got["alpha_req"]) and np.isnan(got["nesum"])
    assert got["stable_rank"] == pytest.approx(1.0)


# -- CKA ----------------------------------------------------------------------------------------------------
def ref_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al.'s HSIC form with N x N Gram matrices and the centring matrix H."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = h @ x @ x.T @ h, h @ y @ y.T @ h
    return float((k * l).sum() / np.sqrt((k * k).sum() * (l * l).sum()))


def _cka(x, y, budget=2**26):
    return cka_matrix({"x": torch.from_numpy(x), "y": torch.from_numpy(y)}, CPU, budget)[0, 1]


def test_cka_properties_and_gram_reference():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((80, 12)) + 2.0
    y = np.tanh(x @ rng.standard_normal((12, 20))) + 0.3 * rng.standard_normal((80, 20))
    assert _cka(x, x) == pytest.approx(1.0, abs=1e-12)
    ref = ref_cka(x, y)
    assert _cka(x, y) == pytest.approx(ref, rel=1e-10)
    q = np.linalg.qr(rng.standard_normal((20, 20)))[0]
    assert _cka(x, y @ q) == pytest.approx(ref, rel=1e-10)  # orthogonal transform of one side
    assert _cka(x @ np.linalg.qr(rng.standard_normal((12, 12)))[0], y) == pytest.approx(ref, rel=1e-10)
    assert _cka(7.5 * x, 0.01 * y) == pytest.approx(ref, rel=1e-10)  # isotropic scaling
    assert _cka(x + 100.0, y - 3.0) == pytest.approx(ref, rel=1e-8)  # centred: shifts do not matter
    # Not invariant to a non-isotropic scaling: the test can fail.
    assert abs(_cka(x * np.r_[np.full(6, 10.0), np.ones(6)], y) - ref) > 1e-3


def test_cka_chunking_gives_the_same_numbers_as_one_pass():
    rng = np.random.default_rng(1)
    feats = {f"c{i}": torch.from_numpy(rng.standard_normal((70, d)) + i).float() for i, d in enumerate([3, 17, 40, 9])}
    big = cka_matrix(feats, CPU, 2**28)
    small = cka_matrix(feats, CPU, 4096)  # forces many passes, column tiles and row chunks
    np.testing.assert_allclose(small, big, rtol=1e-10)
    x = [f.double().numpy() for f in feats.values()]
    ref = np.array([[ref_cka(a, b) for b in x] for a in x])
    np.testing.assert_allclose(big, ref, rtol=1e-6)  # float32 features, float64 products
    # The Frobenius norms themselves equal the centred cross-covariance's, however the work is tiled.
    mats = list(feats.values())
    f = cross_frobenius(mats, [(1, 2)], CPU, budget=1024)
    xc1, xc2 = x[1] - x[1].mean(0), x[2] - x[2].mean(0)
    assert f[(1, 2)] == pytest.approx(np.linalg.norm(xc1.T @ xc2 / 70) ** 2, rel=1e-10)


def test_cka_between_models_pairs_cuts_by_depth():
    model = tiny_model()
    ds = random_dataset(n_train=40, n_test=8)
    fa = extract_features(model, ds, cache=False, device="cpu")
    noise = {k: v + 0.5 * torch.randn_like(v) for k, v in fa.train.items()}
    t = cka_between_models("a", fa.cuts, fa.train, "b", fa.cuts[:3], noise, device=CPU)
    assert list(t["cut_a"]) == [c.name for c in fa.cuts[:3]] and (t["depth_a"] == t["depth_b"]).all()
    for r in t.itertuples():
        assert r.cka == pytest.approx(ref_cka(fa.train[r.cut_a].double().numpy(), noise[r.cut_b].double().numpy()), rel=1e-6)
    full = cka_between_models("a", fa.cuts, fa.train, "a", fa.cuts, fa.train, pairing="all", device=CPU)
    assert len(full) == len(fa.cuts) ** 2
    with pytest.raises(DiagnosticError, match="pairing"):
        cka_between_models("a", fa.cuts, fa.train, "b", fa.cuts, noise, pairing="name", device=CPU)
    with pytest.raises(DiagnosticError, match="same images"):
        cka_between_models("a", fa.cuts, fa.train, "b", fa.cuts, {k: v[:10] for k, v in noise.items()}, device=CPU)


# -- augmentation invariance ----------------------------------------------------------------------------------
class FlipSymmetric(nn.Module):
    """f(x) + f(flip(x)): blind to horizontal flips by construction, not to crops or colour."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.f = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))
        self.mix = nn.Identity()

    def forward(self, x):
        return self.mix(self.f(x) + self.f(x.flip(-1)))


class Pixels(nn.Module):
    """The raw pixels: a flip moves them as much as it can."""

    def forward(self, x):
        return x.flatten(1)


class RandomPerCall(nn.Module):
    """Features that ignore the image: a fresh random vector per call."""

    def forward(self, x):
        return torch.randn(x.shape[0], 32)


def _model(module, stages):
    return wrap_module(module, stages=stages, preprocessing=Preprocessing(input_size=16), name=type(module).__name__)


def test_invariance_is_one_for_an_ignored_augmentation_and_zero_for_random_features():
    ds = random_dataset(n_train=300, n_test=4)
    sym = _model(FlipSymmetric(), ["mix"])
    clean = extract_features(sym, ds, cache=False, device="cpu").train
    res = augmentation_invariance(sym, clean, ds.train_images, augmentations=["flip", "crop", "color_jitter"], n_images=250,
                                  batch_size=100, device="cpu")
    got = {(r["cut"], r["augmentation"]): r for r in res.rows}
    for cut in ("mix", "pool"):
        assert got[(cut, "flip")]["invariance"] == pytest.approx(1.0, abs=1e-6)
        assert got[(cut, "flip")]["retrieval"] == 1.0
        assert got[(cut, "crop")]["invariance"] < 0.99 and got[(cut, "color_jitter")]["invariance"] < 0.99
    assert res.forward_batches == 3 * 3 and res.images_forwarded == 3 * 250  # one pass per augmentation
    assert len(res.indices) == 250 and res.indices.unique().numel() == 250

    # Raw pixels of noise images: the flipped view is unrelated to its source (shows the flip is applied).
    pix = _model(Pixels(), [])
    clean = extract_features(pix, ds, cache=False, device="cpu").train
    (row,) = augmentation_invariance(pix, clean, ds.train_images, augmentations=["flip"], device="cpu").rows
    assert abs(row["invariance"]) < 0.05

    rnd = _model(RandomPerCall(), [])
    clean = extract_features(rnd, ds, cache=False, device="cpu").train
    res = augmentation_invariance(rnd, clean, ds.train_images, augmentations=["flip"], device="cpu")
    (row,) = res.rows
    assert abs(row["invariance"]) < 0.05  # s_pos ~ s_neg: views are no closer to their source than to others
    assert row["retrieval"] <= 0.02  # chance 1/300


def test_invariance_scores_reference_and_determinism():
    g = torch.Generator().manual_seed(0)
    clean = torch.randn(60, 8, generator=g, dtype=torch.float64) * torch.arange(1, 9) + 5
    view = clean + 0.3 * torch.randn(60, 8, generator=g, dtype=torch.float64) * torch.arange(1, 9)
    score, retrieval = invariance_scores(clean, view)
    # Reference with explicit loops over pairs on standardised features.
    mu, sd = clean.mean(0).numpy(), clean.std(0).numpy()
    c = (clean.numpy() - mu) / sd
    v = (view.numpy() - mu) / sd
    cos = (v / np.linalg.norm(v, axis=1, keepdims=True)) @ (c / np.linalg.norm(c, axis=1, keepdims=True)).T
    s_pos, s_neg = np.diag(cos).mean(), cos[~np.eye(60, dtype=bool)].mean()
    assert score == pytest.approx((s_pos - s_neg) / (1 - s_neg), rel=1e-10)
    assert retrieval == pytest.approx((cos.argmax(1) == np.arange(60)).mean())
    model = tiny_model()
    ds = random_dataset(n_train=50, n_test=4)
    clean = extract_features(model, ds, cache=False, device="cpu").train
    a = augmentation_invariance(model, clean, ds.train_images, augmentations=["crop", "blur"], seed=3, device="cpu")
    b = augmentation_invariance(model, clean, ds.train_images, augmentations=["crop", "blur"], seed=3, device="cpu")
    assert a.rows == b.rows
    with pytest.raises(DiagnosticError, match="Valid: crop, flip, color_jitter, grayscale, blur"):
        augmentation_invariance(model, clean, ds.train_images, augmentations=["mixup"], device="cpu")
    with pytest.raises(DiagnosticError, match="Valid: 2 .. 1000 images"):
        augmentation_invariance(model, clean, ds.train_images, n_images=5000, device="cpu")
    with pytest.raises(DiagnosticError, match="same order"):
        augmentation_invariance(model, clean, ds.test_images, device="cpu")


# -- does a metric find the best cut? ----------------------------------------------------------------------
def _results():
    acc = [0.50, 0.70, 0.90, 0.80, 0.60]
    val = [0.50, 0.72, 0.85, 0.85, 0.60]  # tie at depths 2 and 3: validation picks the shallower
    return pd.DataFrame({"model": "m", "cut": [f"c{i}" for i in range(5)], "depth": range(5),
                         "part": ["backbone"] * 3 + ["projector"] * 2, "task": "t", "probe": "linear",
                         "accuracy": acc, "val_accuracy": val})


def _metric_rows(metric, values, aug=""):
    return pd.DataFrame({"model": "m", "cut": [f"c{i}" for i in range(5)], "depth": range(5), "metric": metric,
                         "value": values, "augmentation": aug})


def test_metric_vs_accuracy_against_scipy_and_a_hand_built_table():
    res = _results()
    metrics = pd.concat([_metric_rows("rankme", [1.0, 2.0, 3.0, 5.0, 4.0]),
                         _metric_rows("alpha_req", [3.0, 1.5, 0.8, 1.2, 2.0]),
                         _metric_rows("invariance", [0.1, 0.2, 0.3, 0.4, 0.5], "flip"),
                         _metric_rows("invariance", [0.5, 0.4, 0.3, 0.2, 0.1], "crop")])
    t = metric_vs_accuracy(res, metrics).set_index(["metric", "augmentation"])
    acc = res["accuracy"].to_numpy()
    r = t.loc[("rankme", "")]
    assert r["spearman"] == pytest.approx(stats.spearmanr([1, 2, 3, 5, 4], acc).statistic)
    assert r["p_value"] == pytest.approx(stats.spearmanr([1, 2, 3, 5, 4], acc).pvalue)
    assert r["spearman_low"] < r["spearman"] < r["spearman_high"]
    assert (r["metric_cut"], r["val_cut"]) == ("c3", "c2")
    assert r["accuracy_lost"] == pytest.approx(0.90 - 0.80)
    a = t.loc[("alpha_req", "")]  # oriented -|alpha - 1|: 0.8 and 1.2 tie, the shallower (c2) wins
    assert a["direction"] == "closest to 1"
    assert a["spearman"] == pytest.approx(stats.spearmanr(-np.abs(np.array([3.0, 1.5, 0.8, 1.2, 2.0]) - 1), acc).statistic)
    assert (a["metric_cut"], a["accuracy_lost"]) == ("c2", 0.0)
    assert t.loc[("invariance", "flip"), "metric_cut"] == "c4"
    assert t.loc[("invariance", "flip"), "accuracy_lost"] == pytest.approx(0.30)
    assert t.loc[("invariance", "crop"), "metric_cut"] == "c0"
    assert t.loc[("invariance", "crop"), "spearman"] == pytest.approx(-t.loc[("invariance", "flip"), "spearman"])
    # Three cuts: a correlation but no interval; a constant metric: no correlation, shallowest pick.
    few = metric_vs_accuracy(res[res["depth"] < 3], _metric_rows("rankme", [3.0, 1.0, 2.0, 0, 0])).iloc[0]
    assert few["n_cuts"] == 3 and np.isnan(few["spearman_low"])
    flat = metric_vs_accuracy(res, _metric_rows("nesum", [2.0] * 5)).iloc[0]
    assert np.isnan(flat["spearman"]) and flat["metric_cut"] == "c0"
    with pytest.raises(DiagnosticError, match="val_accuracy"):
        metric_vs_accuracy(res.drop(columns="val_accuracy"), metrics)


# -- the entry point and its tables ------------------------------------------------------------------------------
def test_compute_diagnostics_tables_and_errors():
    model = tiny_model()
    ds = random_dataset(n_train=64, n_test=8)
    feats = extract_features(model, ds, cache=False, device="cpu")
    d = compute_diagnostics(model, feats, ds.train_images, metrics=list(METRICS), device="cpu", n_images=40,
                            augmentations=["flip", "grayscale"])
    t = d.metrics
    assert list(t.columns) == ["model", "cut", "depth", "part", "dim", "metric", "value", "augmentation"]
    k = len(feats.cuts)
    spectral = t[t["augmentation"] == ""]
    assert len(spectral) == k * 7 and set(spectral["metric"]) == {"rankme", "rankme_frac", "alpha_req", "stable_rank",
                                                                   "stable_rank_frac", "nesum", "nesum_frac"}
    inv = t[t["augmentation"] != ""]
    assert len(inv) == k * 2 * 2 and set(inv["metric"]) == {"invariance", "retrieval"}
    c0 = feats.cuts[0]
    direct = spectral_metrics(feats.train[c0.name], CPU)
    assert t.query("cut == @c0.name and metric == 'rankme'")["value"].item() == pytest.approx(direct["rankme"])
    assert len(d.cka) == k * k and np.allclose(d.cka.query("cut_a == cut_b")["cka"], 1.0)
    assert d.forward_batches == 2 and d.images_forwarded == 80
    assert set(d.seconds) == {"spectral", "cka", "invariance"}
    only = compute_diagnostics(None, feats, metrics=["nesum"], name="tiny", device="cpu")
    assert set(only.metrics["metric"]) == {"nesum", "nesum_frac"} and only.cka.empty
    with pytest.raises(DiagnosticError, match="Valid: rankme, alpha_req, stable_rank, nesum, cka, invariance") as e:
        compute_diagnostics(model, feats, metrics=["rankme", "effective_rank"])
    assert "effective_rank" in str(e.value)
    with pytest.raises(DiagnosticError, match="needs the train images"):
        compute_diagnostics(model, feats, metrics=["invariance"])


def test_figures_build_from_diagnostics_tables():
    from gr_explorer.diagnostics.figures import (
        cka_heatmap,
        invariance_heatmap,
        metric_curves,
    )

    model = tiny_model()
    ds = random_dataset(n_train=64, n_test=8)
    feats = extract_features(model, ds, cache=False, device="cpu")
    d = compute_diagnostics(model, feats, ds.train_images, metrics=list(METRICS), device="cpu", n_images=32,
                            augmentations=["flip", "crop"])
    res = _results().assign(model=model.name)
    cuts = {c.depth: c for c in feats.cuts}
    for col, attr in (("cut", "name"), ("part", "part"), ("dim", "dim")):
        res[col] = [getattr(cuts[i], attr) for i in res["depth"]]
    fig = metric_curves(d.metrics, res, ["rankme", "alpha_req", "invariance"])
    rows = {tr.xaxis for tr in fig.data}
    assert rows == {"x", "x2", "x3", "x4"}  # accuracy + three metric rows on one shared x axis
    assert fig.layout.xaxis4.ticktext == tuple(c.name for c in feats.cuts)
    assert any(s.fillcolor == "rgba(255,127,14,0.12)" for s in fig.layout.shapes)  # projector shaded
    assert len({tr.line.color for tr in fig.data if tr.mode == "lines+markers"}) == 1  # the model's one colour
    heat = cka_heatmap(d.cka)
    assert heat.data[0].z.shape == (len(feats.cuts),) * 2
    inv = invariance_heatmap(d.metrics)
    assert list(inv.data[0].y) == ["flip", "crop"] and inv.data[0].z.shape == (2, len(feats.cuts))

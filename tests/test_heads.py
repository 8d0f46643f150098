"""Heads the field uses: combined cuts, the attentive probe, few-shot and data-fraction draws.

References: scikit-learn's LogisticRegression on hand-concatenated features, torch.optim.AdamW, a synthetic token
task whose label only one token position carries, counts of the drawn rows per class, and the ordinary sweep.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from gr_explorer.cli import build_parser, config_from_args, main
from gr_explorer.combine import combinations, concatenate
from gr_explorer.config import SweepConfig
from gr_explorer.data import load_dataset
from gr_explorer.errors import ConfigError, ProbeError
from gr_explorer.features import Features, extract_features
from gr_explorer.limits import feature_bytes
from gr_explorer.models import Column, Cut
from gr_explorer.models.readout import Readout
from gr_explorer.plots import accuracy_vs_depth
from gr_explorer.probes import ProbeResult, fit_linear_probes, run_probes, standardize, validation_split
from gr_explorer.probes.attentive import adamw_step, fit_attentive_probes
from gr_explorer.run import run_sweep
from gr_explorer.shots import Draw, draw_rows, plan
from gr_explorer.stats import Resampler
from helpers import saved_tiny, tiny_model


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _sk_accuracy(Xtr, ytr, Xte, yte, C) -> float:
    """scikit-learn's LogisticRegression(C) on features standardised with the train rows' statistics."""
    a, b = standardize(Xtr, Xte)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = LogisticRegression(C=C, max_iter=20000).fit(a.double().numpy(), ytr.numpy())
    return float((clf.predict(b.double().numpy()) == yte.numpy()).mean())


def _features(n_train=500, n_test=300, dims=(6, 10, 14, 20), seed=0):
    """Cuts that each see a noisy view of one latent; the task's label is a linear function of the latent."""
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_test
    z = torch.randn((n, 8), generator=g)
    y = (z[:, :3] @ torch.tensor([1.0, -1.0, 0.5]) > 0).long() + (z[:, 3] > 0.8).long()
    cuts = {}
    for i, d in enumerate(dims):
        cuts[f"c{i}"] = z @ torch.randn((8, d), generator=g) + (1.0 + i) * torch.randn((n, d), generator=g)
    return ({c: x[:n_train] for c, x in cuts.items()}, {"t": y[:n_train]}, {c: x[n_train:] for c, x in cuts.items()},
            {"t": y[n_train:]})


# ---------------------------------------------------------------------------------------------
# combined cuts


@pytest.mark.parametrize("standardize_each", [True, False])
def test_combined_cut_equals_sklearn_on_hand_concatenated_features(standardize_each):
    tr, trl, te, tel = _features()
    cols = ("c1", "c3")
    a, b = concatenate(tr, te, cols, standardize_each)
    (row,) = run_probes(["linear"], {"combined": a}, trl, {"combined": b}, tel, linear_grid=[0.3])
    hand_tr, hand_te = torch.cat([tr[c] for c in cols], 1), torch.cat([te[c] for c in cols], 1)
    assert row.accuracy == pytest.approx(_sk_accuracy(hand_tr, trl["t"], hand_te, tel["t"], 0.3), abs=0.01)


def test_combined_cut_in_a_sweep_equals_sklearn(tmp_path):
    model = tiny_model()
    res = run_sweep(SweepConfig(models=["custom:tiny"], tasks=["shape"], n_train=300, n_test=200, combine=["layer1+pool"],
                                linear_grid=[0.1]), models=[model], cache=False)
    (row,) = res.combined.itertuples()
    assert (row.cut, row.cuts, row.combine) == ("concat(layer1,pool)", "layer1,pool", "layer1+pool")
    f, ds = res.features["tiny"]["base"], res.dataset
    hand = [torch.cat([getattr(f, s)[c].float() for c in ("layer1", "pool")], 1) for s in ("train", "test")]
    sk = _sk_accuracy(hand[0], ds.train_labels["shape"], hand[1], ds.test_labels["shape"], 0.1)
    assert row.accuracy == pytest.approx(sk, abs=0.01)
    assert row.dim == f.train["layer1"].shape[1] + f.train["pool"].shape[1]
    # compared with the best single cut over the same test images (paired), and drawn right of the curve
    (s,) = res.combined_summary.itertuples()
    best = res.summary.iloc[0]
    assert s.best_cut == best["best_cut"] and s.over_best == pytest.approx(row.accuracy - best["best_accuracy"])
    lo, hi = Resampler(200, 1000, 0).difference_interval(res.combined["correct"].iloc[0],
                                                           res.table.set_index("cut").loc[s.best_cut, "correct"])
    assert (s.over_best_ci_low, s.over_best_ci_high) == pytest.approx((lo, hi))
    fig = accuracy_vs_depth(res.table, summary=res.summary, combined=res.combined_summary)
    (marker,) = [t for t in fig.data if (t.meta or {}).get("role") == "combined"]
    assert marker.x[0] == res.table["depth"].max() + 1 and marker.y[0] == pytest.approx(row.accuracy)
    assert marker.error_y.array[0] == pytest.approx(row.accuracy_ci_high - row.accuracy)
    assert "layer1+pool" in fig.layout.xaxis.ticktext


def _fake(val: dict[str, float], test: dict[str, float]) -> tuple[Features, list[ProbeResult]]:
    cuts = [Cut(name, d, "backbone", 4) for d, name in enumerate(val)]
    cols = [Column(c.name, c, "avg", "off", Readout("avg")) for c in cuts]
    x = torch.zeros((3, 4))
    feats = Features(cuts, {c.name: x for c in cuts}, {c.name: x for c in cuts}, "k", columns=cols)
    results = [ProbeResult(c, "t", "linear", test[c], val[c], "C", 1.0, 1.0, 2) for c in val]
    return feats, results


def test_best_k_is_chosen_on_validation_never_on_test():
    val = {"a": 0.9, "b": 0.5, "c": 0.8, "d": 0.6}  # validation ranks a, c, d, b
    test = {"a": 0.1, "b": 0.9, "c": 0.2, "d": 0.95}  # test would rank d, b, c, a
    feats, results = _fake(val, test)
    (comb,) = combinations(["best2"], feats, results, "linear")["avg|off"]["t"]
    assert comb.cuts == ("a", "c") and comb.name == "concat(a,c)"
    (last,) = combinations(["last3"], feats, results, "linear")["avg|off"]["t"]
    assert last.cuts == ("b", "c", "d")
    # ties on validation go to the shallower cut
    feats, results = _fake({"a": 0.5, "b": 0.7, "c": 0.7, "d": 0.7}, test)
    assert combinations(["best2"], feats, results, "linear")["avg|off"]["t"][0].cuts == ("b", "c")


def test_a_combined_cut_the_sweep_cannot_build_is_refused_before_any_work():
    model = tiny_model()
    for bad, word in ((["stem+nope"], "nope"), (["last9"], "last9"), (["best12"], "best12")):
        with pytest.raises(ConfigError, match=word):
            run_sweep(SweepConfig(models=["custom:tiny"], tasks=["shape"], n_train=60, n_test=30, combine=bad),
                      models=[model], cache=False, progress=lambda e: pytest.fail(f"work began: {e}")
                      if e.stage == "extract" else None)
    with pytest.raises(ConfigError, match="combine"):
        SweepConfig(models=["zoo:simclr"], combine=["last1"])


# ---------------------------------------------------------------------------------------------
# the attentive probe


def _token_task(n, *, mean_solves: bool, T=12, C=16, K=4, seed=0):
    """Tokens of noise; one token per image, at a position drawn per image, carries a marker and the class embedding.
    Unless `mean_solves`, another token carries minus the class embedding: the mean of the tokens has no label."""
    g = torch.Generator().manual_seed(seed)
    E = torch.randn((K, C), generator=torch.Generator().manual_seed(123))
    E[:, 0] = 0
    y = torch.randint(0, K, (n,), generator=g)
    X = 0.5 * torch.randn((n, T, C), generator=g)
    rows = torch.arange(n)
    if mean_solves:  # every token carries the class (weakly): the mean is the best summary
        return X + 0.4 * E[y][:, None, :], y
    pos = torch.randint(0, T, (n,), generator=g)
    anti = (pos + 1 + torch.randint(0, T - 1, (n,), generator=g)) % T
    X[rows, pos, 0] += 3.0
    X[rows, pos] += E[y]
    X[rows, anti] -= E[y]
    return X, y


@pytest.mark.parametrize("mean_solves", [False, True])
def test_attentive_probe_reads_the_token_that_carries_the_label(mean_solves):
    Xtr, ytr = _token_task(1000, mean_solves=mean_solves, seed=1)
    Xte, yte = _token_task(600, mean_solves=mean_solves, seed=2)
    fit, val = validation_split({"y": ytr}, 0.2, 0)
    att = fit_attentive_probes({"c": Xtr}, {"y": ytr}, {"c": Xte}, {"y": yte}, fit_idx=fit, val_idx=val)[("c", "y")]
    lin = fit_linear_probes({"c": Xtr.mean(1)}, {"y": ytr}, {"c": Xte.mean(1)}, {"y": yte}, fit_idx=fit,
                            val_idx=val)[("c", "y")]
    if not mean_solves:
        assert att.accuracy > 0.9
        assert lin.accuracy < 0.25 + 0.08  # chance is 0.25
    else:  # the attentive probe matches the linear probe on the mean, within the linear probe's interval
        lo, hi = Resampler(600, 1000, 0).interval(lin.correct)
        assert lin.accuracy > 0.8 and lo[0] <= att.accuracy <= hi[0]
    assert att.correct.float().mean().item() == pytest.approx(att.accuracy)
    # the chosen head's validation hits, image by image, are those its validation accuracy was counted from
    assert len(att.val_correct) == len(val) and att.val_correct.float().mean().item() == pytest.approx(att.val_accuracy)


def test_attentive_batched_over_cuts_equals_each_cut_alone():
    Xa, y = _token_task(400, mean_solves=False, seed=3)
    Xb, _ = _token_task(400, mean_solves=True, seed=4)  # same shape as Xa: batched in one tensor with it
    Xc = Xa[:, :5, :8].contiguous()  # another shape
    train = {"a": Xa[:300], "b": Xb[:300], "c": Xc[:300]}
    test = {k: v[300:] for k, v in {"a": Xa, "b": Xb, "c": Xc}.items()}
    labels, test_labels = {"y": y[:300], "z": (y[:300] > 1).long()}, {"y": y[300:], "z": (y[300:] > 1).long()}
    fit, val = validation_split(labels, 0.2, 0)
    kw = dict(fit_idx=fit, val_idx=val, max_epochs=25, seed=7)
    together = fit_attentive_probes(train, labels, test, test_labels, **kw)
    for cut in train:
        alone = fit_attentive_probes({cut: train[cut]}, labels, {cut: test[cut]}, test_labels, **kw)
        for task in labels:
            a, b = alone[(cut, task)], together[(cut, task)]
            assert (a.lr, a.wd, a.epochs) == (b.lr, b.wd, b.epochs)
            assert a.val_accuracies == pytest.approx(b.val_accuracies, abs=1.5 / len(val))
            assert abs(a.accuracy - b.accuracy) <= 1.5 / 100


def test_adamw_step_is_torch_adamw_per_head():
    torch.manual_seed(0)
    p0 = torch.randn(3, 5)
    lrs, wds = torch.tensor([1e-3, 1e-2, 3e-2]), torch.tensor([0.0, 0.1, 0.01])
    ours, state = p0.clone(), [{}]
    refs = [p0[i].clone().requires_grad_(True) for i in range(3)]
    opts = [torch.optim.AdamW([refs[i]], lr=float(lrs[i]), weight_decay=float(wds[i])) for i in range(3)]
    for step in range(1, 6):
        g = torch.randn(3, 5)
        adamw_step([ours], [g], state, step, lrs[:, None], [wds[:, None]])
        for i in range(3):
            refs[i].grad = g[i].clone()
            opts[i].step()
    assert torch.allclose(ours, torch.stack([r.detach() for r in refs]), atol=1e-6)


def test_attentive_in_a_sweep_reads_tokens_and_records_its_search():
    model = tiny_model()
    res = run_sweep(SweepConfig(models=["custom:tiny"], tasks=["color"], n_train=200, n_test=100,
                                probes=["linear", "attentive"], attentive_epochs=8, attentive_tokens=16,
                                readout=["avg"]), models=[model], cache=False)
    f = res.features["tiny"]["base"]
    assert f.tokens["train"]["stem"].shape[1:] == (16, model.width("stem")) and f.tokens["train"]["stem"].dtype == torch.float16
    assert torch.allclose(f.tokens["train"]["stem"].float().mean(1), f.train["stem"], atol=2e-2)  # pooled grid, mean kept
    att = res.table[res.table["probe"] == "attentive"]
    assert set(att["readout"]) == {"tokens"} and len(att) == len(model.cuts)
    assert att["hparam"].str.fullmatch(r"lr=\S+ wd=\S+").all()
    s = res.search[res.search["probe"] == "attentive"]
    assert s.groupby("cut")["chosen"].sum().eq(1).all() and set(s["also"]) == {"wd=0.0001", "wd=0.1"}
    assert set(res.summary["probe"]) == {"linear", "attentive"}
    # its validation hits are kept, so the choice of cut is resampled for its curve as for the linear probe's
    assert att["p_chosen"].notna().all() and att["p_chosen"].sum() == pytest.approx(1.0)
    assert res.summary.set_index("probe").loc["attentive", "p_chosen"] == pytest.approx(
        att.set_index("cut").loc[res.summary.set_index("probe").loc["attentive", "best_cut"], "p_chosen"])


def test_tokens_must_be_three_dimensional():
    tr, trl, te, tel = _features(n_train=60, n_test=30, dims=(4,))
    with pytest.raises(ProbeError, match="3-D"):
        run_probes(["attentive"], tr, trl, te, tel, train_tokens={"c0": tr["c0"]}, test_tokens={"c0": te["c0"][:, None]})


# ---------------------------------------------------------------------------------------------
# few-shot and data-fraction draws


def test_shot_draws_are_stratified_inside_the_fit_split_and_reproducible():
    g = torch.Generator().manual_seed(0)
    labels = {"a": torch.randint(0, 4, (300,), generator=g), "b": torch.randint(0, 2, (300,), generator=g)}
    labels["a"][labels["a"] == 3] = 2  # class 3 absent; class sizes differ
    fit, val = validation_split(labels, 0.2, 0)
    for n in (1, 5, 40):
        rows = draw_rows(Draw("shots", n, 0), fit, labels, seed=0, task="a")
        counts = torch.bincount(labels["a"][rows], minlength=3)
        fit_counts = torch.bincount(labels["a"][fit], minlength=3)
        assert counts.tolist() == [min(n, int(c)) for c in fit_counts]
        assert set(rows.tolist()) <= set(fit.tolist()) and not set(rows.tolist()) & set(val.tolist())
        assert torch.equal(rows, draw_rows(Draw("shots", n, 0), fit, labels, seed=0, task="a"))
    assert not torch.equal(draw_rows(Draw("shots", 5, 0), fit, labels, 0, "a"), draw_rows(Draw("shots", 5, 1), fit, labels, 0, "a"))
    frac = draw_rows(Draw("fraction", 0.25, 2), fit, labels, seed=0)
    assert len(frac) == round(0.25 * len(fit)) and set(frac.tolist()) <= set(fit.tolist())
    share = torch.bincount(labels["a"][frac], minlength=3) / len(frac)
    assert torch.allclose(share, torch.bincount(labels["a"][fit], minlength=3) / len(fit), atol=0.02)


def test_refit_on_a_draw_equals_sklearn_on_the_draw_alone():
    tr, trl, te, tel = _features(dims=(10,))
    fit, val = validation_split(trl, 0.2, 0)
    rows = draw_rows(Draw("shots", 20, 0), fit, trl, seed=0, task="t")
    (r,) = run_probes(["linear"], tr, trl, te, tel, linear_grid=[0.5], split=(rows, val), refit_idx=rows)
    assert r.accuracy == pytest.approx(_sk_accuracy(tr["c0"][rows], trl["t"][rows], te["c0"], tel["t"], 0.5), abs=0.01)
    # the sweep's own split given explicitly is the ordinary fit
    plain = run_probes(["linear", "knn"], tr, trl, te, tel)
    given = run_probes(["linear", "knn"], tr, trl, te, tel, split=(fit, val))
    assert [x.accuracy for x in plain] == [x.accuracy for x in given]
    with pytest.raises(ProbeError, match="share rows"):
        run_probes(["linear"], tr, trl, te, tel, split=(fit, fit[:5]))


def test_few_shot_sweep_reproduces_from_run_json_and_all_is_the_ordinary_sweep():
    model = tiny_model()
    kw = dict(models=["custom:tiny"], tasks=["shape", "color"], n_train=240, n_test=120, probes=["linear", "knn"])
    config = SweepConfig(**kw, shots=[2, 5, "all"], fractions=[0.25], tries=2)
    events = []
    res = run_sweep(config, models=[model], cache=False, progress=events.append)
    assert sum(e.stage == "extract" and e.done == 1 for e in events) == 1  # one forward pass of each split's batch
    plain = run_sweep(SweepConfig(**kw), models=[model], cache=False)
    pd.testing.assert_frame_equal(res.table, plain.table)
    d = res.draws
    assert set(d["shots"]) == {"all", "2", "5", "25%"} and len(plan(config.shots, config.fractions, 2)) == 6
    all_rows = d[d["shots"] == "all"].reset_index(drop=True)
    np.testing.assert_array_equal(all_rows["accuracy"], plain.table["accuracy"])
    # n per class per task; both tries differ; the same draws again from run.json
    again = SweepConfig.from_dict(json.loads(config.to_json()))
    labels = res.dataset.train_labels
    fit, _ = validation_split(labels, again.val_fraction, again.seed)
    for task in ("shape", "color"):
        rows = draw_rows(Draw("shots", 5, 1), fit, labels, again.seed, task)
        got = d[(d["shots"] == "5") & (d["try"] == 1) & (d["task"] == task)]
        assert set(got["n_fit"]) == {len(rows)} == {5 * len(torch.unique(labels[task]))}
    best = res.shots_best
    for (task, probe, shots), g in d[d["shots"] != "all"].groupby(["task", "probe", "shots"]):
        b = best[(best["task"] == task) & (best["probe"] == probe) & (best["shots"] == shots)].iloc[0]
        chosen = [g[g["try"] == t].sort_values("depth").pipe(lambda x: x.loc[x["val_accuracy"].idxmax()]) for t in (0, 1)]
        assert b["best_cuts"] == ",".join(c["cut"] for c in chosen)  # chosen on validation within each draw
        assert b["best_accuracy"] == pytest.approx(np.mean([c["accuracy"] for c in chosen]))
    curve = res.shots[(res.shots["shots"] == "2") & (res.shots["task"] == "color") & (res.shots["probe"] == "linear")]
    raw = d[(d["shots"] == "2") & (d["task"] == "color") & (d["probe"] == "linear")]
    for r in curve.itertuples():
        acc = raw[raw["cut"] == r.cut]["accuracy"]
        assert (r.accuracy, r.accuracy_ci_low, r.accuracy_ci_high) == pytest.approx((acc.mean(), acc.min(), acc.max()))


def test_shots_flag_takes_counts_and_all():
    a = build_parser().parse_args(["sweep", "--model", "zoo:simclr", "--shots", "1,5,all", "--fractions", "0.1",
                                   "--tries", "3", "--combine", "last4,best2"])
    c = config_from_args(a)
    assert (c.shots, c.fractions, c.tries, c.combine) == ((1, 5, "all"), (0.1,), 3, ("last4", "best2"))
    assert "--shots 1,5,all" in c.to_command(["gr-explorer", "sweep"])
    for bad in (["--shots", "0"], ["--shots", "few"], ["--fractions", "1.5"], ["--tries", "0"]):
        with pytest.raises(ConfigError):
            config_from_args(build_parser().parse_args(["sweep", "--model", "zoo:simclr", *bad]))


# ---------------------------------------------------------------------------------------------
# the whole issue from the CLI: one sweep, three heads, combined cuts, shot curves, a baseline


@pytest.mark.slow  # ~5-10 s: a sweep with three heads, a baseline, combined cuts and 5 draws
def test_one_cli_sweep_reports_every_head_combined_cuts_and_shot_curves(tmp_path, capsys):
    _, path = saved_tiny(tmp_path)
    out = tmp_path / "heads"
    assert main(["sweep", "--model", f"file:{path}", "--tasks", "color", "--probe", "linear,knn,attentive",
                 "--baseline", "pixels", "--combine", "last4,best4", "--shots", "1,5,all", "--tries", "2",
                 "--attentive-epochs", "6", "--n-train", "200", "--n-test", "100", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "Combined cuts" in printed and "Few-shot" in printed
    res = pd.read_csv(out / "results.csv", keep_default_na=False)
    single = res[res["cuts"] == ""]
    cuts, me = ["stem", "layer1", "layer2", "layer3", "pool", "proj1", "proj2", "proj3"], f"file:{path}"
    for probe in ("linear", "knn", "attentive"):  # every head at every cut of the model, and on the pixels
        mine = single[(single["probe"] == probe) & (single["model"] == me)]
        assert sorted(mine["cut"]) == sorted(cuts), probe
        assert list(single[(single["probe"] == probe) & (single["model"] != me)]["model"]) == ["pixels"]
        assert (mine["accuracy_ci_low"] <= mine["accuracy"]).all() and (mine["accuracy"] <= mine["accuracy_ci_high"]).all()
    comb = res[(res["cuts"] != "") & (res["model"] == me)]  # on the pooled features: linear and k-NN
    assert set(comb["combine"]) == {"last4", "best4"} and set(comb["probe"]) == {"linear", "knn"}
    assert set(comb[comb["combine"] == "last4"]["cuts"]) == {"stem,layer1,layer2,layer3"}  # the backbone's stages
    for probe in ("linear", "knn"):  # best4: the 4 best single cuts on validation (ties: the shallower cut)
        s = single[(single["probe"] == probe) & (single["model"] == me)].sort_values("depth", kind="stable")
        top = s.sort_values("val_accuracy", ascending=False, kind="stable")["cut"][:4]
        (got,) = comb[(comb["combine"] == "best4") & (comb["probe"] == probe)]["cuts"]
        assert got == ",".join(c for c in s["cut"] if c in set(top))
    combined = pd.read_csv(out / "combined.csv")
    assert {"best_cut", "over_best", "over_best_ci_low", "over_best_ci_high"} <= set(combined.columns)
    shots = pd.read_csv(out / "shots.csv", dtype={"shots": str})
    assert {"1", "5", "all"} <= set(shots["shots"]) and {"accuracy_ci_low", "accuracy_ci_high"} <= set(shots.columns)
    best = pd.read_csv(out / "shots_best.csv", dtype={"shots": str})
    assert set(best[best["model"] == me]["shots"]) == {"1", "5", "all"} and best["best_cuts"].notna().all()
    search = pd.read_csv(out / "search.csv")
    assert set(search["probe"]) == {"linear", "knn", "attentive"} and (out / "shots.html").exists()


def test_the_disk_check_counts_the_attentive_probes_token_features():
    model = tiny_model()
    plain = SweepConfig(models=["custom:tiny"], tasks=["color"], n_train=40, n_test=20)
    att = SweepConfig(models=["custom:tiny"], tasks=["color"], n_train=40, n_test=20, probes=["linear", "attentive"],
                      attentive_tokens=16)
    ds = load_dataset("shapes", tasks=["color"], n_train=40, n_test=20, seed=0)
    f = extract_features(model, ds, cache=False, tokens=16)
    assert all(x.shape[1] == 16 for x in f.tokens["train"].values())  # every map cut has >= 16 positions here
    assert feature_bytes(model, att, 60) - feature_bytes(model, plain, 60) == f.token_bytes()

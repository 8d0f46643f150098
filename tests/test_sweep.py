"""Sweep, summary and plots: the tidy table, its consistency with the parts, and figures built from it."""

import numpy as np
import pandas as pd
import pytest

from gr_explorer.features import extract_features
from gr_explorer.plots import accuracy_vs_depth, cut_task_heatmap
from gr_explorer.probes import run_probes
from gr_explorer.summary import guillotine_summary
from gr_explorer.sweep import COLUMNS, SweepCancelled, SweepConfig, run_sweep, sweep
from gr_explorer.data import load_dataset
from helpers import saved_tiny, tiny_model


@pytest.fixture
def ckpt(tmp_path):
    return saved_tiny(tmp_path)


def test_sweep_table_is_tidy_and_matches_the_parts(ckpt):
    model, path = ckpt
    cfg = SweepConfig(models=[f"file:{path}"], dataset="shapes", tasks=["shape", "color"], probes=["linear", "knn"],
                      n_train=300, n_test=100, seed=3)
    seen = []
    res = run_sweep(cfg, progress=lambda stage, d, t, msg: seen.append(stage))
    t = res.table
    assert list(t.columns) == COLUMNS
    assert len(t) == len(model.cuts) * 2 * 2
    assert {"load", "extract", "probe"} <= set(seen)
    by_cut = {c.name: c for c in model.cuts}
    for r in t.itertuples():
        c = by_cut[r.cut]
        assert (r.depth, r.part, r.dim) == (c.depth, c.part, c.dim)
        assert 0 <= r.accuracy <= 1 and r.n_train == 300 and r.n_test == 100
    # The same numbers from the two halves called directly.
    ds = load_dataset("shapes", tasks=["shape", "color"], n_train=300, n_test=100, seed=3)
    f = extract_features(model, ds, cache=False)
    rows = run_probes(["linear", "knn"], f.train, ds.train_labels, f.test, ds.test_labels, seed=3)
    direct = pd.DataFrame(rows).set_index(["cut", "task", "probe"])["accuracy"]
    got = t.set_index(["cut", "task", "probe"])["accuracy"]
    pd.testing.assert_series_equal(got.sort_index(), direct.sort_index(), check_names=False, atol=1e-6)


def test_sweep_accepts_model_objects_and_cut_subsets():
    t = sweep(tiny_model(), "shapes", tasks=["color"], cuts=["proj3", "stem"], n_train=200, n_test=100)
    assert t["cut"].tolist() == ["stem", "proj3"] and t["model"].unique().tolist() == ["tiny"]


def test_cancel_keeps_partial_rows(ckpt):
    _, path = ckpt
    calls = iter([False, False, False, True])
    cfg = SweepConfig(models=[f"file:{path}", f"file:{path}"], dataset="shapes", tasks=["shape"], n_train=200, n_test=100)
    with pytest.raises(SweepCancelled) as e:
        run_sweep(cfg, should_stop=lambda: next(calls))
    assert len(e.value.partial) == 8  # the first model's 8 cuts were finished and kept


def test_config_round_trip_and_bad_config(tmp_path):
    cfg = SweepConfig(models=["zoo:x"], tasks=["shape"], probes=["knn"], knn_ks=[3, 5])
    p = tmp_path / "run.json"
    p.write_text(cfg.to_json())
    assert SweepConfig.load(p) == cfg
    p.write_text('{"models": ["zoo:x"], "colour": 1}')
    with pytest.raises(Exception, match=r"Unknown key\(s\) \['colour'\]"):
        SweepConfig.load(p)
    with pytest.raises(Exception, match=r"Unknown probe\(s\) \['svm'\].*Valid: linear, knn"):
        SweepConfig(models=["zoo:x"], probes=["svm"])


def _table():
    rows = []
    for model, accs in (("a", [0.5, 0.9, 0.7, 0.4]), ("b", [0.6, 0.6, 0.8, 0.8])):
        for d, (cut, part) in enumerate([("stem", "backbone"), ("pool", "backbone"), ("proj1", "projector"), ("proj2", "projector")]):
            rows.append(dict(model=model, dataset="x", cut=cut, depth=d, part=part, dim=8, task="shape", probe="linear",
                             accuracy=accs[d], val_accuracy=accs[d], hparam="C=1", n_classes=3, n_train=10, n_test=10))
    return pd.DataFrame(rows, columns=COLUMNS)


def test_guillotine_summary():
    s = guillotine_summary(_table()).set_index("model")
    assert s.loc["a", "best_cut"] == "pool" and s.loc["a", "guillotine_gain"] == pytest.approx(0.5)
    assert s.loc["b", "best_cut"] == "proj1" and s.loc["b", "guillotine_gain"] == pytest.approx(0.0)


def test_accuracy_vs_depth_figure():
    t = _table()
    fig = accuracy_vs_depth(t)
    lines = [tr for tr in fig.data if tr.mode == "lines+markers"]
    stars = [tr for tr in fig.data if tr.mode == "markers"]
    assert [tr.name for tr in lines] == ["a", "b"]
    assert np.allclose(lines[0].y, [0.5, 0.9, 0.7, 0.4])
    assert (stars[0].x[0], stars[0].y[0]) == (1, 0.9)
    assert list(fig.layout.xaxis.ticktext) == ["stem", "pool", "proj1", "proj2"]
    assert any("+50.0 pts" in a.text for a in fig.layout.annotations)
    shapes = sorted((s.x0, s.x1) for s in fig.layout.shapes)
    assert shapes == [(-0.5, 1.5), (1.5, 3.5)]


def test_heatmap_figure():
    t = _table()
    t2 = t.assign(task="color", accuracy=t["accuracy"] / 2)
    fig = cut_task_heatmap(pd.concat([t, t2]), model="a")
    hm = fig.data[0]
    assert list(hm.x) == ["stem", "pool", "proj1", "proj2"] and list(hm.y) == ["shape", "color"]
    assert np.allclose(hm.z, [[0.5, 0.9, 0.7, 0.4], [0.25, 0.45, 0.35, 0.2]])

"""Sweep, summary and plots: the tidy tables, validation-selected cuts, baselines, derived views, the README example."""

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from gr_explorer.config import SweepConfig
from gr_explorer.data import load_dataset
from gr_explorer.data.loading import read_batches
from gr_explorer.features import extract_features
from gr_explorer.plots import accuracy_vs_depth, cut_task_heatmap
from gr_explorer.probes import run_probes
from gr_explorer.progress import ProgressEvent
from gr_explorer.run import COLUMNS, MEMORY_COLUMNS, SweepCancelled, run_sweep, sweep
from gr_explorer.summary import guillotine_summary
from helpers import saved_tiny, tiny_model

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def ckpt(tmp_path):
    return saved_tiny(tmp_path)


def test_sweep_table_is_tidy_and_matches_the_parts(ckpt):
    model, path = ckpt
    cfg = SweepConfig(models=[f"file:{path}"], dataset="shapes", tasks=["shape", "color"], probes=["linear", "knn"],
                      n_train=300, n_test=100, seed=3)
    seen = []
    res = run_sweep(cfg, progress=seen.append)
    t = res.table
    assert list(t.columns) == COLUMNS + MEMORY_COLUMNS
    assert len(t) == len(model.cuts) * 2 * 2
    assert all(isinstance(e, ProgressEvent) for e in seen)
    assert {"load", "extract", "probe"} <= {e.stage for e in seen}
    probe_events = [e for e in seen if e.stage == "probe"]
    assert probe_events[-1].done == probe_events[-1].total == len(t) and len(probe_events) > 2  # per chunk, not once
    by_cut = {c.name: c for c in model.cuts}
    for r in t.itertuples():
        c = by_cut[r.cut]
        assert (r.depth, r.part, r.dim) == (c.depth, c.part, c.dim)
        assert 0 <= r.accuracy_ci_low <= r.accuracy <= r.accuracy_ci_high <= 1 and r.n_train == 300 and r.n_test == 100
        assert r.accuracy == pytest.approx(r.correct.mean())
        assert r.chance == pytest.approx(0.2 if r.task == "shape" else 17 / 100)
    # The same numbers from the two halves called directly.
    ds = load_dataset("shapes", tasks=["shape", "color"], n_train=300, n_test=100, seed=3)
    f = extract_features(model, ds, cache=False)
    rows = run_probes(["linear", "knn"], f.train, ds.train_labels, f.test, ds.test_labels, seed=3)
    direct = pd.Series({(r.cut, r.task, r.probe): r.accuracy for r in rows})
    got = t.set_index(["cut", "task", "probe"])["accuracy"]
    tol = 0.02 if torch.cuda.is_available() else 1e-6  # CUDA extraction runs under bf16 autocast; the direct call too
    for key, acc in direct.items():
        assert got.loc[key] == pytest.approx(acc, abs=tol)
    # search.csv: every C / k tried, the chosen one flagged and equal to the row's hparam
    s = res.search
    assert set(s["probe"]) == {"linear", "knn"} and s.groupby(["cut", "task", "probe"])["chosen"].sum().eq(1).all()
    chosen = s[s["chosen"]].set_index(["cut", "task", "probe"])
    for r in t.itertuples():
        assert chosen.loc[(r.cut, r.task, r.probe), "val_accuracy"] == pytest.approx(r.val_accuracy)


def test_sweep_accepts_model_objects_and_cut_subsets():
    t = sweep(tiny_model(), "shapes", tasks=["color"], cuts=["proj3", "stem"], n_train=200, n_test=100)
    assert t["cut"].tolist() == ["stem", "proj3"] and t["model"].unique().tolist() == ["tiny"]


def test_cancel_keeps_partial_rows(ckpt):
    _, path = ckpt
    stop = {"now": False}

    def progress(e):
        if e.stage == "probe" and e.done == e.total:
            stop["now"] = True  # cancel once the first model's probes are done

    cfg = SweepConfig(models=[f"file:{path}", "zoo:simclr"], dataset="shapes", tasks=["shape"], n_train=200, n_test=100)
    with pytest.raises(SweepCancelled) as e:
        run_sweep(cfg, progress=progress, should_stop=lambda: stop["now"])
    assert len(e.value.partial) == 8 and set(e.value.partial["model"]) == {f"file:{path}"}


def test_probe_stage_stops_between_chunks(ckpt):
    _, path = ckpt
    events = []
    # Two probes: on CUDA all of this small model's linear fits share one chunk, so the k-NN fits are the next one.
    cfg = SweepConfig(models=[f"file:{path}"], dataset="shapes", tasks=["shape"], n_train=200, n_test=100,
                      probes=["linear", "knn"])
    with pytest.raises(SweepCancelled):
        run_sweep(cfg, progress=events.append, should_stop=lambda: any(e.stage == "probe" and e.done for e in events))
    probe = [e for e in events if e.stage == "probe"]
    assert probe and probe[-1].done < probe[-1].total  # stopped after the first chunk, not at the end


# ---------------------------------------------------------------------------------------------
# the best cut is chosen on validation


def _table(accs_test, accs_val, model="a"):
    rows = []
    for d, (cut, part) in enumerate([("stem", "backbone"), ("pool", "backbone"), ("proj1", "projector"), ("proj2", "projector")]):
        rows.append(dict(model=model, baseline="", dataset="x", cut=cut, depth=d, part=part, dim=8, task="shape",
                         probe="linear", accuracy=accs_test[d], val_accuracy=accs_val[d], chance=0.2, hparam="C=1",
                         n_classes=3, n_train=10, n_test=10))
    return pd.DataFrame(rows)


def test_selection_is_on_validation_not_test():
    t = _table([0.5, 0.9, 0.7, 0.4], [0.5, 0.6, 0.8, 0.3])  # test-best pool, val-best proj1
    s = guillotine_summary(t).iloc[0]
    assert s["best_cut"] == "proj1" and s["best_accuracy"] == 0.7 and s["gain"] == pytest.approx(0.3)
    ties = guillotine_summary(_table([0.5, 0.9, 0.7, 0.4], [0.8, 0.6, 0.8, 0.8])).iloc[0]
    assert ties["best_cut"] == "stem"  # ties -> the shallower cut


def test_permuting_test_labels_changes_no_selected_cut(ckpt):
    _, path = ckpt
    ds = load_dataset("shapes", tasks=["shape", "color"], n_train=300, n_test=150, seed=2)
    cfg = SweepConfig(models=[f"file:{path}"], tasks=["shape", "color"], probes=["linear", "knn"], n_train=300, n_test=150,
                      seed=2)
    a = run_sweep(cfg, dataset=ds).summary
    g = torch.Generator().manual_seed(0)
    shuffled = {t: y[torch.randperm(len(y), generator=g)] for t, y in ds.test_labels.items()}
    ds.test_labels = shuffled
    b = run_sweep(cfg, dataset=ds).summary
    assert (a["best_cut"] == b["best_cut"]).all() and (a["best_accuracy"] != b["best_accuracy"]).any()


# ---------------------------------------------------------------------------------------------
# baselines, chance, seeded random weights, derived views


def test_baselines_rows_and_summary(ckpt):
    _, path = ckpt
    cfg = SweepConfig(models=[f"file:{path}"], tasks=["shape", "color"], n_train=200, n_test=100, seed=1,
                      baselines=["random-init", "pixels"])
    res = run_sweep(cfg)
    t = res.table
    twin = f"file:{path} [random init]"
    assert list(dict.fromkeys(t["model"])) == [f"file:{path}", twin, "pixels"]
    assert set(t.loc[t["model"] == twin, "baseline"]) == {"random-init"}
    px = t[t["model"] == "pixels"]
    assert px["cut"].unique().tolist() == ["pixels"] and px["dim"].iloc[0] == 3 * 32 * 32
    s = res.summary.set_index(["model", "task", "probe"])
    row = s.loc[(f"file:{path}", "shape", "linear")]
    twin_row = s.loc[(twin, "shape", "linear")]
    assert row["random_init_accuracy"] == twin_row["best_accuracy"]
    assert row["over_random_init"] == pytest.approx(row["best_accuracy"] - twin_row["best_accuracy"])
    assert row["over_random_init_ci_low"] <= row["over_random_init"] <= row["over_random_init_ci_high"]
    assert row["pixels_accuracy"] == s.loc[("pixels", "shape", "linear"), "best_accuracy"]


def test_pixels_baseline_is_the_raw_pixels():
    """Its features equal the normalised, pooled, flattened images computed by hand."""
    from gr_explorer.models import pixels_model

    ds = load_dataset("shapes", tasks=["shape"], n_train=20, n_test=10, seed=0)
    f = extract_features(pixels_model(32), ds, cache=False)
    ref = ((ds.test_images.float() / 255 - 0.5) / 0.5).flatten(1)
    assert torch.allclose(f.test["pixels"], ref, atol=1e-6)
    big = extract_features(pixels_model(64), load_dataset("shapes", tasks=["shape"], n_train=20, n_test=10, image_size=64),
                           cache=False)
    assert big.train["pixels"].shape == (20, 3 * 32 * 32)


def test_the_pixel_baseline_probes_the_leading_principal_components():
    """models/pixels.principal_components against NumPy's SVD of the standardised train pixels: the projection
    keeps (nearly) all the variance of the exact top-k components, its columns have equal variance (the Hadamard
    rotation), the test split goes through the same map, and a seed gives the same numbers."""
    from gr_explorer.models.pixels import principal_components

    ds = load_dataset("shapes", tasks=["shape"], n_train=600, n_test=50, seed=0)
    x, xt = (((d.float() / 255 - 0.5) / 0.5).flatten(1) for d in (ds.train_images, ds.test_images))
    train, test = principal_components(x, xt, k=64, seed=3)
    assert train.shape == (600, 64) and test.shape == (50, 64)
    X = x.double().numpy()
    mean, std = X.mean(0), X.std(0)
    Z = (X - mean) / np.where(std > 1e-12, std, np.inf)
    top = np.linalg.svd(Z, compute_uv=False)[:64]
    assert (train.double().square().sum() / (top**2).sum()).item() == pytest.approx(1.0, abs=0.01)
    variances = train.double().var(0, unbiased=False)
    assert (variances.max() / variances.min()).item() < 1.05
    again, same_rows = principal_components(x, x[:50], k=64, seed=3)
    assert torch.equal(again, train) and torch.allclose(same_rows, train[:50], atol=1e-5)
    few, _ = principal_components(x[:40], xt, k=64)
    assert few.shape == (40, 32)  # fewer fit rows than components: the largest power of two below them


def test_a_sweep_fits_the_pixel_linear_probe_on_components_and_knn_on_the_pixels(ckpt):
    """The sweep's pixels rows against run_probes called by hand: the linear probe on principal_components of the
    extracted pixels, the k-NN probe on the pixels themselves; both in the sweep's row order."""
    from gr_explorer.models import pixels_model
    from gr_explorer.models.pixels import principal_components

    cfg = SweepConfig(models=[f"file:{ckpt[1]}"], dataset="shapes", tasks=["shape", "color"], probes=["knn", "linear"],
                      n_train=300, n_test=100, seed=2, baselines=["pixels"])
    res = run_sweep(cfg)
    rows = res.table[res.table["model"] == "pixels"]
    assert list(zip(rows["task"], rows["probe"])) == [("shape", "knn"), ("shape", "linear"), ("color", "knn"),
                                                      ("color", "linear")]
    ds = load_dataset("shapes", tasks=["shape", "color"], n_train=300, n_test=100, seed=2)
    f = extract_features(pixels_model(32), ds, cache=False)
    train_pc, test_pc = principal_components(f.train["pixels"], f.test["pixels"], seed=2)
    by_hand = run_probes(["linear"], {"pixels": train_pc}, ds.train_labels, {"pixels": test_pc}, ds.test_labels, seed=2)
    by_hand += run_probes(["knn"], {"pixels": f.train["pixels"]}, ds.train_labels, {"pixels": f.test["pixels"]},
                          ds.test_labels, seed=2)
    ours = {(r.task, r.probe): (r.accuracy, r.hparam) for r in rows.itertuples()}
    assert ours == {(r.task, r.probe): (r.accuracy, r.setting) for r in by_hand}


def test_the_pixel_components_are_computed_once_per_view_for_every_few_shot_draw(ckpt, monkeypatch):
    """The pixels' principal components use no labels, so the sweep and each few-shot draw share them: one
    computation per view, not one per fit."""
    import gr_explorer.run as run_module

    calls = []
    real = run_module.principal_components
    monkeypatch.setattr(run_module, "principal_components", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = SweepConfig(models=[f"file:{ckpt[1]}"], dataset="shapes", tasks=["shape"], probes=["linear"], n_train=100,
                      n_test=50, seed=2, baselines=["pixels"], cuts=["pool"], shots=[2, "all"], tries=2)
    res = run_sweep(cfg, cache=False)
    assert set(res.draws[res.draws["model"] == "pixels"]["shots"]) == {"2", "all"}
    assert len(calls) == 1


def test_random_weights_are_seeded():
    from gr_explorer.models import load_model

    a, b = load_model("timm:test_resnet", weights="random", seed=3), load_model("timm:test_resnet", weights="random", seed=3)
    c = load_model("timm:test_resnet", weights="random", seed=4)
    assert a.weights_hash() == b.weights_hash() != c.weights_hash()
    assert a.name == "timm:test_resnet [random init]"
    cfg = dict(tasks=["shape"], n_train=60, n_test=30, image_size=32, weights="random")
    t3 = sweep("timm:test_resnet", "shapes", seed=3, **cfg)
    t3b = sweep("timm:test_resnet", "shapes", seed=3, cache=False, **cfg)
    t4 = sweep("timm:test_resnet", "shapes", seed=4, **cfg)
    pd.testing.assert_series_equal(t3["accuracy"], t3b["accuracy"])
    assert t3["model"].iloc[0] == "timm:test_resnet [random init]" and t3["weights"].iloc[0] == "random init (seed 3)"
    assert not t3["accuracy"].equals(t4["accuracy"])


def test_random_init_twin_rebuilds_the_architecture(ckpt):
    from gr_explorer.models import load_model, random_init

    model = load_model(f"file:{ckpt[1]}")
    twin, again = random_init(model, 0), random_init(model, 0)
    assert [c.as_dict() for c in twin.cuts] == [c.as_dict() for c in model.cuts]
    assert twin.weights_hash() == again.weights_hash() != model.weights_hash()
    assert twin.preprocessing == model.preprocessing


def test_base_tasks_identical_with_and_without_derived_tasks():
    kw = dict(n_train=200, n_test=100, seed=5, probes=["linear", "knn"])
    plain = sweep("zoo:simclr", "shapes", tasks=["shape", "color"], **kw)
    mixed = sweep("zoo:simclr", "shapes", tasks=["shape", "color", "hue", "hflip"], **kw)
    base = mixed[mixed["task"].isin(["shape", "color"])].reset_index(drop=True)
    cols = ["cut", "task", "probe", "accuracy", "val_accuracy", "hparam"]
    pd.testing.assert_frame_equal(plain[cols], base[cols])
    assert set(mixed["task"]) == {"shape", "color", "hue", "hflip"}


def test_derived_view_transforms_only_its_marked_images():
    ds = load_dataset("shapes", tasks=["shape", "hflip"], n_train=40, n_test=20, seed=0)
    base = torch.cat([x for _, x in read_batches(ds, "train", 16)])
    view = torch.cat([x for _, x in read_batches(ds, "train", 16, view="hflip")])
    marked = ds.train_labels["hflip"].bool()
    assert torch.equal(base, ds.train_images)
    assert torch.equal(view[~marked], base[~marked]) and torch.equal(view[marked], base[marked].flip(-1))
    assert ds.fingerprint("hflip") != ds.fingerprint()


def test_meaningless_derived_task_is_refused():
    with pytest.raises(Exception, match=r"'grayscale' is meaningless for 'digits'.*already greyscale.*Valid derived tasks"):
        load_dataset("digits", tasks=["digit", "grayscale"])


# ---------------------------------------------------------------------------------------------
# the README example, as written


@pytest.mark.slow  # a real sweep of 500 / 250 images with both probes and baselines: ~1 min on a busy 2-core CPU
def test_readme_python_example_runs_verbatim(tmp_path, monkeypatch, capsys):
    text = README.read_text()
    block = re.search(r"## Python\n\n```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - the README's own example
    table = namespace["table"]
    assert {"accuracy_ci_low", "accuracy_ci_high", "chance"} <= set(table.columns)
    assert (tmp_path / "figure.html").exists()
    printed = capsys.readouterr().out
    assert "best cut" in printed and "vs random init" in printed and "..." not in printed


# ---------------------------------------------------------------------------------------------
# figures


def _fig_table():
    t = _table([0.5, 0.9, 0.7, 0.4], [0.5, 0.9, 0.7, 0.4])
    t2 = _table([0.6, 0.6, 0.8, 0.8], [0.6, 0.6, 0.8, 0.8], model="b")
    return pd.concat([t, t2], ignore_index=True)


def test_accuracy_vs_depth_figure():
    t = _fig_table().assign(accuracy_ci_low=lambda d: d["accuracy"] - 0.05, accuracy_ci_high=lambda d: d["accuracy"] + 0.05)
    summary = guillotine_summary(t).assign(gain_ci_low=[0.4, -0.1], gain_ci_high=[0.6, 0.1], clear_gain=[True, False],
                                           gain_verdict=["clear gain", "no clear gain"])
    fig = accuracy_vs_depth(t, summary=summary)
    lines = [tr for tr in fig.data if tr.meta and tr.meta.get("role") == "curve"]
    bands = [tr for tr in fig.data if tr.fill == "toself"]
    stars = [tr for tr in fig.data if tr.mode == "markers" and tr.marker.symbol == "star"]
    assert [tr.name.split(":")[0] for tr in lines] == ["a", "b"]  # one task: one colour per model
    assert lines[0].line.color != lines[1].line.color
    assert np.allclose(lines[0].y, [0.5, 0.9, 0.7, 0.4]) and len(bands) == 2
    assert (stars[0].x[0], stars[0].y[0]) == (1, 0.9)
    assert "+50.0 [+40.0, +60.0]" in lines[0].name and "no clear gain" in lines[1].name
    texts = [a.text for a in fig.layout.annotations]
    assert "+50" in texts and not any("+0" == x for x in texts)  # a gain whose CI contains 0 is never labelled
    assert list(fig.layout.xaxis.ticktext) == ["stem", "pool", "proj1", "proj2"]
    assert "Linear probe" in fig.layout.title.text
    chance = [tr for tr in fig.data if tr.line.dash == "dot" and tr.mode == "lines"]
    assert chance and chance[0].y[0] == 0.2


def test_figure_colours_tasks_styles_probes_and_selects_tasks():
    t = _fig_table()
    t = pd.concat([t[t.model == "a"], t[t.model == "a"].assign(task="color"), t[t.model == "a"].assign(probe="knn")])
    fig = accuracy_vs_depth(t)
    lines = {tr.name.split(":")[0]: tr for tr in fig.data if tr.mode == "lines+markers"}
    assert lines["shape · linear"].line.color == lines["shape · k-NN"].line.color != lines["color · linear"].line.color
    assert lines["shape · linear"].line.dash != lines["shape · k-NN"].line.dash
    assert fig.layout.title.text.startswith("Linear and k-NN probes")
    labels = [b.label for b in fig.layout.updatemenus[0].buttons]
    assert labels == ["all tasks", "shape", "color"]


def test_line_styles_tell_knn_chance_and_the_random_init_twin_apart():
    """k-NN curves are dash-dot: dotted is the chance line's and dashed the random-init twin's (issue 29)."""
    t = _fig_table()
    a = t[t.model == "a"]
    twin = a.assign(model="a [random init]", baseline="random-init", baseline_for="a")
    t = pd.concat([a.assign(baseline_for=""), a.assign(probe="knn", baseline_for=""), twin])
    fig = accuracy_vs_depth(t)
    dash = {tr.meta["role"] + ":" + tr.meta.get("probe", ""): tr.line.dash for tr in fig.data
            if tr.meta and tr.meta.get("role") in ("curve", "chance", "random-init")}
    assert dash == {"curve:linear": "solid", "curve:knn": "dashdot", "chance:": "dot", "random-init:linear": "dash"}


def test_stars_at_the_same_place_are_drawn_apart():
    """Two tasks whose best cuts coincide (same cut, same accuracy) get two visible stars (plots.STAR_NUDGE)."""
    from gr_explorer.plots import STAR_NUDGE

    t = _table([0.5, 0.9, 0.7, 0.4], [0.5, 0.9, 0.7, 0.4])
    t = pd.concat([t, t.assign(task="color"), t.assign(task="size", accuracy=t["accuracy"] - 0.3)])
    stars = [(tr.x[0], tr.y[0]) for tr in accuracy_vs_depth(t).data if tr.meta and tr.meta.get("role") == "best"]
    assert stars == [(1, 0.9), (1 + STAR_NUDGE, 0.9), (1, pytest.approx(0.6))]


@pytest.mark.parametrize("gain, lo, hi, legend, label", [
    (0.03, 0.004, 0.06, "+3.0 [+0.4, +6.0]", "+3"),
    (0.03, 0.0004, 0.06, "+3.00 [+0.04, +6.00]", "+3"),  # a lower bound of 0.04 points never prints as +0.0
    (0.004, 0.001, 0.007, "+0.4 [+0.1, +0.7]", "+0.4"),  # a clear gain under half a point is not labelled "+0"
])
def test_a_clear_gain_never_reads_as_touching_zero(gain, lo, hi, legend, label):
    t = _table([0.5, 0.9, 0.7, 0.4], [0.5, 0.9, 0.7, 0.4])
    summary = guillotine_summary(t).assign(gain=gain, gain_ci_low=lo, gain_ci_high=hi, clear_gain=True,
                                           gain_verdict="clear gain")
    fig = accuracy_vs_depth(t, summary=summary)
    (curve,) = [tr for tr in fig.data if tr.meta and tr.meta.get("role") == "curve"]
    assert curve.name.endswith(legend)
    assert [a.text for a in fig.layout.annotations if a.name == "shape"] == [label]


def test_wrap_module_without_a_name_sweeps_and_records_a_valid_spec():
    """A Python-built model named by default ('custom') is recorded as custom:custom, which the config accepts."""
    from gr_explorer import wrap_module
    from gr_explorer.models import Preprocessing

    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                   torch.nn.Flatten())
    model = wrap_module(backbone, stages=["1"], preprocessing=Preprocessing(32))
    config = SweepConfig(models=["custom:custom"], dataset="shapes", tasks=["color"], n_train=60, n_test=30)
    result = run_sweep(config, models=[model], cache=False)
    assert json.loads(result.config.to_json())["models"] == ["custom:custom"]
    assert set(result.table["model"]) == {"custom"} and list(result.table["cut"]) == ["1", "pool"]
    table = sweep(model, "shapes", tasks=["color"], n_train=60, n_test=30, cache=False)
    pd.testing.assert_frame_equal(table, result.table)


def test_the_readme_summary_line_prints_every_column():
    """The README's `print(...)` of the summary shows each column by name, none hidden behind '...'."""
    from gr_explorer import summary_view

    line = next(x for x in README.read_text().splitlines() if x.startswith("print(") and "guillotine_summary" in x)
    t = _table([0.5, 0.9, 0.7, 0.4], [0.5, 0.9, 0.7, 0.4]).assign(accuracy_ci_low=0.3, accuracy_ci_high=0.95)
    t = pd.concat([t, t.assign(model="a [random init]", baseline="random-init", baseline_for="a")])
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(line.split("#")[0], {"table": t, "guillotine_summary": guillotine_summary, "summary_view": summary_view})
    printed = buf.getvalue()
    header = printed.splitlines()[0]
    view = summary_view(guillotine_summary(t))
    assert "..." not in printed and all(c in header for c in ("best cut", "last cut", "gain", "vs random init"))
    assert len(view.columns) >= 9 and all(str(v) in printed for v in view["gain"])


def test_figure_html_renders_offline(tmp_path):
    html = accuracy_vs_depth(_fig_table()).to_html(include_plotlyjs=True)
    assert not re.search(r"<script[^>]*src=", html)  # plotly.js is embedded, nothing is fetched
    assert len(html) > 1_000_000


def test_heatmap_figure():
    t = _fig_table()
    t2 = t.assign(task="color", accuracy=t["accuracy"] / 2)
    fig = cut_task_heatmap(pd.concat([t, t2]), model="a")
    hm = fig.data[0]
    assert list(hm.x) == ["stem", "pool", "proj1", "proj2"] and list(hm.y) == ["shape", "color"]
    assert np.allclose(hm.z, [[0.5, 0.9, 0.7, 0.4], [0.25, 0.45, 0.35, 0.2]])


@pytest.mark.parametrize("ks", [(100000,), None], ids=["k-beyond-the-split", "default-ks-beyond-the-split"])
def test_search_marks_exactly_one_chosen_value_per_curve_even_when_k_is_capped(ks):
    """The chosen k travels as a number: capped at the train bank (8 fit images when choosing, all 10 when scoring
    test images), it still marks exactly one search row."""
    res = run_sweep(SweepConfig(models=["zoo:simclr"], dataset="digits", n_train=10, n_test=40, probes=["knn", "linear"],
                                knn_ks=ks, cuts=["layer2", "pool"]), cache=False)
    chosen = res.search.groupby(["model", "cut", "task", "probe"])["chosen"].sum()
    assert len(chosen) == len(res.table) and (chosen == 1).all(), chosen
    knn = res.table[res.table["probe"] == "knn"]
    assert set(knn["hparam"]) <= {f"k={k}" for k in range(1, 11)}, "the k used is capped at the bank"

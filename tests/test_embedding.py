"""Embeddings per cut against independent references: NumPy's SVD, scikit-learn's brute-force neighbours."""

import dataclasses
import re
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from gr_explorer import embedding as E
from gr_explorer.cli import main
from gr_explorer.data import load_dataset
from gr_explorer.embedding_plots import embedding_figure, embedding_grid, hover_script, point_thumbnail, thumbnail_uri
from gr_explorer.errors import ConfigError, MissingExtraError
from gr_explorer.features import extract_features
from gr_explorer.models import load_model
from helpers import saved_tiny, tiny_model


def _features(n=300, d=24, seed=0):
    """Gaussian features with a clear spectrum (distinct top-2 variances), so the top components are defined."""
    g = np.random.default_rng(seed)
    scales = np.linspace(6.0, 0.5, d)
    return (g.standard_normal((n, d)) * scales) @ np.linalg.qr(g.standard_normal((d, d)))[0] + 3.0


def _numpy_pca(x):
    xc = x - x.mean(0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    return xc @ vt[:2].T


def _equal_up_to_sign(a, b, tol):
    for j in range(2):
        s = np.sign(a[:, j] @ b[:, j])
        np.testing.assert_allclose(a[:, j], s * b[:, j], atol=tol * np.abs(b[:, j]).max())


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("exact", [True, False], ids=["exact", "lowrank"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_pca_map_equals_numpy_svd_projection_up_to_sign(monkeypatch, exact, dtype, device):
    x = torch.tensor(_features(), dtype=dtype)
    if not exact:
        monkeypatch.setattr(E, "EXACT_PCA_MAX_DIM", 4)  # 24 dims > 4: the torch.pca_lowrank path
    got = E.pca_2d(x, device)
    want = _numpy_pca(x.double().numpy())
    _equal_up_to_sign(got, want, 1e-5 if exact else 1e-4)  # float32 products: 1e-5 of the range
    # the sign rule: each component's largest-magnitude score is positive
    assert all(got[np.argmax(np.abs(got[:, j])), j] > 0 for j in range(2))


def test_alignment_recovers_a_rotated_reflected_map_and_keeps_each_map_rigid():
    m = _numpy_pca(_features())
    theta = 0.7
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) @ np.diag([1.0, -1.0])
    a, b = E.align_maps([m, 3.0 * m @ rot + 5.0])
    np.testing.assert_allclose(a, b, atol=1e-9)  # scale, shift, rotation and reflection undone
    d_before = np.linalg.norm(E.normalise_map(m)[:, None] - E.normalise_map(m)[None], axis=-1)
    np.testing.assert_allclose(np.linalg.norm(b[:, None] - b[None], axis=-1), d_before, atol=1e-9)


def test_alignment_reduces_mean_displacement_between_successive_cuts():
    """Successive 'cuts' of one latent (each a noisy random linear map of it): aligned maps move less."""
    g = np.random.default_rng(1)
    z = g.standard_normal((400, 6)) * [5, 3, 1, 1, 1, 1]
    maps = [E.pca_2d(torch.tensor(z @ g.standard_normal((6, 12 + 4 * i)) + 0.3 * g.standard_normal((400, 12 + 4 * i)),
                                  dtype=torch.float32)) for i in range(5)]
    unaligned = [E.normalise_map(m) for m in maps]
    aligned = E.align_maps(maps)

    def moved(ms):
        return np.mean([np.linalg.norm(b - a, axis=1).mean() for a, b in zip(ms, ms[1:])])

    assert moved(aligned) < 0.8 * moved(unaligned)
    for a, u in zip(aligned, unaligned):  # each aligned map is its normalised map, rotated or reflected
        q = np.linalg.lstsq(u, a, rcond=None)[0]
        np.testing.assert_allclose(q.T @ q, np.eye(2), atol=1e-8)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("k", [1, 5, 10])
def test_neighbourhood_score_equals_brute_force_knn_agreement(k, device):
    g = np.random.default_rng(2)
    x = g.standard_normal((250, 16)).astype(np.float32)
    y = g.integers(0, 4, 250)
    x[y == 1] += 1.5  # some structure so agreement is not at chance
    queries = np.sort(g.choice(250, 120, replace=False))
    nb, sims = E.cosine_neighbours(torch.tensor(x), queries, k, device)
    ref = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(x)
    dist, idx = ref.kneighbors(x[queries])
    assert (idx[:, 0] == queries).all()  # sklearn returns the query itself first
    np.testing.assert_array_equal(nb, idx[:, 1:])
    np.testing.assert_allclose(sims, 1 - dist[:, 1:], atol=1e-5)
    want = np.array([np.mean(y[idx[i, 1:]] == y[q]) for i, q in enumerate(queries)])
    np.testing.assert_allclose(E.knn_agreement(nb, queries, y), want)
    chance = np.mean([(np.sum(y == y[q]) - 1) / (len(y) - 1) for q in queries])
    assert E.chance_agreement(queries, y) == pytest.approx(chance)


@pytest.fixture(scope="module")
def shapes_embedding():
    """zoo:simclr on 150 shapes test images (two tasks): class structure, so neighbours are mostly well separated."""
    ds = load_dataset("shapes", tasks=["shape", "color"], n_train=30, n_test=150, seed=0)
    feats = extract_features(load_model("zoo:simclr"), ds, cache=False)
    return ds, feats, E.embed_cuts(feats, ds, task="color", k=5, bootstrap=200)


def test_embed_cuts_maps_scores_and_neighbours(shapes_embedding):
    ds, feats, emb = shapes_embedding
    names = [c.name for c in feats.cuts]
    assert list(emb.maps) == names and all(m.shape == (150, 2) for m in emb.maps.values())
    assert emb.n_drawn == emb.n_total == 150 and np.array_equal(emb.index, np.arange(150))
    s = emb.scores
    assert list(s["cut"].unique()) == names and set(s["task"]) == {"shape", "color"} and (s["k"] == 5).all()
    assert (s["ci_low"] <= s["agreement"]).all() and (s["agreement"] <= s["ci_high"]).all()
    for cut in names:  # the score equals scikit-learn's brute-force agreement (float64), up to float32 near-ties
        x = feats.test[cut].numpy().astype(np.float64)
        dist, idx = NearestNeighbors(n_neighbors=7, metric="cosine", algorithm="brute").fit(x).kneighbors(x)
        tied = np.abs(dist[:, 6] - dist[:, 5]) < 3e-6  # 5th and 6th neighbour indistinguishable in float32
        assert tied.mean() < 0.1
        for task in ("shape", "color"):
            y = ds.test_labels[task].numpy()
            ref = np.mean(y[idx[:, 1:6]] == y[:, None])
            assert abs(emb.score(cut, task)["agreement"] - ref) <= tied.sum() / 150 / 5 + 1e-12
    chance = emb.score(names[0], "color")["chance"]
    y = ds.test_labels["color"].numpy()
    assert chance == pytest.approx(np.mean([(np.sum(y == v) - 1) / 149 for v in y]))
    nb = emb.neighbours("layer4", 7, k=4)
    x = feats.test["layer4"].numpy()
    ref = NearestNeighbors(n_neighbors=5, metric="cosine", algorithm="brute").fit(x).kneighbors(x[[7]])[1][0]
    assert list(nb["position"]) == list(ref) and nb["position"].iloc[0] == 7 and nb["similarity"].iloc[0] == 1.0
    assert list(nb["color"]) == [ds.classes["color"][c] for c in y[ref]]
    table = emb.table()
    assert list(table.columns) == ["cut", "depth", "part", "index", "x", "y", "shape", "color"]
    assert len(table) == 150 * len(names)
    np.testing.assert_allclose(table.loc[table["cut"] == "layer3", ["x", "y"]].to_numpy(), emb.maps["layer3"])


def test_sample_is_seeded_stratified_and_stated():
    ds = load_dataset("shapes", tasks=["shape", "color"], n_train=30, n_test=400, seed=0)
    feats = extract_features(tiny_model(), ds, ["stem", "proj3"], cache=False)
    a = E.embed_cuts(feats, ds, task="color", max_points=120, seed=3, bootstrap=100)
    b = E.embed_cuts(feats, ds, task="color", max_points=120, seed=3, bootstrap=100)
    c = E.embed_cuts(feats, ds, task="color", max_points=120, seed=4, bootstrap=100)
    assert a.n_drawn == 120 and a.n_total == 400 and np.array_equal(a.index, b.index) and not np.array_equal(a.index, c.index)
    np.testing.assert_array_equal(a.maps["proj3"], b.maps["proj3"])
    full = np.bincount(ds.test_labels["color"].numpy()) / 400
    drawn = np.bincount(a.labels["color"], minlength=len(full)) / 120
    assert np.abs(full - drawn).max() <= 1 / 120 + 1e-9  # class shares kept to within one image
    fig = embedding_figure(a, "color")
    assert "120 of 400 test images drawn (seed 3, stratified by color)" in fig.layout.annotations[0].text
    assert "120 of 400" in embedding_grid(a).layout.annotations[-1].text


def test_embedding_figure_frames_slider_hover_and_thumbnails(shapes_embedding):
    ds, feats, emb = shapes_embedding
    names = [c.name for c in feats.cuts]
    thumbs = [thumbnail_uri(x) for x in ds.test_images[emb.index]]
    fig = embedding_figure(emb, model="zoo:simclr", thumbnails=thumbs)
    assert all(t.type == "scattergl" for t in fig.data)
    present = sorted(set(emb.labels["color"]))
    assert [t.name for t in fig.data] == [ds.classes["color"][c] for c in present]
    assert [f.name for f in fig.frames] == names
    assert [s.label for s in fig.layout.sliders[0].steps] == names
    for f in fig.frames:  # every frame moves the same images (each class's rows) to that cut's map
        for trace, cls in zip(f.data, present):
            rows = np.flatnonzero(emb.labels["color"] == cls)
            np.testing.assert_allclose(trace.x, emb.maps[f.name][rows, 0], rtol=1e-6, atol=1e-6)  # sent as float32
            np.testing.assert_allclose(trace.y, emb.maps[f.name][rows, 1], rtol=1e-6, atol=1e-6)
        score = emb.score(f.name, "color")
        assert f"{score['agreement']:.3f}" in f.layout.title.text and f"chance {score['chance']:.3f}" in f.layout.title.text
    custom = fig.data[1].customdata[0]
    pos = int(custom[0])
    assert custom[1] == emb.index[pos] and list(custom[2:4]) == [emb.class_names("shape")[pos], emb.class_names("color")[pos]]
    assert custom[-1] == thumbs[pos] and custom[-1].startswith("data:image/png;base64,")
    assert "color: %{customdata[3]}" in fig.data[0].hovertemplate
    assert "{plot_id}" in hover_script() and "plotly_hover" in hover_script()
    html = fig.to_html(post_script=hover_script(), include_plotlyjs=False)
    assert "{plot_id}" not in html and "gr-thumbnail" in html
    assert point_thumbnail(ds, "test", int(emb.index[pos]), size=64).startswith("data:image/png;base64,")
    with pytest.raises(ConfigError, match="Valid: 0 to 149"):
        point_thumbnail(ds, "test", 150)
    grid = embedding_grid(emb, "shape", model="zoo:simclr")
    assert sum(t.showlegend for t in grid.data) == len(ds.classes["shape"]) and len(grid.data) == 5 * len(names)


def test_class_names_that_are_colours_are_drawn_in_their_colour():
    from gr_explorer.embedding_plots import NAMED_COLOURS, class_colours

    assert class_colours(["red", "Blue"]) == [NAMED_COLOURS["red"], NAMED_COLOURS["blue"]]
    assert len(set(class_colours(["cat", "dog", "red"]))) == 3 and class_colours(["cat"])[0] != NAMED_COLOURS["red"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="umap"), r"method 'umap' is unknown\. Valid: pca, tsne"),
    (dict(task="colour"), r"Task 'colour' cannot colour.*Valid: shape, color"),
    (dict(max_points=1), r"max_points=1 is invalid\. Valid: an integer >= 2"),
    (dict(max_points="many"), r"max_points='many' is invalid"),
    (dict(k=0), r"k=0 is invalid"),
    (dict(split="val"), r"split 'val' is invalid\. Valid: train, test"),
])
def test_bad_settings_are_clear_errors(shapes_embedding, kwargs, message):
    ds, feats, _ = shapes_embedding
    with pytest.raises(ConfigError, match=message):
        E.embed_cuts(feats, ds, **kwargs)


def test_tsne_without_its_extra_names_the_extra(shapes_embedding, monkeypatch):
    ds, feats, _ = shapes_embedding
    monkeypatch.setitem(sys.modules, "openTSNE", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=re.escape("pip install 'gr-explorer[tsne]'")):
        E.embed_cuts(feats, ds, method="tsne")


def test_tsne_map_is_seeded_and_aligned(shapes_embedding):
    pytest.importorskip("openTSNE", reason="the optional extra 'tsne' (in the test extra) is not installed")
    ds, feats, _ = shapes_embedding
    feats = dataclasses.replace(feats, cuts=feats.cuts[3:5])  # two cuts keep it quick
    a = E.embed_cuts(feats, ds, method="tsne", seed=1, bootstrap=100)
    b = E.embed_cuts(feats, ds, method="tsne", seed=1, bootstrap=100)
    assert list(a.maps) == ["layer3", "layer4"]
    for cut in a.maps:
        np.testing.assert_array_equal(a.maps[cut], b.maps[cut])
    assert "t-SNE" in embedding_figure(a).layout.title.text


def test_embed_cli_writes_csv_and_figure_and_reuses_the_cache(tmp_path, capsys):
    _, path = saved_tiny(tmp_path)
    out = tmp_path / "emb"
    args = ["embed", "--model", f"file:{path}", "--dataset", "shapes", "--task", "color", "--n-train", "40",
            "--n-test", "90", "--out", str(out), "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "agreement" in printed and "90 of 90 test images" in printed
    table = pd.read_csv(out / "embedding.csv")
    assert list(table.columns[:6]) == ["cut", "depth", "part", "index", "x", "y"]
    assert {"shape", "color"} <= set(table.columns) and len(table) == 8 * 90
    scores = pd.read_csv(out / "scores.csv")
    assert set(scores["cut"]) == set(table["cut"]) and {"agreement", "ci_low", "ci_high", "chance"} <= set(scores.columns)
    html = (out / "embedding.html").read_text()
    assert "plotly_hover" in html and "data:image/png;base64," in html and (out / "embedding_cuts.html").exists()
    assert "Plotly.addFrames(" in html and "Plotly.animate(" not in html  # frames wait for the slider, no auto-play
    # a second run writes the same table
    assert main(args) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "embedding.csv"), table)


def test_an_embedding_after_a_sweep_reads_the_sweeps_cached_features(tmp_path):
    from gr_explorer.cache import FeatureCache
    from gr_explorer.config import SweepConfig
    from gr_explorer.embed import run_embedding
    from gr_explorer.run import run_sweep

    _, path = saved_tiny(tmp_path)
    config = SweepConfig(models=[f"file:{path}"], dataset="shapes", tasks=None, n_train=40, n_test=60, bootstrap=100)
    cache = FeatureCache(tmp_path / "cache")
    run_sweep(config, cache=cache)
    events = []
    run = run_embedding(config, task="shape", cache=cache, progress=events.append)
    extract = [e for e in events if e.stage == "extract"]
    assert extract[-1].detail == "all cuts from the cache" and extract[-1].total == 1
    assert run.embedding.n_total == 60 and [e.stage for e in events][-1] == "embed"


@pytest.mark.parametrize("extra, message", [
    (["--task", "hflip"], r"Task 'hflip' cannot colour"),
    (["--method", "umap"], r"invalid choice: 'umap'"),
    (["--max-points", "lots"], r"--max-points 'lots' is invalid"),
    (["--figures", "pdf"], r"figures=\['pdf'\] is invalid\. Valid: .*html, png, svg"),
])
def test_embed_cli_errors_are_messages_before_any_extraction(tmp_path, capsys, extra, message):
    _, path = saved_tiny(tmp_path)
    args = ["embed", "--model", f"file:{path}", "--n-train", "40", "--n-test", "40", "--out", str(tmp_path / "o"),
            "--quiet", *extra]
    if "umap" in extra:  # argparse's own choice check exits 2
        with pytest.raises(SystemExit) as e:
            main(args)
        assert e.value.code == 2
    else:
        assert main(args) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "Traceback" not in err
    assert not any(p.is_file() for p in (tmp_path / "feature-cache").rglob("*"))  # nothing was extracted

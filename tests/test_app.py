"""The Streamlit app (streamlit_app.py), driven headless with streamlit.testing.v1.AppTest.

The zoo is a temp folder of tiny checkpoints (tests/helpers.py) and sample sizes
are set small through the widgets, so each run takes seconds; the numbers the
app shows are checked against the library's run_sweep for the run config the
app offers for download.
"""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from gr_explorer.summary import guillotine_summary
from gr_explorer.config import SweepConfig
from gr_explorer.run import run_sweep
from helpers import saved_tiny

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
PAGES = "gr_explorer/app/pages"
TIMEOUT = 600  # 2 CPU cores shared with other work
N_TRAIN, N_TEST = 120, 60
TASKS = ["shape", "color"]


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    """Two tiny checkpoints as the zoo (simclr = the app's default), uploads and trained models under tmp_path."""
    folder = tmp_path / "zoo"
    saved_tiny(folder, "simclr", projector="32-32-16")
    saved_tiny(folder, "deep", projector="32-32-32-16")
    for name, desc in (("simclr", "tiny SimCLR stand-in"), ("deep", "tiny, deeper projector")):
        card_path = folder / f"{name}.json"
        card = json.loads(card_path.read_text())
        card["description"] = desc
        if name == "simclr":  # the training recipe a shipped card records (Train starts from it)
            card["config"] = {"objective": "simclr", "temperature": 1.0, "dataset": "shapes", "n_train": 64, "epochs": 1,
                              "width": 8, "depths": [1, 1], "projector": "32-16", "crop_scale": [0.5, 1.0],
                              "batch_size": 16, "out": "pretrained/simclr.safetensors", "eval": True}
        card_path.write_text(json.dumps(card))
    monkeypatch.setenv("GR_EXPLORER_ZOO", str(folder))
    monkeypatch.setenv("GR_EXPLORER_UPLOADS", str(tmp_path / "uploads"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # trained checkpoints land under tmp_path
    return folder


def start(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    if page is not None:
        at.switch_page(f"{PAGES}/{page}.py").run()
    assert not at.exception, at.exception
    return at


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def small(at: AppTest, prefix: str, tasks=TASKS) -> None:
    at.number_input(key=f"{prefix}_n_train").set_value(N_TRAIN)
    at.number_input(key=f"{prefix}_n_test").set_value(N_TEST)
    at.multiselect(key=f"{prefix}_tasks::shapes").set_value(list(tasks))
    at.run()


def decode(v) -> np.ndarray:
    """A plotly JSON array: a plain list, or the typed-array form {'dtype', 'bdata'} of plotly >= 6."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).reshape(v.get("shape", -1))
    return np.asarray(v)


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def curve_traces(spec: dict, by: str = "task") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """task (or model) -> (x, y) of the accuracy curves (bands, stars and references carry other roles)."""
    return {t["meta"][by]: (decode(t["x"]), decode(t["y"])) for t in spec["data"]
            if (t.get("meta") or {}).get("role") == "curve"}


def reference(config_json: str) -> pd.DataFrame:
    """The library's own sweep for the config the app offers for download, computed afresh (no cache)."""
    return run_sweep(SweepConfig.from_dict(json.loads(config_json)), cache=False).table


# ----------------------------------------------------------------------------------------------
# Explore


def test_explore_default_run_equals_library_sweep(zoo):
    at = start()
    # the documented default: zoo:simclr, shapes, all cuts, linear probe
    assert at.selectbox(key="ex_model").value == "zoo:simclr"
    assert at.selectbox(key="ex_dataset").value == "shapes"
    assert at.multiselect(key="ex_probes").value == ["linear"]
    cuts = at.multiselect(key="ex_cuts::zoo:simclr")
    assert len(cuts.value) == len(cuts.options) >= 5
    small(at, "ex")
    at.button(key="ex_run").click().run()
    no_errors(at)

    record = at.session_state["explore:run"]
    config = json.loads(record["config_json"])
    assert config["models"] == ["zoo:simclr"] and config["dataset"] == "shapes" and config["cuts"] is None
    assert (config["n_train"], config["n_test"], config["tasks"], config["probes"]) == (N_TRAIN, N_TEST, TASKS, ["linear"])
    ref = reference(record["config_json"])
    key = ["model", "cut", "task", "probe"]
    shown = record["table"]
    pd.testing.assert_frame_equal(shown.sort_values(key).reset_index(drop=True), ref.sort_values(key).reset_index(drop=True))
    # the results table on the page is that table
    pd.testing.assert_frame_equal(at.dataframe[0].value.reset_index(drop=True), shown.reset_index(drop=True),
                                  check_dtype=False)
    # the chart: one line per task, its y-values the library's accuracies in depth order
    main = charts(at)[0]
    lines = curve_traces(main)
    assert set(lines) == set(TASKS)
    for task, (x, y) in lines.items():
        r = ref[ref["task"] == task].sort_values("depth")
        np.testing.assert_array_equal(x, r["depth"].to_numpy())
        np.testing.assert_allclose(y, r["accuracy"].to_numpy(), rtol=0, atol=1e-12)
    # best-cut tiles agree with the library's summary
    s = guillotine_summary(ref)
    metrics = {m.label: m.value for m in at.metric}
    for row in s.itertuples():
        assert metrics[f"{row.task}: best cut"] == row.best_cut
    # the heatmap is the second chart
    assert charts(at)[1]["data"][0]["type"] == "heatmap"
    assert len(at.get("download_button")) == 3


def test_explore_probe_change_reuses_cached_features_and_results_survive_reruns(zoo):
    at = start()
    small(at, "ex")
    at.button(key="ex_run").click().run()
    no_errors(at)
    first = at.session_state["explore:run"]
    assert all(c["batches"] > 0 for c in first["cache"].values())
    at.multiselect(key="ex_probes").set_value(["knn"]).run()
    # results of the first run are still shown, with a note that the settings changed
    assert at.session_state["explore:run"] is first
    assert any("settings have changed" in i.value for i in at.info)
    at.button(key="ex_run").click().run()
    no_errors(at)
    second = at.session_state["explore:run"]
    assert set(second["table"]["probe"]) == {"knn"}
    assert all(c["batches"] == 0 and c["cached"] == c["cuts"] for c in second["cache"].values())
    assert any("from the cache" in c.value for c in at.caption)


def test_bad_timm_name_shows_the_library_error(zoo):
    at = start()
    at.radio(key="ex_source").set_value("timm").run()
    at.text_input(key="ex_timm").input("resnet_that_does_not_exist_42").run()
    assert not at.exception
    assert any("Unknown timm model" in e.value and "resnet_that_does_not_exist_42" in e.value for e in at.error)
    assert at.button(key="ex_run").disabled
    # the app keeps working: back to the zoo model
    at.radio(key="ex_source").set_value("Zoo & this session").run()
    no_errors(at)
    assert not at.button(key="ex_run").disabled


def test_one_class_image_folder_shows_the_library_error(zoo, tmp_path):
    folder = tmp_path / "images"
    (folder / "cat").mkdir(parents=True)
    for i in range(6):
        Image.fromarray(np.full((16, 16, 3), 40 * i, dtype=np.uint8)).save(folder / "cat" / f"{i}.png")
    at = start()
    at.selectbox(key="ex_dataset").set_value("imagefolder").run()
    at.text_input(key="ex_folder").input(str(folder)).run()
    no_errors(at)
    at.button(key="ex_run").click().run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert errors and "one class" in errors[0] and "cat" in errors[0], errors
    assert "Traceback" not in errors[0]
    assert "explore:run" not in at.session_state
    assert not at.button(key="ex_run").disabled


def test_unexpected_failure_is_a_short_error_not_a_traceback(zoo, monkeypatch):
    import gr_explorer.run

    def boom(*a, **k):
        raise RuntimeError("simulated failure\nwith a second line")

    monkeypatch.setattr(gr_explorer.run, "run_sweep", boom)
    at = start()
    small(at, "ex")
    at.button(key="ex_run").click().run()
    assert not at.exception
    (err,) = [e.value for e in at.error]
    assert "RuntimeError" in err and "simulated failure" in err and "second line" not in err


def test_a_failure_while_drawing_results_keeps_the_page_alive(zoo, monkeypatch):
    import gr_explorer.app.results as results

    at = start()
    small(at, "ex", tasks=["color"])
    monkeypatch.setattr(results, "accuracy_vs_depth", lambda *a, **k: 1 / 0)
    at.button(key="ex_run").click().run()
    assert not at.exception
    assert any("ZeroDivisionError" in e.value for e in at.error)
    assert at.button(key="ex_run") is not None and "explore:run" in at.session_state  # results kept for the next rerun


def test_uploaded_checkpoint_is_probed_and_bad_uploads_are_errors(zoo, tmp_path):
    _, path = saved_tiny(tmp_path / "mine", "mymodel", projector="16-8")
    weights, card = path.read_bytes(), path.with_suffix(".json").read_bytes()
    at = start()
    at.radio(key="ex_source").set_value("Upload").run()
    up = at.file_uploader(key="ex_upload")
    up.set_value([("mymodel.safetensors", weights, "application/octet-stream")]).run()  # card missing
    assert not at.exception
    assert any("no .json card" in e.value for e in at.error)
    at.file_uploader(key="ex_upload").set_value([("mymodel.safetensors", b"not a safetensors file", "application/octet-stream"),
                                                 ("mymodel.json", card, "application/json")]).run()
    assert not at.exception
    assert any("corrupt" in e.value for e in at.error)
    at.file_uploader(key="ex_upload").set_value([("mymodel.safetensors", weights, "application/octet-stream"),
                                                 ("mymodel.json", card, "application/json")]).run()
    no_errors(at)
    (cuts,) = [m for m in at.multiselect if m.key.startswith("ex_cuts::file:")]
    assert cuts.value[-2:] == ["proj1", "proj2"]
    small(at, "ex", tasks=["color"])
    at.button(key="ex_run").click().run()
    no_errors(at)
    assert json.loads(at.session_state["explore:run"]["config_json"])["models"][0].startswith("file:")


# ----------------------------------------------------------------------------------------------
# Compare, Train, About


def test_compare_two_models(zoo):
    at = start("compare")
    assert at.multiselect(key="cmp_models").value == ["zoo:simclr", "zoo:deep"]
    small(at, "cmp")
    at.button(key="cmp_run").click().run()
    no_errors(at)
    record = at.session_state["compare:run"]
    ref = reference(record["config_json"])
    assert set(ref["model"]) == {"zoo:simclr", "zoo:deep"}
    # one chart per task, each with one line per model whose y-values are the library's
    specs = charts(at)
    assert [s["layout"]["title"]["text"] for s in specs] == [f"Task: {t}" for t in TASKS]
    for task, spec in zip(TASKS, specs):
        lines = curve_traces(spec, by="model")
        assert set(lines) == {"zoo:simclr", "zoo:deep"}
        for model, (x, y) in lines.items():
            r = ref[(ref["task"] == task) & (ref["model"] == model)].sort_values("depth")
            np.testing.assert_allclose(y, r["accuracy"].to_numpy(), rtol=0, atol=1e-12)
    # best cut and guillotine gain per model and task: the grid, and the full table
    s = guillotine_summary(ref)
    grid = at.dataframe[0].value
    for row in s.itertuples():
        gain = (f"{100 * row.gain:+.1f} pts [{100 * row.gain_ci_low:+.1f}, {100 * row.gain_ci_high:+.1f}]"
                if row.gain_ci_low > 0 else "no clear gain")
        assert grid.loc[row.model, row.task] == f"{row.best_cut} ({gain})"
    shown = at.dataframe[1].value
    assert len(shown) == 4
    merged = shown.merge(s, on=["model", "task", "probe"])
    assert (merged["best_cut_x"] == merged["best_cut_y"]).all()
    np.testing.assert_allclose(merged["gain_pts"], (100 * merged["gain"]).round(1))


def test_train_tiny_model_appears_in_explore_and_compare(zoo):
    at = start("train")
    # the what-if starts from the recipe recorded in zoo:simclr's card
    assert at.selectbox(key="tr_recipe").value == "zoo:simclr"
    assert (at.text_input(key="tr_projector").value, at.select_slider(key="tr_width").value) == ("32-16", 8)
    assert (at.number_input(key="tr_n_train").value, at.slider(key="tr_crop").value) == (64, 0.5)
    at.text_input(key="tr_name").input("tiny-run")
    at.number_input(key="tr_max_steps").set_value(3)
    at.run()
    no_errors(at)
    command = at.code[0].value
    assert "--temperature 1.0" in command and "--max-steps 3" in command and "--eval" not in command
    at.button(key="tr_run").click().run()
    no_errors(at)
    last = at.session_state["train:last"]
    assert last["steps"] == 3 and len(last["losses"]) == 3 and all(np.isfinite(last["losses"]))
    path = Path(last["path"])
    assert path.exists() and path.with_suffix(".json").exists() and path.stem == "tiny-run"
    assert "gr-explorer train" in last["command"]
    assert any("loss" in json.dumps(s.get("layout", {}).get("title", "")).lower() for s in charts(at))
    # "Probe it in Explore" opens Explore with the trained model selected
    at.button(key="tr_to_explore").click().run()
    no_errors(at)
    model = at.selectbox(key="ex_model")
    assert model.value == f"file:{path}"
    assert any(o.startswith("trained: tiny-run") for o in model.options)
    assert model.options[0].startswith("zoo:")  # the zoo is still listed
    at.switch_page(f"{PAGES}/compare.py").run()
    assert any(o == "trained: tiny-run" for o in at.multiselect(key="cmp_models").options)


def test_train_bad_setting_shows_the_library_error(zoo):
    at = start("train")
    at.text_input(key="tr_projector").input("512-abc").run()
    assert not at.exception
    assert any("Bad projector spec" in e.value for e in at.error)
    assert at.button(key="tr_run").disabled


def test_settings_survive_a_visit_to_another_page(zoo):
    at = start()
    at.number_input(key="ex_n_train").set_value(321)
    at.selectbox(key="ex_dataset").set_value("digits").run()
    at.switch_page(f"{PAGES}/about.py").run()
    at.switch_page(f"{PAGES}/explore.py").run()
    no_errors(at)
    assert at.number_input(key="ex_n_train").value == 321
    assert at.selectbox(key="ex_dataset").value == "digits"


def test_about_renders(zoo):
    at = start("about")
    no_errors(at)
    text = " ".join(m.value for m in at.markdown)
    assert "Guillotine" in text and "2206.13378" in text and "guillotine gain" in text


# ----------------------------------------------------------------------------------------------
# the pieces behind the pages


def test_job_cancel_stops_at_the_next_progress_report():
    import threading

    from gr_explorer.app.jobs import Job, JobCancelled
    from gr_explorer.progress import ProgressEvent

    started = threading.Event()

    def work(job):
        for i in range(10_000):
            job.progress(ProgressEvent("extract", i, 10_000, "m", f"batch {i}"))
            started.set()
            threading.Event().wait(0.005)
        return "finished"

    job = Job("test", work).start()
    assert started.wait(10)
    job.cancel()
    assert job.wait(10)
    assert isinstance(job.error, JobCancelled) and job.result is None
    snap = job.snapshot()
    assert snap.stages[-1].name == "extract" and 0 < snap.stages[-1].done < 9_999


def test_upload_helpers_round_trip(tmp_path):
    import io
    import zipfile

    from gr_explorer.errors import CheckpointError
    from gr_explorer.models import load_model
    from gr_explorer.uploads import checkpoint_archive, store_checkpoint_upload

    model, path = saved_tiny(tmp_path / "src", "abc")
    files = [("abc.safetensors", path.read_bytes()), ("card.json", path.with_suffix(".json").read_bytes())]
    stored = store_checkpoint_upload(files, root=tmp_path / "up")
    assert stored.name == "abc.safetensors" and stored.with_suffix(".json").exists()
    assert store_checkpoint_upload(files, root=tmp_path / "up") == stored  # same content, same place
    loaded = load_model(f"file:{stored}")
    assert loaded.weights_hash() == model.weights_hash()
    with zipfile.ZipFile(io.BytesIO(checkpoint_archive(stored))) as z:
        assert sorted(z.namelist()) == ["abc.json", "abc.safetensors"]
    for bad, msg in (([], "No checkpoint"), ([files[0]], "no .json card"), ([files[1]], "no weights file"),
                     ([*files, ("x.txt", b"hi")], "Unexpected file")):
        with pytest.raises(CheckpointError, match=msg):
            store_checkpoint_upload(bad, root=tmp_path / "up")
    torch.manual_seed(0)


def test_default_model_choices():
    from gr_explorer.app.compare import default_models
    from gr_explorer.app.widgets import default_model

    assert default_model(["zoo:byol", "zoo:simclr", "file:/x.safetensors"]) == "zoo:simclr"
    assert default_model(["file:/x.safetensors", "zoo:byol", "zoo:vicreg"]) == "zoo:byol"  # simclr missing: first zoo entry
    assert default_model([]) is None
    zoo = ["zoo:barlow", "zoo:simclr", "zoo:simclr_proj1", "zoo:simclr_proj3_wide", "zoo:simclr_proj_none", "zoo:vicreg"]
    assert default_models(zoo) == ["zoo:simclr_proj_none", "zoo:simclr_proj1", "zoo:simclr", "zoo:simclr_proj3_wide"]
    assert default_models(["zoo:barlow", "zoo:simclr", "zoo:vicreg", "zoo:byol"]) == ["zoo:simclr", "zoo:barlow", "zoo:vicreg"]

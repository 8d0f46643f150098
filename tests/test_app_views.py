"""The app's views of a finished run beyond the curve: the embedding per cut, and links that restore a run.

Driven headless with streamlit.testing.v1.AppTest on the tiny zoo of tests/test_app.py.
"""

from __future__ import annotations

from urllib.parse import parse_qs

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from gr_explorer.app.share import link_of
from gr_explorer.config import SweepConfig
from gr_explorer.settings import parse_flag
from test_app import APP, N_TEST, N_TRAIN, TIMEOUT, frame, no_errors, small, start, zoo  # noqa: F401 (zoo: fixture)


def _run(at: AppTest) -> None:
    at.button(key="ex_run").click().run()
    no_errors(at)


@pytest.mark.usefixtures("zoo")
def test_the_embedding_tab_maps_every_cut_of_the_run_with_its_neighbourhood_score():
    at = start()
    small(at, "ex", tasks=["shape", "color"])
    _run(at)
    scores = frame(at, "agreement")
    record = at.session_state["explore:run"]
    cuts = [c.name for c in record.features["zoo:simclr"]["base"].cuts]
    assert list(scores["cut"]) == cuts  # one score per cut of the run, in forward order
    assert all(0 <= float(s.split(" ")[0]) <= 1 for s in scores["agreement"])
    frames = [e for e in at.get("iframe")] or [e for e in at.main if getattr(e, "type", "") == "iframe"]
    html = [e.proto.srcdoc for e in at.get("iframe") if getattr(e.proto, "srcdoc", "")]
    assert frames and html, "the embedding figure is drawn in an iframe so its hover and click scripts run"
    assert "plotly_hover" in html[0] and "plotly_click" in html[0] and "data:image/png;base64" in html[0]


@pytest.mark.usefixtures("zoo")
def test_the_address_bar_carries_the_settings_and_a_link_restores_them_and_a_cached_result():
    at = start()
    small(at, "ex", tasks=["shape"])
    link = dict(at.query_params)
    assert link["run"] == ["1"] or link["run"] == "1"
    config = SweepConfig.from_dict({k: parse_flag(SweepConfig.spec(k).kind, (v[0] if isinstance(v, list) else v), k)
                                    for k, v in link.items() if k != "run"})
    assert config.tasks == ("shape",) and config.n_train == N_TRAIN and config.n_test == N_TEST
    assert link_of(config) == {k: (v[0] if isinstance(v, list) else v) for k, v in link.items() if k != "run"}

    fresh = AppTest.from_file(APP, default_timeout=TIMEOUT)  # a new session opening the link, before any run
    fresh.query_params.update(link)
    fresh.run()
    assert fresh.number_input(key="ex_n_train").value == N_TRAIN
    assert fresh.multiselect(key="ex_tasks::shapes").value == ["shape"]
    assert "explore:run" not in fresh.session_state  # nothing cached yet: the settings only
    assert any("not in this server's cache" in i.value for i in fresh.info)

    _run(at)  # now the features are cached
    again = AppTest.from_file(APP, default_timeout=TIMEOUT)
    again.query_params.update(link)
    again.run()
    no_errors(again)
    restored = again.session_state["explore:run"]
    ours = at.session_state["explore:run"]
    assert restored.config == ours.config
    assert np.array_equal(restored.table["accuracy"].to_numpy(), ours.table["accuracy"].to_numpy())
    assert all(s["batches"] == 0 for s in restored.cache_stats().values())  # no forward pass: all from the cache


@pytest.mark.usefixtures("zoo")
def test_a_bad_link_is_said_and_ignored():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update({"models": "zoo:simclr", "n_train": "-5", "run": "1"})
    at.run()
    assert not at.exception
    assert any("could not be used" in w.value and "n_train=-5" in w.value for w in at.warning)
    assert "explore:run" not in at.session_state


def test_link_of_round_trips_through_the_declared_flag_words():
    config = SweepConfig(models=["zoo:simclr"], tasks=["shape", "color"], probes=["linear", "knn"], n_train=None,
                         linear_grid=[0.1, 1.0])
    link = link_of(config)
    assert link["n_train"] == "all"
    back = {k: parse_flag(SweepConfig.spec(k).kind, v, k) for k, v in link.items()}
    assert SweepConfig.from_dict(back) == config
    assert parse_qs("&".join(f"{k}={v}" for k, v in link.items()))["tasks"] == ["shape,color"]


@pytest.mark.usefixtures("zoo")
def test_a_transformer_offers_cuts_inside_blocks_its_readouts_and_its_final_norm():
    """Explore's reading controls come from the model: a ViT has sub-block cuts, token readouts and a final norm;
    the choices reach the sweep's settings (read back from the address bar, which carries them)."""
    at = start()
    at.radio(key="ex_source").set_value("timm").run()
    at.text_input(key="ex_timm").input("vit_tiny_patch16_224").run()
    at.selectbox(key="ex_timm_weights").set_value("random").run()
    no_errors(at)
    model = "timm:vit_tiny_patch16_224 [random init]"  # the widgets follow the model loaded
    assert at.multiselect(key=f"ex_readouts::{model}").options == ["CLS token", "mean of patches", "CLS + mean", "max",
                                                                   "mean of all tokens"]  # no registers on this ViT
    at.selectbox(key=f"ex_detail::{model}").set_value("sub-block").run()
    at.multiselect(key=f"ex_readouts::{model}").set_value(["cls", "mean"]).run()
    at.selectbox(key=f"ex_norm::{model}").set_value("both").run()
    no_errors(at)
    cuts = at.multiselect(key=f"ex_cuts::{model}::sub-block")
    assert len(cuts.options) == 12 * 3 + 1  # attn_out, mlp_hidden and the output of 12 blocks, and pool
    link = {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    assert (link["cut_detail"], link["readout"], link["readout_norm"]) == ("sub-block", "cls,mean", "both")

    cnn = start()  # a CNN: no cuts inside blocks, no final norm; its stages read by average or max pooling
    assert "ex_detail::zoo:simclr" not in [w.key for w in cnn.selectbox]
    assert cnn.multiselect(key="ex_readouts::zoo:simclr").options == ["average pooling", "max"]

"""The Explore page's heads: the head selector (linear, k-NN, attentive), combined cuts and the shots slider.

What the page draws is checked against the library's run_sweep of the run config the app offers for download.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from gr_explorer.app.share import link_of
from gr_explorer.config import SweepConfig
from test_app import APP, TIMEOUT, charts, decode, no_errors, reference, small, start, traces, zoo  # noqa: F401 (zoo: a fixture)


@pytest.mark.slow
def test_explore_head_selector_combined_cuts_and_shots_slider(zoo):  # noqa: F811
    at = start()
    small(at, "ex", tasks=["color"])
    at.multiselect(key="ex_baselines").set_value([])
    at.multiselect(key="ex_probes").set_value(["linear", "attentive"])
    at.multiselect(key="ex_combine").set_value(["last2"])
    at.multiselect(key="ex_shots").set_value([2])
    at.number_input(key="ex_tries").set_value(2).run()
    at.button(key="ex_run").click().run()
    no_errors(at)
    record = at.session_state["explore:run"]
    config = json.loads(record.config.to_json())
    assert (config["probes"], config["combine"], config["shots"], config["tries"]) == (["linear", "attentive"],
                                                                                     ["last2"], [2], 2)
    ref = reference(record.config.to_json())
    key = "ex_result"
    # the head selector: linear first, then the attentive probe's curve (its tokens readout)
    heads = at.radio(key=f"{key}:probe")
    assert heads.options == ["linear", "attentive"]
    (x, y), = traces(charts(at)[0], "curve").values()
    lin = ref.table[(ref.table["probe"] == "linear")].sort_values("depth")
    np.testing.assert_allclose(y, lin["accuracy"], atol=1e-12)
    (square,) = [t for t in charts(at)[0]["data"] if (t.get("meta") or {}).get("role") == "combined"]
    c = ref.combined_summary[ref.combined_summary["probe"] == "linear"].iloc[0]
    assert decode(square["y"])[0] == pytest.approx(c["accuracy"])
    heads.set_value("attentive").run()
    (x, y), = traces(charts(at)[0], "curve").values()
    att = ref.table[(ref.table["probe"] == "attentive")].sort_values("depth")
    np.testing.assert_allclose(y, att["accuracy"], atol=1e-12)
    # the shots slider: the 2-per-class curves, the mean over the draws with their spread as the band
    at.select_slider(key=f"{key}:shots").set_value("2").run()
    no_errors(at)
    (x, y), = traces(charts(at)[0], "curve").values()
    s = ref.shots[(ref.shots["shots"] == "2") & (ref.shots["probe"] == "attentive")].sort_values("depth")
    np.testing.assert_allclose(y, s["accuracy"], atol=1e-12)
    _, band = traces(charts(at)[0], "band")["color"]
    np.testing.assert_allclose(band, np.r_[s["accuracy_ci_high"], s["accuracy_ci_low"][::-1]], atol=1e-12)


def test_a_link_restores_the_combined_cuts_the_shots_and_the_tries(zoo):  # noqa: F811
    link = link_of(SweepConfig(models=["zoo:simclr"], tasks=["color"], combine=["last2", "best2"], shots=[2, 5, "all"],
                               tries=3))
    assert (link["combine"], link["shots"], link["tries"]) == ("last2,best2", "2,5,all", "3")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update(link)
    at.run()
    no_errors(at)
    assert at.multiselect(key="ex_combine").value == ["last2", "best2"]
    assert at.multiselect(key="ex_shots").value == [2, 5]  # 'all' is the ordinary sweep, always drawn
    assert at.number_input(key="ex_tries").value == 3

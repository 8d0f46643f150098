"""The Train page's live probes and its queue of designs, driven headless with streamlit.testing.v1.AppTest.

Two tiny designs (projector none vs a 3-layer projector) are queued and trained one after the other with a probe
step every epoch. What the page drew while they trained (the records `follow` handed to the live charts) and what
it draws when done are checked against the probe tables the library wrote next to each checkpoint.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gr_explorer.app import train_live
from gr_explorer.training.live import read_probes
from gr_explorer.uploads import checkpoint_archive
from test_app import charts, decode, no_errors, start, zoo  # noqa: F401 (zoo: fixture)

DESIGNS = (("none", "none"), ("proj3", "32-32-16"))


def _design(at, name: str, projector: str) -> None:
    at.text_input(key="tr_name").input(name)
    at.text_input(key="tr_projector").input(projector)
    at.run()
    at.button(key="tr_queue").click().run()
    no_errors(at)


@pytest.mark.slow  # about 12 s on 2 shared cores: two trainings with three probe steps each
@pytest.mark.usefixtures("zoo")
def test_two_queued_designs_train_one_after_the_other_and_their_live_probes_are_drawn(monkeypatch):
    drawn = []  # what the live charts were drawn from, each time a probe step arrived

    def spy(slot, records, waiting=()):
        drawn.append([(r["label"], float(r["summary"]["epoch"].iloc[0]), r["table"]) for r in records])
        real(slot, records, waiting)

    real = train_live.draw_live
    monkeypatch.setattr(train_live, "draw_live", spy)
    at = start("train")
    at.number_input(key="tr_epochs").set_value(2)
    at.number_input(key="tr_probe_every").set_value(1).run()  # live probes on: their sample sizes appear
    at.number_input(key="tr_probe_n_train").set_value(40)
    at.number_input(key="tr_probe_n_test").set_value(30)
    at.run()
    no_errors(at)
    assert "--probe-every 1" in at.code[0].value and "--probe-n-train 40" in at.code[0].value
    for name, projector in DESIGNS:
        _design(at, name, projector)
    assert at.button(key="tr_run").label == "Train 2 designs"  # counted as soon as it is queued
    assert any("1: none · 2: proj3" in c.value for c in at.caption)
    at.button(key="tr_run").click().run()
    no_errors(at)

    done = at.session_state["train:done"]
    assert [d["label"] for d in done] == ["1: none", "2: proj3"] and not any(d["stopped_early"] for d in done)
    files = {}
    for d, (name, projector) in zip(done, DESIGNS):
        path = Path(d["path"])
        card = json.loads(path.with_suffix(".json").read_text())
        assert card["config"]["projector"] == projector and card["config"]["probe_every"] == 1
        assert all((path.parent / f).exists() for f in card["live_probes"]["files"])  # published with the checkpoint
        with zipfile.ZipFile(io.BytesIO(checkpoint_archive(path))) as z:  # and downloaded with it
            assert set(z.namelist()) == {path.name, path.with_suffix(".json").name, *card["live_probes"]["files"]}
        files[d["label"]] = read_probes(path)
        assert sorted(set(files[d["label"]][0]["epoch"])) == [0.0, 1.0, 2.0]

    # live: drawn while training (the first drawing had fewer steps than the last), design 1 entirely before design 2,
    # and the last drawing holds every recorded step with the numbers the files keep
    assert len(drawn) >= 2 and len(drawn[0]) < len(drawn[-1])
    order = [label for label, _, _ in drawn[-1]]
    assert order == ["1: none"] * 3 + ["2: proj3"] * 3
    for label, (table, _) in files.items():
        steps = [(e, t) for lab, e, t in drawn[-1] if lab == label]
        assert [e for e, _ in steps] == [0.0, 1.0, 2.0]
        for epoch, t in steps:
            ref = table[table["epoch"] == epoch]
            assert np.allclose(t["accuracy"].to_numpy(), ref["accuracy"].to_numpy())

    # done: per design accuracy vs depth with one frame per probe epoch (its last frame the file's last epoch) and its
    # gain per epoch; the two designs' gains overlaid
    specs = charts(at)
    for label, (table, summary) in files.items():
        acc = [s for s in specs if s["layout"]["title"]["text"].startswith(f"{label} · epoch")]
        assert len(acc) == 1 and [f["name"] for f in acc[0]["frames"]] == ["0", "1", "2"]
        task = acc[0]["data"][0]["name"]
        last = table[(table["epoch"] == 2.0) & (table["task"] == task)].sort_values("depth")
        assert np.allclose(decode(acc[0]["data"][0]["y"]), last["accuracy"].to_numpy())
        gain = [s for s in specs if s["layout"]["title"]["text"].startswith(f"{label}: guillotine gain")]
        line = [t for t in gain[0]["data"] if t.get("name") == task][0]
        assert np.allclose(decode(line["y"]), 100 * summary[summary["task"] == task]["gain"].to_numpy())
    overlay = [s for s in specs if "designs overlaid" in s["layout"]["title"]["text"]]
    assert len(overlay) == 1 and {t.get("name") for t in overlay[0]["data"]} >= set(files)

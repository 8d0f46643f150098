"""Probes while training (training/live.py): the numbers are those of a sweep of the saved checkpoint, probing never
changes what the network learns, and a stop during a probe step keeps every step finished before it."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from gr_explorer.data import load_dataset
from gr_explorer.run import run_sweep
from gr_explorer.training import TrainConfig, train
from gr_explorer.training.live import LiveProbes, probe_config, probe_seed

BASE = dict(n_train=128, batch_size=32, epochs=3, width=4, depths=(1,), projector="8", device="cpu",
            probe_n_train=60, probe_n_test=40, probe_tasks=("shape", "color"))


def _cfg(tmp_path, name, **kw) -> TrainConfig:
    return TrainConfig(**{**BASE, "out": str(tmp_path / f"{name}.safetensors"), **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("live")
    cfg = _cfg(tmp, "live", probe_every=2)
    return cfg, train(cfg)


def test_the_last_probe_step_equals_a_sweep_of_the_saved_checkpoint(trained):
    cfg, res = trained
    table = pd.read_csv(res.path.with_suffix(".probes.csv"))
    assert sorted(set(table["epoch"])) == [0.0, 2.0, 3.0]  # before the first step, every 2 epochs, after the last
    last = table[table["epoch"] == 3.0].reset_index(drop=True)
    sweep = run_sweep(probe_config(cfg, f"file:{res.path}"), cache=False)
    ref = sweep.table.reset_index(drop=True)
    for col in ("cut", "task", "accuracy", "val_accuracy", "accuracy_ci_low", "accuracy_ci_high", "hparam"):
        assert list(last[col]) == list(ref[col]), col
    summary = pd.read_csv(res.path.with_suffix(".probes_summary.csv"))
    s = summary[summary["epoch"] == 3.0].reset_index(drop=True)
    assert list(s["best_cut"]) == list(sweep.summary["best_cut"])
    assert list(s["gain_ci_low"].round(6)) == list(sweep.summary["gain_ci_low"].round(6))
    assert res.path.with_suffix(".probes.html").stat().st_size > 10_000  # the figures of every probe step
    card = res.card["live_probes"]
    assert card["every_epochs"] == 2 and len(card["summary"]) == 3 * 2  # 3 steps x 2 tasks
    assert res.card["training"]["live_probe_seconds"] > 0


@pytest.mark.slow
def test_the_probe_set_is_held_out_and_probing_changes_nothing_the_network_learns(tmp_path, trained):
    cfg, res = trained
    plain = train(_cfg(tmp_path, "plain"))
    a, b = plain.model.export_state_dict(), res.model.export_state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # probed or not: the same weights
    assert probe_seed(cfg) != cfg.data_seed
    train_images = load_dataset(cfg.dataset, n_train=cfg.n_train, n_test=None, seed=cfg.data_seed).train_images
    probe = load_dataset(cfg.dataset, n_train=cfg.probe_n_train, n_test=cfg.probe_n_test, seed=probe_seed(cfg))
    seen = {bytes(x.numpy()) for x in train_images}
    assert not any(bytes(x.numpy()) in seen for x in torch.cat([probe.train_images, probe.test_images]))


@pytest.mark.slow
def test_a_stop_during_a_probe_step_keeps_the_steps_before_it(tmp_path, monkeypatch):
    """Stop pressed while the second probe step extracts its features: that step is dropped, the run ends there."""
    seen, inside = [], []
    real = LiveProbes.probe

    def probe(self, *a, **kw):
        inside.append(1)
        try:
            return real(self, *a, **kw)
        finally:
            inside.pop()

    pressed = []

    def should_stop():  # the Stop button: pressed during the second probe step, and stays pressed
        if inside and seen:
            pressed.append(1)
        return bool(pressed)

    monkeypatch.setattr(LiveProbes, "probe", probe)
    res = train(_cfg(tmp_path, "stopped", probe_every=1), should_stop=should_stop,
                on_probe=lambda table, summary: seen.append(summary))
    assert res.stopped_early and res.card["training"]["stopped_early"]
    assert len(seen) == 1  # the random init's step; the second step was stopped mid-way and not recorded
    table = pd.read_csv(res.path.with_suffix(".probes.csv"))
    assert sorted(set(table["epoch"])) == [0.0]
    assert len(res.card["live_probes"]["summary"]) == 2


def test_bad_live_probe_settings_are_named():
    with pytest.raises(Exception, match=r"probe_every=0 is invalid"):
        TrainConfig(probe_every=0)
    assert "--probe-every" in TrainConfig(probe_every=2, out="runs/x.safetensors").to_command()


def test_the_figures_show_every_probe_epoch_and_where_the_gain_opens():
    from gr_explorer.live_plots import gain_over_training, probes_over_training

    rows, summary = [], []
    for epoch, gain_lo in ((0.0, -0.05), (2.0, 0.01), (4.0, 0.03)):
        for depth, cut in enumerate(("stem", "layer1", "pool", "proj1")):
            rows.append({"epoch": epoch, "task": "shape", "depth": depth, "cut": cut, "accuracy": 0.3 + 0.1 * depth})
        summary.append({"epoch": epoch, "task": "shape", "best_depth": 2, "best_cut": "pool", "best_accuracy": 0.5,
                        "gain": gain_lo + 0.04, "gain_ci_low": gain_lo, "gain_ci_high": gain_lo + 0.08})
    table, summary = pd.DataFrame(rows), pd.DataFrame(summary)
    fig = probes_over_training(table, summary)
    assert [f.name for f in fig.frames] == ["0", "2", "4"] and len(fig.layout.sliders[0].steps) == 3
    gain = gain_over_training(summary)
    ring = [t for t in gain.data if t.marker and t.marker.symbol == "circle-open"]
    assert len(ring) == 1 and list(ring[0].x) == [2.0]  # the first epoch whose interval excludes 0

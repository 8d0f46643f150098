"""Stop means stop: every stage honours a cancel at its next check, and a run too big for the machine is refused
before any work (issue 29). The app's and the CLI's side are in test_app.py, test_browser.py and test_cli.py."""

from __future__ import annotations

import threading

import pytest
import torch

import gr_explorer.data.shapes as shapes
from gr_explorer.config import SweepConfig
from gr_explorer.data import image_bytes, load_dataset
from gr_explorer.errors import ConfigError, TrainingError
from gr_explorer.forward import CutForward
from gr_explorer.limits import MEMORY_SHARE, check_sweep
from gr_explorer.probes import run_probes
from gr_explorer.progress import Cancelled, Reporter, duration_text, seconds_left
from gr_explorer.run import run_sweep
from gr_explorer.training import TrainConfig
from gr_explorer.training.loop import check_train_memory
from helpers import tiny_model


class Events(list):
    """A progress callback that keeps every event."""

    def __call__(self, e):
        self.append(e)


def test_generating_shapes_stops_at_the_next_chunk():
    events = Events()
    with pytest.raises(Cancelled):
        load_dataset("shapes", n_train=5 * shapes._CHUNK, n_test=10, progress=events,
                     should_stop=lambda: any(e.stage == "generate" and e.done for e in events))
    done = [e.done for e in events if e.stage == "generate"]
    assert done == [0, 1]  # the stage's start, then one chunk of five: stopped at the first check


def test_forward_hooks_interrupt_inside_a_batch_on_their_own_thread_only():
    model = tiny_model()
    calls = []

    def interrupt():
        calls.append(1)
        if len(calls) == 3:  # the third module of the forward pass
            raise Cancelled()

    forward = CutForward(model, model.cut_names, torch.device("cpu"), interrupt=interrupt)
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    with pytest.raises(Cancelled):
        forward(x)
    assert len(calls) == 3
    # another thread (another session of the app sharing the model) runs the same model undisturbed
    out = {}
    worker = threading.Thread(target=lambda: out.update(forward(x)))
    worker.start()
    worker.join()
    assert set(out) == set(model.cut_names) and len(calls) == 3
    forward.close()  # the hooks go; a plain forward of the shared model calls nothing
    CutForward(model, model.cut_names, torch.device("cpu"))(x)
    assert len(calls) == 3 and not any(m._forward_pre_hooks for m in model.modules())


def _features(n: int = 400, d: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, d, generator=g) + y[:, None].float()
    return {"cut": x[: n // 2]}, {"task": y[: n // 2]}, {"cut": x[n // 2:]}, {"task": y[n // 2:]}


@pytest.mark.parametrize("probe", ["linear", "knn"])
def test_a_probe_stops_inside_its_one_chunk(probe):
    """One cut, so one chunk: a cancel that took effect only between chunks would come after the fit. It comes from
    inside (the linear probe's solver iterations, the k-NN search's query chunks)."""
    events = Events()
    asked = []
    with pytest.raises(Cancelled):
        run_probes([probe], *_features(), progress=events, should_stop=lambda: asked.append(1) or True,
                   knn_chunk_size=16)
    assert asked, "never asked"
    assert [e.done for e in events] == [0] * len(events)  # nothing finished


def test_a_sweep_cancelled_in_its_probes_keeps_the_models_finished_before():
    from gr_explorer.run import SweepCancelled

    events = Events()
    config = SweepConfig(models=["zoo:x"], dataset="shapes", tasks=["color"], n_train=120, n_test=60,
                         baselines=["pixels"])
    with pytest.raises(SweepCancelled) as e:
        run_sweep(config, models=[tiny_model()], cache=False, progress=events,
                  should_stop=lambda: any(ev.stage == "probe" and ev.model == "pixels" for ev in events))
    assert set(e.value.partial["model"]) == {"tiny"}  # the pixels' probe was cancelled; the model's rows are kept


def test_pulses_report_at_most_every_half_second_and_always_check():
    events, asked = Events(), []
    report = Reporter(events, lambda: asked.append(1) or len(asked) > 50, "probe", 4)
    report.emit()
    with pytest.raises(Cancelled):
        for _ in range(100):
            report.tick(0, "iteration")
    assert len(asked) == 51 and len(events) == 1  # 50 quick pulses: checked every time, none reported


def test_time_left_comes_from_the_measured_rate():
    assert seconds_left(2, 10, 4.0) == pytest.approx(16.0)  # 2 s per unit, 8 units left
    assert seconds_left(2, 10, 4.0, since_last=3.0) == pytest.approx(13.0)
    assert seconds_left(0, 10, 4.0) is None and seconds_left(10, 10, 4.0) is None
    assert [duration_text(s) for s in (4.44, 40, 150, 1800, 7200)] == ["4.4 s", "40 s", "2.5 min", "30 min", "2.0 h"]


# ----------------------------------------------------------------------------------------------
# limits: refused before any work, naming the setting and what would fit


def test_a_huge_sweep_is_refused_before_any_image_is_made(monkeypatch):
    monkeypatch.setattr(shapes, "generate", lambda *a, **k: pytest.fail("an image was generated"))
    config = SweepConfig(models=["zoo:simclr"], n_train=99_999_999)
    per_image = image_bytes("shapes", 1, 1)[0]
    assert per_image == 3 * 32 * 32 + 512
    available = 8 * 10**9
    with pytest.raises(ConfigError) as e:
        check_sweep(config, available=available)
    msg = str(e.value)
    assert "n_train=99,999,999" in msg and "--n-train" in msg and "'Train images' in the app" in msg
    assert "8.0 GB is available" in msg and f"at most about {int(MEMORY_SHARE * available // per_image):,} images" in msg
    with pytest.raises(ConfigError, match="n_train=99,999,999"):
        run_sweep(config)  # the library's entry point checks too (the CLI goes through it)
    check_sweep(SweepConfig(models=["zoo:simclr"]), available=available)  # the defaults fit easily


def test_capped_datasets_count_their_split_sizes_and_folders_hold_no_images():
    assert image_bytes("cifar10", 99_999_999, None) == (50_000 * 3 * 32 * 32, 10_000 * 3 * 32 * 32)
    assert image_bytes("stl10", 100, 100, image_size=64) == (100 * 3 * 64 * 64,) * 2
    assert image_bytes("imagefolder:/anywhere", 10**9, 10**9) == (0, 0)
    check_sweep(SweepConfig(models=["zoo:simclr"], dataset="cifar10", n_train=99_999_999), available=2 * 10**9)


def test_a_huge_training_is_refused_before_any_image_is_made():
    with pytest.raises(TrainingError, match=r"n_train=99,999,999 \(--n-train, 'Training images' in the app\)"):
        check_train_memory(TrainConfig(n_train=99_999_999, out="x.safetensors"), available=8 * 10**9)
    check_train_memory(TrainConfig(out="x.safetensors"), available=8 * 10**9)

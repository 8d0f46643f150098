"""Every time the app and the README state, measured on this machine at its current load (issue 29).

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. python -u benchmarks/bench_claims.py [--what run,probes,train,cancel]

run     the default Explore run (zoo:simclr, shapes 2,000 / 1,000, all cuts and tasks, linear probe, random-init
        baseline; README "The app" and Explore's hint), run_sweep with a fresh feature cache.
probes  "changing only the probes": the same run again with the k-NN probe instead, and with the linear probe,
        on the warm feature cache (no forward pass), as Explore does after a probe change.
train   the Train page's estimate (training.loop.time_training: set-up + images + steps, timed here) against the wall time
        of the same training (the shipped zoo:simclr recipe, --epochs 1), and the About page's 5-epoch run.
cancel  seconds from should_stop turning true to the run ending, in each stage: generating shapes, extraction,
        the linear probe (inside its solver), the k-NN probe, and a training step.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from gr_explorer import SweepConfig, run_sweep  # noqa: E402
from gr_explorer.cache import FeatureCache  # noqa: E402
from gr_explorer.progress import Cancelled  # noqa: E402

DEFAULT_RUN = dict(models=["zoo:simclr"], baselines=["random-init"])


def load() -> str:
    return f"load average {os.getloadavg()[0]:.1f}"


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_and_probes(what: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        cache = FeatureCache(folder)
        s = timed(lambda: run_sweep(SweepConfig(**DEFAULT_RUN), cache=cache))
        print(f"default Explore run, fresh cache: {s:.1f} s ({load()})", flush=True)
        if "probes" in what:
            for probes in (["knn"], ["linear"]):
                s = timed(lambda p=probes: run_sweep(SweepConfig(**DEFAULT_RUN, probes=p), cache=cache))
                print(f"  the same with probes={probes} on the warm cache (no forward pass): {s:.1f} s ({load()})",
                      flush=True)


def train_estimate() -> None:
    from gr_explorer.training import TrainConfig, train
    from gr_explorer.training.loop import plan, time_training

    recipe = json.loads((ROOT / "pretrained" / "simclr.json").read_text())["config"]
    config = TrainConfig.from_dict({**recipe, "epochs": 1, "eval": False})
    t0 = time.perf_counter()
    timing = time_training(config)
    calibration = time.perf_counter() - t0
    steps = plan(config, config.n_train)[2]
    estimate = timing.seconds(steps, config.n_train)
    print(f"Train page: {timing.per_step:.2f} s per step, {timing.per_image * 1000:.1f} ms per image, "
          f"{timing.setup:.1f} s set-up, timed in {calibration:.1f} s ({load()}); estimate for {steps} steps on "
          f"{config.n_train} images {estimate:.0f} s", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        res = train(replace(config, out=str(Path(folder) / "m.safetensors")))
    print(f"  the training itself: {res.seconds:.0f} s for {res.steps} steps (estimate / actual "
          f"{estimate / res.seconds:.2f}; {load()}); 5 epochs ({5 * steps} steps, About step 3) would take "
          f"about {5 * res.seconds / 60:.0f} min at this load", flush=True)


def cancel_latency() -> None:
    """Start a run in a thread, flip should_stop when the stage of interest has begun, time until the run ends."""
    from gr_explorer.training import TrainConfig, train

    cases = {
        "generate": (dict(n_train=400_000, n_test=1000), lambda e: e.stage == "generate" and e.done >= 2),
        "extract": (dict(n_train=20_000, n_test=1000), lambda e: e.stage == "extract" and e.done >= 2),
        "probe (linear, in its solver)": (dict(), lambda e: e.stage == "probe" and "iteration" in e.detail),
        "probe (k-NN)": (dict(probes=["knn"], n_train=20_000), lambda e: e.stage == "probe"),
    }
    for name, (settings, begun) in cases.items():
        flipped: list[float] = []

        def progress(e, begun=begun, flipped=flipped):
            if not flipped and begun(e):
                flipped.append(time.perf_counter())

        def run(settings=settings, progress=progress, flipped=flipped):
            with tempfile.TemporaryDirectory() as folder:
                try:
                    run_sweep(SweepConfig(models=["zoo:simclr"], **settings), cache=FeatureCache(folder),
                              progress=progress, should_stop=lambda: bool(flipped))
                except Cancelled:
                    pass

        worker = threading.Thread(target=run)
        worker.start()
        worker.join()
        end = time.perf_counter()
        print(f"cancel during {name}: stopped {end - flipped[0]:.2f} s after should_stop turned true ({load()})",
              flush=True)
    recipe = json.loads((ROOT / "pretrained" / "simclr.json").read_text())["config"]
    steps: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        config = TrainConfig.from_dict({**recipe, "eval": False, "out": str(Path(folder) / "m.safetensors")})
        res = train(config, progress=lambda s, e, l: steps.append(time.perf_counter()),
                    should_stop=lambda: len(steps) >= 3)
    print(f"stop during training: stopped after step {res.steps} of {res.card['training']['planned_steps']}, "
          f"{time.perf_counter() - steps[2]:.2f} s after should_stop turned true, checkpoint saved (marked "
          f"complete={res.card['complete']}) ({load()})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--what", default="run,probes,train,cancel")
    a = ap.parse_args()
    import torch

    what = a.what.split(",")
    print(f"command: OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '<unset>')} python {' '.join(sys.argv)}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPU cores, {load()}",
          flush=True)
    if "run" in what or "probes" in what:
        run_and_probes(what)
    if "train" in what:
        train_estimate()
    if "cancel" in what:
        cancel_latency()


if __name__ == "__main__":
    main()

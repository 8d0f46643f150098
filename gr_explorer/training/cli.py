"""`gr-explorer train`: every TrainConfig field as a flag, a tqdm bar, Ctrl-C stops early and still saves."""

from __future__ import annotations

import argparse
import signal
import sys

from tqdm import tqdm

from ..verdict import gain_text
from .config import TrainConfig
from .loop import check_output, load_train_dataset, plan, train


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train", help="train a model (SSL, supervised or label-aligned) and save it as a checkpoint",
        description="Train a backbone + projector and save <out>.safetensors + <out>.json (probe it as file:<out>). "
                    "Ctrl-C stops early and still saves.")
    TrainConfig.add_flags(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def config_from_args(a) -> TrainConfig:
    return TrainConfig(**TrainConfig.given_flags(a))


class _Stop:
    """First Ctrl-C (or a SIGTERM) asks the loop to stop after the current step and save the checkpoint, marked
    incomplete; a second one aborts."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.flag = False
        self.signal = 0
        self.previous = {}

    def __enter__(self):
        try:
            self.previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        except ValueError:  # not the main thread: keep the default (the loop catches KeyboardInterrupt)
            self.previous = {}
        return self

    def _handle(self, signum, frame):
        if self.flag:
            raise KeyboardInterrupt
        self.flag, self.signal = True, signum
        print("\nstopping after this step and saving, marked incomplete (Ctrl-C again to abort) ...", file=sys.stderr)

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        return False

    def __call__(self) -> bool:
        return self.flag


def cmd_train(a) -> int:
    config = config_from_args(a)
    check_output(config)  # before the dataset is loaded
    ds = load_train_dataset(config)
    _, _, total = plan(config, ds.n_train)
    bar = None if a.quiet else tqdm(total=total, desc=f"train {config.objective}", unit="step", file=sys.stderr)

    def progress(step, epoch, loss):
        if bar is not None:
            bar.update(step - bar.n)
            bar.set_postfix(epoch=epoch, loss=f"{loss:.4f}")

    with _Stop() as stop:
        try:
            result = train(config, progress=progress, should_stop=stop, dataset=ds)
        finally:
            if bar is not None:
                bar.close()
    t = result.card["training"]
    state = "stopped early" if result.stopped_early else "done"
    print(f"{state}: {result.steps} steps in {t['wall_time_s']:.1f} s ({t['images_per_s']} img/s), final loss {t['final_loss']:.4f}")
    print(f"wrote {result.path} and {result.path.with_suffix('.json')}  (probe it: gr-explorer sweep --model file:{result.path})")
    if "results" in result.card:
        print("held-out linear probes (best cut chosen on validation / last cut, 95% CI of the gain):")
        for r in result.card["results"]["summary"]:
            if r["baseline"]:
                continue
            gain = gain_text(r["gain"], r["gain_ci_low"], r["gain_ci_high"], r["clear_gain"], verdict=r.get("gain_verdict"),
                             style="suffix", unit="acc")
            print(f"  {r['task']:12s} best {r['best_cut']:8s} {r['best_accuracy']:.3f}   last {r['last_cut']:8s} "
                  f"{r['last_accuracy']:.3f}   gain {gain}   random init {r['random_init_accuracy']:.3f}")
    if stop.flag or t.get("stopped_by") == "KeyboardInterrupt":
        print("interrupted: the checkpoint above holds the weights at the last finished step (its card says "
              "incomplete)", file=sys.stderr)
        return 128 + stop.signal if stop.signal else 130
    return 0

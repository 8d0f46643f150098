"""`gr-explorer` command line: everything the app shows, from a terminal."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .errors import GRExplorerError


def _csv(s: str | None):
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def _add_sweep(sub):
    p = sub.add_parser("sweep", help="probe every cut of one or more models on a dataset",
                       description="Extract features at every cut in one forward pass, fit probes, print and save the table.")
    p.add_argument("--config", help="run.json of an earlier sweep: reproduces it (flags given here override it)")
    p.add_argument("--model", action="append", help="model spec: zoo:<name>, timm:<name>[.<tag>], file:<path> (repeat or comma-separate)")
    p.add_argument("--dataset", help="shapes, digits, cifar10, cifar100, stl10, fashion_mnist, imagefolder:<path> (default shapes)")
    p.add_argument("--tasks", help="comma-separated tasks (default: all base tasks); derived: hflip, rot90, grayscale, hue")
    p.add_argument("--cuts", help="comma-separated cut names (default: all; see `gr-explorer cuts`)")
    p.add_argument("--probe", help="comma-separated probes: linear, knn (default linear)")
    p.add_argument("--n-train", type=int, help="stratified train subsample size")
    p.add_argument("--n-test", type=int, help="stratified test subsample size")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--readout", help="ViT token readout per cut: cls, mean, cls+mean")
    p.add_argument("--weights", help="timm weights: pretrained (default), random, or a file path")
    p.add_argument("--data-root", help="where torchvision datasets live / are downloaded")
    p.add_argument("--image-size", type=int, help="resize imagefolder images to this size")
    p.add_argument("--linear-grid", help="comma-separated inverse L2 strengths C for the linear probe")
    p.add_argument("--knn-k", help="comma-separated k for the k-NN probe")
    p.add_argument("--out", help="folder for results.csv, run.json, figure.html, heatmap.html")
    p.add_argument("--save-features", action="store_true", help="also write features/<model>.npz (see README for the layout)")
    p.add_argument("--cache-dir", help="feature cache folder (default ~/.cache/gr_explorer/features or $GR_EXPLORER_CACHE)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gr-explorer", description="Where in an SSL network do the useful features live?")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_sweep(sub)
    c = sub.add_parser("cuts", help="list a model's cuts in forward order")
    c.add_argument("--model", required=True)
    c.add_argument("--weights")
    c.add_argument("--readout", default="cls")
    z = sub.add_parser("zoo", help="list the shipped models in pretrained/")
    z.add_argument("--formats", action="store_true", help="list the checkpoint layouts `convert` and file: read instead")
    sub.add_parser("datasets", help="list dataset specs and their tasks")
    from .models.convert import add_convert_parser
    from .training.cli import add_train_parser  # noqa: WPS433 (keeps training's CLI next to its code)

    add_train_parser(sub)
    add_convert_parser(sub)
    return parser


def config_from_args(a) -> "SweepConfig":
    from dataclasses import asdict

    from .sweep import SweepConfig

    base = asdict(SweepConfig.load(a.config)) if a.config else {}
    over = {
        "models": [m for spec in (a.model or []) for m in _csv(spec)] or None,
        "dataset": a.dataset, "tasks": _csv(a.tasks), "cuts": _csv(a.cuts), "probes": _csv(a.probe),
        "n_train": a.n_train, "n_test": a.n_test, "seed": a.seed, "device": a.device, "batch_size": a.batch_size,
        "readout": a.readout, "weights": a.weights, "data_root": a.data_root, "image_size": a.image_size,
        "linear_grid": [float(x) for x in _csv(a.linear_grid)] if a.linear_grid else None,
        "knn_ks": [int(x) for x in _csv(a.knn_k)] if a.knn_k else None,
    }
    base.update({k: v for k, v in over.items() if v is not None})
    if not base.get("models"):
        raise GRExplorerError("No model given. Use --model zoo:<name> | timm:<name> | file:<path>, or --config run.json.")
    return SweepConfig.from_dict(base)


class _Bars:
    """tqdm bars driven by the sweep's progress callback, one per stage run."""

    def __init__(self, quiet: bool):
        self.quiet, self.bar, self.key = quiet, None, None

    def __call__(self, stage, done, total, message=""):
        if self.quiet:
            return
        from tqdm import tqdm

        key = (stage, total, message.split(":")[0])
        if self.bar is None or key != self.key or done < self.bar.n:
            self.close()
            self.bar, self.key = tqdm(total=total, desc=f"{stage:7s} {message.split(':')[0]}", leave=False, file=sys.stderr), key
        self.bar.update(done - self.bar.n)
        if stage == "load" and message:
            self.bar.write(f"[load] {message}", file=sys.stderr)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")


def write_outputs(result, out: Path, save_features: bool) -> list[Path]:
    """results.csv, run.json, figure.html, heatmap.html (+ features/<model>.npz)."""
    import numpy as np

    from .plots import accuracy_vs_depth, cut_task_heatmap

    out.mkdir(parents=True, exist_ok=True)
    written = [out / "results.csv", out / "run.json", out / "figure.html", out / "heatmap.html"]
    result.table.to_csv(written[0], index=False)
    written[1].write_text(result.config.to_json())
    accuracy_vs_depth(result.table).write_html(written[2], include_plotlyjs="cdn")
    cut_task_heatmap(result.table).write_html(written[3], include_plotlyjs="cdn")
    if save_features:
        (out / "features").mkdir(exist_ok=True)
        ds = result.dataset
        for model, feats in result.features.items():
            arrays = {f"{split}__{cut}": getattr(feats, split)[cut].numpy() for split in ("train", "test") for cut in feats.train}
            arrays.update({f"{split}_labels__{task}": labels.numpy() for split, lab in (("train", ds.train_labels), ("test", ds.test_labels)) for task, labels in lab.items()})
            arrays["cuts"] = np.array([c.name for c in feats.cuts])
            arrays["depths"] = np.array([c.depth for c in feats.cuts])
            arrays["parts"] = np.array([c.part for c in feats.cuts])
            path = out / "features" / f"{_slug(model)}.npz"
            np.savez(path, **arrays)
            written.append(path)
    return written


def cmd_sweep(a) -> int:
    from .cache import FeatureCache
    from .summary import guillotine_summary
    from .sweep import run_sweep

    config = config_from_args(a)
    cache = False if a.no_cache else FeatureCache(a.cache_dir) if a.cache_dir else None
    bars = _Bars(a.quiet)
    try:
        result = run_sweep(config, cache=cache, progress=bars)
    finally:
        bars.close()
    t = result.table
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 50, "display.max_rows", 500):
        wide = t.pivot_table(index=["model", "depth", "cut", "part", "dim"], columns=["task", "probe"], values="accuracy", sort=False)
        print(wide.round(3).to_string())
        print()
        print("Best cut and guillotine gain (best minus last cut):")
        print(guillotine_summary(t).round(3).to_string(index=False))
    print(f"\n{len(t)} results in {result.seconds:.1f} s")
    if a.out:
        for p in write_outputs(result, Path(a.out), a.save_features):
            print(f"wrote {p}")
    return 0


def cmd_cuts(a) -> int:
    from .models import model_for_cuts

    model = model_for_cuts(a.model, weights=a.weights, readout=a.readout)  # timm: no weights needed, works offline
    print(f"weights: {model.weights_source}", file=sys.stderr)
    print(f"{'depth':>5}  {'cut':20s} {'part':10s} {'dim':>6}")
    for c in model.cuts:
        print(f"{c.depth:>5}  {c.name:20s} {c.part:10s} {c.dim:>6}")
    return 0


def cmd_zoo(a) -> int:
    from .models import list_zoo, zoo_dir

    if a.formats:
        from .models.convert import print_formats

        return print_formats()
    zoo = list_zoo()
    if not zoo:
        print(f"No checkpoints in {zoo_dir()}.")
    for name, desc in zoo.items():
        print(f"zoo:{name:28s} {desc}")
    return 0


def cmd_datasets(a) -> int:
    from .data import DERIVED_TASKS, dataset_tasks, list_datasets

    for spec in list_datasets():
        try:
            tasks = ", ".join(dataset_tasks(spec))
        except GRExplorerError:
            tasks = "label"
        print(f"{spec:28s} tasks: {tasks}")
    print(f"derived tasks on any dataset: {', '.join(DERIVED_TASKS)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    from .models.convert import cmd_convert

    handlers = {"sweep": cmd_sweep, "cuts": cmd_cuts, "zoo": cmd_zoo, "datasets": cmd_datasets, "convert": cmd_convert}
    try:
        if a.command == "train":
            from .training.cli import cmd_train

            return cmd_train(a)
        return handlers[a.command](a)
    except GRExplorerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; cached features are kept, a rerun resumes from them", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""`gr-explorer` command line: everything the app shows, from a terminal."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from .errors import GRExplorerError


def _add_sweep(sub):
    from .config import config_fields

    p = sub.add_parser("sweep", help="probe every cut of one or more models on a dataset",
                       description="Extract features at every cut in one forward pass, fit probes, print and save the "
                                   "tables. The best cut is chosen on validation data; accuracies and gains come with "
                                   "95%% bootstrap intervals.")
    p.add_argument("--config", help="run.json of an earlier sweep: reproduces it (flags given here override it)")
    for name, kind, help_text, default, flag, _ in config_fields():
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else ("all" if default is None and kind == "count" else default)
        extra = {"action": "append"} if name == "models" else {}
        text = help_text + (f" (default: {shown})" if shown not in (None, "") else "")
        p.add_argument(flag, dest=name, default=None, metavar=kind.upper(), help=text.replace("%", "%%"), **extra)
    p.add_argument("--out", help="folder for results.csv, summary.csv, search.csv, run.json, figure.html, heatmap.html")
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
    c.add_argument("--readout", help="the model's own token readout for the dims shown (default: the checkpoint's, else cls)")
    c.add_argument("--detail", action="store_true", help="also the sub-block cuts (attn_out, mlp_hidden) inside each "
                   "transformer block, with each cut's kind, width, readouts and whether the final norm applies")
    c.add_argument("--stages", help="py: models: comma-separated submodule names whose outputs are cuts")
    c.add_argument("--projector", help="py: models: the submodule that is the projector")
    c.add_argument("--seed", type=int, default=0, help="seed of --weights random")
    z = sub.add_parser("zoo", help="list the shipped models in pretrained/")
    z.add_argument("--formats", action="store_true", help="list the checkpoint layouts `convert` and file: read instead")
    sub.add_parser("datasets", help="list dataset specs and their tasks")
    from .models.convert import add_convert_parser
    from .training.cli import add_train_parser  # noqa: WPS433 (keeps training's CLI next to its code)

    add_train_parser(sub)
    add_convert_parser(sub)
    return parser


def config_from_args(a) -> "SweepConfig":
    """run.json (if given) overridden by the flags given; every value validated by SweepConfig."""
    from .config import SweepConfig, config_fields
    from .flags import parse_flag

    base = SweepConfig.load(a.config).as_dict() if a.config else {}
    for name, kind, _, _, flag, _ in config_fields():
        value = getattr(a, name, None)
        if value is None:
            continue
        if name == "models":
            base[name] = [m for text in value for m in parse_flag("strs", text, flag)]
        else:
            base[name] = parse_flag(kind, value, flag)
    if not base.get("models"):
        raise GRExplorerError("No model given. Use --model zoo:<name> | timm:<name> | file:<path>, or --config run.json.")
    return SweepConfig.from_dict(base, source="the flags" if not a.config else f"run config {a.config!r} with the flags")


class _Bars:
    """tqdm bars driven by the sweep's ProgressEvents, one per (stage, model)."""

    def __init__(self, quiet: bool):
        self.quiet, self.bar, self.key = quiet, None, None

    def __call__(self, e) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        if e.stage == "load":
            if e.done == e.total and e.detail:
                (tqdm.write if self.bar is not None else print)(f"[load] {e.model + ': ' if e.model else ''}{e.detail}",
                                                                file=sys.stderr)
            return
        key = (e.stage, e.model, e.total)
        if self.bar is None or key != self.key or e.done < self.bar.n:
            self.close()
            self.bar, self.key = tqdm(total=e.total, desc=f"{e.stage:7s} {e.model}", leave=False, file=sys.stderr), key
        self.bar.update(e.done - self.bar.n)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def write_outputs(result, out: Path, save_features: bool) -> list[Path]:
    """results.csv, summary.csv, search.csv, run.json, figure.html, heatmap.html (+ features/<model>.npz)."""
    import numpy as np

    from .files import atomic_write, slug
    from .plots import accuracy_vs_depth, cut_task_heatmap
    from .run import COLUMNS

    out.mkdir(parents=True, exist_ok=True)
    written = []

    def put(name: str, data) -> None:
        written.append(atomic_write(out / name, data))

    put("results.csv", result.table[COLUMNS].to_csv(index=False))
    put("summary.csv", result.summary.to_csv(index=False))
    put("search.csv", result.search.to_csv(index=False))
    if not result.metrics.empty:
        put("metrics.csv", result.metrics.to_csv(index=False))
        put("cka.csv", result.cka.to_csv(index=False))
        put("metric_selection.csv", result.metric_selection.to_csv(index=False))
    put("run.json", result.config.to_json())
    put("figure.html", accuracy_vs_depth(result.table, summary=result.summary).to_html(include_plotlyjs=True))
    put("heatmap.html", cut_task_heatmap(result.table).to_html(include_plotlyjs=True))
    if save_features:
        ds = result.dataset
        names: set[str] = set()
        for model, views in result.features.items():
            arrays = {}
            for view, feats in views.items():
                suffix = "" if view == "base" else f"__{view}"
                arrays.update({f"{split}__{cut}{suffix}": getattr(feats, split)[cut].numpy()
                               for split in ("train", "test") for cut in feats.train})
                arrays.update({f"{split}_labels__{task}": labels.numpy() for split in ("train", "test")
                               for task, labels in ds.view_labels(view, split).items()})
            first = next(iter(views.values()))
            arrays["cuts"] = np.array([c.name for c in first.cuts])
            arrays["depths"] = np.array([c.depth for c in first.cuts])
            arrays["parts"] = np.array([c.part for c in first.cuts])
            buf = io.BytesIO()
            np.savez(buf, **arrays)
            name = slug(model.rsplit("/", 1)[-1])
            while name in names:
                name += "_"
            names.add(name)
            put(f"features/{name}.npz", buf.getvalue())
    return written


def print_tables(result) -> None:
    import pandas as pd

    t = result.table
    with pd.option_context("display.width", 220, "display.max_columns", 60, "display.max_rows", 500):
        curves = ["readout", "norm"] if len(t[["readout", "norm"]].drop_duplicates()) > 1 else []
        wide = t.pivot_table(index=["model", *curves, "depth", "cut", "part", "dim"], columns=["task", "probe"],
                             values="accuracy", sort=False)
        print(wide.round(3).to_string())
        print()
        print("Best cut (chosen on validation) and guillotine gain (best minus last cut), test accuracy [95% CI]:")
        s = result.summary
        view = pd.DataFrame({
            "model": s["model"], **{c: s[c] for c in curves}, "task": s["task"], "probe": s["probe"],
            "chance": s["chance"].round(3),
            "best cut": s["best_cut"], "best": _ci(s["best_accuracy"], s["best_ci_low"], s["best_ci_high"]),
            "last cut": s["last_cut"], "last": _ci(s["last_accuracy"], s["last_ci_low"], s["last_ci_high"]),
            "gain": [f"{g:+.3f} [{lo:+.3f}, {hi:+.3f}]" + ("" if c else " (no clear gain)")
                     for g, lo, hi, c in zip(s["gain"], s["gain_ci_low"], s["gain_ci_high"], s["clear_gain"])],
        })
        if s["over_random_init"].notna().any():
            view["vs random init"] = [("" if pd.isna(v) else f"{v:+.3f} [{lo:+.3f}, {hi:+.3f}]")
                                      for v, lo, hi in zip(s["over_random_init"], s["over_random_init_ci_low"],
                                                           s["over_random_init_ci_high"])]
        print(view.to_string(index=False))
    if not result.metric_selection.empty:
        ms = result.metric_selection
        ms = ms[ms["augmentation"].fillna("").isin(["", "hflip"])] if "augmentation" in ms.columns else ms
        print("\nDoes a label-free metric find the validation-selected cut? (Spearman across cuts vs test accuracy)")
        cols = ["model", "task", "probe", "metric", "augmentation", "spearman", "metric_cut", "val_cut", "accuracy_lost"]
        with pd.option_context("display.width", 220, "display.max_rows", 500):
            print(ms[[c for c in cols if c in ms.columns]].round(3).to_string(index=False))
    stuck = t[~t["converged"].astype(bool)]
    if len(stuck):
        print(f"\nwarning: {len(stuck)} linear fit(s) did not converge (converged=False in results.csv).", file=sys.stderr)


def _ci(acc, lo, hi) -> list[str]:
    return [f"{a:.3f} [{l:.3f}, {h:.3f}]" for a, l, h in zip(acc, lo, hi)]


def cmd_sweep(a) -> int:
    from .cache import FeatureCache
    from .files import check_writable
    from .run import run_sweep

    config = config_from_args(a)
    out = check_writable(a.out, "output folder (--out)") if a.out else None
    cache = False
    if not a.no_cache:
        cache = FeatureCache(a.cache_dir)
        check_writable(cache.root, "feature cache folder (--cache-dir / $GR_EXPLORER_CACHE)")
    bars = _Bars(a.quiet)
    try:
        result = run_sweep(config, cache=cache, progress=bars)
    finally:
        bars.close()
    if result is None:  # a torchrun rank other than 0: its share is extracted, rank 0 reports
        return 0
    print_tables(result)
    print(f"\n{len(result.table)} results in {result.seconds:.1f} s")
    if out is not None:
        for p in write_outputs(result, out, a.save_features):
            print(f"wrote {p}")
    return 0


def cmd_cuts(a) -> int:
    from .models import model_for_cuts

    from .models.listing import print_cuts

    extra = {"stages": a.stages.split(",") if a.stages else None, "projector": a.projector} if a.model.startswith("py:") else {}
    model = model_for_cuts(a.model, weights=a.weights, readout=a.readout, seed=a.seed, **extra)  # timm: no weights, offline
    print(f"weights: {model.weights_source}", file=sys.stderr)
    print_cuts(model, "sub-block" if a.detail else "block")
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

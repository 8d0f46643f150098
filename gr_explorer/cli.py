"""`gr-explorer` command line: everything the app shows, from a terminal.

Each subcommand is a thin shell over the library: `sweep` and `compare` run
`run.run_sweep` on a SweepConfig built from the flags (generated from the
settings declarations) and print the library's tables; `train` and `convert`
live next to their code (training/cli.py, models/convert.py).
"""

from __future__ import annotations

import argparse
import signal
import sys
import textwrap
import threading
import warnings

import pandas as pd
from tqdm import tqdm

from .cache import FeatureCache
from .combine import combined_view
from .config import SweepConfig
from .data import dataset_tasks, list_datasets
from .embed import run_embedding, write_embedding
from .embedding import DEFAULT_K, DEFAULT_MAX_POINTS, METHODS
from .errors import ConfigError, GRExplorerError
from .export import check_export
from .files import atomic_write, check_output_folder, check_writable
from .models import list_zoo, model_for_cuts, zoo_dir
from .models.convert import add_convert_parser, cmd_convert, print_formats
from .models.listing import print_cuts
from .names import DERIVED_TASKS
from .outputs import OUTPUTS, write_outputs
from .run import SweepResult, run_sweep
from .samples import NOT_ENOUGH
from .seeds import SeedView, seed_view
from .settings import parse_flag
from .shots import best_view
from .summary import VIEW_NOTE, summary_view
from .training.cli import add_train_parser, cmd_train
from .verdict import seeds_gain_text

SWEEP_HELP = ("Extract features at every cut in one forward pass, fit probes, print and save the tables. The best cut "
              "is chosen on validation data; accuracies and gains come with 95% bootstrap intervals.")
COMPARE_HELP = ("Sweep several models on the same data and read the seeds of one design (models whose cards record the "
                "same training recipe) as one result: the mean curve over seeds, and the mean +- sd over seeds of each "
                "seed's validation-selected guillotine gain with a 95% Student-t interval.")


def _add_sweep_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="run.json of an earlier sweep: reproduces it (flags given here override it)")
    SweepConfig.add_flags(p, repeat=("models",))
    p.add_argument("--out", help="folder for results.csv, summary.csv, search.csv, run.json, figure.html, heatmap.html; "
                                 "written as a whole set beside it and switched in at the end, replacing an earlier "
                                 "run's set (a failed run leaves that one whole)")
    p.add_argument("--save-features", action="store_true", help="also write features/<model>.npz (see README for the layout)")
    p.add_argument("--cache-dir", help="feature cache folder (default ~/.cache/gr_explorer/features or $GR_EXPLORER_CACHE)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


#: the sweep settings `embed` shares (same flags, defaults and checks, so an embed reuses a sweep's cached features)
EMBED_SETTINGS = ("models", "dataset", "cuts", "n_train", "n_test", "seed", "device", "batch_size", "readout", "weights",
                  "data_root", "image_size", "workers", "feature_dtype", "figures")


#: the sweep settings an embedding view uses (the rest are a probe's)
EMBED_SETTINGS = ("models", "dataset", "cuts", "n_train", "n_test", "seed", "device", "batch_size", "readout", "weights",
                  "data_root", "image_size", "workers", "feature_dtype", "figures")


def _add_embed(sub):
    p = sub.add_parser("embed", help="2-D maps of one model's features at every cut, aligned across cuts",
                       description="Extract (or read from the cache) one model's features at every cut, reduce each cut "
                                   "to a 2-D map of the same images, align the maps across cuts and score each cut's "
                                   "neighbourhoods (k-NN label agreement with a 95% interval and chance).")
    p.set_defaults(config=None)
    SweepConfig.add_flags(p, repeat=("models",), only=EMBED_SETTINGS)
    p.add_argument("--task", help="the task that colours the points and stratifies the sample (default: the dataset's first)")
    p.add_argument("--method", default="pca", choices=METHODS, help="pca (default) or tsne (the optional extra 'tsne')")
    p.add_argument("--split", default="test", choices=("test", "train"), help="the images drawn (default: test)")
    p.add_argument("--max-points", default="auto", metavar="N|all|auto",
                   help="draw a seeded sample of at most N images, stratified by --task (auto: " +
                        ", ".join(f"{k} for {m}" for m, k in DEFAULT_MAX_POINTS.items()) + ")")
    p.add_argument("--k", type=int, default=DEFAULT_K, help=f"neighbours of the agreement score (default: {DEFAULT_K})")
    p.add_argument("--out", required=True, help="folder for embedding.csv, scores.csv, embedding.* and embedding_cuts.*")
    p.add_argument("--cache-dir", help="feature cache folder (default ~/.cache/gr_explorer/features or $GR_EXPLORER_CACHE)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gr-explorer", description="Where in an SSL network do the useful features live?")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_sweep_flags(sub.add_parser("sweep", help="probe every cut of one or more models on a dataset",
                                    description=SWEEP_HELP))
    _add_sweep_flags(sub.add_parser("compare", help="sweep several models; seeds of one design read as one result",
                                    description=COMPARE_HELP))
    _add_embed(sub)
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
    add_train_parser(sub)
    add_convert_parser(sub)
    return parser


def config_from_args(a) -> SweepConfig:
    """run.json (if given) overridden by the flags given; every value checked once, by SweepConfig."""
    base = SweepConfig.load(a.config).as_dict() if a.config else {}
    base.update(SweepConfig.given_flags(a))
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


def print_tables(result: SweepResult) -> None:
    t = result.table
    with pd.option_context("display.width", 220, "display.max_columns", 60, "display.max_rows", 500):
        curves = ["readout", "norm"] if len(t[["readout", "norm"]].drop_duplicates()) > 1 else []
        # a curve without enough data for a finding (samples.py) shows no accuracies: results.csv keeps them, with
        # the reason in its `note`
        short = t["note"].fillna("").astype(str) != "" if "note" in t.columns else pd.Series(False, index=t.index)
        grid = dict(index=["model", *curves, "depth", "cut", "part", "dim"], columns=["task", "probe"], sort=False)
        wide = t.pivot_table(values="accuracy", **grid)
        hidden = t.assign(short=short).pivot_table(values="short", aggfunc="any", **grid).astype(bool)
        print(wide.round(3).mask(hidden).to_string(na_rep="—"))
        for task in dict.fromkeys(t.loc[short, "task"]):
            print(f"{task}: {NOT_ENOUGH}, its accuracies are not shown (results.csv keeps them, with the reason)")
        print()
        print("Best cut (chosen on validation) and guillotine gain (best minus last cut), test accuracy [95% CI]:")
        print(summary_view(result.summary, curves).to_string(index=False))
        print(textwrap.fill(VIEW_NOTE, 150))
    if not result.metric_selection.empty:
        ms = result.metric_selection
        ms = ms[ms["augmentation"].fillna("").isin(["", "hflip"])] if "augmentation" in ms.columns else ms
        print("\nDoes a label-free metric find the validation-selected cut? (Spearman across cuts vs test accuracy)")
        cols = ["model", "task", "probe", "metric", "augmentation", "spearman", "metric_cut", "val_cut", "accuracy_lost",
                "accuracy_lost_ci_low", "accuracy_lost_ci_high"]
        with pd.option_context("display.width", 220, "display.max_rows", 500):
            print(ms[[c for c in cols if c in ms.columns]].round(3).to_string(index=False))
    if not result.combined_summary.empty:
        print("\nCombined cuts (concatenated features) vs the best single cut (chosen on validation), paired 95% CI:")
        with pd.option_context("display.width", 220, "display.max_rows", 500, "display.max_colwidth", 60):
            print(combined_view(result.combined_summary).to_string(index=False))
    if not result.shots_best.empty:
        print("\nFew-shot and data-fraction draws: the cut validation chose in each draw and its test accuracy:")
        with pd.option_context("display.width", 220, "display.max_rows", 500, "display.max_colwidth", 60):
            print(best_view(result.shots_best).to_string(index=False))
    stuck = t[~t["converged"].astype(bool)]
    if len(stuck):
        print(f"\nwarning: {len(stuck)} probe fit(s) did not converge (converged=False in results.csv).", file=sys.stderr)
    for note in result.notes:  # clamped values, too little data (samples.py)
        print(f"note: {note}", file=sys.stderr)


def print_seeds(view: SeedView) -> None:
    """The seed groups of a comparison: one row per (design, task, probe)."""
    if not view.groups:
        print("\nNo two models share a design (their cards record different recipes, or none): nothing averaged.")
        return
    s = view.seeds
    table = pd.DataFrame({
        "design": s["design"], "task": s["task"], "probe": s["probe"], "seeds": s["n_seeds"],
        "best cut per seed": [", ".join(c) for c in s["best_cuts"]],
        "best accuracy, mean +- sd": [f"{m:.3f} +- {sd:.3f}" for m, sd in zip(s["best_accuracy_mean"],
                                                                            s["best_accuracy_sd"])],
        "gain, mean ± sd over seeds [95% t interval]": [
            seeds_gain_text(m, sd, n, lo, hi, c)
            for m, sd, n, lo, hi, c in zip(s["gain_mean"], s["gain_sd"], s["n_seeds"], s["gain_ci_low"], s["gain_ci_high"],
                                           s["clear_gain"])],
    })
    print("\nSeeds of one design (mean over seeds of each seed's own validation-selected gain):")
    with pd.option_context("display.width", 220, "display.max_rows", 500, "display.max_colwidth", 80):
        print(table.to_string(index=False))


def _sweep(a) -> tuple[SweepResult | None, object]:
    config = config_from_args(a)
    out = check_output_folder(a.out, "output folder (--out)", OUTPUTS) if a.out else None
    if out is not None:
        check_export(config.figures)
    cache = False
    if not a.no_cache:
        cache = FeatureCache(a.cache_dir)
        check_writable(cache.root, "feature cache folder (--cache-dir / $GR_EXPLORER_CACHE)")
    bars = _Bars(a.quiet)
    try:
        result = run_sweep(config, cache=cache, progress=bars)
    finally:
        bars.close()
    return result, out


def _finish(a, result: SweepResult, out, extra: dict[str, str] | None = None) -> int:
    print(f"\n{len(result.table)} results in {result.seconds:.1f} s")
    if out is not None:
        for p in write_outputs(result, out, a.save_features):
            print(f"wrote {p}")
        for name, text in (extra or {}).items():
            print(f"wrote {atomic_write(out / name, text)}")
    return 0


def cmd_sweep(a) -> int:
    result, out = _sweep(a)
    if result is None:  # a torchrun rank other than 0: its share is extracted, rank 0 reports
        return 0
    print_tables(result)
    return _finish(a, result, out)


def cmd_embed(a) -> int:
    config = config_from_args(a)
    max_points = None if a.max_points == "all" else a.max_points if a.max_points == "auto" else \
        parse_flag("int", a.max_points, "--max-points")
    out = check_writable(a.out, "output folder (--out)")
    check_export(config.figures)
    cache = False if a.no_cache else FeatureCache(a.cache_dir)
    if cache:
        check_writable(cache.root, "feature cache folder (--cache-dir / $GR_EXPLORER_CACHE)")
    bars = _Bars(a.quiet)
    try:
        run = run_embedding(config, task=a.task, method=a.method, split=a.split, max_points=max_points, k=a.k,
                            cache=cache, progress=bars)
    finally:
        bars.close()
    emb = run.embedding
    print(emb.scores[emb.scores["task"] == emb.stratify].round(3).to_string(index=False))
    print(f"\n{emb.n_drawn:,} of {emb.n_total:,} {emb.split} images; reduce {emb.seconds['reduce']:.1f} s, "
          f"score {emb.seconds['score']:.1f} s")
    for p in write_embedding(run, out, config.figures):
        print(f"wrote {p}")
    return 0


def cmd_compare(a) -> int:
    result, out = _sweep(a)
    if result is None:
        return 0
    print_tables(result)
    view = seed_view(result.table, result.summary, result.cards)
    print_seeds(view)
    seeds_csv = view.seeds.assign(models=view.seeds["models"].map(",".join),
                                  best_cuts=view.seeds["best_cuts"].map(",".join),
                                  gains=view.seeds["gains"].map(lambda g: ",".join(f"{v:.4f}" for v in g)))
    return _finish(a, result, out, {"seeds.csv": seeds_csv.to_csv(index=False)})


def cmd_cuts(a) -> int:
    bad_seed = SweepConfig.spec("seed").problem(a.seed)  # the sweep's own seed rule
    if bad_seed:
        raise ConfigError(bad_seed)
    extra = {"stages": a.stages.split(",") if a.stages else None, "projector": a.projector} if a.model.startswith("py:") else {}
    model = model_for_cuts(a.model, weights=a.weights, readout=a.readout, seed=a.seed, **extra)  # timm: no weights, offline
    print(f"weights: {model.weights_source}", file=sys.stderr)
    print_cuts(model, "sub-block" if a.detail else "block")
    return 0


def cmd_zoo(a) -> int:
    if a.formats:
        return print_formats()
    zoo = list_zoo()
    if not zoo:
        print(f"No checkpoints in {zoo_dir()}.")
    for name, desc in zoo.items():
        print(f"zoo:{name:28s} {desc}")
    return 0


def cmd_datasets(a) -> int:
    for spec in list_datasets():
        try:
            tasks = ", ".join(dataset_tasks(spec))
        except GRExplorerError:
            tasks = "label"
        print(f"{spec:28s} tasks: {tasks}")
    print(f"derived tasks on any dataset: {', '.join(DERIVED_TASKS)}")
    return 0


HANDLERS = {"sweep": cmd_sweep, "compare": cmd_compare, "embed": cmd_embed, "cuts": cmd_cuts, "zoo": cmd_zoo, "datasets": cmd_datasets,
            "convert": cmd_convert, "train": cmd_train}


class Terminated(BaseException):
    """SIGTERM, raised in the main thread: the command unwinds (nothing half-written is published) and exits 143."""


def _terminate(signum, frame):
    raise Terminated()


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """The library's warnings (a bad cache entry dropped, a card without preprocessing) as one 'warning:' line, like
    the CLI's notes, instead of Python's source path and line; other warnings keep Python's format."""
    if issubclass(category, UserWarning) and "gr_explorer" in str(filename):
        print(f"warning: {message}", file=file or sys.stderr)
    else:
        _python_warning(message, category, filename, lineno, file, line)


_python_warning = warnings.showwarning


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_line
            return HANDLERS[a.command](a)
    except GRExplorerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; cached features are kept, a rerun resumes from them", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated (SIGTERM); nothing of this run was published (an earlier --out is whole), cached features "
              "are kept", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())

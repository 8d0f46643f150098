"""Measurement (not a speed benchmark): what sub-block cuts, readouts and the final norm show on one model.

    OMP_NUM_THREADS=1 python -u benchmarks/measure_subblock.py --model timm:vit_tiny_patch16_224 --weights random \
        --dataset shapes --tasks shape,color,texture --n-train 1000 --n-test 500 --out runs/subblock_tiny

One run_sweep (linear probe, every sub-block cut, readouts cls and mean, the final norm off and on, the pixels
baseline) and, from its per-image correctness, paired comparisons on the same test images (bootstrap, 95%):

* per (task, curve): the validation-chosen best cut, its test accuracy and interval, the gain over the last cut;
* per (task, curve): the best cut of each kind (attn_out, mlp_hidden, block output), each chosen on validation,
  and each kind's accuracy minus the block outputs';
* per (task, readout): the norm-on curve's validation-chosen best minus the norm-off curve's, over all cuts, over
  the residual-stream cuts only (block outputs and attn_out: where the norm acts), and at the last block;
* per (task, norm): the second readout's best minus the first's (`mean` minus `cls`), over all cuts and over the
  cuts a readout acts on (pool and projector layers, the same in every curve, left out).

Every "best" is chosen on validation accuracy (ties: the shallower cut); every figure is test accuracy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from gr_explorer import SweepConfig, run_sweep
from gr_explorer.stats import Resampler
from gr_explorer.summary import best_row


def kind(cut: str) -> str:
    return "attn_out" if cut.endswith(".attn_out") else "mlp_hidden" if cut.endswith(".mlp_hidden") else \
        "block" if cut.startswith("blocks.") else cut


def read_out(cuts: pd.Series) -> pd.Series:
    """The cuts a readout acts on (block/stage outputs and sub-block cuts), not the vectors (pool, projector)."""
    return (cuts != "pool") & ~cuts.str.match(r"proj\d+$")


def paired(res: Resampler, a: pd.Series, b: pd.Series) -> str:
    lo, hi = res.difference_interval(a["correct"], b["correct"])
    d = a["accuracy"] - b["accuracy"]
    return f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]" + ("" if lo > 0 or hi < 0 else " (n.s.)")


def ci(row: pd.Series) -> str:
    return f"{row['accuracy']:.3f} [{row['accuracy_ci_low']:.3f}, {row['accuracy_ci_high']:.3f}]"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="timm:vit_tiny_patch16_224")
    ap.add_argument("--weights", default="random")
    ap.add_argument("--dataset", default="shapes")
    ap.add_argument("--tasks", default="shape,color,texture")
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--readouts", default="cls,mean")
    ap.add_argument("--detail", default="sub-block", help="block for a CNN (no sub-block cuts)")
    ap.add_argument("--norm", default="both", help="off for a model without a final norm (CNN)")
    ap.add_argument("--baselines", default="pixels")
    ap.add_argument("--out", type=Path, help="writes results.csv, summary.csv, run.json and table.pkl (with the "
                    "per-image correctness) there")
    ap.add_argument("--reanalyse", type=Path, help="print the comparisons of an earlier --out folder's table.pkl")
    a = ap.parse_args()
    if a.reanalyse:
        t = pd.read_pickle(a.reanalyse / "table.pkl")
        analyse(t, SweepConfig.load(a.reanalyse / "run.json"))
        return
    config = SweepConfig(models=[a.model], weights=a.weights, dataset=a.dataset, tasks=a.tasks.split(","),
                         n_train=a.n_train, n_test=a.n_test, seed=a.seed, cut_detail=a.detail,
                         readout=a.readouts.split(","), readout_norm=a.norm, baselines=a.baselines.split(","),
                         device="cpu")
    result = run_sweep(config)
    t = result.table
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        t.drop(columns="correct").to_csv(a.out / "results.csv", index=False)
        t.to_pickle(a.out / "table.pkl")
        result.summary.to_csv(a.out / "summary.csv", index=False)
        (a.out / "run.json").write_text(config.to_json())
    print(f"sweep: {result.seconds:.0f} s")
    analyse(t, config)


def analyse(t: pd.DataFrame, config: SweepConfig) -> None:
    res = Resampler(int(t["n_test"].iloc[0]), config.bootstrap, config.seed)
    main_rows = t[t["baseline"] == ""]
    twin = t[t["baseline"] == "random-init"]
    pixels = t[t["baseline"] == "pixels"].set_index("task")
    print(f"{config.models[0]} ({main_rows['weights'].iloc[0]}) on {config.dataset}: {t['n_train'].iloc[0]} train / "
          f"{t['n_test'].iloc[0]} test images, {main_rows['cut'].nunique()} cuts, linear probe")
    for task, g in main_rows.groupby("task", sort=False):
        print(f"\n== {task}: chance {g['chance'].iloc[0]:.3f}, raw pixels {ci(pixels.loc[task])}")
        best = {}
        for (readout, norm), c in g.groupby(["readout", "norm"], sort=False):
            c = c.sort_values("depth", kind="stable")
            b, last = best_row(c), c.iloc[-1]
            best[(readout, norm)] = b
            print(f"  {readout:5s} norm {norm:3s}: best {b['cut']:20s} {ci(b)}  vs last ({last['cut']}) "
                  f"{paired(res, b, last)}  vs pixels {paired(res, b, pixels.loc[task])}")
            tw = twin[(twin["task"] == task) & (twin["readout"] == readout) & (twin["norm"] == norm)]
            if len(tw):
                tb = best_row(tw.sort_values("depth", kind="stable"))
                print(f"      random-init twin: best {tb['cut']} {ci(tb)}; model minus twin {paired(res, b, tb)}")
            if not (c["cut"].map(kind) == "attn_out").any():
                continue
            kinds = {k: best_row(c[c["cut"].map(kind) == k]) for k in ("attn_out", "mlp_hidden", "block")}
            print("      best of each kind: " + "; ".join(
                f"{k} {r['cut']} {r['accuracy']:.3f}" + ("" if k == "block" else f" ({paired(res, r, kinds['block'])} vs block)")
                for k, r in kinds.items()))
        for readout in dict.fromkeys(r for r, _ in best):
            if (readout, "on") in best:
                curve = {n: g[(g["readout"] == readout) & (g["norm"] == n)].sort_values("depth", kind="stable")
                         for n in ("off", "on")}
                stream = {n: best_row(c[c["cut"].map(kind).isin(["attn_out", "block"])]) for n, c in curve.items()}
                last = {n: c[c["cut"].map(kind) == "block"].iloc[-1] for n, c in curve.items()}
                print(f"  norm on minus off, {readout}: best of all cuts {paired(res, best[(readout, 'on')], best[(readout, 'off')])}"
                      f"; best residual-stream cut ({stream['on']['cut']} vs {stream['off']['cut']}) "
                      f"{paired(res, stream['on'], stream['off'])}; at {last['on']['cut']} "
                      f"({last['on']['accuracy']:.3f} vs {last['off']['accuracy']:.3f}) {paired(res, last['on'], last['off'])}")
        readouts = list(dict.fromkeys(r for r, _ in best))
        for norm in ("off", "on"):
            if len(readouts) == 2 and (readouts[1], norm) in best:
                own = {r: best_row(g[(g["readout"] == r) & (g["norm"] == norm) & read_out(g["cut"])].sort_values(
                    "depth", kind="stable")) for r in readouts}
                print(f"  {readouts[1]} minus {readouts[0]}, norm {norm}: best of all cuts "
                      f"{paired(res, best[(readouts[1], norm)], best[(readouts[0], norm)])}; best of the cuts read out "
                      f"({own[readouts[1]]['cut']} vs {own[readouts[0]]['cut']}) {paired(res, own[readouts[1]], own[readouts[0]])}")


if __name__ == "__main__":
    main()

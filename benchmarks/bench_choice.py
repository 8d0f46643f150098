"""(k) The cost of the honest comparisons: the summary with the choice of cut resampled vs without, side by side.

    python -u benchmarks/bench_choice.py [--baseline random-init] [--repeats 5]

Runs the default Explore sweep once (zoo:simclr on shapes, 2,000 / 1,000 images, linear probe, the baseline given;
features cached), then times on its in-memory table, alternating, best of `--repeats`:

* the summary as before issue 28 would compute it: `guillotine_summary` on the table without `val_correct`
  (no cut choice resampled; the random-init and borderline columns still computed);
* the full summary (choice.py: validation and test resampled jointly, the cut re-chosen in each resample);
* `p_chosen` for the results table (the same resampling once more, per row);

and prints each next to the sweep's own wall time.
"""

from __future__ import annotations

import argparse
import time

from gr_explorer import SweepConfig, run_sweep
from gr_explorer.summary import guillotine_summary, p_chosen


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", default="random-init")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    config = SweepConfig(models=["zoo:simclr"], baselines=[a.baseline])
    t0 = time.perf_counter()
    res = run_sweep(config)
    sweep_s = time.perf_counter() - t0
    table = res.table
    plain = table.drop(columns="val_correct")
    curves = table.groupby(["model", "task", "probe"]).ngroups
    fixed = best_of(lambda: guillotine_summary(plain, config.bootstrap, config.seed), a.repeats)
    full = best_of(lambda: guillotine_summary(table, config.bootstrap, config.seed), a.repeats)
    rows = best_of(lambda: p_chosen(table, config.bootstrap, config.seed), a.repeats)
    n_val = len(table["val_correct"].iloc[0])
    print(f"sweep (features cached after the first run): {sweep_s:.2f} s; {curves} curves, {len(table)} rows, "
          f"{config.bootstrap} resamples, {n_val} validation / {config.n_test} test images")
    print(f"summary without the choice of cut: {fixed:.3f} s")
    print(f"summary with the choice of cut:    {full:.3f} s  (+{full - fixed:.3f} s)")
    print(f"p_chosen for the results table:    {rows:.3f} s")
    print(f"choice overhead in all: {full - fixed + rows:.3f} s = {100 * (full - fixed + rows) / sweep_s:.1f}% of the sweep")


if __name__ == "__main__":
    main()

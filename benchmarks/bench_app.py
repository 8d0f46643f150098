"""The app's code path vs the library, same config, same process, interleaved: the default Explore run and a
1-epoch training. Target: app / library <= 1.2.

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. python -u benchmarks/bench_app.py [--repeats 2] [--what sweep,train]

App = the real page script driven by streamlit.testing.v1.AppTest (no browser): widgets -> resources (the
cached loaders) -> a Job thread running run_sweep / train while the page follows it, exactly as a browser
session does. Library = run_sweep(config) / train(config) called directly with the config the app ran
(read back from the app's run record / job). Each run gets a fresh feature cache and empty Streamlit
caches; the app's clock runs from the click on Run / Train until the page has collected the result, the
library's over the call (which includes loading the dataset and the model; the app loaded its model to
list the cuts before the click, about 0.1 s for zoo:simclr). Repeats alternate app / library / library /
app so that a change in the machine's load hits both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def fresh_caches() -> None:
    import streamlit as st

    os.environ["GR_EXPLORER_CACHE"] = tempfile.mkdtemp(prefix="bench-app-cache-")
    st.cache_resource.clear()
    st.cache_data.clear()


def app_sweep() -> tuple[float, str]:
    from streamlit.testing.v1 import AppTest

    fresh_caches()
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=1800).run()
    t0 = time.perf_counter()
    at.button(key="ex_run").click().run()
    seconds = time.perf_counter() - t0
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    return seconds, at.session_state["explore:run"]["config_json"]


def lib_sweep(config_json: str) -> float:
    from gr_explorer import SweepConfig, run_sweep

    fresh_caches()
    config = SweepConfig.from_dict(json.loads(config_json))
    t0 = time.perf_counter()
    run_sweep(config)
    return time.perf_counter() - t0


def app_train(epochs: int):
    from streamlit.testing.v1 import AppTest

    fresh_caches()
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=1800).run()
    at.switch_page("gr_explorer/app/pages/train.py").run()
    at.number_input(key="tr_epochs").set_value(epochs).run()
    t0 = time.perf_counter()
    at.button(key="tr_run").click().run()
    seconds = time.perf_counter() - t0
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    return seconds, at.session_state["train:job"].meta["config"], at.session_state["train:last"]["steps"]


def lib_train(config) -> float:
    from dataclasses import replace

    from gr_explorer.training import train

    fresh_caches()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train(replace(config, out=str(Path(tmp) / "bench.safetensors")))
        return time.perf_counter() - t0


def report(name: str, app: list[float], lib: list[float]) -> None:
    a, b = statistics.median(app), statistics.median(lib)
    print(f"{name}: app {', '.join(f'{x:.1f}' for x in app)} s (median {a:.1f}) | library "
          f"{', '.join(f'{x:.1f}' for x in lib)} s (median {b:.1f}) | ratio {a / b:.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2, help="pairs of (app, library) runs per measurement")
    ap.add_argument("--what", default="sweep,train")
    ap.add_argument("--epochs", type=int, default=1)
    a = ap.parse_args()
    os.environ["GR_EXPLORER_DATA_ROOTS"] = tempfile.mkdtemp(prefix="bench-app-roots-")
    import torch

    print(f"command: OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '<unset>')} python {' '.join(sys.argv)}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPU cores, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    what = a.what.split(",")
    if "sweep" in what:
        app, lib = [], []
        for i in range(a.repeats):
            if i % 2 == 0:
                s, cfg = app_sweep()
                app.append(s)
                lib.append(lib_sweep(cfg))
            else:
                lib.append(lib_sweep(cfg))
                app.append(app_sweep()[0])
            print(f"  sweep pair {i + 1}: app {app[-1]:.1f} s, library {lib[-1]:.1f} s "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
        print("  config:", json.dumps({k: v for k, v in json.loads(cfg).items() if v not in (None, [], "")}))
        report("default Explore run", app, lib)
    if "train" in what:
        app, lib = [], []
        for i in range(a.repeats):
            if i % 2 == 0:
                s, cfg, steps = app_train(a.epochs)
                app.append(s)
                lib.append(lib_train(cfg))
            else:
                lib.append(lib_train(cfg))
                app.append(app_train(a.epochs)[0])
            print(f"  train pair {i + 1}: app {app[-1]:.1f} s, library {lib[-1]:.1f} s ({steps} steps, "
                  f"load {os.getloadavg()[0]:.1f})", flush=True)
        print("  config:", cfg.to_command())
        report(f"{a.epochs}-epoch training (Train page's default recipe)", app, lib)


if __name__ == "__main__":
    main()

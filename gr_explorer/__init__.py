"""gr-explorer: probe every cut of a self-supervised vision network and see where to cut.

    from gr_explorer import sweep, accuracy_vs_depth
    table = sweep("zoo:simclr", "shapes", probes=["linear"], baselines=["random-init"])
    accuracy_vs_depth(table).show()

Names are imported lazily so that `import gr_explorer.<module>` stays cheap.
"""

import importlib
import os

# OpenMP threads that sleep instead of spin: on a shared or busy CPU, spinning made torch
# steps 5-15x slower here (see benchmarks/README.md); set before torch loads, overridable.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

# Name -> module. No exported name is also a submodule (`sweep` is the function; the module is `run`).
_EXPORTS = {
    "SweepConfig": "config",
    "Dataset": "data", "load_dataset": "data",
    "run_embedding": "embed", "Embedding": "embedding", "embed_cuts": "embedding", "embedding_figure": "embedding_plots",
    "save_figure": "export",
    "GRExplorerError": "errors",
    "Features": "features", "extract_features": "features",
    "Cut": "models", "Model": "models", "load_model": "models", "wrap_module": "models",
    "accuracy_vs_depth": "plots", "cut_task_heatmap": "plots",
    "PROBES": "probes", "ProbeResult": "probes", "run_probes": "probes",
    "ProgressEvent": "progress",
    "SweepCancelled": "run", "SweepResult": "run", "run_sweep": "run", "sweep": "run",
    "guillotine_summary": "summary", "summary_view": "summary",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'gr_explorer' has no attribute {name!r}")

"""The import contract (DESIGN.md, "Data flow"): imports point down the layers only, and no two modules import
each other, directly or around a circle. Read from the source (every import statement, at module level or inside
a function), so an upward import fails the build before anyone runs it. Plus the lint rules the project keeps.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gr_explorer"

#: lowest first; a module may import its own layer or any layer below, never one above. Each entry is a module
#: or a package (all of its submodules), named relative to gr_explorer.
LAYERS = [
    ["errors", "names", "settings", "hashing", "threads", "files", "progress", "stats", "choice", "verdict", "device",
     "augment", "distributed", "export"],  # plain tools and the names every layer speaks
    ["config", "cache"],  # the sweep's settings; the feature store
    ["data", "models"],  # inputs
    ["forward", "features", "probes", "limits", "samples"],  # one forward pass for all cuts; heads on the features; will a run fit; enough data?
    ["diagnostics", "summary", "plots", "embedding", "embedding_plots", "live_plots", "combine", "shots"],  # label-free
    # measures and maps; reading and drawing a results table; combined cuts and few-shot draws (heads over several cuts
    # or draws)
    ["run"],  # a sweep
    ["training"],  # a training run (its held-out evaluation is a sweep)
    ["seeds", "outputs", "uploads", "embed"],  # designs over seeds; a sweep's files; checked uploads; embedding runs
    ["cli", "app", "__main__", ""],  # the faces: command line, Streamlit app, the package's lazy exports
]


def _module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _layer_of(module: str) -> int:
    best = None
    for i, layer in enumerate(LAYERS):
        for entry in layer:
            if module == entry or (entry and module.startswith(entry + ".")):
                if best is None or len(entry) > best[1]:
                    best = (i, len(entry))
    assert best is not None, f"module gr_explorer.{module} is in no layer of LAYERS: place it"
    return best[0]


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the gr_explorer modules it imports (relative names; '' is the package itself)."""
    modules = {_module_name(p, package): p for p in package.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                if node.level == 0:
                    if not (node.module or "").startswith("gr_explorer"):
                        continue
                    base = node.module.split(".")[1:]
                else:
                    base = mod.split(".") if mod else []
                    if not is_pkg:
                        base = base[:-1]
                    base = base[:len(base) - (node.level - 1)] + (node.module.split(".") if node.module else [])
                targets = [".".join(base + [a.name]) for a in node.names]
                targets = [t if t in modules else ".".join(base) for t in targets]
            elif isinstance(node, ast.Import):
                targets = [a.name.split(".", 1)[1] if "." in a.name else "" for a in node.names
                           if a.name.split(".")[0] == "gr_explorer"]
            for t in targets:
                while t not in modules and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t in modules and t != mod:
                    graph[mod].add(t)
    return graph


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import that runs up the layers, and every circle of imports."""
    out = [f"gr_explorer.{a or '__init__'} (layer {_layer_of(a)}) imports gr_explorer.{b} (layer {_layer_of(b)})"
           for a, targets in graph.items() for b in targets
           if _layer_of(b) > _layer_of(a) and not (a == "" and b)]  # the package's lazy exports may name anything
    out += [f"import circle: {' -> '.join(c)}" for c in _circles({a: {b for b in t if b} for a, t in graph.items() if a})]
    return out


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_imports_point_down_and_never_close_a_circle():
    assert violations(import_graph()) == []


def test_the_contract_fails_on_an_upward_import_and_on_a_circle(tmp_path):
    pkg = tmp_path / "gr_explorer"
    shutil.copytree(PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "stats.py").write_text((pkg / "stats.py").read_text() + "\nfrom .run import sweep  # upward\n")
    (pkg / "names.py").write_text((pkg / "names.py").read_text() + "\nfrom . import verdict\n")
    (pkg / "verdict.py").write_text((pkg / "verdict.py").read_text() + "\nfrom . import names  # closes a circle\n")
    found = violations(import_graph(pkg))
    assert any("gr_explorer.stats (layer 0) imports gr_explorer.run (layer 5)" in v for v in found), found
    assert any(v.startswith("import circle:") and "names" in v and "verdict" in v for v in found), found


def test_every_module_says_what_it_owns():
    missing = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py")
               if p.read_text().strip() and ast.get_docstring(ast.parse(p.read_text())) is None]
    assert missing == []


def test_lint():
    """ruff with the rules in pyproject.toml ([tool.ruff]): syntax errors, pyflakes, import order, and bugbear's
    mutable-default and loop-closure checks."""
    ruff = shutil.which("ruff") or (Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install -e '.[test]' installs it)")
    done = subprocess.run([str(ruff), "check", "--no-cache", "gr_explorer", "tests", "benchmarks", "pretrained",
                           "streamlit_app.py"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr

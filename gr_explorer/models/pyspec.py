"""`py:<file.py>:<function>`: your own architecture from the command line, without writing a script.

The function (called with no arguments) returns one of:

* an `nn.Module` that runs the whole network: `stages` name the submodules whose outputs are cuts, and
  `projector` names its projector submodule (a Sequential, or a module whose children run in order): the
  projector's *input* is the `pool` cut, each of its layers a cut. Without `projector`, the module's output
  is the pooled feature (`pool`);
* `(backbone, projector)`: `backbone(x)` gives the pooled feature, `projector` is applied to it;
* a `Model` (gr_explorer.models.wrap_module ...), used as it is.

The file may define `preprocessing` (a dict of Preprocessing fields or a Preprocessing); the defaults
(32 px, mean/std 0.5) are used otherwise, with a warning. `weights` loads a state dict (.safetensors, or
.pth/.pt read with `torch.load(weights_only=True)`: no pickled code runs) into what the function returned,
strictly: the prefix under which the checkpoint keeps each part (`module.`, `module.backbone.` ...) is
found from the keys, and any missing, unexpected or mis-shaped key stops the load with the list of them.

This runs the user's Python file, so it is refused inside a Streamlit server (the app is a web server whose
browser users are untrusted) unless its admin sets GR_EXPLORER_ALLOW_PY_MODELS=1 (an app run locally for
oneself); the CLI and the Python API allow it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..errors import CheckpointError, ModelSpecError, did_you_mean
from ..files import expand_user
from ..hashing import file_digest
from .backbones import HookBackbone, IntermediatesBackbone
from .checkpoint import read_weights
from .model import Model
from .preprocessing import Preprocessing
from .projector import group_into_blocks

OPT_IN = "GR_EXPLORER_ALLOW_PY_MODELS"
FORM = "py:<path/to/file.py>:<function>"


def in_server() -> bool:
    """Inside a running Streamlit server (the app): `streamlit.runtime.exists()` once Streamlit is loaded."""
    runtime = sys.modules.get("streamlit.runtime")
    return bool(runtime is not None and runtime.exists())


def parse(rest: str) -> tuple[Path, str]:
    """`path/to/model.py:build` -> (the file, the function name), both checked."""
    path, sep, func = rest.rpartition(":")
    if not sep or not path or not func.isidentifier():
        raise ModelSpecError(f"Bad py: model spec 'py:{rest}'. Valid form: {FORM}, e.g. py:models/cifar_resnet.py:build.")
    p = expand_user(path, "py: model file", ModelSpecError)
    if p.suffix != ".py" or not p.is_file():
        raise ModelSpecError(f"py: model file {path!r} {'is not a .py file' if p.is_file() else 'does not exist'}. "
                             f"Valid form: {FORM}.")
    return p, func


def _import(path: Path, func: str):
    name = f"gr_explorer_py_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the user's file: any error is theirs, reported with its type and message
        raise ModelSpecError(f"Running {str(path)!r} failed: {type(e).__name__}: {e}") from e
    build = getattr(module, func, None)
    if not callable(build):
        found = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_") and
                 getattr(v, "__module__", None) == name]
        raise ModelSpecError(f"{str(path)!r} has no function {func!r}. {did_you_mean(func, found) if found else 'It defines no function.'}")
    return module, build


def _preprocessing(module) -> Preprocessing:
    pre = getattr(module, "preprocessing", None)
    if isinstance(pre, Preprocessing):
        return pre
    if isinstance(pre, dict):
        return Preprocessing.from_dict(pre)
    d = Preprocessing()
    warnings.warn(f"{module.__file__}: no `preprocessing` defined, using the defaults input_size={d.input_size}, "
                  f"mean={d.mean}, std={d.std}; define preprocessing = dict(input_size=..., mean=..., std=...) in the file "
                  "with what the weights were trained on.", UserWarning, stacklevel=3)
    return d


def _call(build, where: str):
    try:
        return build()
    except Exception as e:
        raise ModelSpecError(f"{where}() failed: {type(e).__name__}: {e}") from e


def _parts(obj, where: str) -> dict[str, nn.Module]:
    """What the function returned, as the named modules that weights load into."""
    if isinstance(obj, Model):
        return {"backbone": obj.backbone.module, **({"projector": obj.projector} if obj.projector is not None else {})}
    if isinstance(obj, nn.Module):
        return {"": obj}
    if isinstance(obj, (tuple, list)) and len(obj) == 2 and isinstance(obj[0], nn.Module) and \
            (obj[1] is None or isinstance(obj[1], nn.Module)):
        return {"backbone": obj[0], **({"projector": obj[1]} if obj[1] is not None else {})}
    raise ModelSpecError(f"{where}() returned {type(obj).__name__}. Valid: an nn.Module, a (backbone, projector) pair "
                         "of modules, or a gr_explorer Model.")


def _sequential(projector: nn.Module, where: str) -> nn.Sequential:
    if isinstance(projector, nn.Sequential):
        return projector
    children = list(projector.children())
    if not children:
        raise ModelSpecError(f"The projector of {where} has no layers to cut between. Valid: an nn.Sequential, or a "
                             "module whose children run one after another.")
    return nn.Sequential(*children)


def _check_in_order(projector: nn.Module, seq: nn.Sequential, dim: int, where: str) -> None:
    """A projector given as a module must compute what its children compute one after another (else its cuts lie)."""
    if projector is seq:
        return
    p = next(iter(projector.parameters()), None)
    z = torch.randn(4, dim, generator=torch.Generator().manual_seed(0)).to(p.device if p is not None else "cpu")
    was = projector.training
    projector.eval()
    try:
        with torch.no_grad():
            same = torch.allclose(projector(z), seq(z), rtol=1e-4, atol=1e-5)
    except Exception:
        same = False
    finally:
        projector.train(was)
    if not same:
        raise ModelSpecError(f"The projector of {where} ({type(projector).__name__}) does not compute its children one "
                             "after another, so its layers cannot be cut. Valid: make it an nn.Sequential, or return "
                             "(backbone, projector) with a Sequential projector.")


def as_model(obj, *, stages: Sequence[str] | None, projector: str | None, pre: Preprocessing, name: str,
             source: str, readout: str | None = None) -> Model:
    """What the function returned -> Model, its cuts named by `stages` / `projector`."""
    readout = readout or "cls"
    if isinstance(obj, Model):
        if stages or projector:
            raise ModelSpecError(f"{name} returns a Model, which names its own cuts. Valid: drop --stages/--projector.")
        obj = obj.renamed(name)
        obj.weights_source = source
        return obj
    parts = _parts(obj, name)
    if "" in parts:
        module = parts[""]
        names = dict(module.named_modules())
        if projector is not None:
            if projector not in names or not projector:
                raise ModelSpecError(f"{name} has no submodule {projector!r} to use as the projector. "
                                     f"{did_you_mean(projector, [n for n in names if n])}")
            proj = names[projector]
            seq = _sequential(proj, name)
            backbone = HookBackbone(module, list(stages or []), readout=readout, pool=projector, pool_input=True)
            model = Model(backbone, group_into_blocks(seq.children()), pre, name=name, card={"source": "py"},
                          weights_source=source)
            _check_in_order(proj, seq, model.cuts[len(backbone.stage_names)].dim, name)
            return model
        if not stages and not hasattr(module, "forward_intermediates"):
            candidates = [n for n, m in module.named_modules() if n and n.count(".") < 3 and list(m.children())]
            raise ModelSpecError(f"{name} returns one module and no cut is named: its output alone would be the only cut. "
                                 f"Name the submodules to cut at with --stages (stages=...). {did_you_mean('', candidates)}")
        adapter = (IntermediatesBackbone(module, readout=readout) if not stages
                   else HookBackbone(module, list(stages), readout=readout))
        return Model(adapter, None, pre, name=name, card={"source": "py"}, weights_source=source)
    if projector is not None:
        raise ModelSpecError(f"{name} returns (backbone, projector); --projector names a submodule of a single module. "
                             "Valid: drop --projector.")
    proj = parts.get("projector")
    seq = _sequential(proj, name) if proj is not None else None
    adapter = (HookBackbone(parts["backbone"], list(stages), readout=readout) if stages or not hasattr(parts["backbone"], "forward_intermediates")
               else IntermediatesBackbone(parts["backbone"], readout=readout))
    model = Model(adapter, group_into_blocks(seq.children()) if seq is not None else None, pre, name=name,
                  card={"source": "py"}, weights_source=source)
    if proj is not None:
        _check_in_order(proj, seq, model.cuts[len(adapter.stage_names)].dim, name)
    return model


def load_weights(parts: dict[str, nn.Module], path: Path, name: str) -> str:
    """Load a state dict into `parts` strictly; returns the prefixes used. Any mismatch: CheckpointError with the diff."""
    sd = read_weights(path)
    prefixes = sorted({k[:i + 1] for k in sd for i, ch in enumerate(k) if ch == "."} | {""}, key=len)
    used, missing, shapes, chosen = set(), [], [], {}
    for part, module in parts.items():
        own = module.state_dict()
        base = f"{part}." if part else ""
        best = max(prefixes, key=lambda p: (sum(p + k in sd for k in own), -len(p)))
        chosen[part or "model"] = best
        for k, v in own.items():
            if best + k not in sd:
                missing.append(base + k)
            elif tuple(sd[best + k].shape) != tuple(v.shape):
                shapes.append(f"{base}{k}: file {list(sd[best + k].shape)} vs model {list(v.shape)}")
            used.add(best + k)
    unexpected = [k for k in sd if k not in used]
    shown = ", ".join(f"{p or 'model'} <- {'prefix ' + repr(v) if v else 'no prefix'}" for p, v in chosen.items())
    if missing or unexpected or shapes:
        def listing(title, items):
            return f"\n  {title} ({len(items)}): " + ", ".join(items[:12]) + (" ..." if len(items) > 12 else "") if items else ""
        raise CheckpointError(f"Weights file {str(path)!r} does not match {name} (strict key matching; {shown}):"
                              + listing("missing from the file", missing) + listing("unexpected in the file", unexpected)
                              + listing("shape mismatch", shapes)
                              + "\nValid: a state dict of exactly this architecture (check the function builds the "
                                "network the weights were trained with).")
    for part, module in parts.items():
        p = chosen[part or "model"]
        module.load_state_dict({k: sd[p + k] for k in module.state_dict()}, strict=True)
    return shown


def load_py_model(rest: str, *, weights: str | None = None, stages: Sequence[str] | None = None,
                  projector: str | None = None, readout: str | None = None, seed: int = 0) -> Model:
    """`py:<file.py>:<function>` -> Model; `weights`: None (as built), 'random' (built under `seed`) or a file."""
    if in_server() and os.environ.get(OPT_IN) != "1":
        raise ModelSpecError(f"py: models run Python code from a file, which this server does not allow (its users are "
                             f"untrusted). Valid here: zoo:, timm:, file: models. (Running the app for yourself, set "
                             f"{OPT_IN}=1 to allow them.)")
    path, func = parse(rest)
    name = f"py:{rest}"
    module, build = _import(path, func)
    pre = _preprocessing(module)
    where = f"{path.name}:{func}"

    def fresh():
        return _call(build, where)

    if weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            obj = fresh()
        source, name = f"random init (seed {seed})", name + " [random init]"
    else:
        obj = fresh()
        source = f"as built by {where}() (no weights file)"
        if weights not in (None, "", "pretrained"):
            wpath = expand_user(weights, "weights file", ModelSpecError)
            if not wpath.is_file():
                raise ModelSpecError(f"Weights file {weights!r} for {name} does not exist. Valid: a .safetensors/.pth "
                                     "state dict, 'random', or nothing (the weights the function builds).")
            load_weights(_parts(obj, name), wpath, name)
            source = f"{wpath.name} sha256:{file_digest(wpath)[:12]}"
    model = as_model(obj, stages=stages, projector=projector, pre=pre, name=name, source=source, readout=readout)
    model.card = {"source": "py", "architecture": {"py": rest, "stages": list(stages or []), "projector": projector},
                  "weights": weights or "as built"}

    def rebuild() -> Model:
        return as_model(fresh(), stages=stages, projector=projector, pre=pre, name=f"py:{rest}", source="random init",
                        readout=readout)

    model.rebuild = rebuild
    return model.eval()

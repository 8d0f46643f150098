"""`timm:<name>[.<tag>]` models: timm builds them, resolves weights, and names their stages.

Weights: by default timm's pretrained weights (Hugging Face hub when online,
its cache when offline or with HF_HUB_OFFLINE=1); `weights="random"` for a
random init; a file path for weights the user brings (loaded by timm with
`weights_only=True`); `weights="meta"` builds the architecture on the meta
device (no weights, no memory, no download) -- enough to list its cuts.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import torch

from ..errors import ModelSpecError, OfflineError, did_you_mean
from .backbones import IntermediatesBackbone
from .model import Model
from .preprocessing import Preprocessing

#: How long one hub request may take before we call it offline (seconds).
HUB_TIMEOUT = os.environ.get("GR_EXPLORER_HUB_TIMEOUT", "10")
_HUB_LOCK = threading.Lock()


def load_timm(name: str, weights: str | None = None, readout: str = "cls", seed: int = 0) -> Model:
    """A timm model; `weights="random"` is a deterministic function of `seed` and is labelled `[random init]`."""
    import timm

    arch = name.split(".")[0]
    if not timm.is_model(name) and not timm.is_model(arch):
        raise ModelSpecError(f"Unknown timm model {name!r}. {did_you_mean(arch, timm.list_models())}")
    kwargs = dict(num_classes=0)
    if weights in (None, "", "pretrained"):
        module = _create_pretrained(timm, name, kwargs)
        cfg = getattr(module, "pretrained_cfg", {}) or {}
        source = f"pretrained ({cfg.get('hf_hub_id') or name})"
    elif weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = timm.create_model(name, pretrained=False, **kwargs)
        source = f"random init (seed {seed})"
    elif weights == "meta":
        with torch.device("meta"):
            module = timm.create_model(name, pretrained=False, **kwargs)
        source = "none (meta device: shapes only)"
    else:
        p = Path(weights)
        if not p.exists():
            raise ModelSpecError(f"Weights file {weights!r} for timm:{name} does not exist. Valid: a .safetensors/.pth file, 'random' or 'pretrained'.")
        try:
            module = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(p)), **kwargs)
        except Exception as e:  # timm raises plain RuntimeError/KeyError for mismatched files
            raise ModelSpecError(f"Weights file {weights!r} could not be loaded into timm:{name}: {e}") from e
        from .checkpoint import file_digest

        source = f"{p.name} sha256:{file_digest(p)[:12]}"
    if not hasattr(module, "forward_intermediates"):
        raise ModelSpecError(f"timm model {name!r} has no forward_intermediates(), so its cuts cannot be captured in one pass. "
                             "Pick a model that has it (ResNets, ConvNeXts, ViTs, DeiTs, EVAs ...).")
    cfg = timm.data.resolve_data_config({}, model=module)
    size = cfg.get("input_size", (3, 224, 224))[-1]
    pre = Preprocessing(input_size=int(size), mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
                        std=tuple(cfg.get("std", (0.229, 0.224, 0.225))), interpolation=str(cfg.get("interpolation", "bicubic")))
    card = {"architecture": {"backbone": {"type": "timm", "name": name}, "projector": None},
            "weights": weights or "pretrained", "source": "timm"}

    def rebuild() -> Model:
        fresh = timm.create_model(name, pretrained=False, **kwargs)
        return Model(IntermediatesBackbone(fresh, readout=readout), None, pre, name=f"timm:{name}", card=card,
                     weights_source="random init", rebuild=rebuild)

    label = f"timm:{name}" + (" [random init]" if weights == "random" else "")
    return Model(IntermediatesBackbone(module, readout=readout), None, pre, name=label, card=card,
                 weights_source=source, rebuild=rebuild)


def _create_pretrained(timm, name: str, kwargs: dict):
    """Hub download with a bounded timeout; offline with no cache -> OfflineError that says what to do."""
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", HUB_TIMEOUT)
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", HUB_TIMEOUT)
    from huggingface_hub import constants

    with _HUB_LOCK:  # the offline switch is process-wide: one loader at a time (app sessions share a process)
        was_offline = constants.HF_HUB_OFFLINE
        # Unreachable hub: use the cache only, instead of a minute of retries.
        constants.HF_HUB_OFFLINE = was_offline or not _hub_reachable(constants.ENDPOINT)
        try:
            return timm.create_model(name, pretrained=True, **kwargs)
        except Exception as e:  # hub/network errors come in many types (OSError, HTTPError, LocalEntryNotFoundError ...)
            if _is_network_error(e):
                raise OfflineError(
                    f"Could not download pretrained weights for timm:{name} (offline, or the hub is unreachable, and they "
                    f"are not in the Hugging Face cache {os.environ.get('HF_HOME', '~/.cache/huggingface')}). Either "
                    f"download them once while online, or pass the file with --weights <file.safetensors|.pth> (Python: "
                    f"weights=...), or use --weights random for a random init. Cause: {type(e).__name__}: {str(e)[:200]}"
                ) from e
            raise
        finally:
            constants.HF_HUB_OFFLINE = was_offline


def _hub_reachable(endpoint: str) -> bool:
    import socket
    from urllib.parse import urlparse

    url = urlparse(endpoint)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=float(HUB_TIMEOUT)).close()
        return True
    except OSError:
        return False


def _is_network_error(e: BaseException) -> bool:
    names = {type(x).__name__ for x in _chain(e)}
    network = {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectionError", "ConnectTimeout", "ReadTimeout",
               "Timeout", "HTTPError", "URLError", "gaierror", "timeout", "MaxRetryError", "NewConnectionError",
               "ConnectError", "HfHubHTTPError", "RepositoryNotFoundError", "TimeoutException", "ConnectionRefusedError",
               "OSError"}
    return bool(names & network)


def _chain(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__

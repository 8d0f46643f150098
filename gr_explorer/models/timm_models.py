"""`timm:<name>[.<tag>]` models: timm builds them, resolves weights, and names their stages.

Weights: by default timm's pretrained weights (Hugging Face hub when online,
its cache when offline or with HF_HUB_OFFLINE=1); `weights="random"` for a
random init; a file path for weights the user brings (loaded by timm with
`weights_only=True`); `weights="meta"` builds the architecture on the meta
device (no weights, no memory, no download) -- enough to list its cuts.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from huggingface_hub import constants, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
from timm.models import get_pretrained_cfg

from ..errors import ModelSpecError, OfflineError, did_you_mean
from ..hashing import file_digest
from .backbones import IntermediatesBackbone
from .model import Model
from .preprocessing import Preprocessing

#: How long one hub request may take before we call it offline (seconds); $GR_EXPLORER_HUB_TIMEOUT overrides.
DEFAULT_HUB_TIMEOUT = 3.0


def load_timm(name: str, weights: str | None = None, readout: str = "cls", seed: int = 0) -> Model:
    """A timm model; `weights="random"` is a deterministic function of `seed` and is labelled `[random init]`."""

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


def hub_timeout() -> float:
    """Seconds one hub request may take before the hub counts as unreachable ($GR_EXPLORER_HUB_TIMEOUT, read per call)."""
    try:
        return max(0.1, float(os.environ.get("GR_EXPLORER_HUB_TIMEOUT", DEFAULT_HUB_TIMEOUT)))
    except ValueError:
        return DEFAULT_HUB_TIMEOUT


def _create_pretrained(timm, name: str, kwargs: dict):
    """Pretrained weights with per-call timeouts and offline mode (nothing process-wide is changed).

    The weights file is resolved here (hub cache only when the hub is unreachable, a bounded wait
    otherwise) and handed to timm as a file; offline with nothing cached -> OfflineError saying what
    to do; a cache that cannot be written is a disk error, not "offline".
    """

    cfg = get_pretrained_cfg(name)  # the default tag when the name has none
    hf_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    try:
        if hf_id:
            path = _hub_file(hf_id, getattr(cfg, "hf_hub_filename", None))
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=path), **kwargs)
        return timm.create_model(name, pretrained=True, **kwargs)  # URL-hosted weights (torch hub cache)
    except OfflineError:
        raise
    except OSError as e:
        if _is_disk_error(e):
            raise ModelSpecError(f"Could not store the weights of timm:{name}: {e.strerror or e} "
                                 f"({getattr(e, 'filename', '') or 'the download cache'}). Free space or fix the folder's "
                                 "permissions (or set HF_HOME to a writable folder).") from e
        if _is_network_error(e):
            raise _offline(name, e) from e
        raise
    except Exception as e:  # hub/network errors come in many types (HTTPError, LocalEntryNotFoundError ...)
        if _is_network_error(e):
            raise _offline(name, e) from e
        raise


def _hub_file(hf_id: str, filename: str | None) -> str:
    """Local path of a hub weights file: safetensors first, as timm does; cache only when the hub is unreachable."""

    repo, _, revision = hf_id.partition("@")
    timeout = hub_timeout()
    local_only = bool(constants.HF_HUB_OFFLINE) or not _hub_reachable(constants.ENDPOINT, timeout)
    names = [filename] if filename else ["model.safetensors", "pytorch_model.bin"]
    missing = None
    for fname in names:
        try:
            return hf_hub_download(repo, fname, revision=revision or None, etag_timeout=timeout, local_files_only=local_only)
        except LocalEntryNotFoundError as e:  # not cached (and offline), or the hub did not answer
            missing = e
        except EntryNotFoundError as e:  # the hub answered: no such file in the repo, try the next name
            missing = e
    raise missing


def _offline(name: str, e: BaseException) -> OfflineError:
    cache = os.environ.get("HF_HOME", "~/.cache/huggingface")
    return OfflineError(
        f"Could not get the pretrained weights of timm:{name}: the Hugging Face hub is unreachable (offline) and they "
        f"are not in the local cache ({cache}). Download them once while online, or give a weights file "
        f"(gr-explorer --weights <file>, Python weights=<file>), or use random weights. ({type(e).__name__})")


def _hub_reachable(endpoint: str, timeout: float) -> bool:
    url = urlparse(endpoint)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=timeout).close()
        return True
    except OSError:
        return False


def _is_disk_error(e: OSError) -> bool:
    return isinstance(e, PermissionError) or e.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT)


def _is_network_error(e: BaseException) -> bool:
    names = {type(x).__name__ for x in _chain(e)}
    network = {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectionError", "ConnectTimeout", "ReadTimeout",
               "Timeout", "HTTPError", "URLError", "gaierror", "timeout", "MaxRetryError", "NewConnectionError",
               "ConnectError", "HfHubHTTPError", "RepositoryNotFoundError", "TimeoutException", "ConnectionRefusedError",
               "TimeoutError", "socket.timeout"}
    return bool(names & network)


def _chain(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__

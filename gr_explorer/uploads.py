"""Checkpoints that travel through a browser: store an upload, publish a trained model, pack one for download.

A checkpoint is two files (`<name>.safetensors` + `<name>.json`, see
models/checkpoint.py); a browser hands them over as (file name, bytes) pairs.
The sender is untrusted, so:

* the card is checked *before* anything is written: no card field may reach
  timm in a form that opens a file or the network (a registered architecture
  name, plain keyword values, no path-like strings in `architecture`), so an
  upload cannot probe whether a server file exists;
* the pair is written to a content-addressed folder `<folder>/<digest>/`: the
  same upload from two sessions lands in the same place, a different one never
  overwrites it, and the folder name is all that identifies it (no user path);
* a checkpoint that the loader then refuses is deleted (`discard`).

Loading (and every check of the weights) is `load_model("file:<path>")`'s job.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import Iterable

from .errors import CheckpointError
from .files import atomic_write, slug
from .hashing import bytes_digest
from .models.card_check import check_card
from .models.checkpoint import file_digest
from .training import TrainConfig

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")
CARD_SUFFIX = ".json"
DIGEST_LEN = 16
#: any keyword that sounds like it names a file or a download (drop_path_rate is a regulariser, not a path)
_FILE_KWARG = re.compile(r"file|checkpoint|cache|pretrained|cfg|url|hub|(?<!drop_)path")


def _refuse(field: str, why: str) -> CheckpointError:
    return CheckpointError(f"The uploaded card's {field} is not accepted: {why}. Valid: a card as `gr-explorer train`, "
                           "`gr-explorer convert` or the Train page write it.")


def check_upload_card(data: bytes) -> dict:
    """The parsed card, or CheckpointError naming the field an upload may not carry.

    Every card passes `check_card` (sizes, preprocessing, a registered timm name, no file-reading timm
    keyword); an uploaded one is also refused any path- or URL-like string in its architecture and any
    keyword that merely sounds like a file or a download.
    """

    try:
        card = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"The uploaded card (.json) is not valid JSON: {e}.") from None
    if not isinstance(card, dict):
        raise CheckpointError("The uploaded card (.json) must hold a JSON object.")
    arch = card.get("architecture")
    if not isinstance(arch, dict) or not isinstance(arch.get("backbone"), dict):
        raise _refuse("architecture.backbone", "it is missing or not an object")
    _no_paths(arch, "architecture")
    for key in arch["backbone"].get("kwargs") or {}:
        if _FILE_KWARG.search(str(key)):
            raise _refuse(f"architecture.backbone.kwargs.{key}", "it would make timm read a file or download weights")
    check_card(card, "(uploaded)")
    return card


def _no_paths(obj, where: str) -> None:
    """No string in the architecture may look like a path or a URL (timm resolves such names)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            _no_paths(v, f"{where}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _no_paths(v, f"{where}[{i}]")
    elif isinstance(obj, str) and ("/" in obj or "\\" in obj or ":" in obj or obj.startswith("~")):
        raise _refuse(where, "paths and URLs are not allowed in an uploaded architecture")


def store_checkpoint_upload(files: Iterable[tuple[str, bytes]], folder: str | os.PathLike) -> Path:
    """Check one uploaded checkpoint (a weights file + its .json card) and write it under `folder/<digest>/`.

    Returns the weights path. The card is renamed to match the weights file, so `foo.safetensors` +
    `card.json` works too. Nothing is written when a check fails.
    """
    files = [(Path(str(n)).name, bytes(b)) for n, b in files]
    expected = (f"one weights file ({', '.join(WEIGHT_SUFFIXES)}) and its card (.json), uploaded together, "
                "e.g. simclr.safetensors + simclr.json")
    if not files:
        raise CheckpointError(f"No checkpoint files were uploaded. Expected {expected}.")
    weights = [(n, b) for n, b in files if Path(n).suffix.lower() in WEIGHT_SUFFIXES]
    cards = [(n, b) for n, b in files if Path(n).suffix.lower() == CARD_SUFFIX]
    other = [n for n, _ in files if Path(n).suffix.lower() not in (*WEIGHT_SUFFIXES, CARD_SUFFIX)]
    names = ", ".join(n for n, _ in files)
    if other:
        raise CheckpointError(f"Unexpected file(s) {', '.join(other)} in the upload. Expected {expected}.")
    if len(weights) != 1:
        what = "no weights file" if not weights else f"{len(weights)} weights files"
        raise CheckpointError(f"The upload ({names}) has {what}. Expected {expected}.")
    if len(cards) != 1:
        what = "no .json card" if not cards else f"{len(cards)} .json files"
        raise CheckpointError(f"The upload ({names}) has {what}. Expected {expected}.")
    (wname, wbytes), (_, cbytes) = weights[0], cards[0]
    if not wbytes:
        raise CheckpointError(f"The uploaded weights file {wname!r} is empty.")
    check_upload_card(cbytes)
    target = Path(folder) / bytes_digest(wbytes, cbytes, length=DIGEST_LEN)
    path = target / f"{slug(Path(wname).stem, default='checkpoint')}{Path(wname).suffix.lower()}"
    for dest, data in ((path, wbytes), (path.with_suffix(CARD_SUFFIX), cbytes)):
        if not (dest.exists() and dest.read_bytes() == data):
            atomic_write(dest, data)
    return path


def discard(path: str | os.PathLike) -> None:
    """Delete a stored checkpoint's content-addressed folder (an upload the loader refused)."""
    folder = Path(path).parent
    shutil.rmtree(folder, ignore_errors=True)


def publish_trained(path: str | os.PathLike, folder: str | os.PathLike, out_name: str) -> Path:
    """Move a freshly trained checkpoint to `folder/<digest of its weights>/` under its own name.

    The card's `config.out` and `command` are rewritten to `out_name` (what a user would type), so
    the card that travels with a download names no server path.
    """

    path = Path(path)
    card = json.loads(path.with_suffix(CARD_SUFFIX).read_text())
    config = dict(card.get("config") or {})
    if config:
        config["out"] = out_name
        card["config"] = config
        card["command"] = TrainConfig.from_dict(config).to_command()
    dest = Path(folder) / file_digest(path)[:DIGEST_LEN] / path.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, dest)
    for name in side_files(card):  # the live probes' tables and figures travel with the checkpoint they describe
        if (path.parent / name).exists():
            os.replace(path.parent / name, dest.parent / name)
    atomic_write(dest.with_suffix(CARD_SUFFIX), json.dumps(card, indent=2, default=str))
    path.with_suffix(CARD_SUFFIX).unlink(missing_ok=True)
    return dest


def side_files(card: dict) -> list[str]:
    """The files a card names next to its checkpoint (the live probes' CSVs and figures), bare names only."""
    names = (card.get("live_probes") or {}).get("files") or []
    return [n for n in names if isinstance(n, str) and n == Path(n).name]


def checkpoint_archive(path: str | os.PathLike) -> bytes:
    """A zip holding a checkpoint's weights file, its card and the files its card names, as on disk."""
    path = Path(path)
    card = path.with_suffix(CARD_SUFFIX)
    missing = [p.name for p in (path, card) if not p.exists()]
    if missing:
        raise CheckpointError(f"Cannot pack checkpoint {path.name!r}: missing {', '.join(missing)}.")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.write(path, path.name)
        z.write(card, card.name)
        for name in side_files(json.loads(card.read_text())):
            if (path.parent / name).exists():
                z.write(path.parent / name, name)
    return buf.getvalue()

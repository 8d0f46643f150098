"""Checkpoints that travel through a browser: store uploaded files, pack a checkpoint for download.

A checkpoint is two files (`<name>.safetensors` + `<name>.json`, see
models/checkpoint.py); a browser hands them over as (file name, bytes) pairs.
`store_checkpoint_upload` checks that the pair is complete and writes it under a
content-addressed folder, so the same upload from two sessions lands in the same
place and a different one never overwrites it. Loading (and every check of the
contents) is `load_model("file:<path>")`'s job.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Iterable

from .errors import CheckpointError

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")
CARD_SUFFIX = ".json"
ENV_VAR = "GR_EXPLORER_UPLOADS"


def uploads_dir() -> Path:
    """Where uploads are stored: $GR_EXPLORER_UPLOADS, else <system temp>/gr_explorer_uploads."""
    return Path(os.environ.get(ENV_VAR) or Path(tempfile.gettempdir()) / "gr_explorer_uploads")


def _safe_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem).strip("._") or "checkpoint"
    return stem[:80]


def store_checkpoint_upload(files: Iterable[tuple[str, bytes]], root: str | os.PathLike | None = None) -> Path:
    """Write one uploaded checkpoint (a weights file + its .json card) to disk; returns the weights path.

    The card is renamed to match the weights file, so `foo.safetensors` + `card.json` works too.
    """
    files = [(str(n), bytes(b)) for n, b in files]
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
    h = hashlib.sha256()
    for part in (wbytes, cbytes):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    digest = h.hexdigest()[:20]
    folder = Path(root) if root is not None else uploads_dir()
    folder = folder / digest
    folder.mkdir(parents=True, exist_ok=True)
    stem = _safe_stem(wname)
    path = folder / f"{stem}{Path(wname).suffix.lower()}"
    for dest, data in ((path, wbytes), (path.with_suffix(CARD_SUFFIX), cbytes)):
        if not (dest.exists() and dest.read_bytes() == data):
            _write_atomic(dest, data)
    return path


def _write_atomic(dest: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def checkpoint_archive(path: str | os.PathLike) -> bytes:
    """A zip holding a checkpoint's weights file and its card, named as on disk."""
    path = Path(path)
    card = path.with_suffix(CARD_SUFFIX)
    missing = [str(p) for p in (path, card) if not p.exists()]
    if missing:
        raise CheckpointError(f"Cannot pack checkpoint {str(path)!r}: missing {', '.join(missing)}.")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.write(path, path.name)
        z.write(card, card.name)
    return buf.getvalue()

"""File helpers used across the library: atomic writes and safe file-name slugs."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Callable

from .errors import GRExplorerError

_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


def slug(text: str, max_len: int = 80, default: str = "item") -> str:
    """A file-name-safe version of `text` (letters, digits, . _ - only)."""
    return _SLUG.sub("_", str(text)).strip("._")[:max_len] or default


def atomic_write(dest: str | os.PathLike, write: Callable[[str], None] | bytes | str, mode: int = 0o644) -> Path:
    """Write `dest` via a temp file in the same folder and os.replace: readers see the old or the new file, never half.

    `write` is bytes, text, or a callable that writes to the temp path it is given.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        if callable(write):
            os.close(fd)
            write(tmp)
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(write.encode() if isinstance(write, str) else write)
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def check_writable(folder: str | os.PathLike, what: str) -> Path:
    """Create `folder` if needed and prove a file can be written there, before any long work starts."""

    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".write-test.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise GRExplorerError(f"The {what} {str(folder)!r} cannot be written ({e.strerror or e}). "
                              f"Valid: a folder you can write to.") from e
    return folder

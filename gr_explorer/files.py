"""File helpers used across the library: atomic writes, safe file-name slugs, and staging folders that a crash can
leave behind (named by their owner, so they can be removed later)."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import tempfile
import time
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


# -- folders owned by a process: staging that a crash leaves behind can be told apart and removed ---------------
_HOST = socket.gethostname() or "host"
ORPHAN_GRACE_S = 3600  # an orphan is also this long untouched: pid namespaces (containers) may share a hostname


def owned_name(prefix: str) -> str:
    """`<prefix>~<host>~<pid>~<random>`: unique per process and call, and says who owns it."""
    return f"{prefix}~{_HOST}~{os.getpid()}~{secrets.token_hex(4)}"


def _owner(name: str) -> tuple[str, str, int] | None:
    parts = name.rsplit("~", 3)
    if len(parts) != 4 or not parts[2].isdigit():
        return None
    return parts[0], parts[1], int(parts[2])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, owned by someone else
        return True
    return True


def _newest_mtime(path: Path) -> float:
    times = [path.lstat().st_mtime]
    if path.is_dir() and not path.is_symlink():
        times += [p.lstat().st_mtime for p in path.rglob("*")]
    return max(times)


def remove_orphans(folder: str | os.PathLike, prefix: str | None = None, grace_s: float = ORPHAN_GRACE_S) -> list[Path]:
    """Remove entries of `folder` named by `owned_name` (with `prefix`, or any) whose process, on this host, is gone.

    A process killed outright (kill -9, power loss) cannot clean up after itself; this is how its staging goes.
    An entry of another host, of a live process, or touched within `grace_s` is left alone. Never raises.
    """
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    now = time.time()
    for p in entries:
        owner = _owner(p.name)
        if owner is None or (prefix is not None and owner[0] != prefix) or owner[1] != _HOST or _alive(owner[2]):
            continue
        try:
            if now - _newest_mtime(p) < grace_s:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
        except OSError:
            continue
    return removed

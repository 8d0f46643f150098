"""File helpers used across the library: atomic writes, safe file-name slugs, staging folders that a crash can
leave behind (named by their owner, so they can be removed later), and output folders switched in as a whole."""

from __future__ import annotations

import ctypes
import errno
import glob
import json
import os
import re
import secrets
import shutil
import socket
import stat
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

from .errors import GRExplorerError, OutputError

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


def expand_user(path: str | os.PathLike, what: str, error: type[GRExplorerError] = GRExplorerError) -> Path:
    """`path` with a leading ~ or ~user expanded; `error` naming the input when that user does not exist
    (Path.expanduser raises a bare RuntimeError there)."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        user = str(path).split("/", 1)[0]
        raise error(f"The {what} {str(path)!r} starts with {user!r}, the home folder of a user this machine does not "
                    f"know. Valid: ~/..., an absolute path or a path relative to the current folder.") from None


def check_writable(folder: str | os.PathLike, what: str) -> Path:
    """Create `folder` if needed and prove a file can be written there, before any long work starts."""
    folder = expand_user(folder, what)
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


# -- an output folder switched in as a whole ------------------------------------------------------------------
#: written last into every published output folder: the files of the set (a folder without it is not a whole set)
MANIFEST = ".gr-explorer-outputs.json"
_PREVIOUS = "previous"


def _previous_prefix(out: Path) -> str:
    return f".{out.name}~{_PREVIOUS}"


def check_output_folder(folder: str | os.PathLike, what: str, known: tuple[str, ...] = ()) -> Path:
    """Prove before any work that `folder` can be replaced as a whole by `publish_folder`; return it.

    Valid: a new folder (its parent writable), an empty one, or an earlier output folder: one carrying MANIFEST,
    or (written before MANIFEST existed) holding only names in `known`. Anything else in it would be lost when the
    set is switched in, so it is refused, as are a mount point and the folder the process runs in.
    """
    out = expand_user(folder, what, OutputError)
    if out.is_symlink():
        out = out.resolve()
    full = Path(os.path.abspath(out))
    try:
        if full.exists() and not full.is_dir():
            raise OutputError(f"The {what} {str(folder)!r} cannot be written (it is a file, not a folder). "
                              f"Valid: a folder you can write to.")
        if full.is_dir():
            if os.path.ismount(full) or Path.cwd().resolve().is_relative_to(full.resolve()):
                why = "a mount point" if os.path.ismount(full) else "the folder this command runs in, or holds it"
                raise OutputError(f"The {what} {str(folder)!r} is {why}; outputs are switched in as a whole folder. "
                                  f"Valid: a subfolder, e.g. {str(out / 'run')!r}.")
            foreign = _foreign(full, known)
            if foreign:
                raise OutputError(f"The {what} {str(folder)!r} holds files that are not outputs of a gr-explorer "
                                  f"sweep ({', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}); outputs "
                                  f"replace the folder as a whole, so they would be lost. Valid: a new or empty "
                                  f"folder, or an earlier run's output folder.")
    except OSError as e:
        if isinstance(e, OutputError):
            raise
        raise OutputError(f"The {what} {str(folder)!r} cannot be read ({e.strerror or e}). Valid: a folder you can "
                          f"read and write.") from e
    check_writable(full.parent, f"folder that holds the {what} {str(folder)!r}:")
    return out


def _foreign(out: Path, known: tuple[str, ...]) -> list[str]:
    names = sorted(p.name for p in out.iterdir())
    if MANIFEST in names:
        return []
    return [n for n in names if n not in known]


def publish_folder(out: str | os.PathLike, fill: Callable[[Path], list[Path]], known: tuple[str, ...] = ()) -> list[Path]:
    """Write a whole set of files into a staging folder beside `out`, then switch it in: all or nothing.

    `fill(staging)` writes the files and returns their paths; the return value names them under `out`. If `fill`
    or the switch fails (an exception, Ctrl-C, a SIGTERM turned into an exception), the staging folder is removed
    and `out` is left as it was. The switch is one atomic exchange of the two folders where Linux's renameat2
    supports it; elsewhere it is two renames (out -> `.<out>~previous~...`, staging -> out) and then the old set is
    removed. A process killed between those two renames leaves `out` absent and the previous set beside it under
    that name: a reader can tell, and the next `publish_folder` with that `out` renames it back before it starts
    (`recover_folder`). A staging folder of a process killed outright is removed by a later publish beside it
    (`remove_orphans`).
    """
    shown = expand_user(out, "output folder", OutputError)
    if shown.is_symlink():
        shown = shown.resolve()
    out = Path(os.path.abspath(shown))
    parent = out.parent
    recover_folder(out)
    remove_orphans(parent, f".{out.name}")
    if out.exists():  # the old set of a switch cut short after its second rename
        remove_orphans(parent, _previous_prefix(out))
    if out.is_dir() and _foreign(out, known):  # appeared since check_output_folder
        raise OutputError(f"{str(out)!r} now holds files that are not outputs of a gr-explorer sweep; nothing was "
                          f"written there. Valid: a new or empty folder, or an earlier run's output folder.")
    stage = parent / owned_name(f".{out.name}")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        stage.mkdir()
        if out.is_dir():
            os.chmod(stage, stat.S_IMODE(out.stat().st_mode))
        written = [Path(p) for p in fill(stage)]
        atomic_write(stage / MANIFEST, json.dumps({"files": sorted(str(p.relative_to(stage)) for p in written)}))
        _switch(stage, out)
    except OutputError:
        raise
    except OSError as e:
        raise OutputError(f"The outputs could not be written to {str(out)!r} ({e.strerror or e}); the folder is left as "
                          f"it was (an earlier run's outputs there are whole).") from e
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    return [shown / p.relative_to(stage) for p in written]


def recover_folder(out: str | os.PathLike) -> Path | None:
    """If a switch was cut between its two renames (`out` absent, its previous set beside it), put that set back."""
    out = Path(os.path.abspath(expand_user(out, "output folder", OutputError)))
    if out.exists():
        return None
    previous = sorted(out.parent.glob(glob.escape(_previous_prefix(out)) + "~*"), key=lambda p: p.stat().st_mtime)
    if not previous:
        return None
    os.rename(previous[-1], out)
    warnings.warn(f"{str(out)!r} was missing and {previous[-1].name!r} beside it held the previous outputs (a run was "
                  f"stopped while switching its outputs in); they are back in place.", stacklevel=2)
    return out


def _switch(stage: Path, out: Path) -> None:
    """Make `stage` be `out` in one step where the OS can; remove the set it replaces."""
    if not out.exists():
        os.rename(stage, out)
        return
    if _exchange(stage, out):  # out is now the new set, stage the old one (removed by the caller)
        return
    backup = out.parent / owned_name(_previous_prefix(out))
    os.rename(out, backup)
    try:
        os.rename(stage, out)
    except BaseException:
        os.rename(backup, out)
        raise
    shutil.rmtree(backup, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where the OS or filesystem cannot."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))

"""The server's data roots: the only folders the app reads images from and writes files to.

A browser user is untrusted. Every path the user types is resolved *inside* a
data root (symlinks followed, `..` refused) before anything touches the disk,
and everything the app shows or hands out (model names, run.json, error
messages) names files relative to the roots, never by their server path.

Where the roots are, in order of precedence:

* `GR_EXPLORER_DATA_ROOTS`: folders separated by the OS path separator (`:`);
* `.streamlit/secrets.toml`: `[gr_explorer]` `data_roots = ["/srv/images", ...]`;
* default: `~/gr_explorer_data` (created on first use).

A relative path is looked up in each root in turn (like a search path); the
first root is also where uploads (`uploads/<digest>/`), trained models
(`trained/<digest>/`) and torchvision downloads go.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from ..errors import GRExplorerError

ENV_VAR = "GR_EXPLORER_DATA_ROOTS"
SECRETS_SECTION, SECRETS_KEY = "gr_explorer", "data_roots"
DEFAULT_ROOT = "~/gr_explorer_data"
#: an absolute path left in a message after the roots were made relative (URLs are not paths: no ':' or '/' before)
_ABS_PATH = re.compile(r"(?<![\w:/.~<>-])/[^\s'\"/,;:()\[\]]+(?:/[^\s'\"/,;:()\[\]]+)*/?")
HIDDEN = "<server path>"


class DataRootError(GRExplorerError, ValueError):
    """A path outside the data roots (or otherwise not allowed); the message never names a server file."""


def _configured() -> list[str]:
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return [p for p in env.split(os.pathsep) if p.strip()]
    try:
        if st.secrets.load_if_toml_exists():
            value = (st.secrets.get(SECRETS_SECTION) or {}).get(SECRETS_KEY)
            if isinstance(value, str):
                value = [value]
            if value:
                return [str(v) for v in value]
    except Exception:  # noqa: BLE001 -- a broken secrets file: fall back to the default root
        pass
    return [DEFAULT_ROOT]


@dataclass(frozen=True)
class DataRoots:
    """Resolved roots (real paths), first = where the app writes."""

    roots: tuple[Path, ...]

    @classmethod
    def from_settings(cls) -> "DataRoots":
        paths = []
        for text in _configured():
            p = Path(text).expanduser()
            p.mkdir(parents=True, exist_ok=True)  # a configured root is the admin's choice, never the user's
            paths.append(Path(os.path.realpath(p)))
        return cls(tuple(dict.fromkeys(paths)))

    @property
    def writable(self) -> Path:
        return self.roots[0]

    def folder(self, name: str) -> Path:
        """A folder the app owns under the first root (uploads, trained, torchvision), created when missing."""
        p = self.writable / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    # -- user paths -> server paths -------------------------------------------------------------
    def _inside(self, path: Path) -> Path | None:
        real = Path(os.path.realpath(path))
        for root in self.roots:
            if real == root or root in real.parents:
                return root
        return None

    def resolve(self, text: str, what: str) -> Path:
        """The server path of a user-typed path, which must lie inside a root (refused otherwise).

        Relative paths are looked up in each root in turn; an absolute path is accepted only when it
        is inside a root already. The refusal names neither the roots nor anything on the disk.
        """
        text = str(text).strip()
        valid = (f"Valid: a path inside the app's data folder, e.g. my_images (class folders inside it), "
                 f"as the app lists it; the server's admin chooses the data folder with {ENV_VAR}.")
        if not text or "\x00" in text or text.startswith("~"):
            raise DataRootError(f"The {what} {text!r} is not allowed. {valid}")
        p = Path(text)
        if p.is_absolute():
            if self._inside(p) is None:
                raise DataRootError(f"The {what} {text!r} is outside the app's data folder. {valid}")
            return Path(os.path.realpath(p))
        first = None
        for root in self.roots:
            cand = root / p
            if self._inside(cand) is None:  # '..' or a symlink that leads out
                raise DataRootError(f"The {what} {text!r} is outside the app's data folder. {valid}")
            if cand.exists():
                return Path(os.path.realpath(cand))
            first = first or cand
        return first

    # -- server paths -> what the user sees ------------------------------------------------------
    def relative(self, path: str | os.PathLike) -> str:
        """A server path as the user sees it: relative to its root ('.' for a root itself)."""
        real = Path(os.path.realpath(path))
        for root in self.roots:
            if real == root:
                return "."
            if root in real.parents:
                return real.relative_to(root).as_posix()
        raise DataRootError("A file outside the app's data folder cannot be shown.")

    def redact(self, text: str) -> str:
        """A message with every root made relative and any other absolute path hidden."""
        out = str(text)
        spellings = set()
        for root in self.roots:
            spellings.add(str(root))
        for text_root in _configured():
            spellings.add(str(Path(text_root).expanduser()).rstrip("/"))
        for s in sorted(spellings, key=len, reverse=True):
            if s and s != "/":
                out = out.replace(s + "/", "").replace(s, "the app's data folder")
        return _ABS_PATH.sub(lambda m: HIDDEN + ("." if m.group(0).endswith(".") else ""), out)


def data_roots() -> DataRoots:
    """The roots of this server process (settings are read on every call: tests and admins change them)."""
    return DataRoots.from_settings()

"""User images in class-per-folder layout: `<path>/<class>/<image>`, or `<path>/train/<class>/<image>` with
`<path>/test/` (or `val/`, `valid/`, `validation/`) beside it.

Why it works this way:
- The split must not move with the sampling seed, or accuracies from
  different seeds would be measured on different test images. With
  `train/` and `test/` (or `val/` ...) folders those are used, and both must
  hold the same classes (a class missing from one split cannot be learned or
  cannot be scored: refused, naming it); otherwise, within each class, files are ranked by a hash of their relative
  path and the first 20% go to test: a fixed, exactly stratified split.
- Files are only listed and stat-ed up front; the stratified subsample is
  drawn before any decoding, so a small sample of a huge folder is fast.
- The feature-cache fingerprint (`fingerprint="stat"`, the default) hashes
  relative paths, sizes and modification times, so adding, removing or
  rewriting a file changes the key without reading any pixel. What it
  trusts: a file rewritten in place with the same size and the same mtime
  (some sync and restore tools keep mtimes) looks unchanged, and its old
  features would be reused. `fingerprint="content"` hashes the bytes of every
  chosen file instead (on threads; about the cost of reading them once), so
  such an edit is caught and a touched but unchanged file is still a hit.
- Pixels are decoded to 8-bit RGB by the rules of `decode.py` (16-bit and
  float images scaled, alpha composited on white, first frame), which are
  part of the cache key with the Pillow version.
- Strict about contents: a non-image file inside a class folder or an image
  that fails to decode is an error naming the file, not a silent skip; so are
  a folder that cannot be read, a symlink back to a folder above it (a loop),
  and entries that are neither files nor folders (a named pipe would block the
  decoder forever). With `confine` (the app's data roots) every symlink, at
  every level, must lead inside those folders.
  Hidden files and folders ('.' prefix) are ignored, as are non-image files
  at the top level (README, CSVs); images at the top level are an error.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image

from ..errors import DatasetError
from ..files import expand_user
from ..hashing import file_digest, json_digest
from ..names import FINGERPRINTS
from . import decode
from .base import Images, stratified_indices
from .decoders import decode_file
from .resize import resize_pil

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
DEFAULT_SIZE = 224  # used when images differ in size and no image_size was given
TEST_FRACTION = 0.2
TASKS = ["label"]
_SHOW = 5
#: how a folder's files are recognised in the feature cache (see the module docstring)


#: folder names read as the held-out split next to `train/`, in order of preference
TEST_DIRS = ("test", "val", "valid", "validation")


def _layout_help(root: Path) -> str:
    return (
        f"Expected class-per-folder images: {root}/<class>/<image> (e.g. {root}/cat/001.png, {root}/dog/002.jpg), "
        f"or {root}/train/<class>/<image> and {root}/test/<class>/<image> (test/ may be called {', '.join(TEST_DIRS[1:])}). "
        f"Image extensions: {', '.join(IMAGE_EXTENSIONS)}."
    )


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


class _Walker:
    """One walk of an image folder: entries followed through their symlinks, each checked before it is listed.

    Refused, naming the entry relative to the folder: a folder that cannot be read (permissions, an I/O error), a
    symlink that leads back to a folder above it (a loop), anything that is not a regular file or a folder (a named
    pipe would block the decoder forever, a device never ends), and, when `confine` names the only folders that may
    be read (the app's data roots), a symlink at any level whose target lies outside them.
    """

    def __init__(self, root: Path, confine: tuple[Path, ...] | None):
        self.root, self.confine = root, confine
        self.bad: list[str] = []  # not images
        self.special: list[str] = []  # not regular files: pipes, devices, sockets, broken links

    def _fail(self, rel: str, why: str, valid: str) -> DatasetError:
        return DatasetError(f"Image folder {str(self.root)!r}: {rel!r} {why}. Valid: {valid}")

    def check_inside(self, path: Path, rel: str) -> None:
        """A path (a link or below one) must resolve inside `confine` when that is set."""
        if self.confine is None:
            return
        real = Path(os.path.realpath(path))
        if not any(real == c or c in real.parents for c in self.confine):
            raise self._fail(rel, "is a symbolic link that leads outside the app's data folder",
                             "image files and class folders inside the data folder (links are followed only when "
                             "they stay inside it).")

    def entries(self, folder: Path, rel: str) -> list[os.DirEntry]:
        try:
            with os.scandir(folder) as it:
                return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
        except OSError as e:
            raise self._fail(rel or ".", f"cannot be read ({e.strerror or e})",
                             "class folders this process can read (check their permissions).") from None

    def kind(self, e: os.DirEntry, rel: str) -> str:
        """'dir', 'file' or 'special' (following symlinks, checked against `confine`)."""
        try:
            if e.is_symlink():
                self.check_inside(Path(e.path), rel)
            if e.is_dir():
                return "dir"
            return "file" if e.is_file() else "special"
        except OSError:  # a link that cannot be followed (a loop of links, permissions)
            return "special"

    def walk(self, folder: Path, rel: str, files: list, ancestors: frozenset = frozenset()) -> None:
        """Collect (relative path, size, mtime_ns) of images below `folder`; non-images go to `bad`."""
        here = ancestors | {os.path.realpath(folder)}
        for e in self.entries(folder, rel):
            r = f"{rel}/{e.name}"
            kind = self.kind(e, r)
            if kind == "dir":
                if os.path.realpath(e.path) in here:
                    raise self._fail(r, "is a symbolic link to a folder above it (a loop)",
                                     "class folders that hold images, without links back up the tree.")
                self.walk(Path(e.path), r, files, here)
            elif kind == "special":
                self.special.append(r)
            elif _is_image(e.name):
                st = e.stat()
                files.append((r, st.st_size, st.st_mtime_ns))
            else:
                self.bad.append(r)


@dataclass
class Listing:
    """What is in the folder, before any pixel is read."""

    root: Path
    layout: str  # "train/test" or "fixed-hash-split"
    classes: list[str]
    files: dict[str, list[str]]  # split -> relative paths
    labels: dict[str, np.ndarray]  # split -> class index per file
    fingerprint: str


def _scan_split(root: Path, split_dir: Path, prefix: str, walker: _Walker) -> dict[str, list[tuple]]:
    per_class: dict[str, list[tuple]] = {}
    stray = []
    for e in walker.entries(split_dir, prefix.rstrip("/")):
        kind = walker.kind(e, f"{prefix}{e.name}")
        if kind == "dir":
            files: list[tuple] = []
            walker.walk(Path(e.path), f"{prefix}{e.name}", files, frozenset({os.path.realpath(split_dir)}))
            per_class[e.name] = files
        elif kind == "special":
            walker.special.append(f"{prefix}{e.name}")
        elif _is_image(e.name):
            stray.append(f"{prefix}{e.name}")
    if stray:
        raise DatasetError(
            f"Image folder {str(root)!r} has images outside class folders: {', '.join(stray[:_SHOW])}"
            f"{' ...' if len(stray) > _SHOW else ''}. Move each image into a folder named after its class. {_layout_help(root)}"
        )
    return per_class


def scan(path: str, confine: tuple[Path, ...] | None = None) -> Listing:
    """List the folder (see _Walker for what is refused); `confine`: the only folders links may lead into."""
    root = expand_user(path, "image folder", DatasetError)
    if not root.exists():
        raise DatasetError(f"Image folder {path!r} does not exist. {_layout_help(root)}")
    if not root.is_dir():
        raise DatasetError(f"Image folder {path!r} is not a directory. {_layout_help(root)}")
    split_layout = (root / "train").is_dir()
    test_dir = next((d for d in TEST_DIRS if (root / d).is_dir()), None)
    if split_layout and test_dir is None:
        raise DatasetError(f"Image folder {path!r} has a train/ folder but no held-out folder beside it "
                           f"({', '.join(t + '/' for t in TEST_DIRS)}); a probe is scored on images it was not fitted "
                           f"on. Add one, or put the class folders directly in {path!r} for a fixed 80/20 split. "
                           f"{_layout_help(root)}")
    walker = _Walker(root, confine)
    if split_layout:
        for d in ("train", test_dir):
            walker.check_inside(root / d, d)
        scanned = {s: _scan_split(root, root / d, f"{d}/", walker) for s, d in (("train", "train"), ("test", test_dir))}
    else:
        scanned = {"all": _scan_split(root, root, "", walker)}
    bad = walker.bad
    if walker.special:
        shown = walker.special
        raise DatasetError(
            f"Image folder {path!r} contains {len(shown)} entr{'y that is' if len(shown) == 1 else 'ies that are'} "
            f"neither files nor folders (named pipes, devices, sockets or links that lead nowhere): {', '.join(shown[:_SHOW])}"
            f"{' ...' if len(shown) > _SHOW else ''}. Valid: image files in class folders; remove those entries.")
    if bad:
        raise DatasetError(
            f"Image folder {path!r} contains {len(bad)} file(s) that are not images: {', '.join(bad[:_SHOW])}"
            f"{' ...' if len(bad) > _SHOW else ''}. Valid image extensions: {', '.join(IMAGE_EXTENSIONS)} "
            f"(hidden files starting with '.' are ignored). Remove or move those files."
        )
    empty = sorted({c for per_class in scanned.values() for c, f in per_class.items() if not f}
                   - {c for per_class in scanned.values() for c, f in per_class.items() if f})
    if empty:
        warnings.warn(f"Image folder {path!r}: class folder(s) without images ignored: {', '.join(empty)}.", stacklevel=3)
    classes = sorted({c for per_class in scanned.values() for c, f in per_class.items() if f})
    if not classes:
        found = sorted({c for per_class in scanned.values() for c in per_class})
        what = f"class folders ({', '.join(found[:_SHOW])}) but no images in them" if found else "no class folders"
        raise DatasetError(f"Image folder {path!r} has {what}. {_layout_help(root)}")
    if len(classes) == 1:
        raise DatasetError(
            f"Image folder {path!r} has only one class folder, {classes[0]!r}; a probe needs at least two class folders "
            f"(one per class, e.g. {root}/{classes[0]}/ and {root}/<another class>/)."
        )

    if split_layout:
        present = {s: {c for c, f in scanned[s].items() if f} for s in ("train", "test")}
        only_train, only_test = sorted(present["train"] - present["test"]), sorted(present["test"] - present["train"])
        if only_train or only_test:
            raise DatasetError(
                f"Image folder {path!r}: train/ and {test_dir}/ hold different classes"
                f"{'; only in train/: ' + ', '.join(only_train[:_SHOW]) if only_train else ''}"
                f"{'; only in ' + test_dir + '/: ' + ', '.join(only_test[:_SHOW]) if only_test else ''}. "
                f"Valid: the same class folders in both splits (a class missing from one split cannot be learned or "
                f"scored).")
    index = {c: i for i, c in enumerate(classes)}
    entries = [f for per_class in scanned.values() for fs in per_class.values() for f in fs]
    digest = hashlib.sha256("\n".join(f"{r}\t{s}\t{m}" for r, s, m in sorted(entries)).encode()).hexdigest()

    files: dict[str, list[str]] = {"train": [], "test": []}
    if split_layout:
        for split in ("train", "test"):
            for c, fs in scanned[split].items():
                files[split] += [r for r, _, _ in fs]
    else:
        for c, fs in scanned["all"].items():
            ranked = sorted((r for r, _, _ in fs), key=lambda r: hashlib.sha1(r.encode()).hexdigest())
            n_test = int(round(TEST_FRACTION * len(ranked))) if len(ranked) >= 5 else (1 if len(ranked) >= 2 else 0)
            files["test"] += ranked[:n_test]
            files["train"] += ranked[n_test:]
    labels = {}
    for split in files:
        files[split].sort()
        labels[split] = np.array([index[r.split("/")[1 if split_layout else 0]] for r in files[split]], dtype=np.int64)
    return Listing(root, f"train/{test_dir}" if split_layout else "fixed-hash-split", classes, files, labels, digest)


def _header_size(path: Path) -> tuple[int, int] | Exception:
    """(height, width) from the file header alone (no pixel decoding), or why it cannot be read."""
    try:
        with Image.open(path) as img:
            return img.size[1], img.size[0]
    except Exception as e:  # PIL raises OSError, ValueError, SyntaxError ... for bad files
        return e


def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 2))


def failed_files(root: Path, failed: list[tuple[str, Exception | str]]) -> DatasetError:
    """One error naming every file (the first few) that could not be decoded."""
    shown = "; ".join(f"{r} ({e if isinstance(e, str) else f'{type(e).__name__}: {e}'})" for r, e in failed[:_SHOW])
    return DatasetError(f"Image folder {str(root)!r}: {len(failed)} file(s) could not be decoded as images: {shown}"
                        f"{' ...' if len(failed) > _SHOW else ''}. Remove or replace them.")


class FileImages(Images):
    """Images decoded on demand (in DataLoader workers while extracting): only the listing is held in memory.

    All images come out at one size: `size` (shorter side resized, centre crop) when given, else the
    files' common native size, else DEFAULT_SIZE when they differ (decided from file headers up front,
    which also names any file whose header is broken before work starts; a file corrupt beyond its
    header is named when it is read).
    """

    streams = True

    def __init__(self, root: Path, rel_paths: list[str], size: int | None, listing_digest: str,
                 fingerprint: str = "stat"):
        self.root, self.rel_paths = root, list(rel_paths)
        self.size, self._native = size, None
        self.fingerprint_kind, self._listing, self._digest = fingerprint, listing_digest, None
        if size is None and self.rel_paths:
            with _pool() as pool:
                found = list(pool.map(lambda r: _header_size(root / r), self.rel_paths))
            failed = [(r, e) for r, e in zip(self.rel_paths, found) if isinstance(e, Exception)]
            if failed:  # a file whose header is broken is named now; one broken further in, when it is read
                raise failed_files(root, failed)
            sizes = set(found)
            if len(sizes) == 1:
                self._native = next(iter(sizes))
            else:
                self.size = DEFAULT_SIZE

    def __len__(self) -> int:
        return len(self.rel_paths)

    @property
    def shape(self) -> tuple[int, int, int]:
        h, w = self._native if self.size is None and self._native else (self.size, self.size)
        return 3, h, w

    def failure(self, failed: list[tuple[int, str]]) -> DatasetError:
        return failed_files(self.root, [(self.rel_paths[i], why) for i, why in failed])

    def decode_one(self, i: int, decoder: str = "pil") -> np.ndarray | Exception:
        """Image i as HWC uint8 with a CPU decoder (data/decoders.py), or the exception that decoding raised."""
        arr = decode_file(self.root / self.rel_paths[i], self.size, decoder)
        if isinstance(arr, np.ndarray) and self.size is None and arr.shape[:2] != self._native:
            arr = np.asarray(resize_pil(Image.fromarray(arr), DEFAULT_SIZE))  # pragma: no cover - header lied
        return arr

    def get(self, idx) -> torch.Tensor:
        ids = list(range(len(self)))[idx] if isinstance(idx, slice) else [int(i) for i in idx]
        with _pool() as pool:
            arrays = list(pool.map(self.decode_one, ids))
        return stack_decoded(self.root, [self.rel_paths[i] for i in ids], arrays)

    def fingerprint(self) -> str:
        """The feature-cache key of these images: the chosen files (by stat, or by their bytes), size, decoder."""
        if self._digest is None:
            files = self._listing if self.fingerprint_kind == "stat" else self._content_digest()
            self._digest = json_digest({"files": files, "chosen": self.rel_paths, "size": self.size,
                                        "fingerprint": self.fingerprint_kind, "decoder": decode.VERSION,
                                        "pillow": PIL.__version__}, length=32)
        return self._digest

    def _content_digest(self) -> list[str]:
        try:
            with _pool() as pool:  # hashlib releases the GIL: threads read and hash files in parallel
                return list(pool.map(lambda r: file_digest(self.root / r), self.rel_paths))
        except OSError as e:
            raise DatasetError(f"Image folder {str(self.root)!r}: {getattr(e, 'filename', None) or 'a file'} could not "
                               f"be read to fingerprint its content ({e.strerror or e}).") from e


def stack_decoded(root: Path, rel_paths: list[str], arrays: list) -> torch.Tensor:
    """uint8 [N, 3, H, W] from decoded HWC arrays; DatasetError naming every file that failed to decode."""
    failed = [(r, a) for r, a in zip(rel_paths, arrays) if isinstance(a, Exception)]
    if failed:
        raise failed_files(root, failed)
    if not arrays:
        return torch.empty((0, 3, DEFAULT_SIZE, DEFAULT_SIZE), dtype=torch.uint8)
    return torch.from_numpy(np.stack(arrays).transpose(0, 3, 1, 2).copy())


def load(path: str, *, n_train: int | None, n_test: int | None, seed: int, image_size: int | None = None,
         fingerprint: str = "stat", confine: tuple[Path, ...] | None = None, **_):
    """Listing and stratified subsample now; pixels are decoded when they are read (streamed).

    `fingerprint`: "stat" (paths, sizes, mtimes) or "content" (the chosen files' bytes); see the module docstring.
    """
    if fingerprint not in FINGERPRINTS:
        raise DatasetError(f"fingerprint={fingerprint!r} is not valid. Valid: {', '.join(FINGERPRINTS)}.")
    listing = scan(path, confine)
    labels, rel = {}, {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = listing.labels[split]
        idx = stratified_indices(y, n, seed) if len(y) else np.arange(0)
        labels[split] = {"label": torch.from_numpy(y[idx]).long()}
        rel[split] = [listing.files[split][i] for i in idx]
    # Sizes are decided over both splits together so that the "one size, or all resized to 224" rule treats them alike.
    both = FileImages(listing.root, rel["train"] + rel["test"], image_size, listing.fingerprint)
    size = both.size
    images = {s: FileImages(listing.root, rel[s], size, listing.fingerprint, fingerprint) for s in ("train", "test")}
    if size is None:
        for im in images.values():
            im._native = both._native
    params = {"path": str(listing.root.resolve()), "layout": listing.layout, "files_sha256": listing.fingerprint,
              "fingerprint": fingerprint}
    return images["train"], images["test"], labels["train"], labels["test"], {"label": listing.classes}, params

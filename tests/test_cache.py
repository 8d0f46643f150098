"""The feature cache trusts nothing wrong: the index under the checksum, every byte-changing input in the key, bad
entries dropped (with a warning naming the cache) but never on a passing I/O error, staging unique and cleaned."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import gr_explorer.features as features
from gr_explorer.cache import FeatureCache
from gr_explorer.data import load_dataset
from gr_explorer.errors import CacheError, ConfigError, DatasetError
from gr_explorer.features import extract_features
from gr_explorer.files import owned_name, remove_orphans
from helpers import random_dataset, tiny_model


def _entries(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("meta.json") if ".staging" not in p.parts)


def _one_entry(tmp_path, storage="float16"):
    ds, cache = random_dataset(), FeatureCache(tmp_path)
    first = extract_features(tiny_model(), ds, ["pool"], cache=cache, storage=storage)
    (entry,) = _entries(tmp_path)
    return ds, cache, first, entry


# -- the index is under the checksum -----------------------------------------------------------------------------
def _edits():
    """Consistent edits of meta.json: each keeps the files' byte counts, so only the checksum can catch it."""
    def dtype_and_shape(m):  # the case: float16 [64, 32] read as float32 [32, 32]
        m["dtype"], m["train_shape"] = "float32", [m["train_shape"][0] // 2, m["train_shape"][1]]
        m["test_shape"] = [m["test_shape"][0] // 2, m["test_shape"][1]]

    def shape_only(m):  # [64, 32] -> [128, 16]: same bytes, other rows
        m["train_shape"] = [m["train_shape"][0] * 2, m["train_shape"][1] // 2]

    def row_digest(m):
        m["rows"]["train"] = m["rows"]["test"]

    def cut_name(m):
        m["cut"] = "proj3"

    def dropped_field(m):
        del m["view"]

    return [dtype_and_shape, shape_only, row_digest, cut_name, dropped_field]


@pytest.mark.parametrize("edit", _edits(), ids=lambda f: f.__name__)
def test_a_consistent_edit_of_the_index_is_caught_dropped_and_recomputed(tmp_path, edit):
    ds, cache, first, entry = _one_entry(tmp_path)
    meta = json.loads((entry / "meta.json").read_text())
    edit(meta)
    (entry / "meta.json").write_text(json.dumps(meta))  # the old checksum kept: a hand edit
    with pytest.warns(UserWarning, match=rf"feature cache {str(tmp_path)!r} held a bad entry .*meta\.json does not "
                                         r"match its checksum.*dropped and recomputed"):
        again = extract_features(tiny_model(), ds, ["pool"], cache=cache, storage="float16")
    assert again.cached_cuts == [] and torch.equal(again.train["pool"], first.train["pool"])
    assert extract_features(tiny_model(), ds, ["pool"], cache=cache, storage="float16").cached_cuts == ["pool"]


@pytest.mark.parametrize("text", [b"{oops", b"\xff\xfe", b"[]", b'{"key": 1}'])
def test_an_unreadable_index_is_a_bad_entry(tmp_path, text):
    _, cache, _, entry = _one_entry(tmp_path)
    (entry / "meta.json").write_bytes(text)
    with pytest.warns(UserWarning, match="held a bad entry"):
        assert cache.get(entry.name) is None
    assert not entry.exists()


def test_a_missing_rows_file_is_a_bad_entry(tmp_path):
    _, cache, _, entry = _one_entry(tmp_path)
    (entry / "test.bin").unlink()
    with pytest.warns(UserWarning, match="test.bin is missing"):
        assert cache.get(entry.name) is None
    assert not entry.exists()


# -- a passing I/O error is not a bad entry ------------------------------------------------------------------------
@pytest.mark.parametrize("where, err", [
    ("meta", errno.EACCES), ("meta", errno.EMFILE), ("meta", errno.EIO),
    ("rows", errno.EIO), ("rows", errno.EMFILE), ("stat", errno.EACCES), ("map", errno.ENOMEM),
])
def test_an_io_error_raises_clearly_and_drops_nothing(tmp_path, monkeypatch, where, err):
    import gr_explorer.cache as cache_mod

    ds, cache, _, entry = _one_entry(tmp_path)
    before = {p.name: p.read_bytes() for p in entry.iterdir()}
    boom = OSError(err, os.strerror(err))

    def fail(*a, **k):
        raise boom

    if where == "meta":
        real = Path.read_bytes
        monkeypatch.setattr(Path, "read_bytes", lambda self: fail() if self.name == "meta.json" else real(self))
    elif where == "rows":
        monkeypatch.setattr(cache_mod, "_file_hash", fail)
    elif where == "stat":
        real_stat = Path.stat
        monkeypatch.setattr(Path, "stat", lambda self, **k: fail() if self.suffix == ".bin" else real_stat(self, **k))
    else:
        monkeypatch.setattr(torch, "from_file", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("mmap failed")))
    with pytest.raises(CacheError, match=rf"feature cache {str(tmp_path)!r} cannot be read now.*nothing was dropped"):
        extract_features(tiny_model(), ds, ["pool"], cache=cache, storage="float16")
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in entry.iterdir()} == before  # kept, untouched
    assert extract_features(tiny_model(), ds, ["pool"], cache=cache, storage="float16").cached_cuts == ["pool"]


def test_an_io_error_is_exit_code_2_in_the_cli(tmp_path, monkeypatch, capsys):
    from gr_explorer.cli import main
    from helpers import saved_tiny

    _, path = saved_tiny(tmp_path)
    args = ["sweep", "--model", f"file:{path}", "--tasks", "shape", "--n-train", "60", "--n-test", "30", "--probe", "knn",
            "--cache-dir", str(tmp_path / "c"), "--quiet"]
    assert main(args) == 0
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: (_ for _ in ()).throw(OSError(errno.EMFILE, "Too many open files"))
                        if self.name == "meta.json" else real(self))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Too many open files" in err and str(tmp_path / "c") in err and "Traceback" not in err


# -- every input that changes a feature byte is in the key ----------------------------------------------------------
def test_the_key_changes_with_batch_size_numerics_and_module_settings(tmp_path, monkeypatch):
    ds, cache = random_dataset(), FeatureCache(tmp_path)
    a = extract_features(tiny_model(), ds, ["pool"], cache=cache, batch_size=8)
    b = extract_features(tiny_model(), ds, ["pool"], cache=cache, batch_size=12)
    assert a.key != b.key and b.cached_cuts == []
    assert extract_features(tiny_model(), ds, ["pool"], cache=cache, batch_size=8).cached_cuts == ["pool"]
    other = dict(features.numerics(torch.device("cpu")), torch="0.0.0")
    monkeypatch.setattr(features, "numerics", lambda device: other)
    c = extract_features(tiny_model(), ds, ["pool"], cache=cache, batch_size=8)
    assert c.key != a.key and c.cached_cuts == []
    monkeypatch.undo()
    model = tiny_model()
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.eps = 1e-2  # a setting, not a weight: the same weights hash, other features
    d = extract_features(model, ds, ["pool"], cache=cache, batch_size=8)
    assert d.key != a.key and d.cached_cuts == [] and not torch.equal(d.train["pool"], a.train["pool"])


def test_the_key_does_not_move_with_mode_or_use():
    model, ds = tiny_model(), random_dataset()
    key = features.base_key(model, ds, torch.device("cpu"))
    model.train()
    extract_features(model, ds, ["pool"], cache=False)
    assert features.base_key(model, ds, torch.device("cpu")) == key


# -- staging: unique per process and job, cleaned up -------------------------------------------------------------
def test_writers_of_one_key_stage_apart_and_leave_nothing(tmp_path):
    cache = FeatureCache(tmp_path)
    rows = np.arange(12, dtype=np.float32).reshape(4, 3)
    w1, w2 = cache.writer("k" * 64, {}), cache.writer("k" * 64, {})
    assert w1.tmp != w2.tmp and w1.tmp.parent == w2.tmp.parent == tmp_path / ".staging"
    for w in (w1, w2):
        w.open("train", 4, 3)
        w.open("test", 0, 3)
        w.write("train", 0, rows)
    w1.commit()
    w2.commit()  # the entry exists: theirs is kept, ours removed
    w3 = cache.writer("j" * 64, {})
    w3.abort()
    assert list((tmp_path / ".staging").iterdir()) == []
    assert np.array_equal(cache.get("k" * 64)["train"].numpy(), rows)


def test_shards_of_two_jobs_with_one_key_never_meet(tmp_path):
    from gr_explorer.features import ShardWriter

    cache = FeatureCache(tmp_path)
    jobs = [cache.staging_dir() / owned_name("job") for _ in range(2)]
    writers = [ShardWriter(j, "k" * 64, 0, "float32") for j in jobs]
    assert writers[0].paths["train"] != writers[1].paths["train"]
    for w, value in zip(writers, (1.0, 2.0)):
        w.open("train", 4, 3)
        w.write("train", 0, np.full((4, 3), value, np.float32))
        w.close()
    assert [np.fromfile(w.paths["train"], np.float32)[0] for w in writers] == [1.0, 2.0]
    writers[0].abort()
    assert not writers[0].paths["train"].exists() and writers[1].paths["train"].exists()


def test_staging_of_a_killed_process_is_removed_later(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    staging = tmp_path / ".staging"
    staging.mkdir()
    name = owned_name("abc").rsplit("~", 2)[0]  # prefix~host
    orphan = staging / f"{name}~{pid}~dead"
    orphan.mkdir()
    (orphan / "train.bin.part").write_bytes(b"x" * 10)
    fresh = staging / f"{name}~{pid}~fresh"  # also dead, but touched a moment ago: left for now
    fresh.mkdir()
    live = staging / owned_name("live")  # this process
    live.mkdir()
    elsewhere = staging / f"abc~other-host~{pid}~x"
    elsewhere.mkdir()
    old = time.time() - 2 * 3600
    for p in (orphan, orphan / "train.bin.part", live, elsewhere):
        os.utime(p, (old, old))
    FeatureCache(tmp_path).staging_dir()
    assert not orphan.exists() and fresh.exists() and live.exists() and elsewhere.exists()
    assert remove_orphans(staging, grace_s=0) == [fresh]


# -- a content fingerprint for image folders -----------------------------------------------------------------------
def _folder(root: Path) -> Path:
    """BMP files: uncompressed, so a file rewritten with other pixels keeps its size exactly."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / c / f"{i}.bmp")
    return root


def test_content_fingerprint_catches_an_edit_that_keeps_size_and_mtime(tmp_path):
    from PIL import Image

    root = _folder(tmp_path / "imgs")
    model, cache = tiny_model(), FeatureCache(tmp_path / "c")
    stat_before = load_dataset(f"imagefolder:{root}", image_size=16).fingerprint()
    content = load_dataset(f"imagefolder:{root}", image_size=16, fingerprint="content")
    content_before = content.fingerprint()
    assert content.params["fingerprint"] == "content" and content_before != stat_before
    extract_features(model, content, ["pool"], cache=cache)
    # An in-place edit the stat fingerprint cannot see: other pixels, the same size and mtime (a restore tool).
    victim = root / "a" / "0.bmp"
    st = victim.stat()
    with Image.open(victim) as img:
        Image.fromarray(255 - np.asarray(img)).save(victim)
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert victim.stat().st_size == st.st_size and victim.stat().st_mtime_ns == st.st_mtime_ns
    assert load_dataset(f"imagefolder:{root}", image_size=16).fingerprint() == stat_before  # what "stat" trusts
    edited = load_dataset(f"imagefolder:{root}", image_size=16, fingerprint="content")
    assert edited.fingerprint() != content_before
    again = extract_features(model, edited, ["pool"], cache=cache)
    fresh = extract_features(model, edited, ["pool"], cache=False)
    assert again.cached_cuts == [] and torch.equal(again.train["pool"], fresh.train["pool"])
    os.utime(victim)  # touched, not changed: still a hit by content
    touched = load_dataset(f"imagefolder:{root}", image_size=16, fingerprint="content")
    assert touched.fingerprint() == edited.fingerprint()
    assert extract_features(model, touched, ["pool"], cache=cache).cached_cuts == ["pool"]


def test_content_fingerprint_of_an_unreadable_file_names_it(tmp_path, monkeypatch):
    import gr_explorer.data.imagefolder as imagefolder

    root = _folder(tmp_path / "imgs")
    ds = load_dataset(f"imagefolder:{root}", fingerprint="content")

    def fail(path, length=64):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(imagefolder, "file_digest", fail)
    with pytest.raises(DatasetError, match=r"a/0\.bmp could not be read to fingerprint its content \(Permission denied"):
        ds.fingerprint()


def test_fingerprint_setting_is_validated_and_documented(capsys):
    from gr_explorer.cli import build_parser
    from gr_explorer.config import SweepConfig

    with pytest.raises(ConfigError, match=r"fingerprint='sha' is invalid\. Valid: stat, content"):
        SweepConfig(models=["zoo:simclr"], fingerprint="sha")
    with pytest.raises(DatasetError, match="fingerprint='sha' is not valid"):
        load_dataset("shapes", n_train=10, n_test=10, fingerprint="sha")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sweep", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--fingerprint" in text and "size and modification time; trusts that a file rewritten" in text


def _entry(root, key: str, rows: int, max_bytes=None) -> FeatureCache:
    """One entry of `rows` x 64 float32 rows per split, written through its own store (as one run would)."""
    store = FeatureCache(root, max_bytes=max_bytes)
    w = store.writer(key, {"what": key})
    for split in ("train", "test"):
        w.open(split, rows, 64)
        w.write(split, 0, np.full((rows, 64), 1.0, dtype=np.float32))
    w.commit()
    time.sleep(0.02)  # distinct modification times, whatever the filesystem's resolution
    return store


def test_a_capped_cache_evicts_the_least_recently_used_entries(tmp_path):
    """Server mode (issue 23, item 5): the app's cache has a size cap; eviction is LRU by entry, and a store never
    evicts what it has itself written or read (a sweep's own entries stay while it runs)."""
    root = tmp_path / "c"
    one = 2 * 100 * 64 * 4  # the rows of one entry; its meta.json adds a few hundred bytes
    cap = int(3.5 * one)
    keys = [f"{i:02d}" + "k" * 62 for i in range(5)]
    for k in keys[:3]:
        _entry(root, k, 100, cap)
    assert FeatureCache(root, max_bytes=cap).get(keys[0]) is not None  # a hit: keys[0] is now the most recent
    time.sleep(0.02)
    _entry(root, keys[3], 100, cap)  # 4 entries > cap: the least recently used one (keys[1]) goes
    left = {p.name for p in root.glob("*/*") if p.is_dir()}
    assert left == {keys[0], keys[2], keys[3]}
    usage = FeatureCache(root).usage()
    assert sum(size for _, size, _, _ in usage) <= cap
    assert sum(os.path.getsize(f) for f in root.rglob("*") if f.is_file()) == sum(s for _, s, _, _ in usage)
    # one store that writes more than the cap keeps all of its own entries (they are in use), the others go
    store = FeatureCache(root, max_bytes=cap)
    for k in (keys[4], keys[1]):
        w = store.writer(k, {})
        for split in ("train", "test"):
            w.open(split, 200, 64)
            w.write(split, 0, np.zeros((200, 64), dtype=np.float32))
        w.commit()
    assert {p.name for p in root.glob("*/*") if p.is_dir()} == {keys[4], keys[1]}
    assert store.get(keys[4]) is not None and store.get(keys[1]) is not None


def test_an_uncapped_cache_keeps_everything(tmp_path):
    for i in range(3):
        _entry(tmp_path / "c", f"{i:02d}" + "u" * 62, 50)
    assert len([p for p in (tmp_path / "c").glob("*/*") if p.is_dir()]) == 3
    assert FeatureCache(tmp_path / "c").evict() == []

"""Feature extraction: one pass for all cuts, equal to direct forward passes, cached safely."""

import pytest
import torch

from gr_explorer.cache import FeatureCache
from gr_explorer.features import extract_features
from helpers import random_dataset, tiny_model


class CountingForward:
    """Counts backbone forward passes (one per batch when extracting)."""

    def __init__(self, model):
        self.n = 0
        model.backbone.module.register_forward_pre_hook(self._hook)
        model.backbone.module.stem.register_forward_pre_hook(self._hook)

    def _hook(self, *_):
        self.n += 1


def test_features_equal_direct_forward_and_one_pass_per_batch(tmp_path):
    model, ds = tiny_model(), random_dataset(n_train=50, n_test=20)
    counter = CountingForward(model)
    feats = extract_features(model, ds, batch_size=16, cache=FeatureCache(tmp_path))
    # ceil(50/16) + ceil(20/16) = 4 + 2 batches, each ONE pass for all 8 cuts.
    assert counter.n == 6 and feats.forward_batches == 6
    model = model.cpu()  # the reference: a plain fp32 forward on the CPU, whatever device extraction chose
    with torch.no_grad():
        ref_tr = model.forward_cuts(model.preprocessing(ds.train_images))
        ref_te = model.forward_cuts(model.preprocessing(ds.test_images))
    assert list(feats.train) == model.cut_names
    # CUDA extracts under bf16 autocast: 8 mantissa bits, i.e. ~0.4% relative error per op, a few ops deep.
    tol = dict(rtol=5e-2, atol=5e-2) if torch.cuda.is_available() else dict(rtol=1e-5, atol=1e-5)
    for name in model.cut_names:
        torch.testing.assert_close(feats.train[name], ref_tr[name], **tol)
        torch.testing.assert_close(feats.test[name], ref_te[name], **tol)


def test_cache_hit_runs_no_forward_pass(tmp_path):
    ds = random_dataset()
    first = extract_features(tiny_model(), ds, cache=FeatureCache(tmp_path))
    model = tiny_model()  # same weights, new object
    counter = CountingForward(model)
    again = extract_features(model, ds, cache=FeatureCache(tmp_path))
    assert counter.n == 0 and again.forward_batches == 0
    assert again.cached_cuts == model.cut_names
    for name in model.cut_names:
        assert torch.equal(first.train[name], again.train[name])


def test_new_cuts_only_computes_missing(tmp_path):
    ds, cache = random_dataset(), FeatureCache(tmp_path)
    extract_features(tiny_model(), ds, ["layer1", "pool"], cache=cache)
    feats = extract_features(tiny_model(), ds, ["layer1", "pool", "proj3"], cache=cache)
    assert feats.cached_cuts == ["layer1", "pool"]
    assert [c.name for c in feats.cuts] == ["layer1", "pool", "proj3"]


def test_cache_key_changes_with_weights_dataset_and_readout(tmp_path):
    ds = random_dataset()
    cache = FeatureCache(tmp_path)
    a = extract_features(tiny_model(seed=0), ds, ["pool"], cache=cache)
    b = extract_features(tiny_model(seed=1), ds, ["pool"], cache=cache)
    c = extract_features(tiny_model(seed=0), random_dataset(seed=5), ["pool"], cache=cache)
    assert len({a.key, b.key, c.key}) == 3 and b.cached_cuts == [] and c.cached_cuts == []


def test_interrupted_write_leaves_no_trusted_entry(tmp_path):
    ds, cache = random_dataset(), FeatureCache(tmp_path)

    def dies(e):  # Ctrl-C in the middle of extraction
        if e.done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_features(tiny_model(), ds, ["pool"], cache=cache, batch_size=16, progress=dies)
    assert not list(tmp_path.rglob("meta.json")), "a half-written entry must never be published"
    # A process killed outright leaves its staging files behind: they are never read.
    from gr_explorer.cache import content_key
    from gr_explorer.device import resolve_device
    from gr_explorer.features import base_key

    key = content_key({"base": base_key(tiny_model(), ds, resolve_device("cpu")), "cut": "pool"})
    w = cache.writer(key, {})
    w.open("train", ds.n_train, 16)
    w.write("train", 0, torch.zeros(10, 16).numpy())
    assert cache.get(key) is None  # never committed
    model = tiny_model()
    counter = CountingForward(model)
    feats = extract_features(model, ds, ["pool"], cache=cache)
    assert counter.n > 0 and feats.cached_cuts == []


def test_corrupted_entry_is_a_miss_not_an_answer(tmp_path):
    ds, cache = random_dataset(), FeatureCache(tmp_path)
    good = extract_features(tiny_model(), ds, ["pool"], cache=cache)
    good_train = good.train["pool"].clone()
    (entry,) = list(tmp_path.rglob("train.bin"))
    raw = bytearray(entry.read_bytes())
    raw[-4:] = b"\x00\x00\x80\x7f"  # flip the last float: same size, the checksum must catch it
    entry.write_bytes(bytes(raw))
    again = extract_features(tiny_model(), ds, ["pool"], cache=cache)
    assert again.cached_cuts == []
    assert torch.equal(again.train["pool"], good_train)
    (entry,) = list(tmp_path.rglob("train.bin"))
    entry.write_bytes(bytes(raw[:50]))  # truncated
    assert extract_features(tiny_model(), ds, ["pool"], cache=cache).cached_cuts == []


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_rows_in_any_order_give_the_array_and_a_checksum_that_verifies(tmp_path, dtype):
    """Rows written in order are checksummed as they arrive, others when committed: both must verify on read."""
    import numpy as np

    cache, rows = FeatureCache(tmp_path), np.random.default_rng(0).standard_normal((10, 3)).astype(np.float32)
    for key, order in (("in-order", [0, 4, 8]), ("any-order", [8, 0, 4])):
        w = cache.writer(key, {}, dtype)
        w.open("train", 10, 3)
        w.open("test", 0, 3)
        for s in order:
            w.write("train", s, rows[s:s + 4])
        w.commit()
        got = cache.get(key, verify=True)  # re-hashes the files and compares with the stored checksum
        assert got is not None and np.array_equal(got["train"].numpy(), rows.astype(dtype)), key
    with pytest.raises(ValueError, match="do not fit"):
        w = cache.writer("bad", {})
        w.open("train", 10, 3)
        w.write("train", 8, rows[:4])


def test_float16_storage_halves_the_disk(tmp_path):
    ds = random_dataset(n_train=64, n_test=32)
    a = extract_features(tiny_model(), ds, ["proj1"], cache=FeatureCache(tmp_path / "a"))
    b = extract_features(tiny_model(), ds, ["proj1"], cache=FeatureCache(tmp_path / "b"), storage="float16")
    assert b.train["proj1"].dtype == torch.float16 and a.key != b.key
    torch.testing.assert_close(b.train["proj1"].float(), a.train["proj1"], rtol=1e-3, atol=1e-3)
    size = lambda root: sum(p.stat().st_size for p in root.rglob("*.bin"))  # noqa: E731
    assert size(tmp_path / "b") * 2 == size(tmp_path / "a")


def test_progress_reports_batches_and_stops_between_them(tmp_path):
    from gr_explorer.progress import Cancelled

    seen = []
    extract_features(tiny_model(), random_dataset(n_train=40, n_test=10), batch_size=10, cache=False,
                     progress=seen.append)
    assert [(e.stage, e.done, e.total, e.model) for e in seen][-1] == ("extract", 5, 5, "tiny") and len(seen) == 6
    seen.clear()
    with pytest.raises(Cancelled):
        extract_features(tiny_model(), random_dataset(n_train=40, n_test=10), batch_size=10, cache=FeatureCache(tmp_path),
                         progress=seen.append, should_stop=lambda: len(seen) >= 3)
    assert seen[-1].done == 2 and not list(tmp_path.rglob("meta.json"))  # nothing half-done is cached


def test_entry_is_bound_to_its_key(tmp_path):
    """A valid entry copied under another key's name is a miss, not that key's features."""
    import shutil

    ds, cache = random_dataset(), FeatureCache(tmp_path)
    a = extract_features(tiny_model(seed=0), ds, ["pool"], cache=cache)
    b_model = tiny_model(seed=1)
    b = extract_features(b_model, ds, ["pool"], cache=cache)
    entries = sorted((p.parent for p in tmp_path.rglob("meta.json")), key=lambda p: p.stat().st_mtime_ns)
    shutil.rmtree(entries[1])
    shutil.copytree(entries[0], entries[1])  # a's entry now sits where b's should be
    again = extract_features(tiny_model(seed=1), ds, ["pool"], cache=cache)
    assert again.cached_cuts == [] and torch.equal(again.train["pool"], b.train["pool"])
    assert not torch.equal(a.train["pool"], b.train["pool"])


def test_user_datasets_are_keyed_on_their_pixels():
    """Two Datasets with the same name and params but other pixels never share features."""
    a, b = random_dataset(seed=0), random_dataset(seed=1)
    b.name, b.params = a.name, dict(a.params)
    assert a.fingerprint() != b.fingerprint()
    same = random_dataset(seed=0)
    assert a.fingerprint() == same.fingerprint()


def test_weights_hash_is_computed_once(monkeypatch):
    import gr_explorer.models.model as model_module

    model = tiny_model()
    calls = []
    real = model_module.tensor_digest
    monkeypatch.setattr(model_module, "tensor_digest", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = model.weights_hash()
    assert model.weights_hash() == first and len(calls) == 1

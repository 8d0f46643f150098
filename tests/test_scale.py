"""Scale-out: streamed image folders, features spilled to disk under a memory budget, torchrun ranks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from gr_explorer.cache import FeatureCache
from gr_explorer.config import SweepConfig
from gr_explorer.data import load_dataset
from gr_explorer.data.base import Dataset
from gr_explorer.features import extract_features
from gr_explorer.run import run_sweep
from helpers import saved_tiny, tiny_model

REPO = Path(__file__).resolve().parents[1]


def _folder(root: Path, per_class: int = 12, size=(20, 20)) -> Path:
    rng = np.random.default_rng(0)
    for c in ("a", "b", "c"):
        for split, n in (("train", per_class), ("test", per_class // 2)):
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return root


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_folder_gives_the_features_of_the_decoded_images(tmp_path, workers):
    ds = load_dataset(f"imagefolder:{_folder(tmp_path / 'imgs')}")
    assert type(ds.splits["train"]).__name__ == "FileImages"  # nothing decoded yet
    memory = Dataset("mem", ds.train_images, ds.test_images, ds.train_labels, ds.test_labels, ds.classes)
    model = tiny_model()
    streamed = extract_features(model, ds, cache=False, batch_size=7, workers=workers)
    ref = extract_features(model, memory, cache=False, batch_size=7)
    for cut in streamed.train:
        assert torch.equal(streamed.train[cut], ref.train[cut]) and torch.equal(streamed.test[cut], ref.test[cut])


def test_corrupt_file_in_a_streamed_folder_is_named(tmp_path):
    root = _folder(tmp_path / "imgs")
    good = (root / "train" / "b" / "3.png").read_bytes()
    (root / "train" / "b" / "3.png").write_bytes(good[:60])  # a valid header, then nothing: fails when decoded
    with pytest.raises(Exception, match=r"could not be decoded as images: train/b/3\.png"):
        extract_features(tiny_model(), load_dataset(f"imagefolder:{root}", image_size=16), cache=False, workers=2)
    (root / "train" / "b" / "3.png").write_bytes(b"not an image at all")
    with pytest.raises(Exception, match=r"could not be decoded as images: train/b/3\.png"):
        load_dataset(f"imagefolder:{root}")  # a broken header is named before any work


def test_small_memory_budget_gives_the_same_results(tmp_path):
    _, path = saved_tiny(tmp_path)
    cfg = dict(models=[f"file:{path}"], tasks=["shape", "color"], n_train=300, n_test=100, probes=["linear"])
    big = run_sweep(SweepConfig(**cfg), cache=FeatureCache(tmp_path / "c1")).table
    small = run_sweep(SweepConfig(**cfg, memory_budget=2**20), cache=FeatureCache(tmp_path / "c2")).table
    cols = ["cut", "task", "accuracy", "val_accuracy", "hparam"]
    pd.testing.assert_frame_equal(big[cols], small[cols])


def _torchrun(args: list[str], env: dict, nproc: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "gr_explorer", *args]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_torchrun_two_ranks_equal_one_process_and_a_killed_rank_leaves_nothing_trusted(tmp_path):
    _, path = saved_tiny(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    common = ["sweep", "--model", f"file:{path}", "--tasks", "shape,color", "--n-train", "300", "--n-test", "120",
              "--batch-size", "32", "--device", "cpu", "--probe", "linear,knn", "--quiet"]
    one = subprocess.run([sys.executable, "-m", "gr_explorer", *common, "--cache-dir", str(tmp_path / "c1"),
                          "--out", str(tmp_path / "one")], env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr
    two = _torchrun([*common, "--cache-dir", str(tmp_path / "c2"), "--out", str(tmp_path / "two")], env)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = pd.read_csv(tmp_path / "one" / "results.csv"), pd.read_csv(tmp_path / "two" / "results.csv")
    pd.testing.assert_frame_equal(a, b)
    assert (tmp_path / "one" / "run.json").read_text() == (tmp_path / "two" / "run.json").read_text()
    # the same cache keys and the same bytes, wherever they were extracted
    entries = lambda root: {p.parent.name: (p.parent / "train.bin").read_bytes() + (p.parent / "test.bin").read_bytes()  # noqa: E731
                            for p in root.rglob("meta.json")}
    e1, e2 = entries(tmp_path / "c1"), entries(tmp_path / "c2")
    assert e1.keys() == e2.keys() and len(e1) == 8 and all(e1[k] == e2[k] for k in e1)

    # Rank 1 dies after its first batch: torchrun ends the job; no entry that a later run would trust exists.
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(textwrap.dedent("""
        import os
        if os.environ.get("RANK") == "1":
            import gr_explorer.features as f
            real = f._DirectSink.put
            def put(self, start, feats):
                real(self, start, feats)
                os._exit(3)
            f._DirectSink.put = put
    """))
    killed = _torchrun([*common, "--cache-dir", str(tmp_path / "c3")], {**env, "PYTHONPATH": f"{hook}{os.pathsep}{REPO}"})
    assert killed.returncode != 0
    assert not list((tmp_path / "c3").rglob("meta.json"))
    again = subprocess.run([sys.executable, "-m", "gr_explorer", *common, "--cache-dir", str(tmp_path / "c3"),
                            "--out", str(tmp_path / "again")], env=env, cwd=REPO, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr
    pd.testing.assert_frame_equal(a, pd.read_csv(tmp_path / "again" / "results.csv"))


_MEET_HOOK = """
import os, time
from pathlib import Path
if os.environ.get("GR_TEST_MEET"):
    import gr_explorer.features as f
    real, met = f.ShardWriter.close, []
    def close(self):
        real(self)
        if not met:  # every rank of both jobs has written all its shards before any rank merges
            met.append(1)
            d = Path(os.environ["GR_TEST_MEET"])
            (d / f"{os.environ['GR_TEST_JOB']}-{os.environ['RANK']}").touch()
            end = time.time() + 300
            while len(list(d.iterdir())) < 4 and time.time() < end:
                time.sleep(0.05)
    f.ShardWriter.close = close
"""


@pytest.mark.slow
@pytest.mark.parametrize("sizes", [(8, 12), (8, 8)], ids=["batch-8-and-12", "batch-8-twice"])
def test_two_torchrun_jobs_on_one_cache_never_mix_rows_and_a_rerun_equals_a_fresh_run(tmp_path, sizes):
    """The issue's case: two concurrent jobs on one --cache-dir, their staging in use at the same moment."""
    _, path = saved_tiny(tmp_path)
    hook, meet, shared = tmp_path / "hook", tmp_path / "meet", tmp_path / "shared"
    hook.mkdir()
    meet.mkdir()
    (hook / "sitecustomize.py").write_text(_MEET_HOOK)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    common = ["sweep", "--model", f"file:{path}", "--tasks", "shape,color", "--n-train", "200", "--n-test", "80",
              "--device", "cpu", "--probe", "linear", "--quiet"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "gr_explorer"]
    jobs = [subprocess.Popen([*cmd, *common, "--batch-size", str(bs), "--cache-dir", str(shared), "--out",
                              str(tmp_path / f"job{i}")], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**env, "PYTHONPATH": f"{hook}{os.pathsep}{REPO}", "GR_TEST_MEET": str(meet),
                                             "GR_TEST_JOB": str(i)})
            for i, bs in enumerate(sizes)]
    done = [j.communicate(timeout=900) for j in jobs]
    for j, (_, err) in zip(jobs, done):
        assert j.returncode == 0, err[-3000:]
    assert len(list(meet.iterdir())) == 4  # the four ranks really were mid-job together
    assert not [p for p in (shared / ".staging").rglob("*")]  # every job's staging is cleaned up

    def single(bs, cache_args, out):
        r = subprocess.run([sys.executable, "-m", "gr_explorer", *common, "--batch-size", str(bs), *cache_args,
                            "--save-features", "--out", str(out)], env=env, cwd=REPO, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        return pd.read_csv(out / "results.csv"), np.load(next((out / "features").glob("*.npz")))

    entries = sorted(p.parent.name for p in shared.rglob("meta.json"))
    assert len(entries) == 8 * len(set(sizes))  # one entry per cut and batch size: nothing else published
    for i, bs in enumerate(dict.fromkeys(sizes)):
        rerun, rerun_feats = single(bs, ["--cache-dir", str(shared)], tmp_path / f"rerun{bs}")
        fresh, fresh_feats = single(bs, ["--no-cache"], tmp_path / f"fresh{bs}")
        assert sorted(p.parent.name for p in shared.rglob("meta.json")) == entries  # the rerun was all cache hits
        assert set(rerun_feats.files) == set(fresh_feats.files)
        for name in fresh_feats.files:
            assert np.array_equal(rerun_feats[name], fresh_feats[name]), name  # bit-identical
        pd.testing.assert_frame_equal(rerun, fresh)
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / f"job{sizes.index(bs)}" / "results.csv"), fresh)
@pytest.mark.parametrize("device, backend, bound", [("cuda", "nccl", "cuda:1"), ("cpu", "gloo", None)])
def test_a_torchrun_rank_binds_its_gpu_before_forming_the_group(monkeypatch, device, backend, bound):
    """NCCL on GPUs (each rank's communicator bound to its own GPU, LOCAL_RANK, before any collective), gloo on
    CPUs; a one-process torchrun job (TORCHELASTIC_RUN_ID set, WORLD_SIZE 1) forms its group of one too."""
    import torch.distributed as dist

    from gr_explorer import distributed

    calls = []
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: calls.append(("init", backend, kw)))
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", str(d))))
    assert distributed.launched_by_torchrun()
    world = distributed.join(torch.device(device))
    assert world == distributed.World()  # is_initialized() stays False here: the group is not queried
    if bound:
        assert calls == [("set_device", bound), ("init", backend, {"device_id": torch.device(bound)})]
    else:
        assert calls == [("init", backend, {})]
    assert world.agree_min(512, torch.device(device)) == 512  # no group: the value itself


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_torchrun_with_nccl_on_the_gpus_equals_one_process(tmp_path):
    """torchrun over every GPU there is (one is enough: NCCL forms a group of one, binds the GPU, and the batch
    size is agreed through an all-reduce); results.csv equal to a plain run on the same device."""
    _, path = saved_tiny(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    common = ["sweep", "--model", f"file:{path}", "--tasks", "shape,color", "--n-train", "600", "--n-test", "200",
              "--batch-size", "64", "--device", "cuda", "--probe", "linear,knn", "--quiet"]
    one = subprocess.run([sys.executable, "-m", "gr_explorer", *common, "--cache-dir", str(tmp_path / "c1"),
                          "--out", str(tmp_path / "one")], env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    nccl = _torchrun([*common, "--cache-dir", str(tmp_path / "c2"), "--out", str(tmp_path / "nccl")], env,
                     nproc=min(2, torch.cuda.device_count()))
    assert nccl.returncode == 0, nccl.stderr[-3000:]
    a, b = pd.read_csv(tmp_path / "one" / "results.csv"), pd.read_csv(tmp_path / "nccl" / "results.csv")
    pd.testing.assert_frame_equal(a, b, atol=0.02, rtol=0)  # bf16 extraction: the same kernels, maybe another GPU

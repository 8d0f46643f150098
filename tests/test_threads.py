"""Probe results do not depend on the number of CPU threads (issue 23, item 7).

The same linear and k-NN fits run in two fresh processes, one with OMP_NUM_THREADS=1 and one with 2; the chosen C
and k, every validation accuracy tried and every per-image test hit must be identical. The features are built so
that BLAS would split their long reductions between threads (1,600 fit rows, 513 and 2,049 dims, a power-law
spectrum): before probes/matmul.py, this very check differed in 13 of 45 (cut, task) fits on zoo:simclr features.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, sys, torch
from gr_explorer.probes import run_probes
g = torch.Generator().manual_seed(0)
def feats(n, d):
    scale = torch.arange(1, d + 1, dtype=torch.float32) ** -0.8  # a decaying spectrum, as real features have
    return torch.randn(n, d, generator=g) * scale
n_train, n_test = 2000, 400
z = torch.randn(n_train + n_test, 6, generator=g)
train, test = {}, {}
for cut, d in (("wide", 2049), ("mid", 513), ("narrow", 40)):
    x = feats(n_train + n_test, d)
    x[:, :6] += 0.8 * z
    train[cut], test[cut] = x[:n_train], x[n_train:]
y = {"a": (z[:, 0] + 0.5 * z[:, 1] > 0).long() + (z[:, 2] > 0.7).long(), "b": (z[:, 3] - z[:, 4] > 0).long()}
tr_y = {t: v[:n_train] for t, v in y.items()}
te_y = {t: v[n_train:] for t, v in y.items()}
res = run_probes(["linear", "knn"], train, tr_y, test, te_y, linear_grid=[0.01, 0.1, 1, 10, 100], knn_ks=[1, 5, 20])
out = [[r.cut, r.task, r.probe, r.value, r.used, r.accuracy, r.val_accuracy, sorted(r.search.items()),
        r.correct.int().tolist(), torch.get_num_threads()] for r in res]
print(json.dumps(out))
"""


def _fit(threads: int) -> list:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", WORKER], env=env, capture_output=True, text=True, timeout=600,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_linear_and_knn_probes_do_not_depend_on_the_thread_count():
    one, two = _fit(1), _fit(2)
    assert {r[-1] for r in one} == {1} and {r[-1] for r in two} == {2}  # the runs really used 1 and 2 threads
    assert len(one) == len(two) == 3 * 2 * 2
    for a, b in zip(one, two):
        assert a[:-1] == b[:-1], (a[:7], b[:7])


def test_blocked_products_equal_the_plain_ones_and_ignore_the_thread_count():
    import torch

    from gr_explorer.probes import matmul

    g = torch.Generator().manual_seed(1)
    a = torch.randn(2, 37, 1000, generator=g, dtype=torch.float64)
    b = torch.randn(2, 1000, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(matmul.bmm(a, b), torch.bmm(a, b), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(matmul.mm(a[0], b[0]), a[0] @ b[0], rtol=1e-12, atol=1e-12)
    m = a[0].T @ a[0] / 37
    ev, v = matmul.eigh(m)
    torch.testing.assert_close(v @ torch.diag(ev) @ v.T, m, rtol=1e-9, atol=1e-9)
    a32, b32 = a.float(), b.float()
    before = torch.get_num_threads()
    outs = []
    for threads in (1, 2, 3):
        torch.set_num_threads(threads)
        outs.append((matmul.bmm(a32, b32), matmul.eigh(m.float())[0]))
    torch.set_num_threads(before)
    assert all(torch.equal(o[0], outs[0][0]) and torch.equal(o[1], outs[0][1]) for o in outs[1:])

"""Probes: linear (batched L-BFGS) against scikit-learn, k-NN against a brute-force reference."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from gr_explorer.errors import GRExplorerError, ProbeError
from gr_explorer.probes import (
    PROBES,
    fit_linear_probes,
    knn_predict,
    lbfgs_softmax,
    run_probes,
    standardize,
    validation_split,
)

sklearn = pytest.importorskip("sklearn")
from sklearn.datasets import load_digits, make_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

# ---------------------------------------------------------------------------------------------
# data


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These problems are tiny: one thread is faster, and immune to a busy shared machine."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits():
    """sklearn digits raw pixels: one cut 'pixels', one task 'digit'; 1200 train / 597 test."""
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(y))
    X, y = torch.tensor(X[perm], dtype=torch.float32), torch.tensor(y[perm])
    return {"pixels": X[:1200]}, {"digit": y[:1200]}, {"pixels": X[1200:]}, {"digit": y[1200:]}


def _multicut(n_train=900, n_test=500, dims=(12, 40, 96), seed=0):
    """Cuts of different D built from one latent; task 'a' has 3 classes, task 'b' 7."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    Z, ya = make_classification(n_samples=n, n_features=16, n_informative=8, n_classes=3, class_sep=1.2, random_state=seed)
    _, yb = make_classification(n_samples=n, n_features=16, n_informative=8, n_classes=7, class_sep=1.5, random_state=seed + 1)
    Zb, _ = make_classification(n_samples=n, n_features=16, n_informative=8, n_classes=7, class_sep=1.5, random_state=seed + 1)
    latent = np.concatenate([Z, Zb], 1)
    train, test = {}, {}
    for i, d in enumerate(dims):
        H = latent @ rng.normal(size=(latent.shape[1], d)) + rng.normal(scale=1.0 + i, size=(n, d))
        H = torch.tensor(H, dtype=torch.float32)
        train[f"c{d}"], test[f"c{d}"] = H[:n_train], H[n_train:]
    ya, yb = torch.tensor(ya), torch.tensor(yb)
    return train, {"a": ya[:n_train], "b": yb[:n_train]}, test, {"a": ya[n_train:], "b": yb[n_train:]}


@pytest.fixture(scope="module")
def multicut():
    return _multicut()


def _sk_fit(X, y, C):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # max_iter must be enough to converge
        return LogisticRegression(C=C, max_iter=20000).fit(X.double().numpy(), y.numpy())


def _sk_protocol(Xtr, ytr, Xte, yte, C):
    """sklearn LogisticRegression(C) on features standardised like ours; returns test accuracy."""
    a, b = standardize(Xtr, Xte)
    clf = _sk_fit(a, ytr, C)
    return float((clf.predict(b.double().numpy()) == yte.numpy()).mean())


def _rows(rows):
    return {(r.cut, r.task, r.probe): r for r in rows}


# ---------------------------------------------------------------------------------------------
# linear probe vs scikit-learn


def test_linear_matches_sklearn_on_digits(digits):
    tr, trl, te, tel = digits
    rows = run_probes(["linear"], tr, trl, te, tel, linear_grid=[0.05])
    assert len(rows) == 1 and rows[0].setting == "C=0.05"
    sk = _sk_protocol(tr["pixels"], trl["digit"], te["pixels"], tel["digit"], 0.05)
    assert sk > 0.9  # the comparison is meaningful
    assert abs(rows[0].accuracy - sk) <= 0.01


def test_linear_matches_sklearn_multicut_multitask(multicut):
    tr, trl, te, tel = multicut
    rows = _rows(run_probes(["linear"], tr, trl, te, tel, linear_grid=[0.3]))
    assert len(rows) == 3 * 2
    for cut in tr:
        for task in trl:
            r = rows[(cut, task, "linear")]
            assert r.n_classes == {"a": 3, "b": 7}[task]
            sk = _sk_protocol(tr[cut], trl[task], te[cut], tel[task], 0.3)
            assert abs(r.accuracy - sk) <= 0.01, (cut, task, r.accuracy, sk)


def test_solver_reaches_sklearn_objective(digits):
    """Same optimum as sklearn: loss within 1e-4 relative, on two C at once (one per problem column)."""
    tr, trl, _, _ = digits
    (X,) = standardize(tr["pixels"])
    y = trl["digit"]
    Xa = torch.cat([torch.ones(len(X), 1), X], 1)[None]
    Cs = [0.01, 1.0]
    lam = torch.tensor([[1 / (C * len(y)) for C in Cs]])
    res = lbfgs_softmax(Xa, y[:, None].repeat(1, 2), torch.ones(2, 10, dtype=torch.bool), lam, tol=1e-5, precondition=True)
    for q, C in enumerate(Cs):
        clf = _sk_fit(X, y, C)
        W = np.concatenate([clf.intercept_[None], clf.coef_.T], 0)  # [1 + D, K], bias first
        Z = Xa[0].double().numpy() @ W
        Z -= Z.max(1, keepdims=True)
        logp = Z - np.log(np.exp(Z).sum(1, keepdims=True))
        sk_loss = -logp[np.arange(len(y)), y.numpy()].mean() + 0.5 / (C * len(y)) * (clf.coef_**2).sum()
        ours = float(res.loss[0, q])
        assert ours <= sk_loss * (1 + 1e-4) + 1e-6, (C, ours, sk_loss)
        assert ours >= sk_loss * (1 - 1e-3), (C, ours, sk_loss)
        assert bool(res.converged[0, q])


def test_grid_search_picks_best_validation_C(digits):
    tr, trl, te, tel = digits
    # (C above 1 is left out: there the optimum is so flat that sklearn's own tol changes its
    # validation accuracy by more than a point)
    grid = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 1.0]
    fit, val = validation_split(trl, 0.2, seed=3)
    res = fit_linear_probes(tr, trl, te, tel, fit_idx=fit, val_idx=val, grid=grid)[("pixels", "digit")]
    # our own choice: the best of our validation accuracies, ties -> the smaller C
    ours = [res.val_accuracies[C] for C in grid]
    assert res.C == grid[int(np.argmax(ours))]
    assert res.val_accuracy == max(ours)
    # sklearn on the same split and standardisation
    X, y = tr["pixels"], trl["digit"]
    a, v = standardize(X[fit], X[val])
    sk = [float((_sk_fit(a, y[fit], C).predict(v.double().numpy()) == y[val].numpy()).mean()) for C in grid]
    for o, s in zip(ours, sk):
        assert abs(o - s) <= 0.01
    n_val = len(val)
    assert sk[grid.index(res.C)] >= max(sk) - 1.0 / n_val - 1e-12
    assert res.C == grid[int(np.argmax(sk))]
    assert len(set(sk)) > 2  # the grid matters on this data


def test_run_probes_uses_grid_and_reports_validation(multicut):
    tr, trl, te, tel = multicut
    grid = [1e-3, 0.1, 10.0]
    fit, val = validation_split(trl, 0.2, seed=0)
    direct = fit_linear_probes(tr, trl, te, tel, fit_idx=fit, val_idx=val, grid=grid)
    rows = _rows(run_probes(["linear"], tr, trl, te, tel, linear_grid=grid, seed=0))
    for (cut, task), r in direct.items():
        row = rows[(cut, task, "linear")]
        assert row.setting == f"C={r.C:g}" and row.value == r.C
        assert row.val_accuracy == pytest.approx(r.val_accuracy)
        assert row.accuracy == pytest.approx(r.accuracy)
        assert row.search == {C: pytest.approx(v) for C, v in r.val_accuracies.items()}
        assert row.converged and row.n_iter > 0
        assert r.val_accuracy == max(r.val_accuracies.values())


def test_padding_invariance(multicut):
    """A cut's result is the same alone or padded into one tensor with a larger cut."""
    tr, trl, te, tel = multicut
    small, big = "c12", "c96"
    fit, val = validation_split(trl, 0.2, seed=1)
    grid = [0.01, 1.0]
    alone = fit_linear_probes({small: tr[small]}, trl, {small: te[small]}, tel, fit_idx=fit, val_idx=val, grid=grid)
    both = fit_linear_probes(
        {small: tr[small], big: tr[big]}, trl, {small: te[small], big: te[big]}, tel,
        fit_idx=fit, val_idx=val, grid=grid, pad_ratio=0.0,  # force one padded feature tensor
    )
    for task in trl:
        a, b = alone[(small, task)], both[(small, task)]
        assert a.C == b.C
        assert a.val_accuracies == pytest.approx(b.val_accuracies, abs=1.5 / len(val))
        assert abs(a.accuracy - b.accuracy) <= 1.5 / len(tel[task])


def test_padded_solver_keeps_padding_zero(multicut):
    tr, trl, te, tel = multicut
    (a,) = standardize(tr["c12"])
    (b,) = standardize(tr["c40"])
    X = torch.zeros(2, len(a), 41)
    X[:, :, 0] = 1
    X[0, :, 1:13] = a
    X[1, :, 1:] = b
    y = trl["a"][:, None]
    res = lbfgs_softmax(X, y, torch.ones(1, 3, dtype=torch.bool), torch.full((2, 1), 1e-3), precondition=True)
    assert torch.all(res.theta[0, 13:] == 0)
    alone = lbfgs_softmax(X[:1, :, :13], y, torch.ones(1, 3, dtype=torch.bool), torch.full((1, 1), 1e-3), precondition=True)
    assert torch.allclose(alone.theta[0], res.theta[0, :13], atol=1e-3)


def test_memory_chunks_warm_start_and_plain_lbfgs_agree(multicut):
    tr, trl, te, tel = multicut
    fit, val = validation_split(trl, 0.2, seed=0)
    grid = [0.01, 1.0]
    base = fit_linear_probes(tr, trl, te, tel, fit_idx=fit, val_idx=val, grid=grid)
    variants = [
        dict(memory_budget=1),  # one cut per chunk
        dict(warm_start=True),
        dict(precondition=False),
    ]
    for kw in variants:
        other = fit_linear_probes(tr, trl, te, tel, fit_idx=fit, val_idx=val, grid=grid, **kw)
        for key, r in base.items():
            assert abs(other[key].accuracy - r.accuracy) <= 0.01, (kw, key)
            for C in grid:  # within 3 validation samples
                assert abs(other[key].val_accuracies[C] - r.val_accuracies[C]) <= 3 / len(val), (kw, key, C)


def test_constant_feature_column_is_harmless(digits):
    tr, trl, te, tel = digits
    X = tr["pixels"]
    assert bool((X.std(0) == 0).any())  # digits has all-zero pixels
    a, b = standardize(X, te["pixels"] + 1.0)
    const = X.std(0) == 0
    assert torch.all(a[:, const] == 0) and torch.all(b[:, const] == 0)


# ---------------------------------------------------------------------------------------------
# k-NN


def _knn_reference(bank, bank_y, queries, ks, T, C):
    """Brute force: full cosine similarity matrix, argsort, exp(sim / T) weighted vote."""
    b = bank.double().numpy()
    q = queries.double().numpy()
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    sims = q @ b.T
    order = np.argsort(-sims, axis=1, kind="stable")
    out = {}
    for k in ks:
        kk = min(k, len(b))
        preds = np.empty(len(q), dtype=np.int64)
        for i in range(len(q)):
            nb = order[i, :kk]
            votes = np.zeros(C)
            np.add.at(votes, bank_y.numpy()[nb], np.exp(sims[i, nb] / T))
            preds[i] = int(np.argmax(votes))
        out[k] = preds
    return out


@pytest.mark.parametrize("chunk_size", [7, 64, 1000])
def test_knn_predict_matches_bruteforce(chunk_size):
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 16, generator=g)
    bank_y = torch.randint(0, 4, (150,), generator=g)
    bank = centers[bank_y] + torch.randn(150, 16, generator=g) * 2
    q_y = torch.randint(0, 4, (101,), generator=g)
    queries = centers[q_y] + torch.randn(101, 16, generator=g) * 2
    ks = [1, 3, 10, 149, 150, 400]  # 400 > bank size: clipped to the whole bank
    ours = knn_predict(bank, bank_y, queries, ks=ks, temperature=0.07, num_classes=4, chunk_size=chunk_size)
    ref = _knn_reference(bank, bank_y, queries, ks, 0.07, 4)
    assert set(ours) == set(ks)
    for k in ks:
        assert ours[k].dtype == torch.long and ours[k].shape == (101,)
        np.testing.assert_array_equal(ours[k].numpy(), ref[k], err_msg=f"k={k}")
    assert not np.array_equal(ref[1], ref[10])  # k matters on this data
    np.testing.assert_array_equal(ours[150].numpy(), ours[400].numpy())


def test_knn_predict_temperature_matters():
    g = torch.Generator().manual_seed(1)
    bank = torch.randn(60, 8, generator=g)
    y = torch.randint(0, 3, (60,), generator=g)
    q = torch.randn(80, 8, generator=g)
    for T in (0.01, 1.0):
        np.testing.assert_array_equal(knn_predict(bank, y, q, ks=[20], temperature=T)[20].numpy(), _knn_reference(bank, y, q, [20], T, 3)[20])


def test_run_probes_knn_matches_reference(multicut):
    tr, trl, te, tel = multicut
    ks = [1, 5, 25]
    rows = _rows(run_probes(["knn"], tr, trl, te, tel, knn_ks=ks, seed=4))
    fit, val = validation_split(trl, 0.2, seed=4)
    for cut in tr:
        for task, y in trl.items():
            C = int(max(y.max(), tel[task].max())) + 1
            ref_val = _knn_reference(tr[cut][fit], y[fit], tr[cut][val], ks, 0.07, C)
            val_acc = {k: float((ref_val[k] == y[val].numpy()).mean()) for k in ks}
            k_best = max(ks, key=lambda k: (val_acc[k], k))  # ties -> larger k
            ref_test = _knn_reference(tr[cut], y, te[cut], [k_best], 0.07, C)[k_best]
            r = rows[(cut, task, "knn")]
            assert r.setting == f"k={k_best}" and r.value == k_best
            assert r.val_accuracy == pytest.approx(val_acc[k_best])
            assert r.accuracy == pytest.approx(float((ref_test == tel[task].numpy()).mean()))


# ---------------------------------------------------------------------------------------------
# run_probes: rows, order, split, progress


def test_rows_order_keys_and_progress(multicut):
    tr, trl, te, tel = multicut
    calls = []
    rows = run_probes(["knn", "linear"], tr, trl, te, tel, linear_grid=[0.1, 1.0], knn_ks=[5, 10], progress=calls.append,
                      model="m")
    expected = [(c, t, p) for c in tr for t in trl for p in ("knn", "linear")]
    assert [(r.cut, r.task, r.probe) for r in rows] == expected
    for r in rows:
        assert 0.0 <= r.accuracy <= 1.0 and 0.0 <= r.val_accuracy <= 1.0
        assert isinstance(r.accuracy, float) and isinstance(r.setting, str)
        assert r.setting.startswith("k=" if r.probe == "knn" else "C=") and r.hparam == ("k" if r.probe == "knn" else "C")
        # per-image correctness is kept: it is what the accuracy counts
        assert r.correct.dtype == torch.bool and r.correct.shape == (500,)
        assert r.accuracy == pytest.approx(float(r.correct.float().mean()))
        assert set(r.search) == ({5.0, 10.0} if r.probe == "knn" else {0.1, 1.0})
        assert r.val_accuracy == max(r.search.values())
    assert max(r.accuracy for r in rows) > 0.6  # the probes learn something
    dones = [e.done for e in calls]
    assert dones == sorted(dones) and dones[-1] == len(expected) and len(calls) > 3  # per chunk / cut, not once
    assert all(e.total == len(expected) and e.stage == "probe" and e.model == "m" for e in calls)


def test_probe_fit_stops_between_chunks(multicut):
    from gr_explorer.progress import Cancelled

    tr, trl, te, tel = multicut
    seen = []
    with pytest.raises(Cancelled):
        run_probes(["linear"], tr, trl, te, tel, linear_grid=[0.1], progress=seen.append, should_stop=lambda: bool(seen))
    assert len(seen) == 1 and seen[0].done < seen[0].total  # one chunk finished, the next never started


def test_knn_reports_the_k_it_used(multicut):
    tr, trl, te, tel = multicut
    rows = run_probes(["knn"], tr, trl, te, tel, knn_ks=[5000])
    assert all(r.setting == "k=900" and r.used == 900 for r in rows)  # capped at the 900 train images of the bank


def test_validation_split_is_seeded_and_stratified():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    z = torch.arange(100) % 2
    fit1, val1 = validation_split({"y": y, "z": z}, 0.2, seed=7)
    fit2, val2 = validation_split({"y": y, "z": z}, 0.2, seed=7)
    _, val3 = validation_split({"y": y, "z": z}, 0.2, seed=8)
    assert torch.equal(val1, val2) and torch.equal(fit1, fit2)
    assert not torch.equal(val1, val3)
    assert len(val1) == 20 and len(fit1) == 80
    assert sorted(torch.cat([fit1, val1]).tolist()) == list(range(100))
    assert torch.bincount(y[val1], minlength=3).tolist() == [10, 6, 4]


def test_same_seed_same_results(multicut):
    tr, trl, te, tel = multicut
    a = run_probes(["linear", "knn"], tr, trl, te, tel, linear_grid=[0.01, 1.0], knn_ks=[3, 9], seed=5)
    b = run_probes(["linear", "knn"], tr, trl, te, tel, linear_grid=[0.01, 1.0], knn_ks=[3, 9], seed=5, device=torch.device("cpu"))
    assert a == b
    assert all(torch.equal(x.correct, y.correct) for x, y in zip(a, b))


def test_low_precision_and_double_features(multicut):
    """bf16 features (what autocast extraction gives) and float64 features both work."""
    tr, trl, te, tel = multicut
    kw = dict(linear_grid=[0.1], knn_ks=[10])
    ref = run_probes(["linear", "knn"], tr, trl, te, tel, **kw)
    for dt in (torch.bfloat16, torch.float64):
        rows = run_probes(
            ["linear", "knn"], {c: x.to(dt) for c, x in tr.items()}, trl, {c: x.to(dt) for c, x in te.items()}, tel, **kw
        )
        for a, b in zip(ref, rows):
            assert abs(a.accuracy - b.accuracy) <= 0.03


def test_constants():
    assert tuple(PROBES) == ("linear", "knn", "attentive")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(multicut):
    tr, trl, te, tel = multicut
    kw = dict(linear_grid=[0.01, 1.0], knn_ks=[5, 20])
    cpu = run_probes(["linear", "knn"], tr, trl, te, tel, device="cpu", **kw)
    gpu = run_probes(["linear", "knn"], tr, trl, te, tel, device="cuda", **kw)
    for a, b in zip(cpu, gpu):
        assert abs(a.accuracy - b.accuracy) <= 0.01


# ---------------------------------------------------------------------------------------------
# errors


def _tiny():
    g = torch.Generator().manual_seed(0)
    tr = {"s1": torch.randn(40, 5, generator=g), "s2": torch.randn(40, 3, generator=g)}
    te = {"s1": torch.randn(10, 5, generator=g), "s2": torch.randn(10, 3, generator=g)}
    trl = {"shape": torch.arange(40) % 3}
    tel = {"shape": torch.arange(10) % 3}
    return tr, trl, te, tel


def test_error_unknown_probe():
    tr, trl, te, tel = _tiny()
    with pytest.raises(ProbeError, match=r"Unknown probe 'lineer'.*Valid: linear, knn.*Did you mean 'linear'"):
        run_probes(["lineer"], tr, trl, te, tel)
    with pytest.raises(ProbeError, match=r"No probe.*Valid: linear, knn"):
        run_probes([], tr, trl, te, tel)


def test_error_mismatched_n():
    tr, trl, te, tel = _tiny()
    tr["s2"] = tr["s2"][:39]
    with pytest.raises(ProbeError, match=r"train samples.*cut 's2' has 39.*40"):
        run_probes(["linear"], tr, trl, te, tel)
    tr, trl, te, tel = _tiny()
    tel["shape"] = tel["shape"][:9]
    with pytest.raises(ProbeError, match=r"test samples.*task 'shape' has 9.*10"):
        run_probes(["knn"], tr, trl, te, tel)


def test_error_single_class_task():
    tr, trl, te, tel = _tiny()
    trl["const"] = torch.zeros(40, dtype=torch.long)
    tel["const"] = torch.zeros(10, dtype=torch.long)
    with pytest.raises(ProbeError, match=r"Task 'const' has 1 class in the train split.*at least 2"):
        run_probes(["linear"], tr, trl, te, tel)


def test_error_empty_dicts():
    tr, trl, te, tel = _tiny()
    with pytest.raises(ProbeError, match=r"train feature dict is empty.*Valid"):
        run_probes(["linear"], {}, trl, te, tel)
    with pytest.raises(ProbeError, match=r"test feature dict is empty"):
        run_probes(["linear"], tr, trl, {}, tel)
    with pytest.raises(ProbeError, match=r"train label dict is empty"):
        run_probes(["knn"], tr, {}, te, tel)


def test_error_non_finite_features():
    tr, trl, te, tel = _tiny()
    tr["s2"][3, 1] = float("nan")
    with pytest.raises(ProbeError, match=r"Cut 's2': train features contain NaN or inf \(1 of 40 samples\)"):
        run_probes(["linear"], tr, trl, te, tel)
    tr, trl, te, tel = _tiny()
    te["s1"][0, 0] = float("inf")
    with pytest.raises(ProbeError, match=r"Cut 's1': test features contain NaN or inf"):
        run_probes(["knn"], tr, trl, te, tel)


def test_error_other_inputs():
    tr, trl, te, tel = _tiny()
    with pytest.raises(ProbeError, match=r"missing from test: \['s2'\].*Valid cuts \(train\): s1, s2"):
        run_probes(["linear"], tr, trl, {"s1": te["s1"]}, tel)
    bad = dict(te, s2=torch.randn(10, 4))
    with pytest.raises(ProbeError, match=r"Cut 's2': train features have D=3 but test features D=4"):
        run_probes(["linear"], tr, trl, bad, tel)
    with pytest.raises(ProbeError, match=r"Cut 's1'.*2-D tensor"):
        run_probes(["linear"], dict(tr, s1=torch.randn(40, 5, 2)), trl, te, tel)
    with pytest.raises(ProbeError, match=r"Task 'shape'.*integer dtype"):
        run_probes(["linear"], tr, {"shape": trl["shape"].float()}, te, tel)
    with pytest.raises(ProbeError, match=r"negative class id"):
        run_probes(["linear"], tr, {"shape": trl["shape"] - 1}, te, tel)
    with pytest.raises(ProbeError, match=r"val_fraction=1.5.*strictly between 0 and 1"):
        run_probes(["linear"], tr, trl, te, tel, val_fraction=1.5)
    with pytest.raises(ProbeError, match=r"linear_grid=.*positive"):
        run_probes(["linear"], tr, trl, te, tel, linear_grid=[0.1, -1])
    with pytest.raises(ProbeError, match=r"knn_ks=.*positive integers"):
        run_probes(["knn"], tr, trl, te, tel, knn_ks=[0, 5])
    with pytest.raises(ProbeError, match=r"knn_temperature"):
        run_probes(["knn"], tr, trl, te, tel, knn_temperature=0)
    with pytest.raises(GRExplorerError):
        run_probes(["knn"], tr, trl, te, tel, device="nonsense")
    assert issubclass(ProbeError, ValueError)


# ---------------------------------------------------------------------------------------------
# slow: a larger problem, every default


@pytest.mark.slow
def test_defaults_larger_problem_against_sklearn():
    """Every default (grid, ks, split) on 8000 x {64, 256, 512} features with two tasks."""
    tr, trl, te, tel = _multicut(n_train=8000, n_test=2000, dims=(64, 256, 512))
    rows = _rows(run_probes(["linear", "knn"], tr, trl, te, tel))
    fit, val = validation_split(trl, 0.2, seed=0)
    for cut in tr:
        for task in trl:
            r = rows[(cut, task, "linear")]
            C = r.value
            assert abs(r.accuracy - _sk_protocol(tr[cut], trl[task], te[cut], tel[task], C)) <= 0.01
            a, v = standardize(tr[cut][fit], tr[cut][val])
            sk_val = float((_sk_fit(a, trl[task][fit], C).predict(v.double().numpy()) == trl[task][val].numpy()).mean())
            assert abs(r.val_accuracy - sk_val) <= 0.01
            assert rows[(cut, task, "knn")].accuracy > 1.0 / r.n_classes


def test_wide_cut_with_fewer_samples_than_dims_matches_sklearn():
    """D > N (raw pixels, wide projector cuts): the Gram-matrix preconditioner reaches sklearn's optimum too."""
    g = torch.Generator().manual_seed(3)
    n, d = 300, 700
    w = torch.randn(d, 3, generator=g)
    X = torch.randn(n + 200, d, generator=g)
    y = (X @ w + 2.0 * torch.randn(n + 200, 3, generator=g)).argmax(1)
    tr, te = {"wide": X[:n]}, {"wide": X[n:]}
    rows = run_probes(["linear"], tr, {"t": y[:n]}, te, {"t": y[n:]}, linear_grid=[0.05])
    sk = _sk_protocol(X[:n], y[:n], X[n:], y[n:], 0.05)
    assert sk > 0.45 and abs(rows[0].accuracy - sk) <= 0.01 and rows[0].converged

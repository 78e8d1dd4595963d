"""Kernel regression: exact solves, eigen path = Cholesky path, singular kernels, ridge choice."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ntkc.learn.regression import (
    RCOND_MIN,
    EigenSolver,
    RegressionError,
    accuracy,
    holdout_split,
    kernel_regression,
    predict,
    solve,
    sweep,
    targets,
)


def _rbf(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.exp(-gamma * np.maximum(d2, 0))


@pytest.fixture(scope="module")
def digits():
    from ntkc.learn.data import load_dataset

    ds = load_dataset("digits", n_train=500, n_test=300, seed=0)
    x, xt = ds.x_train.reshape(500, -1), ds.x_test.reshape(300, -1)
    g = 1.0 / (2 * x.shape[1])
    return _rbf(x, x, g), ds.y_train, _rbf(xt, x, g), ds.y_test


def _spd(n: int, seed: int = 0) -> np.ndarray:
    a = np.random.default_rng(seed).standard_normal((n, n))
    return a @ a.T / n + np.eye(n)


def test_targets_are_one_hot_minus_a_tenth():
    y, classes = targets(np.array([2, 0, 2, 1]))
    assert classes.tolist() == [0, 1, 2]
    np.testing.assert_allclose(y, [[-.1, -.1, .9], [.9, -.1, -.1], [-.1, -.1, .9], [-.1, .9, -.1]])
    y, classes = targets(["b", "a"], classes=["b", "a"])
    np.testing.assert_allclose(y, [[.9, -.1], [-.1, .9]])
    with pytest.raises(RegressionError, match="among classes"):
        targets([0, 5], classes=[0, 1])


def test_exact_recovery_matches_numpy_solve():
    k = _spd(40)
    y = np.random.default_rng(1).standard_normal((40, 3))
    sol = solve(k, y)
    np.testing.assert_allclose(sol.alpha, np.linalg.solve(k, y), rtol=1e-10, atol=1e-12)
    assert sol.jitter == 0.0 and sol.ridge == 0.0 and sol.shift == 0.0
    ridge = 0.3
    sol = solve(torch.from_numpy(k), y, ridge=ridge)  # tensors are accepted
    m = np.mean(np.diag(k))
    np.testing.assert_allclose(sol.alpha, np.linalg.solve(k + ridge * m * np.eye(40), y), rtol=1e-10)
    assert sol.shift == pytest.approx(ridge * m) and sol.mean_diag == pytest.approx(m)
    np.testing.assert_allclose(predict(k, sol.alpha), k @ sol.alpha)


def test_ridge_is_relative_to_the_mean_diagonal():
    k = _spd(30)
    y = np.ones((30, 1))
    # scaling the kernel by c scales alpha by 1/c for the same relative ridge
    np.testing.assert_allclose(solve(1e3 * k, y, ridge=0.1).alpha, solve(k, y, ridge=0.1).alpha / 1e3,
                               rtol=1e-10)


@pytest.mark.parametrize("ridge", [0.0, 1e-6, 1e-3, 0.1, 2.0])
def test_eigen_path_equals_cholesky_path(ridge: float):
    k = _spd(60, seed=2)
    y, _ = targets(np.arange(60) % 4)
    eig = EigenSolver(k, y)
    np.testing.assert_allclose(eig.alpha(ridge), solve(k, y, ridge=ridge).alpha, rtol=1e-8, atol=1e-10)
    kt = np.random.default_rng(3).standard_normal((7, 60))
    (scores,) = eig.scores(kt, [ridge])
    np.testing.assert_allclose(scores, kt @ solve(k, y, ridge=ridge).alpha, rtol=1e-8, atol=1e-10)


def test_eigen_path_on_a_real_kernel(digits):
    k, y, _, _ = digits
    t, _ = targets(y)
    eig = EigenSolver(k, t)
    for ridge in (1e-4, 1e-2, 1.0):
        np.testing.assert_allclose(eig.alpha(ridge), solve(k, t, ridge=ridge).alpha,
                                   rtol=1e-8, atol=1e-8)


def _singular_kernel(n: int = 30, rank: int = 5) -> np.ndarray:
    x = np.random.default_rng(4).standard_normal((n, rank))
    return x @ x.T


def test_singular_kernel_with_zero_ridge_is_a_clear_error():
    k = _singular_kernel()
    with pytest.raises(RegressionError, match="not numerically positive definite") as e:
        solve(k, np.ones(30), ridge=0.0)
    assert "hint:" in str(e.value) and "jitter='auto'" in str(e.value)
    with pytest.raises(RegressionError, match="not numerically positive definite"):
        EigenSolver(k, np.ones(30)).alpha(0.0)
    # repeated inputs make a singular Gram matrix too
    x = np.random.default_rng(0).standard_normal((10, 3))
    x = np.concatenate([x, x[:1]])
    with pytest.raises(RegressionError):
        solve(_rbf(x, x, 0.5), np.ones(11))


def test_singular_kernel_with_auto_jitter_reports_it():
    k = _singular_kernel()
    y = np.random.default_rng(5).standard_normal((30, 2))
    sol = solve(k, y, ridge=0.0, jitter="auto")
    assert sol.jitter > 0 and sol.ridge == 0.0
    assert sol.shift == pytest.approx(sol.jitter * np.mean(np.diag(k)))
    assert sol.rcond >= RCOND_MIN
    # alpha solves the jittered system: small normwise backward error
    a = k + sol.shift * np.eye(30)
    backward = np.abs(a @ sol.alpha - y).max() / (np.abs(a).max() * np.abs(sol.alpha).max() * 30)
    assert backward < 1e-14
    np.testing.assert_allclose(sol.alpha, np.linalg.solve(a, y), rtol=1e-2)
    # no jitter is added when none is needed
    assert solve(_spd(10), np.ones(10), jitter="auto").jitter == 0.0


def test_bad_inputs_are_named():
    k = _spd(5)
    with pytest.raises(RegressionError, match="K_train must be a square"):
        solve(np.ones((5, 4)), np.ones(5))
    with pytest.raises(RegressionError, match="not symmetric"):
        solve(k + np.triu(np.ones((5, 5)), 1), np.ones(5))
    bad = k.copy()
    bad[0, 0] = np.nan
    with pytest.raises(RegressionError, match="K_train holds 1 NaN"):
        solve(bad, np.ones(5))
    with pytest.raises(RegressionError, match="Y has 4 rows"):
        solve(k, np.ones(4))
    with pytest.raises(RegressionError, match="K_test_train has shape \\[5, 3\\]"):
        predict(np.ones((5, 3)), np.ones((5, 2)))
    with pytest.raises(RegressionError, match="ridge must be >= 0"):
        solve(k, np.ones(5), ridge=-1.0)


def test_holdout_split_is_stratified_and_disjoint():
    y = np.repeat(np.arange(5), 20)
    fit, val = holdout_split(y, 0.25, seed=0)
    assert len(np.intersect1d(fit, val)) == 0 and len(fit) + len(val) == 100
    assert np.bincount(y[val]).tolist() == [5] * 5
    np.testing.assert_array_equal(holdout_split(y, 0.25, seed=0)[1], val)


def test_sweep_uses_only_training_data(digits):
    k, y, kt, yt = digits
    ridges = [0.0, 1e-6, 1e-3, 1e-1, 10.0]
    alone = sweep(k, y, ridges, seed=1)
    assert alone.ridges.tolist() == ridges and alone.val_accuracy.shape == (5,)
    assert alone.best_ridge in ridges
    assert alone.val_accuracy[ridges.index(alone.best_ridge)] == np.nanmax(alone.val_accuracy)
    assert set(alone.val_index) <= set(range(len(y)))
    # the choice cannot depend on test data: two unrelated test kernels give the same sweep
    rng = np.random.default_rng(0)
    runs = [kernel_regression(k, y, test_k, rng.permutation(yt), ridges=ridges, seed=1)
            for test_k in (kt, rng.random(kt.shape))]
    for r in runs:
        assert r.sweep.best_ridge == alone.best_ridge == r.ridge
        np.testing.assert_array_equal(r.sweep.val_accuracy, alone.val_accuracy)
    # and the final model is refit on the whole training set with the chosen ridge
    full = solve(k, targets(y)[0], ridge=alone.best_ridge)
    np.testing.assert_allclose(runs[0].alpha, full.alpha)
    assert runs[0].alpha.shape == (len(y), 10)


def test_sweep_marks_singular_ridges_and_needs_one_that_works():
    k = _singular_kernel(40, 5)
    y = np.arange(40) % 2
    res = sweep(k, y, [0.0, 1e-2], val_fraction=0.25)
    assert np.isnan(res.val_accuracy[0]) and not np.isnan(res.val_accuracy[1])
    assert res.best_ridge == 1e-2
    with pytest.raises(RegressionError, match="every ridge"):
        sweep(k, y, [0.0])


def test_rbf_on_digits_is_well_above_chance(digits):
    k, y, kt, yt = digits
    res = kernel_regression(k, y, kt, yt, ridges=[1e-6, 1e-4, 1e-2, 1.0])
    assert res.accuracy > 0.9  # chance is 0.1
    assert res.predictions.shape == (300,) and res.scores.shape == (300, 10)
    assert res.accuracy == pytest.approx(accuracy(res.scores, yt, res.classes))
    fixed = kernel_regression(k, y, kt, yt, ridge=1e-3)
    assert fixed.sweep is None and fixed.ridge == 1e-3 and fixed.accuracy > 0.9


def test_holdout_split_on_two_items_per_class():
    from ntkc.learn.regression import holdout_split

    y = np.repeat(np.arange(10), 2)
    fit, val = holdout_split(y, 0.2, seed=0)
    assert len(val) == 10 and len(fit) == 10
    assert set(y[val]) == set(range(10)) == set(y[fit])

"""`ntkc.predict`: predictions over training time against independent computations: the matrix
exponential, a Runge-Kutta integration of the ODE itself, the explicit gradient-descent
recursion, direct Gaussian-process formulas, and the covariance of the affine map from the
random initialisation to the trained outputs, integrated as an ODE too."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

import ntkc
from ntkc.learn.regression import RegressionError, solve
from ntkc.predict import GradientFlow, gradient_descent, gradient_flow, nngp_posterior, ntk_ensemble
from support.checks import images

N_TRAIN = 9


@pytest.fixture(scope="module")
def kernels():
    """NNGP and NTK of a small CNN on 13 images: 9 train, 4 test, and targets."""
    k = ntkc.compile("input height=5 width=4 channels=2\nconv w_std=1.4 b_std=0.1\nrelu\nconv\nerf\ngap\n"
                     "dense b_std=0.2\n")
    r = k(images(13, (5, 4, 2), seed=8), dtype=torch.float64)
    y = np.random.default_rng(1).standard_normal((N_TRAIN, 2))
    return r.nngp, r.ntk, y


def _split(K):
    return K[:N_TRAIN, :N_TRAIN], K[N_TRAIN:, :N_TRAIN], K[N_TRAIN:, N_TRAIN:]


def _rk4(rhs, z0, t, n_steps):
    z, h = z0.copy(), t / n_steps
    for _ in range(n_steps):
        a = rhs(z)
        b = rhs(z + h / 2 * a)
        c = rhs(z + h / 2 * b)
        d = rhs(z + h * c)
        z = z + h / 6 * (a + 2 * b + 2 * c + d)
    return z


def test_gradient_flow_solves_the_ode_it_states(kernels):
    """df/dt = -lr [K; K_*] (f_train - y), f(0) = 0, integrated by RK4, on train and test."""
    _, theta, y = kernels
    K, Ks, _ = _split(theta)
    lr, t = 0.37, 2.5
    rhs = lambda z: -lr * np.concatenate([K, Ks]) @ (z[:N_TRAIN] - y)  # noqa: E731
    z = _rk4(rhs, np.zeros((len(theta), 2)), t, 4000)
    flow = GradientFlow(K, y, lr)
    np.testing.assert_allclose(flow.test(Ks, t), z[N_TRAIN:], rtol=0, atol=1e-9 * np.abs(z).max())
    np.testing.assert_allclose(flow.train(t), z[:N_TRAIN], rtol=0, atol=1e-9 * np.abs(z).max())
    # the same times scaled: lr and t enter only as lr * t
    np.testing.assert_allclose(gradient_flow(K, Ks, y, t * lr, lr=1.0), z[N_TRAIN:], atol=1e-9 * np.abs(z).max())


def test_gradient_flow_against_the_matrix_exponential_with_a_ridge_and_many_times(kernels):
    _, theta, y = kernels
    K, Ks, _ = _split(theta)
    ridge, lr = 1e-2, 0.8
    s = ridge * np.mean(np.diag(K))
    A = K + s * np.eye(N_TRAIN)
    ts = np.array([[0.0, 0.1], [3.0, np.inf]])
    got = gradient_flow(K, Ks, y, ts, lr=lr, ridge=ridge)
    assert got.shape == (2, 2, 4, 2)
    for idx in np.ndindex(2, 2):
        t = ts[idx]
        decay = np.eye(N_TRAIN) if np.isinf(t) else np.eye(N_TRAIN) - scipy.linalg.expm(-lr * A * t)
        want = Ks @ np.linalg.solve(A, decay @ y)
        np.testing.assert_allclose(got[idx], want, rtol=0, atol=1e-10 * max(np.abs(want).max(), 1e-300) + 1e-14)
    # t = inf is kernel (ridge) regression, as ntkc.learn.regression solves it
    np.testing.assert_allclose(got[1, 1], Ks @ solve(K, y, ridge=ridge).alpha, rtol=1e-9)
    assert np.all(got[0, 0] == 0)
    # a 1-D target and a scalar time give [n_test]
    assert gradient_flow(K, Ks, y[:, 0], 1.0).shape == (4,)


def test_gradient_descent_is_the_explicit_recursion(kernels):
    _, theta, y = kernels
    K, Ks, _ = _split(theta)
    flow = GradientFlow(K, y, 1.0)
    lr = 1.5 / flow.w[-1]  # a large step, where flow and descent differ
    f_tr, f_te = np.zeros_like(y), np.zeros((4, 2))
    got = gradient_descent(K, Ks, y, np.arange(13), lr)
    for s in range(13):
        np.testing.assert_allclose(got[s], f_te, rtol=0, atol=1e-11 * max(np.abs(f_te).max(), 1.0))
        f_tr, f_te = f_tr - lr * K @ (f_tr - y), f_te - lr * Ks @ (f_tr - y)
    assert np.abs(got[12] - gradient_flow(K, Ks, y, 12, lr)).max() > 1e-3  # they do differ here
    np.testing.assert_allclose(gradient_descent(K, Ks, y, np.inf, lr), gradient_flow(K, Ks, y, np.inf), rtol=1e-9)
    with pytest.raises(RegressionError, match="diverges"):
        gradient_descent(K, Ks, y, np.inf, 2.5 / flow.w[-1])


def test_nngp_posterior_is_gaussian_process_regression(kernels):
    nngp, _, y = kernels
    K, Ks, Kss = _split(nngp)
    s = 0.05 * np.mean(np.diag(K))
    inv = np.linalg.inv(K + s * np.eye(N_TRAIN))
    full = nngp_posterior(K, Ks, y, Kss, ridge=0.05)
    np.testing.assert_allclose(full.mean, Ks @ inv @ y, rtol=1e-9)
    np.testing.assert_allclose(full.covariance, Kss - Ks @ inv @ Ks.T, rtol=0, atol=1e-10 * np.abs(Kss).max())
    diag = nngp_posterior(K, Ks, y, np.diag(Kss), ridge=0.05)
    assert diag.covariance is None
    np.testing.assert_allclose(diag.variance, np.diag(full.covariance), rtol=0, atol=1e-12)
    assert (diag.variance > 0).all() and (diag.variance < np.diag(Kss)).all()
    assert nngp_posterior(K, Ks, y).variance is None


def _ensemble_by_ode(theta, nngp, y, t, lr):
    """The affine map f0 -> f(t) of the linearised dynamics, integrated as a matrix ODE, and the
    mean and covariance it implies for f0 ~ N(0, NNGP) over train and test points."""
    n = len(theta)
    Th = theta[:, :N_TRAIN]  # [train; test] x train

    def rhs(z):  # the columns of z: one for each initial unit vector, and the last for y's part
        return -lr * Th @ (z[:N_TRAIN] - np.concatenate([np.zeros((N_TRAIN, n)), y[:, :1]], axis=1))

    z = _rk4(rhs, np.concatenate([np.eye(n), np.zeros((n, 1))], axis=1), t, 4000)
    M, c = z[N_TRAIN:, :n], z[N_TRAIN:, n]
    return c, M @ nngp @ M.T


def test_ntk_ensemble_mean_and_covariance_against_the_integrated_dynamics(kernels):
    nngp, theta, y = kernels
    K, Ks, Kss = _split(nngp)
    T, Ts, _ = _split(theta)
    lr, t = 0.6, 1.7
    mean, cov = _ensemble_by_ode(theta, nngp, y, t, lr)
    ens = ntk_ensemble(T, Ts, K, Ks, Kss, y, t, lr=lr)
    np.testing.assert_allclose(ens.mean[:, 0], mean, rtol=0, atol=1e-9 * np.abs(mean).max())
    np.testing.assert_allclose(ens.covariance, cov, rtol=0, atol=1e-9 * np.abs(cov).max())
    diag = ntk_ensemble(T, Ts, K, Ks, np.diag(Kss), y, [0.0, t, np.inf], lr=lr)
    np.testing.assert_allclose(diag.variance[1], np.diag(cov), rtol=0, atol=1e-9 * np.abs(cov).max())
    np.testing.assert_allclose(diag.variance[0], np.diag(Kss), rtol=1e-12)  # untrained: the prior
    np.testing.assert_allclose(diag.mean[1], gradient_flow(T, Ts, y, t, lr), rtol=1e-12)
    # t = inf: Theta_* Theta^-1 applied to (y - f0_train), so the variance comes from f0 alone
    A = Ts @ np.linalg.inv(T)
    want = np.diag(Kss - A @ Ks.T - Ks @ A.T + A @ K @ A.T)
    np.testing.assert_allclose(diag.variance[2], want, rtol=0, atol=1e-9 * np.abs(Kss).max())


def test_readout_only_training_ends_at_the_noiseless_nngp_posterior(kernels):
    nngp, _, y = kernels
    K, Ks, Kss = _split(nngp)
    ens = ntk_ensemble(K, Ks, K, Ks, Kss, y, np.inf)
    post = nngp_posterior(K, Ks, y, Kss)
    np.testing.assert_allclose(ens.mean, post.mean, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(ens.covariance, post.covariance, rtol=0, atol=1e-7 * np.abs(Kss).max())


def test_bad_inputs_are_refused(kernels):
    _, theta, y = kernels
    K, Ks, _ = _split(theta)
    for bad, match in ((dict(t=-1.0), "times"), (dict(t=float("nan")), "times"), (dict(lr=0.0), "learning rate"),
                       (dict(ridge=-1.0), "ridge")):
        args = dict(t=1.0, lr=1.0, ridge=0.0) | bad
        with pytest.raises(RegressionError, match=match):
            gradient_flow(K, Ks, y, **args)
    with pytest.raises(RegressionError, match="k_test_train"):
        gradient_flow(K, Ks.T, y, 1.0)
    singular = np.ones((3, 3))
    assert np.isfinite(gradient_flow(singular, np.ones((2, 3)), np.ones(3), 5.0)).all()  # finite t: fine
    with pytest.raises(RegressionError, match="positive definite"):
        gradient_flow(singular, np.ones((2, 3)), np.ones(3), math.inf)
    with pytest.raises(RegressionError, match="nngp_test_test"):
        ntk_ensemble(K, Ks, K, Ks, None, y, 1.0)

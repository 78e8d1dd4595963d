"""Predictions of infinitely wide networks over training time, and Bayesian inference with the
NNGP (public as `ntkc.predict`; the derivations are in docs/finite.md).

Training is full-batch gradient descent on the squared loss summed over the training set,

    L(theta) = 1/2 sum_i ||f(x_i) - y_i||^2,

which for an infinitely wide network in the NTK parameterisation is linear in function space:
gradient flow with learning rate lr obeys df_train/dt = -lr K (f_train - y), with K the NTK of
the training set, and t counts steps (gradient descent with step lr is that flow sampled at
integer t, up to O(lr) per step; `gradient_descent` gives the exact discrete form). The mean
network starts at f = 0, so on test points

    f_test(t) = K_test,train K^-1 (I - exp(-lr K t)) y          (gradient_flow)
    f_test(s) = K_test,train K^-1 (I - (I - lr K)^s) y          (gradient_descent, s steps)

t = inf is kernel regression. One eigendecomposition K = V diag(w) V^T serves every t: each
eigendirection relaxes on its own, as (1 - exp(-lr w t)) / w. A `ridge` (relative, times the
mean diagonal of K, as in `ntkc.learn.regression`) replaces K by K + ridge * mean(diag K) * I in
the dynamics, so t = inf is kernel ridge regression.

`ntk_ensemble` adds the spread of the ensemble of infinitely wide networks over their random
initialisation, whose outputs at t = 0 are the NNGP's Gaussian process; `nngp_posterior` is
Bayesian inference with the NNGP as prior. Everything is float64 NumPy; kernels may be NumPy
arrays or torch tensors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg

from .regression import RCOND_MIN, RegressionError, _f64, _gram, _mean_diag, solve

__all__ = ["GradientFlow", "gradient_flow", "gradient_descent", "nngp_posterior", "ntk_ensemble",
           "Posterior", "Ensemble"]

# below this |x| = lr w t, (1 - exp(-x)) / w is evaluated by its series lr t (1 - x / 2)
_SERIES = 1e-8


def _times(t: Any) -> tuple[np.ndarray, tuple]:
    arr = np.asarray(t, dtype=np.float64)
    if np.isnan(arr).any() or (arr < 0).any():
        raise RegressionError(f"training times must be >= 0 (inf for the end of training), got {t!r}")
    return arr.reshape(-1), arr.shape


def flow_factor(w: np.ndarray, t: np.ndarray, lr: float) -> np.ndarray:
    """(1 - exp(-lr w t)) / w for every t (rows) and eigenvalue w (columns): how far gradient
    flow has moved along each eigendirection, per unit of target. t = inf gives 1 / w."""
    w = w[None, :]
    t = t[:, None]
    finite = np.isfinite(t)
    tt = np.where(finite, t, 0.0)
    x = lr * w * tt
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = np.where(np.abs(x) < _SERIES, lr * tt * (1.0 - 0.5 * x), -np.expm1(-x) / w)
        return np.where(finite, out, 1.0 / w)


def descent_factor(w: np.ndarray, s: np.ndarray, lr: float) -> np.ndarray:
    """(1 - (1 - lr w)^s) / w: the same for s steps of gradient descent (stable for lr w < 2)."""
    w = w[None, :]
    s = s[:, None]
    finite = np.isfinite(s)
    ss = np.where(finite, s, 0.0)
    x = lr * w
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        small = np.abs(x) < _SERIES
        log_form = -np.expm1(ss * np.log1p(-np.minimum(x, 0.5))) / w   # accurate where 1 - x is near 1
        pow_form = (1.0 - (1.0 - x) ** ss) / w
        out = np.where(small, lr * ss, np.where(x < 0.5, log_form, pow_form))
        return np.where(finite, out, 1.0 / w)


class GradientFlow:
    """Gradient flow (or descent) of an infinitely wide network on the squared loss, with one
    eigendecomposition of the training kernel for any number of times.

    k_train_train: [n, n] NTK of the training set (the NNGP gives readout-only training);
    y_train: [n] or [n, k] targets; lr: the learning rate; ridge: relative to the mean diagonal.
    `test(k_test_train, t)` and `train(t)` return [*t.shape, n_test, k] (k left out for 1-D
    targets); `discrete=True` reads t as a number of gradient-descent steps of size lr.
    """

    def __init__(self, k_train_train: Any, y_train: Any, lr: float = 1.0, ridge: float = 0.0,
                 discrete: bool = False):
        if not lr > 0:
            raise RegressionError(f"the learning rate must be > 0, got {lr}")
        if not ridge >= 0:
            raise RegressionError(f"ridge must be >= 0, got {ridge}", "the ridge is relative to the mean diagonal")
        k = _gram(k_train_train, "k_train_train")
        y = _f64(y_train, "y_train")
        if y.shape[0] != len(k):
            raise RegressionError(f"y_train has {y.shape[0]} rows but k_train_train is {len(k)} x {len(k)}")
        self.lr, self.ridge, self.discrete = float(lr), float(ridge), discrete
        self.shift = ridge * _mean_diag(k, "k_train_train")
        self.w, self.v = scipy.linalg.eigh(k + self.shift * np.eye(len(k)), check_finite=False)
        self.vty = self.v.T @ y.reshape(len(k), -1)
        self._vector = y.ndim == 1

    @property
    def max_stable_lr(self) -> float:
        """Gradient descent converges for lr below 2 / (largest eigenvalue)."""
        return 2.0 / self.w[-1]

    def factor(self, t: Any) -> np.ndarray:
        """[len(t), n]: the relaxation of each eigendirection at each time (see `flow_factor`)."""
        tt, _ = _times(t)
        if np.isinf(tt).any() and not self.w[0] > RCOND_MIN * self.w[-1]:
            raise RegressionError(
                f"t = inf needs a positive definite kernel, but its smallest eigenvalue is {self.w[0]:.3g} "
                f"(largest {self.w[-1]:.3g})", "use a ridge > 0, or finite times")
        if self.discrete:
            if np.isinf(tt).any() and not self.lr * self.w[-1] < 2.0:
                raise RegressionError(
                    f"gradient descent with lr={self.lr:g} diverges on this kernel (largest eigenvalue "
                    f"{self.w[-1]:.4g}), so it has no end point", f"use lr < {self.max_stable_lr:.4g}")
            return descent_factor(self.w, tt, self.lr)
        return flow_factor(self.w, tt, self.lr)

    def _out(self, rows: np.ndarray, t: Any) -> np.ndarray:
        """rows: [m, n] = K(points, train) V; returns [*t.shape, m, k]."""
        _, shape = _times(t)
        g = self.factor(t)  # [T, n]
        out = np.einsum("mn,tn,nk->tmk", rows, g, self.vty)
        out = out.reshape(shape + out.shape[1:])
        return out[..., 0] if self._vector else out

    def test(self, k_test_train: Any, t: Any) -> np.ndarray:
        """Mean predictions on test points at time(s) t: [*t.shape, n_test, k]."""
        kt = _f64(k_test_train, "k_test_train")
        if kt.ndim != 2 or kt.shape[1] != len(self.w):
            raise RegressionError(f"k_test_train must be [n_test, {len(self.w)}], got shape {list(kt.shape)}",
                                  "pass kernel(x_test, x_train)")
        return self._out(kt @ self.v, t)

    def train(self, t: Any) -> np.ndarray:
        """Mean predictions on the training points at time(s) t: [*t.shape, n, k]."""
        # K_train V = V diag(w - shift): the ridge is in the dynamics, not in the kernel
        return self._out(self.v * (self.w - self.shift)[None, :], t)


def gradient_flow(k_train_train: Any, k_test_train: Any, y_train: Any, t: Any, lr: float = 1.0,
                  ridge: float = 0.0) -> np.ndarray:
    """The mean test prediction at time(s) t of gradient flow df_train/dt = -lr K (f_train - y),
    f(0) = 0: K_test,train K^-1 (I - exp(-lr K t)) y, by one eigendecomposition for every t.
    Returns [*t.shape, n_test, k] ([*t.shape, n_test] for 1-D y); t = inf is kernel regression."""
    return GradientFlow(k_train_train, y_train, lr, ridge).test(k_test_train, t)


def gradient_descent(k_train_train: Any, k_test_train: Any, y_train: Any, steps: Any, lr: float,
                     ridge: float = 0.0) -> np.ndarray:
    """The same after `steps` steps of gradient descent of size lr: K_test,train K^-1 (I - (I - lr
    K)^steps) y, exactly what the infinitely wide network trained by `ntkc compare` computes."""
    return GradientFlow(k_train_train, y_train, lr, ridge, discrete=True).test(k_test_train, steps)


# ---------------------------------------------------------------------------------------------
# Bayesian inference with the NNGP


@dataclass(frozen=True, eq=False)
class Posterior:
    """The NNGP posterior on test points: `mean` [n_test, k] ([n_test] for 1-D y) and `variance`
    [n_test] of the latent f (or `covariance` [n_test, n_test] when k_test_test was a matrix;
    the other is then the diagonal)."""

    mean: np.ndarray
    variance: np.ndarray | None
    covariance: np.ndarray | None


def _test_test(k_test_test: Any, n_test: int) -> tuple[np.ndarray | None, bool]:
    """(kernel, full): a [n_test] diagonal or a [n_test, n_test] matrix, or None."""
    if k_test_test is None:
        return None, False
    k = _f64(k_test_test, "k_test_test")
    if k.shape == (n_test,):
        return k, False
    if k.shape == (n_test, n_test):
        return k, True
    raise RegressionError(f"k_test_test must be [n_test] (its diagonal) or [n_test, n_test], got {list(k.shape)}",
                          f"n_test = {n_test}")


def nngp_posterior(k_train_train: Any, k_test_train: Any, y_train: Any, k_test_test: Any = None,
                   ridge: float = 0.0) -> Posterior:
    """Gaussian-process regression with the NNGP as prior and observation noise of variance
    ridge * mean(diag K) (relative, as everywhere in ntkc):

        mean = K_*  (K + s I)^-1 y,      cov = K_** - K_* (K + s I)^-1 K_*^T.

    `k_test_test` is the NNGP on the test points, its diagonal [n_test] (variances) or the whole
    [n_test, n_test] matrix (covariance); without it only the mean is returned."""
    kt = _f64(k_test_train, "k_test_train")
    y = _f64(y_train, "y_train")
    sol = solve(k_train_train, y.reshape(len(y), -1), ridge=ridge)
    if kt.ndim != 2 or kt.shape[1] != len(y):
        raise RegressionError(f"k_test_train must be [n_test, {len(y)}], got shape {list(kt.shape)}")
    mean = kt @ sol.alpha
    mean = mean[:, 0] if y.ndim == 1 else mean
    kss, full = _test_test(k_test_test, len(kt))
    if kss is None:
        return Posterior(mean, None, None)
    inner = solve(k_train_train, kt.T, ridge=ridge).alpha  # (K + s I)^-1 K_*^T
    if full:
        cov = kss - kt @ inner
        cov = (cov + cov.T) / 2
        return Posterior(mean, np.diag(cov).copy(), cov)
    return Posterior(mean, kss - np.einsum("mn,nm->m", kt, inner), None)


# ---------------------------------------------------------------------------------------------
# the ensemble of infinitely wide networks trained to time t


@dataclass(frozen=True, eq=False)
class Ensemble:
    """Mean and spread of the test outputs of infinitely wide networks trained to time t, over
    their random initialisation: `mean` [*t.shape, n_test, k] ([.., n_test] for 1-D y),
    `variance` [*t.shape, n_test] (or `covariance` [*t.shape, n_test, n_test] for a matrix
    k_test_test; `variance` is then its diagonal). Every output unit has the same variance."""

    mean: np.ndarray
    variance: np.ndarray
    covariance: np.ndarray | None


def ntk_ensemble(ntk_train_train: Any, ntk_test_train: Any, nngp_train_train: Any, nngp_test_train: Any,
                 nngp_test_test: Any, y_train: Any, t: Any, lr: float = 1.0, ridge: float = 0.0,
                 discrete: bool = False) -> Ensemble:
    """The ensemble of infinitely wide networks trained by gradient flow for time t (gradient
    descent for t steps with `discrete=True`) from their random initialisation.

    At initialisation f_0 is the NNGP's Gaussian process (mean 0, covariance K); training is
    linear with the NTK Theta, so on test points f(t) = f0_test + Theta_* A(t) (y - f0_train) with
    A(t) = Theta^-1 (I - exp(-lr Theta t)). Hence mean Theta_* A y (`gradient_flow`) and

        cov = K_** - Theta_* A K_*^T - K_* A^T Theta_*^T + Theta_* A K A^T Theta_*^T

    (derivation in docs/finite.md). Passing the NNGP as both kernels describes networks whose
    readout alone is trained; at t = inf that is the noiseless NNGP posterior."""
    flow = GradientFlow(ntk_train_train, y_train, lr, ridge, discrete)
    n = len(flow.w)
    th = _f64(ntk_test_train, "ntk_test_train")
    kt = _f64(nngp_test_train, "nngp_test_train")
    k = _gram(nngp_train_train, "nngp_train_train")
    for name, a in (("ntk_test_train", th), ("nngp_test_train", kt)):
        if a.ndim != 2 or a.shape[1] != n or a.shape != th.shape:
            raise RegressionError(f"{name} must be [n_test, {n}] like ntk_test_train, got {list(a.shape)}")
    if k.shape != (n, n):
        raise RegressionError(f"nngp_train_train must be [{n}, {n}], got {list(k.shape)}")
    kss, full = _test_test(nngp_test_test, len(th))
    if kss is None:
        raise RegressionError("ntk_ensemble needs nngp_test_test, the NNGP on the test points "
                              "(its diagonal [n_test], or the whole matrix)")
    _, shape = _times(t)
    mean = flow.test(th, t)
    g = flow.factor(t)                        # [T, n]
    b = th @ flow.v                           # Theta_* V           [m, n]
    c = flow.v.T @ kt.T                       # V^T K_*^T           [n, m]
    m = flow.v.T @ k @ flow.v                 # V^T K V             [n, n]
    bg = b[None, :, :] * g[:, None, :]        # Theta_* V diag(g)   [T, m, n]
    if full:
        cross = bg @ c                        # Theta_* A K_*^T
        cov = kss[None] - cross - np.swapaxes(cross, 1, 2) + bg @ m @ np.swapaxes(bg, 1, 2)
        cov = (cov + np.swapaxes(cov, 1, 2)) / 2
        var = np.diagonal(cov, axis1=1, axis2=2).copy()
        return Ensemble(mean, var.reshape(shape + var.shape[1:]), cov.reshape(shape + cov.shape[1:]))
    var = kss[None] - 2 * np.einsum("tmn,nm->tm", bg, c) + np.einsum("tmn,nl,tml->tm", bg, m, bg)
    return Ensemble(mean, var.reshape(shape + var.shape[1:]), None)

"""Kernel regression on NNGP / NTK Gram matrices, with the protocol of Arora et al. 2019.

Classification is regression onto one-hot targets shifted by -0.1 (true class 0.9, others
-0.1); the predicted class is the argmax of `K_test_train @ alpha`, where
`alpha = (K_train + ridge * mean(diag K_train) * I)^-1 Y`.

The ridge is RELATIVE: it multiplies the mean of the training kernel's diagonal, so one value
means the same for kernels of any scale (NNGP and NTK differ by large factors). Everything is
float64. A ridge is chosen on a held-out part of the training set (`sweep`); test kernels are
only ever used for prediction, after the choice.

Functions take NumPy arrays or CPU torch tensors; a kernel is just a matrix here, so the same
code serves NNGP and NTK.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import NtkcError
import scipy.linalg

__all__ = [
    "RegressionError",
    "Solution",
    "SweepResult",
    "RegressionResult",
    "EigenSolver",
    "targets",
    "solve",
    "predict",
    "labels",
    "accuracy",
    "holdout_split",
    "sweep",
    "kernel_regression",
    "DEFAULT_RIDGES",
    "RCOND_MIN",
]

#: relative ridges tried by default (times the mean diagonal), by `sweep`, `ntkc regress
#: --ridge auto` and experiments alike: 0 and 1e-6 .. 10
DEFAULT_RIDGES = (0.0,) + tuple(10.0 ** p for p in range(-6, 2))

#: relative jitters tried, in order, by `jitter="auto"` when the plain solve fails
AUTO_JITTERS = tuple(10.0 ** p for p in range(-12, -2))

TARGET_SHIFT = 0.1

#: smallest accepted reciprocal condition number of the shifted kernel matrix. Below it the
#: system counts as singular: alpha would keep fewer than ~4 correct digits in float64.
RCOND_MIN = 1e-12


class RegressionError(NtkcError, ValueError):
    """A kernel system cannot be solved as asked (shapes, NaN, not positive definite)."""


@dataclass(frozen=True, eq=False)
class Solution:
    """Dual coefficients of one solve, with what was added to the diagonal.

    alpha: [n_train, k] float64
    ridge: the relative ridge asked for
    jitter: the relative jitter added on top of it (0.0 unless `jitter="auto"` needed one)
    shift: absolute amount added to the diagonal, (ridge + jitter) * mean_diag
    mean_diag: mean of diag(K_train)
    rcond: estimated reciprocal condition number (1-norm) of the shifted matrix
    """

    alpha: np.ndarray
    ridge: float
    jitter: float
    shift: float
    mean_diag: float
    rcond: float


@dataclass(frozen=True, eq=False)
class SweepResult:
    """Validation accuracy of each relative ridge on a held-out part of the training set.

    ridges, val_accuracy: [r] (accuracy NaN where the system was singular)
    best_ridge: the ridge with the highest validation accuracy (the largest one among ties)
    fit_index, val_index: positions in the training set used to fit and to validate
    """

    ridges: np.ndarray
    val_accuracy: np.ndarray
    best_ridge: float
    fit_index: np.ndarray
    val_index: np.ndarray


@dataclass(frozen=True, eq=False)
class RegressionResult:
    """Outcome of `kernel_regression`.

    accuracy: on the test set (None without y_test)
    ridge, jitter: relative values used for the final fit on the whole training set
    predictions: [n_test] predicted labels (None without a test kernel)
    scores: [n_test, k] regression outputs (None without a test kernel)
    alpha: [n_train, k] dual coefficients of the final fit
    classes: [k] the labels that the columns of `scores` and `alpha` stand for
    sweep: the ridge selection, when `ridges` was given
    solution: the final solve, with its shift and condition estimate
    """

    accuracy: float | None
    ridge: float
    jitter: float
    predictions: np.ndarray | None
    scores: np.ndarray | None
    alpha: np.ndarray
    classes: np.ndarray
    sweep: SweepResult | None
    solution: Solution


# ---------------------------------------------------------------------------------------------
# inputs


def _f64(a: Any, name: str) -> np.ndarray:
    if hasattr(a, "detach"):  # torch tensor
        a = a.detach().cpu().numpy()
    out = np.asarray(a, dtype=np.float64)
    if not np.isfinite(out).all():
        raise RegressionError(f"{name} holds {int((~np.isfinite(out)).sum())} NaN/inf entries",
                              "recompute the kernel in float64, or check the input images")
    return out


def _gram(k: Any, name: str = "K_train") -> np.ndarray:
    k = _f64(k, name)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise RegressionError(f"{name} must be a square [n, n] matrix, got shape {list(k.shape)}",
                              "pass the train-train Gram matrix kernel(x_train).ntk or .nngp")
    scale = max(np.abs(k).max(initial=0.0), np.finfo(float).tiny)
    asym = np.abs(k - k.T).max(initial=0.0) / scale
    if asym > 1e-6:
        raise RegressionError(f"{name} is not symmetric (max |K - K^T| / max |K| = {asym:.2g})",
                              "pass the train-train Gram matrix, not a train-test one")
    return (k + k.T) / 2


def _mean_diag(k: np.ndarray, name: str = "K_train") -> float:
    m = float(np.mean(np.diag(k))) if len(k) else 0.0
    if not m > 0:
        raise RegressionError(f"{name} has mean diagonal {m:g}; a kernel's diagonal is positive")
    return m




def targets(y: Any, classes: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """One-hot targets minus 0.1 ([n, k], true class 0.9, others -0.1), and the classes [k].

    `classes` defaults to the sorted distinct labels of `y`.
    """
    y = np.asarray(y)
    classes = np.unique(y) if classes is None else np.asarray(classes)
    order = np.argsort(classes, kind="stable")
    pos = np.clip(np.searchsorted(classes[order], y), 0, max(len(classes) - 1, 0))
    if y.ndim != 1 or len(classes) == 0 or (classes[order][pos] != y).any():
        raise RegressionError(f"labels must be 1-D values among classes {classes.tolist()}, "
                              f"got shape {list(y.shape)}")
    pos = order[pos]
    out = np.full((len(y), len(classes)), -TARGET_SHIFT)
    out[np.arange(len(y)), pos] += 1.0
    return out, classes


# ---------------------------------------------------------------------------------------------
# direct solve


def _cholesky(k: np.ndarray, shift: float, rcond_min: float) -> tuple[Any, float] | None:
    a = k + shift * np.eye(len(k))
    try:
        c = scipy.linalg.cho_factor(a, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        return None
    rcond, info = scipy.linalg.lapack.dpocon(c[0], np.abs(a).sum(axis=0).max(), uplo="L")
    if info != 0 or not rcond >= rcond_min:
        return None
    return c, float(rcond)


def solve(
    K_train: Any,
    Y: Any,
    ridge: float = 0.0,
    jitter: str | None = None,
    *,
    rcond_min: float = RCOND_MIN,
) -> Solution:
    """Solve (K_train + ridge * mean(diag K_train) * I) alpha = Y by float64 Cholesky.

    ridge: relative to the mean diagonal of K_train (0 = plain interpolation).
    jitter: None raises RegressionError when the shifted matrix is not numerically positive
        definite (Cholesky fails, or its estimated reciprocal condition number is below
        `rcond_min`); "auto" then retries with relative jitters 1e-12, 1e-11, ... 1e-3 added to the
        ridge and records the one that worked in `Solution.jitter`.
    Y: [n] or [n, k] targets (see `targets`).
    """
    if jitter not in (None, "auto"):
        raise RegressionError(f"jitter must be None or 'auto', got {jitter!r}")
    if not ridge >= 0:
        raise RegressionError(f"ridge must be >= 0, got {ridge}",
                              "the ridge is relative to the mean diagonal, e.g. 1e-4")
    k = _gram(K_train)
    y = _f64(Y, "Y")
    if y.shape[0] != len(k):
        raise RegressionError(f"Y has {y.shape[0]} rows but K_train is {len(k)} x {len(k)}")
    m = _mean_diag(k)
    for jit in (0.0,) + (AUTO_JITTERS if jitter == "auto" else ()):
        factored = _cholesky(k, (ridge + jit) * m, rcond_min)
        if factored is not None:
            c, rcond = factored
            alpha = scipy.linalg.cho_solve(c, y, check_finite=False)
            return Solution(alpha, float(ridge), jit, (ridge + jit) * m, m, rcond)
    if jitter == "auto":
        raise RegressionError(
            f"K_train + (ridge + jitter) * mean(diag) * I is not positive definite even with "
            f"jitter {AUTO_JITTERS[-1]:g} (ridge={ridge:g})",
            "the kernel is far from positive semi-definite: check how it was computed",
        )
    raise RegressionError(
        f"K_train + ridge * mean(diag) * I is not numerically positive definite "
        f"(ridge={ridge:g}, n={len(k)}): the Gram matrix is singular or nearly so, e.g. "
        "repeated or linearly dependent inputs",
        "use a ridge > 0 (relative to the mean diagonal, e.g. 1e-6), or jitter='auto' to add "
        "the smallest jitter that works",
    )


def predict(K_test_train: Any, alpha: Any) -> np.ndarray:
    """Regression outputs K_test_train @ alpha: [n_test, n_train] x [n_train, k] -> [n_test, k]."""
    kt = _f64(K_test_train, "K_test_train")
    a = np.asarray(alpha, dtype=np.float64)
    if kt.ndim != 2 or kt.shape[1] != a.shape[0]:
        raise RegressionError(
            f"K_test_train has shape {list(kt.shape)} but alpha has {a.shape[0]} rows",
            "K_test_train is [n_test, n_train]: kernel(x_test, x_train)",
        )
    return kt @ a


def labels(scores: Any, classes: Any = None) -> np.ndarray:
    """The class of each row's largest score (column index when `classes` is None)."""
    idx = np.argmax(np.asarray(scores), axis=1)
    return idx if classes is None else np.asarray(classes)[idx]


def accuracy(scores: Any, y: Any, classes: Any = None) -> float:
    """Fraction of rows whose argmax class equals the label."""
    y = np.asarray(y)
    if len(y) == 0:
        raise RegressionError("accuracy of an empty set")
    return float(np.mean(labels(scores, classes) == y))


# ---------------------------------------------------------------------------------------------
# many ridges at once


class EigenSolver:
    """K_train = V diag(w) V^T computed once; each ridge then costs O(n k) (+ O(m n k) to
    predict m points). Agrees with `solve` where both succeed.
    """

    def __init__(self, K_train: Any, Y: Any, *, rcond_min: float = RCOND_MIN):
        self.rcond_min = rcond_min
        k = _gram(K_train)
        y = _f64(Y, "Y")
        if y.shape[0] != len(k):
            raise RegressionError(f"Y has {y.shape[0]} rows but K_train is {len(k)} x {len(k)}")
        self.mean_diag = _mean_diag(k)
        self.w, self.v = scipy.linalg.eigh(k, check_finite=False)
        self.vty = self.v.T @ y

    def _inverse_eigs(self, ridge: float) -> np.ndarray:
        d = self.w + ridge * self.mean_diag
        top = np.abs(d).max()
        if d.min() <= 0 or not d.min() / top >= self.rcond_min:
            raise RegressionError(
                f"K_train + ridge * mean(diag) * I is not numerically positive definite "
                f"(ridge={ridge:g}; smallest eigenvalue {d.min():.3g}, largest {top:.3g})",
                "use a larger ridge",
            )
        return 1.0 / d

    def alpha(self, ridge: float) -> np.ndarray:
        """Dual coefficients for one relative ridge."""
        inv = self._inverse_eigs(ridge)
        return self.v @ (inv.reshape(-1, *([1] * (self.vty.ndim - 1))) * self.vty)

    def scores(self, K_cross: Any, ridges: Iterable[float]) -> list[np.ndarray | None]:
        """K_cross @ alpha(ridge) for each ridge; None where that ridge is singular."""
        kv = _f64(K_cross, "K_cross") @ self.v
        out: list[np.ndarray | None] = []
        for r in ridges:
            try:
                inv = self._inverse_eigs(r)
            except RegressionError:
                out.append(None)
                continue
            out.append(kv @ (inv.reshape(-1, *([1] * (self.vty.ndim - 1))) * self.vty))
        return out


# ---------------------------------------------------------------------------------------------
# ridge selection on the training set


def holdout_split(y: Any, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (fit_index, val_index) split of the training labels, fixed by `seed`.

    Each class keeps at least one item on the fit side and, when it has two or more, gives at
    least one to the validation side (so tiny training sets, e.g. 2 per class, can still choose a
    ridge).
    """
    if not 0 < val_fraction < 1:
        raise RegressionError(f"val_fraction must be in (0, 1), got {val_fraction}")
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    fit, val = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        nv = min(max(int(round(val_fraction * len(idx))), 1 if len(idx) >= 2 else 0), len(idx) - 1)
        val.append(idx[:nv])
        fit.append(idx[nv:])
    fit_i, val_i = np.sort(np.concatenate(fit)), np.sort(np.concatenate(val))
    if len(val_i) == 0:
        raise RegressionError(f"validation split is empty ({len(y)} training labels, "
                              f"val_fraction={val_fraction})", "use more training data")
    return fit_i, val_i


def sweep(
    K_train: Any,
    y_train: Any,
    ridges: Sequence[float] = DEFAULT_RIDGES,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> SweepResult:
    """Pick a relative ridge by accuracy on a held-out part of the TRAINING set.

    Splits the training set (stratified, `holdout_split`), fits on one part with one
    eigendecomposition and scores every ridge on the other. Takes no test data at all.
    Ties go to the largest ridge; ridges whose system is singular get NaN.
    """
    k = _gram(K_train)
    y = np.asarray(y_train)
    if len(y) != len(k):
        raise RegressionError(f"y_train has {len(y)} labels but K_train is {len(k)} x {len(k)}")
    ridges_a = np.asarray(list(ridges), dtype=np.float64)
    if ridges_a.size == 0 or not (ridges_a >= 0).all():
        raise RegressionError(f"ridges must be a non-empty list of values >= 0, got {ridges!r}")
    fit_i, val_i = holdout_split(y, val_fraction, seed)
    y_fit, classes = targets(y[fit_i])
    solver = EigenSolver(k[np.ix_(fit_i, fit_i)], y_fit)
    all_scores = solver.scores(k[np.ix_(val_i, fit_i)], ridges_a)
    acc = np.array([np.nan if s is None else accuracy(s, y[val_i], classes) for s in all_scores])
    if np.isnan(acc).all():
        raise RegressionError(f"every ridge in {ridges_a.tolist()} gave a singular system",
                              "include larger ridges")
    best = np.nanmax(acc)
    best_ridge = float(ridges_a[acc == best].max())
    return SweepResult(ridges_a, acc, best_ridge, fit_i, val_i)


def kernel_regression(
    K_train: Any,
    y_train: Any,
    K_test_train: Any = None,
    y_test: Any = None,
    *,
    ridge: float = 0.0,
    ridges: Sequence[float] | None = None,
    jitter: str | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> RegressionResult:
    """Classify by kernel regression onto one-hot - 0.1 targets.

    With `ridges`, the relative ridge is chosen by `sweep` on the training set alone, then
    the model is refit on the whole training set with it; otherwise `ridge` is used. The test
    kernel ([n_test, n_train]) is only used for the final prediction.
    """
    sw = None
    if ridges is not None:
        sw = sweep(K_train, y_train, ridges, val_fraction=val_fraction, seed=seed)
        ridge = sw.best_ridge
    y_fit, classes = targets(y_train)
    sol = solve(K_train, y_fit, ridge=ridge, jitter=jitter)
    scores = preds = acc = None
    if K_test_train is not None:
        scores = predict(K_test_train, sol.alpha)
        preds = labels(scores, classes)
        if y_test is not None:
            y_test = np.asarray(y_test)
            if len(y_test) != len(preds):
                raise RegressionError(f"y_test has {len(y_test)} labels but K_test_train has "
                                      f"{len(preds)} rows")
            acc = float(np.mean(preds == y_test))
    return RegressionResult(acc, sol.ridge, sol.jitter, preds, scores, sol.alpha, classes, sw, sol)

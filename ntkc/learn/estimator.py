"""scikit-learn faces of a compiled kernel: estimators, precomputed Grams, callable kernels.

A *kernel* here is anything with the contract of `ntkc.compile(...)`'s result:

    kernel(x1, x2=None, dtype=torch.float64, backend="auto") -> result with .nngp and .ntk

where x1, x2 are NCHW arrays and .nngp / .ntk are [n1, n2] (x2=None means x2 = x1). An `.arch`
path or source text is accepted in its place and compiled on first use.

    clf = CNTKClassifier("examples/cntk.arch", ridges=[0, 1e-4, 1e-2]).fit(x_train, y_train)
    clf.score(x_test, y_test)

    svc = SVC(kernel="precomputed").fit(precomputed(k, x_train), y_train)
    svc.predict(precomputed(k, x_test, x_train))
"""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from ..util.precision import torch_dtype
from .regression import (
    labels,
    predict as _predict,
    solve,
    sweep,
    targets,
)

__all__ = ["CNTKClassifier", "CNTKRegressor", "precomputed", "as_callable", "resolve_kernel"]

_WHICH = ("ntk", "nngp")


def resolve_kernel(kernel: Any) -> Any:
    """A kernel object as is; an `.arch` path or source text compiled with `ntkc.compile`."""
    if isinstance(kernel, (str, os.PathLike)):
        from ..engine.kernel import compile_kernel

        return compile_kernel(kernel)
    if not callable(kernel):
        raise TypeError(
            f"kernel must be callable as kernel(x1, x2=None, dtype=..., backend=...) or be an "
            f".arch path / source text; got {type(kernel).__name__}"
        )
    return kernel


def _pick(result: Any, which: str) -> np.ndarray:
    if which not in _WHICH:
        raise ValueError(f"which must be 'ntk' or 'nngp', got {which!r}")
    k = getattr(result, which)
    if hasattr(k, "detach"):
        k = k.detach().cpu().numpy()
    return np.asarray(k, dtype=np.float64)


def precomputed(
    kernel: Any,
    x1: Any,
    x2: Any = None,
    which: str = "ntk",
    dtype: Any = torch.float64,
    backend: str = "auto",
) -> np.ndarray:
    """The float64 Gram matrix [n1, n2] for scikit-learn's `kernel="precomputed"`.

    Fit with `precomputed(k, x_train)`, predict with `precomputed(k, x_test, x_train)`
    (rows are the points to predict, columns the training points).
    """
    k = resolve_kernel(kernel)
    return _pick(k(x1, x2, dtype=torch_dtype(dtype), backend=backend), which)


def as_callable(
    kernel: Any,
    image_shape: Sequence[int],
    which: str = "ntk",
    dtype: Any = torch.float64,
    backend: str = "auto",
) -> Callable[[np.ndarray, np.ndarray | None], Any]:
    """f(X, Y) on flattened rows, for estimators that take a callable kernel (e.g. `SVC`).

    Rows of X and Y are images flattened from `image_shape` = (C, H, W) in C order. `SVC`
    calls f with 2-D arrays and gets [n_x, n_y]; `pairwise_kernels` (used by `KernelRidge`
    with a callable) calls it once per pair of 1-D rows and gets a float, which works but is
    slow: prefer `kernel="precomputed"` with `precomputed` there.
    """
    k = resolve_kernel(kernel)
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3:
        raise ValueError(f"image_shape must be (C, H, W), got {image_shape!r}")
    as_dtype = torch_dtype(dtype)
    if which not in _WHICH:
        raise ValueError(f"which must be 'ntk' or 'nngp', got {which!r}")

    def images(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=np.float64).reshape(-1, *shape)

    def f(X: np.ndarray, Y: np.ndarray | None = None) -> Any:
        X = np.asarray(X)
        single = X.ndim == 1
        if Y is None or Y is X:
            gram = _pick(k(images(X), None, dtype=as_dtype, backend=backend), which)
        else:
            gram = _pick(k(images(X), images(np.asarray(Y)), dtype=as_dtype, backend=backend), which)
        return float(gram[0, 0]) if single else gram

    f.__name__ = f"ntkc_{which}"
    return f


class _KernelModel(BaseEstimator):
    """Shared parts: turning X into NCHW images and computing Gram matrices."""

    def _images(self, X: Any) -> np.ndarray:
        if hasattr(X, "detach"):
            X = X.detach().cpu().numpy()
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 4:
            return X
        if X.ndim == 2:
            shape = self.image_shape
            if shape is None:
                inp = getattr(getattr(self.kernel_, "network", None), "input", None)
                if inp is not None:
                    shape = (inp.channels, inp.height, inp.width)
            if shape is None:
                raise ValueError(
                    f"X has shape {list(X.shape)}: flattened rows need image_shape=(C, H, W), "
                    "or pass NCHW images"
                )
            return X.reshape(len(X), *shape)
        raise ValueError(f"X must be NCHW images [N, C, H, W] or flattened rows [N, C*H*W], "
                         f"got shape {list(X.shape)}")

    def _gram(self, x1: np.ndarray, x2: np.ndarray | None = None) -> np.ndarray:
        result = self.kernel_(x1, x2, dtype=torch_dtype(self.dtype), backend=self.backend)
        return _pick(result, self.which)

    def _start_fit(self, X: Any) -> np.ndarray:
        """Resolve the kernel, keep the training images, return their Gram matrix."""
        if self.which not in _WHICH:
            raise ValueError(f"which must be 'ntk' or 'nngp', got {self.which!r}")
        self.kernel_ = resolve_kernel(self.kernel)
        x = self._images(X)
        self.X_fit_ = x
        return self._gram(x)

    def _cross(self, X: Any) -> np.ndarray:
        if not hasattr(self, "alpha_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit first")
        return self._gram(self._images(X), self.X_fit_)


class CNTKClassifier(ClassifierMixin, _KernelModel):
    """Kernel regression classifier on the NTK (or NNGP) of a compiled architecture.

    Fits one-hot - 0.1 targets (Arora et al. 2019) by solving
    (K + ridge * mean(diag K) * I) alpha = Y in float64; predicts the argmax class.

    kernel: a compiled kernel, or an `.arch` path / source text
    which: "ntk" or "nngp"
    ridge: relative ridge (times the mean diagonal of the training Gram matrix)
    ridges: if given, the ridge is chosen among these on a held-out `val_fraction` of the
        training set (seeded by `seed`), then the model is refit on all of it
    jitter: None (singular systems raise) or "auto" (smallest working jitter, see `jitter_`)
    image_shape: (C, H, W) to reshape flattened 2-D X; defaults to the kernel's input shape
    dtype, backend: passed to the kernel

    Fitted: classes_, alpha_ [n_train, k], ridge_, jitter_, sweep_ (or None), X_fit_, kernel_
    """

    def __init__(self, kernel: Any = None, which: str = "ntk", ridge: float = 0.0,
                 ridges: Sequence[float] | None = None, jitter: str | None = None,
                 val_fraction: float = 0.2, seed: int = 0,
                 image_shape: Sequence[int] | None = None, dtype: Any = "float64",
                 backend: str = "auto"):
        self.kernel = kernel
        self.which = which
        self.ridge = ridge
        self.ridges = ridges
        self.jitter = jitter
        self.val_fraction = val_fraction
        self.seed = seed
        self.image_shape = image_shape
        self.dtype = dtype
        self.backend = backend

    def fit(self, X: Any, y: Any) -> "CNTKClassifier":
        y = np.asarray(y)
        gram = self._start_fit(X)
        if len(y) != len(gram):
            raise ValueError(f"X has {len(gram)} images but y has {len(y)} labels")
        self.sweep_ = None
        ridge = self.ridge
        if self.ridges is not None:
            self.sweep_ = sweep(gram, y, self.ridges, val_fraction=self.val_fraction, seed=self.seed)
            ridge = self.sweep_.best_ridge
        t, self.classes_ = targets(y)
        self.solution_ = solve(gram, t, ridge=ridge, jitter=self.jitter)
        self.alpha_ = self.solution_.alpha
        self.ridge_, self.jitter_ = self.solution_.ridge, self.solution_.jitter
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Regression outputs [n, k] (one column per class in `classes_`)."""
        return _predict(self._cross(X), self.alpha_)

    def predict(self, X: Any) -> np.ndarray:
        return labels(self.decision_function(X), self.classes_)


class CNTKRegressor(RegressorMixin, _KernelModel):
    """Kernel ridge regression of real targets ([n] or [n, k]) on a compiled kernel.

    Same parameters as `CNTKClassifier` without the ridge sweep; `ridge` is relative to the
    mean diagonal of the training Gram matrix.
    """

    def __init__(self, kernel: Any = None, which: str = "ntk", ridge: float = 0.0,
                 jitter: str | None = None, image_shape: Sequence[int] | None = None,
                 dtype: Any = "float64", backend: str = "auto"):
        self.kernel = kernel
        self.which = which
        self.ridge = ridge
        self.jitter = jitter
        self.image_shape = image_shape
        self.dtype = dtype
        self.backend = backend

    def fit(self, X: Any, y: Any) -> "CNTKRegressor":
        y = np.asarray(y, dtype=np.float64)
        gram = self._start_fit(X)
        if len(y) != len(gram):
            raise ValueError(f"X has {len(gram)} images but y has {len(y)} targets")
        self.solution_ = solve(gram, y, ridge=self.ridge, jitter=self.jitter)
        self.alpha_ = self.solution_.alpha
        self.ridge_, self.jitter_ = self.solution_.ridge, self.solution_.jitter
        return self

    def predict(self, X: Any) -> np.ndarray:
        return _predict(self._cross(X), self.alpha_)

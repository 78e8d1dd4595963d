"""scikit-learn integration: estimators, precomputed Gram matrices and callable kernels."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import cross_val_score
from sklearn.svm import SVC

from ntkc.learn.data import load_dataset
from ntkc.learn.estimator import CNTKClassifier, CNTKRegressor, as_callable, precomputed


@dataclass
class _Result:
    nngp: torch.Tensor
    ntk: torch.Tensor


class RBFKernel:
    """A small honest kernel with the compiled-kernel contract: RBF for `ntk`, a wider RBF
    for `nngp`, on flattened NCHW images; counts its calls and remembers the last x2."""

    def __init__(self, gamma: float = 1.0 / 128):
        self.gamma = gamma
        self.calls = 0
        self.last_x2_was_none = None

    def __call__(self, x1, x2=None, dtype=torch.float64, backend="auto"):
        assert x1.ndim == 4 and (x2 is None or x2.ndim == 4), "kernels take NCHW images"
        self.calls += 1
        self.last_x2_was_none = x2 is None
        a = torch.as_tensor(np.asarray(x1), dtype=dtype).flatten(1)
        b = a if x2 is None else torch.as_tensor(np.asarray(x2), dtype=dtype).flatten(1)
        d2 = torch.cdist(a, b).square()
        return _Result(nngp=torch.exp(-0.5 * self.gamma * d2), ntk=torch.exp(-self.gamma * d2))


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits", n_train=300, n_test=200, seed=0)
    return ds.x_train, ds.y_train, ds.x_test, ds.y_test


def test_classifier_fit_predict_score(digits):
    x, y, xt, yt = digits
    clf = CNTKClassifier(RBFKernel(), ridge=1e-3).fit(x, y)
    assert clf.classes_.tolist() == list(range(10))
    assert clf.alpha_.shape == (300, 10) and clf.ridge_ == 1e-3 and clf.jitter_ == 0.0
    assert clf.kernel_.last_x2_was_none is True  # the training Gram is asked for as symmetric
    assert clf.score(xt, yt) > 0.9  # chance is 0.1
    assert clf.kernel_.last_x2_was_none is False  # predicting asks for kernel(x_test, x_train)
    assert clf.predict(xt).shape == (200,) and clf.decision_function(xt).shape == (200, 10)
    nngp = CNTKClassifier(RBFKernel(), which="nngp", ridge=1e-3).fit(x, y)
    assert not np.allclose(nngp.decision_function(xt), clf.decision_function(xt))


def test_classifier_ridge_sweep_and_sklearn_tools(digits):
    x, y, xt, yt = digits
    ridges = [1e-6, 1e-3, 1e-1]
    clf = CNTKClassifier(RBFKernel(), ridges=ridges, seed=2).fit(x, y)
    assert clf.ridge_ in ridges and clf.sweep_.best_ridge == clf.ridge_
    c2 = clone(clf)
    assert c2.get_params()["ridges"] == ridges and not hasattr(c2, "alpha_")
    scores = cross_val_score(CNTKClassifier(RBFKernel(), ridge=1e-3), x, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.8


def test_flattened_rows_need_an_image_shape(digits):
    x, y, xt, yt = digits
    flat = x.reshape(len(x), -1)
    with pytest.raises(ValueError, match="image_shape"):
        CNTKClassifier(RBFKernel(), ridge=1e-3).fit(flat, y)
    a = CNTKClassifier(RBFKernel(), ridge=1e-3, image_shape=(1, 8, 8)).fit(flat, y)
    b = CNTKClassifier(RBFKernel(), ridge=1e-3).fit(x, y)
    np.testing.assert_allclose(a.decision_function(xt.reshape(len(xt), -1)), b.decision_function(xt))


def test_classifier_errors(digits):
    x, y, xt, _ = digits
    with pytest.raises(NotFittedError):
        CNTKClassifier(RBFKernel()).predict(xt)
    with pytest.raises(ValueError, match="which must be 'ntk' or 'nngp'"):
        CNTKClassifier(RBFKernel(), which="gp").fit(x, y)
    with pytest.raises(TypeError, match="kernel must be callable"):
        CNTKClassifier(42).fit(x, y)
    with pytest.raises(ValueError, match="y has 5 labels"):
        CNTKClassifier(RBFKernel()).fit(x, y[:5])
    # two copies of one image make the Gram matrix singular: ridge 0 fails unless jitter="auto"
    dup, ydup = np.concatenate([x[:20], x[:1]]), np.concatenate([y[:20], y[:1]])
    with pytest.raises(ValueError, match="not numerically positive definite"):
        CNTKClassifier(RBFKernel()).fit(dup, ydup)
    assert CNTKClassifier(RBFKernel(), jitter="auto").fit(dup, ydup).jitter_ > 0


def test_regressor_interpolates_and_generalises(digits):
    x, y, xt, yt = digits
    reg = CNTKRegressor(RBFKernel()).fit(x, y.astype(float))
    np.testing.assert_allclose(reg.predict(x), y, atol=1e-6)  # ridge 0: exact interpolation
    assert reg.predict(xt).shape == (200,)
    assert CNTKRegressor(RBFKernel(), ridge=1e-3).fit(x, y.astype(float)).score(xt, yt) > 0.5


def test_precomputed_with_svc_and_kernel_ridge(digits):
    x, y, xt, yt = digits
    k = RBFKernel()
    gram, cross = precomputed(k, x), precomputed(k, xt, x)
    assert gram.dtype == np.float64 and gram.shape == (300, 300) and cross.shape == (200, 300)
    np.testing.assert_allclose(gram, k(x).ntk.numpy())
    np.testing.assert_allclose(precomputed(k, x, which="nngp"), k(x).nngp.numpy())
    svc = SVC(kernel="precomputed", C=10).fit(gram, y)
    assert np.mean(svc.predict(cross) == yt) > 0.9
    kr = KernelRidge(kernel="precomputed", alpha=1e-3).fit(gram, np.eye(10)[y])
    assert np.mean(kr.predict(cross).argmax(1) == yt) > 0.9


def test_callable_kernel_with_svc_matches_precomputed(digits):
    x, y, xt, yt = digits
    f = as_callable(RBFKernel(), (1, 8, 8))
    flat, flat_t = x.reshape(len(x), -1), xt.reshape(len(xt), -1)
    via_callable = SVC(kernel=f, C=10).fit(flat, y).predict(flat_t)
    k = RBFKernel()
    via_gram = SVC(kernel="precomputed", C=10).fit(precomputed(k, x), y).predict(precomputed(k, xt, x))
    np.testing.assert_array_equal(via_callable, via_gram)
    assert np.mean(via_callable == yt) > 0.9


def test_callable_kernel_on_single_rows_for_pairwise_kernels(digits):
    # KernelRidge evaluates a callable kernel once per pair of 1-D rows
    x, y, xt, _ = digits
    f = as_callable(RBFKernel(), (1, 8, 8))
    flat, flat_t = x[:30].reshape(30, -1), xt[:5].reshape(5, -1)
    assert isinstance(f(flat[0], flat[1]), float)
    kr = KernelRidge(kernel=f, alpha=1e-2).fit(flat, y[:30].astype(float))
    ref = KernelRidge(kernel="precomputed", alpha=1e-2).fit(precomputed(RBFKernel(), x[:30]),
                                                            y[:30].astype(float))
    np.testing.assert_allclose(kr.predict(flat_t), ref.predict(precomputed(RBFKernel(), xt[:5], x[:30])),
                               rtol=1e-8)
    with pytest.raises(ValueError, match=r"image_shape must be \(C, H, W\)"):
        as_callable(RBFKernel(), (64,))


# --- the real package --------------------------------------------------------------------------

ARCH = "input height=8 width=8 channels=1\nconv\nrelu\nflatten\ndense\n"


def _compile_or_skip():
    import ntkc

    if not hasattr(ntkc, "compile"):
        pytest.skip("ntkc.compile is not there yet (the core package is being written)")
    return ntkc.compile(ARCH)


def test_real_compiled_kernel_on_digits():
    k = _compile_or_skip()
    ds = load_dataset("digits", n_train=60, n_test=40, seed=1)
    x, y, xt, yt = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    gram, cross = precomputed(k, x), precomputed(k, xt, x)
    assert gram.shape == (60, 60) and cross.shape == (40, 60)
    np.testing.assert_allclose(gram, gram.T, rtol=1e-12, atol=1e-12)
    svc = SVC(kernel="precomputed", C=10).fit(gram, y)
    assert np.mean(svc.predict(cross) == yt) > 0.6  # chance is 0.1
    kr = KernelRidge(kernel="precomputed", alpha=1e-3 * np.mean(np.diag(gram)))
    kr.fit(gram, np.eye(10)[y] - 0.1)
    assert np.mean(kr.predict(cross).argmax(1) == yt) > 0.6
    clf = CNTKClassifier(k, ridges=[1e-4, 1e-2, 1.0]).fit(x, y)
    assert clf.score(xt, yt) > 0.6
    # the estimator compiles .arch text itself, and the NNGP works as well
    from_text = CNTKClassifier(ARCH, which="nngp", ridge=1e-3).fit(x, y)
    assert from_text.score(xt, yt) > 0.6
    assert clone(from_text).kernel == ARCH

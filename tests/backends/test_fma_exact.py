"""Exact self pairs under FMA contraction (emulated: the interpreter does not contract).

On a self pair's diagonal the kernels pass u = v1 = v2 bitwise. The relu determinant must then be
exactly 0, whatever the compiler contracts: with `fms2` it is; the naive `v1*v2 - u*u` becomes
fma(v1, v2, -(u*u)) on a GPU, the rounding error of u^2, and the angle is then ~2^-12 instead of 0.
"""
import numpy as np
import pytest

from ntkc.backends.triton.activations import render_activation
from ntkc.backends.triton.helpers import fast_helper_sources
from support import fma_emulator as fe


def relu_fn(exact_det: bool, contract, approx=False, seed=0):
    import ntkc
    k = ntkc.compile("input height=4 width=4 channels=1\nconv\nrelu\nflatten\ndense\n")
    layer = next(layer for layer in k.plan.network.layers if layer.rule.kind == "activation")
    f = render_activation(layer.rule, layer.params, True, "act", "relu", exact_det=exact_det)
    srcs = [fast_helper_sources(f.fast_helpers), f.source]
    ns = fe.load(srcs, contract=contract, rng=np.random.default_rng(seed), approx=approx)
    return ns["act"], f


@pytest.mark.parametrize("contract", [None, "left", "right"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_self_diagonal_exact_with_fms2(contract, dtype):
    act, f = relu_fn(True, contract, approx=True)
    assert "fms2" in f.source
    rng = np.random.default_rng(1)
    n = 4000 if dtype == np.float32 else 300
    v = np.exp(rng.uniform(-6, 6, n)).astype(dtype).view(fe.Arr)
    nngp, factor = act(v, v, v)
    assert np.all(factor == dtype(0.5)), "relu factor on a self diagonal must be exactly 1/2"
    assert np.all(nngp == v * dtype(0.5)), "relu NNGP on a self diagonal must be exactly v / 2"


def test_naive_determinant_breaks_under_contraction():
    """The bug of issue 14, reproduced: without fms2, contraction makes theta ~2^-12 on half of the diagonal."""
    act, f = relu_fn(False, "left", approx=False)
    assert "fms2" not in f.source
    rng = np.random.default_rng(1)
    v = np.exp(rng.uniform(-6, 6, 4000)).astype(np.float32).view(fe.Arr)
    _, factor = act(v, v, v)
    bad = np.abs(factor - np.float32(0.5))
    assert (bad > 1e-5).mean() > 0.2, "expected the naive form to lose the diagonal under FMA"
    # and the interpreter's view (no contraction) hides it
    act0, _ = relu_fn(False, None)
    _, factor0 = act0(v, v, v)
    assert np.all(factor0 == np.float32(0.5))


@pytest.mark.parametrize("contract", ["left", "right"])
def test_relu_accuracy_float32_with_approximate_mufu(contract):
    """atan2_affine and fsqrt with MUFU-like errors (2 ulp) and full contraction: the relu map
    stays within a few float32 ulps of the float64 closed form on random covariances."""
    act, _ = relu_fn(True, contract, approx=True, seed=3)
    rng = np.random.default_rng(2)
    n = 20000
    v1 = np.exp(rng.uniform(-3, 3, n))
    v2 = np.exp(rng.uniform(-3, 3, n))
    c = np.concatenate([rng.uniform(-1, 1, n // 2), 1 - np.exp(rng.uniform(-20, 0, n - n // 2))])
    u = c * np.sqrt(v1 * v2)
    u, v1, v2 = (x.astype(np.float32) for x in (u, v1, v2))   # the reference sees the same rounded inputs
    s32, f32 = act(*(x.view(fe.Arr) for x in (u, v1, v2)))
    u, v1, v2 = (x.astype(np.float64) for x in (u, v1, v2))
    det = np.maximum(v1 * v2 - u * u, 0)
    r = np.sqrt(det)
    th = np.arctan2(r, u)
    f64 = (np.pi - th) / (2 * np.pi)
    s64 = r / (2 * np.pi) + f64 * u
    scale = np.sqrt(v1 * v2)
    err_f = np.max(np.abs(f32 - f64))
    err_s = np.max(np.abs(s32 - s64) / scale)
    print(f"float32 relu with 2-ulp MUFU and contraction: factor err {err_f:.2e}, NNGP err {err_s:.2e} (relative to sqrt(v1 v2))")
    assert err_f < 1e-6, err_f   # ~8 ulp of 1/2
    assert err_s < 1e-6, err_s


def test_atan2_affine_float64_accuracy():
    """The float64 polynomial and refined rsqrt: within ~1e-15 of math.atan2 (no contraction worries
    in float64 beyond rounding)."""
    ns = fe.load([fast_helper_sources({"atan2_affine"})], contract="left")
    rng = np.random.default_rng(0)
    y = np.abs(rng.normal(size=2000)) * np.exp(rng.uniform(-5, 5, 2000))
    x = rng.normal(size=2000) * np.exp(rng.uniform(-5, 5, 2000))
    got = ns["atan2_affine"](y.view(fe.Arr), x.view(fe.Arr), (y * y).view(fe.Arr), 0.0, 1.0, True)
    assert np.max(np.abs(got - np.arctan2(y, x))) < 3e-15

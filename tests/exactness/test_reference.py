"""The package against the independent float64 reference (tests/support/reference.py).

Part 1 checks the reference itself, with no help from the package: closed forms of the
activations against numerical integration, fully-connected formulas on 1x1 images, an exact
explicit-feature computation of linear networks, hand-computed tiny cases, symmetries.
(tests/test_montecarlo.py ties it to real finite networks.)

Part 2 compares `ntkc` with the reference: float64 within 1e-10 and float32 within 1e-5 of the
largest |entry|, on hand-written networks covering every layer, padding, stride and pooling, and
on hypothesis-generated random networks.
"""
from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import reference as R
from support.reference import arch_text, layer as L, parse_arch, reference_kernels

from support.checks import (DEGENERATE_F32_TOL, DEGENERATE_F64_TOL, F32_TOL, F64_TOL,  # noqa: F401
                            assert_close, images)
from support.compare import check_package, run_package  # noqa: F401


# ==============================================================================================
# Part 1: the reference on its own
# ==============================================================================================


def _gauss_hermite(n):
    z, w = np.polynomial.hermite_e.hermegauss(n)  # weight exp(-z^2 / 2)
    return z, w / math.sqrt(2 * math.pi)


def _phi(z):
    return np.exp(-z * z / 2) / math.sqrt(2 * math.pi)


def _Phi(z):
    return 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))


def _relu_by_integration(u, v1, v2):
    """E[relu X relu Y] and P(X > 0, Y > 0) by Gauss-Legendre over z1 > 0, with Y | z1 Gaussian."""
    rho = u / math.sqrt(v1 * v2)
    z, w = np.polynomial.legendre.leggauss(200)
    z1, w1 = 6.0 * (z + 1), 6.0 * w  # [0, 12]
    m = math.sqrt(v2) * rho * z1
    s = math.sqrt(v2 * (1 - rho * rho))
    e_relu_y = m * _Phi(m / s) + s * _phi(m / s)
    value = np.sum(w1 * _phi(z1) * math.sqrt(v1) * z1 * e_relu_y)
    deriv = np.sum(w1 * _phi(z1) * _Phi(m / s))
    return value, deriv


def _erf_by_integration(u, v1, v2):
    z, w = _gauss_hermite(120)
    z1, z2 = np.meshgrid(z, z, indexing="ij")
    ww = np.outer(w, w)
    rho = u / math.sqrt(v1 * v2)
    x = math.sqrt(v1) * z1
    y = math.sqrt(v2) * (rho * z1 + math.sqrt(1 - rho * rho) * z2)
    erf = np.vectorize(math.erf)
    derf = lambda t: 2 / math.sqrt(math.pi) * np.exp(-t * t)  # noqa: E731
    return np.sum(ww * erf(x) * erf(y)), np.sum(ww * derf(x) * derf(y))


@pytest.mark.parametrize("v1,v2,rho", [(1.0, 1.0, 0.3), (0.5, 2.0, -0.7), (3.0, 0.2, 0.95), (1.3, 1.1, -0.999),
                                       (0.1, 0.1, 0.0), (2.0, 2.0, 0.9999)])
def test_activation_closed_forms_match_integration(v1, v2, rho):
    u = rho * math.sqrt(v1 * v2)
    value, factor = R._relu(np.float64(u), v1, v2)
    want_value, want_factor = _relu_by_integration(u, v1, v2)
    assert abs(value - want_value) <= 1e-9 * math.sqrt(v1 * v2)
    assert abs(factor - want_factor) <= 1e-9
    value, factor = R._erf(np.float64(u), v1, v2)
    want_value, want_factor = _erf_by_integration(u, v1, v2)
    assert abs(value - want_value) <= 1e-8
    assert abs(factor - want_factor) <= 1e-6 * want_factor


def test_relu_on_the_diagonal_is_exact():
    """Self pair at p = q: E[relu(X)^2] = v / 2 and P(X > 0) = 1/2, to the last digit."""
    for v in (1e-3, 0.7, 1.0, 3.3, 1e4):
        value, factor = R._relu(np.float64(v), v, v)
        assert value == pytest.approx(v / 2, rel=1e-15) and factor == 0.5


def _fc_reference(ws, x1, x2):
    """Textbook fully-connected NNGP / NTK recursion (arc-cosine kernel written with angles).

    ws: list of ("lin", w2_eff, b2, trainable) | ("relu",) | ("erf",) applied to scalars."""
    n1, n2 = len(x1), len(x2)
    c = x1.shape[1]
    s12 = x1 @ x2.T / c
    s11 = np.sum(x1 * x1, 1) / c
    s22 = np.sum(x2 * x2, 1) / c
    t12 = np.zeros((n1, n2))
    for op in ws:
        if op[0] == "lin":
            _, w2, b2, trainable = op
            s12, s11, s22 = w2 * s12 + b2, w2 * s11 + b2, w2 * s22 + b2
            t12 = w2 * t12 + (s12 if trainable else 0)
        elif op[0] == "relu":
            norm = np.sqrt(np.outer(s11, s22))
            theta = np.arccos(np.clip(s12 / norm, -1, 1))
            dot = (math.pi - theta) / (2 * math.pi)
            s12 = norm / (2 * math.pi) * (np.sin(theta) + (math.pi - theta) * np.cos(theta))
            s11, s22 = s11 / 2, s22 / 2
            t12 = t12 * dot
        elif op[0] == "erf":
            a, b = 1 + 2 * s11[:, None], 1 + 2 * s22[None, :]
            dot = 4 / math.pi / np.sqrt(a * b - 4 * s12 ** 2)
            s12 = 2 / math.pi * np.arcsin(2 * s12 / np.sqrt(a * b))
            s11 = 2 / math.pi * np.arcsin(2 * s11 / (1 + 2 * s11))
            s22 = 2 / math.pi * np.arcsin(2 * s22 / (1 + 2 * s22))
            t12 = t12 * dot
    return s12, t12


def test_one_pixel_images_reduce_to_fully_connected():
    """On 1x1 images a 'same' k x k conv sees only its centre tap (weight w^2/k^2), a circular
    one sees the pixel k^2 times (w^2), a valid 1x1 conv w^2; gap and flatten are the identity."""
    layers = [L("conv", size=3, w_std=1.7, b_std=0.3), L("relu"),
              L("conv", size=2, padding="circular", w_std=1.2, b_std=0.1, trainable=False), L("erf"),
              L("conv", size=1, padding="valid", w_std=0.8), L("avgpool", size=1), L("relu"),
              L("flatten"), L("dense", w_std=1.1, b_std=0.2), L("relu"), L("dense", w_std=0.9, trainable=False)]
    fc = [("lin", 1.7 ** 2 / 9, 0.09, True), ("relu",), ("lin", 1.2 ** 2, 0.01, False), ("erf",),
          ("lin", 0.64, 0.0, True), ("relu",), ("lin", 1.21, 0.04, True), ("relu",), ("lin", 0.81, 0.0, False)]
    x1, x2 = images(3, (1, 1, 4), 1), images(2, (1, 1, 4), 2)
    nngp, ntk = reference_kernels(layers, x1, x2)
    want_nngp, want_ntk = _fc_reference(fc, x1[:, :, 0, 0], x2[:, :, 0, 0])
    assert_close(nngp, want_nngp, 1e-12, "nngp")
    assert_close(ntk, want_ntk, 1e-12, "ntk")
    layers[7] = L("gap")
    assert_close(reference_kernels(layers, x1, x2)[0], want_nngp, 1e-12, "gap nngp")


def test_hand_computed_tiny_cases():
    a = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    b = np.array([[[0.5, -1.0], [2.0, 1.0]]])
    # valid 2x2 conv -> 1x1: S = w^2/4 sum_d a_d b_d + b^2; NTK = S (first layer)
    nngp, ntk = reference_kernels([L("conv", size=2, padding="valid", w_std=2.0, b_std=0.5), L("flatten")], a[None], b[None])
    s = 4 / 4 * (0.5 - 2 + 6 + 4) + 0.25
    assert nngp[0, 0] == pytest.approx(s) and ntk[0, 0] == pytest.approx(s)
    # 'same' 3x3 at stride 2 on 2x2: out 1x1, pad_total = 3 - 2 = 1, lo = 0: taps read rows/cols
    # 0, 1 (and 2, outside): all four pixels, with weight w^2/9
    nngp, _ = reference_kernels([L("conv", stride=2), L("gap")], a[None], b[None])
    assert nngp[0, 0] == pytest.approx((0.5 - 2 + 6 + 4) / 9)
    # gap of the input alone: mean over all (p, q) = (mean a)(mean b); flatten: mean of a_p b_p
    assert reference_kernels([L("gap")], a[None], b[None])[0][0, 0] == pytest.approx(2.5 * 0.625)
    assert reference_kernels([L("flatten")], a[None], b[None])[0][0, 0] == pytest.approx((0.5 - 2 + 6 + 4) / 4)
    # avgpool 2x2 then flatten = gap
    assert reference_kernels([L("avgpool", size=2), L("flatten")], a[None], b[None])[0][0, 0] == pytest.approx(2.5 * 0.625)
    # 1-D 'same' 4-tap stride-2 on 5 pixels (a 1 x 5 image): out 3, pad_total 3, lo 1
    assert R.conv_geometry(5, 4, 2, "same") == (3, 1)
    assert R.conv_geometry(7, 2, 3, "same") == (3, 0)
    assert R.conv_geometry(7, 2, 3, "valid") == (2, 0)
    assert R.conv_geometry(4, 3, 1, "same") == (4, 1)
    A = R.conv_taps(5, 4, 2, "circular")
    assert [int(np.argmax(A[d, 0])) for d in range(4)] == [4, 0, 1, 2]


# ---- exact computation of LINEAR networks through explicit random-feature expansions --------


def _pads(n, k, s, padding):
    if padding == "valid":
        return (n - k) // s + 1, 0, 0
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return out, total // 2, total - total // 2


class _Features:
    """S[p, q] = sum_f wts[f] Y_a[f, p] Y_b[f, q] for every pair at once; T likewise."""

    def __init__(self, x):
        self.S = (x.copy(), np.full(x.shape[1], 1.0 / x.shape[1]))  # ([n, F, H, W], [F])
        self.T = (np.zeros((x.shape[0], 0) + x.shape[2:]), np.zeros(0))

    @staticmethod
    def _shift_all(Y, k, s, padding):
        n, f, h, w = Y.shape
        oh, lh, hh = _pads(h, k, s, padding)
        ow, lw, hw = _pads(w, k, s, padding)
        mode = "wrap" if padding == "circular" else "constant"
        P = np.pad(Y, ((0, 0), (0, 0), (lh, hh), (lw, hw)), mode=mode)
        taps = [P[:, :, dh: dh + s * (oh - 1) + 1: s, dw: dw + s * (ow - 1) + 1: s] for dh in range(k) for dw in range(k)]
        return np.concatenate(taps, axis=1)

    @staticmethod
    def _constant(Yshape, value):
        return np.full((Yshape[0], 1) + Yshape[2:], value)

    def conv(self, k, s, padding, w, b, trainable):
        Ys, ws = self.S
        Yt, wt = self.T
        Ys = self._shift_all(Ys, k, s, padding)
        ws = np.tile(ws, k * k) * w * w / (k * k)
        Yt = self._shift_all(Yt, k, s, padding) if Yt.shape[1] else np.zeros(Ys.shape[:1] + (0,) + Ys.shape[2:])
        wt = np.tile(wt, k * k) * w * w / (k * k)
        Ys, ws = np.concatenate([Ys, self._constant(Ys.shape, 1.0)], 1), np.append(ws, b * b)
        self.S = (Ys, ws)
        self.T = (np.concatenate([Yt, Ys], 1), np.append(wt, ws)) if trainable else (Yt, wt)

    def apply_spatial(self, fn):
        self.S = (fn(self.S[0]), self.S[1])
        self.T = (fn(self.T[0]), self.T[1])

    def dense(self, w, b, trainable):
        Ys, ws = self.S
        Yt, wt = self.T
        Ys, ws = np.concatenate([Ys, np.ones((len(Ys), 1))], 1), np.append(ws * w * w, b * b)
        self.S = (Ys, ws)
        self.T = (np.concatenate([Yt, Ys], 1), np.append(wt * w * w, ws)) if trainable else (Yt, w * w * wt)

    def gram(self, which, n1):
        Y, wts = getattr(self, which)
        return np.einsum("if,jf,f->ij", Y[:n1], Y[n1:], wts)


def _avgpool_maps(Y, k, s):
    n, f, h, w = Y.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    out = np.zeros((n, f, oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = Y[:, :, s * i: s * i + k, s * j: s * j + k].mean(axis=(2, 3))
    return out


def linear_net_by_features(layers, x1, x2):
    """Exact NNGP/NTK of a network without nonlinearities, by explicit feature maps."""
    feats = _Features(np.concatenate([x1, x2]))
    for name, p in layers:
        if name == "conv":
            feats.conv(p["size"], p["stride"], p["padding"], p["w_std"], p["b_std"], p["trainable"])
        elif name == "avgpool":
            feats.apply_spatial(lambda Y: _avgpool_maps(Y, p["size"], p["stride"]))
        elif name == "gap":
            feats.apply_spatial(lambda Y: Y.mean(axis=(2, 3)))
        elif name == "flatten":
            hw = feats.S[0].shape[2] * feats.S[0].shape[3]
            feats.S = (feats.S[0].reshape(len(feats.S[0]), -1), np.repeat(feats.S[1], hw) / hw)
            feats.T = (feats.T[0].reshape(len(feats.T[0]), -1), np.repeat(feats.T[1], hw) / hw)
        elif name == "dense":
            feats.dense(p["w_std"], p["b_std"], p["trainable"])
        elif name != "identity":
            raise ValueError(name)
    return feats.gram("S", len(x1)), feats.gram("T", len(x1))


@st.composite
def linear_networks(draw):
    h, w, c = draw(st.integers(1, 7)), draw(st.integers(1, 7)), draw(st.integers(1, 3))
    # (no residual blocks: explicit features would only restate the formula they test; the
    # finite residual networks of test_montecarlo.py check it)
    layers, _ = _draw_body(draw, h, w, activations=("identity",), max_depth=3, same_sizes=(1, 2, 3, 4, 5),
                           residual=False)
    layers += _draw_head(draw, activations=("identity",))
    return (h, w, c), layers


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=linear_networks(), seed=st.integers(0, 2 ** 16))
def test_reference_linear_networks_match_explicit_features(net, seed):
    shape, layers = net
    layers = [L(name, **p) for name, p in layers]
    x1, x2 = images(2, shape, seed), images(3, shape, seed + 1)
    nngp, ntk = reference_kernels(layers, x1, x2)
    want_nngp, want_ntk = linear_net_by_features(layers, x1, x2)
    assert_close(nngp, want_nngp, 1e-12, "nngp")
    assert_close(ntk, want_ntk, 1e-12, "ntk")


def test_reference_symmetries():
    shape = (6, 5, 2)
    x = images(4, shape, 3)
    # a symmetric, positive semi-definite Gram matrix
    layers = [L("conv", stride=2, b_std=0.2), L("relu"), L("conv", size=2, padding="circular"), L("erf"),
              L("avgpool", size=2, stride=1), L("gap"), L("dense", b_std=0.1)]
    for K in reference_kernels(layers, x):
        assert_close(K, K.T, 1e-14)
        assert np.linalg.eigvalsh(K).min() >= -1e-12 * np.abs(K).max()
    nngp, ntk = reference_kernels(layers, x)
    n12, t12 = reference_kernels(layers, x[:2], x[2:])
    assert_close(n12, nngp[:2, 2:], 1e-14)
    assert_close(t12, ntk[:2, 2:], 1e-14)
    # circular stride-1 convs are shift-equivariant: a gap readout is invariant to shifting ONE image
    circ = [L("conv", padding="circular", b_std=0.3), L("relu"), L("conv", size=2, padding="circular"), L("erf"),
            L("gap"), L("dense")]
    shifted = np.roll(x[:1], (2, 1), axis=(2, 3))
    for got, want in zip(reference_kernels(circ, shifted, x), reference_kernels(circ, x[:1], x)):
        assert_close(got, want, 1e-12)
    # ... and a flatten readout is invariant to shifting both by the same amount
    circ[4] = L("flatten")
    both = np.roll(x, (1, 3), axis=(2, 3))
    for got, want in zip(reference_kernels(circ, both), reference_kernels(circ, x)):
        assert_close(got, want, 1e-12)
    # odd 'same' convs at stride 1 are centred: flipping every image leaves the kernel unchanged
    same = [L("conv", b_std=0.1), L("relu"), L("conv", size=5), L("erf"), L("avgpool", size=2, stride=1), L("flatten")]
    flipped = x[:, :, ::-1, ::-1]
    for got, want in zip(reference_kernels(same, flipped), reference_kernels(same, x)):
        assert_close(got, want, 1e-12)


def test_parse_and_write_arch_round_trip():
    text = """input height=5 width=4 channels=2
# a comment
conv size=3 w_std=sqrt(2)   # trailing comment
repeat 2 {
  relu
  repeat 2 {
    conv size=1 padding=valid b_std=0.5 trainable=false
  }
}
avgpool size=2
gap
dense w_std=2
"""
    shape, layers = parse_arch(text)
    assert shape == (5, 4, 2)
    assert [name for name, _ in layers] == ["conv", "relu", "conv", "conv", "relu", "conv", "conv", "avgpool", "gap", "dense"]
    assert layers[0][1]["w_std"] == math.sqrt(2) and layers[0][1]["padding"] == "same"
    assert layers[7][1] == {"size": 2, "stride": 2}
    for explicit in (True, False):
        assert parse_arch(arch_text(layers, 5, 4, 2, explicit=explicit)) == (shape, layers)


# ==============================================================================================
# Part 2: the package against the reference
# ==============================================================================================


def _arch(shape, body):
    h, w, c = shape
    return f"input height={h} width={w} channels={c}\n" + "\n".join(line.strip() for line in body.strip().splitlines()) + "\n"


# (shape (H, W, C), body) covering every layer, padding, stride, pooling, bias, frozen layers
HAND_WRITTEN = {
    "same_relu_gap": ((6, 6, 3), "conv b_std=0.1\nrelu\ngap"),
    "valid_erf_flatten_dense": ((5, 7, 2), "conv size=3 padding=valid w_std=1.5\nerf\nflatten\ndense b_std=0.2"),
    "circular_stride2_nonsquare": ((7, 5, 2), "conv size=3 stride=2 padding=circular b_std=0.3\nrelu\nconv size=3 padding=circular\nrelu\ngap\ndense"),
    "same_stride3": ((7, 8, 1), "conv size=3 stride=3\nrelu\nconv size=5\nerf\nflatten\ndense"),
    # odd k at stride 2 on even sizes: pad_total = 1, TF puts it at the high end (lo = 0)
    "same_stride2_asymmetric_pad": ((6, 4, 3), "conv size=3 stride=2 b_std=0.4\nerf\nconv size=3 w_std=sqrt(2)\nrelu\nflatten"),
    "same_k5_stride2_odd_sizes": ((5, 7, 3), "conv size=5 stride=2 b_std=0.4\nerf\nconv size=3 stride=2 w_std=sqrt(2)\nrelu\nflatten"),
    "same_kernel_larger_than_map": ((2, 3, 2), "conv size=5\nrelu\nconv size=3 stride=2\nrelu\ngap\ndense"),
    "valid_stride3": ((7, 7, 2), "conv size=2 stride=3 padding=valid\nrelu\nconv size=2 padding=valid stride=1\ngap\ndense"),
    "circular_stride3": ((7, 8, 2), "conv size=3 stride=3 padding=circular\nrelu\ngap"),
    "pool_not_tiling": ((6, 6, 2), "conv\nrelu\navgpool size=4 stride=3\nflatten\ndense"),
    "pool_default_stride_leftover": ((5, 7, 1), "conv\nrelu\navgpool size=2\nconv size=1\nrelu\nflatten"),
    "pool_overlapping": ((7, 6, 2), "conv size=3 b_std=0.2\nerf\navgpool size=3 stride=2\nrelu\navgpool size=2 stride=1\ngap\ndense b_std=0.1"),
    "frozen_conv_and_dense": ((6, 4, 3), "conv w_std=sqrt(2) trainable=false\nrelu\nconv w_std=sqrt(2)\nrelu\ngap\ndense trainable=false"),
    "all_frozen": ((4, 4, 2), "conv trainable=false b_std=0.3\nrelu\ngap\ndense trainable=false"),
    "dense_head": ((5, 5, 2), "conv\nrelu\ngap\ndense w_std=1.5 b_std=0.2\nrelu\ndense b_std=0.3 trainable=false\nerf\ndense"),
    "activation_after_readout": ((4, 6, 2), "conv b_std=0.5\ngap\nerf\ndense\nrelu"),
    "identity_layers": ((5, 6, 2), "conv stride=2\nidentity\nconv size=2 padding=valid\nidentity\nflatten\nidentity\ndense"),
    "one_pixel": ((1, 1, 3), "conv size=3 b_std=0.1\nrelu\nconv size=3 padding=circular\nerf\nflatten\ndense"),
    "one_row": ((1, 7, 2), "conv size=3 stride=2\nrelu\navgpool size=1 stride=2\ngap"),
    "shrink_to_one_pixel": ((6, 4, 1), "conv size=3 stride=3\nrelu\nconv size=3 stride=2\nrelu\nconv size=3\nflatten\ndense"),
    "no_conv": ((3, 4, 2), "relu\navgpool size=2 stride=1\nflatten\ndense b_std=1"),
    "integer_values_and_comments": ((4, 5, 2), "# comment line\nconv size=3 w_std=2 b_std=1   # bias\nrelu\n\nflatten\ndense w_std=1"),
    "repeat_block": ((6, 6, 2), "repeat 3 {\nconv w_std=sqrt(2)\nrelu\n}\navgpool size=2\nrepeat 2 {\nconv size=1\nerf\n}\ngap\ndense"),
}


# Even kernel sizes with 'same' / 'circular' padding: the brief's TF/JAX rule defines them
# (pad_total = (out-1)*s + k - n, lo = pad_total // 2: the odd extra pad goes to the high end).
EVEN_KERNELS = {
    "same_k2_stride1": ((5, 6, 2), "conv size=2 b_std=0.2\nrelu\nflatten\ndense"),
    "same_k2_stride3": ((7, 8, 1), "conv size=2 stride=3\nrelu\nconv size=4\nerf\nflatten\ndense"),
    "same_k4_stride2": ((5, 7, 3), "conv size=4 stride=2 b_std=0.4\nerf\nconv size=3 stride=2 w_std=sqrt(2)\nrelu\nflatten"),
    "circular_k2": ((4, 5, 2), "conv size=2 padding=circular\nrelu\nconv size=4 stride=2 padding=circular\ngap\ndense"),
}


@pytest.mark.parametrize("name", list(EVEN_KERNELS))
def test_package_even_kernel_sizes(name):
    shape, body = EVEN_KERNELS[name]
    seed = zlib.crc32(name.encode())
    check_package(_arch(shape, body), images(3, shape, seed, float32=True), None, name)
    check_package(_arch(shape, body), images(1, shape, seed + 1, float32=True), images(2, shape, seed + 2, float32=True), name)


def test_degenerate_relu_inputs():
    """One channel and a 1x1 conv: every pair of positions is exactly collinear at the relu, its
    NTK factor depends on theta = atan2(sqrt(v1 v2 - u^2), u) at the singular point, and the
    covariances' rounding e moves it by sqrt(e) / pi. Even exact arithmetic from correctly
    rounded float32 covariances is off by ~5e-5 here, so the tolerances are sqrt(eps)-sized."""
    text = "input height=1 width=4 channels=1\nconv size=1 padding=valid w_std=0.5\nrelu\ngap\n"
    x = images(3, (1, 4, 1), 0, float32=True)
    assert R.min_relu_decorrelation(parse_arch(text)[1], x) < 1e-9
    check_package(text, x, None, "degenerate")
    # and how far a perfect float32 implementation is off: float32-rounded S, exact math after
    for xi in x[:, 0, 0]:
        S = 0.25 * np.outer(xi, xi)
        S32 = S.astype(np.float32).astype(np.float64)
        ntk = (S * R._relu(S, np.diag(S)[:, None], np.diag(S)[None, :])[1]).mean()
        ntk32 = (S32 * R._relu(S32, np.diag(S32)[:, None], np.diag(S32)[None, :])[1]).mean()
        assert abs(ntk32 - ntk) <= DEGENERATE_F32_TOL * abs(ntk)


@pytest.mark.parametrize("mode", ["symmetric", "x2"])
@pytest.mark.parametrize("name", list(HAND_WRITTEN))
def test_package_hand_written(name, mode):
    shape, body = HAND_WRITTEN[name]
    text = _arch(shape, body)
    seed = zlib.crc32(name.encode())
    x1 = images(3 if mode == "symmetric" else 2, shape, seed, float32=True)
    x2 = None if mode == "symmetric" else images(3, shape, seed + 1, float32=True)
    check_package(text, x1, x2, name)


def test_package_symmetric_equals_explicit_x2():
    shape, body = HAND_WRITTEN["pool_overlapping"]
    text = _arch(shape, body)
    x = images(3, shape, 5)
    sym = run_package(text, x)
    full = run_package(text, x, x)
    for a, b in zip(sym, full):
        assert_close(a, b, F64_TOL)
        assert_close(a, a.T, F64_TOL)


def test_package_numpy_in_numpy_out_and_path(tmp_path):
    import ntkc

    shape, body = HAND_WRITTEN["same_k5_stride2_odd_sizes"]
    text = _arch(shape, body)
    x1, x2 = images(2, shape, 11), images(3, shape, 12)
    want = reference_kernels(parse_arch(text)[1], x1, x2)
    r = ntkc.compile(text)(x1, x2, dtype=torch.float64, backend="torch")
    assert isinstance(r.nngp, np.ndarray) and isinstance(r.ntk, np.ndarray)
    assert_close(r.nngp, want[0], F64_TOL, "numpy nngp")
    assert_close(r.ntk, want[1], F64_TOL, "numpy ntk")
    path = tmp_path / "net.arch"
    path.write_text(text)
    for source in (path, str(path)):
        r = ntkc.compile(source)(torch.tensor(x1), torch.tensor(x2), dtype=torch.float64, backend="torch")
        assert_close(r.nngp.numpy(), want[0], F64_TOL, f"compile({type(source).__name__}) nngp")
        assert_close(r.ntk.numpy(), want[1], F64_TOL, f"compile({type(source).__name__}) ntk")


def test_package_realistic_size():
    """2 images 8x8x3, depth-5 GAP network."""
    text = _arch((8, 8, 3), """
        conv w_std=sqrt(2) b_std=0.1
        relu
        conv w_std=sqrt(2) stride=2
        relu
        conv size=3 padding=circular w_std=sqrt(2)
        relu
        conv size=1 w_std=sqrt(2)
        erf
        conv size=3 padding=valid w_std=sqrt(2) b_std=0.2
        relu
        gap
        dense
    """)
    check_package(text, images(2, (8, 8, 3), 21, float32=True), None, "realistic")
    check_package(text, images(1, (8, 8, 3), 22, float32=True), images(2, (8, 8, 3), 23, float32=True), "realistic x2")


@pytest.mark.parametrize("readout", ["flatten", "gap"])
@pytest.mark.parametrize("depth", [2, 4, 6])
def test_package_paper_networks(depth, readout):
    """DESIGN.md's CNTK-V (flatten) and CNTK-GAP (frozen first conv and frozen readout) nets."""
    if readout == "flatten":
        body = f"repeat {depth - 1} {{\nconv size=3 w_std=sqrt(2)\nrelu\n}}\nflatten\ndense"
    else:
        body = (f"conv size=3 w_std=sqrt(2) trainable=false\nrelu\nrepeat {depth - 2} {{\nconv size=3 w_std=sqrt(2)\nrelu\n}}\n"
                if depth > 2 else "conv size=3 w_std=sqrt(2) trainable=false\nrelu\n") + "gap\ndense trainable=false"
    shape = (8, 8, 3)
    text = _arch(shape, body)
    check_package(text, images(3, shape, depth, float32=True), None, f"paper {readout} {depth}")


# ---- random architectures ---------------------------------------------------------------------

W_STDS = [0.5, 1.0, math.sqrt(2), 1.7]
B_STDS = [0.0, 0.1, 0.6]


def _draw_branch(draw, activations, nested: bool):
    """The body of a residual block: shape-keeping layers (stride 1, `same` odd sizes or 1x1
    `valid`, dilation), ending in a conv."""
    body = []
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(["act", "conv"] + (["residual"] if nested else [])))
        if kind == "act":
            body.append((draw(st.sampled_from(activations)), {}))
        elif kind == "residual":
            body.append(("residual", dict(scale=draw(st.sampled_from([0.5, 1.0])),
                                          body=_draw_branch(draw, activations, False))))
        else:
            body.append(_draw_same_conv(draw))
    body.append(_draw_same_conv(draw))
    return body


def _draw_same_conv(draw):
    size, padding = draw(st.sampled_from([(1, "valid"), (1, "same"), (3, "same")]))
    return ("conv", dict(size=size, padding=padding, dilation=draw(st.sampled_from([1, 1, 2])),
                         w_std=draw(st.sampled_from(W_STDS)), b_std=draw(st.sampled_from(B_STDS)),
                         trainable=draw(st.booleans())))


def _draw_body(draw, h, w, activations=R.ACTIVATIONS, max_depth=4, same_sizes=(1, 3, 5), residual=True):
    """Conv / activation / avgpool layers whose maps never shrink below 1x1, and residual blocks
    after the first conv."""
    layers = []
    for _ in range(draw(st.integers(0, max_depth))):
        seen_conv = residual and any(name == "conv" for name, _ in layers)
        kind = draw(st.sampled_from(["conv", "conv", "act", "avgpool"] + (["residual"] if seen_conv else [])))
        if kind == "residual":
            layers.append(("residual", dict(scale=draw(st.sampled_from([0.6, 1.0, 1.4])),
                                            body=_draw_branch(draw, activations, True))))
        elif kind == "conv":
            padding = draw(st.sampled_from(["same", "valid", "circular"]))
            if padding == "same":  # even sizes with 'same': see test_package_even_kernel_sizes
                k = draw(st.sampled_from(same_sizes))
            else:
                k = draw(st.integers(1, min(4, h, w)))
            s = draw(st.integers(1, 3))
            layers.append(("conv", dict(size=k, stride=s, padding=padding, w_std=draw(st.sampled_from(W_STDS)),
                                        b_std=draw(st.sampled_from(B_STDS)), trainable=draw(st.booleans()))))
            h, w = R.conv_geometry(h, k, s, padding)[0], R.conv_geometry(w, k, s, padding)[0]
        elif kind == "act":
            layers.append((draw(st.sampled_from(activations)), {}))
        else:
            k = draw(st.integers(1, min(3, h, w)))
            s = draw(st.integers(1, 3))
            layers.append(("avgpool", dict(size=k, stride=s)))
            h, w = (h - k) // s + 1, (w - k) // s + 1
        assert h >= 1 and w >= 1
    layers.append((draw(st.sampled_from(["gap", "flatten"])), {}))
    return layers, (h, w)


def _draw_head(draw, activations=R.ACTIVATIONS):
    head = []
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()):
            head.append(("dense", dict(w_std=draw(st.sampled_from(W_STDS)), b_std=draw(st.sampled_from(B_STDS)),
                                       trainable=draw(st.booleans()))))
        else:
            head.append((draw(st.sampled_from(activations)), {}))
    return head


@st.composite
def networks(draw):
    h, w, c = draw(st.integers(1, 7)), draw(st.integers(1, 7)), draw(st.integers(1, 3))
    layers, _ = _draw_body(draw, h, w)
    layers += _draw_head(draw)
    text = arch_text(layers, h, w, c, explicit=draw(st.booleans()))
    return (h, w, c), text


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=networks(), n1=st.integers(1, 3), n2=st.integers(0, 3), seed=st.integers(0, 2 ** 16))
def test_package_random_networks(net, n1, n2, seed):
    shape, text = net
    x1 = images(n1, shape, seed, float32=True)
    x2 = None if n2 == 0 else images(n2, shape, seed + 1, float32=True)
    check_package(text, x1, x2, "random")

"""Tolerances and comparisons every exactness test uses, and seeded test images."""
from __future__ import annotations

import numpy as np

F64_TOL = 1e-10
F32_TOL = 1e-5
# relu inputs with exactly collinear features: sqrt(eps) / pi ~ 5e-9 (float64), 1e-4 (float32)
DEGENERATE_F64_TOL = 1e-7
DEGENERATE_F32_TOL = 1e-3


def assert_close(got, want, rel, what="", scale=None):
    """max |got - want| <= rel * scale, scale = the largest |entry| of want unless given."""
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    if scale is None:
        scale = np.abs(want).max()
    scale = scale or 1.0
    err = np.abs(got - want).max()
    assert err <= rel * scale, f"{what}: max |got - want| = {err:.3e} > {rel:g} * {scale:.3e}\ngot\n{got}\nwant\n{want}"


def images(n, shape, seed, float32=False):
    """n random images [n, C, H, W] with a shared component (so the kernels are not diagonal)."""
    h, w, c = shape
    rng = np.random.default_rng(seed)
    x = 0.5 * rng.standard_normal((1, c, h, w)) + rng.standard_normal((n, c, h, w))
    if float32:
        x = x.astype(np.float32).astype(np.float64)  # exactly representable in both precisions
    return x

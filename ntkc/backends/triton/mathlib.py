"""`@triton.jit` helpers for the parts of the ops vocabulary that `tl.math` lacks or gets wrong.

Every helper works compiled (CUDA) and in Triton's interpreter (`TRITON_INTERPRET=1`, which
cannot call libdevice externals such as `tl.extra.libdevice.atan2`), in float32 and float64; the
precision-dependent parts branch on `x.dtype` at compile time. Generated modules do not import
this file: `helpers.helper_sources()` copies the text of the helpers a kernel uses into its
module (reading this file, not importing it, so generating source needs no triton), so a
generated file is self-contained and its cache hash changes whenever a helper does.

Accuracy (checked against torch in tests/backends/test_triton_math.py): a few ulps in either precision.

- `atan2` reduces to atan(a) for a in [0, 1], then to |t| <= tan(pi/24) ~ 0.1317 around the
  nearest of 0, pi/12, pi/6, pi/4 (t = (a - tan c) / (1 + a tan c)), where the Taylor series
  t - t^3/3 + t^5/5 - ... converges fast: 4 terms for float32 (error < 1e-8 relative), 9 for
  float64 (< 1e-17). atan2(+0, u > 0) is exactly +0 and atan2(+0, u < 0) exactly pi (the relu
  angle on a self pair); signed zeros, infinities and NaN follow IEEE / torch.
- `asin(x) = atan2(x, sqrt((1 - x)(1 + x)))` and `acos(x) = atan2(sqrt((1 - x)(1 + x)), x)`:
  (1 - x)(1 + x) keeps every digit near |x| = 1, unlike 1 - x^2.
- `sqrt`: `tl.sqrt_rn` (IEEE) in float32 (`tl.sqrt` may be approximate there); `tl.sqrt` is
  correctly rounded in float64. `rsqrt`: `tl.math.rsqrt` in float32, `1 / sqrt` in float64
  (the float64 `rsqrt` lowers to `rsqrt.approx.f64`, ~1e-9 relative).
- `tanh(x) = -e / (2 + e)` with `e = expm1(-2|x|)`, and expm1 by Kahan's trick
  `(exp(y) - 1) * y / log(exp(y))`, accurate for small |y| where `exp(y) - 1` cancels.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def signbit(x):
    """True where the sign bit of x is set (also for -0.0 and -NaN)."""
    if x.dtype == tl.float64:
        neg = x.to(tl.int64, bitcast=True) < 0
    else:
        neg = x.to(tl.int32, bitcast=True) < 0
    return neg


@triton.jit
def atan_unit(a):
    """atan(a) for a in [0, 1] (NaN in, NaN out)."""
    # centre c = k pi/12 nearest to atan(a); thresholds are tan(pi/24), tan(3pi/24), tan(5pi/24)
    k1 = a > 0.13165249758739586
    k2 = a > 0.41421356237309503
    k3 = a > 0.7673269879789604
    # (the innermost branch is a tensor, so the constants take a's dtype, not float32)
    zero = tl.zeros_like(a)
    tan_c = tl.where(k3, 1.0, tl.where(k2, 0.5773502691896257, tl.where(k1, 0.2679491924311227, zero)))
    c = tl.where(k3, 0.7853981633974483, tl.where(k2, 0.5235987755982989, tl.where(k1, 0.26179938779914946, zero)))
    t = (a - tan_c) / (1.0 + a * tan_c)
    z = t * t
    if a.dtype == tl.float64:
        p = 1.0 / 17.0
        p = p * z - 1.0 / 15.0
        p = p * z + 1.0 / 13.0
        p = p * z - 1.0 / 11.0
        p = p * z + 1.0 / 9.0
        p = p * z - 1.0 / 7.0
        p = p * z + 1.0 / 5.0
        p = p * z - 1.0 / 3.0
    else:
        p = -1.0 / 7.0
        p = p * z + 1.0 / 5.0
        p = p * z - 1.0 / 3.0
    return c + (t + t * (z * p))


@triton.jit
def atan2(y, x):
    """atan2(y, x) in (-pi, pi], as torch.atan2 (signed zeros, infinities, NaN)."""
    ay = tl.abs(y)
    ax = tl.abs(x)
    big = tl.maximum(ax, ay)
    small = tl.minimum(ax, ay)
    # 0/0 -> 0 and inf/inf -> 1 (atan2(inf, inf) = pi/4); NaN stays NaN through the division
    ratio = tl.where(big == 0.0, 0.0, tl.where(small == big, 1.0, small / big))
    angle = atan_unit(ratio)
    angle = tl.where(ay > ax, 1.5707963267948966 - angle, angle)
    angle = tl.where(signbit(x), 3.141592653589793 - angle, angle)
    angle = tl.where(signbit(y), angle * -1.0, angle)  # (not -angle: some interpreters give -(+0) = +0)
    # tl.maximum / tl.minimum may drop a NaN operand: give NaN back explicitly
    return tl.where((x != x) | (y != y), x + y, angle)


@triton.jit
def atan(x):
    """atan(x) in [-pi/2, pi/2]."""
    return atan2(x, tl.full(x.shape, 1.0, x.dtype))


@triton.jit
def asin(x):
    """asin(x) for x in [-1, 1]; NaN outside, as torch."""
    return atan2(x, sqrt((1.0 - x) * (1.0 + x)))


@triton.jit
def acos(x):
    """acos(x) for x in [-1, 1]; NaN outside, as torch."""
    return atan2(sqrt((1.0 - x) * (1.0 + x)), x)


@triton.jit
def sqrt(x):
    """Correctly rounded square root in both precisions."""
    if x.dtype == tl.float64:
        r = tl.sqrt(x)
    else:
        r = tl.sqrt_rn(x)
    return r


@triton.jit
def rsqrt(x):
    """1 / sqrt(x), accurate to the working precision."""
    if x.dtype == tl.float64:
        r = 1.0 / tl.sqrt(x)
    else:
        r = tl.math.rsqrt(x)
    return r


@triton.jit
def expm1(y):
    """exp(y) - 1 without cancellation for small |y| (Kahan)."""
    u = tl.exp(y)
    um1 = u - 1.0
    safe = tl.where((u == 1.0) | (um1 == -1.0), 2.0, u)
    r = um1 * y / tl.log(safe)
    r = tl.where(u == 1.0, y, r)
    return tl.where(um1 == -1.0, -1.0, r)


@triton.jit
def tanh(x):
    """tanh(x), with expm1 for small |x| and the exact limits +-1 for large |x|."""
    e = expm1(-2.0 * tl.abs(x))
    r = -e / (2.0 + e)
    return tl.where(signbit(x), r * -1.0, r)


@triton.jit
def band_base(d, n):
    """Entries of an axis of size n stored before displacement plane d (planes -(n-1) .. d-1).

    Plane d holds the n - |d| positions p with 0 <= p - d < n, so the planes of a band lie
    back to back without empty slots. Only non-negative numbers are divided, so the result is
    the same under C (compiled) and Python (interpreter) integer division.
    """
    k = d + n - 1
    neg = k * (k + 1) // 2
    dm1 = tl.maximum(d - 1, 0)
    pos = n * (n + 1) // 2 + dm1 * (2 * n - dm1 - 1) // 2
    return tl.where(d <= 0, neg, pos)

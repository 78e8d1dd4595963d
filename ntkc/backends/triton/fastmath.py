"""`@triton.jit` math helpers of the v2 kernels: cheap, exact where exactness is relied on, and
runnable in Triton's interpreter. (`mathlib.py` holds the v1 helpers.)

Generated modules do not import this file: `helpers.helper_sources()` reads the helpers a kernel
uses out of it as text (no triton needed to generate source) and copies them into the module, so
a module is self-contained and its cache hash changes with any helper. Every helper branches on
the dtype at compile time.

Costs (sm_90 SASS, float32, counted by `speed_model`) and accuracy:

- `fsqrt(x)`: float32 `tl.sqrt` is MUFU.SQRT (sqrt.approx.f32, ~1 ulp), one instruction against
  ~25 for the correctly rounded `tl.sqrt_rn`. float64: rsqrt.approx.f64 refined by two Newton
  steps (relative error ~2e-16), then x * rsqrt(x): exactly 0 at x = 0 (the argument of the
  refinement is max(x, tiny), the product is x * finite).
- `frsqrt(x)`: float32 MUFU.RSQ (rsqrt.approx.f32, ~2 ulp); float64 refined as above.
- `frcp_pos(x)`, x > 0: rsqrt(x)^2 (float32: MUFU.RSQ + FMUL, ~3 ulp, against 8 instructions for
  div.full.f32, whose range fix-ups we do not need); float64: refined rsqrt squared.
- `atan2_affine(y, x, y2, A, B, Y_NONNEG)` = A + B * atan2(y, x), with y2 = y * y given by the caller
  (often known exactly, e.g. y = sqrt(m) gives y2 = m). Half-angle form: with
  rho = sqrt(x^2 + y^2) and tau = y / (rho + |x|) in [-1, 1],
      atan2(y, x) = 2 atan(tau)                    for x >= 0
                  = copysign(pi, y) - 2 atan(tau)  for x < 0,
  no cancellation in rho + |x|, one polynomial atan(tau) = tau * Q(tau^2) on [0, 1], and A, B and
  the 2 folded into its coefficients and offset at compile time (the relu's
  (pi - theta) / (2 pi) becomes one FFMA after the polynomial). Q: minimax relative error 9.9e-8
  (float32, 8 terms) and 2.7e-17 (float64, 20 terms): a Remez fit, `tools/fit_atan.py`. x = y = 0 gives
  A + B * 0 for x = +0 and A + B * pi for x = -0 with y >= 0 (as torch.atan2(+0, -0) = pi).
- `fms2(a, b, c, d)` = a * b - c * d, rendered as fma(a, b, -w) + fma(-c, d, w) with w = c * d:
  each fma is exact when a * b = c * d (it is then +-e, the rounding error of w, which is
  representable), so the result is exactly 0 whatever the compiler contracts. It is the
  determinant v1 v2 - u^2 of the relu on self-pair diagonals (u = v1 = v2 there).
"""
from __future__ import annotations

import os

import triton
import triton.language as tl

# atan(t) = t * Q(t^2), Q's coefficients from the constant term up (tools/fit_atan.py)
ATAN_Q32 = (0.99999990099066339076, -0.3333199074339894664, 0.19969723855745876289,
            -0.14019480700529728598, 0.099142923272952490371, -0.059486386909488241533,
            0.024252399233780312638, -0.0046932750703827852324)
ATAN_Q64 = (0.99999999999999997292, -0.33333333333331111292, 0.19999999999696316007,
            -0.14285714269196408442, 0.11111110634357920752, -0.0909090064766423317,
            0.076922076091376288909, -0.06665825855942558919, 0.058771423625237174975,
            -0.052386340757528849176, 0.046722880435483177913, -0.040890778671077205026,
            0.034008740800383713268, -0.02575116638458113287, 0.016904059745973441208,
            -0.0091303301993287830889, 0.0038271495752277022212, -0.0011535848637306972566,
            0.00022068733840599232664, -0.000020018617591757335181)
TINY32 = 1.1754943508222875e-38   # smallest normal float32
TINY64 = 2.2250738585072014e-308  # smallest normal float64


# compiled kernels reach MUFU.RSQ64H through inline PTX (tl.math.rsqrt in float64 is the full-precision
# libdevice routine with a slow-path call per element); the interpreter cannot run inline PTX
_INTERPRET = tl.constexpr(os.environ.get("TRITON_INTERPRET", "0") == "1")


@triton.jit
def frsqrt(x):
    """1 / sqrt(x) (x > 0): MUFU.RSQ in float32; two Newton steps on rsqrt.approx.ftz.f64 in float64."""
    if x.dtype == tl.float64:
        if _INTERPRET:
            y = tl.math.rsqrt(x)
        else:
            y = tl.inline_asm_elementwise("rsqrt.approx.ftz.f64 $0, $1;", "=d,d", [x], dtype=tl.float64,
                                          is_pure=True, pack=1)
        h = 0.5 * x
        y = y * (1.5 - h * y * y)
        y = y * (1.5 - h * y * y)
    else:
        y = tl.math.rsqrt(x)
    return y


@triton.jit
def fsqrt(x):
    """sqrt(x) for x >= 0 (NaN for x < 0): MUFU.SQRT in float32; x * refined rsqrt in float64."""
    if x.dtype == tl.float64:
        y = frsqrt(tl.maximum(x, 2.2250738585072014e-308))
        r = tl.where(x >= 0.0, x * y, x * 0.0 + float("nan"))
    else:
        r = tl.sqrt(x)
    return r


@triton.jit
def frcp_pos(x):
    """1 / x for x > 0, as rsqrt(x)^2 (no range fix-ups: callers guarantee x >= tiny)."""
    y = frsqrt(x)
    return y * y


@triton.jit
def fms2(a, b, c, d):
    """a * b - c * d, exactly 0 whenever a * b = c * d, with or without FMA contraction."""
    w = c * d
    return tl.fma(a, b, -w) + tl.fma(-c, d, w)


@triton.jit
def _atan_q(z, S: tl.constexpr):
    """S * Q(z), atan(t) = t * Q(t^2) on t in [-1, 1] (minimax relative error, see ATAN_Q32/64); the
    scale S is folded into every coefficient at compile time."""
    if z.dtype == tl.float64:
        q = -0.000020018617591757335181 * S
        q = q * z + 0.00022068733840599232664 * S
        q = q * z - 0.0011535848637306972566 * S
        q = q * z + 0.0038271495752277022212 * S
        q = q * z - 0.0091303301993287830889 * S
        q = q * z + 0.016904059745973441208 * S
        q = q * z - 0.02575116638458113287 * S
        q = q * z + 0.034008740800383713268 * S
        q = q * z - 0.040890778671077205026 * S
        q = q * z + 0.046722880435483177913 * S
        q = q * z - 0.052386340757528849176 * S
        q = q * z + 0.058771423625237174975 * S
        q = q * z - 0.06665825855942558919 * S
        q = q * z + 0.076922076091376288909 * S
        q = q * z - 0.0909090064766423317 * S
        q = q * z + 0.11111110634357920752 * S
        q = q * z - 0.14285714269196408442 * S
        q = q * z + 0.19999999999696316007 * S
        q = q * z - 0.33333333333331111292 * S
        q = q * z + 0.99999999999999997292 * S
    else:
        q = -0.0046932750703827852324 * S
        q = q * z + 0.024252399233780312638 * S
        q = q * z - 0.059486386909488241533 * S
        q = q * z + 0.099142923272952490371 * S
        q = q * z - 0.14019480700529728598 * S
        q = q * z + 0.19969723855745876289 * S
        q = q * z - 0.3333199074339894664 * S
        q = q * z + 0.99999990099066339076 * S
    return q


@triton.jit
def atan2_affine(y, x, y2, A: tl.constexpr, B: tl.constexpr, Y_NONNEG: tl.constexpr):
    """A + B * atan2(y, x), y2 = y * y (exact when the caller knows it), half-angle form.

    With rho = sqrt(x^2 + y^2) and tau = y / (rho + |x|): atan2 = 2 atan(tau) for x >= 0 and
    copysign(pi, y) - 2 atan(tau) for x < 0. The result is O + (+-2B) tau Q(tau^2): one FFMA
    after the polynomial; O and the sign come from x's sign bit (and y's, unless Y_NONNEG).
    """
    rho = fsqrt(tl.fma(x, x, y2))
    if x.dtype == tl.float64:
        den = tl.maximum(rho + tl.abs(x), 2.2250738585072014e-308)
    else:
        den = tl.maximum(rho + tl.abs(x), 1.1754943508222875e-38)
    tau = y * frcp_pos(den)
    q = _atan_q(tau * tau, 2.0 * B)
    if x.dtype == tl.float64:
        neg_x = x.to(tl.int64, bitcast=True) < 0
    else:
        neg_x = x.to(tl.int32, bitcast=True) < 0
    # (one branch a tensor of x's dtype, so that float64 offsets keep every digit)
    if Y_NONNEG:
        off = tl.where(neg_x, tl.full(x.shape, A + B * 3.141592653589793, x.dtype), A)
    else:
        if x.dtype == tl.float64:
            neg_y = y.to(tl.int64, bitcast=True) < 0
        else:
            neg_y = y.to(tl.int32, bitcast=True) < 0
        off_pi = tl.where(neg_y, tl.full(x.shape, A - B * 3.141592653589793, x.dtype), A + B * 3.141592653589793)
        off = tl.where(neg_x, off_pi, A)
    tau_s = tl.where(neg_x, -tau, tau)
    return tl.fma(tau_s, q, off)

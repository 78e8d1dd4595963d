"""numba helpers for the parts of the ops vocabulary that need more than `math.*`, as source text.

Generated modules do not import this file: `helper_source(names, dtype)` pastes the helpers a
module uses, so a generated file is self-contained and its hash changes whenever a helper does.
Every helper is written for the loops around it: branch-free (conditional expressions on scalars
become selects), no calls into libm, so LLVM vectorises the row loops that call them.

Constants are typed globals of the module's dtype (`_ZERO`, `_PI`, ...: see `constant_header`):
a bare `0.5` would be a float64 and promote a float32 loop to float64.

- `_atan2(y, x)`: reduce to a = small / big in [0, 1]; above tan(pi/8) use
  atan a = pi/4 + atan t with t = (a - 1) / (a + 1), and with ONE division for both steps:
  t = (small - big) / (small + big), else t = small / big; so |t| <= tan(pi/8) ~ 0.414. Then
  atan t = t + t z P(z), z = t^2, with P a polynomial fitted here (Chebyshev interpolation of
  (atan(t)/t - 1)/z on [0, tan^2(pi/8)] in 50-digit arithmetic, mpmath): 5 coefficients in
  float32 (2.3e-9 relative), 11 in float64 (6.6e-18), found by `fit_series()` below and stored
  as numbers so that generating code needs no mpmath. Exact where the relu needs it:
  atan2(+0, u > 0) = +0 and atan2(+0, u < 0) = pi; atan2(0, 0) = 0; equal magnitudes give
  exactly pi/4 (also inf, inf); NaN in, NaN out. Signs follow IEEE / torch (signed zeros through
  `math.copysign`). Two selects and a compare replace a table of centres: fewer instructions per
  lane than a finer reduction with a shorter series.
- `_asin`, `_acos` through `_atan2` with (1 - x)(1 + x), which keeps every digit near |x| = 1.
- `_maximum`, `_minimum`: NaN-propagating, like torch.maximum / torch.minimum.
- The helpers carry `fastmath={"contract"}`: fused multiply-adds in the series (more accurate,
  fewer instructions). The loops that call them do not: exact cancellations there (the relu
  determinant v1 v2 - u^2 = 0 on a self pair) stay exact. LLVM inlines the helpers and keeps each
  instruction's own flags.
"""
from __future__ import annotations

import math

# name -> the helpers it calls
HELPERS: dict[str, tuple[str, ...]] = {
    "_atan2": (),
    "_atan": ("_atan2",),
    "_asin": ("_atan2",),
    "_acos": ("_atan2",),
    "_maximum": (),
    "_minimum": (),
}

# P(z) ~ (atan(sqrt z) / sqrt z - 1) / z on [0, tan^2(pi/8)], coefficients of z^0, z^1, ...
SERIES = {
    "float32": (
        -0.3333333176116852, 0.19999540483648964, -0.1426395559798464, 0.10743731490791084,
        -0.06451928208121749,
    ),
    "float64": (
        -0.3333333333333333, 0.1999999999999552, -0.14285714284666542, 0.11111111015256361,
        -0.09090904578123903, 0.07692183190826087, -0.06664511447381948, 0.0585814891280221,
        -0.0508544973794026, 0.03923165829558719, -0.01917688711906226,
    ),
}


def fit_series(terms: int) -> list[float]:
    """Re-derive a row of SERIES (needs mpmath): Chebyshev interpolation of P on its interval."""
    from mpmath import atan, chebyfit, mp, mpf, pi, sqrt, tan
    mp.dps = 50

    def p(z):
        if z == 0:
            return mpf(-1) / 3
        t = sqrt(z)
        return (atan(t) / t - 1) / z

    coeffs = chebyfit(p, [0, tan(pi / 8) ** 2], terms)
    return [float(c) for c in reversed(coeffs)]

DECORATOR = '@njit(cache=True, inline="never", error_model="numpy", fastmath={"contract"})'


def constant_header(dtype: str) -> str:
    """Typed constants the helpers and the generated loops share."""
    lines = [
        f"DT = np.{dtype}",
        "_ZERO = DT(0.0)",
        "_ONE = DT(1.0)",
        f"_PI = DT({math.pi!r})",
        f"_HALF_PI = DT({math.pi / 2!r})",
        f"_QUARTER_PI = DT({math.pi / 4!r})",
        f"_TAN_PI_8 = DT({math.tan(math.pi / 8)!r})",
    ]
    for j, c in enumerate(SERIES[dtype]):
        lines.append(f"_ATAN_C{j} = DT({c!r})")
    return "\n".join(lines) + "\n"


def _series(dtype: str) -> str:
    """Horner form of P(z) = c0 + c1 z + ... (atan t = t + t z P(z))."""
    n = len(SERIES[dtype])
    expr = f"_ATAN_C{n - 1}"
    for j in range(n - 2, -1, -1):
        expr = f"({expr} * z + _ATAN_C{j})"
    return expr


def _sources(dtype: str) -> dict[str, str]:
    return {
        "_atan2": f'''
{DECORATOR}
def _atan2(y, x):
    """atan2(y, x) in (-pi, pi], as torch.atan2 (one division; see ntkc.backends.numba.mathlib)."""
    ay = abs(y)
    ax = abs(x)
    swap = ay > ax
    big = ay if swap else ax
    small = ax if swap else ay
    # atan(small / big) = pi/4 + atan((small - big) / (small + big)) above tan(pi/8) (and for inf, inf)
    far = (small > _TAN_PI_8 * big) or ((small == big) and (big != _ZERO))
    num = (small - big) if far else small
    den = (small + big) if far else big
    t = num / den
    # 0 / 0 (both zero) and inf / inf (equal magnitudes) have the exact answers 0 and pi / 4
    t = _ZERO if ((big == _ZERO) or (small == big)) else t
    z = t * t
    angle = (_QUARTER_PI if far else _ZERO) + (t + t * (z * {_series(dtype)}))
    angle = (_HALF_PI - angle) if swap else angle
    angle = (_PI - angle) if math.copysign(_ONE, x) < _ZERO else angle
    angle = math.copysign(angle, y)
    return (x + y) if ((x != x) or (y != y)) else angle
''',
        "_atan": f'''
{DECORATOR}
def _atan(x):
    """atan(x) in [-pi/2, pi/2]."""
    return _atan2(x, _ONE)
''',
        "_asin": f'''
{DECORATOR}
def _asin(x):
    """asin(x) for x in [-1, 1]; NaN outside, as torch."""
    return _atan2(x, math.sqrt((_ONE - x) * (_ONE + x)))
''',
        "_acos": f'''
{DECORATOR}
def _acos(x):
    """acos(x) for x in [-1, 1]; NaN outside, as torch."""
    return _atan2(math.sqrt((_ONE - x) * (_ONE + x)), x)
''',
        "_maximum": f'''
{DECORATOR}
def _maximum(a, b):
    """max(a, b), NaN if either is NaN (torch.maximum)."""
    return a if ((a > b) or (a != a)) else b
''',
        "_minimum": f'''
{DECORATOR}
def _minimum(a, b):
    """min(a, b), NaN if either is NaN (torch.minimum)."""
    return a if ((a < b) or (a != a)) else b
''',
    }


def closure(names) -> list[str]:
    """`names` and every helper they call, dependencies first, each once."""
    order: list[str] = []

    def visit(name):
        if name in order:
            return
        for dep in HELPERS[name]:
            visit(dep)
        order.append(name)

    for name in sorted(names):
        visit(name)
    return order


def helper_source(names, dtype: str) -> str:
    """The source text of the helpers `names` (and their dependencies) for `dtype`."""
    src = _sources(dtype)
    return "\n".join(src[n].strip("\n") + "\n\n" for n in closure(names))

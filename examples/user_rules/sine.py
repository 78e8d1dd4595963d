"""A user-defined layer rule, written outside the package: the sine activation phi(x) = sin(w x).

Load it with a `use "user_rules/sine.py"` line in a .arch file (the path is relative to that
file; see examples/user_sine.arch), or from Python with `ntkc.load_rules("examples/user_rules/sine.py")`.
Then `sine` and `sine freq=2` are layers like any other: parsed, planned, run by the torch
backend and compiled to Triton.

The kernel is exact. For (X, Y) centred Gaussian with variances v1, v2 and covariance u,
E[exp(i w (X + s Y))] = exp(-w^2 (v1 + 2 s u + v2) / 2) for s = +-1, and
sin a sin b = (cos(a - b) - cos(a + b)) / 2, cos a cos b = (cos(a - b) + cos(a + b)) / 2, so

  NNGP     E[sin(wX) sin(wY)]         = exp(-w^2 (v1 + v2) / 2) sinh(w^2 u)
  dfactor  E[w cos(wX) w cos(wY)]     = w^2 exp(-w^2 (v1 + v2) / 2) cosh(w^2 u)

(the second is the derivative of the first in u, as Price's theorem says it must be).
"""
from ntkc.rules import ActivationRule, Param, register


@register
class Sine(ActivationRule):
    """sine: sin(freq * x), an exact kernel (a user rule from examples/user_rules)."""

    name = "sine"
    params = (Param("freq", "float", 1.0, minimum=0, exclusive_minimum=True, doc="frequency w"),)

    def maps(self, p, ops, u, v1, v2, need_dfactor=True):
        w2 = p.freq * p.freq
        damp = ops.exp(-0.5 * w2 * (v1 + v2))
        up, down = ops.exp(w2 * u), ops.exp(-w2 * u)
        nngp = 0.5 * damp * (up - down)
        return nngp, (0.5 * w2 * damp * (up + down) if need_dfactor else None)

    def phi(self, p, ops, x):  # the function itself, for finite networks (k.network(...))
        return ops.sin(p.freq * x)

"""gelu: phi(x) = x Phi(x), Phi the standard normal CDF (Hendrycks & Gimpel 2016; exact, not the
tanh approximation).

Derived here (the same closed form appears in Tsuchida et al. 2021). Write g(x) = erf(x / sqrt 2),
so Phi = (1 + g) / 2 and phi(x) = x / 2 + x g(x) / 2; the cross terms pair an odd with an even
function and vanish. With q1 = 1 + v1, q2 = 1 + v2, Delta = q1 q2 - u^2 (>= 1, never singular):

  E[g(X) g(Y)]   = (2/pi) asin(u / sqrt(q1 q2))             (Williams 1997)
  E[g'(X) g'(Y)] = (2/pi) / sqrt(Delta)                      (a Gaussian integral, g' = 2 phi)
  E[X g(X) Y g(Y)] = u E[g g] + E[g' g'] (v1 v2 + u^2 - u^2 v1 / q1 - u^2 v2 / q2)
                                                              (Stein's lemma, twice)
NNGP  E[phi(X) phi(Y)] = u / 4 + E[X g(X) Y g(Y)] / 4

phi'(x) = Phi(x) + x phi_N(x) = 1/2 + (g(x) + x g'(x)) / 2, and E[X g'(X) Y g'(Y)] =
(2/pi) u / Delta^(3/2), E[X g'(X) g(Y)] = u E[g' g'] / q1, so

dfactor = 1/4 + (E[g g] + E[g' g'] (u / q1 + u / q2) + (2/pi) u / Delta^(3/2)) / 4.

Checked in tests against 2-D Gauss-Hermite quadrature, against d NNGP / du = dfactor (Price's
theorem) and against finite networks. Written with the public rule API only.
"""
from ...rules import ActivationRule, register


@register
class Gelu(ActivationRule):
    """gelu: x Phi(x), the exact Gaussian error linear unit."""

    name = "gelu"

    def maps(self, p, ops, u, v1, v2, need_dfactor=True):
        q1, q2 = 1.0 + v1, 1.0 + v2
        gg = (2.0 / ops.pi) * ops.asin(u * ops.rsqrt(q1 * q2))
        rd = ops.rsqrt(q1 * q2 - u * u)
        gpgp = (2.0 / ops.pi) * rd
        uu = u * u
        nngp = 0.25 * u + 0.25 * (u * gg + gpgp * (v1 * v2 + uu - uu * v1 / q1 - uu * v2 / q2))
        if not need_dfactor:
            return nngp, None
        factor = 0.25 + 0.25 * (gg + gpgp * (u / q1 + u / q2) + gpgp * u * rd * rd)
        return nngp, factor

    def phi(self, p, ops, x):
        return 0.5 * x * (1.0 + ops.erf(x * (0.5 ** 0.5)))

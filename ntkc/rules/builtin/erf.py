"""erf: phi(x) = erf(x) (Williams 1997).

NNGP  (2/pi) asin(2u / sqrt((1 + 2 v1)(1 + 2 v2)))
derivative factor  (4/pi) / sqrt((1 + 2 v1)(1 + 2 v2) - 4 u^2)
"""
from ..base import ActivationRule
from ..registry import register


@register
class Erf(ActivationRule):
    """erf: the error function."""

    name = "erf"

    def nngp(self, p, ops, u, v1, v2):
        return (2.0 / ops.pi) * ops.asin(2.0 * u * ops.rsqrt((1.0 + 2.0 * v1) * (1.0 + 2.0 * v2)))

    def phi(self, p, ops, x):
        return ops.erf(x)

    def dfactor(self, p, ops, u, v1, v2):
        return (4.0 / ops.pi) * ops.rsqrt((1.0 + 2.0 * v1) * (1.0 + 2.0 * v2) - 4.0 * u * u)

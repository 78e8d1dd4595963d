"""relu: phi(x) = max(x, 0), the arc-cosine kernel of degree 1 (Cho & Saul 2009).

With r = sqrt(max(v1 v2 - u^2, 0)) and theta = atan2(r, u):
NNGP  (r + (pi - theta) u) / (2 pi)        derivative factor  (pi - theta) / (2 pi)
r comes from the determinant, never from sqrt(1 - c^2) of a rounded cosine: on a self pair at
p = q the determinant is exactly 0, which keeps every digit.
"""
from ..base import ActivationRule
from ..registry import register


def _angle(ops, u, v1, v2):
    r = ops.sqrt(ops.maximum(v1 * v2 - u * u, 0.0))
    return r, ops.atan2(r, u)


@register
class Relu(ActivationRule):
    """relu: rectified linear unit."""

    name = "relu"

    def nngp(self, p, ops, u, v1, v2):
        r, theta = _angle(ops, u, v1, v2)
        return (r + (ops.pi - theta) * u) * (0.5 / ops.pi)

    def dfactor(self, p, ops, u, v1, v2):
        r, theta = _angle(ops, u, v1, v2)
        return (ops.pi - theta) * (0.5 / ops.pi)

    def maps(self, p, ops, u, v1, v2, need_dfactor=True):
        r, theta = _angle(ops, u, v1, v2)
        factor = (ops.pi - theta) * (0.5 / ops.pi)
        return r * (0.5 / ops.pi) + factor * u, (factor if need_dfactor else None)

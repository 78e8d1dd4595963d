"""abrelu and leaky_relu: phi(x) = a min(x, 0) + b max(x, 0) (leaky_relu: a = slope, b = 1).

Write phi(x) = (b - a) relu(x) + a x. For (X, Y) centred Gaussian with covariance
[[v1, u], [u, v2]], E[relu(X) Y] = E[X Y 1{X > 0}] = u / 2 (the map (X, Y) -> (-X, -Y) swaps the
halves), so the cross terms add up to a (b - a) u and

NNGP  E[phi(X) phi(Y)]   = (b - a)^2 (r + (pi - theta) u) / (2 pi) + a b u
dfactor E[phi'(X) phi'(Y)] = (b - a)^2 (pi - theta) / (2 pi) + a b

with r = sqrt(max(v1 v2 - u^2, 0)), theta = atan2(r, u): the relu arc-cosine kernel (Cho & Saul
2009). a = 0, b = 1 is relu; a = b = 1 is the identity. Written with the public rule API only.
"""
from ...rules import ActivationRule, Param, register


def abrelu_maps(ops, a: float, b: float, u, v1, v2, need_dfactor: bool = True):
    """(NNGP, derivative factor) of a min(x, 0) + b max(x, 0); r from the determinant (see relu)."""
    r = ops.sqrt(ops.maximum(v1 * v2 - u * u, 0.0))
    theta = ops.atan2(r, u)
    c = (b - a) * (b - a)
    arc = (ops.pi - theta) * (0.5 / ops.pi)
    nngp = c * (r * (0.5 / ops.pi) + arc * u) + (a * b) * u
    return nngp, (c * arc + a * b if need_dfactor else None)


@register
class ABRelu(ActivationRule):
    """abrelu: a min(x, 0) + b max(x, 0)."""

    name = "abrelu"
    params = (
        Param("a", "float", 0.0, doc="slope for x < 0"),
        Param("b", "float", 1.0, doc="slope for x > 0"),
    )

    def nngp(self, p, ops, u, v1, v2):
        return abrelu_maps(ops, p.a, p.b, u, v1, v2, False)[0]

    def dfactor(self, p, ops, u, v1, v2):
        return abrelu_maps(ops, p.a, p.b, u, v1, v2)[1]

    def maps(self, p, ops, u, v1, v2, need_dfactor=True):
        return abrelu_maps(ops, p.a, p.b, u, v1, v2, need_dfactor)


@register
class LeakyRelu(ActivationRule):
    """leaky_relu: max(x, 0) + slope min(x, 0)."""

    name = "leaky_relu"
    params = (Param("slope", "float", 0.01, doc="slope for x < 0"),)

    def nngp(self, p, ops, u, v1, v2):
        return abrelu_maps(ops, p.slope, 1.0, u, v1, v2, False)[0]

    def dfactor(self, p, ops, u, v1, v2):
        return abrelu_maps(ops, p.slope, 1.0, u, v1, v2)[1]

    def maps(self, p, ops, u, v1, v2, need_dfactor=True):
        return abrelu_maps(ops, p.slope, 1.0, u, v1, v2, need_dfactor)

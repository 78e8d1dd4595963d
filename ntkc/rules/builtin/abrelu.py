"""abrelu, and its presets relu and leaky_relu: phi(x) = a min(x, 0) + b max(x, 0).

relu is a = 0, b = 1 (the arc-cosine kernel of degree 1, Cho & Saul 2009); leaky_relu is
a = slope, b = 1. With r = sqrt(max(v1 v2 - u^2, 0)) and theta = atan2(r, u), relu gives

NNGP  (r + (pi - theta) u) / (2 pi)        derivative factor  (pi - theta) / (2 pi)

r comes from the determinant, never from sqrt(1 - c^2) of a rounded cosine: on a self pair at
p = q the backends pass u = v1 = v2 exactly, the determinant is exactly 0 and every digit of the
angle is kept.

For general slopes write phi(x) = (b - a) relu(x) + a x. For (X, Y) centred Gaussian with
covariance [[v1, u], [u, v2]], E[relu(X) Y] = E[X Y 1{X > 0}] = u / 2 (the map (X, Y) -> (-X, -Y)
swaps the halves), so the cross terms add up to a (b - a) u and

NNGP    E[phi(X) phi(Y)]   = (b - a)^2 relu_NNGP + a b u
dfactor E[phi'(X) phi'(Y)] = (b - a)^2 relu_dfactor + a b

a = b = 1 is the identity. Written with the public rule API only.
"""
from ...rules import ActivationRule, Param, register


def arccos_maps(ops, u, v1, v2, need_dfactor: bool = True):
    """(NNGP, derivative factor) of relu, the degree-1 arc-cosine kernel."""
    r = ops.sqrt(ops.maximum(v1 * v2 - u * u, 0.0))
    theta = ops.atan2(r, u)
    factor = (ops.pi - theta) * (0.5 / ops.pi)
    return r * (0.5 / ops.pi) + factor * u, (factor if need_dfactor else None)


@register
class ABRelu(ActivationRule):
    """abrelu: a min(x, 0) + b max(x, 0)."""

    name = "abrelu"
    params = (
        Param("a", "float", 0.0, doc="slope for x < 0"),
        Param("b", "float", 1.0, doc="slope for x > 0"),
    )

    def slopes(self, p) -> tuple[float, float]:
        """(a, b) of this layer; presets override it."""
        return p.a, p.b

    def maps(self, p, ops, u, v1, v2, need_dfactor=True):
        a, b = self.slopes(p)
        nngp, factor = arccos_maps(ops, u, v1, v2, need_dfactor)
        c = (b - a) * (b - a)
        if c != 1.0:  # (terms that are exactly 1x or +0 are left out of the generated code)
            nngp = c * nngp
            factor = None if factor is None else c * factor
        if a * b != 0.0:
            nngp = nngp + (a * b) * u
            factor = None if factor is None else factor + a * b
        return nngp, factor

    def phi(self, p, ops, x):
        a, b = self.slopes(p)
        pos = ops.maximum(x, 0.0)
        out = pos if b == 1.0 else b * pos  # (relu stays one op on a network's largest tensors)
        return out if a == 0.0 else out + a * ops.minimum(x, 0.0)


@register
class Relu(ABRelu):
    """relu: rectified linear unit, max(x, 0) (abrelu a=0 b=1)."""

    name = "relu"
    params = ()

    def slopes(self, p) -> tuple[float, float]:
        return 0.0, 1.0


@register
class LeakyRelu(ABRelu):
    """leaky_relu: max(x, 0) + slope min(x, 0) (abrelu a=slope b=1)."""

    name = "leaky_relu"
    params = (Param("slope", "float", 0.01, doc="slope for x < 0"),)

    def slopes(self, p) -> tuple[float, float]:
        return p.slope, 1.0

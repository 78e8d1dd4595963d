"""identity: phi(x) = x. NNGP u, derivative factor 1."""
from ..base import ActivationRule
from ..registry import register


@register
class Identity(ActivationRule):
    """identity: the linear activation."""

    name = "identity"

    def nngp(self, p, ops, u, v1, v2):
        return u

    def dfactor(self, p, ops, u, v1, v2):
        return u * 0.0 + 1.0

    def phi(self, p, ops, x):
        return x

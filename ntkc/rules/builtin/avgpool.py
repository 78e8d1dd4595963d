"""avgpool: k x k average pooling with stride s, windows inside the map only.

S'[P,Q] = (1/k^4) sum over e, e' in [0,k)^2 of S[s P + e, s Q + e'], the same map on T.
Plane-mixing: output displacement D reads input displacements s D + e - e' for e - e' in (-k, k).
"""
from ..base import Param, Params, Shape, Window, WindowRule, pool_axis, require_map
from ..registry import register


@register
class AvgPool(WindowRule):
    """avgpool: k x k average pooling (stride defaults to the size)."""

    name = "avgpool"
    params = (
        Param("size", "int", 2, minimum=1, doc="window size k"),
        Param("stride", "int", 0, minimum=0, doc="stride s; 0 means s = size"),
    )

    def window(self, p: Params, shape: Shape) -> Window:
        require_map(self.name, shape)
        stride = p.stride or p.size
        return Window(
            rows=pool_axis(shape.height, p.size, stride, axis="height"),
            cols=pool_axis(shape.width, p.size, stride, axis="width"),
            weight=1.0 / p.size ** 4,
        )

"""gap: global average pooling, the readout S' = mean over all (p, q) of S[p, q]; same on T.

Needs every displacement plane.
"""
from ..base import AxisWindow, Params, Shape, Window, WindowRule, require_map
from ..registry import register


def _all_pairs(n: int) -> AxisWindow:
    return AxisWindow(n, 1, 1, 0, taps=range(n), pairs=True)  # every (e, f): described, not listed


@register
class Gap(WindowRule):
    """gap: global average pooling readout (mean over all position pairs)."""

    name = "gap"

    def window(self, p: Params, shape: Shape) -> Window:
        require_map(self.name, shape)
        h, w = shape.height, shape.width
        return Window(_all_pairs(h), _all_pairs(w), weight=1.0 / (h * w) ** 2, readout=True)

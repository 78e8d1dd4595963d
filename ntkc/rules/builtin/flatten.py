"""flatten: the readout of a vectorised map, S' = mean over p of S[p, p]; same on T.

Needs displacement plane 0 only (which is what makes CNTK-V cost O(H W L) per pair).
"""
from ..base import AxisWindow, Params, Shape, Window, WindowRule, require_map
from ..registry import register


def _diagonal(n: int) -> AxisWindow:
    return AxisWindow(n, 1, 1, 0, taps=range(n))  # the terms (e, e), described


@register
class Flatten(WindowRule):
    """flatten: vectorising readout (mean over the diagonal p = q)."""

    name = "flatten"

    def window(self, p: Params, shape: Shape) -> Window:
        require_map(self.name, shape)
        h, w = shape.height, shape.width
        return Window(_diagonal(h), _diagonal(w), weight=1.0 / (h * w), readout=True)

"""dense: a fully connected layer after a readout.

NNGP  S' = w^2 S + b^2        NTK  T' = w^2 T + S'   (no + S' when trainable=false)
"""
from ..base import AxisWindow, LayerError, Param, Params, Shape, Window, WindowRule
from ..registry import register


@register
class Dense(WindowRule):
    """dense: fully connected layer (after gap/flatten or another dense)."""

    name = "dense"
    fresh_weights = True  # its own Gaussian weights (a residual branch may end in it; a finite layer with parameters)
    params = (
        Param("w_std", "float", 1.0, minimum=0, doc="weight standard deviation w"),
        Param("b_std", "float", 0.0, minimum=0, doc="bias standard deviation b"),
        Param("trainable", "bool", True, doc="false freezes weights and bias (no NTK term)"),
    )

    def window(self, p: Params, shape: Shape) -> Window:
        if not shape.reduced:
            raise LayerError(
                f"`dense` needs a scalar per image, but the map is still {shape.height}x{shape.width}",
                hint="put `gap` or `flatten` before the first `dense`",
            )
        one = AxisWindow(1, 1)
        return Window(one, one, weight=p.w_std ** 2, bias=p.b_std ** 2, trainable=p.trainable)

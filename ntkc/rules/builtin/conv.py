"""conv: a k x k convolution in the NTK parameterisation.

NNGP  S'[p,q] = w^2 (1/k^2) sum_d S[s p + r d - lo, s q + r d - lo] + b^2
NTK   T'[p,q] = w^2 (1/k^2) sum_d T[s p + r d - lo, s q + r d - lo] + S'[p,q]   (no + S' if frozen)

with dilation r (taps r d for d in [0, k), a window spanning r (k - 1) + 1 positions; padding
sizes use that span, as TF/JAX do).

Padding `same` (TF/JAX convention: total = (out - 1) s + k - n, lo = total // 2, so odd k at
stride 1 is centred and an even k pads one more at the high end) and `valid` read zeros outside
the map, `circular` wraps around. Source: Arora et al. 2019, eq. (7)-(8), in neural-tangents' conventions.
"""
from ..base import Param, Params, Shape, Window, WindowRule, conv_axis, require_map
from ..registry import register


@register
class Conv(WindowRule):
    """conv: k x k convolution (stride, dilation, same/valid/circular padding, weight and bias std)."""

    name = "conv"
    fresh_weights = True  # its own Gaussian weights (a residual branch may end in it; a finite layer with parameters)
    params = (
        Param("size", "int", 3, minimum=1, doc="kernel size k (k x k)"),
        Param("stride", "int", 1, minimum=1, doc="stride s"),
        Param("dilation", "int", 1, minimum=1, doc="dilation r: taps r apart"),
        Param("padding", "choice", "same", choices=("same", "valid", "circular")),
        Param("w_std", "float", 1.0, minimum=0, doc="weight standard deviation w"),
        Param("b_std", "float", 0.0, minimum=0, doc="bias standard deviation b"),
        Param("trainable", "bool", True, doc="false freezes weights and bias (no NTK term)"),
    )

    def window(self, p: Params, shape: Shape) -> Window:
        require_map(self.name, shape)
        return Window(
            rows=conv_axis(shape.height, p.size, p.stride, p.padding, p.dilation, axis="height"),
            cols=conv_axis(shape.width, p.size, p.stride, p.padding, p.dilation, axis="width"),
            weight=p.w_std ** 2 / p.size ** 2,
            bias=p.b_std ** 2,
            trainable=p.trainable,
        )

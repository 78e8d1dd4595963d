"""lap: local average pooling, stride 1, window k, size kept (Li et al. 2019, Enhanced CNTK).

The feature map is averaged over a k x k window around every position, so on the covariance

  S'[p, q] = (1/k^4) sum over e, e' in [0, k)^2 of S[p + e - lo, q + e' - lo]   (same map on T)

with lo = (k - 1) // 2 (TF/JAX 'SAME', centred for odd k). Li et al. write the window as 2c + 1,
so their c is k = 2c + 1. Output displacement D reads input displacements D + e - e' for
|e - e'| < k: a band of 2k - 1 planes per axis, so a flatten readout after lap needs
(2k - 1)^2 planes instead of 1, and the network interpolates between CNTK-V (k = 1) and
CNTK-GAP (k = map size, circular).

Boundary handling, `padding`:
- `same` (default): positions outside the map are zeros and the divisor stays k^2 (PyTorch's
  `avg_pool2d(..., count_include_pad=True)`), the zero padding every conv of these networks uses.
  It keeps the demanded band narrow, which is what makes lap cheap.
- `circular`: the map wraps around, the paper's setting, under which lap is exactly an average
  over cyclic shifts (local translation augmentation) and full-size lap equals gap. Wrapping
  makes planes near +-(n - 1) read planes near 0, so the band grows to all planes: it costs as
  much as a gap network.
Written with the public rule API only.
"""
from ...rules import Param, Params, Shape, Window, WindowRule, conv_axis, register, require_map


@register
class Lap(WindowRule):
    """lap: local average pooling, stride 1, k x k window, same size out."""

    name = "lap"
    params = (
        Param("size", "int", 3, minimum=1, doc="window size k (the paper's 2c + 1)"),
        Param("padding", "choice", "same", choices=("same", "circular"),
              doc="zeros outside the map (same) or wrap around (circular)"),
    )

    def window(self, p: Params, shape: Shape) -> Window:
        require_map(self.name, shape)
        return Window(
            rows=conv_axis(shape.height, p.size, 1, p.padding, axis="height", pairs=True),
            cols=conv_axis(shape.width, p.size, 1, p.padding, axis="width", pairs=True),
            weight=1.0 / p.size ** 4,
        )

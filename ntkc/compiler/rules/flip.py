"""flip: horizontal-flip augmentation of the kernel (Li et al. 2019, Enhanced CNTK).

Augmenting the data with mirror images amounts to the network f_bar(x) = (f(x) + f(flip x)) / 2,
whose kernels are (1/4) sum over g, h in {id, flip} of K(g x, h x'). Where every layer commutes
with the mirror (K(flip x, flip x') = K(x, x')) this is

  K_flip(x, x') = (K(x, x') + K(x, flip x')) / 2      (NNGP and NTK alike)

which is symmetric and costs two pair evaluations. `check_network` proves the commuting layer by
layer: a window's column map must be its own mirror image (odd conv sizes with same, valid or
circular padding; pooling windows that tile the width exactly; gap, flatten, lap with odd size;
dense). Activations are pointwise. Where a layer is not mirror-symmetric (an even conv size with
'same' padding, a pooling that drops the last column) the two-term form is not the augmented
kernel, and the statement is refused. The readout may be gap or flatten: both reduce to a
scalar that the mirror leaves alone. The runtime evaluates the sum by wrapping the backend
(`ntkc.runtime.augment`); the flipped term is never a self pair.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ...rules import AugmentRule, AxisWindow, LayerError, Params, register


@lru_cache(maxsize=256)
def mirror_symmetric(ax: AxisWindow) -> bool:
    """True when the axis map commutes with reversing the axis on both sides."""
    n, m = ax.n_in, ax.n_out
    op = np.zeros((m, m, n, n))
    p = np.arange(m)
    for e, f in ax.terms:
        i = ax.stride * p + e + ax.offset
        j = ax.stride * p + f + ax.offset
        if ax.wrap:
            i, j = i % n, j % n
        ii, jj = np.meshgrid(i, j, indexing="ij")
        pp, qq = np.meshgrid(p, p, indexing="ij")
        keep = (ii >= 0) & (ii < n) & (jj >= 0) & (jj < n)
        np.add.at(op, (pp[keep], qq[keep], ii[keep], jj[keep]), 1.0)
    return bool(np.array_equal(op, op[::-1, ::-1, ::-1, ::-1]))


@register
class Flip(AugmentRule):
    """flip: average the kernel over horizontal flips (right after `input`)."""

    name = "flip"

    def transforms(self, p: Params) -> tuple:
        return (lambda x: x.flip(-1),)

    def check_network(self, p: Params, network) -> None:
        if sum(a.rule.name == self.name for a in network.augment) > 1:
            raise LayerError("`flip` is given twice", hint="one `flip` line averages over both mirror images")
        for layer in network.layers:
            if layer.rule.kind != "window":
                continue
            w = layer.rule.window(layer.params, layer.in_shape)
            if not mirror_symmetric(w.cols):
                raise LayerError(
                    f"`flip` needs every layer to commute with the mirror, but `{layer.describe()}` on line "
                    f"{layer.span.line} treats the left and right edges differently "
                    f"({layer.in_shape} -> {layer.out_shape}), so K(x, flip x') is not the flip-augmented kernel",
                    hint="use odd conv sizes (or padding=valid/circular with odd sizes), pooling sizes that divide "
                         "the width, or remove `flip`")

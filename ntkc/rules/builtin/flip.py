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
(`ntkc.engine.augment`); the flipped term is never a self pair.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ...rules import AugmentRule, AxisWindow, LayerError, Params, register


@lru_cache(maxsize=256)
def mirror_symmetric(ax: AxisWindow) -> bool:
    """True when the axis map commutes with reversing the axis on both sides.

    The map sends input entries (i, j) to output entry (p, q), once per window term that
    connects them; it commutes with the mirror when that multiset of (p, q, i, j) equals its
    image under p -> m-1-p, q -> m-1-q, i -> n-1-i, j -> n-1-j. The entries are listed sparsely
    (m^2 x terms rows), so large maps cost no m^2 n^2 table.
    """
    n, m = ax.n_in, ax.n_out
    pp, qq = (g.reshape(-1) for g in np.meshgrid(np.arange(m), np.arange(m), indexing="ij"))
    rows = []
    for e, f in ax.terms:
        i = ax.stride * pp + e + ax.offset
        j = ax.stride * qq + f + ax.offset
        if ax.wrap:
            i, j = i % n, j % n
        keep = (i >= 0) & (i < n) & (j >= 0) & (j < n)
        rows.append(np.stack([pp[keep], qq[keep], i[keep], j[keep]], axis=1))
    entries = np.concatenate(rows) if rows else np.zeros((0, 4), dtype=np.int64)
    mirrored = np.array([m - 1, m - 1, n - 1, n - 1]) - entries
    a, ca = np.unique(entries, axis=0, return_counts=True)
    b, cb = np.unique(mirrored, axis=0, return_counts=True)
    return a.shape == b.shape and bool(np.array_equal(a, b) and np.array_equal(ca, cb))


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

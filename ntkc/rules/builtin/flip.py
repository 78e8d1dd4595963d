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

from collections import Counter
from functools import lru_cache
from math import gcd

from ...rules import AugmentRule, AxisWindow, LayerError, Params, register


@lru_cache(maxsize=256)
def mirror_symmetric(ax: AxisWindow) -> bool:
    """True when the axis map commutes with reversing the axis on both sides.

    The map sends input entries (i, j) to output entry (p, q), once per window term (e, f)
    that connects them: i = s p + e + o, j = s q + f + o (modulo n when it wraps). It commutes
    with the mirror when that multiset of (p, q, i, j) equals its image under p -> m-1-p,
    q -> m-1-q, i -> n-1-i, j -> n-1-j. The mirror of term (e, f)'s entries are exactly the
    entries of term (c - e, c - f) with c = n - 1 - 2 o - s (m - 1), and distinct terms have
    disjoint entries, so the test is on the terms alone, never on an m^2 grid:

    - without wrapping: the terms that land inside the map (both taps do for some p, q) must
      be their own image under e -> c - e (for a described window: the landing taps, a
      progression, must be symmetric about c / 2);
    - wrapping: the multiset of (e mod n, f mod n) must be its own image modulo n.
    """
    n, m = ax.n_in, ax.n_out
    c = n - 1 - 2 * ax.offset - ax.stride * (m - 1)
    if ax.taps is not None:
        if ax.wrap:
            counts = _residues(ax.taps, n)
            return all(counts.get((c - r) % n, 0) == k for r, k in counts.items())
        taps = ax.effective_taps()
        if isinstance(taps, range):
            return not len(taps) or taps[0] + taps[-1] == c
        return set(taps) == {c - e for e in taps}
    if ax.wrap:
        terms = Counter((e % n, f % n) for e, f in ax.terms)
        return all(terms.get(((c - e) % n, (c - f) % n), 0) == k for (e, f), k in terms.items())
    terms = Counter((e, f) for e, f in ax.terms if ax.tap_lands(e) and ax.tap_lands(f))
    return all(terms.get((c - e, c - f), 0) == k for (e, f), k in terms.items())


def _residues(taps: range, n: int) -> dict[int, int]:
    """How many taps fall on each residue modulo n, in O(min(len(taps), n)): the residues of a
    progression repeat with period n / gcd(step, n)."""
    k = len(taps)
    period = n // gcd(taps.step, n) if k > 1 else 1
    full, rest = divmod(k, period)
    counts = {}
    for j in range(min(k, period)):
        counts[(taps.start + taps.step * j) % n] = full + (1 if j < rest else 0)
    return counts


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

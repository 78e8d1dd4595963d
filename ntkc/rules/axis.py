"""`AxisWindow`: one axis of a window map, described without listing what need not be listed.

Output position p reads input positions s*p + e + offset, summed over the window's *terms*, pairs
(e, e') of taps for the a-side and b-side positions. A rule may list its terms
(`terms=((e, e'), ...)`), or describe them by their taps, `taps=range(...)`, with `pairs=False`
(the same tap on both sides, terms (e, e): a conv) or `pairs=True` (every pair of taps (e, f): a
fixed average). A listing costs k^2 tuples for a k-wide average and n^2 for a global average
over an n-wide map (9 million for n = 3000); a description costs nothing. The built-in rules
describe. `terms` is then derived on first use, in the order a listing would have, while the
term count, the displacements e - e', the demand rule (`reads`) and the taps that can land
inside the map (`effective_taps`) are computed from the description, so compiling a network
costs nothing in its windows' sizes.
"""
from __future__ import annotations

from typing import Iterable

Deltas = "range | tuple[int, ...]"


class AxisWindow:
    """One axis of a window map: output position p reads input positions s*p + e + offset.

    `terms` lists the (e, e') offset pairs summed for the (a-side, b-side) positions; `wrap`
    takes input positions modulo `n_in` (circular padding) instead of reading zeros outside.
    Instead of `terms`, `taps=range(...)` describes them: terms (e, e) for e in taps, or with
    `pairs=True` (e, f) for e and f in taps. Immutable and hashable.
    """

    __slots__ = ("n_in", "n_out", "stride", "offset", "wrap", "taps", "pairs", "_listed", "_terms")

    def __init__(self, n_in: int, n_out: int, stride: int = 1, offset: int = 0,
                 terms: Iterable[tuple[int, int]] = ((0, 0),), wrap: bool = False, *,
                 taps: range | None = None, pairs: bool = False):
        put = object.__setattr__
        for name, value in (("n_in", n_in), ("n_out", n_out), ("stride", stride), ("offset", offset),
                            ("wrap", bool(wrap)), ("pairs", bool(pairs) and taps is not None)):
            put(self, name, value)
        if taps is not None:
            if not isinstance(taps, range) or (len(taps) > 1 and taps.step < 0):
                raise TypeError(f"taps must be a range with a positive step, got {taps!r}")
            put(self, "taps", taps)
            put(self, "_listed", None)
        else:
            put(self, "taps", None)
            put(self, "_listed", tuple(tuple(t) for t in terms))
        put(self, "_terms", self._listed)

    def __setattr__(self, *_):
        raise AttributeError("AxisWindow is immutable")

    # -- what it is ------------------------------------------------------------------------------

    @property
    def terms(self) -> tuple[tuple[int, int], ...]:
        """The (e, e') pairs, listed (derived from `taps` on first use when described)."""
        if self._terms is None:
            t = self.taps
            listed = tuple((e, f) for e in t for f in t) if self.pairs else tuple((e, e) for e in t)
            object.__setattr__(self, "_terms", listed)
        return self._terms

    @property
    def count(self) -> int:
        """The number of terms, without listing them."""
        if self.taps is None:
            return len(self._listed)
        return len(self.taps) ** 2 if self.pairs else len(self.taps)

    @property
    def mixes(self) -> bool:
        """True when output plane D reads an input plane other than s*D (a stage break)."""
        if self.taps is not None:
            return self.wrap or (self.pairs and len(self.taps) > 1)
        return self.wrap or any(a != b for a, b in self._listed)

    def deltas(self) -> "range | tuple[int, ...]":
        """The distinct e - e' over the terms, ascending (a `range` for a description)."""
        t = self.taps
        if t is None:
            return tuple(sorted({a - b for a, b in self._listed}))
        if not self.pairs or len(t) <= 1:
            return (0,) if len(t) else ()
        span = t[-1] - t[0]
        return range(-span, span + 1, t.step)

    def displacements(self) -> tuple[int, ...]:
        """The distinct e - e' over the terms."""
        return tuple(self.deltas())

    def key(self) -> tuple:
        return (self.n_in, self.n_out, self.stride, self.offset, self.wrap,
                ("taps", self.taps, self.pairs) if self.taps is not None else ("terms", self._listed))

    def __eq__(self, other):
        return isinstance(other, AxisWindow) and self.key() == other.key()

    def __hash__(self):
        return hash(self.key())

    def __repr__(self) -> str:
        body = (f"taps={self.taps!r}, pairs={self.pairs}" if self.taps is not None
                else f"terms={self._listed!r}" if len(self._listed) <= 8
                else f"terms=<{len(self._listed)} pairs>")
        return (f"AxisWindow(n_in={self.n_in}, n_out={self.n_out}, stride={self.stride}, offset={self.offset}, "
                f"{body}, wrap={self.wrap})")

    def __reduce__(self):
        if self.taps is not None:
            return (_described, (self.n_in, self.n_out, self.stride, self.offset, self.wrap, self.taps, self.pairs))
        return (AxisWindow, (self.n_in, self.n_out, self.stride, self.offset, self._listed, self.wrap))

    # -- where taps land ---------------------------------------------------------------------------

    def tap_lands(self, e: int) -> bool:
        """Whether tap e reads a position inside the map for some output position (always, when
        the window wraps); a tap that never does reads only zeros and contributes nothing."""
        if self.wrap:
            return True
        s, m, n = self.stride, self.n_out, self.n_in
        first = max(0, -((e + self.offset) // s))  # the first p with s p + e + offset >= 0
        return first <= m - 1 and s * first + e + self.offset <= n - 1

    def effective_taps(self) -> "range | tuple[int, ...]":
        """The taps (of a description; each side's, for a listing) that can land inside the map:
        a sub-range of `taps` whenever positions read by consecutive outputs overlap."""
        taps = self.taps if self.taps is not None else sorted({e for t in self._listed for e in t})
        if self.wrap:
            return taps
        if isinstance(taps, range) and (self.n_out == 1 or self.stride <= self.n_in):
            # inputs s p + e + offset for p in [0, m) cover [e + offset, s (m - 1) + e + offset]
            # without gaps, so e lands iff e + offset is in [-s (m - 1), n - 1]
            return clip_range(taps, -self.stride * (self.n_out - 1) - self.offset, self.n_in - 1 - self.offset)
        return tuple(e for e in taps if self.tap_lands(e))

    # -- the demand rule -------------------------------------------------------------------------

    def reads(self, lo: int, hi: int) -> tuple[int, int] | None:
        """The smallest interval holding every input displacement s D + (e - e') (+- n_in when
        it wraps) inside (-n_in, n_in) that output displacements D in [lo, hi] read; None if
        there is none. Closed forms: no cost in the band's or the window's size."""
        n, s = self.n_in, self.stride
        deltas = self.deltas()
        found_lo, found_hi = None, None
        for w in ((-n, 0, n) if self.wrap else (0,)):
            top = _max_at_most(lo, hi, s, deltas, n - 1 - w)
            if top is None or top + w < -(n - 1):
                continue
            bottom = -_max_at_most(-hi, -lo, s, _negate(deltas), n - 1 + w)
            found_hi = top + w if found_hi is None else max(found_hi, top + w)
            found_lo = bottom + w if found_lo is None else min(found_lo, bottom + w)
        return None if found_lo is None else (found_lo, found_hi)


def _described(n_in, n_out, stride, offset, wrap, taps, pairs) -> AxisWindow:
    return AxisWindow(n_in, n_out, stride, offset, wrap=wrap, taps=taps, pairs=pairs)


def clip_range(r: range, lo: int, hi: int) -> range:
    """The elements of `r` (a positive step) inside [lo, hi], as a range (possibly empty)."""
    if not len(r):
        return r
    step = r.step
    first = r.start if r.start >= lo else r.start + -(-(lo - r.start) // step) * step
    last = min(r[-1], hi)
    if first > last:
        return range(first, first)
    return range(first, first + ((last - first) // step + 1) * step, step)


def _negate(deltas):
    if isinstance(deltas, range):
        return range(-deltas[-1], -deltas[0] + 1, deltas.step) if len(deltas) else deltas
    return tuple(sorted(-d for d in deltas))


def _max_at_most(lo: int, hi: int, s: int, deltas, bound: int) -> int | None:
    """max{s D + d <= bound : D in [lo, hi], d in deltas}, or None."""
    if lo > hi or not len(deltas):
        return None
    if isinstance(deltas, range) and deltas.step == 1:
        a, b = deltas[0], deltas[-1]
        d_top = min(hi, (bound - a) // s)
        return None if d_top < lo else min(s * d_top + b, bound)
    best = None
    for d in deltas:
        d_top = min(hi, (bound - d) // s)
        if d_top >= lo:
            v = s * d_top + d
            best = v if best is None or v > best else best
    return best

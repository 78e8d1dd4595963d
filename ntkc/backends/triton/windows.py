"""Window shapes recognised by their structure (never by a layer's name): progressions of taps,
diagonal / product / listed terms, full sums (gap) and single-output reductions (flatten)."""
from __future__ import annotations

from dataclasses import dataclass

from ...plan.lower import Band
from ...rules.base import AxisWindow, Window
from .helpers import band_base_py


@dataclass(frozen=True)
class _Progression:
    start: int
    step: int
    count: int

    def range_args(self) -> str:
        if self.step == 1 and self.start == 0:
            return f"{self.count}"
        return f"{self.start}, {self.start + self.step * self.count}, {self.step}"


def _progression(values) -> _Progression | None:
    vals = sorted(values)
    if not vals or len(set(vals)) != len(vals):
        return None
    step = vals[1] - vals[0] if len(vals) > 1 else 1
    if step <= 0 or any(b - a != step for a, b in zip(vals, vals[1:])):
        return None
    return _Progression(vals[0], step, len(vals))


@dataclass(frozen=True)
class _Terms:
    """An axis' (e, e') terms as loops: 'diag' e = e' over a progression; 'product' e and e'
    over two progressions independently; 'list' anything else (unrolled one by one)."""

    kind: str
    a: _Progression | None = None
    b: _Progression | None = None
    pairs: tuple[tuple[int, int], ...] = ()

    @property
    def count(self) -> int:
        if self.kind == "diag":
            return self.a.count
        if self.kind == "product":
            return self.a.count * self.b.count
        return len(self.pairs)


def _classify(terms) -> _Terms:
    terms = tuple(tuple(t) for t in terms)
    if all(a == b for a, b in terms):
        p = _progression([a for a, _ in terms])
        if p is not None:
            return _Terms("diag", p, p)
    pa = _progression(sorted({a for a, _ in terms}))
    pb = _progression(sorted({b for _, b in terms}))
    if pa and pb and len(terms) == len(set(terms)) == pa.count * pb.count:
        return _Terms("product", pa, pb)
    return _Terms("list", pairs=terms)


def is_full_sum(w: Window | None) -> bool:
    """A window that adds every entry of every plane once (global average pooling)."""
    if w is None:
        return False

    def full(ax: AxisWindow) -> bool:
        n = ax.n_in
        return (ax.n_out == 1 and ax.offset == 0 and not ax.wrap and len(ax.terms) == n * n
                and set(ax.terms) == {(e, f) for e in range(n) for f in range(n)})

    return full(w.rows) and full(w.cols)


def _reduce_range(ax: AxisWindow) -> tuple[int, int] | None:
    """For a non-mixing axis with one output reading a contiguous run: input positions [lo, hi]."""
    if ax.n_out != 1 or ax.wrap:
        return None
    t = _classify(ax.terms)
    if t.kind != "diag" or t.a.step != 1:
        return None
    return ax.offset + t.a.start, ax.offset + t.a.start + t.a.count - 1


def _plus(k: int) -> str:
    """` + k`, ` - |k|` or nothing, to append a constant to an expression."""
    return f" + {k}" if k > 0 else (f" - {-k}" if k < 0 else "")


def _pow2(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


def band_size(band: Band) -> int:
    """Stored numbers for a band of displacement planes along one axis (no empty slots)."""
    return band_base_py(band.hi + 1, band.n) - band_base_py(band.lo, band.n)



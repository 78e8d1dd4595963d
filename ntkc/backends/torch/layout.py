"""How a demanded band of displacements is stored along one axis, and the gather tables that
turn a window map into index lookups.

An axis of size n holds either every (p, q) pair (`full`: state p * n + q) or the planes of a band
of displacements D in [lo, hi] (`band`: state (D - lo) * n + p, holding S[p, p - D], zero where
p - D falls outside the map). A full band is stored as `full`: it has no empty slots.
Tables index into the states plus one trailing zero slot (index `size`).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ...plan.lower import Band
from ...rules.base import AxisWindow


@dataclass(frozen=True)
class AxisLayout:
    n: int
    full: bool
    lo: int
    hi: int

    @staticmethod
    def of(band: Band) -> "AxisLayout":
        if band.full and band.n > 1:
            return AxisLayout(band.n, True, -(band.n - 1), band.n - 1)
        return AxisLayout(band.n, False, band.lo, band.hi)

    @property
    def size(self) -> int:
        return self.n * self.n if self.full else (self.hi - self.lo + 1) * self.n

    @cached_property
    def pq(self) -> tuple[np.ndarray, np.ndarray]:
        """The (p, q) position pair of every state; q may fall outside [0, n) in a band."""
        n = self.n
        if self.full:
            p, q = np.divmod(np.arange(n * n), n)
        else:
            d, p = np.divmod(np.arange(self.size), n)
            q = p - (d + self.lo)
        return p, q

    @cached_property
    def valid(self) -> np.ndarray:
        q = self.pq[1]
        return (q >= 0) & (q < self.n)

    def index(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """State index of position pairs (a, b) (both inside the map); -1 if not stored."""
        if self.full:
            return a * self.n + b
        d = a - b
        ok = (d >= self.lo) & (d <= self.hi)
        return np.where(ok, (d - self.lo) * self.n + a, -1)

    def diagonal(self) -> np.ndarray:
        """State index of (p, p) for every p (requires plane 0)."""
        p = np.arange(self.n)
        idx = self.index(p, p)
        assert (idx >= 0).all(), "plane 0 is not stored"
        return idx


def window_table(axis: AxisWindow, lin: AxisLayout, lout: AxisLayout) -> np.ndarray:
    """[lout.size, terms] indices into lin's states (lin.size = the zero slot)."""
    p, q = lout.pq
    terms = np.asarray(axis.terms, dtype=np.int64).reshape(-1, 2)
    a = axis.stride * p[:, None] + terms[None, :, 0] + axis.offset
    b = axis.stride * q[:, None] + terms[None, :, 1] + axis.offset
    n = axis.n_in
    if axis.wrap:
        inside = np.ones(a.shape, dtype=bool)
        a, b = a % n, b % n
    else:
        inside = (a >= 0) & (a < n) & (b >= 0) & (b < n)
    inside &= lout.valid[:, None]
    idx = lin.index(np.clip(a, 0, n - 1), np.clip(b, 0, n - 1))
    if (inside & (idx < 0)).any():
        raise AssertionError("window reads a displacement the plan did not demand")
    return np.where(inside, idx, lin.size)

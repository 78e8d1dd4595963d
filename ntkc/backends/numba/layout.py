"""Layouts of the numba backend: how displacement planes are stored and cut into tiles.

Storage between stages (`AxisStore`). Along one axis of size n, a band of displacements
[lo, hi] is stored plane after plane, each plane with only its real entries: plane d holds the
positions p with 0 <= p - d < n, i.e. n - |d| of them starting at p = max(0, d) (exact bounds,
no empty slots). A 2-D band is the outer product of its two axes: a [rows, cols] matrix per pair
in which plane (dy, dx) is one contiguous block of rows and columns.

Tiles inside a fused stage (`TileSet`). A tile is the unit of work of one item (one pair times
one tile): its rows are the real rows of one y-plane dy (exact bounds); its columns are either

- *compact*: the real columns of one x-plane dx (n - |dx| of them), or
- *packed* (the circulant packing of issue 14, along x only): all W columns of the map, where
  column c belongs to plane rx for c >= rx and to plane rx - W for c < rx (tile rx holds two
  planes exactly, with a seam at c = rx). Every row is then W long: a loop of fixed, full
  width that the compiler vectorises without a remainder, whatever the plane.

Along y, the outer loop, exact bounds already waste nothing and need no packing. Packing needs
the x-size and x-plane of every map in the stage to stay put (stride 1, same size); other stages
are compact. On a CPU, exact bounds alone waste no arithmetic either; the packing buys full
vectors (rows of 32 instead of 1..32) and half as many items.

Plane-mixing windows (`mix_axis`) are separable sparse maps from stored input states to output
states, one table per axis: output state (D, P) sums the input states its window terms read.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...plan.lower import Band
from ...rules.base import AxisWindow


@dataclass(frozen=True)
class AxisStore:
    """A band of displacement planes along one axis, stored with exact bounds."""

    n: int
    lo: int
    hi: int

    @classmethod
    def of(cls, band: Band) -> "AxisStore":
        return cls(band.n, band.lo, band.hi)

    def length(self, d: int) -> int:
        return self.n - abs(d)

    def base(self, d: int) -> int:
        """Index of the first entry of plane d."""
        return sum(self.n - abs(e) for e in range(self.lo, d))

    @property
    def size(self) -> int:
        return self.base(self.hi + 1)

    def contains(self, d: int) -> bool:
        return self.lo <= d <= self.hi

    def index(self, d: int, p: int) -> int:
        return self.base(d) + p - max(0, d)

    def states(self) -> list[tuple[int, int]]:
        """(d, p) of every stored entry, in storage order."""
        return [(d, p) for d in range(self.lo, self.hi + 1) for p in range(max(0, d), min(self.n, self.n + d))]


def plane0(store_y: AxisStore, store_x: AxisStore, values: np.ndarray) -> np.ndarray:
    """Plane (0, 0) of stored states [B, rows, cols] as maps [B, ny, nx]."""
    y0, x0 = store_y.base(0), store_x.base(0)
    return values[:, y0:y0 + store_y.n, x0:x0 + store_x.n]


@dataclass(frozen=True)
class TileSet:
    """The tiles of a fused stage: tile t covers y-plane `dy[t]` and x-plane(s) `x[t]` (dx, or rx
    when packed) of the stage's output map (`n_y` x `n_x`)."""

    n_y: int
    n_x: int
    packed: bool
    dy: tuple[int, ...]
    x: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.dy)

    def table(self) -> np.ndarray:
        """[tiles, 3]: dy, x (dx or rx), and the tile's own index (kept when rows are selected)."""
        n = len(self)
        return np.array([self.dy, self.x, range(n)], dtype=np.int64).T.reshape(n, 3).copy()

    def origin(self) -> int | None:
        """The tile holding plane (0, 0), if any."""
        for t, (dy, x) in enumerate(zip(self.dy, self.x)):
            if dy == 0 and x == 0:
                return t
        return None


def tiles_for(band_y: Band, band_x: Band, packed: bool, width: int | None = None) -> TileSet:
    """Tiles covering the demanded planes, plane (0, 0) first (the image program's phase 1).
    `width`: the packed row width (that of the stage's spatial maps; band_x.n by default)."""
    n = width if (packed and width) else band_x.n
    xs = sorted({d % n for d in range(band_x.lo, band_x.hi + 1)}) if packed else list(range(band_x.lo, band_x.hi + 1))
    pairs = [(dy, x) for dy in range(band_y.lo, band_y.hi + 1) for x in xs]
    pairs.sort(key=lambda p: (p != (0, 0),))  # stable: the origin first, the rest in order
    return TileSet(band_y.n, n, packed, tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))


def column_planes(tiles: TileSet, t: int, mult_x: int, n_x: int) -> list[tuple[int, int]]:
    """(plane, a-side position) of each column of tile t on a map of n_x columns whose plane is
    mult_x times the tile's."""
    x = tiles.x[t]
    if tiles.packed:
        assert mult_x == 1 and n_x == tiles.n_x
        return [((x if c >= x else x - n_x), c) for c in range(n_x)]
    d = mult_x * x
    return [(d, max(0, d) + c) for c in range(n_x - abs(d))]


def tile_columns(tiles: TileSet, store_x: AxisStore, mult_x: int, n_x: int, width: int) -> np.ndarray:
    """[tiles, width] index of each tile column's entry in the stored x-states; -1 where that
    entry is not stored (the partner plane of a packed tile outside the band) or past the row."""
    out = np.full((len(tiles), width), -1, dtype=np.int64)
    for t in range(len(tiles)):
        for c, (d, p) in enumerate(column_planes(tiles, t, mult_x, n_x)):
            if store_x.contains(d):
                out[t, c] = store_x.index(d, p)
    return out


def tile_rows(tiles: TileSet, store_y: AxisStore, mult_y: int) -> np.ndarray:
    """[tiles] index of each tile's first row in the stored y-states (-1 if not stored)."""
    out = np.full(len(tiles), -1, dtype=np.int64)
    for t, dy in enumerate(tiles.dy):
        d = mult_y * dy
        if store_y.contains(d):
            out[t] = store_y.base(d)
    return out


def mix_axis(axis: AxisWindow, store_in: AxisStore, store_out: AxisStore) -> tuple[np.ndarray, np.ndarray]:
    """A window's map along one axis as CSR (ptr, idx): output state k sums input states
    idx[ptr[k]:ptr[k+1]] (repeats count twice). Reads outside the map are zeros (skipped);
    circular windows wrap."""
    n, s, off = axis.n_in, axis.stride, axis.offset
    ptr = [0]
    idx: list[int] = []
    for d, p in store_out.states():
        q = p - d
        for e, f in axis.terms:
            i, j = s * p + e + off, s * q + f + off
            if axis.wrap:
                i, j = i % n, j % n
            elif not (0 <= i < n and 0 <= j < n):
                continue
            if not store_in.contains(i - j):
                raise AssertionError(f"window reads plane {i - j}, outside the stored band [{store_in.lo}, {store_in.hi}]")
            idx.append(store_in.index(i - j, i))
        ptr.append(len(idx))
    return np.array(ptr, dtype=np.int64), np.array(idx, dtype=np.int64)


def readout_weights(axis: AxisWindow, store_in: AxisStore) -> np.ndarray:
    """For a window with a single output state (n_out = 1): the count of each input state."""
    out_store = AxisStore(axis.n_out, 0, 0)
    ptr, idx = mix_axis(axis, store_in, out_store)
    assert len(ptr) == 2
    return np.bincount(idx, minlength=store_in.size).astype(np.float64)


def is_readout(axis: AxisWindow) -> bool:
    """An axis window with one output position (so one output state: plane 0 of a 1-wide map)."""
    return axis.n_out == 1

"""The pair-tiling engine: a Gram matrix as tiles of image pairs, run through a `Backend`.

A matrix is cut into tiles of `TILE` x `TILE` images. Each tile is the unit of work both in
memory (`gram`) and in a Gram store: its pairs go to the backend in batches of a fixed size and
order (so the same tile always gives the same bits), a symmetric matrix computes each unordered
pair once (the upper triangle of its diagonal tiles), and variance maps are computed once per
tile of images and cached within a memory budget. Exact self pairs (the same image twice, found
by fingerprint) are flagged to the backend, which makes their diagonal exact.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Callable

import numpy as np
import torch

from ..errors import InputError
from .sizes import DEFAULT_MEMORY, TILE, tile_size  # noqa: F401  (re-exported: the engine's sizes)


def fingerprints(x: torch.Tensor) -> list[bytes]:
    """A hash per image: equal images get equal fingerprints (to find exact self pairs)."""
    flat = x.detach().reshape(x.shape[0], -1).cpu().contiguous().numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat]




def gram(backend, x1: torch.Tensor, x2: torch.Tensor | None, memory: int,
         progress: Callable[[int, int], None] | None = None, fuse: bool = False, out=None,
         tile: int = TILE):
    """NNGP and NTK [n1, n2], tile by tile, in pair batches that fit `memory` bytes.

    Variance maps are computed once per tile of images and kept in a cache bounded by a quarter
    of `memory`, so working memory does not grow with the number of images; `out=(nngp, ntk)` (numpy arrays, e.g. np.memmap)
    receives the results instead of new tensors. With `x2` None each unordered pair is computed
    once. Each tile is computed by `compute_tile`, the same unit a Gram store saves, so a matrix
    assembled from a store is bitwise the one computed here with the same tile size and batch.
    """
    try:
        tile = tile_size(tile)
    except ValueError as err:
        raise InputError(str(err), "the tile size is a number of images per tile side, e.g. 256") from None
    symmetric = x2 is None
    xb = x1 if symmetric else x2
    n1, n2 = x1.shape[0], xb.shape[0]
    batch = pair_batch(backend, memory)
    dev = x1.device
    if out is None:
        nngp = torch.empty(n1, n2, dtype=x1.dtype, device=dev)
        ntk = torch.empty(n1, n2, dtype=x1.dtype, device=dev)
    else:
        nngp, ntk = out
        if tuple(nngp.shape) != (n1, n2) or tuple(ntk.shape) != (n1, n2):
            raise InputError(f"out arrays must both have shape {(n1, n2)}, got {tuple(nngp.shape)} and {tuple(ntk.shape)}")
    total = n1 * (n1 + 1) // 2 if symmetric else n1 * n2
    done = 0
    if progress is not None:
        progress(0, total)  # the start, before any work: a progress display measures rates from here
    cache = MapCache(memory // 4)  # in a symmetric matrix, column tile b's maps are row tile b's
    for a0 in range(0, n1, tile):
        a1 = min(n1, a0 + tile)
        va = cache.get(("rows", a0), lambda: variance_maps(backend, x1[a0:a1], memory))
        for b0 in range(a0 if symmetric else 0, n2, tile):
            b1 = min(n2, b0 + tile)
            diagonal = symmetric and b0 == a0
            side = "rows" if symmetric else "cols"
            vb = cache.get((side, b0), lambda: variance_maps(backend, xb[b0:b1], memory))

            def tick(count: int, base=done) -> None:
                if progress is not None:
                    progress(base + count, total)

            s, t = compute_tile(backend, x1[a0:a1], xb[b0:b1], va, vb, diagonal, batch, fuse, tick)
            done += tile_pairs(a1 - a0, b1 - b0, diagonal)
            _put(nngp, a0, b0, s)
            _put(ntk, a0, b0, t)
            if symmetric and not diagonal:
                _put(nngp, b0, a0, s.T)
                _put(ntk, b0, a0, t.T)
    return nngp, ntk, total


def tile_pairs(rows: int, cols: int, diagonal: bool) -> int:
    """Pairs a tile computes: all of them, or the upper triangle of a diagonal tile."""
    return rows * (rows + 1) // 2 if diagonal else rows * cols


def compute_tile(backend, xa: torch.Tensor, xb: torch.Tensor, va: list[torch.Tensor], vb: list[torch.Tensor],
                 diagonal: bool, batch: int, fuse: bool = False,
                 progress: Callable[[int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """NNGP and NTK of one tile, [len(xa), len(xb)], as tensors on the images' device.

    `va`, `vb` are the variance maps of `xa`, `xb`. A `diagonal` tile (xa is xb, in a symmetric
    Gram matrix) computes its upper triangle and mirrors it. The pairs go to the backend in
    batches of `batch`, in a fixed order, so the same tile always gives the same bits: each
    batch as indices into the tile's images and maps (`Backend.pairs`), never as copies.
    """
    ra, rb = xa.shape[0], xb.shape[0]
    dev = xa.device
    ida, idb = _image_ids(fingerprints(xa), None if diagonal else fingerprints(xb))
    if diagonal:
        ii, jj = np.triu_indices(ra)
    else:
        ii, jj = (g.reshape(-1) for g in np.meshgrid(np.arange(ra), np.arange(rb), indexing="ij"))
    s_tile = torch.zeros(ra, rb, dtype=xa.dtype, device=dev)
    t_tile = torch.zeros(ra, rb, dtype=xa.dtype, device=dev)
    for start in range(0, len(ii), batch):
        bi, bj = ii[start:start + batch], jj[start:start + batch]
        count = len(bi)
        if fuse and count < batch:  # a fused (compiled) form keeps one shape: pad, then drop
            bi = np.concatenate([bi, np.repeat(bi[:1], batch - count)])
            bj = np.concatenate([bj, np.repeat(bj[:1], batch - count)])
        i, j = torch.as_tensor(bi, device=dev), torch.as_tensor(bj, device=dev)
        same = torch.as_tensor(ida[bi] == idb[bj], device=dev)
        s, t = backend.pairs(xa, xb, va, vb, i, j, same, fused=fuse)
        r, c = i[:count], j[:count]
        s_tile[r, c] = s[:count]
        t_tile[r, c] = t[:count]
        if progress is not None:
            progress(start + count)
    if not (bool(torch.isfinite(s_tile).all()) and bool(torch.isfinite(t_tile).all())):
        # The images were checked finite: the network's own arithmetic overflowed. Never hand
        # back (or store) a kernel of infs and NaNs.
        raise InputError(f"the kernels overflowed {str(xa.dtype).replace('torch.', '')}: some entries are inf "
                         "or NaN although the images are finite",
                         "compute in float64 (--dtype float64, dtype=torch.float64), or use smaller weights "
                         "(w_std, b_std) or images of a smaller scale")
    if diagonal:
        lower = torch.tril_indices(ra, ra, -1, device=dev)
        s_tile[lower[0], lower[1]] = s_tile[lower[1], lower[0]]
        t_tile[lower[0], lower[1]] = t_tile[lower[1], lower[0]]
    return s_tile, t_tile


def _image_ids(fa: list[bytes], fb: list[bytes] | None) -> tuple[np.ndarray, np.ndarray]:
    """One integer per image, equal exactly when the fingerprints are (fb None: the columns are
    the rows): a pair is a self pair when its two ids are equal, found for a whole batch at once."""
    index: dict[bytes, int] = {}
    ida = np.array([index.setdefault(f, len(index)) for f in fa], dtype=np.int64)
    idb = ida if fb is None else np.array([index.setdefault(f, len(index)) for f in fb], dtype=np.int64)
    return ida, idb


def _put(dest, r0: int, c0: int, block: torch.Tensor) -> None:
    r1, c1 = r0 + block.shape[0], c0 + block.shape[1]
    if isinstance(dest, torch.Tensor):
        dest[r0:r1, c0:c1] = block
    else:
        dest[r0:r1, c0:c1] = block.detach().cpu().numpy()


def pair_batch(backend, memory: int) -> int:
    """Pairs per batch: what the backend prefers, within the memory budget."""
    batch = max(1, int(memory // max(1, backend.bytes_per_pair())))
    return min(batch, backend.preferred_batch())


class MapCache:
    """Variance maps per key (e.g. a tile index), least recently used out first, within a byte
    budget (the two newest entries are always kept: a tile needs its row's and column's maps)."""

    def __init__(self, budget: int):
        self.budget = budget
        self.items: OrderedDict = OrderedDict()

    def get(self, key, make: Callable[[], list[torch.Tensor]]) -> list[torch.Tensor]:
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        maps = make()
        self.items[key] = maps
        while len(self.items) > 2 and sum(_nbytes(m) for m in self.items.values()) > self.budget:
            self.items.popitem(last=False)
        return maps


def _nbytes(maps: list[torch.Tensor]) -> int:
    return sum(m.numel() * m.element_size() for m in maps)


def variance_maps(backend, x: torch.Tensor, memory: int) -> list[torch.Tensor]:
    """The variance maps of images `x`, computed in batches that fit `memory` bytes."""
    batch = max(1, int(memory // max(1, backend.bytes_per_pair())))
    parts = [backend.variance_maps(x[i:i + batch]) for i in range(0, x.shape[0], batch)]
    if not parts or not parts[0]:
        return []
    return [torch.cat([p[k] for p in parts]) for k in range(len(parts[0]))]

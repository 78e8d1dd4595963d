"""The unit of work of a Gram store, the same for every runner (in process or Ray): a run of
tiles on one tile row, computed with the settings the store records.

A unit's variance maps for the row's images are computed once and reused for every tile of the
unit; column maps are kept in a small cache (in a symmetric block, column tile j's maps are row
tile j's). Each tile is written as soon as it is done, so an interruption loses at most the
tiles in flight.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..engine.tiling import MapCache, compute_tile, variance_maps
from ..util.precision import torch_dtype
from .gramstore import BLOCKS, GramStore, Tile

TILES_PER_UNIT = 4


@dataclass
class Settings:
    """How tiles are computed; stored in the manifest so that a resumed run computes alike."""

    backend: str
    dtype: str
    batch: int
    fuse: bool
    memory: int

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch_dtype(self.dtype)


def units(tiles: list[Tile], per_unit: int = TILES_PER_UNIT) -> list[list[Tile]]:
    """Group tiles (in row order) into runs of at most `per_unit` tiles on one tile row."""
    out: list[list[Tile]] = []
    for t in tiles:
        if out and out[-1][0].block == t.block and out[-1][0].i == t.i and len(out[-1]) < per_unit:
            out[-1].append(t)
        else:
            out.append([t])
    return out


def run_unit(store: GramStore, backend, images: dict[str, torch.Tensor], unit: list[Tile],
             settings: Settings, cache: MapCache | None = None,
             tick: Callable[[int], None] | None = None) -> int:
    """Compute the tiles of one unit that are not yet stored; write each. Returns pairs done."""
    cache = cache or MapCache(settings.memory // 4)
    rows_side, cols_side, _ = BLOCKS[unit[0].block]
    done = 0
    for tile in unit:
        if store.read_tile(tile) is not None:  # a retried task, or another worker, stored it
            continue
        xa = images[rows_side][tile.r0:tile.r1]
        xb = images[cols_side][tile.c0:tile.c1]
        va = cache.get((rows_side, tile.i), lambda: variance_maps(backend, xa, settings.memory))
        vb = cache.get((cols_side, tile.j), lambda: variance_maps(backend, xb, settings.memory))
        s, k = compute_tile(backend, xa, xb, va, vb, tile.diagonal, settings.batch, settings.fuse)
        store.write_tile(tile, s.cpu().numpy(), k.cpu().numpy())
        done += tile.pairs
        if tick is not None:
            tick(tile.pairs)
    return done

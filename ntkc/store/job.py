"""Filling a Gram store: the missing tiles, grouped into units of work, run in this process or as
Ray tasks, then assembled into memory-mappable matrices.

A unit is a run of tiles on one tile row of one block: its variance maps for the row's images
are computed once and reused for every tile of the unit, and column maps are kept in a small
cache (in a symmetric block, column tile j's maps are row tile j's). Each tile is written as
soon as it is done, so an interruption loses at most the tiles in flight.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..engine.kernel import DEFAULT_MEMORY, MapCache, compute_tile, variance_maps
from .gramstore import BLOCKS, GramStore, StoreError, Tile, make_manifest

TILE = 256  # images per tile side in a store: 32k pairs per off-diagonal tile
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
        return torch.float64 if self.dtype == "float64" else torch.float32


def units(tiles: list[Tile], per_unit: int = TILES_PER_UNIT) -> list[list[Tile]]:
    """Group tiles (in row order) into runs of at most `per_unit` tiles on one tile row."""
    out: list[list[Tile]] = []
    for t in tiles:
        if out and out[-1][0].block == t.block and out[-1][0].i == t.i and len(out[-1]) < per_unit:
            out[-1].append(t)
        else:
            out.append([t])
    return out


def run_unit(store: GramStore, executor, images: dict[str, torch.Tensor], unit: list[Tile],
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
        va = cache.get((rows_side, tile.i), lambda: variance_maps(executor, xa, settings.memory))
        vb = cache.get((cols_side, tile.j), lambda: variance_maps(executor, xb, settings.memory))
        s, k = compute_tile(executor, xa, xb, va, vb, tile.diagonal, settings.batch, settings.fuse)
        store.write_tile(tile, s.cpu().numpy(), k.cpu().numpy())
        done += tile.pairs
        if tick is not None:
            tick(tile.pairs)
    return done


def open_store(root, kernel, x_train, x_test, *, description: str, y_train=None, y_test=None,
               dtype: str = "float32", backend: str = "auto", device=None, memory: int | None = None,
               tile: int = TILE, fuse: bool | None = None, test_test: bool = False) -> tuple[GramStore, Settings]:
    """Create or resume the store for this computation (refusing one made for another)."""
    from ..engine.kernel import _check_dtype, pair_batch

    memory = memory or DEFAULT_MEMORY
    tdtype = _check_dtype(dtype)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    executor = kernel.executor(backend, tdtype, dev)
    if fuse is None:
        n1, n2 = len(x_train), 0 if x_test is None else len(x_test)
        fuse = kernel.fuse_by_default(executor, dev, n1 * (n1 + 1) // 2 + n1 * n2)
    settings = Settings(executor.name, "float64" if tdtype == torch.float64 else "float32",
                        pair_batch(executor, memory), bool(fuse), memory)
    blocks = ("train_train",) + (() if x_test is None else ("test_train",) + (("test_test",) if test_test else ()))
    manifest = make_manifest(kernel.network.source, kernel.network.filename, x_train, x_test,
                             description=description, dtype=settings.dtype, backend=settings.backend,
                             tile=tile, batch=settings.batch, fuse=settings.fuse, blocks=blocks)
    labels = None
    if y_train is not None:
        labels = {"y_train": np.asarray(y_train), "y_test": np.asarray(y_test if y_test is not None else [])}
    store = GramStore.create_or_resume(root, manifest, labels)
    # Resuming: compute as the store was started (batch and fusion decide the last bits), even
    # if this run was given another memory budget.
    settings.batch, settings.fuse = int(store.manifest["batch"]), bool(store.manifest["fuse"])
    return store, settings


def fill(store: GramStore, kernel, x_train, x_test, settings: Settings, *, device=None,
         executor: str = "local", address: str | None = None, retries: int = 3,
         progress: Callable[[int, int], None] | None = None, log: Callable[[str], None] | None = None,
         verify: bool = False) -> dict:
    """Compute every missing tile of `store`, then assemble its matrices.

    With `verify`, every stored tile and assembled matrix is checked first (`GramStore.verify`),
    so that damage done after a store was finished is found and repaired too.

    `executor` is "local" (this process) or "ray" (`address` of a running cluster, or a local
    one started for the run). Tiles found corrupt while assembling are computed again. Returns
    counts: tiles computed, tiles found already stored, pairs, seconds.
    """
    log = log or (lambda msg: None)
    if verify:
        problems = store.verify()
        for msg in problems:
            log(msg)
        log(f"verified {store.root}: {len(problems) or 'no'} problem(s) found")
    images = {"train": _tensor(x_train, settings, device)}
    if x_test is not None:
        images["test"] = _tensor(x_test, settings, device)
    total = sum(t.pairs for t in store.all_tiles())
    started = time.perf_counter()
    stats = {"tiles_computed": 0, "tiles_stored_before": 0, "pairs": total}
    first = True
    while True:
        todo = store.missing()
        if first:
            stats["tiles_stored_before"] = len(store.all_tiles()) - len(todo)
            first = False
        if todo:
            done0 = total - sum(t.pairs for t in todo)
            if executor == "local":
                _fill_local(store, kernel, images, todo, settings, done0, total, progress)
            elif executor == "ray":
                from .ray_runner import fill_ray
                fill_ray(store, kernel, images, todo, settings, done0, total, progress, address, retries, log)
            else:
                raise StoreError(f"unknown executor {executor!r}", hint="use 'local' or 'ray'")
            stats["tiles_computed"] += len(todo)
        bad = store.assemble()
        for msg in store.repaired:
            log(msg)
        store.repaired.clear()
        if not bad:
            break
    stats["seconds"] = time.perf_counter() - started
    return stats


def _tensor(x, settings: Settings, device) -> torch.Tensor:
    t = torch.as_tensor(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    t = t.to(settings.torch_dtype)
    return t.to(device) if device is not None else t


def _fill_local(store, kernel, images, todo, settings, done0, total, progress) -> None:
    dev = images["train"].device
    executor = kernel.executor(settings.backend, settings.torch_dtype, dev)
    cache = MapCache(settings.memory // 4)
    done = [done0]

    def tick(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], total)

    if progress is not None:
        progress(done0, total)
    for unit in units(todo):
        run_unit(store, executor, images, unit, settings, cache, tick)


def gram_store(kernel, root, x_train, x_test=None, *, y_train=None, y_test=None, dtype: str = "float32",
               backend: str = "auto", device=None, executor: str = "local", address: str | None = None,
               memory: int | None = None, tile: int = TILE, test_test: bool = False,
               description: str = "", progress: Callable[[int, int], None] | None = None,
               log: Callable[[str], None] | None = None, warn: Callable[[str], None] | None = None,
               verify: bool = False) -> GramStore:
    """Compute (or resume) the Gram matrices of `kernel` on these images in the store `root`.

    Returns the finished store; `store.matrices("train_train")` and `("test_train")` give the
    (NNGP, NTK) matrices memory-mapped, and `store.last_run` the counts of this run (see `fill`).
    Raises StoreError for a store made for another computation, or when the disk fills (the
    finished tiles stay; call again to resume). `log` receives progress messages, `warn`
    (default: `log`, else print) warnings such as changed library versions.
    """
    store, settings = open_store(root, kernel, x_train, x_test, description=description, y_train=y_train,
                                 y_test=y_test, dtype=dtype, backend=backend, device=device, memory=memory,
                                 tile=tile, test_test=test_test)
    for w in store.warnings:
        (warn or log or print)(w)
    if log is not None:
        log(f"store {store.root}: {store.status()} already done")
    store.last_run = fill(store, kernel, x_train, x_test, settings, device=device, executor=executor,
                          address=address, progress=progress, log=log, verify=verify)
    return store

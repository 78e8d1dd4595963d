"""Filling a Gram store: open (or resume) the store for a computation, run its missing units of
work in this process (`local`) or as Ray tasks (`ray_runner`), then assemble the matrices."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from ..engine.sizes import tile_size
from ..engine.tiling import TILE, pair_batch
from ..errors import InputError
from ..util.precision import precision_name
from . import local, ray_runner
from .gramstore import GramStore, StoreError, make_manifest
from .work import Settings


def open_store(root, kernel, x_train, x_test, *, description: str, y_train=None, y_test=None,
               dtype: str = "float32", backend: str = "auto", device=None, memory: int | None = None,
               tile: int = TILE, fuse: bool | None = None, test_test: bool = False) -> tuple[GramStore, Settings]:
    """Create or resume the store for this computation (refusing one made for another). The
    images, labels, tile size and memory are checked before anything is written."""
    precision = precision_name(dtype)
    memory = kernel.check_memory(precision, memory)
    try:
        tile = tile_size(tile)
    except ValueError as err:
        raise InputError(str(err), "the tile size is a number of images per tile side, e.g. 256") from None
    kernel.check_images(x_train, "x_train", precision, device, convert=False)
    if x_test is not None:
        kernel.check_images(x_test, "x_test", precision, device, convert=False)
    for name, y, x in (("y_train", y_train, x_train), ("y_test", y_test, x_test)):
        if y is not None and x is not None and len(y) != len(x):
            raise InputError(f"{name} has {len(y)} labels for {len(x)} images", "give one label per image")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    n1, n2 = len(x_train), 0 if x_test is None else len(x_test)
    pairs = n1 * (n1 + 1) // 2 + n1 * n2 + (n2 * (n2 + 1) // 2 if test_test else 0)
    # "auto" decides by the work of the whole store, not of what is left: a resumed store
    # resolves to the backend of its first run (and a store refuses a backend change)
    chosen = kernel.backend(backend, precision, dev, pairs=pairs, images=n1 + n2)
    if fuse is None:
        fuse = chosen.fusion_pays(n1 * (n1 + 1) // 2 + n1 * n2)
    settings = Settings(chosen.name, precision, pair_batch(chosen, memory), bool(fuse), memory)
    blocks = ("train_train",) + (() if x_test is None else ("test_train",) + (("test_test",) if test_test else ()))
    manifest = make_manifest(kernel.arch.source, kernel.arch.filename, x_train, x_test,
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
    images = {"train": kernel.check_images(x_train, "x_train", settings.dtype, device)}
    if x_test is not None:
        images["test"] = kernel.check_images(x_test, "x_test", settings.dtype, device)
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
                local.fill_local(store, kernel, images, todo, settings, done0, total, progress)
            elif executor == "ray":
                ray_runner.fill_ray(store, kernel, images, todo, settings, done0, total, progress, address, retries, log)
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
    def opened():
        return open_store(root, kernel, x_train, x_test, description=description, y_train=y_train,
                          y_test=y_test, dtype=dtype, backend=backend, device=device, memory=memory,
                          tile=tile, test_test=test_test)

    store, settings = opened()
    # One process fills a store at a time: a second waits for the lock, then finds the tiles done.
    with store.lock(log or warn or print):
        if store.on_disk_id() != store.manifest["store_id"]:
            # Another process made this folder's manifest at the same moment: resume that one
            # (refused, as any resume, if it is for another computation).
            store, settings = opened()
        for w in store.warnings:
            (warn or log or print)(w)
        if log is not None:
            log(f"store {store.root}: {store.status()} already done")
        store.last_run = fill(store, kernel, x_train, x_test, settings, device=device, executor=executor,
                              address=address, progress=progress, log=log, verify=verify)
    return store

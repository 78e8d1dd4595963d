"""The local runner of a Gram store: every missing unit computed in this process, in order."""
from __future__ import annotations

from ..engine.tiling import MapCache
from .work import run_unit, units


def fill_local(store, kernel, images, todo, settings, done0, total, progress) -> None:
    """Compute the units of `todo` here; `progress(done, total)` after each tile."""
    dev = images["train"].device
    backend = kernel.backend(settings.backend, settings.torch_dtype, dev)
    cache = MapCache(settings.memory // 4)
    done = [done0]

    def tick(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], total)

    if progress is not None:
        progress(done0, total)
    for unit in units(todo):
        run_unit(store, backend, images, unit, settings, cache, tick)

"""The numba backend: a Plan's programs as fused CPU loop nests, generated and compiled with numba.

One generated function per stage of the pair program (and of the image program, for the variance
maps): all conv, activation and residual steps of a stage run on one tile of one pair in a few
KiB of scratch, the input covariance formed on the fly, `gap` and other readouts as per-tile
partial sums; plane-mixing layers (pooling, lap, circular convs) run in one compiled
table-driven kernel between stages. Activation math is the rule's own, traced and rendered
through the shared `ntkc.backends.render` in the numba dialect, so user rules need no code
here. No fast-math, so exact cancellations (a self pair's relu determinant) stay exact.

- `kernels.py`: the programs as kernel records (sources, steps, sinks, tiles, tables): data;
- `writer.py`, `emit_sources.py`, `emit_steps.py`: the text of one fused kernel;
- `codegen.py`: the module (header, typed constants, helpers, kernels);
- `layout.py`: stored planes, tiles (packed or exact columns), the mixing tables;
- `render.py`, `mathlib.py`: the numba dialect of the ops vocabulary and its math helpers;
- `mix.py`: the plane-mixing kernel; `codecache.py`: generated modules on disk;
- `backend.py`: `NumbaBackend`, the `Backend` the engine runs, and its thread pool.

`create(plan, dtype, device)` is what `ntkc.backends.create("numba", ...)` calls: the numba
backend, or, where it cannot be had here (numba missing, a generation or compile error), the
torch backend with a one-line warning. Importing this package imports neither numba nor torch.
"""
from __future__ import annotations

import warnings


def create(plan, dtype, device):
    """A `NumbaBackend`, or the torch backend (with a one-line RuntimeWarning) where the fused
    kernels cannot be generated or compiled here."""
    try:
        from .backend import NumbaBackend

        return NumbaBackend(plan, dtype, device)
    except Exception as err:  # no numba, a generator gap, a compile error: never lose the run
        first = (str(err).strip().splitlines() or [""])[0][:200]
        warnings.warn(f"numba backend unavailable ({type(err).__name__}: {first}); using the torch backend",
                      RuntimeWarning, stacklevel=3)
        from ..torch import TorchBackend

        return TorchBackend(plan, dtype, device)


def __getattr__(name):  # the backend imports numba and torch: load it when it is asked for
    if name == "NumbaBackend":
        from .backend import NumbaBackend
        return NumbaBackend
    raise AttributeError(name)


__all__ = ["NumbaBackend", "create"]

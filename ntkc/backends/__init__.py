"""Backends: executors of a Plan behind one interface (`base.Backend`), one folder each.

- `torch/`: the reference executor, on CPU or GPU, with torch tensors;
- `triton/`: generated Triton kernels on CUDA GPUs (and in Triton's interpreter, for tests);
- `numba/`: generated, fused CPU kernels compiled with numba.

`render.py` is the expression renderer the generating backends share, `cache.py` their folder
of generated code. `resolve(name, device, work)` turns a user's `backend=` ("auto" or a name)
into an available backend's name, `create(name, plan, dtype, device)` builds it. A backend
package is imported only when it is created, so a missing optional dependency costs nothing
until it is asked for.

What "auto" picks: Triton for CUDA tensors (when triton is installed), else the torch backend;
on a CPU, the numba backend for a run whose work (`run_work`: pairs times the pair program's
flops, plus images times the image program's) is at least `NUMBA_WORK`, where compiling the
fused kernels (a few seconds the first time, under a second from the disk cache) is repaid,
and the torch backend for smaller runs. The rule depends only on the plan and the sizes, so a
resumed Gram store resolves to the backend of its first run.
"""
from __future__ import annotations

import importlib
import importlib.util
import os

from ..errors import BackendError

# name -> (module, class)
BACKENDS = {
    "torch": ("ntkc.backends.torch", "TorchBackend"),
    "triton": ("ntkc.backends.triton", "TritonBackend"),
    "numba": ("ntkc.backends.numba", "create"),  # falls back to torch, with a warning, where it cannot compile
}
# Work (in `Program.flops` units) from which "auto" picks the numba backend on a CPU: about the
# torch backend's time for a first compile of the fused kernels (~5 s at its ~4e9 counted
# flops/s on 2 cores), so only runs that repay compiling pay for it.
NUMBA_WORK = 2e10


def names() -> tuple[str, ...]:
    return tuple(BACKENDS)


def resolve(name: str, device, work: float | None = None) -> str:
    """The backend to use for `name` ("auto" or a backend's name) on a torch `device`, for a run
    of `work` (`run_work`; None: unknown, a small run).

    "auto" picks the generated Triton kernels for CUDA devices when triton is installed; on a CPU
    the numba kernels for work of at least `NUMBA_WORK` when numba is installed; else the torch
    backend. A named backend that cannot run here raises BackendError, saying why.
    """
    if name != "auto" and name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}", f"use 'auto' or one of {', '.join(repr(n) for n in BACKENDS)}")
    if name == "auto":
        if device.type == "cuda":
            return "triton" if _triton_problem(device) is None else "torch"
        if device.type == "cpu" and work is not None and work >= NUMBA_WORK and _numba_problem(device) is None:
            return "numba"
        return "torch"
    problem = {"triton": _triton_problem, "numba": _numba_problem}.get(name, lambda d: None)(device)
    if problem is not None:
        raise BackendError(*problem)
    return name


def run_work(plan, pairs: int, images: int = 0) -> float:
    """The work of a run of `pairs` pairs over `images` images, in `Program.flops` units."""
    return float(pairs) * plan.pair.flops() + float(images) * plan.image.flops()


def create(name: str, plan, dtype, device):
    """A backend `name` (as `resolve` returns it) for `plan` in `dtype` on `device`."""
    module, cls = BACKENDS[name]
    return getattr(importlib.import_module(module), cls)(plan, dtype, device)


def _numba_problem(device) -> tuple[str, str] | None:
    """(message, hint) when the numba backend cannot run on `device`, else None. A numba that is
    installed but cannot compile is found later: the backend then falls back with a warning."""
    if device.type != "cpu":
        return (f"the numba backend runs on the CPU (got tensors on {device})",
                "use backend='auto', 'triton' or 'torch' for GPU tensors, or move the inputs to the CPU")
    if importlib.util.find_spec("numba") is None:
        return ("the numba backend needs the `numba` package", "pip install numba")
    return None


def _triton_problem(device) -> tuple[str, str] | None:
    """(message, hint) when the triton backend cannot run on `device`, else None."""
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return ("the triton backend needs a CUDA GPU (got tensors on the CPU)",
                "use backend='torch' on a CPU, move the inputs to a GPU, or set TRITON_INTERPRET=1 "
                "(slow; for tests) to run the generated kernels in Triton's interpreter")
    try:
        importlib.import_module("triton")
    except Exception:
        return ("the triton backend needs the `triton` package", "pip install triton")
    return None

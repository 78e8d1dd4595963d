"""Backends: executors of a Plan behind one interface (`base.Backend`), one folder each.

- `torch/`: the reference executor, on CPU or GPU, with torch tensors;
- `triton/`: generated Triton kernels on CUDA GPUs (and in Triton's interpreter, for tests).

`resolve(name, device)` turns a user's `backend=` ("auto" or a name) into an available
backend's name, `create(name, plan, dtype, device)` builds it. A backend package is imported
only when it is created, so a missing optional dependency costs nothing until it is asked for.
"""
from __future__ import annotations

import importlib
import os

from ..errors import BackendError

# name -> (module, class)
BACKENDS = {
    "torch": ("ntkc.backends.torch", "TorchBackend"),
    "triton": ("ntkc.backends.triton", "TritonBackend"),
}


def names() -> tuple[str, ...]:
    return tuple(BACKENDS)


def resolve(name: str, device) -> str:
    """The backend to use for `name` ("auto" or a backend's name) on a torch `device`.

    "auto" picks the generated Triton kernels for CUDA devices when triton is installed, and the
    torch backend otherwise. A named backend that cannot run here raises BackendError, saying why.
    """
    if name != "auto" and name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}", f"use 'auto' or one of {', '.join(repr(n) for n in BACKENDS)}")
    if name == "auto":
        return "triton" if device.type == "cuda" and _triton_problem(device) is None else "torch"
    problem = _triton_problem(device) if name == "triton" else None
    if problem is not None:
        raise BackendError(*problem)
    return name


def create(name: str, plan, dtype, device):
    """A backend `name` (as `resolve` returns it) for `plan` in `dtype` on `device`."""
    module, cls = BACKENDS[name]
    return getattr(importlib.import_module(module), cls)(plan, dtype, device)


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

"""ntkc: exact infinite-width CNN kernels (NNGP and CNTK) compiled from `.arch` descriptions.

    import ntkc
    k = ntkc.compile("examples/cntk_v_d3.arch")     # a path or .arch source text
    r = k(x_train)                                   # NCHW images; r.nngp, r.ntk are [n, n]
    r = k(x_test, x_train)                           # [n_test, n_train]
"""
from __future__ import annotations

from pathlib import Path

from .errors import ArchError, BackendError, InputError, NtkcError, RuleError

__version__ = "0.1.0"


def compile(spec: "str | Path", filename: str | None = None):  # noqa: A001 (the natural name)
    """Compile a `.arch` file (a path) or `.arch` source text into a `CompiledKernel`."""
    from .archspec.network import load
    from .compiler.plan import lower
    from .runtime.kernel import CompiledKernel

    return CompiledKernel(lower(load(spec, filename)))


__all__ = ["compile", "ArchError", "BackendError", "InputError", "NtkcError", "RuleError", "__version__"]

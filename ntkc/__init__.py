"""ntkc: exact infinite-width CNN kernels (NNGP and CNTK) compiled from `.arch` descriptions.

    import ntkc
    k = ntkc.compile("examples/cntk_v_d3.arch")     # a path or .arch source text
    r = k(x_train)                                   # NCHW images; r.nngp, r.ntk are [n, n]
    r = k(x_test, x_train)                           # [n_test, n_train]
"""
from __future__ import annotations

from pathlib import Path

from .errors import ArchError, BackendError, InputError, NtkcError, RuleError

from ._version import __version__


def compile(spec: "str | Path | bytes", filename: str | None = None, *, user_rules: bool = True):  # noqa: A001
    """Compile a `.arch` file (a path) or `.arch` source text into a `CompiledKernel`.

    A `use "rules.py"` line imports that Python module, running its code; pass
    `user_rules=False` to refuse such lines (for files from elsewhere)."""
    from .engine.kernel import compile_kernel

    return compile_kernel(spec, filename, user_rules=user_rules)


def gram_store(kernel, store, x_train, x_test=None, **options):
    """Compute, or resume, `kernel`'s Gram matrices of these images in the store folder `store`.

    Tiles are written atomically with checksums, so an interrupted call loses at most the
    tiles in flight and calling it again finishes the rest, bitwise as if never interrupted.
    Returns the store: `store.matrices("train_train")` / `("test_train")` are memory-mapped
    (NNGP, NTK). Options: y_train, y_test, dtype, backend, device, executor ("local" or "ray"),
    address, memory, tile, test_test, description, progress, log; see
    `ntkc.store.job.gram_store`.
    """
    from .store.job import gram_store as _gram_store

    return _gram_store(kernel, store, x_train, x_test, **options)


def load_rules(spec: "str | Path", base_dir: "str | Path | None" = None):
    """Import a module of user-defined layer rules (a .py path or a dotted module name) so that
    `.arch` files can name its layers; see `ntkc.rules` and docs/rules.md."""
    from .rules.loader import load_rules as _load

    return _load(spec, base_dir)


__all__ = ["compile", "gram_store", "load_rules", "ArchError", "BackendError", "InputError", "NtkcError", "RuleError", "__version__"]

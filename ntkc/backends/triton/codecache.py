"""The on-disk cache of generated Triton modules.

A module is stored as `<cache>/<prefix>_<hash>.py`, where the hash covers the source text and the
versions of ntkc, triton and torch, and `<cache>` is `$NTKC_CACHE_DIR` or `~/.cache/ntkc`. Files
are written atomically (`ntkc.util.atomic`), so concurrent processes never see half a file, and imported from their real path, so tracebacks and
`inspect.getsource` (which Triton needs) show the generated file itself.

Triton decides at `@triton.jit` time whether a function runs compiled or in its interpreter, and
its own library functions (`tl.sum`, `tl.zeros_like`, ...) are decorated when triton is first
imported: `TRITON_INTERPRET=1` therefore has to be set before that import, for the whole process
(`interpreting()` tells whether it was). Modules are kept per (file, mode) for the process.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from .. import cache as shared
from ..cache import cache_dir  # noqa: F401  (the one home of the folder; re-exported)
from ...util.versions import version_line

_MODULES: dict[tuple[str, bool], ModuleType] = {}


def versions() -> str:
    """The versions that a cached module depends on (part of its hash)."""
    return version_line(("ntkc", "triton", "torch"))


def source_hash(source: str) -> str:
    return shared.source_hash(source, versions(), 24)


def write(source: str, prefix: str = "ntkc") -> Path:
    """Store `source` in the cache (once) and return its path."""
    return shared.write_source(cache_dir(), source, prefix, versions(), 24)


def interpreting() -> bool:
    """True when triton was imported in interpreter mode (TRITON_INTERPRET=1 set before import)."""
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction
    return isinstance(tl.zeros_like, InterpretedFunction)


def load(source: str, prefix: str = "ntkc") -> ModuleType:
    """Write `source` to the cache if needed and import it from its file, in the mode triton
    was imported in (compiled, or interpreted under TRITON_INTERPRET=1)."""
    interpret = interpreting()
    path = write(source, prefix)
    key = (str(path), interpret)
    if key in _MODULES:
        return _MODULES[key]
    name = f"ntkc_generated_{path.stem}{'_interpreted' if interpret else ''}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    old = os.environ.get("TRITON_INTERPRET")
    try:
        # `@triton.jit` reads the variable: decorate in the mode triton itself was imported in
        if interpret:
            os.environ["TRITON_INTERPRET"] = "1"
        else:
            os.environ.pop("TRITON_INTERPRET", None)
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        if old is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = old
    _MODULES[key] = module
    return module

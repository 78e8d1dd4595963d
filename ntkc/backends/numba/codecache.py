"""The on-disk cache of generated numba modules.

A module is stored as `<cache>/numba/<stem>_<dtype>_<hash>.py`; the hash covers the source text
and the versions of ntkc, numba and numpy, and `<cache>` is ntkc's folder of generated code
(`ntkc.backends.cache`: $NTKC_CACHE_DIR or ~/.cache/ntkc). The file is written atomically
(`ntkc.util.atomic`) and imported from its real path, so tracebacks and `inspect` show the
generated file. Its functions carry `cache=True`: numba stores their machine code beside the
file (in `__pycache__`, keyed by the function, its signature and the CPU), so a later process
loads instead of compiling.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from ...util.versions import version_line
from .. import cache as shared
from ..cache import cache_dir as _root

_MODULES: dict[str, ModuleType] = {}


def cache_dir() -> Path:
    """Where the numba backend's modules are kept."""
    return _root() / "numba"


def versions() -> str:
    """The versions a cached module depends on (part of its hash)."""
    return version_line(("ntkc", "numba", "numpy"))


def source_hash(source: str) -> str:
    return shared.source_hash(source, versions(), 20)


def write(source: str, prefix: str) -> Path:
    """Store `source` in the cache (once) and return its path."""
    return shared.write_source(cache_dir(), source, prefix, versions(), 20)


def load(source: str, prefix: str) -> ModuleType:
    """Write `source` to the cache if needed and import it from its file (once per process)."""
    path = write(source, prefix)
    key = str(path)
    if key in _MODULES:
        return _MODULES[key]
    name = f"ntkc_numba_generated_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    _MODULES[key] = module
    return module

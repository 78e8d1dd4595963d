"""The one folder of generated code on disk, shared by the generating backends: `$NTKC_CACHE_DIR`,
else `~/.cache/ntkc`. Each backend keeps its modules under its own key there (Triton's at the
top, numba's in `numba/`), named by a hash of the source and the library versions that decide
the compiled code."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The folder of cached generated code: $NTKC_CACHE_DIR, else ~/.cache/ntkc."""
    env = os.environ.get("NTKC_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "ntkc"

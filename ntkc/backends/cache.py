"""The one folder of generated code on disk, shared by the generating backends: `$NTKC_CACHE_DIR`,
else `~/.cache/ntkc`. Each backend keeps its modules under its own key there (Triton's at the
top, numba's in `numba/`), named by a hash of the source and the library versions that decide
the compiled code."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..util.atomic import write_text


def cache_dir() -> Path:
    """The folder of cached generated code: $NTKC_CACHE_DIR, else ~/.cache/ntkc."""
    env = os.environ.get("NTKC_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "ntkc"


def source_hash(source: str, versions: str, length: int) -> str:
    """The first `length` hex digits of sha256(versions, NUL, source): a cached module's name."""
    h = hashlib.sha256()
    h.update(versions.encode())
    h.update(b"\0")
    h.update(source.encode())
    return h.hexdigest()[:length]


def write_source(folder: Path, source: str, prefix: str, versions: str, length: int) -> Path:
    """Store `source` as `folder/<prefix>_<hash>.py` (once; atomically) and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{prefix}_{source_hash(source, versions, length)}.py"
    if not (path.exists() and path.read_text() == source):
        write_text(path, source)
    return path

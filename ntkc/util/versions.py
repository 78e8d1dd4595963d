"""The library versions that decide computed bits: recorded in Gram-store manifests and hashed
into the cache keys of generated code."""
from __future__ import annotations

import platform

LIBRARIES = ("ntkc", "torch", "numpy", "python", "triton", "numba")


def versions(keys=LIBRARIES) -> dict[str, str]:
    """{library: version} for the given libraries (all by default); one not installed is left out."""
    out = {}
    for key in keys:
        try:
            if key == "ntkc":
                from .._version import __version__ as v
            elif key == "python":
                v = platform.python_version()
            else:
                v = __import__(key).__version__
        except Exception:
            continue
        out[key] = v
    return out


def version_line(keys=LIBRARIES) -> str:
    """`ntkc 0.1.0; triton 3.9.0; ...` for the given libraries."""
    return "; ".join(f"{k} {v}" for k, v in versions(keys).items())

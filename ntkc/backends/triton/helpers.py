"""The helpers of `mathlib.py` as source text, for generated modules, without importing triton.

`HELPERS` names each `@triton.jit` helper with the helpers it calls; `helper_sources(names)`
reads their definitions (decorator included) out of `mathlib.py` with `ast`, dependencies first,
each once. `band_base_py` is the host-side twin of the `band_base` helper.
"""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

MATHLIB = Path(__file__).with_name("mathlib.py")

# helper name -> the helpers it calls (copied into generated modules in dependency order)
HELPERS = {
    "signbit": (),
    "atan_unit": (),
    "sqrt": (),
    "rsqrt": (),
    "atan2": ("atan_unit", "signbit"),
    "atan": ("atan2",),
    "asin": ("atan2", "sqrt"),
    "acos": ("atan2", "sqrt"),
    "expm1": (),
    "tanh": ("expm1", "signbit"),
    "band_base": (),
}


def closure(names) -> list[str]:
    """`names` and every helper they call, dependencies first, each once."""
    order: list[str] = []

    def visit(name):
        if name in order:
            return
        for dep in HELPERS[name]:
            visit(dep)
        order.append(name)

    for name in sorted(names):
        visit(name)
    return order


@lru_cache(maxsize=1)
def _definitions() -> dict[str, str]:
    """Each top-level function of mathlib.py as its source text, from its decorator on."""
    text = MATHLIB.read_text()
    lines = text.splitlines()
    out = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef):
            first = min([d.lineno for d in node.decorator_list] + [node.lineno])
            out[node.name] = "\n".join(lines[first - 1:node.end_lineno]).rstrip() + "\n"
    return out


def helper_sources(names) -> str:
    """The source text of the helpers `names` (and their dependencies), ready to paste."""
    defs = _definitions()
    return "\n\n".join(defs[name] for name in closure(names))


def band_base_py(d: int, n: int) -> int:
    """`band_base` in Python, for the host side (buffer sizes, tests)."""
    if d <= 0:
        k = d + n - 1
        return k * (k + 1) // 2
    return n * (n + 1) // 2 + (d - 1) * (2 * n - d) // 2

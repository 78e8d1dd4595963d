"""The helpers of `mathlib.py` (v1) and `fastmath.py` (v2) as source text, for generated
modules, without importing triton.

`HELPERS` / `FAST_HELPERS` name each `@triton.jit` helper with the helpers it calls;
`helper_sources(names)` and `fast_helper_sources(names)` read their definitions (decorator
included) out of the library file with `ast`, dependencies first, each once. `band_base_py` is
the host-side twin of the `band_base` helper.
"""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

MATHLIB = Path(__file__).with_name("mathlib.py")
FASTMATH = Path(__file__).with_name("fastmath.py")

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


# the v2 helpers of fastmath.py
FAST_HELPERS = {
    "frsqrt": (),
    "fsqrt": ("frsqrt",),
    "frcp_pos": ("frsqrt",),
    "fms2": (),
    "_atan_q": (),
    "atan2_affine": ("fsqrt", "frcp_pos", "_atan_q"),
}
# what the fastmath helpers need at the top of a module: they branch on the interpreter at
# compile time (it cannot run their inline PTX)
FAST_PRELUDE = """import os

# the interpreter cannot run inline PTX: helpers branch on this at compile time
_INTERPRET = tl.constexpr(os.environ.get("TRITON_INTERPRET", "0") == "1")
"""


def closure(names, table=HELPERS) -> list[str]:
    """`names` and every helper they call, dependencies first, each once."""
    order: list[str] = []

    def visit(name):
        if name in order:
            return
        for dep in table[name]:
            visit(dep)
        order.append(name)

    for name in sorted(names):
        visit(name)
    return order


@lru_cache(maxsize=2)
def _definitions(path: Path = MATHLIB) -> dict[str, str]:
    """Each top-level function of a library file as its source text, from its decorator on."""
    text = path.read_text()
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


def fast_helper_sources(names) -> str:
    """The same for the v2 helpers of fastmath.py, after the prelude they need."""
    defs = _definitions(FASTMATH)
    return "\n\n".join([FAST_PRELUDE] + [defs[name] for name in closure(names, FAST_HELPERS)])


def band_base_py(d: int, n: int) -> int:
    """`band_base` in Python, for the host side (buffer sizes, tests)."""
    if d <= 0:
        k = d + n - 1
        return k * (k + 1) // 2
    return n * (n + 1) // 2 + (d - 1) * (2 * n - d) // 2

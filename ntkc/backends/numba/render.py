"""The numba dialect of the ops vocabulary: a template per op and typed constants.

`NUMBA_OPS` maps every op of the vocabulary to a numba expression over scalars (`{0}`, `{1}`,
`{2}` are the rendered arguments); names starting with `_` are helpers from `mathlib`, pasted
into the generated module. A conditional is a conditional expression, which LLVM turns into a
select in a vectorised loop. Constants are never written as literals: a Python float is a
float64 in numba and would promote a float32 loop, so each constant becomes a typed global of
the module (a `ConstantPool`), e.g. `K3 = DT(0.15915494309189535)`. The renderer itself (common
subexpressions, folding, precedence) is the shared one, `ntkc.backends.render.MathRenderer`.
"""
from __future__ import annotations

import math

from ..render import Dialect, MathRenderer, literal

NUMBA_OPS: dict[str, str] = {
    "sqrt": "math.sqrt({0})",
    "rsqrt": "(_ONE / math.sqrt({0}))",
    "exp": "math.exp({0})",
    "log": "math.log({0})",
    "sin": "math.sin({0})",
    "cos": "math.cos({0})",
    "tanh": "math.tanh({0})",
    "erf": "math.erf({0})",
    "asin": "_asin({0})",
    "acos": "_acos({0})",
    "atan": "_atan({0})",
    "atan2": "_atan2({0}, {1})",
    "abs": "abs({0})",
    "maximum": "_maximum({0}, {1})",
    "minimum": "_minimum({0}, {1})",
    "where": "({1} if {0} else {2})",
    "lt": "({0} < {1})",
    "le": "({0} <= {1})",
    "gt": "({0} > {1})",
    "ge": "({0} >= {1})",
}
HELPER_OPS = {op: t.split("(")[0] for op, t in NUMBA_OPS.items() if t.startswith("_")}


class ConstantPool:
    """Typed module-level constants, one name per distinct value (NaN and signed zeros kept)."""

    def __init__(self):
        self.values: dict[str, str] = {}   # repr key -> name
        self.lines: list[str] = []

    def name(self, value: float) -> str:
        value = float(value)
        key = repr(value) if not math.isnan(value) else "nan"
        if key not in self.values:
            n = f"K{len(self.values)}"
            self.values[key] = n
            self.lines.append(f"{n} = DT({literal(value)})")
        return self.values[key]

    def source(self) -> str:
        return "\n".join(self.lines) + ("\n" if self.lines else "")


class NumbaDialect(Dialect):
    """The numba table, with every constant a typed global of the module's pool."""

    def __init__(self, pool: ConstantPool, ops: dict[str, str] = NUMBA_OPS):
        super().__init__("numba", ops, HELPER_OPS)
        self.pool = pool

    def constant(self, value: float) -> tuple[str, int]:
        return self.pool.name(value), 9

    def tensor(self, value: float, like: str) -> str:
        return self.pool.name(value)


def NumbaMathRenderer(out, pool: ConstantPool, prefix: str = "m") -> MathRenderer:
    """A renderer of traced rule math (`Node` graphs) to numba scalar expressions."""
    return MathRenderer(out, NumbaDialect(pool), prefix)

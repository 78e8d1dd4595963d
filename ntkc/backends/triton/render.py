"""Rendering to Triton source text: the Triton dialect of the ops-vocabulary renderer.

The renderer itself (common subexpressions, constant folding, precedence) and the indented code
buffer are shared by every generating backend (`ntkc.backends.render`); this module is Triton's
part: a template per op in `TRITON_OPS` (helpers without `tl.` are the `@triton.jit` functions
of `mathlib`, copied into the generated module), constants as literals, and constants turned
into tiles (`tl.full`) where a Triton function needs a tensor argument.
"""
from __future__ import annotations

from ..render import COMPARE, FOLD, PREC, CodeBuffer, Dialect, literal  # noqa: F401  (re-exported)
from ..render import MathRenderer as _MathRenderer

# op -> Triton template; `{0}`, `{1}`, `{2}` are the rendered arguments. Helpers (no `tl.`) are
# the `@triton.jit` functions of `mathlib`, copied into the generated module.
TRITON_OPS: dict[str, str] = {
    "sqrt": "sqrt({0})",
    "rsqrt": "rsqrt({0})",
    "exp": "tl.exp({0})",
    "log": "tl.log({0})",
    "sin": "tl.sin({0})",
    "cos": "tl.cos({0})",
    "tanh": "tanh({0})",
    "erf": "tl.math.erf({0})",
    "asin": "asin({0})",
    "acos": "acos({0})",
    "atan": "atan({0})",
    "atan2": "atan2({0}, {1})",
    "abs": "tl.abs({0})",
    "maximum": "tl.maximum({0}, {1})",
    "minimum": "tl.minimum({0}, {1})",
    "where": "tl.where({0}, {1}, {2})",
    "lt": "{0} < {1}",
    "le": "{0} <= {1}",
    "gt": "{0} > {1}",
    "ge": "{0} >= {1}",
}
HELPER_OPS = {"sqrt", "rsqrt", "tanh", "asin", "acos", "atan", "atan2"}


class TritonDialect(Dialect):
    """Constants are literals, or tiles of the computation's shape and dtype where a function
    takes tiles (every function but maximum, minimum and the comparisons); a `where` with two
    constant branches makes one a tile, so the result takes the tile's dtype."""

    def tensor(self, value: float, like: str) -> str:
        return f"tl.full({like}.shape, {literal(value)}, {like}.dtype)"

    def call(self, r, n, args):
        const = [r._is_const(a) for a in n.args]
        if n.op == "where":
            if const[1] and const[2]:
                args[1] = r._tensor(r._const_of(n.args[1]))
        elif n.op not in ("maximum", "minimum") and n.op not in COMPARE:
            args = [r._tensor(r._const_of(a)) if c else x for a, x, c in zip(n.args, args, const)]
        text = self.ops[n.op].format(*args)
        return (f"({text})", 9) if n.op in COMPARE else (text, 9)


TRITON = TritonDialect("Triton", TRITON_OPS, {op: op for op in HELPER_OPS})


class MathRenderer(_MathRenderer):
    """Renders `Node` graphs into a `CodeBuffer` as Triton expressions; inputs are named by the
    caller (`render(graphs, inputs, like)`, see `ntkc.backends.render.MathRenderer`)."""

    def __init__(self, out: CodeBuffer, prefix: str = "m"):
        super().__init__(out, TRITON, prefix)

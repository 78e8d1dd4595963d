"""Rendering to Triton source text: an indented code buffer, and the ops-vocabulary renderer that
turns a rule's traced math (`ops.trace` -> `Node` graph) into Triton expressions.

The renderer is the Triton handler of the ops vocabulary: each op name maps to a template in
`TRITON_OPS`, and an op missing there fails with the list of those known. Equal subexpressions
(compared by structure, across all the graphs rendered together, e.g. a rule's `nngp` and its
`dfactor`) are computed once into a named temporary; a node used once is inlined. Subgraphs of
constants are folded in Python.
"""
from __future__ import annotations

import contextlib
import math

from ...rules.ops import BINARY, OPS, Node, walk


class CodeBuffer:
    """Lines of source with an indentation level (4 spaces per level)."""

    def __init__(self, level: int = 0):
        self.lines: list[str] = []
        self.level = level

    def line(self, text: str = "") -> None:
        self.lines.append(("    " * self.level + text) if text else "")

    @contextlib.contextmanager
    def indent(self, by: int = 1):
        self.level += by
        try:
            yield
        finally:
            self.level -= by

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


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
# Python's value of each op, for folding constant subgraphs
_FOLD = {
    "sqrt": math.sqrt, "rsqrt": lambda x: 1.0 / math.sqrt(x), "exp": math.exp, "log": math.log,
    "sin": math.sin, "cos": math.cos, "tanh": math.tanh, "erf": math.erf, "asin": math.asin,
    "acos": math.acos, "atan": math.atan, "atan2": math.atan2, "abs": abs, "maximum": max,
    "minimum": min, "where": lambda c, a, b: a if c else b, "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
    "neg": lambda a: -a, "add": lambda a, b: a + b, "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b, "truediv": lambda a, b: a / b,
}
_PREC = {"add": 1, "sub": 1, "mul": 2, "truediv": 2, "neg": 3}
_COMPARE = {"lt", "le", "gt", "ge"}

missing = set(OPS) - set(TRITON_OPS)
assert not missing, f"ops without a Triton template: {sorted(missing)}"


def literal(value: float) -> str:
    """A float literal that reads back as the same double."""
    if math.isnan(value):
        return 'float("nan")'
    if math.isinf(value):
        return 'float("inf")' if value > 0 else '-float("inf")'
    text = repr(float(value))
    return text


class MathRenderer:
    """Renders `Node` graphs into a `CodeBuffer`; inputs are named by the caller."""

    def __init__(self, out: CodeBuffer, prefix: str = "m"):
        self.out = out
        self.prefix = prefix
        self.helpers: set[str] = set()
        self._count = 0
        self.like = "x"

    def render(self, graphs: dict[str, Node], inputs: dict[str, str], like: str) -> dict[str, str]:
        """Emit temporaries for `graphs` (name -> root) and return an expression per name.

        `inputs` maps a traced input name ('u', 'v1', 'v2') to the variable holding it; `like`
        names a tile whose shape and dtype a constant takes where it must be a tensor (a
        function's argument, a graph that folds to a constant).
        """
        self.like = like
        keys: dict[int, tuple] = {}
        order: list[Node] = []       # one representative per structure, children first
        seen: set[tuple] = set()
        for root in graphs.values():
            for n in walk(root):
                k = keys[id(n)] = self._key(n, keys)
                if k not in seen:
                    seen.add(k)
                    order.append(n)
        uses: dict[tuple, int] = {}
        for n in order:
            for a in n.args:
                if isinstance(a, Node):
                    uses[keys[id(a)]] = uses.get(keys[id(a)], 0) + 1
        for root in graphs.values():
            uses[keys[id(root)]] = uses.get(keys[id(root)], 0) + 1
        self.consts: dict[tuple, float] = {}
        for n in order:
            value = self._fold(n, keys)
            if value is not None:
                self.consts[keys[id(n)]] = value
        self.keys = keys
        self.named: dict[tuple, str] = {}
        self.cache: dict[tuple, tuple[str, int]] = {}
        for n in order:
            k = keys[id(n)]
            if k in self.consts or n.op in ("input", "const") or uses.get(k, 0) < 2:
                continue
            text, _ = self._expr(n, inputs)
            name = f"{self.prefix}{self._count}"
            self._count += 1
            self.out.line(f"{name} = {text}")
            self.named[k] = name
        result = {}
        for name, root in graphs.items():
            k = keys[id(root)]
            result[name] = self._tensor(self.consts[k]) if k in self.consts else self._ref(root, inputs)[0]
        return result

    # -- pieces ---------------------------------------------------------------------------------

    def _tensor(self, value: float) -> str:
        return f"tl.full({self.like}.shape, {literal(value)}, {self.like}.dtype)"

    def _key(self, n: Node, keys) -> tuple:
        if n.op == "input":
            return ("input", n.args[0])
        if n.op == "const":
            return ("const", float(n.args[0]))
        return (n.op,) + tuple(keys[id(a)] for a in n.args)

    def _fold(self, n: Node, keys):
        if n.op == "const":
            return float(n.args[0])
        if n.op == "input":
            return None
        vals = []
        for a in n.args:
            k = keys[id(a)]
            if k not in self.consts:
                return None
            vals.append(self.consts[k])
        try:
            v = _FOLD[n.op](*vals)
        except (ValueError, ZeroDivisionError, OverflowError):
            return None  # leave it to the device (NaN / inf as IEEE says)
        return float(v)

    def _is_const(self, n: Node) -> bool:
        return self.keys[id(n)] in self.consts

    def _ref(self, n: Node, inputs) -> tuple[str, int]:
        """A node as an operand: its temporary, its literal, or its inlined expression."""
        k = self.keys[id(n)]
        if k in self.named:
            return self.named[k], 9
        if k in self.consts:
            v = self.consts[k]
            return literal(v), (9 if v >= 0 and not math.isinf(v) and not math.isnan(v) else 0)
        if k not in self.cache:
            self.cache[k] = self._expr(n, inputs)
        return self.cache[k]

    def _expr(self, n: Node, inputs) -> tuple[str, int]:
        if n.op == "input":
            name = n.args[0]
            if name not in inputs:
                raise KeyError(f"rule math reads input {name!r}; known inputs: {sorted(inputs)}")
            return inputs[name], 9
        if n.op == "neg":
            a, pa = self._ref(n.args[0], inputs)
            return f"-{_wrap(a, pa, 3)}", 3
        if n.op in BINARY:
            prec = _PREC[n.op]
            a, pa = self._ref(n.args[0], inputs)
            b, pb = self._ref(n.args[1], inputs)
            right = prec + 1 if n.op in ("sub", "truediv") else prec
            return f"{_wrap(a, pa, prec)} {BINARY[n.op]} {_wrap(b, pb, right)}", prec
        if n.op not in TRITON_OPS:
            raise KeyError(f"no Triton rendering for op {n.op!r}; known: {sorted(TRITON_OPS)}")
        if n.op in HELPER_OPS:
            self.helpers.add(n.op)
        args = [self._ref(a, inputs)[0] for a in n.args]
        const = [self._is_const(a) for a in n.args]
        if n.op == "where":
            # both branches constant: make one a tile so the result takes the tile's dtype
            if const[1] and const[2]:
                args[1] = self._tensor(self.consts[self.keys[id(n.args[1])]])
        elif n.op not in ("maximum", "minimum") and n.op not in _COMPARE:
            # functions take tiles, not Python floats
            args = [self._tensor(self.consts[self.keys[id(a)]]) if c else x for a, x, c in zip(n.args, args, const)]
        text = TRITON_OPS[n.op].format(*args)
        return (f"({text})", 9) if n.op in _COMPARE else (text, 9)


def _wrap(text: str, prec: int, need: int) -> str:
    return text if prec >= need else f"({text})"

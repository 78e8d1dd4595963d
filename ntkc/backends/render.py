"""Rendering rule math to source text, for every code-generating backend: an indented code
buffer, and the ops-vocabulary renderer parameterised by a *dialect*.

A rule's math is traced once (`ops.trace` -> a `Node` graph) and rendered per backend. The
renderer does what every target needs: equal subexpressions (compared by structure, across all
the graphs rendered together, e.g. a rule's `nngp` and its `dfactor`) are computed once into a
named temporary, a node used once is inlined, arithmetic is written with the fewest parentheses,
and subgraphs of constants are folded in Python. What differs between targets is the `Dialect`:
a template per op (`{0}`, `{1}`, `{2}` are the rendered arguments), the helper function each op
calls, how a constant is written as an operand and where a target needs it as a tensor. An op
missing from a dialect's table fails with the list of those known.

The Triton dialect is `backends.triton.render`, the numba one `backends.numba.render`.
"""
from __future__ import annotations

import contextlib
import math
from typing import Mapping

from ..rules.ops import BINARY, OPS, Node, walk


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


def literal(value: float) -> str:
    """A float literal that reads back as the same double."""
    if math.isnan(value):
        return 'float("nan")'
    if math.isinf(value):
        return 'float("inf")' if value > 0 else '-float("inf")'
    return repr(float(value))


# Python's value of each op, for folding constant subgraphs
FOLD = {
    "sqrt": math.sqrt, "rsqrt": lambda x: 1.0 / math.sqrt(x), "exp": math.exp, "log": math.log,
    "sin": math.sin, "cos": math.cos, "tanh": math.tanh, "erf": math.erf, "asin": math.asin,
    "acos": math.acos, "atan": math.atan, "atan2": math.atan2, "abs": abs, "maximum": max,
    "minimum": min, "where": lambda c, a, b: a if c else b, "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
    "neg": lambda a: -a, "add": lambda a, b: a + b, "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b, "truediv": lambda a, b: a / b,
}
PREC = {"add": 1, "sub": 1, "mul": 2, "truediv": 2, "neg": 3}
COMPARE = frozenset({"lt", "le", "gt", "ge"})
ATOM = 9  # the precedence of a name, a call or a parenthesised expression


class Dialect:
    """How one target writes the ops vocabulary.

    `ops`: op -> template; `helpers`: op -> the name of the helper function it calls (recorded
    in `MathRenderer.helpers`, so the generator can paste the helpers a module uses). The base
    class writes a function op as its template over the rendered arguments and a constant as a
    literal; a target that needs more (typed constants, tensors where a function wants one)
    overrides `constant`, `tensor` or `call`.
    """

    def __init__(self, name: str, ops: Mapping[str, str], helpers: Mapping[str, str]):
        missing = set(OPS) - set(ops)
        assert not missing, f"ops without a {name} template: {sorted(missing)}"
        self.name = name
        self.ops = ops
        self.helpers = helpers

    def constant(self, value: float) -> tuple[str, int]:
        """A constant as an operand: its text and precedence."""
        ok = value >= 0 and not math.isinf(value) and not math.isnan(value)
        return literal(value), (ATOM if ok else 0)

    def tensor(self, value: float, like: str) -> str:
        """A constant where the target needs a value of the computation's own type."""
        return self.constant(value)[0]

    def call(self, r: "MathRenderer", n: Node, args: list[str]) -> tuple[str, int]:
        """A function op (not arithmetic) over its rendered arguments."""
        return self.ops[n.op].format(*args), ATOM


class MathRenderer:
    """Renders `Node` graphs into a `CodeBuffer` in one `Dialect`; inputs are named by the caller."""

    def __init__(self, out: CodeBuffer, dialect: Dialect, prefix: str = "m"):
        self.out = out
        self.dialect = dialect
        self.prefix = prefix
        self.helpers: set[str] = set()
        self._count = 0
        self.like = "x"

    def render(self, graphs: dict[str, Node], inputs: dict[str, str], like: str) -> dict[str, str]:
        """Emit temporaries for `graphs` (name -> root) and return an expression per name.

        `inputs` maps a traced input name ('u', 'v1', 'v2') to the variable holding it; `like`
        names a value whose shape and dtype a constant takes where it must be a tensor (a
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
        return self.dialect.tensor(value, self.like)

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
            v = FOLD[n.op](*vals)
        except (ValueError, ZeroDivisionError, OverflowError):
            return None  # leave it to the device (NaN / inf as IEEE says)
        return float(v)

    def _is_const(self, n: Node) -> bool:
        return self.keys[id(n)] in self.consts

    def _const_of(self, n: Node) -> float:
        return self.consts[self.keys[id(n)]]

    def _ref(self, n: Node, inputs) -> tuple[str, int]:
        """A node as an operand: its temporary, its constant, or its inlined expression."""
        k = self.keys[id(n)]
        if k in self.named:
            return self.named[k], ATOM
        if k in self.consts:
            return self.dialect.constant(self.consts[k])
        if k not in self.cache:
            self.cache[k] = self._expr(n, inputs)
        return self.cache[k]

    def _expr(self, n: Node, inputs) -> tuple[str, int]:
        if n.op == "input":
            name = n.args[0]
            if name not in inputs:
                raise KeyError(f"rule math reads input {name!r}; known inputs: {sorted(inputs)}")
            return inputs[name], ATOM
        if n.op == "neg":
            a, pa = self._ref(n.args[0], inputs)
            return f"-{wrap(a, pa, 3)}", 3
        if n.op in BINARY:
            prec = PREC[n.op]
            a, pa = self._ref(n.args[0], inputs)
            b, pb = self._ref(n.args[1], inputs)
            right = prec + 1 if n.op in ("sub", "truediv") else prec
            return f"{wrap(a, pa, prec)} {BINARY[n.op]} {wrap(b, pb, right)}", prec
        d = self.dialect
        if n.op not in d.ops:
            raise KeyError(f"no {d.name} rendering for op {n.op!r}; known: {sorted(d.ops)}")
        if n.op in d.helpers:
            self.helpers.add(d.helpers[n.op])
        args = [self._ref(a, inputs)[0] for a in n.args]
        return d.call(self, n, args)


def wrap(text: str, prec: int, need: int) -> str:
    return text if prec >= need else f"({text})"


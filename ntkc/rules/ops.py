"""The ops vocabulary: the operations a layer rule's math may use, and the handlers that give it
meaning.

A rule writes its math once, as a Python function of an `ops` handler and its inputs, using the
arithmetic operators (+ - * / and unary -), float constants and the functions named in `OPS`
(`ops.sqrt(x)`, `ops.atan2(y, x)`, ...). Each backend passes its own handler:

- `TraceOps` (here) records an expression graph of `Node`s, which the code generators render to
  source text and which registration uses to reject a rule that steps outside the vocabulary;
- `ntkc.backends.torch.ops.TorchOps` evaluates on tensors (the torch backend).

This module imports neither torch nor triton: the rule API and the `.arch` language stay light.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

# name -> number of arguments. Everything a rule may call on `ops`.
OPS: dict[str, int] = {
    "sqrt": 1, "rsqrt": 1, "exp": 1, "log": 1, "sin": 1, "cos": 1, "tanh": 1,
    "erf": 1, "asin": 1, "acos": 1, "atan": 1, "atan2": 2, "abs": 1,
    "maximum": 2, "minimum": 2, "where": 3, "lt": 2, "le": 2, "gt": 2, "ge": 2,
}
BINARY = {"add": "+", "sub": "-", "mul": "*", "truediv": "/"}


@dataclass(frozen=True, eq=False)
class Node:
    """One node of a traced expression: an op name and its arguments (Nodes or floats).

    `op` is 'input' (args = (name,)), 'const' (args = (value,)), 'neg', one of BINARY's keys,
    or a name in OPS.
    """

    op: str
    args: tuple[Any, ...]

    def _bin(self, op, other, swap=False):
        other = other if isinstance(other, Node) else Node("const", (float(other),))
        return Node(op, (other, self) if swap else (self, other))

    def __add__(self, o): return self._bin("add", o)
    def __radd__(self, o): return self._bin("add", o, True)
    def __sub__(self, o): return self._bin("sub", o)
    def __rsub__(self, o): return self._bin("sub", o, True)
    def __mul__(self, o): return self._bin("mul", o)
    def __rmul__(self, o): return self._bin("mul", o, True)
    def __truediv__(self, o): return self._bin("truediv", o)
    def __rtruediv__(self, o): return self._bin("truediv", o, True)
    def __neg__(self): return Node("neg", (self,))
    def __pos__(self): return self

    def __pow__(self, k):
        if k == 2:
            return self * self
        raise TypeError("only x**2 is in the ops vocabulary; use ops.exp / ops.log or products")

    def __bool__(self):
        raise TypeError("rule math cannot branch on a traced value in Python; use ops.where(cond, a, b)")

    def __lt__(self, o): return self._bin("lt", o)
    def __le__(self, o): return self._bin("le", o)
    def __gt__(self, o): return self._bin("gt", o)
    def __ge__(self, o): return self._bin("ge", o)


def _as_node(x) -> Node:
    return x if isinstance(x, Node) else Node("const", (float(x),))


class TraceOps:
    """Records rule math as a graph of `Node`s instead of computing it."""

    pi = math.pi

    def __getattr__(self, name: str) -> Callable[..., Node]:
        if name not in OPS:
            raise AttributeError(name)
        arity = OPS[name]

        def op(*args):
            if len(args) != arity:
                raise TypeError(f"ops.{name} takes {arity} argument(s), got {len(args)}")
            return Node(name, tuple(_as_node(a) for a in args))

        return op


def trace(fn: Callable[..., Any], *input_names: str) -> Node:
    """Trace `fn(ops, *inputs)` into a `Node` graph with named inputs."""
    out = fn(TraceOps(), *(Node("input", (n,)) for n in input_names))
    return _as_node(out)


def walk(node: Node):
    """Every node reachable from `node`, each once, children before parents."""
    seen: set[int] = set()
    order: list[Node] = []

    def visit(n):
        if not isinstance(n, Node) or id(n) in seen:
            return
        seen.add(id(n))
        for a in n.args:
            visit(a)
        order.append(n)

    visit(node)
    return order


def trace_maps(rule, params, need_dfactor: bool) -> dict[str, Node]:
    """An activation rule's math as `Node` graphs, traced through `rule.maps` (the form the torch
    backend evaluates too): {"nngp": ..., "dfactor": ...}, the latter only when needed."""
    u, v1, v2 = (Node("input", (n,)) for n in ("u", "v1", "v2"))
    nngp, dfactor = rule.maps(params, TraceOps(), u, v1, v2, need_dfactor)
    graphs = {"nngp": _as_node(nngp)}
    if need_dfactor:
        graphs["dfactor"] = _as_node(dfactor)
    return graphs

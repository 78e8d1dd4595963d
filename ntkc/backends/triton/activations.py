"""Activation math for the v2 kernels: the rule's traced graphs, rewritten for cheap exact math,
rendered as one `@triton.jit` function per activation (`render_activation`).

Rewrites (on the `Node` graphs of `trace_maps`, structure only: no rule is known by name):

1. `a*b - c*d` -> `fms2(a, b, c, d)`: the determinant form that stays exactly 0 when a*b = c*d,
   whether or not the compiler contracts products into FMAs (see `fastmath.fms2`). On a self-pair
   diagonal the kernels pass u = v1 and v2 = v1 bitwise, so `v1*v2 - u*u` is exactly 0 and the
   relu angle exactly 0. This is the only place in the v2 math that relies on exact cancellation
   (the audit of every other exact cancellation is in docs/math.md, section 3).
2. `A + B * atan2(y, x)` with constants A, B (the relu's `(pi - theta) * (0.5 / pi)`, found
   through +, -, *, / by constants and negation) -> `atan2_affine(y, x, y2, A, B)`: the constants go
   into the polynomial and its offset at compile time. `y2` is y*y, or m itself when y = sqrt(m)
   and m is known non-negative (`maximum(., c >= 0)`), which saves the square and is exact.
   `asin`, `acos` and `atan` become atan2_affine as well.
3. `sqrt`, `rsqrt` render as the fast helpers of `fastmath` (MUFU in float32, refined in float64).

Everything else renders as the v1 renderer does (`MathRenderer`: CSE across NNGP and the
derivative factor, constant folding, `tl.*` templates and v1 helpers such as `tanh`).
"""
from __future__ import annotations

from dataclasses import dataclass

from ...rules.ops import Node, trace_maps
from .render import CodeBuffer, MathRenderer, literal

NEW_OPS = {"fms2", "atan2_affine", "atan2_affine_nn"}
# ops this renderer writes itself (the rest go to the v1 templates)
_OWN = {"sqrt": "fsqrt", "rsqrt": "frsqrt"}


def _const(x: float) -> Node:
    return Node("const", (float(x),))


def _is_const(n) -> bool:
    return isinstance(n, Node) and n.op == "const"


def _cval(n) -> float:
    return float(n.args[0])


def _constant_graph(n: Node) -> bool:
    if n.op == "const":
        return True
    if n.op == "input":
        return False
    return all(_constant_graph(a) for a in n.args if isinstance(a, Node))


def _affine(n: Node):
    """(A, B, atan2 node) if n = A + B * atan2(y, x) through constant arithmetic, else None."""
    if n.op == "atan2":
        return (0.0, 1.0, n)
    if n.op == "neg":
        r = _affine(n.args[0])
        return None if r is None else (-r[0], -r[1], r[2])
    if n.op in ("add", "sub", "mul", "truediv") and len(n.args) == 2:
        a, b = n.args
        if n.op == "truediv":
            if _is_const(b) and _cval(b) != 0.0:
                r = _affine(a)
                return None if r is None else (r[0] / _cval(b), r[1] / _cval(b), r[2])
            return None
        if _is_const(a) and not _is_const(b):
            r = _affine(b)
            if r is None:
                return None
            c = _cval(a)
            if n.op == "add":
                return (c + r[0], r[1], r[2])
            if n.op == "sub":
                return (c - r[0], -r[1], r[2])
            return (c * r[0], c * r[1], r[2])
        if _is_const(b) and not _is_const(a):
            r = _affine(a)
            if r is None:
                return None
            c = _cval(b)
            if n.op == "add":
                return (r[0] + c, r[1], r[2])
            if n.op == "sub":
                return (r[0] - c, r[1], r[2])
            return (c * r[0], c * r[1], r[2])
    return None


def _nonneg(n: Node) -> bool:
    """Known >= 0 (or NaN) by structure."""
    if n.op == "const":
        return _cval(n) >= 0.0
    if n.op in ("sqrt", "rsqrt", "abs", "exp"):
        return True
    if n.op == "maximum":
        return any(_nonneg(a) for a in n.args)
    if n.op == "mul" and n.args[0] is n.args[1]:
        return True
    return False


class Rewriter:
    """Applies the rewrites above, bottom-up, keeping shared subgraphs shared. `exact_det=False`
    leaves `a*b - c*d` as it is (only for the test that shows why the rewrite is needed)."""

    def __init__(self, exact_det: bool = True):
        self.memo: dict[int, Node] = {}
        self.exact_det = exact_det

    def __call__(self, n):
        if not isinstance(n, Node):
            return n
        if id(n) in self.memo:
            return self.memo[id(n)]
        out = self._rewrite(n)
        self.memo[id(n)] = out
        return out

    def _rewrite(self, n: Node) -> Node:
        if n.op in ("input", "const") or _constant_graph(n):
            return n
        aff = _affine(n)
        if aff is not None:
            A, B, at = aff
            y, x = (self(a) for a in at.args)
            return self._atan2(y, x, A, B)
        if self.exact_det and n.op == "sub" and n.args[0].op == "mul" and n.args[1].op == "mul":
            (a, b), (c, d) = n.args[0].args, n.args[1].args
            return Node("fms2", tuple(self(v) for v in (a, b, c, d)))
        if n.op in ("asin", "acos", "atan"):
            x = self(n.args[0])
            one = _const(1.0)
            if n.op == "atan":
                return self._atan2(x, one, 0.0, 1.0)
            # (1 - x)(1 + x) keeps every digit near |x| = 1, unlike 1 - x^2
            c = Node("sqrt", (Node("mul", (Node("sub", (one, x)), Node("add", (one, x)))),))
            return self._atan2(x, c, 0.0, 1.0) if n.op == "asin" else self._atan2(c, x, 0.0, 1.0)
        return Node(n.op, tuple(self(a) for a in n.args))

    @staticmethod
    def _atan2(y: Node, x: Node, A: float, B: float) -> Node:
        if y.op == "sqrt" and _nonneg(y.args[0]):
            y2 = y.args[0]
        else:
            y2 = Node("mul", (y, y))
        op = "atan2_affine_nn" if _nonneg(y) else "atan2_affine"
        return Node(op, (y, x, y2, _const(A), _const(B)))


def rewrite(graphs: dict[str, Node], exact_det: bool = True) -> dict[str, Node]:
    r = Rewriter(exact_det)
    return {k: r(v) for k, v in graphs.items()}


class Renderer(MathRenderer):
    """The v1 renderer plus the v2 ops; records the `fastmath` helpers it uses in `fast_helpers`."""

    def __init__(self, out: CodeBuffer, prefix: str = "m"):
        super().__init__(out, prefix)
        self.fast_helpers: set[str] = set()

    def _fold(self, n: Node, keys):
        if n.op in NEW_OPS:
            return None  # never all-constant: the rewriter leaves constant graphs alone
        return super()._fold(n, keys)

    def _expr(self, n: Node, inputs):
        if n.op == "fms2":
            a, b, c, d = (self._tile(x, inputs) for x in n.args)
            self.fast_helpers.add("fms2")
            return f"fms2({a}, {b}, {c}, {d})", 9
        if n.op in ("atan2_affine", "atan2_affine_nn"):
            y, x, y2 = (self._tile(a, inputs) for a in n.args[:3])
            A, B = _cval(n.args[3]), _cval(n.args[4])
            self.fast_helpers.add("atan2_affine")
            nn = "True" if n.op == "atan2_affine_nn" else "False"
            return f"atan2_affine({y}, {x}, {y2}, {literal(A)}, {literal(B)}, {nn})", 9
        if n.op in _OWN:
            self.fast_helpers.add(_OWN[n.op])
            return f"{_OWN[n.op]}({self._tile(n.args[0], inputs)})", 9
        return super()._expr(n, inputs)

    def _tile(self, n: Node, inputs) -> str:
        k = self.keys[id(n)]
        if k in self.consts:
            return self._tensor(self.consts[k])
        return self._ref(n, inputs)[0]


@dataclass(frozen=True)
class ActivationFn:
    """One rendered activation: the jit function's name, its source and the helpers it calls."""

    name: str
    source: str
    fast_helpers: frozenset
    v1_helpers: frozenset
    need_dfactor: bool


def render_activation(rule, params, need_dfactor: bool, name: str, doc: str, exact_det: bool = True) -> ActivationFn:
    """`@triton.jit def name(u, v1, v2) -> (nngp, dfactor)` (dfactor only if needed)."""
    graphs = rewrite(trace_maps(rule, params, need_dfactor), exact_det)
    body = CodeBuffer(1)
    r = Renderer(body, prefix="m")
    e = r.render(graphs, {"u": "u", "v1": "v1", "v2": "v2"}, like="u")
    out = CodeBuffer()
    out.line("@triton.jit")
    out.line(f"def {name}(u, v1, v2):")
    with out.indent():
        out.line(f'"""{doc}"""')
    out.lines.extend(body.lines)
    with out.indent():
        out.line(f"return {e['nngp']}, {e['dfactor']}" if need_dfactor else f"return {e['nngp']}")
    return ActivationFn(name, out.text(), frozenset(r.fast_helpers), frozenset(r.helpers), need_dfactor)

"""Evaluate generated Triton math (an activation function and its helpers) in numpy, as a GPU
would with FMA contraction: every `a * b + c` (and `c + a * b`, `a * b - c`, `c - a * b`) in the
source becomes fma(a, b, +-c), computed exactly then rounded once, like FFMA. `tl.fma` is exact
too. The interpreter does not contract, so only this shows what contraction does to exact
cancellations. `approx=True` perturbs sqrt and rsqrt by up to `ulps` units in the last place, as
MUFU.SQRT / MUFU.RSQ may err.
"""
from __future__ import annotations

import ast
import math
import textwrap
import types
from fractions import Fraction

import numpy as np


class Arr(np.ndarray):
    def to(self, dtype, bitcast=False):
        return (self.view(dtype) if bitcast else self.astype(dtype)).view(Arr)


def _arr(x, like=None):
    a = np.asarray(x)
    if like is not None and a.dtype.kind == "f" and np.asarray(like).dtype != a.dtype and a.ndim == 0:
        a = a.astype(np.asarray(like).dtype)
    return a.view(Arr)


def exact_fma(a, b, c):
    """fma in the dtype of the array operands (Python scalars take it, as in Triton)."""
    arrays = [np.asarray(v) for v in (a, b, c) if isinstance(v, np.ndarray)]
    dt = np.float32 if arrays and all(v.dtype == np.float32 for v in arrays) else np.float64
    a, b, c = np.broadcast_arrays(*(np.asarray(v, dtype=dt) for v in (a, b, c)))
    if dt == np.float32:  # the product is exact in float64; one more rounding (double rounding is
        # possible in the last bit, never for the exact cancellations tested here)
        out = (a.astype(np.float64) * b.astype(np.float64) + c.astype(np.float64)).astype(np.float32)
    else:  # exact in rationals, one rounding to float64
        def one(x, y, z):
            x, y, z = float(x), float(y), float(z)
            if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(z)):
                return x * y + z
            return float(Fraction(x) * Fraction(y) + Fraction(z))
        f = np.frompyfunc(one, 3, 1)
        out = np.asarray(f(a, b, c), dtype=np.float64)
    return np.asarray(out).view(Arr)


def make_tl(rng=None, approx=False, ulps=2.0):
    def perturb(x):
        x = np.asarray(x)
        if not approx or rng is None:
            return x.view(Arr)
        eps = np.finfo(x.dtype).eps
        return (x * (1 + rng.uniform(-ulps, ulps, x.shape) * eps).astype(x.dtype)).astype(x.dtype).view(Arr)

    def where(c, a, b):
        dt = next((np.asarray(v).dtype for v in (a, b) if isinstance(v, np.ndarray) and np.asarray(v).dtype.kind == "f"), None)
        out = np.where(c, a, b)
        return (out.astype(dt) if dt is not None else out).view(Arr)

    def sqrt(x):
        with np.errstate(invalid="ignore"):
            return perturb(np.sqrt(x))

    def rsqrt(x):
        with np.errstate(divide="ignore", invalid="ignore"):
            return perturb((1 / np.sqrt(x)).astype(np.asarray(x).dtype))

    tl = types.SimpleNamespace(
        float32=np.dtype(np.float32), float64=np.dtype(np.float64), int32=np.int32, int64=np.int64,
        constexpr=object, where=where, maximum=lambda a, b: _arr(np.maximum(a, b)),
        minimum=lambda a, b: _arr(np.minimum(a, b)), abs=lambda x: _arr(np.abs(x)), sqrt=sqrt,
        fma=exact_fma, full=lambda shape, v, dtype: np.full(shape, v, dtype).view(Arr),
        zeros_like=lambda x: np.zeros_like(x).view(Arr), exp=lambda x: _arr(np.exp(x)),
        math=types.SimpleNamespace(rsqrt=rsqrt, erf=np.vectorize(math.erf)),
    )
    return tl


class Contract(ast.NodeTransformer):
    """a*b + c -> fma(a, b, c) and friends; `prefer` picks which product of a*b + c*d contracts."""

    def __init__(self, prefer="left"):
        self.prefer = prefer

    def visit_BinOp(self, node):
        self.generic_visit(node)
        if not isinstance(node.op, (ast.Add, ast.Sub)):
            return node
        lmul = isinstance(node.left, ast.BinOp) and isinstance(node.left.op, ast.Mult)
        rmul = isinstance(node.right, ast.BinOp) and isinstance(node.right.op, ast.Mult)
        use_left = lmul and (self.prefer == "left" or not rmul)
        fma = ast.Attribute(ast.Name("tl", ast.Load()), "fma", ast.Load())
        if use_left:
            c = node.right if isinstance(node.op, ast.Add) else ast.UnaryOp(ast.USub(), node.right)
            return ast.copy_location(ast.Call(fma, [node.left.left, node.left.right, c], []), node)
        if rmul:
            a = node.right.left if isinstance(node.op, ast.Add) else ast.UnaryOp(ast.USub(), node.right.left)
            return ast.copy_location(ast.Call(fma, [a, node.right.right, node.left], []), node)
        return node


def load(sources: list[str], contract: str | None = "left", rng=None, approx=False, ulps=2.0) -> dict:
    """Exec generated @triton.jit sources in numpy; returns the namespace of functions."""
    ns = {"tl": make_tl(rng, approx, ulps), "triton": types.SimpleNamespace(jit=lambda f=None, **k: f or (lambda g: g)),
          "float": float, "_INTERPRET": True, "os": __import__("os")}
    for src in sources:
        tree = ast.parse(textwrap.dedent(src))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                node.decorator_list = []
        tree.body = [st for st in tree.body if not (isinstance(st, ast.Assign) and getattr(st.targets[0], "id", "") == "_INTERPRET")]
        if contract:
            tree = Contract(contract).visit(tree)
        ast.fix_missing_locations(tree)
        exec(compile(tree, "<generated>", "exec"), ns)
    return ns

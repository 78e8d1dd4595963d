"""Runs Triton-backend cases in Triton's interpreter, in a process of its own.

TRITON_INTERPRET=1 takes effect only if it is set before triton is first imported (triton's own
library functions are decorated then), so the tests cannot switch it on inside the pytest
process: they start this script with the variable set, hand it cases as JSON on stdin and read
one JSON result per case from stdout. Not a test module (pytest does not collect it).

A "kernel" case compiles `arch`, computes NNGP and NTK of seeded random images with the triton
backend in `dtype` and with the torch backend in float64, and reports the largest difference
relative to the largest entry, per matrix. A "math" case evaluates one `triton_math` helper on
the given points.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback

assert os.environ.get("TRITON_INTERPRET") == "1", "run with TRITON_INTERPRET=1"

import numpy as np  # noqa: E402
import torch  # noqa: E402

import ntkc  # noqa: E402
from ntkc.backends.triton import schedule  # noqa: E402

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _images(shape, n, seed, dups):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, shape.channels, shape.height, shape.width, generator=g, dtype=torch.float64)
    if dups and n >= 3:
        x[2] = x[0]  # an exact duplicate: an off-diagonal self pair
    return x


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = b.abs().max().item() or 1.0
    return (a.double() - b).abs().max().item() / scale


def kernel_case(case: dict) -> dict:
    k = ntkc.compile(case["arch"], case.get("name", "<case>"))
    shape = k.arch.input
    x1 = _images(shape, case["n1"], case["seed"], case.get("dups", False))
    x2 = _images(shape, case["n2"], case["seed"] + 1, False) if case.get("n2") else None
    dtype = DTYPES[case["dtype"]]
    ex = k.backend("triton", dtype, torch.device("cpu"))
    if case.get("circulant"):  # another v2 program shape: BLOCK_P pairs x BLOCK_X tile columns
        bp, bx = case["circulant"]
        ex.launches = [schedule.CirculantLaunch(bp, bx, 1) if k.kind.value == "circulant" else launch
                       for k, launch in zip(ex.generated.kernels, ex.launches)]
    if case.get("block_items"):
        ex.launches = [schedule.Launch(case["block_items"], 1, case.get("programs", 2)) if k.legacy else launch
                       for k, launch in zip(ex.generated.kernels, ex.launches)]
    start = time.perf_counter()
    got = k(x1.to(dtype), None if x2 is None else x2.to(dtype), dtype=dtype, backend="triton")
    seconds = time.perf_counter() - start
    ref = k(x1, x2, dtype=torch.float64, backend="torch")
    out = {"nngp": _rel(got.nngp, ref.nngp), "ntk": _rel(got.ntk, ref.ntk), "seconds": seconds,
           "kernels": len(ex.generated.kernels), "kinds": [k.kind.value for k in ex.generated.kernels]}
    if dtype == torch.float32:  # how far the torch backend's own float32 is from float64
        own = k(x1.to(dtype), None if x2 is None else x2.to(dtype), dtype=dtype, backend="torch")
        out["torch32_nngp"], out["torch32_ntk"] = _rel(own.nngp, ref.nngp), _rel(own.ntk, ref.ntk)
    if case.get("diag"):
        # self pairs: the diagonal entry by entry, relative to itself
        d_got, d_ref = torch.diagonal(got.nngp).double(), torch.diagonal(ref.nngp)
        out["diag"] = ((d_got - d_ref).abs() / d_ref.abs()).max().item()
        d_got, d_ref = torch.diagonal(got.ntk).double(), torch.diagonal(ref.ntk)
        out["diag_ntk"] = ((d_got - d_ref).abs() / d_ref.abs()).max().item()
    if case.get("values"):
        out["values"] = [got.nngp.double().reshape(-1).tolist(), got.ntk.double().reshape(-1).tolist()]
    return out


_MATH = {}


def math_case(case: dict) -> dict:
    from ntkc.backends.triton import helpers as triton_math
    from ntkc.backends.triton import codecache

    if "module" not in _MATH:
        names = ["atan2", "asin", "acos", "atan", "tanh", "sqrt", "rsqrt", "band_base"]
        src = ("import triton\nimport triton.language as tl\n\n\n" + triton_math.helper_sources(names) + MATH_KERNELS)
        _MATH["module"] = codecache.load(src, "ntkc_mathtest")
    m = _MATH["module"]
    dtype = DTYPES[case["dtype"]]
    fn = case["fn"]
    if fn == "band_base":
        d = torch.tensor(case["x"], dtype=torch.int32)
        out = torch.empty_like(d)
        m.band_base_kernel[(1,)](d, out, case["n"], d.numel(), BLOCK=_pow2(d.numel()))
        return {"values": out.tolist()}
    x = torch.tensor(case["x"], dtype=torch.float64).to(dtype)
    out = torch.empty_like(x)
    block = 1024
    grid = (max(1, -(-x.numel() // block)),)
    if fn == "atan2":
        y = torch.tensor(case["y"], dtype=torch.float64).to(dtype)
        m.binary_kernel[grid](y, x, out, x.numel(), BLOCK=block)
    else:
        op = ["asin", "acos", "atan", "tanh", "sqrt", "rsqrt"].index(fn)
        m.unary_kernel[grid](x, out, x.numel(), OP=op, BLOCK=block)
    return {"values": out.double().tolist()}


def _pow2(n):
    p = 1
    while p < n:
        p *= 2
    return p


MATH_KERNELS = '''

@triton.jit
def unary_kernel(x_ptr, out_ptr, n, OP: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.5)
    if OP == 0:
        r = asin(x)
    elif OP == 1:
        r = acos(x)
    elif OP == 2:
        r = atan(x)
    elif OP == 3:
        r = tanh(x)
    elif OP == 4:
        r = sqrt(x)
    else:
        r = rsqrt(x)
    tl.store(out_ptr + offs, r, mask=mask)


@triton.jit
def binary_kernel(y_ptr, x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    y = tl.load(y_ptr + offs, mask=mask, other=0.0)
    x = tl.load(x_ptr + offs, mask=mask, other=1.0)
    tl.store(out_ptr + offs, atan2(y, x), mask=mask)


@triton.jit
def band_base_kernel(d_ptr, out_ptr, n, count, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    mask = offs < count
    d = tl.load(d_ptr + offs, mask=mask, other=0)
    tl.store(out_ptr + offs, band_base(d, n), mask=mask)
'''


def main() -> None:
    cases = json.load(sys.stdin)
    results = {}
    for case in cases:
        try:
            if case.get("kind", "kernel") == "math":
                results[case["id"]] = math_case(case)
            else:
                results[case["id"]] = kernel_case(case)
        except Exception:  # report, keep going: one broken case must not hide the others
            results[case["id"]] = {"error": traceback.format_exc()}
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()

"""numba code generation: a Plan's programs as fused CPU loop nests, one module per dtype.

    module = build(plan, "float32")      # records (data) first, then the module's text
    module.source                        # readable numba source (`ntkc compile FILE --emit numba`)

`kernels.lower_program` turns each program (pair, image) into kernel records; `writer` renders
each fused kernel; this module assembles the file: a header naming every kernel, the typed
constants, the math helpers the kernels call (`mathlib`) and the kernels themselves. The text
is a pure function of the plan and the dtype, so it is also the key of the disk cache.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ...plan.lower import Plan
from ..render import CodeBuffer
from . import mathlib
from .kernels import FusedKernel, MixKernel, ProgramKernels, lower_program
from .render import ConstantPool
from .writer import KernelWriter

GENERATOR_VERSION = 2


@dataclass
class Module:
    """A generated module (one dtype): its text and the kernels of both programs."""

    source: str
    dtype: str
    pair: ProgramKernels
    image: ProgramKernels
    stem: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:20]


def _stem(plan: Plan) -> str:
    stem = str(plan.network.filename).rsplit("/", 1)[-1]
    stem = stem[:-5] if stem.endswith(".arch") else stem
    return re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_")[:40] or "arch"


def build(plan: Plan, dtype: str) -> Module:
    """Generate the numba module of `plan` for `dtype` ("float32" or "float64")."""
    pair = lower_program(plan, plan.pair, image=False)
    image = lower_program(plan, plan.image, image=True)
    pool = ConstantPool()
    helpers: set[str] = set()
    texts = []
    for pk, is_image in ((pair, False), (image, True)):
        for k in pk.kernels:
            if isinstance(k, FusedKernel):
                w = KernelWriter(k, plan, pk, pool, is_image)
                texts.append(w.write())
                k.args = w.args
                k.width = w.width
                helpers |= w.helpers
    net = plan.network
    head = CodeBuffer()
    head.line(f'"""ntkc generated numba kernels for {net.filename} ({dtype}; generator v{GENERATOR_VERSION}).')
    head.line("")
    head.line(f"input {net.input}; {len(net.layers)} layers.")
    for pk in (pair, image):
        head.line(f"{pk.name} program:")
        for k in pk.kernels:
            head.line(f"  {k.name}: {_describe(k)}")
    head.line("")
    head.line("Run by ntkc.backends.numba (NumbaBackend); see its codegen, kernels and writer modules.")
    head.line('"""')
    head.line("import math")
    head.line("")
    head.line("import numpy as np")
    head.line("from numba import njit")
    head.line("from numba import uint64 as U")
    head.line("")
    parts = [head.text(), mathlib.constant_header(dtype), "# constants of the layers' math and windows\n" + pool.source()]
    if helpers:
        parts.append("# -- helpers (from ntkc.backends.numba.mathlib) " + "-" * 60 + "\n\n" + mathlib.helper_source(helpers, dtype))
    parts += texts
    source = "\n\n".join(p.rstrip("\n") + "\n" for p in parts)
    return Module(source, dtype, pair, image, _stem(plan))


def _describe(k) -> str:
    if isinstance(k, MixKernel):
        s = k.step
        return (f"mixing `{s.layer.name}` (line {s.layer.span.line}) over stored states "
                f"{k.in_store[0].size}x{k.in_store[1].size} -> {k.out_store[0].size}x{k.out_store[1].size}")
    steps = ", ".join(f"{s.layer.name}" for s, _, _ in k.steps) or "no layers"
    lay = "packed columns" if (k.g_first.packed or any(go.packed for _, _, go in k.steps)) else "exact columns"
    return f"{steps}; {len(k.tiles)} tile(s) per pair ({lay}); {k.source.value} -> {k.sink.value}"

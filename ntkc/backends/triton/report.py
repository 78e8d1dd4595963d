"""Ahead-of-time compilation of the generated kernels for GPUs this machine need not have, and
the resource report: registers, spill bytes, shared memory and stack per kernel and target.

`triton.compile(ASTSource(fn, signature, constexprs), target=GPUTarget("cuda", arch, 32))` gives
PTX and a cubin without a GPU (ptxas ships in the triton wheel); `resources` runs that same
ptxas with -v on the PTX for the exact spill counts. Kernels are compiled with the schedule the
runtime would use on a GPU (`schedule.launch`). Used by `ntkc compile FILE.arch --emit report`
and by the tests, where spills in a stage kernel fail.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import schedule
from ...util.precision import PRECISIONS
from ...plan.lower import Plan
from .codegen import KernelSpec, build


@dataclass(frozen=True)
class KernelReport:
    """Resources of one compiled kernel on one target (per thread: registers, spill bytes)."""

    kernel: str
    target: str
    dtype: str
    num_warps: int
    block_items: int
    registers: int
    spill_stores: int
    spill_loads: int
    shared: int
    local: int
    fused: bool          # a stage kernel (conv / activation layers), where spills fail the test

    @property
    def spills(self) -> int:
        return self.spill_stores + self.spill_loads


def compile_kernel(module, spec: KernelSpec, dtype: str, arch: int, launch: schedule.Launch):
    """Compile one kernel ahead of time for sm_<arch> (no GPU needed); return the CompiledKernel."""
    import inspect

    import triton
    from triton.backends.compiler import GPUTarget

    fn = getattr(module, spec.name)
    sig = spec.signature(dtype)
    params = inspect.signature(triton.compiler.ASTSource).parameters
    kwargs = {"constexprs": {"BLOCK_I": launch.block_items}} if "constexprs" in params else {"constants": {"BLOCK_I": launch.block_items}}
    src = triton.compiler.ASTSource(fn=fn, signature=sig, **kwargs)
    options = {"num_warps": launch.num_warps, "enable_fp_fusion": True}
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)


def resources(compiled, arch: int) -> dict[str, int]:
    """Registers, spill bytes, shared and local memory of a compiled kernel, read by ptxas -v."""
    import re
    import subprocess
    import tempfile

    ptxas = _ptxas(arch)
    with tempfile.TemporaryDirectory() as tmp:
        ptx = f"{tmp}/k.ptx"
        with open(ptx, "w") as f:
            f.write(compiled.asm["ptx"])
        proc = subprocess.run([ptxas, "-v", f"-arch=sm_{arch}a" if arch >= 90 else f"-arch=sm_{arch}", ptx, "-o", f"{tmp}/k.cubin"],
                              capture_output=True, text=True, check=True)
    log = proc.stderr + proc.stdout
    num = lambda pat: int(m.group(1)) if (m := re.search(pat, log)) else 0  # noqa: E731
    return {
        "registers": num(r"Used (\d+) registers"),
        "spill_stores": num(r"(\d+) bytes spill stores"),
        "spill_loads": num(r"(\d+) bytes spill loads"),
        "stack": num(r"(\d+) bytes stack frame"),
        "shared": int(compiled.metadata.shared),
    }


def _ptxas(arch: int) -> str:
    """The ptxas that Triton itself uses for sm_<arch> (newer triton picks one per target)."""
    import inspect as _inspect

    from triton.backends.nvidia import compiler as nv
    fn = nv.get_ptxas
    tool = fn(arch) if _inspect.signature(fn).parameters else fn()
    return tool.path if hasattr(tool, "path") else tool[0]


def report(plan: Plan, archs=(80, 90), dtypes=PRECISIONS, module=None) -> list[KernelReport]:
    """Compile every kernel of `plan` for each target and dtype (with the GPU schedule) and list
    registers, spills and memory per kernel. Needs compiled (not interpreted) Triton."""
    from . import codecache
    gen = build(plan)
    module = module or codecache.load(gen.source, gen.module_name)
    return [_report_one(module, spec, dtype, arch) for spec in gen.kernels for dtype in dtypes for arch in archs]


def _report_one(module, spec: KernelSpec, dtype: str, arch: int) -> KernelReport:
    launch = schedule.launch(spec.positions, dtype, 1, reduce_only=spec.reduce_only)
    compiled = compile_kernel(module, spec, dtype, arch, launch)
    r = resources(compiled, arch)
    return KernelReport(spec.name, f"sm_{arch}", dtype, launch.num_warps, launch.block_items, r["registers"],
                        r["spill_stores"], r["spill_loads"], r["shared"], r["stack"], fused=not spec.reduce_only)


def _report_job(job) -> tuple[str, KernelReport]:
    source, filename, index, dtype, arch = job
    from ...lang.network import build as build_network
    from . import codecache
    from ...plan.lower import lower
    gen = build(lower(build_network(source, filename)))
    module = codecache.load(gen.source, gen.module_name)
    return filename, _report_one(module, gen.kernels[index], dtype, arch)


def report_many(files, jobs: list[tuple[int, str]] | None = None, workers: int = 2) -> dict[str, list[KernelReport]]:
    """Reports for several .arch files (paths), compiled by `workers` processes at once.

    `jobs`: the (arch, dtype) pairs to compile each kernel for (default: sm_80 and sm_90, float32
    and float64). Workers are started without TRITON_INTERPRET, so this also works from a
    process that runs the interpreter.
    """
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor
    from pathlib import Path

    jobs = jobs or [(a, d) for d in PRECISIONS for a in (80, 90)]
    work = []
    from ...lang.network import build as build_network
    from ...plan.lower import lower
    for f in files:
        source = Path(f).read_text()
        gen = build(lower(build_network(source, str(f))))
        for i in range(len(gen.kernels)):
            for arch, dtype in jobs:
                work.append((source, str(f), i, dtype, arch))
    out: dict[str, list[KernelReport]] = {str(f): [] for f in files}
    old = os.environ.pop("TRITON_INTERPRET", None)
    try:
        with ProcessPoolExecutor(max(1, workers), mp_context=mp.get_context("spawn")) as pool:
            for filename, row in pool.map(_report_job, work):
                out[filename].append(row)
    finally:
        if old is not None:
            os.environ["TRITON_INTERPRET"] = old
    return out


def format_report(rows: list[KernelReport]) -> str:
    head = f"{'kernel':<16} {'target':<7} {'dtype':<8} {'warps':>5} {'BLOCK_I':>7} {'regs':>5} {'spill st/ld (B)':>16} {'shared':>7} {'stack':>6}"
    out = [head, "-" * len(head)]
    for r in rows:
        out.append(f"{r.kernel:<16} {r.target:<7} {r.dtype:<8} {r.num_warps:>5} {r.block_items:>7} {r.registers:>5} "
                   f"{f'{r.spill_stores}/{r.spill_loads}':>16} {r.shared:>7} {r.local:>6}")
    return "\n".join(out)

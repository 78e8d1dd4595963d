"""Ahead-of-time compilation of generated kernels for GPUs this machine need not have.

`triton.compile(ASTSource(fn, signature, constexprs), target=GPUTarget("cuda", arch, 32))` gives
PTX and a cubin without a GPU (ptxas and nvdisasm ship in the triton wheel). Each kernel is
compiled with the program shape the launcher uses on a GPU (`gpu_shape`) and with floating-point
contraction stated as at launch. `resources` runs the same ptxas with -v on the PTX for
registers and spill bytes; `disassemble` lists the SASS for the speed model.
"""
from __future__ import annotations

import inspect
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass

from . import schedule
from .coverage import Kind


@dataclass(frozen=True)
class GpuShape:
    """How a kernel runs on a GPU: its constexprs, warps per program and programs per pair."""

    constexprs: dict
    num_warps: int
    programs_per_pair: float
    notes: str


def gpu_shape(gen, info, dtype: str) -> GpuShape:
    """The launcher's GPU program shape for kernel `info` of module `gen` in `dtype`."""
    if info.kind is Kind.CIRCULANT:
        p = info.plan
        launch = schedule.circulant_launch(p.tiles_x.count, p.width, dtype)
        tiles = launch.block_p * launch.block_x
        return GpuShape({"BLOCK_P": launch.block_p, "BLOCK_X": launch.block_x}, launch.num_warps,
                        p.tiles_per_pair / tiles, f"BLOCK_P={launch.block_p}, BLOCK_X={launch.block_x}, "
                                                  f"{p.tiles_per_pair} tile(s) per pair")
    if info.kind is Kind.EPILOGUE:
        n_parts = partial_sums(gen, gen.kernels[info.index - 1], dtype)
        bp, br, warps = schedule.epilogue_launch(n_parts)
        return GpuShape({"N_PARTS": n_parts, "BLOCK_P": bp, "BLOCK_R": br}, warps, 1.0 / bp,
                        f"N_PARTS={n_parts}, BLOCK_P={bp}, BLOCK_R={br}")
    spec = info.legacy
    launch = schedule.launch(spec.positions, dtype, 1, reduce_only=spec.reduce_only)
    return GpuShape({"BLOCK_I": launch.block_items}, launch.num_warps, spec.planes / launch.block_items,
                    f"BLOCK_I={launch.block_items}, {spec.planes} item(s) per pair (v1 persistent grid)")


def partial_sums(gen, info, dtype: str) -> int:
    """Partial sums per pair that kernel `info` hands to a full sum."""
    if info.kind is Kind.CIRCULANT:
        p = info.plan
        launch = schedule.circulant_launch(p.tiles_x.count, p.width, dtype)
        return p.tiles_y.count * (p.tiles_x.count // launch.block_x)
    return info.legacy.out_per_pair


def compile_kernel(fn, signature: dict, constexprs: dict, arch: int, num_warps: int):
    """Compile one `@triton.jit` kernel for sm_<arch> without a GPU; returns Triton's CompiledKernel."""
    import triton
    from triton.backends.compiler import GPUTarget

    params = inspect.signature(triton.compiler.ASTSource).parameters
    key = "constexprs" if "constexprs" in params else "constants"
    src = triton.compiler.ASTSource(fn=fn, signature=signature, **{key: constexprs})
    return triton.compile(src, target=GPUTarget("cuda", arch, 32),
                          options={"num_warps": num_warps, "enable_fp_fusion": schedule.FP_FUSION})


def compile_info(module, gen, info, dtype: str, arch: int):
    """(CompiledKernel, GpuShape) of kernel `info` of a generated module."""
    shape = gpu_shape(gen, info, dtype)
    fn = getattr(module, info.name)
    return compile_kernel(fn, info.signature(dtype), shape.constexprs, arch, shape.num_warps), shape


def _ptxas(arch: int) -> str:
    """The ptxas that Triton itself uses for sm_<arch> (newer triton picks one per target)."""
    from triton.backends.nvidia import compiler as nv
    fn = nv.get_ptxas
    tool = fn(arch) if inspect.signature(fn).parameters else fn()
    return tool.path if hasattr(tool, "path") else tool[0]


def _nvdisasm() -> str:
    import triton
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "nvdisasm")


def resources(compiled, arch: int) -> dict[str, int]:
    """Registers, spill bytes, stack and shared memory of a compiled kernel (ptxas -v)."""
    with tempfile.TemporaryDirectory() as tmp:
        ptx = os.path.join(tmp, "k.ptx")
        with open(ptx, "w") as f:
            f.write(compiled.asm["ptx"])
        target = f"-arch=sm_{arch}a" if arch >= 90 else f"-arch=sm_{arch}"
        proc = subprocess.run([_ptxas(arch), "-v", target, ptx, "-o", os.path.join(tmp, "k.cubin")],
                              capture_output=True, text=True, check=True)
    log = proc.stderr + proc.stdout
    num = lambda pat: int(m.group(1)) if (m := re.search(pat, log)) else 0  # noqa: E731
    return {"registers": num(r"Used (\d+) registers"), "spill_stores": num(r"(\d+) bytes spill stores"),
            "spill_loads": num(r"(\d+) bytes spill loads"), "stack": num(r"(\d+) bytes stack frame"),
            "shared": int(compiled.metadata.shared)}


def disassemble(compiled) -> str:
    """The SASS of a compiled kernel, as nvdisasm prints it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.cubin")
        with open(path, "wb") as f:
            f.write(compiled.asm["cubin"])
        return subprocess.run([_nvdisasm(), "-c", path], capture_output=True, text=True, check=True).stdout

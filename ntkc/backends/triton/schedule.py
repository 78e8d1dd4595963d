"""The schedule of the generated Triton kernels: block sizes, warps, grid and unrolling.

This is the only place for such numbers (Halide's split of algorithm and schedule): the code
generator and the runtime ask here, rules never see them, and no choice made here changes a
result beyond summation order (tests run the same plan under different schedules).

A stage kernel works on a tile of BLOCK_I items (an item is one displacement plane of one pair)
by the positions of a plane, padded to powers of two. BLOCK_I is chosen so that the tile holds
about `TILE_ELEMENTS` numbers, and `num_warps` so that each thread holds about
`ELEMENTS_PER_THREAD` of them per live tile.

Why one number per thread: ahead-of-time compiles for sm_90 of the depth-21 CNTK stage kernel
(one 32x32 plane per program) need 166 / 98 / 56 registers per thread at 4 / 2 / 1 numbers per
thread in float32 (255 / 128 / 58 in float64, where 4 per thread spills): only the last lets a
whole 1024-thread program stay resident (32 warps per SM). Not yet measured on a GPU; run
benchmarks/gpu_bench.py with other values here before trusting these.
"""
from __future__ import annotations

from dataclasses import dataclass

# numbers per tile (BLOCK_I x positions) on a GPU, and per thread
TILE_ELEMENTS = {"float32": 1024, "float64": 1024}
ELEMENTS_PER_THREAD = {"float32": 1, "float64": 1}
MAX_WARPS = 32
# programs per streaming multiprocessor for the persistent grid
PROGRAMS_PER_SM = 4
# the interpreter runs programs one after another on numpy arrays: few, wide tiles are fastest
INTERPRET_TILE_ELEMENTS = 8192
INTERPRET_PROGRAMS = 2
# partial sums read per step by a full-sum (gap) reduction
REDUCE_BLOCK = 256
REDUCE_BLOCK_ITEMS = 4
# numbers cleared per step when a program zeroes its scratch
CLEAR_BLOCK = 1024

# code generation: window terms / input channels up to these counts are unrolled
# (`tl.static_range`), beyond them a run-time loop keeps the kernel small
UNROLL_TERMS = 64
UNROLL_CHANNELS = 16
# a block of layers repeated at least this many times in a row becomes a run-time loop
LOOP_MIN_REPEATS = 3


@dataclass(frozen=True)
class Launch:
    """How one kernel is launched: items per program, warps, and the most programs at once."""

    block_items: int
    num_warps: int
    max_programs: int


def _pow2_floor(x: int) -> int:
    p = 1
    while p * 2 <= x:
        p *= 2
    return p


def launch(positions: int, dtype: str, programs_cap: int, interpret: bool = False,
           reduce_only: bool = False) -> Launch:
    """The launch of a kernel whose largest plane tile has `positions` (a power of two) slots.

    `programs_cap`: the most programs worth running at once on the device (see `max_programs`).
    `reduce_only`: a kernel that reads partial sums and works on 1x1 maps (the gap epilogue).
    """
    if reduce_only:  # tiles of BLOCK_I x REDUCE_BLOCK partial sums
        if interpret:
            return Launch(max(1, INTERPRET_TILE_ELEMENTS // REDUCE_BLOCK), 1, INTERPRET_PROGRAMS)
        return Launch(REDUCE_BLOCK_ITEMS, 4, programs_cap)
    if interpret:
        block = max(1, _pow2_floor(INTERPRET_TILE_ELEMENTS // positions))
        return Launch(block, 1, INTERPRET_PROGRAMS)
    block = max(1, _pow2_floor(TILE_ELEMENTS[dtype] // positions))
    per_thread = ELEMENTS_PER_THREAD[dtype]
    warps = max(1, min(MAX_WARPS, _pow2_floor(max(1, block * positions // (32 * per_thread)))))
    return Launch(block, warps, programs_cap)


def max_programs(device) -> int:
    """Programs of a persistent grid on `device` (a torch device)."""
    import torch
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return props.multi_processor_count * PROGRAMS_PER_SM
    return INTERPRET_PROGRAMS

"""The schedule of the generated Triton kernels: block sizes, warps, grid and unrolling.

This is the only place for such numbers (Halide's split of algorithm and schedule): the code
generator and the runtime ask here, rules never see them, and no choice made here changes a
result beyond summation order (tests run the same plan under different schedules).

v2 kernels (`circulant_launch`, `epilogue_launch`). A circulant program holds BLOCK_P pairs x
BLOCK_X tile columns of one tile row, one warp per tile (W lanes, W <= 32): 4 tiles per program
in float32 and 2 in float64 on a GPU (float64's S and T rows alone take 128 registers), and at
least one full warp of lanes. In the interpreter, few wide programs (its cost is per operation,
not per element). Activations run on ACT_PARTS interleaved parts of a tile's rows, one after the
other, which bounds their temporaries (in float64 the whole tile's at once exceed 255 registers).
Floating-point contraction is stated at every launch and AOT compile (FP_FUSION): Triton 3.9
warns that its default flips in 3.10, and the kernels are exact on self pairs either way.

v1 kernels (`launch`). A stage kernel works on a tile of BLOCK_I items (an item is one displacement plane of one pair)
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


# v2: tiles per program on a GPU, the epilogue's (BLOCK_P, BLOCK_R), interpreter shapes
V2_TILES = {"float32": 4, "float64": 2}
EPILOGUE_GPU = (16, 64)          # 8 partial sums per thread at 4 warps
EPILOGUE_INTERPRET = (64, 128)
INTERPRET_TILE_COLUMNS = 64      # BLOCK_P * BLOCK_X * (W / 8) in the interpreter
ACT_PARTS = 4
FP_FUSION = True


@dataclass(frozen=True)
class CirculantLaunch:
    """A circulant kernel's program: BLOCK_P pairs x BLOCK_X tile columns, `num_warps` warps."""

    block_p: int
    block_x: int
    num_warps: int


def circulant_launch(tiles_x: int, width: int, dtype: str, interpret: bool = False) -> CirculantLaunch:
    """The program shape of a circulant kernel with `tiles_x` tile columns of `width` lanes."""
    if interpret:
        bx = tiles_x
        bp = max(1, INTERPRET_TILE_COLUMNS // max(1, bx * max(1, width // 8)))
        return CirculantLaunch(_pow2_floor(bp), bx, 1)
    tiles = max(V2_TILES[dtype], 32 // width)          # at least one full warp of lanes
    bx = min(tiles_x, tiles)
    while tiles_x % bx:
        bx //= 2
    bp = max(1, tiles // bx)
    return CirculantLaunch(bp, bx, max(1, bp * bx * width // 32))


def epilogue_launch(n_parts: int, interpret: bool = False) -> tuple[int, int, int]:
    """(BLOCK_P, BLOCK_R, num_warps) of an epilogue adding `n_parts` partial sums per pair."""
    bp, br = EPILOGUE_INTERPRET if interpret else EPILOGUE_GPU
    return bp, min(br, max(2, _pow2_ceil(n_parts))), 1 if interpret else 4


def _pow2_ceil(x: int) -> int:
    p = 1
    while p < x:
        p *= 2
    return p


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

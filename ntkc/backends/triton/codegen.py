"""Triton code generation: a Plan's pair program as one module of generated `@triton.jit` kernels.

    source = generate(plan)          # the module's text (what `ntkc compile --emit triton` prints)
    program = build(plan)            # the text plus a `KernelInfo` per kernel, for the runtime

Two generators write the kernels of one module (`module.build`), stage by stage as
`coverage.coverage` decides (the reason is in the module's header):

- v2 (`circulant.py`, `epilogue.py`, from the records of `records.py`): stage 0 on power-of-two
  maps of at most 32 x 32 with same-size stride-1 convs, activations and residual blocks, as
  circulant tiles in registers (every lane useful, no scratch, no barrier), and the scalar
  epilogue after `gap`. Cheaper exact activation math (`activations.py`, `fastmath.py`), the
  self-pair determinant exact under FMA contraction. Images and variance maps are read per image
  through pair indices.
- v1 (`writer.py`, below): every other stage (pooling and lap gathers, strided, valid or
  circular convs, other map sizes), with per-pair copies of the images and maps. A plan with no
  v2 stage gets the v1 module unchanged (`legacy_module.build_legacy`).

The rest of this docstring describes the v1 generator.

Kernels. Each stage of the pair program becomes one kernel (a full-sum readout such as `gap` is
folded into its neighbours, see below). A kernel works on *items*: an item is one displacement
plane D of one pair, identified by the plane D_out it produces at the end of the stage. Inside a
stage no layer mixes planes, so every layer works on a single plane per item, D_l = M_l * D_out
(M_l: the product of the strides after layer l): the whole chain of conv + activation layers
runs per item without leaving the program.

Tiles. A program holds BLOCK_I items x the positions of a plane (padded to powers of two) as 2-D
register tiles: `s` (NNGP) and `t` (NTK), position p on the a-side of the pair, p - D on the
b-side; on a GPU one thread holds one position (a 32x32 plane is a 1024-thread program; see
`schedule` for why). Activations are element-wise on the tiles. A conv needs the plane at
shifted positions, which registers cannot give: the program stores the tile into its own frame
in a scratch buffer (a few KiB per program, written and re-read at once, so it stays in L1),
waits at `tl.debug_barrier()`, and loads it back once per tap. The frame has a border of zeros
as wide as the window reaches, and every tile is exactly zero outside its plane, so a tap is one
unmasked load at a constant offset (about 140 SASS instructions per position for a conv + relu
layer pair on sm_90, 20 of them loads). Two frames alternate between layers, so one barrier per
conv suffices. The grid is persistent (a few programs per SM, each looping over item blocks),
which bounds the scratch to grid x frame; it is cleared once per program.

Depth. A block of layers repeated with identical rules, parameters and shapes (`repeat 19 {
conv; relu }`) becomes one run-time loop over its repetitions, so the code size and the compile
time do not grow with depth (the depth-21 kernels compile in seconds).

Sources and sinks. Stage 0 forms its input covariance on the fly from the two images
(`S[p, p - D] = (1/C) sum_c xa[c, p] xb[c, p - D]`, T = 0). A later stage opens with its plane-
mixing layer (pooling, circular conv), which gathers the planes the previous kernel stored in
device memory, band by band without empty slots (`mathlib.band_base`). A full-sum window
(`gap`: every entry of every plane, weight 1/(hw)^2) is not a gather: the kernel before it
stores one partial sum per item instead of the planes, and the kernel that opens with it adds
a pair's partial sums (a deterministic two-step reduction, no atomics) and runs the rest of the
program (dense layers, activations on scalars) on [BLOCK_I, 1] tiles. A readout inside a stage
(`flatten`: plane 0 only) is a masked `tl.sum` over the tile. NNGP and NTK come out of the same
pass; a T that is known to be zero (before the first trainable layer) is not computed at all.

Nothing here knows a layer by name: windows come from each step's `Window` / `AxisWindow`
(identity, full-sum and single-output reductions are recognised by their shape), activation
math from tracing the rule's `maps` (its `nngp` and `dfactor`, as the torch backend evaluates them;
rendered by `render`). Block sizes, warps, grid and
unrolling thresholds come from `schedule`.

The image program (variance maps, O(N) work) is not generated: the Triton backend runs it with
the torch backend on the same device.
"""
from .kernels import Generated, KernelInfo, KernelSpec  # noqa: F401
from .module import GENERATOR_VERSION, build, decide, generate  # noqa: F401
from .windows import _classify, _reduce_range, band_size, is_full_sum  # noqa: F401

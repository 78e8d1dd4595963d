"""Triton code generation: a Plan's pair program as one module of generated `@triton.jit` kernels.

    source = generate(plan)          # the module's text (what `ntkc compile --emit triton` prints)
    program = build(plan)            # the text plus a `KernelSpec` per kernel, for the runtime

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
device memory, band by band without empty slots (`triton_math.band_base`). A full-sum window
(`gap`: every entry of every plane, weight 1/(hw)^2) is not a gather: the kernel before it
stores one partial sum per item instead of the planes, and the kernel that opens with it adds
a pair's partial sums (a deterministic two-step reduction, no atomics) and runs the rest of the
program (dense layers, activations on scalars) on [BLOCK_I, 1] tiles. A readout inside a stage
(`flatten`: plane 0 only) is a masked `tl.sum` over the tile. NNGP and NTK come out of the same
pass; a T that is known to be zero (before the first trainable layer) is not computed at all.

Nothing here knows a layer by name: windows come from each step's `Window` / `AxisWindow`
(identity, full-sum and single-output reductions are recognised by their shape), activation
math from tracing the rule's `maps` (its `nngp` and `dfactor`, as the torch backend evaluates them;
rendered by `triton_render`). Block sizes, warps, grid and
unrolling thresholds come from `schedule`.

The image program (variance maps, O(N) work) is not generated: the Triton backend runs it with
the torch backend on the same device.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from . import schedule
from ...rules.ops import trace_maps
from ...plan.lower import Band, Plan, Program, Step
from ...rules.base import AxisWindow, Window
from .mathlib import band_base_py, helper_sources
from .render import CodeBuffer, MathRenderer, literal

GENERATOR_VERSION = 1


# ---------------------------------------------------------------------------------------------
# what the runtime needs to know about each kernel


@dataclass(frozen=True)
class KernelSpec:
    """One generated kernel: what it reads, what it writes, and its arguments in order.

    `source`: "images" (forms the input covariance), "planes" (gathers stored planes) or
    "partials" (adds per-item partial sums). `sink`: "planes", "partials" or "outputs".
    `out_per_pair`: numbers per pair in each of its S / T output buffers; `in_per_pair` likewise
    for its input buffers. `planes`: items per pair. `positions`: the largest tile width.
    `scratch_row`: scratch numbers per item and slice (0: no scratch; the runtime allocates
    grid x 4 x BLOCK_I x scratch_row).
    """

    name: str
    index: int
    lines: tuple[int, ...]
    source: str
    sink: str
    planes: int
    in_per_pair: int
    out_per_pair: int
    t_in: bool
    t_out: bool
    positions: int
    scratch_row: int
    reduce_only: bool
    args: tuple[str, ...]

    def signature(self, dtype: str) -> dict[str, str]:
        """Triton types of the run-time arguments ("*fp32", "i32", ...) for ahead-of-time compiles."""
        ptr = {"float32": "*fp32", "float64": "*fp64"}[dtype]
        out = {}
        for a in self.args:
            if a == "same_ptr":
                out[a] = "*i8"
            elif a.endswith("_ptr"):
                out[a] = ptr
            else:
                out[a] = "i32"
        out["BLOCK_I"] = "constexpr"
        return out


@dataclass(frozen=True)
class Generated:
    """A generated module: its source, its kernels in launch order, and the layout of the packed
    variance maps (`var_offsets[k]`: where activation k's map starts in a row of `var_size`)."""

    source: str
    kernels: tuple[KernelSpec, ...]
    var_offsets: tuple[int, ...]
    var_size: int
    module_name: str


# ---------------------------------------------------------------------------------------------
# window shapes, recognised structurally


@dataclass(frozen=True)
class _Progression:
    start: int
    step: int
    count: int

    def range_args(self) -> str:
        if self.step == 1 and self.start == 0:
            return f"{self.count}"
        return f"{self.start}, {self.start + self.step * self.count}, {self.step}"


def _progression(values) -> _Progression | None:
    vals = sorted(values)
    if not vals or len(set(vals)) != len(vals):
        return None
    step = vals[1] - vals[0] if len(vals) > 1 else 1
    if step <= 0 or any(b - a != step for a, b in zip(vals, vals[1:])):
        return None
    return _Progression(vals[0], step, len(vals))


@dataclass(frozen=True)
class _Terms:
    """An axis' (e, e') terms as loops: 'diag' e = e' over a progression; 'product' e and e'
    over two progressions independently; 'list' anything else (unrolled one by one)."""

    kind: str
    a: _Progression | None = None
    b: _Progression | None = None
    pairs: tuple[tuple[int, int], ...] = ()

    @property
    def count(self) -> int:
        if self.kind == "diag":
            return self.a.count
        if self.kind == "product":
            return self.a.count * self.b.count
        return len(self.pairs)


def _classify(terms) -> _Terms:
    terms = tuple(tuple(t) for t in terms)
    if all(a == b for a, b in terms):
        p = _progression([a for a, _ in terms])
        if p is not None:
            return _Terms("diag", p, p)
    pa = _progression(sorted({a for a, _ in terms}))
    pb = _progression(sorted({b for _, b in terms}))
    if pa and pb and len(terms) == len(set(terms)) == pa.count * pb.count:
        return _Terms("product", pa, pb)
    return _Terms("list", pairs=terms)


def is_full_sum(w: Window | None) -> bool:
    """A window that adds every entry of every plane once (global average pooling)."""
    if w is None:
        return False

    def full(ax: AxisWindow) -> bool:
        n = ax.n_in
        return (ax.n_out == 1 and ax.offset == 0 and not ax.wrap and len(ax.terms) == n * n
                and set(ax.terms) == {(e, f) for e in range(n) for f in range(n)})

    return full(w.rows) and full(w.cols)


def _reduce_range(ax: AxisWindow) -> tuple[int, int] | None:
    """For a non-mixing axis with one output reading a contiguous run: input positions [lo, hi]."""
    if ax.n_out != 1 or ax.wrap:
        return None
    t = _classify(ax.terms)
    if t.kind != "diag" or t.a.step != 1:
        return None
    return ax.offset + t.a.start, ax.offset + t.a.start + t.a.count - 1


def _plus(k: int) -> str:
    """` + k`, ` - |k|` or nothing, to append a constant to an expression."""
    return f" + {k}" if k > 0 else (f" - {-k}" if k < 0 else "")


def _pow2(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


def band_size(band: Band) -> int:
    """Stored numbers for a band of displacement planes along one axis (no empty slots)."""
    return band_base_py(band.hi + 1, band.n) - band_base_py(band.lo, band.n)


# ---------------------------------------------------------------------------------------------
# building the kernel list from the plan


@dataclass
class _Draft:
    steps: tuple[Step, ...]
    source: str
    opener: Step | None
    out_band: tuple[Band, Band]
    out_shape: tuple[int, int]
    in_band: tuple[Band, Band] | None = None
    sink: str = "outputs"
    t_in: bool = False
    t_out: bool = False


def _drafts(prog: Program, network) -> list[_Draft]:
    drafts: list[_Draft] = []
    inp = network.input
    for stage in prog.stages:
        opener = stage.opener
        last = stage.steps[-1]
        out_shape = (last.layer.out_shape.height, last.layer.out_shape.width)
        if opener is not None and is_full_sum(opener.window):
            if not drafts:  # a full sum of the input covariance: a kernel of its own forms it
                drafts.append(_Draft((), "images", None, prog.input_demand, (inp.height, inp.width)))
            drafts[-1].sink = "partials"
            d = _Draft(stage.steps, "partials", opener, last.demand_out, out_shape, opener.demand_in)
        elif opener is not None:
            if drafts:
                drafts[-1].sink = "planes"
                d = _Draft(stage.steps, "planes", opener, last.demand_out, out_shape, opener.demand_in)
            else:
                d = _Draft(stage.steps, "images", opener, last.demand_out, out_shape)
        else:
            d = _Draft(stage.steps, "images", None, last.demand_out, out_shape)
        drafts.append(d)
    t = False
    for d in drafts:
        d.t_in = t if d.source != "images" else False
        t = d.t_in
        for s in d.steps:
            if s.window is not None and s.window.trainable:
                t = True
        d.t_out = t
    return drafts


def _multipliers(steps) -> list[tuple[int, int]]:
    """M per step output: the plane of step l's output is M_l * (the item's final plane)."""
    out = [(1, 1)] * len(steps)
    m = (1, 1)
    for i in reversed(range(len(steps))):
        out[i] = m
        w = steps[i].window
        if w is not None and not w.mixes:
            m = (m[0] * w.rows.stride, m[1] * w.cols.stride)
    return out


def _signature(step: Step, mult) -> tuple:
    layer = step.layer
    return (layer.rule.name, layer.params, step.window, layer.in_shape, layer.out_shape, mult)


_MAX_BLOCK = 32  # the longest block of layers looked for as a repeated unit


def _find_run(sig: list[tuple], i: int) -> tuple[int, int]:
    """The block length and repeat count of the longest run of identical blocks at sig[i]
    (step signatures: same rules, parameters, windows, shapes and planes; (1, 1) if none)."""
    best = (1, 1)
    n = len(sig)
    for length in range(1, min(_MAX_BLOCK, (n - i) // 2) + 1):
        first = sig[i:i + length]
        if first[0][3] != first[-1][4]:  # the block must end on the shape it starts from
            continue
        reps = 1
        while i + (reps + 1) * length <= n and sig[i + reps * length:i + (reps + 1) * length] == first:
            reps += 1
        if reps > 1 and length * reps > best[0] * best[1]:
            best = (length, reps)
    return best


def _input_multiplier(steps, mults) -> tuple[int, int]:
    if not steps:
        return (1, 1)
    w = steps[0].window
    m = mults[0]
    if w is not None and not w.mixes:
        return (m[0] * w.rows.stride, m[1] * w.cols.stride)
    return m


# ---------------------------------------------------------------------------------------------
# writing one kernel


class _KernelWriter:
    """Emits one stage kernel into a CodeBuffer; records the helpers and arguments it uses."""

    def __init__(self, draft: _Draft, index: int, plan: Plan, var_offsets, in_per_pair: int):
        self.d = draft
        self.index = index
        self.plan = plan
        self.var_offsets = var_offsets
        self.in_per_pair = in_per_pair
        self.name = f"stage{index}_kernel"
        self.body = CodeBuffer(2)      # inside the item loop
        self.hoisted = CodeBuffer(1)   # before the item loop
        self.helpers: set[str] = set()
        self.args: list[str] = []
        self.shapes: dict[tuple[int, int], tuple[str, str, str]] = {}
        self.planes: dict[tuple, tuple[str, str, str]] = {}
        self.areas: dict[tuple, dict] = {}   # scratch areas, one per plane layout
        self.loop: dict | None = None        # inside a run-time loop over repeated layers
        self.taps: dict[tuple, str] = {}
        self.math_count = 0
        act_layers = plan.activations
        self.act_ordinal = {layer: k for k, layer in enumerate(act_layers)}

    # -- small pieces ---------------------------------------------------------------------------

    def arg(self, *names: str) -> None:
        for n in names:
            if n not in self.args:
                self.args.append(n)

    def positions(self, shape: tuple[int, int]) -> tuple[str, str, str]:
        """Names of the hoisted position rows (py, px) and the in-map mask for a plane shape."""
        if shape not in self.shapes:
            ny, nx = shape
            by, bx = _pow2(ny), _pow2(nx)
            tag = f"{ny}x{nx}"
            h = self.hoisted
            h.line(f"# positions of a {ny}x{nx} plane, padded to {by}x{bx}")
            h.line(f"offs_yx_{tag} = tl.arange(0, {by * bx})[None, :]")
            h.line(f"py_{tag} = offs_yx_{tag} // {bx}")
            h.line(f"px_{tag} = offs_yx_{tag} % {bx}")
            h.line(f"mask_yx_{tag} = (py_{tag} < {ny}) & (px_{tag} < {nx})")
            self.shapes[shape] = (f"py_{tag}", f"px_{tag}", f"mask_yx_{tag}")
        return self.shapes[shape]

    @staticmethod
    def tile_positions(shape) -> int:
        return _pow2(shape[0]) * _pow2(shape[1])

    @staticmethod
    def disp(m: int, axis: str) -> str:
        return f"d{axis}" if m == 1 else f"(d{axis} * {m})"

    def plane(self, shape, mult) -> tuple[str, str, str]:
        """b-side rows / cols (q = p - D) and the valid-entry mask of plane M * D of a map."""
        key = (shape, mult)
        if key not in self.planes:
            k = len(self.planes)
            py, px, myx = self.positions(shape)
            ny, nx = shape
            b = self.body
            b.line(f"# plane D = {self._mult_text(mult)} of the {ny}x{nx} map: b-side q = p - D, valid where q is inside")
            b.line(f"qy{k} = {py} - {self.disp(mult[0], 'y')}")
            b.line(f"qx{k} = {px} - {self.disp(mult[1], 'x')}")
            b.line(f"mask{k} = mask_i & {myx} & (qy{k} >= 0) & (qy{k} < {ny}) & (qx{k} >= 0) & (qx{k} < {nx})")
            self.planes[key] = (f"qy{k}", f"qx{k}", f"mask{k}")
        return self.planes[key]

    @staticmethod
    def _mult_text(m) -> str:
        return "(dy, dx)" if m == (1, 1) else f"({m[0]} dy, {m[1]} dx)"

    def comment_step(self, step: Step) -> None:
        self.body.line("")
        self.body.line(f"# line {step.layer.span.line}: {step.layer.describe()}")

    def zeros(self, shape_expr: str) -> str:
        return f"tl.zeros({shape_expr}, dtype=DTYPE)"

    # -- the kernel -----------------------------------------------------------------------------

    def write(self) -> tuple[str, KernelSpec]:
        d = self.d
        steps = d.steps
        mults = _multipliers(steps)
        band_y, band_x = d.out_band
        n_planes = band_y.count * band_x.count
        first = 1 if d.opener is not None else 0
        b = self.body

        # item decode
        b.line("offs_i = start + offs_i0")
        b.line("mask_i = (offs_i < n_items)[:, None]")
        if n_planes == 1:
            b.line("pair = offs_i[:, None].to(tl.int64)")
            b.line(f"dy = tl.zeros_like(offs_i)[:, None]{_plus(band_y.lo)}")
            b.line(f"dx = tl.zeros_like(offs_i)[:, None]{_plus(band_x.lo)}")
        else:
            b.line(f"pair = (offs_i // {n_planes})[:, None].to(tl.int64)")
            b.line(f"plane = (offs_i % {n_planes})[:, None]")
            b.line(f"dy = plane // {band_x.count}{_plus(band_y.lo)}  # displacement rows in [{band_y.lo}, {band_y.hi}]")
            b.line(f"dx = plane % {band_x.count}{_plus(band_x.lo)}  # displacement cols in [{band_x.lo}, {band_x.hi}]")
        if any(s.window is None for s in steps):
            self.arg("same_ptr")
            b.line("# self pairs (the same image twice), on the diagonal plane D = 0")
            b.line("same_diag = (tl.load(same_ptr + pair, mask=mask_i, other=0) != 0) & (dy == 0) & (dx == 0)")

        shape = None
        t_live = d.t_in
        if d.source == "images" and d.opener is None:
            m_in = _input_multiplier(steps, mults)
            shape = (self.plan.network.input.height, self.plan.network.input.width)
            self.input_tile(shape, m_in)
        elif d.source == "partials":
            self.partials_opener(d.opener)
            shape = (1, 1)
            t_live = d.t_in or d.opener.window.trainable
        else:
            self.gather_opener(d.opener, mults[0])
            shape = (d.opener.layer.out_shape.height, d.opener.layer.out_shape.width)
            t_live = d.t_in or d.opener.window.trainable

        cur_mult = mults[0] if d.opener is not None else _input_multiplier(steps, mults)
        i = first
        sig = [_signature(s, m) for s, m in zip(steps, mults)]
        while i < len(steps):
            length, reps = _find_run(sig, i)
            trainable = any(s.window is not None and s.window.trainable for s in steps[i:i + length])
            if reps >= schedule.LOOP_MIN_REPEATS and trainable and not t_live:
                # the first repetition brings T to life: run it on its own, loop over the rest
                reps = 1
            if reps >= schedule.LOOP_MIN_REPEATS:
                shape, cur_mult, t_live = self.repeated(steps, mults, i, length, reps, shape, cur_mult, t_live)
                i += length * reps
                continue
            step = steps[i]
            out_shape = (step.layer.out_shape.height, step.layer.out_shape.width)
            if step.window is None:
                t_live = self.activation(step, shape, mults[i], t_live)
            else:
                t_live = self.window(step, shape, out_shape, cur_mult, mults[i], t_live)
            shape = out_shape
            cur_mult = mults[i]
            i += 1
        self.sink(shape, cur_mult, t_live)
        assert t_live == d.t_out

        src = self.assemble(n_planes)
        lines = tuple(s.layer.span.line for s in steps)
        spec = KernelSpec(
            name=self.name, index=self.index, lines=lines, source=d.source, sink=d.sink,
            planes=n_planes, in_per_pair=self.in_per_pair, out_per_pair=self.out_per_pair(),
            t_in=d.t_in, t_out=d.t_out, positions=self.max_positions(), scratch_row=self.scratch_row,
            reduce_only=d.source == "partials" and self.max_positions() == 1,
            args=tuple(self.args),
        )
        return src, spec

    def repeated(self, steps, mults, i, length, reps, shape, cur_mult, t_live):
        """`reps` repetitions of steps[i:i+length] as one run-time loop (code size independent of
        depth). Everything a repetition reads is the same but its variance maps, `rep` blocks on."""
        block = steps[i:i + length]
        b = self.body
        lines = sorted({s.layer.span.line for s in block})
        b.line("")
        b.line(f"# lines {lines[0]}-{lines[-1]}, {reps} times over: a run-time loop, one copy of the code")
        # everything the body reads must exist before the loop: plane masks of every shape in it
        sh, m = shape, cur_mult
        for k, st in enumerate(block):
            self.plane(sh, m)
            sh = (st.layer.out_shape.height, st.layer.out_shape.width)
            m = mults[i + k]
            self.plane(sh, m)
        acts = [st for st in block if st.window is None]
        step_var = sum(st.layer.in_shape.height * st.layer.in_shape.width for st in acts)
        uses: dict[tuple, int] = {}
        sh, m = shape, cur_mult
        for k, st in enumerate(block):
            out = (st.layer.out_shape.height, st.layer.out_shape.width)
            if st.window is not None and self._is_stencil(st.window):
                key = self._area_key(st.window, sh, out)
                uses[key] = uses.get(key, 0) + 1
            sh, m = out, mults[i + k]
        self.loop = {"uses": uses, "seen": {}, "entry": {}, "var_step": step_var}
        b.line(f"for rep in range({reps}):")
        b.level += 1
        for k, st in enumerate(block):
            out = (st.layer.out_shape.height, st.layer.out_shape.width)
            if st.window is None:
                t_live = self.activation(st, shape, mults[i + k], t_live)
            else:
                t_live = self.window(st, shape, out, cur_mult, mults[i + k], t_live)
            shape, cur_mult = out, mults[i + k]
        b.level -= 1
        for key, u in uses.items():
            self.areas[key]["parity"] = (self.loop["entry"][key] + reps * u) % 2
        self.loop = None
        return shape, cur_mult, t_live

    def _is_stencil(self, w: Window) -> bool:
        return not w.identity and not (_reduce_range(w.rows) is not None and _reduce_range(w.cols) is not None)

    def _area_key(self, w: Window, in_shape, out_shape) -> tuple:
        by_i, bx_i = _pow2(in_shape[0]), _pow2(in_shape[1])
        by_o, bx_o = _pow2(out_shape[0]), _pow2(out_shape[1])
        return (in_shape, self._reach(w.rows, by_i, by_o), self._reach(w.cols, bx_i, bx_o))

    def out_per_pair(self) -> int:
        d = self.d
        if d.sink == "planes":
            return band_size(d.out_band[0]) * band_size(d.out_band[1])
        if d.sink == "partials":
            return d.out_band[0].count * d.out_band[1].count
        return 1

    @property
    def scratch_row(self) -> int:
        """Scratch numbers per item and (slice, tensor), over all areas."""
        return sum(a["size"] for a in self.areas.values())

    def max_positions(self) -> int:
        return max([self.tile_positions(s) for s in self.shapes] + [1])

    def assemble(self, n_planes: int) -> str:
        d = self.d
        out = CodeBuffer()
        # the batch size changes from call to call: do not compile a variant per value class
        out.line('@triton.jit(do_not_specialize=["n_pairs", "n_iters"])')
        out.line(f"def {self.name}(")
        with out.indent():
            for a in self.args:
                out.line(f"{a},")
            out.line("BLOCK_I: tl.constexpr,")
        out.line("):")
        with out.indent():
            lines = [s.layer.span.line for s in d.steps]
            what = (f"lines {lines[0]}-{lines[-1]}" if len(lines) > 1 else f"line {lines[0]}") if lines else "the input covariance"
            src = {"images": "the two images", "planes": "the planes stored by the previous kernel",
                   "partials": "the partial sums of the previous kernel"}[d.source]
            sink = {"planes": "stores its planes for the next kernel", "partials": "stores one partial sum per item",
                    "outputs": "stores NNGP and NTK per pair"}[d.sink]
            out.line(f'"""{what}; reads {src}, {sink}; {n_planes} item(s) per pair."""')
            out.line(f"DTYPE = {self.dtype_source()}.dtype.element_ty")
            out.line("pid = tl.program_id(0)")
            out.line(f"n_items = n_pairs * {n_planes}")
            out.line("offs_i0 = tl.arange(0, BLOCK_I)")
            if self.scratch_row:
                total = f"4 * BLOCK_I * {self.scratch_row}"
                out.line(f"# this program's scratch ({total} numbers); the borders must read as zeros: clear it once")
                out.line(f"scratch = scratch_ptr + pid.to(tl.int64) * ({total})")
                out.line(f"offs_z = tl.arange(0, {schedule.CLEAR_BLOCK})")
                out.line(f"for z0 in range(0, {total}, {schedule.CLEAR_BLOCK}):")
                with out.indent():
                    out.line(f"tl.store(scratch + z0 + offs_z, tl.zeros([{schedule.CLEAR_BLOCK}], dtype=DTYPE), mask=z0 + offs_z < {total})")
                out.line("tl.debug_barrier()")
            out.lines.extend(self.hoisted.lines)
            out.line("# persistent programs: block pid, pid + grid, ... (n_iters from the host, the same for all)")
            out.line("for it in range(0, n_iters):")
            with out.indent():
                out.line("start = (pid + it * tl.num_programs(0)) * BLOCK_I")
                if self.scratch_row:
                    out.line("tl.debug_barrier()  # the previous items' scratch reads are done")
            out.lines.extend(self.body.lines)
        return out.text()

    def dtype_source(self) -> str:
        for a in self.args:
            if a.endswith("_ptr") and a != "same_ptr":
                return a
        raise AssertionError("kernel without a data pointer")

    # -- sources ------------------------------------------------------------------------------

    def input_tile(self, shape, mult) -> None:
        """S of plane M * D of the input covariance, formed from the images."""
        b = self.body
        c = self.plan.network.input.channels
        py, px, _ = self.positions(shape)
        b.line("")
        b.line(f"# line {self.plan.network.input_span.line}: input, S[p, p - D] = (1/{c}) sum_c xa[c, p] xb[c, p - D], T = 0")
        qy, qx, mask = self.plane(shape, mult)
        self.arg("xa_ptr", "xb_ptr", "stride_xa_n", "stride_xa_c", "stride_xa_h", "stride_xa_w",
                 "stride_xb_n", "stride_xb_c", "stride_xb_h", "stride_xb_w")
        b.line(f"s = {self.zeros(f'[BLOCK_I, {self.tile_positions(shape)}]')}")
        loop = "tl.static_range" if c <= schedule.UNROLL_CHANNELS else "range"
        b.line(f"for c in {loop}({c}):")
        with b.indent():
            b.line(f"xa = tl.load(xa_ptr + pair * stride_xa_n + c * stride_xa_c + {py} * stride_xa_h + {px} * stride_xa_w, mask={mask}, other=0.0)")
            b.line(f"xb = tl.load(xb_ptr + pair * stride_xb_n + c * stride_xb_c + {qy} * stride_xb_h + {qx} * stride_xb_w, mask={mask}, other=0.0)")
            b.line("s += xa * xb")
        b.line(f"s = s / {c}")

    def _term_loops(self, terms: _Terms, axis: str, static: bool):
        """Variants of (loop headers, a-side offset, b-side offset) covering an axis' terms."""
        rng = "tl.static_range" if static else "range"
        if terms.kind == "diag":
            return [([f"for e{axis} in {rng}({terms.a.range_args()}):"], f"e{axis}", f"e{axis}")]
        if terms.kind == "product":
            return [([f"for e{axis} in {rng}({terms.a.range_args()}):",
                      f"for f{axis} in {rng}({terms.b.range_args()}):"], f"e{axis}", f"f{axis}")]
        return [([], str(a), str(bb)) for a, bb in terms.pairs]

    def _emit_terms(self, w: Window, body_fn) -> None:
        """Emit `body_fn(ea_y, eb_y, ea_x, eb_x)` for every term of the window, as loops."""
        ty, tx = _classify(w.rows.terms), _classify(w.cols.terms)
        static = ty.count * tx.count <= schedule.UNROLL_TERMS
        b = self.body
        for hy, ay, by in self._term_loops(ty, "y", static):
            for hx, ax, bx in self._term_loops(tx, "x", static):
                depth = 0
                for h in hy + hx:
                    b.line(h)
                    b.level += 1
                    depth += 1
                body_fn(ay, by, ax, bx)
                b.level -= depth

    def _axis_reads(self, ax: AxisWindow, p_out: str, q_out: str, ea: str, eb: str, axis: str) -> str:
        """Emit the a-side / b-side input coordinates of one axis of a term; return its mask."""
        b = self.body
        s = ax.stride
        sp = p_out if s == 1 else f"{s} * {p_out}"
        sq = q_out if s == 1 else f"{s} * {q_out}"
        off = f" + {ax.offset}" if ax.offset > 0 else (f" - {-ax.offset}" if ax.offset < 0 else "")
        b.line(f"a{axis} = {sp} + {ea}{off}")
        b.line(f"b{axis} = {sq} + {eb}{off}")
        n = ax.n_in
        if ax.wrap:
            b.line(f"a{axis} = (a{axis} % {n} + {n}) % {n}  # circular padding")
            b.line(f"b{axis} = (b{axis} % {n} + {n}) % {n}")
            return ""
        return f"(a{axis} >= 0) & (a{axis} < {n}) & (b{axis} >= 0) & (b{axis} < {n})"

    def gather_opener(self, step: Step, mult) -> None:
        """A plane-mixing window: each output entry gathers its terms from any input plane."""
        w = step.window
        d = self.d
        out_shape = (step.layer.out_shape.height, step.layer.out_shape.width)
        in_shape = (step.layer.in_shape.height, step.layer.in_shape.width)
        self.comment_step(step)
        py, px, _ = self.positions(out_shape)
        qy, qx, mask = self.plane(out_shape, mult)
        b = self.body
        npos = self.tile_positions(out_shape)
        t_in = d.t_in
        b.line(f"acc_s = {self.zeros(f'[BLOCK_I, {npos}]')}")
        if t_in:
            b.line(f"acc_t = {self.zeros(f'[BLOCK_I, {npos}]')}")
        if d.source == "images":
            c = self.plan.network.input.channels
            self.arg("xa_ptr", "xb_ptr", "stride_xa_n", "stride_xa_c", "stride_xa_h", "stride_xa_w",
                     "stride_xb_n", "stride_xb_c", "stride_xb_h", "stride_xb_w")
        else:
            self.arg("s_in_ptr")
            if t_in:
                self.arg("t_in_ptr")
            band_y, band_x = d.in_band
            size_x = band_size(band_x)
            self.helpers.add("band_base")

        def body(eay, eby, eax, ebx):
            my = self._axis_reads(w.rows, py, qy, eay, eby, "y")
            mx = self._axis_reads(w.cols, px, qx, eax, ebx, "x")
            terms = [mask] + [m for m in (my, mx) if m]
            b.line(f"mask_t = {' & '.join(terms)}")
            if d.source == "images":
                loop = "tl.static_range" if c <= schedule.UNROLL_CHANNELS else "range"
                b.line("# the input covariance at (a, b), formed from the images")
                b.line(f"s0 = {self.zeros(f'[BLOCK_I, {npos}]')}")
                b.line(f"for c in {loop}({c}):")
                with b.indent():
                    b.line("xa = tl.load(xa_ptr + pair * stride_xa_n + c * stride_xa_c + ay * stride_xa_h + ax * stride_xa_w, mask=mask_t, other=0.0)")
                    b.line("xb = tl.load(xb_ptr + pair * stride_xb_n + c * stride_xb_c + by * stride_xb_h + bx * stride_xb_w, mask=mask_t, other=0.0)")
                    b.line("s0 += xa * xb")
                b.line(f"acc_s += s0 / {c}")
            else:
                b.line("# where entry (a, b) lives: plane a - b, position a, planes stored back to back")
                b.line(f"iy = band_base(ay - by, {in_shape[0]}) - {band_base_py(band_y.lo, band_y.n)} + ay - tl.maximum(ay - by, 0)")
                b.line(f"ix = band_base(ax - bx, {in_shape[1]}) - {band_base_py(band_x.lo, band_x.n)} + ax - tl.maximum(ax - bx, 0)")
                b.line(f"offs_in = pair * {self.in_per_pair} + iy * {size_x} + ix")
                b.line("acc_s += tl.load(s_in_ptr + offs_in, mask=mask_t, other=0.0)")
                if t_in:
                    b.line("acc_t += tl.load(t_in_ptr + offs_in, mask=mask_t, other=0.0)")

        self._emit_terms(w, body)
        self._finish_window(w, mask, t_in)

    def partials_opener(self, step: Step) -> None:
        """A full-sum window: add the previous kernel's per-item partial sums of each pair."""
        w = step.window
        d = self.d
        n = self.in_per_pair
        self.comment_step(step)
        self.positions((1, 1))
        b = self.body
        self.arg("s_in_ptr")
        if d.t_in:
            self.arg("t_in_ptr")
        block = min(schedule.REDUCE_BLOCK, _pow2(n))
        b.line(f"# the sum of every entry of every plane: {n} partial sums per pair")
        b.line(f"acc_s = {self.zeros('[BLOCK_I, 1]')}")
        if d.t_in:
            b.line(f"acc_t = {self.zeros('[BLOCK_I, 1]')}")
        b.line(f"for r0 in range(0, {n}, {block}):")
        with b.indent():
            b.line(f"offs_r = r0 + tl.arange(0, {block})[None, :]")
            b.line(f"mask_r = mask_i & (offs_r < {n})")
            b.line(f"acc_s += tl.sum(tl.load(s_in_ptr + pair * {n} + offs_r, mask=mask_r, other=0.0), axis=1)[:, None]")
            if d.t_in:
                b.line(f"acc_t += tl.sum(tl.load(t_in_ptr + pair * {n} + offs_r, mask=mask_r, other=0.0), axis=1)[:, None]")
        self._finish_window(w, "mask_i", d.t_in)

    def _finish_window(self, w: Window, mask: str, t_in: bool) -> None:
        """s, t from the accumulated window sums: weight, bias, the NTK's + S' when trainable."""
        b = self.body
        bias = f" + {literal(w.bias)}" if w.bias else ""
        b.line(f"s = tl.where({mask}, {literal(w.weight)} * acc_s{bias}, 0.0)")
        if t_in and w.trainable:
            b.line(f"t = tl.where({mask}, {literal(w.weight)} * acc_t + s, 0.0)")
        elif t_in:
            b.line(f"t = tl.where({mask}, {literal(w.weight)} * acc_t, 0.0)")
        elif w.trainable:
            b.line("t = s")

    # -- steps inside a stage -----------------------------------------------------------------

    def window(self, step: Step, in_shape, out_shape, in_mult, out_mult, t_live: bool) -> bool:
        w = step.window
        self.comment_step(step)
        b = self.body
        _, _, mask_out = self.plane(out_shape, out_mult)
        if w.identity:
            bias = f" + {literal(w.bias)}" if w.bias else ""
            b.line(f"s = tl.where({mask_out}, {literal(w.weight)} * s{bias}, 0.0)")
            if t_live:
                extra = " + s" if w.trainable else ""
                b.line(f"t = tl.where({mask_out}, {literal(w.weight)} * t{extra}, 0.0)")
            elif w.trainable:
                b.line("t = s")
            return t_live or w.trainable
        if not self._is_stencil(w):
            ry, rx = _reduce_range(w.rows), _reduce_range(w.cols)
            py, px, _ = self.positions(in_shape)
            _, _, mask_in = self.plane(in_shape, in_mult)
            b.line(f"# one output: a masked sum over rows {ry[0]}..{ry[1]}, cols {rx[0]}..{rx[1]} of the plane")
            b.line(f"mask_r = {mask_in} & ({py} >= {ry[0]}) & ({py} <= {ry[1]}) & ({px} >= {rx[0]}) & ({px} <= {rx[1]})")
            b.line("acc_s = tl.sum(tl.where(mask_r, s, 0.0), axis=1)[:, None]")
            if t_live:
                b.line("acc_t = tl.sum(tl.where(mask_r, t, 0.0), axis=1)[:, None]")
            self._finish_window(w, mask_out, t_live)
            return t_live or w.trainable
        self.stencil(step, in_shape, out_shape, in_mult, out_mult, t_live)
        self._finish_window(w, mask_out, t_live)
        return t_live or w.trainable

    def stencil(self, step, in_shape, out_shape, in_mult, out_mult, t_live: bool) -> None:
        """A window that reads one plane at shifted positions, through the program's scratch.

        The tile is stored inside a border of zeros wide enough for every tap, so a tap is one
        unmasked load at a constant offset: positions outside the map read the border, and
        entries whose b-side falls outside the map were stored as zeros (every tile is zero
        outside its plane). The same plane is read, so only the a-side position moves.
        """
        w = step.window
        b = self.body
        ry, rx = w.rows, w.cols
        py_o, px_o, _ = self.positions(out_shape)
        py_i, px_i, _ = self.positions(in_shape)
        akey = self._area_key(w, in_shape, out_shape)
        (lo_y, _), (lo_x, _) = akey[1], akey[2]
        self.arg("scratch_ptr")
        area = self.area(*akey)
        j, rs = area["index"], area["row"]
        key = (j, out_shape, ry.stride, rx.stride, ry.offset, rx.offset)
        if key not in self.taps:
            k = len(self.taps)
            sy = f"{ry.stride} * {py_o}" if ry.stride != 1 else py_o
            sx = f"{rx.stride} * {px_o}" if rx.stride != 1 else px_o
            row = f"({sy}{_plus(ry.offset + lo_y)})" if ry.offset + lo_y else sy
            self.hoisted.line(f"offs_tap{k} = {row} * {rs} + {sx}{_plus(rx.offset + lo_x)}"
                              f"  # tap (0, 0) of a {out_shape[0]}x{out_shape[1]} output in scratch area {j}")
            self.taps[key] = f"offs_tap{k}"
        tap = self.taps[key]
        slot = area["parity"]
        area["parity"] ^= 1
        size = area["size"]
        if self.loop is not None and self.loop["uses"][akey] % 2:
            # an odd number of uses per repetition: the slice alternates with `rep`
            self.loop["entry"].setdefault(akey, slot ^ self.loop["seen"].get(akey, 0))
            nth = self.loop["seen"].get(akey, 0)
            self.loop["seen"][akey] = nth + 1
            base = (self.loop["entry"][akey] + nth) % 2
            sel = f"(rep + {base}) % 2" if base else "rep % 2"
            ptr_s = f"scr{j} + 2 * ({sel}) * BLOCK_I * {size}"
            ptr_t = f"scr{j} + (2 * ({sel}) + 1) * BLOCK_I * {size}"
        else:
            if self.loop is not None:
                self.loop["entry"].setdefault(akey, slot ^ (self.loop["seen"].get(akey, 0) % 2))
                self.loop["seen"][akey] = self.loop["seen"].get(akey, 0) + 1
            ptr_s = f"scr{j}" + (f" + {2 * slot} * BLOCK_I * {size}" if slot else "")
            ptr_t = f"scr{j} + {2 * slot + 1} * BLOCK_I * {size}"
        b.line(f"# the window reads plane {self._mult_text(in_mult)}: store it, then one load per tap")
        b.line(f"tl.store({ptr_s} + offs_st{j}, s)")
        if t_live:
            b.line(f"tl.store({ptr_t} + offs_st{j}, t)")
        b.line("tl.debug_barrier()")
        # one pointer tile per tensor; each tap adds a constant (folded into the load's address)
        b.line(f"tap_s = {ptr_s} + {tap}")
        if t_live:
            b.line(f"tap_t = {ptr_t} + {tap}")
        n_out = self.tile_positions(out_shape)
        b.line(f"acc_s = {self.zeros(f'[BLOCK_I, {n_out}]')}")
        if t_live:
            b.line(f"acc_t = {self.zeros(f'[BLOCK_I, {n_out}]')}")
        ty, tx = _classify(ry.terms), _classify(rx.terms)
        static = ty.count * tx.count <= schedule.UNROLL_TERMS
        for hy, ey, _ in self._term_loops(ty, "y", static):
            for hx, ex, _ in self._term_loops(tx, "x", static):
                depth = 0
                for h in hy + hx:
                    b.line(h)
                    b.level += 1
                    depth += 1
                b.line(f"acc_s += tl.load(tap_s + ({ey} * {rs} + {ex}))")
                if t_live:
                    b.line(f"acc_t += tl.load(tap_t + ({ey} * {rs} + {ex}))")
                b.level -= depth

    @staticmethod
    def _reach(ax: AxisWindow, block_in: int, block_out: int) -> tuple[int, int]:
        """How far taps read below 0 and beyond the padded input tile, over the padded output."""
        es = [e for e, _ in ax.terms]
        low = ax.offset + min(es)
        high = ax.stride * (block_out - 1) + ax.offset + max(es)
        return max(0, -low), max(0, high - (block_in - 1))

    def area(self, shape, reach_y, reach_x) -> dict:
        """A scratch area: planes of `shape` inside a zero border (one area per layout)."""
        key = (shape, reach_y, reach_x)
        if key not in self.areas:
            j = len(self.areas)
            rows = reach_y[0] + _pow2(shape[0]) + reach_y[1]
            row = reach_x[0] + _pow2(shape[1]) + reach_x[1]
            size = rows * row
            base = sum(a["size"] for a in self.areas.values())
            py, px, _ = self.positions(shape)
            h = self.hoisted
            h.line(f"# scratch area {j}: a {shape[0]}x{shape[1]} plane in a {rows}x{row} frame with a zero border "
                   f"({reach_y[0]} above, {reach_x[0]} left); 2 slices x (S, T) x BLOCK_I")
            at = f" + 4 * BLOCK_I * {base}" if base else ""
            h.line(f"scr{j} = scratch{at} + offs_i0[:, None] * {size}")
            h.line(f"offs_st{j} = {py} * {row} + {px}{_plus(reach_y[0] * row + reach_x[0])}")
            self.areas[key] = {"index": j, "size": size, "row": row, "parity": 0}
        return self.areas[key]

    def activation(self, step: Step, shape, mult, t_live: bool) -> bool:
        layer = step.layer
        rule, params = layer.rule, layer.params
        self.comment_step(step)
        b = self.body
        py, px, _ = self.positions(shape)
        qy, qx, mask = self.plane(shape, mult)
        k = self.act_ordinal[step.index]
        off = _plus(self.var_offsets[k])
        if self.loop is not None:
            off += f" + rep * {self.loop['var_step']}"
        self.arg("va_ptr", "vb_ptr", "stride_va_n", "stride_vb_n")
        nx = shape[1]
        b.line(f"# the variance maps of a and b at p and q (activation {k} of the packed rows)")
        b.line(f"v1 = tl.load(va_ptr + pair * stride_va_n{off} + {py} * {nx} + {px}, mask={mask}, other=1.0)")
        b.line(f"v2 = tl.load(vb_ptr + pair * stride_vb_n{off} + {qy} * {nx} + {qx}, mask={mask}, other=1.0)")
        b.line("# a self pair at p = q: u and v2 are v1 itself, so v1 v2 - u^2 is exactly 0")
        b.line("u = tl.where(same_diag, v1, s)")
        b.line("v2 = tl.where(same_diag, v1, v2)")
        graphs = trace_maps(rule, params, t_live)
        r = MathRenderer(b, prefix=f"m{self.math_count}_")
        self.math_count += 1
        e = r.render(graphs, {"u": "u", "v1": "v1", "v2": "v2"}, like="u")
        self.helpers |= r.helpers
        b.line(f"s = tl.where({mask}, {e['nngp']}, 0.0)")
        if t_live:
            factor = e["dfactor"] if e["dfactor"].isidentifier() else f"({e['dfactor']})"
            b.line(f"t = tl.where({mask}, t * {factor}, 0.0)")
        return t_live

    # -- sinks ------------------------------------------------------------------------------

    def sink(self, shape, mult, t_live: bool) -> None:
        d = self.d
        b = self.body
        _, _, mask = self.plane(shape, mult)
        b.line("")
        if d.sink == "outputs":
            self.arg("nngp_ptr", "ntk_ptr", "stride_nngp_n", "stride_ntk_n")
            b.line("# the kernel values of each pair")
            b.line(f"tl.store(nngp_ptr + pair * stride_nngp_n, s, mask={mask})")
            b.line(f"tl.store(ntk_ptr + pair * stride_ntk_n, {'t' if t_live else 'tl.zeros_like(s)'}, mask={mask})")
        elif d.sink == "partials":
            self.arg("s_out_ptr")
            b.line("# one partial sum per item (pair, plane) for the full-sum window of the next kernel")
            b.line("tl.store(s_out_ptr + offs_i[:, None], tl.sum(s, axis=1)[:, None], mask=mask_i)")
            if t_live:
                self.arg("t_out_ptr")
                b.line("tl.store(t_out_ptr + offs_i[:, None], tl.sum(t, axis=1)[:, None], mask=mask_i)")
        else:
            self.arg("s_out_ptr")
            py, px, _ = self.positions(shape)
            band_y, band_x = d.out_band
            self.helpers.add("band_base")
            dy, dx = self.disp(mult[0], "y"), self.disp(mult[1], "x")
            b.line("# the planes for the next kernel, back to back without empty slots")
            b.line(f"iy = band_base({dy}, {shape[0]}) - {band_base_py(band_y.lo, band_y.n)} + {py} - tl.maximum({dy}, 0)")
            b.line(f"ix = band_base({dx}, {shape[1]}) - {band_base_py(band_x.lo, band_x.n)} + {px} - tl.maximum({dx}, 0)")
            b.line(f"offs_out = pair * {self.out_per_pair()} + iy * {band_size(band_x)} + ix")
            b.line(f"tl.store(s_out_ptr + offs_out, s, mask={mask})")
            if t_live:
                self.arg("t_out_ptr")
                b.line(f"tl.store(t_out_ptr + offs_out, t, mask={mask})")
        self.arg("n_pairs", "n_iters")


# ---------------------------------------------------------------------------------------------
# the module


def _var_layout(plan: Plan) -> tuple[tuple[int, ...], int]:
    offsets = []
    total = 0
    for layer_index in plan.activations:
        shape = plan.network.layers[layer_index].in_shape
        offsets.append(total)
        total += shape.height * shape.width
    return tuple(offsets), total


def _module_name(plan: Plan) -> str:
    import re
    stem = plan.network.filename.rsplit("/", 1)[-1]
    stem = stem[:-5] if stem.endswith(".arch") else stem
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_") or "arch"
    return f"ntkc_{stem}"


def build(plan: Plan) -> Generated:
    """Generate the Triton module for `plan`'s pair program, with a spec of each kernel."""
    net = plan.network
    var_offsets, var_size = _var_layout(plan)
    drafts = _drafts(plan.pair, net)
    kernels: list[KernelSpec] = []
    texts: list[str] = []
    helpers: set[str] = set()
    prev_out = 0
    for i, draft in enumerate(drafts):
        writer = _KernelWriter(draft, i, plan, var_offsets, prev_out)
        text, spec = writer.write()
        helpers |= writer.helpers
        kernels.append(spec)
        texts.append(text)
        prev_out = spec.out_per_pair
    head = CodeBuffer()
    head.line(f'"""ntkc generated Triton kernels for {net.filename} (generator v{GENERATOR_VERSION}).')
    head.line("")
    head.line(f"input {net.input}; {len(net.layers)} layers; pair program in {len(kernels)} kernel(s):")
    for spec, draft in zip(kernels, drafts):
        head.line(f"  {spec.name}: {_describe_kernel(spec, draft)}")
    head.line("")
    head.line("Launched by ntkc.runtime.triton_backend; see ntkc.compiler.triton_codegen for the design.")
    head.line('"""')
    head.line("import triton")
    head.line("import triton.language as tl")
    parts = [head.text()]
    if helpers:
        parts.append("# -- helpers (copied from ntkc.compiler.triton_math) " + "-" * 40 + "\n\n\n" + helper_sources(helpers))
    parts += texts
    source = "\n\n".join(p.rstrip("\n") + "\n" for p in parts)
    return Generated(source, tuple(kernels), var_offsets, var_size, _module_name(plan))


def _describe_kernel(spec: KernelSpec, draft: _Draft) -> str:
    steps = ", ".join(f"{s.layer.name} (line {s.layer.span.line})" for s in draft.steps) or "input covariance"
    by, bx = draft.out_band
    return (f"{steps}; {spec.planes} plane(s) per pair (rows {by}, cols {bx}); "
            f"{spec.source} -> {spec.sink}")


def generate(plan: Plan) -> str:
    """The generated Triton module for `plan`, as source text."""
    return build(plan).source


# ---------------------------------------------------------------------------------------------
# the command line (the report itself is in triton_report)


def main(argv=None) -> int:
    """`python -m ntkc.compiler.triton_codegen FILE.arch... [--emit] [--report] [--jobs N]`."""
    p = argparse.ArgumentParser(prog="python -m ntkc.compiler.triton_codegen",
                                description="Generate the Triton kernels of .arch files; with --report, compile them "
                                            "ahead of time (no GPU needed) and list registers and spills per kernel.")
    p.add_argument("arch", nargs="+", help=".arch files")
    p.add_argument("--emit", action="store_true", help="print the generated module (the default without --report)")
    p.add_argument("--report", action="store_true", help="compile for the targets and print registers / spills")
    p.add_argument("--targets", default="80,90", help="comma-separated sm versions (default 80,90)")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--jobs", type=int, default=2, help="compiler processes (default 2)")
    args = p.parse_args(argv)
    import ntkc
    if args.emit or not args.report:
        for f in args.arch:
            sys.stdout.write(generate(ntkc.compile(f).plan))
    if not args.report:
        return 0
    from .report import format_report, report_many
    jobs = [(int(a), d) for d in args.dtypes.split(",") for a in args.targets.split(",")]
    reports = report_many(args.arch, jobs, args.jobs)
    failed = 0
    for f, rows in reports.items():
        print(f"\n{f}")
        print(format_report(rows))
        failed += sum(1 for r in rows if r.fused and r.spills)
    if failed:
        print(f"spills in {failed} stage-kernel compile(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The v2 circulant stage kernel: stage 0 on circulant tiles held in registers.

Layout. A program holds BLOCK_P x BLOCK_X tiles: BLOCK_P pairs times BLOCK_X tile columns rx of
one tile row ry (so ry, and with it every vertical seam, is one scalar per program). A tile is an
H x W array of entries held as a [H, BLOCK_P * BLOCK_X, W] tensor (`s`, and `t` for the NTK):
rows in registers, one warp per tile, lane = column x. Hence:

- a vertical neighbour is another register (rows are reached by `split_rows_H`, relabellings of
  registers), masked by a per-row factor read from a small seam table (`records.SeamTable`);
- a horizontal neighbour is `tl.gather(row, idx, axis=2)` along an axis held by one warp, which
  Triton compiles to one SHFL per element (and runs in the interpreter), masked by a per-lane
  0/1 factor in an FFMA (no dearer than the FADD it replaces);
- the variance maps are read per image at constant offsets per row: a-side row y of image ia,
  b-side row y of tile ry from a copy with the rows doubled at y + H - ry (no modulo in the loop);
- there is no scratch, no shared memory and no barrier in the layer loop (with Triton 3.9; Triton
  3.6 adds layout conversions, see benchmarks/RESULTS.md); a repeated block of layers is one
  run-time loop, so code and compile time do not grow with depth;
- activations run on `schedule.ACT_PARTS` interleaved parts of the rows, one after the other, to
  bound the registers their temporaries need.

Why 3-D tensors and not one variable per row: with one [T, W] tensor per row Triton's Coalesce
pass is quadratic in the number of operations per load, and depth 21 did not compile in 12
minutes; with 3-D tensors there are a dozen memory operations and it compiles in seconds.
"""
from __future__ import annotations

from . import schedule
from .epilogue import finish, residual, scalar_activation
from .records import (ActOp, AxisTiles, CirculantPlan, ConvOp, ForkOp, JoinOp, Loop, ReadoutOp, ScalarOp,
                      SeamTable)
from .render import CodeBuffer, literal
from .coverage import Sink


def _tag(d: int) -> str:
    return f"p{d}" if d >= 0 else f"m{-d}"


class CirculantWriter:
    """Renders a CirculantPlan as one kernel. Records the run-time arguments, the trip counts of
    its run-time loops and the row helpers it needs."""

    def __init__(self, p: CirculantPlan, var_offsets: dict[int, int], var_size: int):
        self.p = p
        self.var_offsets = var_offsets   # activation ordinal -> offset in a packed doubled row
        self.var_size = var_size
        self.b = CodeBuffer(1)
        self.args: list[str] = []
        self.loops: list[int] = []       # trip counts of the run-time loops, in source order
        self.vtaps: set[int] = set()
        self.htaps: set[int] = set()
        self.in_loop = None
        self.row_helpers: set[int] = set()   # H of split_rows_H / join_rows_H
        self.seam_a: list[int] = []
        self.part_helpers: set[int] = set()
        self.cur_seams: dict[int, str] = {}

    def arg(self, *names):
        for n in names:
            if n not in self.args:
                self.args.append(n)

    def collect_taps(self, ops) -> None:
        for op in ops:
            if isinstance(op, Loop):
                self.collect_taps(op.body)
            elif isinstance(op, ConvOp):
                self.vtaps |= {d for d in op.taps_y if d}
                self.htaps |= {d for d in op.taps_x if d}

    # -- the kernel -----------------------------------------------------------------------------

    def write(self) -> str:
        self.arg("xa_ptr", "xb_ptr", "stride_xa_n", "stride_xa_c", "stride_xa_h", "stride_xa_w",
                 "stride_xb_n", "stride_xb_c", "stride_xb_h", "stride_xb_w", "va_ptr", "vb_ptr",
                 "stride_va_n", "stride_vb_n", "ia_ptr", "ib_ptr", "same_ptr")
        self.collect_taps(self.p.ops)
        self.prologue()
        self.input_tile()
        self.emit_ops(self.p.ops, t_live=False)
        self.sink()
        self.arg("n_pairs")
        return self.assemble()

    def prologue(self) -> None:
        p, b = self.p, self.b
        h, w = p.height, p.width
        ty, tx = p.tiles_y, p.tiles_x
        b.line("# which tiles: a program is BLOCK_P pairs x BLOCK_X tile columns rx of one tile row ry")
        b.line(f"# (tiles ry in {_tiles_text(ty)}, rx in {_tiles_text(tx)}: the demanded planes D mod n)")
        b.line("pid = tl.program_id(0)")
        b.line(f"BLOCKS_X: tl.constexpr = {tx.count} // BLOCK_X")
        b.line("pid_x = pid % BLOCKS_X")
        b.line(f"pid_y = (pid // BLOCKS_X) % {ty.count}")
        b.line(f"pid_p = pid // (BLOCKS_X * {ty.count})")
        b.line(f"ry = ({ty.start} + pid_y) % {h}")
        b.line(f"# a tile is [{h} rows, BLOCK_P * BLOCK_X tiles, {w} columns]: rows in registers, a warp per tile, lane = column")
        b.line(f"offs_y = tl.arange(0, {h})[:, None, None]")
        b.line("offs_t = tl.arange(0, BLOCK_P * BLOCK_X)[None, :, None]")
        b.line(f"offs_x = tl.arange(0, {w})[None, None, :]")
        b.line(f"rx = ({tx.start} + pid_x * BLOCK_X + offs_t % BLOCK_X) % {w}")
        b.line("pair = pid_p * BLOCK_P + offs_t // BLOCK_X")
        b.line("mask_t = pair < n_pairs")
        b.line("pair = tl.minimum(pair, n_pairs - 1)  # tiles past the end redo the last pair; their results are dropped")
        b.line(f"qy = (offs_y - ry) & {h - 1}  # b-side row (y - ry) mod H")
        b.line(f"qx = (offs_x - rx) & {w - 1}  # b-side column (x - rx) mod W")
        b.line("ia = tl.load(ia_ptr + pair).to(tl.int64)")
        b.line("ib = tl.load(ib_ptr + pair).to(tl.int64)")
        b.line("# a self pair's tile (0, 0) is plane 0 of the self pair: there u and v2 are v1 itself, bitwise")
        b.line("diag = (tl.load(same_ptr + pair) != 0) & (ry == 0) & (rx == 0)")
        b.line(f"# variance maps, {2 * h}x{w} per activation (rows doubled): a-side row y at y, "
               f"b-side row y of tile ry at y + {h} - ry (no modulo in the loop)")
        b.line("# (one base pointer per thread; the row offsets are constants added last, so that they fold into the loads)")
        b.line("va_lane = va_ptr + ia * stride_va_n + offs_x")
        b.line(f"vb_lane = tl.where(diag, va_ptr + ia * stride_va_n, vb_ptr + ib * stride_vb_n) + ({h} - ry) * {w} + qx")
        b.line(f"row_off = offs_y * {w}")
        if schedule.ACT_PARTS > 1 and h % schedule.ACT_PARTS == 0 and h > 1:
            for k in range(schedule.ACT_PARTS):
                b.line(f"row_off{k}_{schedule.ACT_PARTS} = (tl.arange(0, {h // schedule.ACT_PARTS})[:, None, None] * {schedule.ACT_PARTS} + {k}) * {w}"
                       f"  # rows y = {schedule.ACT_PARTS} i + {k}")
        if self.htaps:
            b.line("# horizontal seams, per lane: neighbour x + d counts where a-side x + d and b-side qx + d are in the map")
            for d in sorted(self.htaps):
                t = _tag(d)
                b.line(f"idx_x{t} = tl.broadcast_to((offs_x + {d}) & {w - 1}, [{h}, BLOCK_P * BLOCK_X, {w}])")
                cond = f"(offs_x + {d} >= 0) & (qx + {d} >= 0)" if d < 0 else f"(offs_x + {d} < {w}) & (qx + {d} < {w})"
                b.line(f"mx_{t} = ({cond}).to(DTYPE)")
        if self.vtaps and h > 1:
            self.arg("seam_ptr")
            self.seam_a = sorted({abs(d) for d in self.vtaps})
            b.line("# vertical seams: row y's neighbour y + d counts where a-side y + d and b-side qy + d are in the map.")
            b.line("# The factors depend on ry alone; they are read from a small table per conv (a uniform load per row)")
            b.line("# rather than kept in 2H registers across the layer loop, and the table has one copy per repetition")
            b.line("# so that the compiler does not hoist them back out of the loop.")
            b.line(f"seam_rows = seam_ptr + ry * {h} + offs_y")

    def input_tile(self) -> None:
        p, b = self.p, self.b
        c = p.channels
        b.line("")
        b.line(f"# line {p.input_line}: input, S[p, q] = (1/{c}) sum_c xa[c, p] xb[c, q] for q = (qy, qx); T = 0")
        b.line("xa_tile = xa_ptr + ia * stride_xa_n + offs_y * stride_xa_h + offs_x * stride_xa_w")
        b.line("xb_tile = xb_ptr + ib * stride_xb_n + qy * stride_xb_h + qx * stride_xb_w")
        b.line(f"s = tl.zeros([{p.height}, BLOCK_P * BLOCK_X, {p.width}], dtype=DTYPE)")
        loop = "tl.static_range" if c <= 16 else "range"
        b.line(f"for c in {loop}({c}):")
        with b.indent():
            b.line("s += tl.load(xa_tile + c * stride_xa_c) * tl.load(xb_tile + c * stride_xb_c)")
        b.line(f"s = s * {literal(1.0 / c)}")

    def emit_ops(self, ops, t_live: bool, rep: str | None = None) -> bool:
        for op in ops:
            if isinstance(op, Loop):
                t_live = self.loop(op, t_live)
            elif isinstance(op, ConvOp):
                self.conv(op)
                t_live = op.t_out
            elif isinstance(op, ActOp):
                self.activation(op, rep)
            elif isinstance(op, ReadoutOp):
                self.readout(op)
                t_live = op.t_out
            elif isinstance(op, ScalarOp):
                self.scalar_window(op)
                t_live = op.t_out
            elif isinstance(op, (ForkOp, JoinOp)):
                residual(self.b, op)
        return t_live

    def loop(self, op: Loop, t_live: bool) -> bool:
        b = self.b
        b.line("")
        b.line(f"# lines {op.lines[0]}-{op.lines[1]}, {op.reps} times over: a run-time loop, one copy of the code "
               "(repetition `rep` reads variance maps further on)")
        self.loops.append(op.reps)
        b.line(f"for rep in range({op.reps}):")
        with b.indent():
            self.in_loop = op
            t_live = self.emit_ops(op.body, t_live, rep="rep")
            self.in_loop = None
        return t_live

    def conv(self, op: ConvOp) -> None:
        p, b = self.p, self.b
        h = p.height
        b.line("")
        t_text = ("T' = " + literal(op.weight) + " * (box sum of T)" + (" + S'" if op.trainable else "")) if op.t_out else "T stays 0"
        b.line(f"# line {op.line}: {op.text}: S' = {literal(op.weight)} * (box sum of S){_bias_text(op.bias)}; {t_text}")
        tensors = ["s"] + (["t"] if op.t_in else [])
        vt_all = [d for d in op.taps_y if d] if h > 1 else []
        seam_rows = {}   # offset d -> list of per-row factor names
        if vt_all:
            self.row_helpers.add(h)
            rep = "rep" if self.in_loop is not None else "0"
            na = len(self.seam_a)
            for a in sorted({abs(d) for d in vt_all}):
                ai = self.seam_a.index(a)
                name = f"seam{a}"
                b.line(f"{name} = tl.load(seam_rows + ({rep} * {na} + {ai}) * {h * h})  # row y: factor of its neighbour y - {a}")
                rows = [f"{name}_{y}" for y in range(h)]
                b.line(f"{', '.join(rows)} = split_rows_{h}({name}, 1, 1)")
                seam_rows[-a] = rows
                # the factor of neighbour y + a is that of row y + a's neighbour y: both say that a-side
                # rows y, y + a and b-side rows q, q + a are inside the map ((q + a) mod H >= a iff q + a < H)
                seam_rows[a] = [rows[y + a] if y + a < h else None for y in range(h)]
        for n in tensors:
            b.line(f"# {n}: across the lanes (taps {list(op.taps_x)}: one shuffle each), then down the rows "
                   f"(taps {list(op.taps_y)}: other registers, row by row so that rows die as they are used)")
            b.line(f"h{n} = {self._hsum(n, op.taps_x)}")
            vt = vt_all
            if not vt:
                b.line(f"g{n} = h{n}")
                continue
            rows = [f"h{n}_{y}" for y in range(h)]
            b.line(f"{', '.join(rows)} = split_rows_{h}(h{n}, BLOCK_P * BLOCK_X, {p.width})")
            outs = []
            for y in range(h):
                expr = f"h{n}_{y}" if 0 in op.taps_y else None
                for d in vt:
                    if not 0 <= y + d < h:
                        continue  # outside the a-side map: no term
                    m = seam_rows[d][y]
                    if m is None:
                        continue
                    src = f"h{n}_{y + d}"
                    expr = f"{src} * {m}" if expr is None else f"tl.fma({src}, {m}, {expr})"
                b.line(f"g{n}_{y} = {expr if expr is not None else f'h{n}_{y} * 0.0'}")
                outs.append(f"g{n}_{y}")
            b.line(f"g{n} = join_rows_{h}({', '.join(outs)})")
        wl = literal(op.weight)
        # (products with Python constants are written as a * w + b, not tl.fma(a, w, b): Triton 3.6 rounds a
        # float argument of tl.fma to float32 first; with fusion on, a * w + b is one FFMA / DFMA anyway)
        b.line(f"s = gs * {wl} + {literal(op.bias)}" if op.bias else f"s = gs * {wl}")
        if op.t_in:
            b.line(f"t = gt * {wl} + s" if op.trainable else f"t = gt * {wl}")
        elif op.trainable:
            b.line("t = s")

    def _seam(self, d: int) -> str:
        return self.cur_seams[d]

    def seam_table(self) -> SeamTable | None:
        """The seam table this kernel reads (`seam_ptr`), or None."""
        if not self.vtaps or self.p.height == 1:
            return None
        return SeamTable(self.p.height, tuple(self.seam_a), max(self.loops or [1]))

    def _hsum(self, n: str, taps) -> str:
        expr = n if 0 in taps else None
        for d in taps:
            if d == 0:
                continue
            g = f"tl.gather({n}, idx_x{_tag(d)}, 2)"
            m = f"mx_{_tag(d)}"
            expr = f"{g} * {m}" if expr is None else f"tl.fma({g}, {m}, {expr})"
        return expr

    def _var_offset(self, op: ActOp, rep: str | None) -> str:
        off = self.var_offsets[op.ordinal]
        if rep is None:
            return str(off)
        block = 2 * self.p.height * self.p.width * self.in_loop.acts_per_rep
        return f"{off} + {rep} * {block}"

    def activation(self, op: ActOp, rep: str | None) -> None:
        b = self.b
        b.line("")
        off = self._var_offset(op, rep)
        if op.scalar:
            self.b.lines.pop()  # (scalar_activation writes its own blank line)
            scalar_activation(b, op, off)
            return
        if schedule.ACT_PARTS > 1 and self.p.height % schedule.ACT_PARTS == 0 and self.p.height > 1:
            parts = schedule.ACT_PARTS
            self.part_helpers.add(parts)
            b.line(f"# line {op.line}: {op.text}: v1 = v_a[p], v2 = v_b[q] at constant offsets per row "
                   f"(activation {op.ordinal} of the packed maps), then {op.fn};")
            b.line(f"# in {parts} interleaved parts of the rows, one after the other, to bound the registers it needs")
            names = ["s"] + (["t"] if op.t_live else [])
            for n in names:
                b.line(f"{', '.join(f'{n}{k}' for k in range(parts))} = split_parts_{parts}({n})")
            for k in range(parts):
                b.line(f"v1 = tl.load((va_lane + ({off})) + row_off{k}_{parts})")
                b.line(f"v2 = tl.load((vb_lane + ({off})) + row_off{k}_{parts})")
                if op.t_live:
                    b.line(f"s{k}, f = {op.fn}(tl.where(diag, v1, s{k}), v1, v2)")
                    b.line(f"t{k} = t{k} * f")
                else:
                    b.line(f"s{k} = {op.fn}(tl.where(diag, v1, s{k}), v1, v2)")
            for n in names:
                b.line(f"{n} = join_parts_{parts}({', '.join(f'{n}{k}' for k in range(parts))})")
            return
        else:
            b.line(f"# line {op.line}: {op.text}: v1 = v_a[p], v2 = v_b[q] at constant offsets per row "
                   f"(activation {op.ordinal} of the packed maps), then {op.fn}")
            b.line(f"v1 = tl.load((va_lane + ({off})) + row_off)")
            b.line(f"v2 = tl.load((vb_lane + ({off})) + row_off)")
        if op.t_live:
            b.line(f"s, f = {op.fn}(tl.where(diag, v1, s), v1, v2)")
            b.line("t = t * f")
        else:
            b.line(f"s = {op.fn}(tl.where(diag, v1, s), v1, v2)")

    def readout(self, op: ReadoutOp) -> None:
        p, b = self.p, self.b
        assert p.tiles_y.static == 0 and p.tiles_x.static == 0, "a diagonal readout needs tile (0, 0) alone"
        b.line("")
        b.line(f"# line {op.line}: {op.text}: the mean over p = q, and tile (0, 0) is exactly plane 0 (rows, then lanes)")
        b.line("s = tl.sum(tl.sum(s, axis=0), axis=1)[None, :, None]")
        if op.t_in:
            b.line("t = tl.sum(tl.sum(t, axis=0), axis=1)[None, :, None]")
        finish(b, op)

    def scalar_window(self, op: ScalarOp) -> None:
        self.b.line("")
        self.b.line(f"# line {op.line}: {op.text}")
        finish(self.b, op)

    def sink(self) -> None:
        p, b = self.p, self.b
        b.line("")
        if p.sink is Sink.OUTPUTS:
            self.arg("nngp_ptr", "ntk_ptr")
            b.line("# the kernel values of each pair (one tile per pair after the readout)")
            b.line("tl.store(nngp_ptr + pair, s, mask=mask_t)")
            b.line(f"tl.store(ntk_ptr + pair, {'t' if p.t_out else 'tl.zeros_like(s)'}, mask=mask_t)")
            return
        assert p.sink is Sink.PARTIALS
        self.arg("s_out_ptr")
        b.line("# the sum of every entry of these tiles: one number per (pair, program) for the full sum (gap) that")
        b.line("# follows; every (p, q) pair of the map lies in exactly one tile, so they add up to the full sum")
        b.line(f"N_PARTS: tl.constexpr = {p.tiles_y.count} * BLOCKS_X")
        b.line("offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)")
        b.line("part = offs_p * N_PARTS + pid_y * BLOCKS_X + pid_x")
        for n in ["s"] + (["t"] if p.t_out else []):
            if n == "t":
                self.arg("t_out_ptr")
            b.line(f"tot_{n} = tl.sum(tl.reshape(tl.sum(tl.sum({n}, axis=0), axis=1), [BLOCK_P, BLOCK_X]), axis=1)")
            b.line(f"tl.store({n}_out_ptr + part, tot_{n}, mask=offs_p < n_pairs)")

    def assemble(self) -> str:
        p = self.p
        out = CodeBuffer()
        ints = [a for a in self.args if not a.endswith("_ptr")]
        out.line(f"@triton.jit(do_not_specialize={ints!r})")
        out.line(f"def {p.name}(")
        with out.indent():
            for a in self.args:
                out.line(f"{a},")
            out.line("BLOCK_P: tl.constexpr,")
            out.line("BLOCK_X: tl.constexpr,")
        out.line("):")
        with out.indent():
            out.line(f'"""Stage {p.index} on circulant tiles of the {p.height}x{p.width} map: '
                     f'{p.tiles_per_pair} tile(s) per pair; sink: {p.sink.value}.')
            out.line("")
            out.line("Integer arguments are not specialised: a stride divisible by 16 would let Triton vectorise")
            out.line("the a-side loads and move the columns off the lanes (one warp per tile, lane = column).")
            out.line('"""')
            out.line("DTYPE = va_ptr.dtype.element_ty")
        out.lines.extend(self.b.lines)
        return out.text()


def _tiles_text(t: AxisTiles) -> str:
    if t.count == t.n:
        return f"0..{t.n - 1}"
    if t.count == 1:
        return f"{{{t.start}}}"
    return f"{t.start}..{t.start + t.count - 1} mod {t.n}"


def _bias_text(bias: float) -> str:
    return f" + {literal(bias)}" if bias else ""

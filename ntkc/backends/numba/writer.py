"""Writing one fused stage kernel: `KernelWriter` emits the numba source of one `FusedKernel`.

An item is one pair times one tile; per item the kernel runs source -> steps -> sink on a few
KiB of flat scratch (S, T, the x-pass rows TS / TT, the residual shortcuts SX / TX), allocated
once per chunk of items, so it stays in L1/L2. Row loops index flat arrays at `base + c` with
unsigned indices and a run-time trip count (unit stride, no wraparound checks): LLVM then
vectorises them, where a constant trip count of 32 would be fully unrolled into slower code.
Math is branch-free (conditional expressions become selects) and compiled without fast-math,
so exact cancellations stay exact. Where a kernel's tiles are packed planes of small maps (or
its one tile is plane 0), S and T hold a tile as one flat run and each step is one loop over all
of it (`KernelWriter.flat_plane`): the same arithmetic in the same order, in fewer, longer
loops. The sources and sinks are in `emit_sources.py`, the steps (windows, activations,
residual blocks) in `emit_steps.py`.

A block of steps repeated with identical rules, parameters and geometry (and holding whole
residual blocks) becomes one run-time loop over its repetitions, so code size and compile time
do not grow with depth.
"""
from __future__ import annotations

import re

from ...plan.lower import Plan, Step
from ..render import CodeBuffer
from .emit_sources import SourcesMixin
from .emit_steps import StepsMixin, plus
from .kernels import SCHEDULE, FusedKernel, Geom, ProgramKernels, Sink, Source, is_reduce
from .render import ConstantPool

FLAT_MAX_WIDTH = 16  # maps narrower than this run many packed tiles as flat runs (KernelWriter.flat_plane)

# every argument a stage kernel may take, in order (a kernel takes those its text uses)
ARGS = ("chunk", "nchunks", "n_pairs", "TILES", "W", "ia", "ib", "same", "XA", "XB2", "VARA", "VARB", "IN_S", "IN_T",
        "IN_PS", "IN_PT", "OUT_S", "OUT_T", "OUT_PS", "OUT_PT", "NNGP", "NTK", "SROWB", "SCOL", "DROWB", "DCOL",
        "PWY", "PWX", "record")
KERNEL_DECORATOR = '@njit(nogil=True, cache=True, error_model="numpy")'


class KernelWriter(SourcesMixin, StepsMixin):
    """Writes one fused kernel; records the helpers it uses and its arguments (`args`)."""

    # -- small pieces ---------------------------------------------------------------------------

    def __init__(self, k: FusedKernel, plan: Plan, pk: ProgramKernels, pool: ConstantPool, image: bool):
        self.k = k
        self.plan = plan
        self.pk = pk
        self.pool = pool
        self.image = image
        self.ntk = not image  # the image program needs S alone (its variance maps)
        self.b = CodeBuffer(2)
        self.helpers: set[str] = set()
        self.geoms: dict[Geom, str] = {}
        self.loop: dict | None = None
        self.math_count = 0
        self.seams: set[str] = set()
        self.shortcuts: list[tuple[int, bool]] = []  # open residual blocks: (depth, T live at the fork)
        self.depth = 0  # the most residual blocks open at once (SX / TX scratch per level)
        # scratch sizes
        spatial = [g for _, gi, go in k.steps for g in (gi, go)] + [k.g_first]
        self.width = max(g.nx for g in spatial)
        self.rows = max(g.ny for g in spatial)
        self.R = 0      # zero columns left and right of a packed row (the x reach of its windows)
        self.RY = 0     # zero rows above a TS tile
        self.RYH = 0    # zero rows below
        for s, gi, go in k.steps:
            w = s.window
            if w is None or w.identity or is_reduce(w):
                continue
            ks = [e + w.cols.offset for e, _ in w.cols.terms]
            if gi.packed:
                self.R = max(self.R, max(abs(x) for x in ks))
            ey = [e + w.rows.offset for e, _ in w.rows.terms]
            self.RY = max(self.RY, -min(ey), 0)
            self.RYH = max(self.RYH, w.rows.stride * (go.ny - 1) + max(ey) - (gi.ny - 1), 0)
        self.flat, self.flat_tiles = self.flat_plane()
        self.fixed_rows = self.flat and not self.flat_tiles  # one plane 0: every item has all the rows
        self.masks: dict[str, int] = {}  # flat plane: mask name -> the x tap it is for

    def flat_plane(self) -> tuple[bool, bool]:
        """(flat, many tiles): whether a pair kernel's tiles are packed planes of full maps of one
        size, read from the images, ending in the outputs or in partial sums: either one tile,
        plane (0, 0) (a readout that needs plane 0 only, e.g. `flatten`), or, on maps narrower
        than FLAT_MAX_WIDTH, any packed planes (e.g. `gap` on 8x8 digits: 120 tiles). Then S
        and T hold a tile as one flat run (row r at R + r W, no zero columns between rows), and
        every step but the input and the partial sums (row by row) is one loop over the whole
        tile: an 8x8 plane runs as loops of 64, not 8 loops of 8 (each with its own set-up). The
        x taps that would leave a row or cross a packed row's seam are masked (`mask_*`, a row of
        masks per seam position rx, built once per chunk); b's variance maps, stored with rows
        doubled, are first copied into one flat run (VB). Wider rows already fill the vector
        units, so they keep the row-by-row tiles."""
        k = self.k
        if self.image or k.source != Source.IMAGES or k.sink not in (Sink.OUTPUTS, Sink.PARTIALS):
            return False, False
        if self.pk.var_a.factor != 1:
            return False, False
        table = k.tiles.table()
        many = table.shape[0] != 1 or table[0, 0] != 0 or table[0, 1] != 0
        if many and self.width >= FLAT_MAX_WIDTH:
            return False, False
        geoms = [g for _, gi, go in k.steps for g in (gi, go)] + [k.g_first]
        ok = all(g.scalar or (g.packed and g.nx == self.width and (many or g.ny == self.rows)) for g in geoms)
        return ok, ok and many

    def const(self, v: float) -> str:
        return self.pool.name(v)

    def geom(self, g: Geom) -> str:
        """Per-item plane geometry of map g, emitted once: <tag>_dy, _rows, _y0, _L, _ao, _bo."""
        if g in self.geoms:
            return self.geoms[g]
        t = g.tag
        b = self.head
        if g.scalar:
            b.line(f"# {t}: a 1x1 map, plane 0")
            b.line(f"{t}_dy = 0")
            b.line(f"{t}_rows = 1")
            b.line(f"{t}_y0 = 0")
            b.line(f"{t}_L = 1")
            b.line(f"{t}_ao = 0")
            b.line(f"{t}_bo = 0")
        else:
            dy = "dy" if g.my == 1 else f"{g.my} * dy"
            b.line(f"# {t}: plane D of the {g.ny}x{g.nx} map, {'packed columns (seam at rx)' if g.packed else 'exact columns'}")
            b.line(f"{t}_dy = {dy if g.ny > 1 else '0'}")
            b.line(f"{t}_rows = {g.ny} - abs({t}_dy)")
            b.line(f"{t}_y0 = max(0, {t}_dy)")
            if g.packed:
                b.line(f"{t}_L = {g.nx}")
                b.line(f"{t}_ao = 0")
                b.line(f"{t}_bo = ({g.nx} - rx) % {g.nx}  # b-side column of c = 0 (of a doubled row when rx > 0)")
                if self.flat:
                    b.line(f"{t}_n = U({t}_rows) * Wu  # entries of the flat plane")
            else:
                dx = "dx" if g.mx == 1 else f"{g.mx} * dx"
                b.line(f"{t}_dx = {dx if g.nx > 1 else '0'}")
                b.line(f"{t}_L = {g.nx} - abs({t}_dx)")
                b.line(f"{t}_ao = max(0, {t}_dx)")
                b.line(f"{t}_bo = {t}_ao - {t}_dx")
        self.geoms[g] = t
        return t

    def comment(self, step: Step) -> None:
        self.b.line("")
        self.b.line(f"# line {step.layer.span.line}: {step.layer.describe()}")

    def rows_loop(self, g: Geom, var: str = "r", rows: bool = False):
        """The loop over a tile's rows (a flat plane: one pass over all of them, unless `rows`)."""
        t = self.geom(g)
        if self.flat and g.packed and not rows:
            return f"for {var} in range(1):  # the whole plane: one flat run of {t}_n entries"
        return f"for {var} in range({t}_rows):"

    def cols(self, g: Geom) -> str:
        t = self.geom(g)
        return f"range({g.nx})" if g.packed else f"range({t}_L)"

    def length(self, g: Geom, rows: bool = False) -> str:
        """The tile's row length on map g (unsigned): a constant when packed, the plane's exact
        width otherwise; on a flat plane the plane's size (a row's, with `rows`)."""
        # (a run-time width: LLVM fully unrolls a loop of constant trip count 32 into slow code)
        if self.flat and g.packed and not rows:
            return f"{self.geom(g)}_n"
        return "Wu" if g.packed else f"U({self.geom(g)}_L)"

    @staticmethod
    def row_loop(b, n: str, stmt: str) -> None:
        """`for c in range(n): stmt`: one statement over the columns of a row."""
        b.line(f"for c in range({n}):")
        with b.indent():
            b.line(stmt)

    def srow(self, r: str = "r", shift: int = 0) -> str:
        """Unsigned index of column 0 (+ shift) of row r of the S / T scratch."""
        return f"U({r} * SW + R{plus(shift)})"

    def seam(self, kk: int) -> str:
        """The condition that column c and column c + kk of a packed tile lie in one plane (on a
        flat plane: that entry c has a column c + kk in its row)."""
        h = self.head
        if self.flat:
            name = f"mask_{'p' if kk > 0 else 'm'}{abs(kk)}"
            self.masks[name] = kk
            if self.flat_tiles and "mask_at" not in self.seams:
                self.seams.add("mask_at")
                h.line(f"mask_at = U(rx * {self.rows * self.width})  # this tile's row of masks")
            return f"{name}[mask_at + c]" if self.flat_tiles else f"{name}[c]"
        if kk == 1:
            name = "seam_p1"
            expr = "U(rx - 1)"  # rx = 0: no seam (wraps to a value no column has)
            cond = f"c != {name}"
        elif kk == -1:
            name = "seam_m1"
            expr = "U(rx)"
            cond = f"c != {name}"
        elif kk > 0:
            name = f"seam_p{kk}"
            expr = f"U(max(rx - {kk}, 0))"
            cond = f"(c < {name}) or (c >= seam_m1)"
            self.seam(-1)
        else:
            name = f"seam_m{-kk}"
            expr = f"U(rx{plus(-kk)})"
            cond = f"(c < seam_m1) or (c >= {name})"
            self.seam(-1)
        if name not in self.seams:
            self.seams.add(name)
            h.line(f"{name} = {expr}")
        return cond

    # -- the kernel -----------------------------------------------------------------------------

    def write(self) -> str:
        k = self.k
        self.head = CodeBuffer(2)
        b = self.b
        t_live = k.t_in
        # source
        if k.source == Source.IMAGES:
            self.images()
        elif k.source == Source.PLANES:
            self.planes_source()
        else:
            t_live = self.partials_source()
        # steps, with runs of identical blocks as loops
        steps = k.steps
        if not self.ntk:
            t_live = False
        sig = [self._signature(s, gi, go) for s, gi, go in steps]
        i = 0
        while i < len(steps):
            length, reps = find_run(sig, i, SCHEDULE.max_block)
            trainable = self.ntk and any(s.window is not None and s.window.trainable for s, _, _ in steps[i:i + length])
            if reps >= SCHEDULE.loop_min_repeats and trainable and not t_live:
                reps = 1  # the first repetition brings T to life: on its own, then the loop
            if reps >= SCHEDULE.loop_min_repeats:
                t_live = self.repeated(i, length, reps, t_live)
                i += length * reps
                continue
            t_live = self.step(i, t_live)
            i += 1
        self.sink(t_live)
        assert t_live == k.t_out, (k.name, t_live, k.t_out)
        return self.assemble()

    def _signature(self, s: Step, gi: Geom, go: Geom):
        return (s.kind, s.layer.rule.name, s.layer.params, s.window, gi, go)

    def step(self, i: int, t_live: bool) -> bool:
        s, gi, go = self.k.steps[i]
        if s.kind in ("fork", "join"):
            return self.residual(s, gi, t_live)
        if s.window is None:
            return self.activation(i, s, gi, t_live)
        return self.window(s, gi, go, t_live)

    def repeated(self, i, length, reps, t_live) -> bool:
        k = self.k
        block = k.steps[i:i + length]
        lines = sorted({s.layer.span.line for s, _, _ in block})
        acts = [s for s, _, _ in block if s.kind == "activation"]
        step_var = sum(s.layer.in_shape.height * s.layer.in_shape.width for s in acts)  # (times the layout's factor)
        for s, gi, go in block:
            self.geom(gi)
            self.geom(go)
        self.b.line("")
        self.b.line(f"# lines {lines[0]}-{lines[-1]}, {reps} times over: a run-time loop, one copy of the code")
        self.b.line(f"for rep in range({reps}):")
        self.loop = {"var_step": step_var}
        with self.b.indent():
            for j in range(i, i + length):
                t_live = self.step(j, t_live)
        self.loop = None
        return t_live

    def assemble(self) -> str:
        k = self.k
        out = CodeBuffer()
        width = self.width if self.flat else self.width + 2 * self.R
        size = self.rows * width + (2 * self.R if self.flat else 0)
        ts_rows = self.RY + self.rows + self.RYH
        packed = k.g_first.packed or any(go.packed for _, _, go in k.steps)
        lines = [s.layer.span.line for s, _, _ in k.steps]
        what = (f"lines {lines[0]}-{lines[-1]}" if len(lines) > 1 else f"line {lines[0]}") if lines else "no layers"
        body = CodeBuffer(2)
        body.line("pair = it // n_tiles")
        body.line("tt = it % n_tiles")
        body.line("dy = TILES[tt, 0]")
        body.line("rx = TILES[tt, 1]" if packed else "dx = TILES[tt, 1]")
        body.line("tile = TILES[tt, 2]  # the tile's index in the stage's tile tables")
        body.line("a = ia[pair]")
        body.line("b = ib[pair]")
        body.line(f"diag = (same[pair] != 0) and dy == 0 and {'rx' if packed else 'dx'} == 0")
        body.lines.extend(self.head.lines)
        body.lines.extend(self.b.lines)
        text = "\n".join(body.lines)
        used = [a for a in ARGS[5:] if re.search(rf"\b{a}\b", text)]
        self.args = ("chunk", "nchunks", "n_pairs", "TILES", "W") + tuple(used)
        out.line(KERNEL_DECORATOR)
        out.line(f"def {k.name}({', '.join(self.args)}):")
        with out.indent():
            out.line(f'"""{what}: {k.source.value} -> {k.sink.value}; {len(k.tiles)} tile(s) per pair.')
            out.line("")
            out.line("Items [chunk, chunk + 1) * n_items // nchunks of the n_pairs x tiles items (one contiguous")
            out.line("run: no two threads write the same cache line of the outputs), with this chunk's own scratch;")
            out.line('runs without the GIL, one chunk per thread."""')
            if self.flat:
                out.line(f"R = {self.R}  # zero entries before and after the flat plane in S / T")
                out.line(f"SW = {width}  # row length of S / T (no zero columns between rows); TS / TT rows too")
            else:
                out.line(f"R = {self.R}  # zero columns on each side of a row of S / T")
                out.line(f"SW = {width}  # row length of S / T; TS / TT rows are {self.width} long")
            out.line(f"Wu = U(W)  # = {self.width}, the packed row width, passed in at run time")
            out.line("n_tiles = TILES.shape[0]")
            out.line("n_items = n_pairs * n_tiles")
            out.line(f"S = np.zeros({size}, DT)")
            out.line(f"T = np.zeros({size}, DT)")
            out.line(f"TS = np.zeros({ts_rows * self.width}, DT)")
            out.line(f"TT = np.zeros({ts_rows * self.width}, DT)")
            out.line(f"ACC = np.zeros({self.width * (self.rows if self.flat else 1)}, DT)")
            for d in range(self.depth):  # the shortcut x of each open residual block
                out.line(f"SX{d} = np.zeros({size}, DT)")
                if self.ntk:
                    out.line(f"TX{d} = np.zeros({size}, DT)")
            n = self.rows * self.width
            W = self.width
            seams = W if self.flat_tiles else 1
            if self.flat_tiles:
                out.line(f"VB = np.zeros({size}, DT)  # b's variance map on the tile, as one flat run")
            for name, kk in sorted(self.masks.items()):
                tap = f"+ {kk}" if kk > 0 else f"- {-kk}"
                at, seam = ((f"rx * {n} + e", f" and on its side of the seam at rx (b's column (e - rx) % {W})")
                            if self.flat_tiles else ("e", ""))
                out.line(f"# {name}[{at}]: the tap at {kk:+d} from entry e stays in its row (column e % {W}){seam}")
                out.line(f"{name} = np.empty({seams * n}, np.bool_)")
                out.line(f"for q in range({seams * n}):")
                with out.indent():
                    out.line(f"e = q % {n}")
                    cond = f"0 <= e % {W} {tap} < {W}"
                    if self.flat_tiles:
                        cond += f" and 0 <= (e - q // {n}) % {W} {tap} < {W}"
                    out.line(f"{name}[q] = {cond}")
            out.line("for it in range(chunk * n_items // nchunks, (chunk + 1) * n_items // nchunks):")
            out.lines.extend(body.lines)
        return out.text()


def find_run(sig: list, i: int, max_block: int) -> tuple[int, int]:
    """Block length and repeat count of the longest run of identical blocks starting at sig[i]
    (a block must end on the geometry it starts from)."""
    best = (1, 1)
    n = len(sig)
    for length in range(1, min(max_block, (n - i) // 2) + 1):
        first = sig[i:i + length]
        if first[0][-2] != first[-1][-1] or not _balanced(first):
            continue
        reps = 1
        while i + (reps + 1) * length <= n and sig[i + reps * length:i + (reps + 1) * length] == first:
            reps += 1
        if reps > 1 and length * reps > best[0] * best[1]:
            best = (length, reps)
    return best



def _balanced(block: list[tuple]) -> bool:
    """A block holds whole residual blocks: every fork is joined inside it, in order."""
    depth = 0
    for sig in block:
        depth += {"fork": 1, "join": -1}.get(sig[0], 0)
        if depth < 0:
            return False
    return depth == 0

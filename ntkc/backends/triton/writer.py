"""Writing one stage kernel: `KernelWriter` emits the source text of one draft."""
from __future__ import annotations

from . import schedule
from ...plan.lower import Plan, Step
from ...rules.base import Window
from .emit_sources import SourcesMixin
from .emit_steps import StepsMixin
from .drafts import _Draft, _find_run, _input_multiplier, _multipliers, _signature
from .kernels import ARGUMENTS, KernelSpec
from .helpers import band_base_py
from .render import CodeBuffer
from .windows import _plus, _pow2, _reduce_range, band_size


class _KernelWriter(SourcesMixin, StepsMixin):
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
        self.shortcuts: list[tuple[int, bool]] = []  # open residual blocks: (depth, T live at the fork)
        act_layers = plan.activations
        self.act_ordinal = {layer: k for k, layer in enumerate(act_layers)}

    # -- small pieces ---------------------------------------------------------------------------

    def arg(self, *names: str) -> None:
        for n in names:
            assert n in ARGUMENTS, f"argument {n} is not declared in kernels.ARGUMENTS"
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
        if any(s.kind == "activation" for s in steps):
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
            t_live = self.step(step, shape, out_shape, cur_mult, mults[i], t_live)
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

    def step(self, step, shape, out_shape, in_mult, out_mult, t_live: bool) -> bool:
        """Emit one step inside the stage; returns whether T is live after it."""
        if step.kind == "activation":
            return self.activation(step, shape, out_mult, t_live)
        if step.kind in ("fork", "join"):
            return self.residual(step, t_live)
        return self.window(step, shape, out_shape, in_mult, out_mult, t_live)

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
        acts = [st for st in block if st.kind == "activation"]
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
            t_live = self.step(st, shape, out, cur_mult, mults[i + k], t_live)
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



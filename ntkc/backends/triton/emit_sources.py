"""How a stage kernel gets its first tile: from the two images (the input covariance), by gathering
the planes the previous kernel stored (a plane-mixing window), or by adding partial sums (gap)."""
from __future__ import annotations

from . import schedule
from ...plan.lower import Step
from ...rules.base import AxisWindow, Window
from .helpers import band_base_py
from .render import literal
from .windows import _classify, _pow2, _Terms, band_size


class SourcesMixin:
    """The sources of `KernelWriter` (see writer.py for the state they use)."""

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

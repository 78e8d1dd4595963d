"""The sources and sinks of a fused stage kernel (see writer.py for the state they use).

Sources: the input covariance formed on the fly from the two images, S[p, p - D] = (1/C)
sum_c xa[c, p] xb[c, p - D] (b's rows doubled, x | x, so that the b-side of a packed row is one
contiguous slice); the stored planes of a mixing kernel; the partial sums of the previous fused
kernel through a readout window. Sinks: the kernel values, stored planes for a mixing kernel,
or one partial sum per item for the readout of the next kernel (and, in the image program, the
variance map after the last step).
"""
from __future__ import annotations

from .kernels import SCHEDULE, Sink


class SourcesMixin:
    """Sources and sinks of `KernelWriter`."""

    def images(self) -> None:
        k, b = self.k, self.b
        net = self.plan.network.input
        c, H, W = net.channels, net.height, net.width
        g = k.g_first
        t = self.geom(g)
        n = self.length(g, rows=True)  # row by row (b's rows are doubled), also on a flat plane
        inv = self.const(1.0 / c)
        b.line("")
        b.line(f"# line {self.plan.network.input_span.line}: input, S[p, p - D] = (1/{c}) sum_c xa[c, p] xb[c, p - D]; T = 0")
        b.line("# (arrays are flat; a row loop reads base + c with unsigned indices: unit stride, no wraparound)")
        b.line(self.rows_loop(g, rows=True))
        with b.indent():
            b.line(f"ya = {t}_y0 + r")
            b.line(f"yb = ya - {t}_dy")
            b.line(f"so = {self.srow()}")
            b.line(f"xo = U((a * {c * H} + ya) * {W} + {t}_ao)")
            b.line(f"xq = U((b * {c * H} + yb) * {2 * W} + {t}_bo)")
            first = min(c, SCHEDULE.unroll_channels)
            terms = []
            for ch in range(first):
                ca = f" + U({ch * H * W})" if ch else ""
                cb = f" + U({ch * H * 2 * W})" if ch else ""
                terms.append(f"XA[xo{ca} + c] * XB2[xq{cb} + c]")
            b.line(f"for c in range({n}):")
            with b.indent():
                if c == first:
                    b.line(f"S[so + c] = ({' + '.join(terms)})" + (f" * {inv}" if c > 1 else ""))
                else:
                    b.line(f"S[so + c] = {' + '.join(terms)}")
            if c > first:
                b.line(f"for ch in range({first}, {c}):")
                with b.indent():
                    b.line(f"xa_o = xo + U(ch * {H * W})")
                    b.line(f"xb_o = xq + U(ch * {H * 2 * W})")
                    self.row_loop(b, n, "S[so + c] += XA[xa_o + c] * XB2[xb_o + c]")
                self.row_loop(b, n, f"S[so + c] = S[so + c] * {inv}")

    def planes_source(self) -> None:
        k, b = self.k, self.b
        g = k.g_first
        n = self.length(g)
        b.line("")
        b.line("# the stored planes of the mixing kernel before this one")
        b.line(self.rows_loop(g))
        with b.indent():
            b.line("row = SROWB[tile] + r")
            b.line(f"so = {self.srow()}")
            b.line(f"for c in range({n}):")
            with b.indent():
                b.line("j = SCOL[tile, c]")
                b.line("S[so + c] = IN_S[pair, row, j] if j >= 0 else _ZERO")
                if k.t_in:
                    b.line("T[so + c] = IN_T[pair, row, j] if j >= 0 else _ZERO")

    def partials_source(self) -> bool:
        k, b = self.k, self.b
        w = k.opener.window
        self.comment(k.opener)
        b.line(f"# a readout: the previous kernel's {k.prev_tiles} partial sums per pair, added in order")
        b.line("acc = _ZERO")
        if k.t_in:
            b.line("acc_t = _ZERO")
        b.line(f"for j in range(pair * {k.prev_tiles}, (pair + 1) * {k.prev_tiles}):")
        with b.indent():
            b.line("acc += IN_PS[j]")
            if k.t_in:
                b.line("acc_t += IN_PT[j]")
        bias = f" + {self.const(w.bias)}" if w.bias else ""
        b.line(f"S[R] = {self.const(w.weight)} * acc{bias}")
        t_live = k.t_in
        trainable = w.trainable and self.ntk
        if t_live:
            b.line(f"T[R] = {self.const(w.weight)} * acc_t" + (" + S[R]" if trainable else ""))
        elif trainable:
            b.line("T[R] = S[R]")
        return t_live or trainable

    def sink(self, t_live: bool) -> None:
        k, b = self.k, self.b
        g = k.g_last
        t = self.geom(g)
        n = self.length(g, rows=True)  # row by row, also on a flat plane (partial sums in their order)
        if k.record_end is not None:
            off = self.pk.var_a.offsets[k.record_end]
            vs = self.pk.var_a.size
            b.line("")
            b.line(f"# the variance map at the input of activation {k.record_end} (phase 1: plane 0)")
            b.line("if record:")
            with b.indent():
                b.line(self.rows_loop(g))
                with b.indent():
                    b.line(f"so = {self.srow()}")
                    b.line(f"o = U(a * {vs} + {off} + ({t}_y0 + r) * {2 * g.nx} + {t}_ao)")
                    b.line(f"for c in range({n}):")
                    with b.indent():
                        b.line("VARA[o + c] = S[so + c]")
                        b.line(f"VARA[o + U({g.nx}) + c] = S[so + c]")
        b.line("")
        if k.sink == Sink.OUTPUTS:
            assert g.ny == 1 and g.nx == 1
            b.line("# the kernel values of the pair")
            b.line("NNGP[pair] = S[R]")
            b.line(f"NTK[pair] = {'T[R]' if t_live else '_ZERO'}")
        elif k.sink == Sink.PARTIALS:
            count = len(k.tiles)
            b.line(f"# one partial sum per item for the readout of the next kernel ({'every weight 1' if k.uniform_partials else 'weighted'}):")
            b.line("# column sums over the rows, then the columns in order")
            for name, out in (("S", "OUT_PS"),) + ((("T", "OUT_PT"),) if t_live else ()):
                self.row_loop(b, n, "ACC[c] = _ZERO")
                b.line(self.rows_loop(g, rows=True))
                with b.indent():
                    b.line(f"so = {self.srow()}")
                    if k.uniform_partials:
                        self.row_loop(b, n, f"ACC[c] += {name}[so + c]")
                    else:
                        b.line("wy = PWY[tile, r]")
                        self.row_loop(b, n, f"ACC[c] += wy * {name}[so + c]")
                b.line("acc = _ZERO")
                self.row_loop(b, n, "acc += ACC[c]" if k.uniform_partials else "acc += PWX[tile, c] * ACC[c]")
                b.line(f"{out}[pair * {count} + tile] = acc")
        elif k.sink == Sink.PLANES:
            b.line("# the planes for the mixing kernel after this one")
            b.line(self.rows_loop(g))
            with b.indent():
                b.line("row = DROWB[tile] + r")
                b.line(f"so = {self.srow()}")
                b.line(f"for c in range({n}):")
                with b.indent():
                    b.line("j = DCOL[tile, c]")
                    b.line("if j >= 0:")
                    with b.indent():
                        b.line("OUT_S[pair, row, j] = S[so + c]")
                        if t_live:
                            b.line("OUT_T[pair, row, j] = T[so + c]")


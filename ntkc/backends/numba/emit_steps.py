"""The steps inside a fused stage kernel (see writer.py for the state they use): windows that
keep planes (identity, single-output sums, separable box sums with a seam select in packed
rows), activations (the rule's traced math, rendered by `render.NumbaMathRenderer`) and the two
ends of residual blocks."""
from __future__ import annotations

from ...plan.lower import Step
from ...rules.base import Window
from ...rules.ops import trace_maps
from .kernels import SCHEDULE, Geom, is_reduce
from .render import NumbaMathRenderer


class StepsMixin:
    """Steps of `KernelWriter`."""

    def window(self, s: Step, gi: Geom, go: Geom, t_live: bool) -> bool:
        w = s.window
        self.comment(s)
        trainable = w.trainable and self.ntk
        if w.identity:
            self.identity(w, go, t_live, trainable)
            return t_live or trainable
        if is_reduce(w):
            self.reduce(w, gi, t_live)
        else:
            self.box("S", "TS", w, gi, go, bias=True)
            if t_live:
                self.box("T", "TT", w, gi, go, bias=False)
        if trainable:
            b = self.b
            n = self.length(go)
            b.line(self.rows_loop(go))
            with b.indent():
                b.line(f"so = {self.srow()}")
                self.row_loop(b, n, "T[so + c] += S[so + c]" if t_live else "T[so + c] = S[so + c]")
        return t_live or trainable

    def identity(self, w: Window, g: Geom, t_live: bool, trainable: bool) -> None:
        b = self.b
        n = self.length(g)
        wt = self.const(w.weight)
        bias = f" + {self.const(w.bias)}" if w.bias else ""
        b.line(self.rows_loop(g))
        with b.indent():
            b.line(f"so = {self.srow()}")
            b.line(f"for c in range({n}):")
            with b.indent():
                b.line(f"S[so + c] = {wt} * S[so + c]{bias}")
                if t_live:
                    b.line(f"T[so + c] = {wt} * T[so + c]" + (" + S[so + c]" if trainable else ""))
                elif trainable:
                    b.line("T[so + c] = S[so + c]")

    def reduce(self, w: Window, gi: Geom, t_live: bool) -> None:
        """A window with one output (flatten, a valid conv down to 1x1): a weighted sum over
        plane 0 of the tile (plane 0: tile coordinates are map coordinates)."""
        b = self.b
        self.geom(gi)
        ty = sorted(e + w.rows.offset for e, _ in w.rows.terms)
        tx = sorted(e + w.cols.offset for e, _ in w.cols.terms)
        ty = [e for e in ty if 0 <= e < gi.ny]
        tx = [e for e in tx if 0 <= e < gi.nx]
        b.line(f"# one output: the sum over rows {rng_text(ty)} and columns {rng_text(tx)} of plane 0")
        b.line("acc = _ZERO")
        if t_live:
            b.line("acc_t = _ZERO")
        b.line(f"for yy in {iter_text(ty)}:")
        with b.indent():
            b.line(f"so = {self.srow('yy')}")
            b.line(f"for xx in {iter_text(tx)}:")
            with b.indent():
                b.line("acc += S[so + U(xx)]")
                if t_live:
                    b.line("acc_t += T[so + U(xx)]")
        bias = f" + {self.const(w.bias)}" if w.bias else ""
        b.line(f"S[R] = {self.const(w.weight)} * acc{bias}")
        if t_live:
            b.line(f"T[R] = {self.const(w.weight)} * acc_t")

    def box(self, src: str, tmp: str, w: Window, gi: Geom, go: Geom, bias: bool) -> None:
        """A separable window on one plane: x pass into `tmp`, zero rows below, y pass back."""
        b = self.b
        ti, to = self.geom(gi), self.geom(go)
        ni, no = self.length(gi), self.length(go)
        ks = [e + w.cols.offset for e, _ in w.cols.terms]
        sx = w.cols.stride
        W = self.width
        b.line(f"# {src}: along x ({len(ks)} taps), into {tmp}")
        b.line(self.rows_loop(gi))
        with b.indent():
            b.line(f"to = U((r{plus(self.RY)}) * {W})")
            if gi.packed:
                assert sx == 1 and go.packed
                # the row with its zero borders, read at c + k for each tap k; the seam at rx
                # (two planes in one row) is a select
                reads = []
                for j, kk in enumerate(ks):
                    b.line(f"s{j} = {self.srow(shift=kk)}")
                    ref = f"{src}[s{j} + c]"
                    reads.append(ref if kk == 0 else f"({ref} if {self.seam(kk)} else _ZERO)")
                if len(ks) <= SCHEDULE.unroll_taps:
                    self.row_loop(b, no, f"{tmp}[to + c] = {' + '.join(reads)}")
                else:
                    self.row_loop(b, no, f"{tmp}[to + c] = _ZERO")
                    for rd in reads:
                        self.row_loop(b, no, f"{tmp}[to + c] += {rd}")
            else:
                # exact columns: tap k reads c_in = sx c + k, inside the input row's [0, L_in)
                self.row_loop(b, no, f"{tmp}[to + c] = _ZERO")
                for kk in ks:
                    if sx > 1:
                        lo = f"max(0, -({kk} // {sx}))"
                        hi = f"min({to}_L, ({ti}_L - 1{plus(-kk)}) // {sx} + 1)"
                    else:
                        lo = f"max(0, {-kk})"
                        hi = f"min({to}_L, {ti}_L{plus(-kk)})"
                    b.line(f"lo = {lo}")
                    b.line(f"hi = max(lo, {hi})")
                    b.line(f"si = {self.srow(shift=kk)}  # (modular: exact for the columns read)")
                    rd = f"{src}[si + U({sx}) * c]" if sx > 1 else f"{src}[si + c]"
                    b.line("for c in range(U(lo), U(hi)):")
                    with b.indent():
                        b.line(f"{tmp}[to + c] += {rd}")
        if self.RYH and not (self.fixed_rows and gi.packed):  # (all rows in every item: they stay zero)
            b.line(f"for j in range({self.RY} + {ti}_rows, {self.RY + self.RYH} + {ti}_rows):  # zero rows below")
            with b.indent():
                b.line(f"to = U(j * {W})")
                self.row_loop(b, self.length(gi, rows=True), f"{tmp}[to + c] = _ZERO")
        ey = [e + w.rows.offset for e, _ in w.rows.terms]
        sy = w.rows.stride
        wt = self.const(w.weight)
        bs = f" + {self.const(w.bias)}" if (bias and w.bias) else ""
        b.line(f"# {src}: along y ({len(ey)} taps), times w^2/k^2" + (", plus b^2" if bs else ""))
        b.line(self.rows_loop(go))
        with b.indent():
            base = f"{sy} * r" if sy > 1 else "r"
            b.line(f"j = {base}{plus(self.RY)}")
            b.line(f"so = {self.srow()}")
            if len(ey) <= SCHEDULE.unroll_taps:
                for q, e in enumerate(ey):
                    b.line(f"t{q} = U((j{plus(e)}) * {W})")
                reads = " + ".join(f"{tmp}[t{q} + c]" for q in range(len(ey)))
                self.row_loop(b, no, f"{src}[so + c] = {wt} * ({reads}){bs}")
            else:
                self.row_loop(b, no, "ACC[c] = _ZERO")
                b.line(f"for e in {iter_text(ey)}:")
                with b.indent():
                    b.line(f"te = U((j + e) * {W})")
                    self.row_loop(b, no, f"ACC[c] += {tmp}[te + c]")
                self.row_loop(b, no, f"{src}[so + c] = {wt} * ACC[c]{bs}")

    def activation(self, i: int, s: Step, g: Geom, t_live: bool) -> bool:
        k, b = self.k, self.b
        self.comment(s)
        t = self.geom(g)
        n = self.length(g)
        ordinal = self.plan.activations.index(s.index)
        la, lb = self.pk.var_a, self.pk.var_b
        off_a, off_b = str(la.offsets[ordinal]), str(lb.offsets[ordinal])
        if self.loop is not None:
            off_a += f" + rep * {self.loop['var_step'] * la.factor}"
            off_b += f" + rep * {self.loop['var_step'] * lb.factor}"
        record = i in k.records
        b.line(f"# variance maps of a at p and of b at p - D (activation {ordinal}"
               + ("; b's rows doubled)" if lb.factor == 2 else ")"))
        gather = self.flat and g.packed and lb.factor == 2

        def b_row(yb: str) -> str:
            return f"ob = U(b * {lb.size} + {off_b} + {yb} * {lb.factor * g.nx} + {t}_bo)"
        if gather:
            b.line("# b's map on this tile as one flat run, row by row")
            b.line(self.rows_loop(g, rows=True))
            with b.indent():
                b.line(b_row(f"({t}_y0 + r - {t}_dy)"))
                b.line("vo = U(r * SW)")
                self.row_loop(b, self.length(g, rows=True), "VB[vo + c] = VARB[ob + c]")
        b.line(self.rows_loop(g))
        with b.indent():
            b.line(f"ya = {t}_y0 + r")
            if not gather:
                b.line(f"yb = ya - {t}_dy")
            b.line(f"so = {self.srow()}")
            b.line(f"oa = U(a * {la.size} + {off_a} + ya * {la.factor * g.nx} + {t}_ao)")
            if gather:
                b.line("vo = U(r * SW)")
            else:
                b.line(b_row("yb"))
            if record:
                b.line("if record:  # phase 1 of the image program: this is plane 0, S[p, p] = v[p]")
                with b.indent():
                    b.line(f"for c in range({n}):")
                    with b.indent():
                        b.line("VARA[oa + c] = S[so + c]")
                        b.line(f"VARA[oa + U({g.nx}) + c] = S[so + c]")
            b.line(f"for c in range({n}):")
            with b.indent():
                b.line("v1 = VARA[oa + c]")
                b.line("# a self pair at p = q: u and v2 are v1 itself, so v1 v2 - u^2 is exactly 0")
                b.line("u = v1 if diag else S[so + c]")
                b.line(f"v2 = v1 if diag else {'VB[vo + c]' if gather else 'VARB[ob + c]'}")
                graphs = trace_maps(s.layer.rule, s.layer.params, t_live)
                r = NumbaMathRenderer(b, self.pool, prefix=f"m{self.math_count}_")
                self.math_count += 1
                e = r.render(graphs, {"u": "u", "v1": "v1", "v2": "v2"}, like="u")
                self.helpers |= r.helpers
                b.line(f"S[so + c] = {e['nngp']}")
                if t_live:
                    b.line(f"T[so + c] = T[so + c] * ({e['dfactor']})")
        return t_live


    def residual(self, s: Step, g: Geom, t_live: bool) -> bool:
        """The ends of `residual scale=c { f }`: the fork keeps the tile of x (S, and T where it
        is live) in the shortcut scratch of its depth; the join adds it back, S = S_x + c^2 S_f
        and T = T_x + c^2 T_f (a T not yet live at the fork is zero there). A branch keeps the
        map's shape and planes, so both ends see the tile of the same geometry."""
        b = self.b
        self.comment(s)
        n = self.length(g)
        if s.kind == "fork":
            d = len(self.shortcuts)
            self.shortcuts.append((d, t_live))
            self.depth = max(self.depth, d + 1)
            b.line(f"# keep the shortcut x (depth {d})")
            b.line(self.rows_loop(g))
            with b.indent():
                b.line(f"so = {self.srow()}")
                b.line(f"for c in range({n}):")
                with b.indent():
                    b.line(f"SX{d}[so + c] = S[so + c]")
                    if t_live:
                        b.line(f"TX{d}[so + c] = T[so + c]")
            return t_live
        d, t_was_live = self.shortcuts.pop()
        c2 = s.layer.params.scale ** 2
        times = f"{self.const(c2)} * " if c2 != 1.0 else ""
        b.line(f"# y = x + c f(x): x and f(x) are uncorrelated, so S (and T) add, c^2 = {c2!r}")
        b.line(self.rows_loop(g))
        with b.indent():
            b.line(f"so = {self.srow()}")
            b.line(f"for c in range({n}):")
            with b.indent():
                b.line(f"S[so + c] = SX{d}[so + c] + {times}S[so + c]")
                if t_live and t_was_live:
                    b.line(f"T[so + c] = TX{d}[so + c] + {times}T[so + c]")
                elif t_live and times:
                    b.line(f"T[so + c] = {times}T[so + c]")
        return t_live


def plus(k: int) -> str:
    """` + k`, ` - k` or nothing, for an offset in generated text."""
    return f" + {k}" if k > 0 else (f" - {-k}" if k < 0 else "")


def rng_text(vals) -> str:
    if not vals:
        return "(none)"
    return f"{vals[0]}..{vals[-1]}" if vals == list(range(vals[0], vals[-1] + 1)) else str(vals)


def iter_text(vals) -> str:
    """A loop range over integer values: range(...) for a progression, else a tuple literal."""
    if not vals:
        return "range(0)"
    if len(vals) == 1:
        return f"range({vals[0]}, {vals[0] + 1})"
    step = vals[1] - vals[0]
    if step > 0 and all(b - a == step for a, b in zip(vals, vals[1:])):
        return f"range({vals[0]}, {vals[-1] + 1}, {step})" if step != 1 else f"range({vals[0]}, {vals[-1] + 1})"
    return "(" + ", ".join(str(v) for v in vals) + ",)"

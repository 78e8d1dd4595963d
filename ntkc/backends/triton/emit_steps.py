"""The layers inside a stage: windows that keep planes (identity, single-output sums, stencils
through the program's scratch) and activations (the rule's math, rendered)."""
from __future__ import annotations

from . import schedule
from ...plan.lower import Step
from ...rules.base import AxisWindow
from ...rules.ops import trace_maps
from .render import MathRenderer, literal
from .windows import _classify, _plus, _pow2, _reduce_range


class StepsMixin:
    """The steps of `KernelWriter` (see writer.py for the state they use)."""

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

    def residual(self, step: Step, t_live: bool) -> bool:
        """The ends of `residual scale=c { f }`: keep x's tiles at the fork; at the join,
        S = S_x + c^2 S_f and T = T_x + c^2 T_f (a T that was not yet live at the fork is 0)."""
        self.comment_step(step)
        b = self.body
        if step.kind == "fork":
            k = len(self.shortcuts)
            self.shortcuts.append((k, t_live))
            b.line(f"s_res{k} = s  # the shortcut x")
            if t_live:
                b.line(f"t_res{k} = t")
            return t_live
        k, t_was_live = self.shortcuts.pop()
        c2 = step.layer.params.scale ** 2
        times = f"{literal(c2)} * " if c2 != 1.0 else ""
        b.line(f"s = s_res{k} + {times}s  # y = x + c f(x): the two are uncorrelated, so S adds")
        if t_live and t_was_live:
            b.line(f"t = t_res{k} + {times}t")
        elif t_live and times:
            b.line(f"t = {times}t")
        return t_live

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

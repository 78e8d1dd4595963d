"""The v2 epilogue kernel (a stage opened by a full sum, `gap`: it adds each pair's partial sums
from the kernel before, in a fixed order, then runs the scalar layers), and the text of the
scalar steps it shares with the circulant kernel after a readout: windows on 1x1 maps,
activations on scalars, and the ends of residual blocks.
"""
from __future__ import annotations

from .records import ActOp, EpiloguePlan, ForkOp, JoinOp, ScalarOp
from .render import CodeBuffer, literal


def finish(b: CodeBuffer, op, acc_s: str = "s", acc_t: str = "t") -> None:
    """S' = w S + b, T' = w T (+ S' when trainable): the linear part of a window, after its sum.

    Products with Python constants are written `a * w + b`, never `tl.fma(a, w, b)`: Triton 3.6
    rounds a float argument of tl.fma to float32 first, and with fusion on the product and sum
    are one FFMA / DFMA anyway."""
    w = literal(op.weight)
    s = f"{acc_s} * {w} + {literal(op.bias)}" if op.bias else f"{acc_s} * {w}"
    b.line(f"s = {s}")
    if op.t_in:
        b.line(f"t = {acc_t} * {w} + s" if op.trainable else f"t = {acc_t} * {w}")
    elif op.trainable:
        b.line("t = s")


def residual(b: CodeBuffer, op) -> None:
    """The ends of `residual scale=c { f }`, on tiles or scalars alike: a fork keeps x's S (and
    T when live); a join adds them back, S = S_x + c^2 S_f, T = T_x + c^2 T_f (x and f(x) are
    uncorrelated), with T_x = 0 when T was not live at the fork."""
    b.line("")
    b.line(f"# line {op.line}: {op.text}")
    if isinstance(op, ForkOp):
        b.line(f"s_res{op.depth} = s  # the shortcut x")
        if op.t_live:
            b.line(f"t_res{op.depth} = t")
        return
    times = f"{literal(op.scale2)} * " if op.scale2 != 1.0 else ""
    b.line(f"s = s_res{op.depth} + {times}s  # y = x + c f(x): x and f(x) are uncorrelated, so S adds")
    if op.t_live and op.t_at_fork:
        b.line(f"t = t_res{op.depth} + {times}t")
    elif op.t_live and times:
        b.line(f"t = {times}t  # T_x was 0 at the fork")


def scalar_activation(b: CodeBuffer, op: ActOp, offset: str) -> None:
    """An activation on [.., 1] scalars: v1, v2 are the 1x1 maps of activation `op.ordinal`
    (the rows doubled, so b-side reads at `offset + 1`)."""
    b.line("")
    b.line(f"# line {op.line}: {op.text} on the 1x1 map (activation {op.ordinal} of the packed maps)")
    b.line(f"v1 = tl.load(va_ptr + ia * stride_va_n + ({offset}))")
    b.line(f"v2 = tl.load(tl.where(diag, va_ptr + ia * stride_va_n, vb_ptr + ib * stride_vb_n) + ({offset} + 1))")
    if op.t_live:
        b.line(f"s, f = {op.fn}(tl.where(diag, v1, s), v1, v2)")
        b.line("t = t * f")
    else:
        b.line(f"s = {op.fn}(tl.where(diag, v1, s), v1, v2)")


def scalar_step(b: CodeBuffer, op, offset_of) -> None:
    """One step after the readout; `offset_of(op)` gives an activation's packed-map offset."""
    if isinstance(op, ScalarOp):
        b.line("")
        b.line(f"# line {op.line}: {op.text}")
        finish(b, op)
    elif isinstance(op, (ForkOp, JoinOp)):
        residual(b, op)
    else:
        scalar_activation(b, op, offset_of(op))


class EpilogueWriter:
    """Renders an EpiloguePlan: adds a pair's partial sums, then the scalar steps."""

    def __init__(self, p: EpiloguePlan, var_offsets: dict[int, int]):
        self.p = p
        self.var_offsets = var_offsets
        self.b = CodeBuffer(1)
        self.args: list[str] = []

    def write(self) -> str:
        p, b = self.p, self.b
        self.args = ["s_in_ptr"] + (["t_in_ptr"] if p.t_in else []) + [
            "va_ptr", "vb_ptr", "stride_va_n", "stride_vb_n", "ia_ptr", "ib_ptr", "same_ptr",
            "nngp_ptr", "ntk_ptr", "n_pairs"]
        b.line("pid = tl.program_id(0)")
        b.line("offs_p = pid * BLOCK_P + tl.arange(0, BLOCK_P)[:, None]")
        b.line("mask_p = offs_p < n_pairs")
        b.line("pair = tl.minimum(offs_p, n_pairs - 1)")
        b.line("ia = tl.load(ia_ptr + pair).to(tl.int64)")
        b.line("ib = tl.load(ib_ptr + pair).to(tl.int64)")
        b.line("diag = tl.load(same_ptr + pair) != 0  # a self pair: its 1x1 maps are plane 0")
        b.line("")
        o = p.opener
        b.line(f"# line {o.line}: {o.text}: the sum of the previous kernel's N_PARTS partial sums per pair, "
               "in a fixed order")
        b.line("acc_s = tl.zeros([BLOCK_P, BLOCK_R], dtype=DTYPE)")
        if p.t_in:
            b.line("acc_t = tl.zeros([BLOCK_P, BLOCK_R], dtype=DTYPE)")
        b.line("for r0 in range(0, N_PARTS, BLOCK_R):")
        with b.indent():
            b.line("offs_r = r0 + tl.arange(0, BLOCK_R)[None, :]")
            b.line("mask_r = mask_p & (offs_r < N_PARTS)")
            b.line("acc_s += tl.load(s_in_ptr + pair * N_PARTS + offs_r, mask=mask_r, other=0.0)")
            if p.t_in:
                b.line("acc_t += tl.load(t_in_ptr + pair * N_PARTS + offs_r, mask=mask_r, other=0.0)")
        b.line("s = tl.sum(acc_s, axis=1)[:, None]")
        if p.t_in:
            b.line("t = tl.sum(acc_t, axis=1)[:, None]")
        finish(b, o)
        for op in p.ops:
            scalar_step(b, op, lambda a: str(self.var_offsets[a.ordinal]))
        b.line("")
        b.line("tl.store(nngp_ptr + pair, s, mask=mask_p)")
        b.line(f"tl.store(ntk_ptr + pair, {'t' if p.t_out else 'tl.zeros_like(s)'}, mask=mask_p)")
        out = CodeBuffer()
        out.line('@triton.jit(do_not_specialize=["n_pairs"])')
        out.line(f"def {p.name}(")
        with out.indent():
            for a in self.args:
                out.line(f"{a},")
            out.line("N_PARTS: tl.constexpr,  # partial sums per pair (a constant of the schedule before)")
            out.line("BLOCK_P: tl.constexpr,")
            out.line("BLOCK_R: tl.constexpr,")
        out.line("):")
        with out.indent():
            out.line(f'"""Stage {p.index}: the full sum (gap) of the partial sums per pair, then scalar layers."""')
            out.line("DTYPE = s_in_ptr.dtype.element_ty")
        out.lines.extend(b.lines)
        return out.text()

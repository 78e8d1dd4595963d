"""Helpers written into a v2 module for its tile shapes: `split_rows_<H>` / `join_rows_<H>` (a
[H, T, W] tile to its H rows [T, W] and back) and `split_parts_<P>` / `join_parts_<P>` (to P tiles
of interleaved rows and back). The rows are registers of each thread, so these are relabellings:
Triton 3.9 lowers them to register renames (no data moves, checked in the sm_90 SASS); Triton
3.6 inserts shared-memory layout conversions around them (benchmarks/RESULTS.md).
"""
from __future__ import annotations

from .render import CodeBuffer


def row_helpers(h: int) -> str:
    """`split_rows_<h>` and `join_rows_<h>`: a [h, T, W] tile to its h rows [T, W] and back. The rows
    are registers of each thread, so both are relabellings (checked in the SASS: no data moves)."""
    out = CodeBuffer()
    out.line("@triton.jit")
    out.line(f"def split_rows_{h}(x, T: tl.constexpr, W: tl.constexpr):")
    with out.indent():
        out.line(f'"""The {h} rows [T, W] of a [{h}, T, W] tile (halving by the low bit of the row index)."""')
        out.line("x = tl.permute(x, (1, 2, 0))")
        names = {}

        def split(rows, name):
            if len(rows) == 1:
                names[rows[0]] = name
                return
            half = len(rows) // 2
            e, o = f"{name}e", f"{name}o"
            shape = f"[T, W, {half}, 2]"
            out.line(f"{e}, {o} = tl.split(tl.reshape({name}, {shape}))" if half > 1 else f"{e}, {o} = tl.split({name})")
            split(rows[0::2], e)
            split(rows[1::2], o)

        split(list(range(h)), "x")
        out.line(f"return {', '.join(names[y] for y in range(h))}")
    out.line("")
    out.line("")
    out.line("@triton.jit")
    args = ", ".join(f"r{y}" for y in range(h))
    out.line(f"def join_rows_{h}({args}):")
    with out.indent():
        out.line(f'"""The [{h}, T, W] tile with rows r0 .. r{h - 1} (the inverse of split_rows_{h})."""')
        counter = [0]

        def join(rows):
            if len(rows) == 1:
                return f"r{rows[0]}"
            e, o = join(rows[0::2]), join(rows[1::2])
            name = f"j{counter[0]}"
            counter[0] += 1
            if len(rows) == 2:
                out.line(f"{name} = tl.join({e}, {o})")
            else:
                out.line(f"{name} = tl.join({e}, {o})")
                out.line(f"{name} = tl.reshape({name}, [{name}.shape[0], {name}.shape[1], {len(rows)}])")
            return name

        top = join(list(range(h)))
        out.line(f"return tl.permute({top}, (2, 0, 1))")
    return out.text()




def part_helpers(parts: int) -> str:
    """`split_parts_<P>` / `join_parts_<P>`: a [H, T, W] tile to P tiles [H/P, T, W] of the rows
    y = P i + k and back (relabellings of registers, like split_rows)."""
    assert parts in (2, 4)
    out = CodeBuffer()
    out.line("@triton.jit")
    out.line(f"def split_parts_{parts}(x):")
    with out.indent():
        out.line(f'"""The rows y = {parts} i + k of a [H, T, W] tile, for k < {parts}, as [H / {parts}, T, W] tiles."""')
        out.line("x = tl.permute(x, (1, 2, 0))")
        out.line("e, o = tl.split(tl.reshape(x, [x.shape[0], x.shape[1], x.shape[2] // 2, 2]))")
        if parts == 2:
            out.line("return tl.permute(e, (2, 0, 1)), tl.permute(o, (2, 0, 1))")
        else:
            out.line("e0, e1 = tl.split(tl.reshape(e, [e.shape[0], e.shape[1], e.shape[2] // 2, 2]))")
            out.line("o0, o1 = tl.split(tl.reshape(o, [o.shape[0], o.shape[1], o.shape[2] // 2, 2]))")
            out.line("return (tl.permute(e0, (2, 0, 1)), tl.permute(o0, (2, 0, 1)), tl.permute(e1, (2, 0, 1)), "
                     "tl.permute(o1, (2, 0, 1)))")
    out.line("")
    out.line("")
    out.line("@triton.jit")
    args = ", ".join(f"x{k}" for k in range(parts))
    out.line(f"def join_parts_{parts}({args}):")
    with out.indent():
        out.line(f'"""The inverse of split_parts_{parts}."""')
        if parts == 2:
            out.line("j = tl.join(tl.permute(x0, (1, 2, 0)), tl.permute(x1, (1, 2, 0)))")
        else:
            out.line("e = tl.join(tl.permute(x0, (1, 2, 0)), tl.permute(x2, (1, 2, 0)))")
            out.line("e = tl.reshape(e, [e.shape[0], e.shape[1], e.shape[2] * 2])")
            out.line("o = tl.join(tl.permute(x1, (1, 2, 0)), tl.permute(x3, (1, 2, 0)))")
            out.line("o = tl.reshape(o, [o.shape[0], o.shape[1], o.shape[2] * 2])")
            out.line("j = tl.join(e, o)")
        out.line("j = tl.reshape(j, [j.shape[0], j.shape[1], j.shape[2] * 2])")
        out.line("return tl.permute(j, (2, 0, 1))")
    return out.text()

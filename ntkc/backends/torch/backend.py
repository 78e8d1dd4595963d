"""The torch backend: executes a Plan's programs on batches of image pairs.

A state is a 5-D tensor [B, a_y, b_y, a_x, b_x]: each axis is stored as (p, q) when all of its
displacements are demanded and as (D, p) planes for a band (see `layout.AxisLayout`). A window
map runs per axis as a sum of strided views of a zero-padded tensor (no gathers) when the input
and output layouts are of one kind; readouts (one output state) are a weighted sum; the rare
rest (layout changes, circular windows on bands) is a gather with precomputed tables.
Activations evaluate the rule's math with `TorchOps`; variance maps enter by broadcasting.
Only demanded planes are ever computed.
"""
from __future__ import annotations

import math
import os
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from ...plan.lower import Demand, Plan, Program
from ..base import gather_pairs
from ...rules.base import AxisWindow
from .layout import AxisLayout, window_table
from .ops import TorchOps

_OPS = TorchOps()
CACHE_BYTES = 16 << 20  # target size of one state tensor of a pair batch
FUSE_FLOPS = 3e11  # work above which compiling the pair program pays (~a minute eagerly)


def _layouts(d: Demand) -> tuple[AxisLayout, AxisLayout]:
    return AxisLayout.of(d[0]), AxisLayout.of(d[1])


def _dims(l: AxisLayout) -> tuple[int, int]:
    return (l.n, l.n) if l.full else (l.hi - l.lo + 1, l.n)


class _AxisMap:
    """One axis of a window map, prepared for one of three execution paths."""

    def __init__(self, axis: AxisWindow, lin: AxisLayout, lout: AxisLayout, device):
        self.lin, self.lout = lin, lout
        self.out_dims = _dims(lout)
        identity = (lin == lout and axis.stride == 1 and axis.offset == 0 and axis.terms == ((0, 0),)
                    and not axis.wrap and axis.n_in == axis.n_out)
        if identity:
            self.path = "identity"
        elif lout.size <= 8:
            # Readouts: out = M @ x with M counting how often each input state is read.
            table = window_table(axis, lin, lout)
            m = np.zeros((lout.size, lin.size + 1))
            for o in range(lout.size):
                np.add.at(m[o], table[o], 1.0)
            self.path = "matrix"
            self.matrix = torch.as_tensor(m[:, :-1], device=device)
        elif lin.full == lout.full and not (axis.wrap and not lin.full):
            self.path = "views"
            self._plan_views(axis)
        else:
            self.path = "gather"
            table = window_table(axis, lin, lout)
            self.terms = table.shape[1]
            self.table = torch.as_tensor(table.reshape(-1), dtype=torch.long, device=device)

    def _plan_views(self, axis: AxisWindow) -> None:
        """Starts (per term) and paddings for the two dims; stride `s` along both."""
        s, off, lin, lout = axis.stride, axis.offset, self.lin, self.lout
        self.stride, self.wrap, self.n_in = s, axis.wrap, axis.n_in
        if lin.full:  # dims (p, q): position s*p + e + off on both
            starts = [(e + off, f + off) for e, f in axis.terms]
            span = (s * (lout.n - 1), s * (lout.n - 1))
            sizes = (lin.n, lin.n)
        else:  # dims (D index, p)
            starts = [(s * lout.lo + e - f - lin.lo, e + off) for e, f in axis.terms]
            span = (s * (lout.hi - lout.lo), s * (lout.n - 1))
            sizes = (lin.hi - lin.lo + 1, lin.n)
        pads = []
        for k in range(2):
            lo = max(0, -min(st[k] for st in starts))
            hi = max(0, max(st[k] for st in starts) + span[k] - (sizes[k] - 1))
            pads.append((lo, hi))
        self.pads = tuple(pads)
        self.starts = [(a + pads[0][0], b + pads[1][0]) for a, b in starts]
        # Same-size, stride-1, zero-padded windows with an unshifted term: no padding needed.
        self.shifts = None
        if (s == 1 and not axis.wrap and _dims(lin) == _dims(lout) and (0, 0) in starts
                and (lin.full or lin.lo == lout.lo)):
            self.shifts = [st for st in starts if st != (0, 0)]

    def apply(self, x: torch.Tensor, dim: int, weight: float = 1.0) -> torch.Tensor:
        """Apply along dims (dim, dim + 1) of a 5-D state, times `weight`."""
        if self.path == "identity":
            return x * weight if weight != 1.0 else x
        shape = list(x.shape)
        if self.path == "matrix":
            m = self.matrix.to(x.dtype) * weight
            if dim + 2 == x.dim():  # last axis: [..., in] @ [in, out]
                out = x.reshape(shape[:dim] + [-1]) @ m.T
            else:  # [out, in] @ [B, in, rest]
                out = m @ x.reshape(shape[0], -1, math.prod(shape[dim + 2:]))
            return out.reshape(shape[:dim] + list(self.out_dims) + shape[dim + 2:])
        if self.path == "gather":
            merged = x.reshape(shape[:dim] + [-1] + shape[dim + 2:])
            pad = [0, 0] * (merged.dim() - 1 - dim) + [0, 1]
            merged = F.pad(merged, pad)
            y = merged.index_select(dim, self.table)
            y = y.view(shape[:dim] + [self.lout.size, self.terms] + shape[dim + 2:]).sum(dim + 1)
            if weight != 1.0:
                y = y.mul_(weight)
            return y.reshape(shape[:dim] + list(self.out_dims) + shape[dim + 2:])
        return self._views(x, dim, weight)

    def _views(self, x: torch.Tensor, dim: int, weight: float = 1.0) -> torch.Tensor:
        if self.shifts is not None and not torch.compiler.is_compiling():
            # In-place shifted adds suit eager mode; under torch.compile the functional form
            # below (pad, views, sum) fuses into one loop instead.
            return self._shifts(x, dim, weight)
        (pa0, pa1), (pb0, pb1) = self.pads
        if self.wrap:  # full layout, circular: pad by wrapping positions around
            n = self.n_in
            ia = torch.arange(-pa0, n + pa1, device=x.device) % n
            ib = torch.arange(-pb0, n + pb1, device=x.device) % n
            x = x.index_select(dim, ia).index_select(dim + 1, ib)
        elif pa0 or pa1 or pb0 or pb1:
            tail = x.dim() - 2 - dim
            x = F.pad(x, [0, 0] * tail + [pb0, pb1, pa0, pa1])
        s = self.stride
        na, nb = self.out_dims
        out = None
        for a, b in self.starts:
            v = x.narrow(dim, a, s * (na - 1) + 1).narrow(dim + 1, b, s * (nb - 1) + 1)
            if s > 1:
                idx = [slice(None)] * x.dim()
                idx[dim] = slice(None, None, s)
                idx[dim + 1] = slice(None, None, s)
                v = v[tuple(idx)]
            out = torch.mul(v, weight) if out is None else out.add_(v, alpha=weight)
        return out

    def _shifts(self, x: torch.Tensor, dim: int, weight: float) -> torch.Tensor:
        """Stride-1, size-preserving windows: the unshifted term, then each shifted term added
        into the sub-rectangle where it reads inside the map (outside reads are zeros)."""
        out = torch.mul(x, weight)
        for (da, db) in self.shifts:
            dst, src = [slice(None)] * x.dim(), [slice(None)] * x.dim()
            for k, (d, n) in enumerate(((da, x.shape[dim]), (db, x.shape[dim + 1]))):
                dst[dim + k] = slice(max(0, -d), min(n, n - d))
                src[dim + k] = slice(max(0, d), min(n, n + d))
            out[tuple(dst)].add_(x[tuple(src)], alpha=weight)
        return out


def _placement(l: AxisLayout, side: int) -> tuple[str, np.ndarray | None]:
    """How a per-position map enters an axis: on dim 'a' or 'b' by broadcasting, or by a
    gather table [dims] of positions (zero slot n) for the b-side of a band."""
    if l.full:
        return ("a" if side == 0 else "b"), None
    if side == 0 or l.lo == l.hi == 0:  # plane 0 alone: q = p
        return "b", None
    d, p = np.divmod(np.arange(l.size), l.n)
    q = p - (d + l.lo)
    return "table", np.where((q >= 0) & (q < l.n), q, l.n)


class _Layouts:
    """Masks, placements and diagonals of one 5-D state layout."""

    def __init__(self, ly: AxisLayout, lx: AxisLayout, device):
        self.ly, self.lx = ly, lx
        self.dims = _dims(ly) + _dims(lx)
        vy, vx = ly.valid.reshape(_dims(ly)), lx.valid.reshape(_dims(lx))
        m = vy[:, :, None, None] & vx[None, None, :, :]
        self.mask = None if m.all() else torch.as_tensor(m, device=device)
        dy = ly.pq[0].reshape(_dims(ly)) == ly.pq[1].reshape(_dims(ly))
        dx = lx.pq[0].reshape(_dims(lx)) == lx.pq[1].reshape(_dims(lx))
        self.diag = torch.as_tensor(dy[:, :, None, None] & dx[None, None, :, :], device=device)
        self.place = [[_placement(l, side) for l in (ly, lx)] for side in (0, 1)]
        self.tables = [[None if t is None else torch.as_tensor(t, dtype=torch.long, device=device)
                        for _, t in self.place[side]] for side in (0, 1)]
        diag_y, diag_x = ly.diagonal() if ly.size else None, lx.diagonal() if lx.size else None
        self.var_index = torch.as_tensor((diag_y[:, None] * lx.size + diag_x[None, :]).reshape(-1),
                                         dtype=torch.long, device=device)

    def spread(self, v: torch.Tensor, side: int) -> torch.Tensor:
        """A per-position map [B, ny, nx] laid over the state's dims, seen from the a-side
        (p, side 0) or b-side (q, side 1); broadcastable against [B, a_y, b_y, a_x, b_x]."""
        b, ny, nx = v.shape
        (ky, _), (kx, _) = self.place[side]
        ty, tx = self.tables[side]
        if ty is not None or tx is not None:
            v = F.pad(v, (0, 1, 0, 1))
        # rows
        if ky == "a":
            v = v[:, :ny].unsqueeze(2)
        elif ky == "b":
            v = v[:, :ny].unsqueeze(1)
        else:
            v = v.index_select(1, ty).view(b, *_dims(self.ly), -1)
        # columns (the last dim of v now)
        if kx == "a":
            v = v[..., :nx].unsqueeze(-1)
        elif kx == "b":
            v = v[..., :nx].unsqueeze(-2)
        else:
            v = v.index_select(3, tx).view(*v.shape[:3], *_dims(self.lx))
        return v


class _Compiled:
    """A Program with its layouts and tables built for one device."""

    def __init__(self, prog: Program, device: torch.device):
        self.prog = prog
        self.steps = []
        if prog.input_demand is None:
            return
        cur = _layouts(prog.input_demand)
        self.inputs = _Layouts(*cur, device)
        lay = self.inputs
        for step in prog.steps:
            out = _layouts(step.demand_out)
            entry = {"step": step}
            if step.window is not None:
                entry["maps"] = (_AxisMap(step.window.rows, cur[0], out[0], device),
                                 _AxisMap(step.window.cols, cur[1], out[1], device))
                lay = _Layouts(*out, device)
            entry["layout"] = lay
            self.steps.append(entry)
            cur = out
        self.out = lay


class TorchBackend:
    """Runs a Plan's image and pair programs with torch on one device and dtype (a `Backend`)."""

    name = "torch"

    def __init__(self, plan: Plan, dtype: torch.dtype, device: torch.device):
        self.plan = plan
        self.dtype = dtype
        self.device = device
        self.pair = _Compiled(plan.pair, device)
        self.image = _Compiled(plan.image, device)
        self._fused = None  # torch.compile'd `_pairs`, made on first use by `fuse()`

    def fuse(self) -> bool:
        """Use torch.compile for the pair program (fuses each layer's elementwise work; worth it
        for long runs, costs tens of seconds once). Returns False if it cannot be compiled here."""
        if self._fused is None:
            try:
                self._fused = torch.compile(self._pairs, dynamic=False)
            except Exception as err:  # no compiler toolchain, unsupported platform, ...
                warnings.warn(f"torch.compile is unavailable ({err}); running eagerly")
                self._fused = False
        return bool(self._fused)

    def fusion_pays(self, pairs: int) -> bool:
        """torch.compile the pair program when a CPU run of `pairs` pairs is long enough to repay
        compiling it (tens of seconds); `NTKC_TORCH_COMPILE=0/1` overrides."""
        env = os.environ.get("NTKC_TORCH_COMPILE")
        if env is not None:
            return env == "1"
        if self.device.type != "cpu":
            return False
        # Fusion pays where a pair's state is large (all planes, as in GAP networks); a plane-0
        # network (CNTK-V) runs as fast eagerly in large batches.
        if self.preferred_batch() > 64:
            return False
        return pairs * self.plan.pair.flops() > FUSE_FLOPS

    def variance_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-image variance maps [N, h, w] at the input of every activation, in order."""
        prog = self.image
        if prog.prog.input_demand is None:
            return []
        s = self._input_covariance(prog.inputs, x, x)
        maps: list[torch.Tensor] = []
        var_at = set(prog.prog.variance_at)
        lay = prog.inputs
        saved: list = []  # the shortcuts of the open residual blocks
        for pos, entry in enumerate(prog.steps):
            if pos in var_at:
                maps.append(self._diag_map(lay, s))
            kind = entry["step"].kind
            if kind == "activation":
                s, _ = self._activation(entry, s, None, maps[-1], None, None)
            elif kind in ("fork", "join"):
                s, _ = self._residual(entry, s, None, saved)
            else:
                s, _ = self._window(entry, s, None)
            lay = entry["layout"]
        if len(prog.steps) in var_at:
            maps.append(self._diag_map(lay, s))
        return maps

    def pairs(self, x_rows, x_cols, maps_rows, maps_cols, i, j, same, fused: bool = False):
        """NNGP and NTK of the pairs (x_rows[i[b]], x_cols[j[b]]) (see `base.Backend.pairs`):
        per-pair copies are gathered here, then the pair program runs on them."""
        xa, xb, va, vb = gather_pairs(x_rows, x_cols, maps_rows, maps_cols, i, j)
        if fused and self.fuse():
            try:
                return self._fused(xa, xb, va, vb, same, True)
            except Exception as err:  # a failed compile must not lose the user's run
                warnings.warn(f"torch.compile failed ({type(err).__name__}: {err}); running eagerly")
                self._fused = False
        return self._pairs(xa, xb, va, vb, same, False)

    def _pairs(self, xa, xb, va, vb, same, traced: bool):
        prog = self.pair
        s = self._input_covariance(prog.inputs, xa, xb)
        t = None  # the NTK is zero until the first trainable layer
        act = 0
        saved: list = []  # the shortcuts of the open residual blocks
        for entry in prog.steps:
            kind = entry["step"].kind
            if kind == "activation":
                s, t = self._activation(entry, s, t, va[act], vb[act], same, traced)
                act += 1
            elif kind in ("fork", "join"):
                s, t = self._residual(entry, s, t, saved)
            else:
                s, t = self._window(entry, s, t, ntk=True)
        if t is None:
            t = torch.zeros_like(s)
        return s.reshape(s.shape[0]), t.reshape(t.shape[0])

    # -- pieces ---------------------------------------------------------------------------

    def _input_covariance(self, lay: _Layouts, xa, xb) -> torch.Tensor:
        c = xa.shape[1]
        s = None
        for ch in range(c):
            term = lay.spread(xa[:, ch], 0) * lay.spread(xb[:, ch], 1)
            s = term if s is None else s.add_(term)
        s = s.expand(s.shape[0], *lay.dims).contiguous() if s.shape[1:] != torch.Size(lay.dims) else s
        return s.mul_(1.0 / c)

    def _diag_map(self, lay: _Layouts, s: torch.Tensor) -> torch.Tensor:
        b = s.shape[0]
        return s.reshape(b, -1).index_select(1, lay.var_index).view(b, lay.ly.n, lay.lx.n)

    def _window(self, entry, s, t, ntk: bool = False):
        w = entry["step"].window
        my, mx = entry["maps"]
        lay = entry["layout"]
        s_new = mx.apply(my.apply(s, 1, w.weight), 3)
        if s_new is s:
            s_new = s.clone()
        if w.bias:
            s_new = s_new.add_(w.bias)
        if lay.mask is not None:
            s_new = s_new.masked_fill_(~lay.mask, 0.0)
        if not ntk:
            return s_new, None
        if t is not None:
            t = mx.apply(my.apply(t, 1, w.weight), 3)
            if lay.mask is not None:
                t = t.masked_fill_(~lay.mask, 0.0)
        if w.trainable:
            t = s_new.clone() if t is None else t.add_(s_new)
        return s_new, t

    @staticmethod
    def _residual(entry, s, t, saved: list):
        """The ends of `residual scale=c { f }`: a fork keeps (S, T) of x; a join returns
        S_x + c^2 S_f and T_x + c^2 T_f (T None stands for zero)."""
        if entry["step"].kind == "fork":
            saved.append((s.clone(), None if t is None else t.clone()))  # later layers may work in place
            return s, t
        s_x, t_x = saved.pop()
        c2 = entry["step"].layer.params.scale ** 2
        s = s_x + c2 * s if c2 != 1.0 else s_x + s
        if t is not None:
            t = c2 * t if c2 != 1.0 else t
            t = t if t_x is None else t_x + t
        return s, t

    def _activation(self, entry, s, t, va, vb, same, traced: bool = False):
        step, lay = entry["step"], entry["layout"]
        rule, params = step.layer.rule, step.layer.params
        v1 = lay.spread(va, 0)
        v2 = lay.spread(vb if vb is not None else va, 1)
        u = s
        if vb is None:
            same_diag = lay.diag  # the image program: every pair is a self pair
        elif same is not None and (traced or bool(same.any())):
            same_diag = lay.diag & same.view(-1, 1, 1, 1, 1)
        else:
            same_diag = None
        if same_diag is not None:
            # S_aa[p, p] is v_a[p] by definition: use that very number, so the determinant
            # v1 v2 - u^2 is exactly 0 there (keeps every digit of the relu angle).
            v1 = v1.expand_as(u)
            u = torch.where(same_diag, v1, u)
            v2 = torch.where(same_diag, v1, v2)
        s_new, factor = rule.maps(params, _OPS, u, v1, v2, t is not None)
        if s_new.shape != s.shape:
            s_new = s_new.expand_as(s)
        if lay.mask is not None:
            s_new = torch.where(lay.mask, s_new, torch.zeros((), dtype=s.dtype, device=s.device))
        if t is None:
            return s_new, None
        t = t * factor
        if lay.mask is not None:
            t = torch.where(lay.mask, t, torch.zeros((), dtype=t.dtype, device=t.device))
        return s_new, t

    def preferred_batch(self) -> int:
        """Pairs per batch that keep one state tensor near `CACHE_BYTES`: large enough to amortise
        per-operation overhead, small enough to stay in the last-level cache (measured on a
        2-core EPYC: depth-3 GAP runs 2-3x slower at 8 pairs per batch than at 2-4)."""
        return max(1, CACHE_BYTES // max(1, self.bytes_per_pair() // 16))

    def bytes_per_pair(self) -> int:
        """A generous estimate of the peak memory one pair needs in `pairs`."""
        item = torch.tensor([], dtype=self.dtype).element_size()
        peak = 1
        if self.pair.steps:
            peak = int(np.prod(self.pair.inputs.dims))
        for entry in self.pair.steps:
            peak = max(peak, int(np.prod(entry["layout"].dims)))
        return peak * item * 16

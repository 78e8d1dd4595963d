"""The torch backend: executes a Plan's programs on batches of image pairs.

States are [B, rows, cols] tensors in the layouts of `layout.AxisLayout`; every window map is two
gathers (one per axis) with precomputed tables, every activation is the rule's math evaluated by
`TorchOps` on the state and the gathered variance maps. Only demanded planes are ever computed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..compiler.ops import TorchOps
from ..compiler.plan import Demand, Plan, Program
from .layout import AxisLayout, point_table, window_table

_OPS = TorchOps()


def _layouts(d: Demand) -> tuple[AxisLayout, AxisLayout]:
    return AxisLayout.of(d[0]), AxisLayout.of(d[1])


def _long(a: np.ndarray, device) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.long, device=device)


@dataclass
class _Gather:
    """One axis of a window map: table [out, terms]; `skip` when it is the identity."""

    table: torch.Tensor | None
    out: int
    terms: int


class _Compiled:
    """A Program with its tables built for one device."""

    def __init__(self, prog: Program, device: torch.device):
        self.prog = prog
        self.device = device
        self.steps = []
        if prog.input_demand is None:
            return
        ly, lx = _layouts(prog.input_demand)
        self.in_layout = (ly, lx)
        self.in_tables = tuple(_long(point_table(l, s), device) for l in (ly, lx) for s in (0, 1))
        cur = (ly, lx)
        for step in prog.steps:
            out = _layouts(step.demand_out)
            entry = {"step": step, "out": out,
                     "mask": self._mask(out)}
            if step.window is not None:
                entry["gathers"] = tuple(self._gather(ax, li, lo) for ax, li, lo in
                                         zip((step.window.rows, step.window.cols), cur, out))
            else:
                assert out == cur
                entry["points"] = tuple(_long(point_table(l, s), device) for l in out for s in (0, 1))
                entry["diag"] = self._diag(out)
            self.steps.append(entry)
            cur = out
        self.out_layout = cur

    def _mask(self, out) -> torch.Tensor | None:
        m = np.outer(out[0].valid, out[1].valid)
        return None if m.all() else torch.as_tensor(m, device=self.device)

    def _diag(self, out) -> torch.Tensor:
        py, qy = out[0].pq
        px, qx = out[1].pq
        return torch.as_tensor(np.outer(py == qy, px == qx), device=self.device)

    def _gather(self, axis, lin, lout) -> _Gather:
        table = window_table(axis, lin, lout)
        if table.shape[1] == 1 and lin.size == lout.size and (table[:, 0] == np.arange(lout.size)).all():
            return _Gather(None, lout.size, 1)
        return _Gather(_long(table.reshape(-1), self.device), lout.size, table.shape[1])

    def variance_index(self, layout) -> torch.Tensor:
        """For each (row, col) position, the state index of its diagonal entry (p, p)."""
        dy, dx = layout[0].diagonal(), layout[1].diagonal()
        return _long((dy[:, None] * layout[1].size + dx[None, :]).reshape(-1), self.device)


def _apply_gather(x: torch.Tensor, g: _Gather, dim: int) -> torch.Tensor:
    if g.table is None:
        return x
    pad = [0, 0] * (x.dim() - 1 - dim) + [0, 1]
    x = torch.nn.functional.pad(x, pad)
    y = x.index_select(dim, g.table)
    shape = list(x.shape)
    shape[dim:dim + 1] = [g.out, g.terms]
    y = y.view(shape)
    return y.sum(dim + 1) if g.terms > 1 else y.squeeze(dim + 1)


def _window(x: torch.Tensor, gathers) -> torch.Tensor:
    gy, gx = gathers
    # Shrink the larger reduction first: it leaves less for the second gather.
    if gx.table is not None and gy.table is not None and gx.out * gy.terms < gy.out * gx.terms:
        return _apply_gather(_apply_gather(x, gx, 2), gy, 1)
    return _apply_gather(_apply_gather(x, gy, 1), gx, 2)


def _gather_points(v: torch.Tensor, py: torch.Tensor, px: torch.Tensor, ny: int, nx: int) -> torch.Tensor:
    """v: [B, ny, nx] maps -> [B, rows, cols] values at state positions (zero slot = 0)."""
    v = torch.nn.functional.pad(v, (0, 1, 0, 1))
    return v.index_select(1, py).index_select(2, px)


class TorchExecutor:
    """Runs a Plan's image and pair programs with torch on one device and dtype."""

    def __init__(self, plan: Plan, dtype: torch.dtype, device: torch.device):
        self.plan = plan
        self.dtype = dtype
        self.device = device
        self.pair = _Compiled(plan.pair, device)
        self.image = _Compiled(plan.image, device)

    # -- programs ---------------------------------------------------------------------------

    def variance_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-image variance maps [N, h, w] at the input of every activation, in order."""
        prog = self.image
        if prog.prog.input_demand is None:
            return []
        s = self._input_covariance(prog, x, x)
        t = None
        maps: list[torch.Tensor] = []
        var_at = set(prog.prog.variance_at)
        cur = prog.in_layout
        for pos, entry in enumerate(prog.steps):
            if pos in var_at:
                maps.append(self._diag_map(prog, s, cur))
            s, t = self._step(entry, s, t, maps[-1] if entry["step"].kind == "activation" else None,
                              None, None, need_ntk=False)
            cur = entry["out"]
        if len(prog.steps) in var_at:
            maps.append(self._diag_map(prog, s, cur))
        return maps

    def pairs(self, xa: torch.Tensor, xb: torch.Tensor, va: list[torch.Tensor], vb: list[torch.Tensor],
              same: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """NNGP and NTK of the pairs (xa[i], xb[i]); va / vb are their variance maps."""
        prog = self.pair
        s = self._input_covariance(prog, xa, xb)
        t = torch.zeros_like(s)
        act = 0
        for entry in prog.steps:
            if entry["step"].kind == "activation":
                s, t = self._step(entry, s, t, va[act], vb[act], same, need_ntk=True)
                act += 1
            else:
                s, t = self._step(entry, s, t, None, None, None, need_ntk=True)
        return s.reshape(s.shape[0]), t.reshape(t.shape[0])

    # -- pieces ---------------------------------------------------------------------------

    def _input_covariance(self, prog: _Compiled, xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        py, qy, px, qx = prog.in_tables
        c = xa.shape[1]
        pad = lambda x: torch.nn.functional.pad(x, (0, 1, 0, 1))  # noqa: E731
        a = pad(xa).index_select(2, py).index_select(3, px)
        b = pad(xb).index_select(2, qy).index_select(3, qx)
        return torch.einsum("bcyx,bcyx->byx", a, b) / c

    def _diag_map(self, prog: _Compiled, s: torch.Tensor, layout) -> torch.Tensor:
        idx = prog.variance_index(layout)
        return s.reshape(s.shape[0], -1).index_select(1, idx).view(s.shape[0], layout[0].n, layout[1].n)

    def _step(self, entry, s, t, va, vb, same, need_ntk: bool):
        step = entry["step"]
        mask = entry["mask"]
        if step.window is not None:
            w = step.window
            s_new = _window(s, entry["gathers"]) * w.weight
            if w.bias:
                s_new = s_new + (w.bias if mask is None else w.bias * mask.to(s_new.dtype))
            if need_ntk:
                t = _window(t, entry["gathers"]) * w.weight
                if w.trainable:
                    t = t + s_new
            return s_new, t
        rule, params = step.layer.rule, step.layer.params
        py, qy, px, qx = entry["points"]
        n_y, n_x = step.layer.in_shape.height, step.layer.in_shape.width
        v1 = _gather_points(va, py, px, n_y, n_x)
        v2 = _gather_points(vb if vb is not None else va, qy, qx, n_y, n_x)
        u = s
        if vb is None:
            same_diag = entry["diag"]  # the image program: every pair is a self pair
        elif same is not None and bool(same.any()):
            same_diag = entry["diag"] & same.view(-1, 1, 1)
        else:
            same_diag = None
        if same_diag is not None:
            # S_aa[p, p] is v_a[p] by definition: use the identical number so the determinant
            # v1 v2 - u^2 is exactly 0 there (keeps every digit of the relu angle).
            u = torch.where(same_diag, v1, u)
            v2 = torch.where(same_diag, v1, v2)
        s_new = rule.nngp(params, _OPS, u, v1, v2)
        if mask is not None:
            s_new = torch.where(mask, s_new, torch.zeros((), dtype=s_new.dtype, device=s_new.device))
        if need_ntk:
            factor = rule.dfactor(params, _OPS, u, v1, v2)
            t = t * factor
            if mask is not None:
                t = torch.where(mask, t, torch.zeros((), dtype=t.dtype, device=t.device))
        return s_new, t

    # -- sizing ---------------------------------------------------------------------------

    def bytes_per_pair(self) -> int:
        """A generous estimate of the peak memory one pair needs in `pairs`."""
        item = torch.tensor([], dtype=self.dtype).element_size()
        peak = 0
        sizes = [self.pair.in_layout[0].size * self.pair.in_layout[1].size] if self.pair.steps else [1]
        for entry in self.pair.steps:
            out = entry["out"][0].size * entry["out"][1].size
            terms = 1
            if "gathers" in entry:
                terms = max(g.terms for g in entry["gathers"])
            sizes.append(out * max(terms, 1))
            peak = max(peak, out * 14, out * terms * 3)
        cin = self.plan.network.input.channels or 1
        peak = max(peak, sizes[0] * (2 * cin + 4))
        return peak * item
